"""What an operator and a new user trip over around the store, the runs and the alerts:
HTML pages when the store is down, migrations that say what they did, `auditor runs`
on an empty store, why a run was interrupted or held presence, receivers nothing routes
to. Each test is a defect found by using the product as a new user would."""

from __future__ import annotations

import contextlib
import logging
import sqlite3
from pathlib import Path

import pytest
import sqlite_utils
from click.testing import CliRunner

from auditor.cli import main
from auditor.config import load_config
from auditor.errors import StoreError, StoreUnavailable
from auditor.storage import open_store
from auditor.storage import sqlite as sqlite_mod
from tests.service_helpers import build_world

HTML_PAGES = ("/", "/runs", "/links", "/products/SKU-001", "/findings/abcd")


@contextlib.contextmanager
def _service(config: Path):
    """`auditor serve`'s app (no schedules) over ``config``, in a test client."""
    from fastapi.testclient import TestClient

    from auditor.service.app import Service, create_app

    service = Service(config, load_config(config), schedule=False)
    with TestClient(create_app(service)) as client:
        yield client


def _assert_store_down_pages(client, shows: str, secret: str | None = None) -> None:
    for path in HTML_PAGES:
        r = client.get(path)
        assert r.status_code == 503, (path, r.status_code, r.text[:300])
        assert r.headers["content-type"].startswith("text/html"), path
        assert "<h1>The store cannot be read</h1>" in r.text, path
        assert shows in r.text, path
        assert r.headers["content-security-policy"].startswith("default-src 'self'")
        if secret:
            assert secret not in r.text, path
    api = client.get("/api/runs")  # the JSON API keeps answering JSON
    assert api.status_code == 503 and api.headers["content-type"] == "application/json"
    assert shows.replace("&lt;", "<").replace("&gt;", ">") in api.json()["detail"]
    if secret:
        assert secret not in api.text
    assert client.get("/readyz").status_code == 503
    assert client.get("/healthz").status_code == 200


def test_ui_pages_say_in_html_that_a_sqlite_file_is_no_database(tmp_path):
    d = tmp_path / "<b>shop</b>"  # the path shows in the message: escaped, not markup
    config = build_world(d)
    (d / "auditor.db").write_bytes(b"this is not a database " * 200)
    with _service(config) as client:
        _assert_store_down_pages(
            client, f"cannot open the SQLite store {tmp_path}/&lt;b&gt;shop&lt;/b&gt;/auditor.db:"
                    " file is not a database")
        assert "<b>shop</b>" not in client.get("/").text


def test_ui_pages_of_a_stopped_postgresql_store_are_html_without_the_password(tmp_path):
    from tests.pg_server import PASSWORD, PgServer, skip_requested

    if skip_requested():
        pytest.skip("AUDITOR_SKIP_POSTGRES=1: PostgreSQL tests skipped")
    server = PgServer()  # its own server: this test stops it
    try:
        url = server.new_database()
        config = build_world(tmp_path)
        text = config.read_text().replace('[store]\npath = "auditor.db"', f'store = "{url}"')
        config.write_text(text)
        with _service(config) as client:
            assert client.get("/runs").status_code == 200  # up: the page
            server.stop()
            _assert_store_down_pages(client, f"cannot open the PostgreSQL store "
                                             f"postgresql://auditor:***@127.0.0.1:{server.port}/",
                                     secret=PASSWORD)
    finally:
        server.stop()


def _old_sqlite_store(path: Path, version: int) -> None:
    db = sqlite_utils.Database(str(path))
    sqlite_mod.migrate(db, sqlite_mod.MIGRATIONS[:version])
    db.close()


def test_opening_an_old_store_logs_the_migration_naming_the_store(tmp_path, caplog):
    path = tmp_path / "old.db"
    _old_sqlite_store(path, 3)
    with caplog.at_level(logging.INFO, logger="auditor.storage"):
        open_store(path).close()
        open_store(path).close()  # already migrated: nothing more said
    said = [r.getMessage() for r in caplog.records if "schema version" in r.getMessage()]
    assert said == [f"store {path} migrated from schema version 3 to "
                    f"{sqlite_mod.SCHEMA_VERSION}"]


def test_a_store_newer_than_the_auditor_is_refused_naming_it(tmp_path):
    config = build_world(tmp_path)
    path = tmp_path / "auditor.db"
    open_store(path).close()
    with sqlite3.connect(path) as c:
        c.execute("PRAGMA user_version = 99")
    with pytest.raises(StoreUnavailable, match=f"the store {path}: schema version 99 is newer"):
        open_store(path)
    r = CliRunner().invoke(main, ["runs", "-c", str(config)])
    assert r.exit_code == 2, r.output
    assert f"the store {path}: schema version 99 is newer" in r.output


def test_a_postgresql_store_newer_than_the_auditor_is_refused_naming_it(pg_server):
    import psycopg

    from tests.pg_server import PASSWORD

    url = pg_server.new_database()
    open_store(url).close()
    with psycopg.connect(url, autocommit=True) as c:
        c.execute("INSERT INTO schema_version (version) VALUES (99)")
    with pytest.raises(StoreError) as e:
        open_store(url)
    shown = url.replace(PASSWORD, "***")
    assert f"the store {shown}: schema version 99 is newer" in str(e.value)
    assert PASSWORD not in str(e.value)
