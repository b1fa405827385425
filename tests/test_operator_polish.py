"""What an operator and a new user trip over around the store, the runs and the alerts:
HTML pages when the store is down, migrations that say what they did, `auditor runs`
on an empty store, why a run was interrupted or held presence, receivers nothing routes
to. Each test is a defect found by using the product as a new user would."""

from __future__ import annotations

import contextlib
import logging
import re
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


def _run(config: Path) -> int:
    return CliRunner().invoke(main, ["run", "-c", str(config)], catch_exceptions=False).exit_code


@pytest.fixture(scope="module")
def history(tmp_path_factory):
    """A store whose runs are: 1 complete; 2 presence held (19 of 31 items vanished);
    3 the feed missing (failed); 4 stopped by SIGTERM mid-read (interrupted)."""
    import threading
    import time

    from auditor.child import run_in_child
    from tests.test_auditor_signals import SlowFeed

    d = tmp_path_factory.mktemp("history")
    config = build_world(d)
    assert _run(config) == 1
    feed = (d / "google.xml").read_text()
    items = re.findall(r"<item>.*?</item>", feed)
    (d / "google.xml").write_text(feed[:feed.index("<item>")] + "".join(items[:12])
                                  + "</channel></rss>")
    assert _run(config) == 2  # presence held
    (d / "google.xml").unlink()
    assert _run(config) == 2  # the source failed
    slow = SlowFeed()
    try:
        config.write_text(config.read_text().replace('source = "google.xml"',
                                                     f'source = "{slow.url}"'))
        stop = threading.Event()

        def stop_when_reading() -> None:
            deadline = time.monotonic() + 60
            while slow.requests < 1 and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(0.3)
            stop.set()

        threading.Thread(target=stop_when_reading, daemon=True).start()
        assert run_in_child(config, stop=stop).status == "interrupted"
    finally:
        slow.close()
    return config


def test_runs_page_says_why_a_run_was_interrupted_and_what_presence_was_held(history):
    with _service(history) as client:
        html = client.get("/runs").text
    rows = {int(m[0]): m[1] for m in re.findall(r"<tr><td>(\d+)</td>(.*?)</tr>", html, re.S)}
    assert sorted(rows) == [1, 2, 3, 4]
    assert '<div class="no interrupted">interrupted at ' in rows[4] and ": SIGTERM</div>" in rows[4]
    assert ("presence held: 19 of 31 listings vanished since the last complete read (more than "
            "max_drop = 10%)") in rows[2]
    assert "18 presence findings held, 19 listings not counted as removed" in rows[2]
    # the command in the reason is code on the page, not Markdown backticks
    assert "<code>auditor runs accept 2 google</code>" in rows[2] and "`" not in rows[2]
    assert "presence not concluded (the read failed): no listing counts as missing" in rows[3]
    assert "presence" not in rows[1]


def test_auditor_runs_says_what_presence_a_failed_read_could_not_conclude(history):
    r = CliRunner().invoke(main, ["runs", "-c", str(history)], catch_exceptions=False)
    assert r.exit_code == 0
    runs = r.output.split("\nrun ")
    assert "interrupted at" in runs[0] and ": SIGTERM" in runs[0]
    assert "google: failed" in runs[1]
    assert "presence not concluded (the read failed): no listing counts as missing" in runs[1]
    assert "(18 presence findings held)" in runs[2]


def test_auditor_runs_on_an_empty_store_says_so(tmp_path):
    config = build_world(tmp_path)
    open_store(tmp_path / "auditor.db").close()
    r = CliRunner().invoke(main, ["runs", "-c", str(config)], catch_exceptions=False)
    assert r.exit_code == 0
    assert r.output == f"no runs yet in {tmp_path / 'auditor.db'}: run `auditor run`\n"
    r = CliRunner().invoke(main, ["runs", "-c", str(config), "--format", "json"])
    assert r.output.strip() == "[]"  # JSON stays JSON


def test_serve_records_why_it_marked_a_run_interrupted(tmp_path):
    """A run a killed process left 'running' is recorded interrupted by `auditor serve` at
    its start, with the reason the runs page shows."""
    from datetime import datetime, timezone

    config = build_world(tmp_path)
    store = open_store(tmp_path / "auditor.db")
    run_id = store.start_run(datetime(2020, 1, 1, tzinfo=timezone.utc), None)
    store.close()
    with _service(config) as client:
        html = client.get("/runs").text
    assert "interrupted at 2020-" not in html  # recorded now, not at the start
    assert ("found still &#39;running&#39; by <code>auditor serve</code> at its start (its "
            "process is gone)") in html  # the command as code on the page
    store = open_store(tmp_path / "auditor.db")
    (run,) = store.runs()
    store.close()
    assert run.id == run_id and run.status == "interrupted"


