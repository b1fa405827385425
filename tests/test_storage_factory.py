"""open_store: a store by URL or plain path; clear errors for what it cannot open."""

import pytest

from auditor.errors import StoreError
from auditor.storage import describe, open_store, remove_store, store_exists
from auditor.storage.sqlite import SQLiteStore


@pytest.mark.parametrize("url", ["sqlite:///rel/a.db", "rel/a.db"])
def test_relative_sqlite_url_and_plain_path_name_the_same_file(tmp_path, monkeypatch, url):
    monkeypatch.chdir(tmp_path)
    s = open_store(url)
    try:
        assert isinstance(s, SQLiteStore) and s.multi_process
        assert s.url == f"sqlite:///{tmp_path / 'rel/a.db'}"  # absolute: reopens from anywhere
    finally:
        s.close()
    assert (tmp_path / "rel/a.db").exists() and store_exists(url)


def test_absolute_url_and_memory(tmp_path):
    s = open_store(f"sqlite:///{tmp_path}/b.db")  # sqlite:////abs/b.db
    s.close()
    assert (tmp_path / "b.db").exists()
    m = open_store("sqlite:///:memory:")
    assert m.url == "sqlite:///:memory:" and not m.multi_process and not store_exists(m.url)
    m.close()


def test_read_only_commands_do_not_create_a_store(tmp_path):
    with pytest.raises(StoreError, match=r"no store at .*missing.db yet: run `auditor run`"):
        open_store(tmp_path / "missing.db", create=False)
    assert not (tmp_path / "missing.db").exists()


@pytest.mark.parametrize("url,message", [
    ("mysql://root:hunter2@db/auditor", "unknown scheme 'mysql'"),
    ("redis://h/0", "unknown scheme 'redis'"),
    ("postgresql+asyncpg://auditor:hunter2@db/auditor", "unknown driver 'postgresql+asyncpg'"),
    ("sqlite://a.db", "expected sqlite:///PATH"),
    ("sqlite:///", "expected sqlite:///PATH"),
    ("", "empty store URL"),
])
def test_urls_it_cannot_open_are_named_without_secrets(url, message):
    with pytest.raises(StoreError) as e:
        open_store(url)
    assert message in str(e.value)
    assert "hunter2" not in str(e.value)


def test_describe_hides_passwords():
    assert describe("postgresql://u:pw@h:5432/db") == "postgresql://u:***@h:5432/db"
    assert describe("sqlite:////srv/a.db") == "sqlite:////srv/a.db"


def test_remove_store_removes_the_file_and_what_is_beside_it(tmp_path):
    s = open_store(tmp_path / "c.db")
    with s.run_lock():
        pass
    s.close()
    assert (tmp_path / "c.db.lock").exists()
    remove_store(f"sqlite:///{tmp_path}/c.db")
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_postgres_urls_pass_the_config_check_and_hide_passwords():
    from auditor.storage import check_url

    for url in ("postgresql://auditor:hunter2@db:5432/auditor", "postgres://db/auditor",
                "postgresql+psycopg://db/auditor?sslmode=require"):
        check_url(url)  # no connection is made to check a URL
    assert describe("postgresql://db/a?user=u&password=hunter2&sslmode=require") == \
        "postgresql://db/a?user=u&password=***&sslmode=require"


def test_postgres_store_opened_by_url(pg_server):
    from auditor.storage.postgres import PostgresStore

    url = pg_server.new_database()
    assert not store_exists(url)
    with pytest.raises(StoreError, match="no store at postgresql://auditor:[*]{3}@"):
        open_store(url, create=False)
    s = open_store(url)
    assert isinstance(s, PostgresStore) and s.url == url and s.multi_process
    s.close()
    assert store_exists(url)
    remove_store(url)
    assert not store_exists(url)