ALERTS = """
[[alerts.receivers]]
name = "hook"
type = "webhook"
url = "http://127.0.0.1:9/hook"

[[alerts.receivers]]
name = "mail"
type = "email"
host = "127.0.0.1"
from = "auditor@example.com"
to = ["ops@example.com"]
"""


@pytest.mark.parametrize("routes, warned", [
    ("", ["[[alerts.receivers]] 'hook', 'mail': no [[alerts.routes]] in the config, so no "
          "alert is sent to any receiver"]),
    ('[[alerts.routes]]\nreceivers = ["mail"]\n',
     ["[[alerts.receivers]] 'hook': no [[alerts.routes]] names it, so nothing is sent to it"]),
    ('[[alerts.routes]]\nreceivers = ["mail", "hook"]\n', []),
], ids=["no route", "one receiver unrouted", "every receiver routed"])
def test_config_check_warns_of_a_receiver_no_route_sends_to(tmp_path, routes, warned):
    config = build_world(tmp_path, extra_toml=ALERTS + routes)
    r = CliRunner().invoke(main, ["config", "check", "--offline", "-c", str(config)])
    assert r.exit_code == 0, r.output  # a warning, not an error
    said = [line for line in r.output.splitlines() if line.startswith("warning:")]
    assert len(said) == len(warned), r.output
    for line, expected in zip(said, warned, strict=True):
        assert expected in line
    assert ": OK, store" in r.output


def test_alerts_docs_map_every_smtp_setting_to_the_email_receivers_name():
    """[smtp] and an email receiver name the same settings differently (sender / from,
    security / starttls+ssl): docs/alerts.md has the table from one to the other, and it
    covers every setting of both."""
    from auditor.alerts.config import ALERTS_OPTIONS, RECEIVER_OPTIONS
    from auditor.config import SMTP_OPTIONS

    text = (Path(__file__).parent.parent / "docs" / "alerts.md").read_text()
    start = text.index("| `[smtp]` (weekly report) |")
    rows = [line.split("|")[1:3] for line in text[start:].split("\n\n")[0].splitlines()[2:]]
    left = " ".join(r[0] for r in rows)
    right = " ".join(r[1] for r in rows)
    for o in SMTP_OPTIONS:
        assert f"`{o.name}" in left, o.name
    email = [o.name for o in RECEIVER_OPTIONS if o.help.startswith("email:")]
    assert email and all(f"`{name}" in right for name in email), email
    assert "`[alerts].timeout`" in right and "timeout" in {o.name for o in ALERTS_OPTIONS}
    # [smtp].host no longer claims email alert receivers use it
    assert "[[alerts.receivers]]" in next(o.help for o in SMTP_OPTIONS if o.name == "host")


def test_an_action_the_store_refuses_is_an_html_page(tmp_path, monkeypatch):
    """Acknowledging a finding a run resolved meanwhile (another tab, an old page): the
    store refuses, and the UI says why in a page (409), not in JSON."""
    monkeypatch.setenv("AUDITOR_UI_PASSWORD", "pw-for-the-ui")
    config = build_world(tmp_path)
    assert _run(config) == 1
    store = open_store(tmp_path / "auditor.db")
    fp = store.findings(state="open")[0].fingerprint
    store.resolve_finding(fp, "test")
    store.close()
    with _service(config) as client:
        token = client.get("/login").text.split('name="csrf" value="')[1].split('"')[0]
        r = client.post("/login", data={"password": "pw-for-the-ui", "csrf": token, "next": "/"},
                        follow_redirects=False)
        assert r.status_code == 303
        token = client.get("/").text.split('name="csrf" value="')[1].split('"')[0]
        r = client.post("/actions/findings", data={"action": "ack", "fp": fp, "csrf": token})
    assert r.status_code == 409 and r.headers["content-type"].startswith("text/html")
    assert "<h1>That could not be done</h1>" in r.text
    assert f"finding {fp} is resolved: nothing to ack" in r.text


def test_the_ui_tests_client_imports_without_a_deprecation_warning():
    """Starlette's TestClient (tests/test_newuser.py, test_web_ui.py, this file) warns when
    it runs on plain httpx: the test extra installs httpx2, which it wants."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-W", "error::DeprecationWarning", "-c",
                           "import starlette.testclient"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-500:]


def test_config_check_finds_a_store_file_that_is_no_database_or_too_new(tmp_path):
    """The store-down page sends the operator to `auditor config check`: it must find
    what the UI found, without writing to the file."""
    config = build_world(tmp_path)
    db = tmp_path / "auditor.db"
    db.write_bytes(b"not a database " * 100)
    r = CliRunner().invoke(main, ["config", "check", "-c", str(config)])
    assert r.exit_code == 2
    assert f"[store].path: cannot open the SQLite store {db}: file is not a database" in r.output
    assert db.read_bytes() == b"not a database " * 100  # untouched
    db.unlink()
    open_store(db).close()
    with sqlite3.connect(db) as c:
        c.execute("PRAGMA user_version = 99")
    r = CliRunner().invoke(main, ["config", "check", "-c", str(config)])
    assert r.exit_code == 2
    assert f"[store].path: the store {db}: schema version 99 is newer than this auditor" \
        in r.output
    with sqlite3.connect(db) as c:
        c.execute(f"PRAGMA user_version = {sqlite_mod.SCHEMA_VERSION}")
    r = CliRunner().invoke(main, ["config", "check", "-c", str(config)])
    assert r.exit_code == 0, r.output


def test_config_check_finds_a_postgresql_store_too_new(tmp_path, pg_server):
    import psycopg

    from tests.pg_server import PASSWORD

    url = pg_server.new_database()
    config = build_world(tmp_path)
    config.write_text(config.read_text().replace('[store]\npath = "auditor.db"',
                                                 f'store = "{url}"'))
    assert CliRunner().invoke(main, ["config", "check", "-c", str(config)]).exit_code == 0
    open_store(url).close()
    with psycopg.connect(url, autocommit=True) as c:
        c.execute("INSERT INTO schema_version (version) VALUES (99)")
    r = CliRunner().invoke(main, ["config", "check", "-c", str(config)])
    assert r.exit_code == 2
    assert (f"store: the store {url.replace(PASSWORD, '***')}: schema version 99 is newer"
            in r.output)
    assert PASSWORD not in r.output


def test_demo_serve_names_the_dashboard_by_a_path_that_exists(tmp_path, monkeypatch):
    """`auditor demo --serve` is often run outside the source tree: the Grafana dashboard
    and Prometheus config it points to must be found from there."""
    from auditor.demo import ops_line

    monkeypatch.chdir(tmp_path)
    line = ops_line(8080)
    paths = [Path(w) for w in line.split() if w.endswith((".json", ".yml"))]
    assert len(paths) == 2 and all(p.is_absolute() and p.is_file() for p in paths), line
    assert "127.0.0.1:8080" in line


def test_weekly_report_right_after_the_first_run_says_which_week_to_ask(tmp_path):
    """A new user runs `auditor report weekly` after the first audit: the default week
    (the last complete one) has no run; the error says which --week has one."""
    from datetime import datetime, timezone

    from auditor.reports.weekly import week_label

    config = build_world(tmp_path)
    assert _run(config) == 1
    r = CliRunner().invoke(main, ["report", "weekly", "-c", str(config),
                                  "--out", str(tmp_path / "weekly")])
    assert r.exit_code == 2
    current = week_label(datetime.now(timezone.utc))
    assert f"the first run is later: `--week {current}` reports the week in progress" in r.output
    r = CliRunner().invoke(main, ["report", "weekly", "-c", str(config), "--week", current,
                                  "--out", str(tmp_path / "weekly")])
    assert r.exit_code == 0, r.output


def test_what_counts_as_the_store_being_unavailable():
    import psycopg

    from auditor.storage import unavailable

    assert unavailable(StoreUnavailable("cannot open the SQLite store x.db"))
    assert unavailable(sqlite3.OperationalError("unable to open database file"))
    assert unavailable(sqlite3.DatabaseError("file is not a database"))
    assert unavailable(psycopg.OperationalError("server closed the connection unexpectedly"))
    assert unavailable(psycopg.errors.AdminShutdown("terminating connection"))
    assert unavailable(psycopg.InterfaceError("the connection is closed"))
    # a bug's SQL, or a store refusing what was asked: not "the store is down"
    assert not unavailable(psycopg.errors.UndefinedColumn("column x does not exist"))
    assert not unavailable(sqlite3.IntegrityError("UNIQUE constraint failed"))
    assert not unavailable(StoreError("no finding with fingerprint abcd"))
    assert not unavailable(ValueError("x"))


def test_postgresql_gone_mid_request_is_503_html_for_pages_and_json_for_the_api(tmp_path,
                                                                               caplog):
    """The server stops while a page reads (the store opened, the query fails)."""
    import psycopg
    from fastapi.testclient import TestClient

    from auditor.service.app import Service, create_app

    url = "postgresql://auditor:Pw-mid-42@127.0.0.1:5/auditor"

    def shutdown() -> Exception:
        return psycopg.errors.AdminShutdown(
            f"terminating connection due to administrator command ({url})")

    class Gone:  # a store whose server stopped after it was opened
        @property
        def schema_version(self):
            raise shutdown()

        def __getattr__(self, name):
            def fail(*a, **k):
                raise shutdown()
            return fail

    @contextlib.contextmanager
    def opener():
        yield Gone()

    config = build_world(tmp_path)
    config.write_text(config.read_text().replace('[store]\npath = "auditor.db"',
                                                 f'store = "{url}"'))
    service = Service(config, load_config(config), schedule=False)
    service.open_store = opener  # type: ignore[method-assign]
    with TestClient(create_app(service), raise_server_exceptions=False) as client:
        page = client.get("/runs")
        api = client.get("/api/runs")
        bug = client.get("/api/findings?limit=abc")  # a plain 422 stays what it was
        ready = client.get("/readyz")
        metrics = client.get("/metrics")
    assert page.status_code == 503 and page.headers["content-type"].startswith("text/html")
    assert "terminating connection due to administrator command" in page.text
    assert api.status_code == 503 and api.headers["content-type"] == "application/json"
    assert api.json()["detail"].startswith("the store could not be read: terminating")
    assert "Pw-mid-42" not in page.text and "Pw-mid-42" not in api.text
    assert "Pw-mid-42" not in ready.text and ready.status_code == 503
    assert "auditor_store_up 0.0" in metrics.text
    assert bug.status_code == 422
    assert caplog.records and not any("Pw-mid-42" in r.getMessage() for r in caplog.records)


def test_alerts_send_says_why_firing_alerts_make_no_notification(tmp_path):
    """`alerts send` printed "17 firing ... 0 new notification(s)" and nothing else when
    no route names the receiver."""
    config = build_world(tmp_path, extra_toml=ALERTS)
    assert _run(config) == 1
    r = CliRunner().invoke(main, ["alerts", "send", "-c", str(config)])
    assert "0 new notifications" in r.output
    assert "warning: [[alerts.receivers]] 'hook', 'mail': no [[alerts.routes]] in the config" \
        in r.output


def test_auditor_runs_csv_has_the_runs_times_and_why_it_was_interrupted(history):
    import csv
    import io

    r = CliRunner().invoke(main, ["runs", "-c", str(history), "--format", "csv"],
                           catch_exceptions=False)
    rows = {int(x["run_id"]): x for x in csv.DictReader(io.StringIO(r.output))}
    store = open_store(history.parent / "auditor.db")
    runs = {x.id: x for x in store.runs()}
    store.close()
    for run_id, row in rows.items():  # the run's own times (a source's were shown)
        assert row["started_at"] == runs[run_id].started_at.isoformat()
    assert rows[4]["interrupted"] == "SIGTERM" and rows[1]["interrupted"] == ""
    # held presence in columns of its own (it was JSON in one cell)
    assert rows[2]["presence_state"] == "held" and rows[2]["presence_reason"]
    assert int(rows[2]["presence_vanished"]) > 0 and rows[2]["presence_held_findings"]
    assert "presence_held" not in rows[2] and "{" not in ",".join(rows[2].values())
    assert rows[1]["presence_state"] == rows[1]["presence_reason"] == ""


def test_a_mistyped_address_is_the_uis_not_found_page_for_a_browser(tmp_path):
    config = build_world(tmp_path)
    assert _run(config) == 1
    html = {"accept": "text/html,application/xhtml+xml,*/*;q=0.8"}
    with _service(config) as client:
        page = client.get("/finding/<b>x</b>", headers=html)
        plain = client.get("/finding/x")
        api = client.get("/api/nope", headers=html)
        run = client.get("/api/runs/999", headers=html)
    assert page.status_code == 404 and page.headers["content-type"].startswith("text/html")
    assert "There is no page /finding/&lt;b&gt;x&lt;/b&gt;." in page.text
    assert 'href="/runs"' in page.text  # the UI's header, to find the way back
    assert plain.status_code == 404 and plain.json() == {"detail": "Not Found"}
    assert api.status_code == 404 and api.json() == {"detail": "Not Found"}
    assert run.status_code == 404 and run.json() == {"detail": "no run 999"}


def test_a_run_that_audited_no_channel_says_so_instead_of_an_empty_table(tmp_path):
    config = build_world(tmp_path)
    (tmp_path / "master.csv").unlink()
    r = CliRunner().invoke(main, ["run", "-c", str(config)])
    assert r.exit_code == 2
    assert "run 1: failed, no channel audited" in r.output
    assert "┏" not in r.output and "channel ┃" not in r.output
    assert "exit 2: the master was rejected: see `auditor runs --errors`" in r.output
