"""What an operator of the scale features meets (docs/scaling.md): the PostgreSQL store's
errors, `[run]` settings of distributed runs, `auditor worker` and `auditor run
--distributed` when something around them is missing or broken. Each test is a defect
found by trying the documented commands as a new operator would."""

from __future__ import annotations

import http.server
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import psycopg
import pytest

from auditor.errors import StoreError
from auditor.storage import postgres, redact

PW = "Pw-secret-42"


@pytest.mark.parametrize("url", [
    f"postgresql://auditor:{PW}@[bad/auditor",              # libpq quotes the URI it rejects
    "postgres://auditor:Pw%2Dsecret-42@[bad/auditor",      # percent-encoded, other scheme
    f"postgresql://auditor@[bad/auditor?password={PW}",    # libpq's query form
])
def test_a_url_the_driver_cannot_parse_never_shows_its_password(url):
    with pytest.raises(StoreError) as e:
        postgres.connect(url)
    msg = str(e.value)
    assert "cannot open the PostgreSQL store" in msg and "IPv6" in msg  # the driver's reason
    assert PW not in msg and "Pw%2Dsecret" not in msg and "***" in msg


def test_redact_hides_every_form_of_the_password():
    url = "postgresql://auditor:p%40ss-w0rd@db:5432/auditor"
    text = f"bad {url}; again postgresql://auditor:p%40ss-w0rd@db:5432/auditor; raw p@ss-w0rd"
    shown = redact(text, url)
    assert "p@ss-w0rd" not in shown and "p%40ss" not in shown
    assert shown.count("postgresql://auditor:***@db:5432/auditor") == 2
    assert redact("no password here", "postgresql://auditor@db/a") == "no password here"


CONFIG = """store = "postgresql://auditor@127.0.0.1:5432/auditor"
[master]
type = "csv"
source = "master.csv"
[run]
{run}
"""


@pytest.mark.parametrize("run, says", [
    ("shard_size = 0", "[run].shard_size: expected 1 or more, got 0"),
    ("shard_size = -5", "[run].shard_size: expected 1 or more, got -5"),
    ("job_attempts = 0", "[run].job_attempts: expected 1 or more, got 0"),
    ("stalled_after = 0", "[run].stalled_after: expected seconds above 0"),
    ("stalled_after = -1.5", "[run].stalled_after: expected seconds above 0"),
])
def test_distributed_run_settings_out_of_range_are_config_errors(tmp_path, run, says):
    """shard_size = 0 made a shard job per listing (the read job took max(1, 0)), and
    stalled_after = 0 handed every running job back to the queue at each look."""
    from auditor.config import load_config
    from auditor.errors import ConfigError

    path = tmp_path / "config.toml"
    path.write_text(CONFIG.format(run=run))
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert says in str(e.value)
    path.write_text(CONFIG.format(run="shard_size = 1\njob_attempts = 1\nstalled_after = 0.5"))
    assert load_config(path).run["shard_size"] == 1



def test_run_distributed_on_a_sqlite_store_is_a_config_error(tmp_path):
    """`[run] distributed = true` with a SQLite store passed `auditor config check`; every
    `auditor run` (and every scheduled audit of `auditor serve`) then failed."""
    from auditor.config import load_config
    from auditor.errors import ConfigError

    path = tmp_path / "config.toml"
    path.write_text(CONFIG.format(run="distributed = true").replace(
        'store = "postgresql://auditor@127.0.0.1:5432/auditor"', '[store]\npath = "a.db"'))
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert "[run].distributed: distributed runs need the PostgreSQL store" in str(e.value)
    path.write_text(CONFIG.format(run="distributed = true"))
    assert load_config(path).run["distributed"] is True


ROOT = Path(__file__).resolve().parent.parent


def _cli(*args: str | Path, env: dict[str, str] | None = None,
         timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "auditor", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def _demo_config(tmp_path: Path, store_url: str, extra: str = "") -> Path:
    """A config of the mini world's file channels on this store."""
    from auditor.world.generate import generate_world

    world = tmp_path / "world"
    generate_world(world, size=30, seed=5, base_url="http://127.0.0.1:9")
    cfg = tmp_path / "config.toml"
    cfg.write_text(f'''store = "{store_url}"
{extra}
[master]
type = "csv"
source = "{world}/master.csv"

[checks.image]
enabled = false

[[channels]]
name = "google"
type = "google_merchant"
source = "{world}/feeds/google.xml"

[[channels]]
name = "amazon"
type = "amazon_listings"
source = "{world}/feeds/amazon.tsv"
currency = "EUR"
''')
    return cfg


def test_without_the_job_queue_installed_worker_and_distributed_run_say_what_to_install(
        tmp_path, pg_server):
    """Without procrastinate, `auditor run --distributed` imported the master, then
    crashed with an ImportError traceback (the run recorded as interrupted), and
    `auditor worker` printed a traceback."""
    from auditor.storage import open_store

    blocker = tmp_path / "blocker" / "procrastinate"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('No module named procrastinate')\n")
    env = {"PYTHONPATH": f"{blocker.parent}{os.pathsep}{ROOT}"}
    url = pg_server.new_database()
    cfg = _demo_config(tmp_path, url)
    for args in (("worker", "--once"), ("run", "--distributed")):
        r = _cli(*args, "--config", cfg, env=env)
        assert r.returncode == 2, r.stderr
        assert "pip install 'omni-auditor[distributed]'" in r.stderr, r.stderr
        assert "Traceback" not in r.stderr
    store = open_store(url)
    try:
        assert store.runs(5) == []  # refused before a run was recorded
    finally:
        store.close()


def _wait_for(path: Path, text: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and text in path.read_text(errors="replace"):
            return
        time.sleep(0.2)
    raise AssertionError(f"{text!r} not in {path} after {timeout} s: "
                         f"{path.read_text(errors='replace')[-3000:] if path.exists() else ''}")


def test_a_distributed_run_says_when_no_worker_runs_and_why_a_job_failed_for_good(
        tmp_path, pg_server):
    """The coordinator waited in silence when no `auditor worker` was running, and a
    channel whose job failed for good said only "the read job of channel google failed":
    the reason was in the worker's log alone. Now the wait is announced (naming the
    command to start), the channel's message and `auditor runs` carry the job's error, and
    the run exits 2. No output shows the store's password."""
    from tests.pg_server import PASSWORD

    url = pg_server.new_database()
    cfg = _demo_config(tmp_path, url, "[run]\nstalled_after = 2\n")
    out, err = tmp_path / "run.out", tmp_path / "run.err"
    coordinator = subprocess.Popen(
        [sys.executable, "-m", "auditor", "run", "--distributed", "--config", str(cfg)],
        cwd=ROOT, stdout=out.open("wb"), stderr=err.open("wb"))
    worker = None
    try:
        _wait_for(err, "no `auditor worker` is taking jobs", 120)
        assert f"start `auditor worker --config {cfg}`" in err.read_text()
        # The worker sees another config than the coordinator's: every job it takes fails.
        cfg.write_text(cfg.read_text() + "# edited while the run waits\n")
        worker = subprocess.Popen([sys.executable, "-m", "auditor", "worker", "--config",
                                   str(cfg), "--heartbeat", "0.5"], cwd=ROOT,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        assert coordinator.wait(150) == 2
    finally:
        for p in (coordinator, worker):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()
    text = out.read_text()
    for channel in ("google", "amazon"):  # (its read job's error, or the master job's)
        assert re.search(rf"{channel}: the (read job of channel {channel}|master job) failed: "
                         rf"run 1: the config {re.escape(str(cfg))} on this worker is missing"
                         r" or differs from the coordinator's", text), text
    r = _cli("runs", "--errors", "--config", cfg)
    assert "differs from the coordinator's" in r.stdout, r.stdout + r.stderr
    assert PASSWORD not in text + err.read_text() + r.stdout + r.stderr


def test_a_partial_channel_quotes_the_error_of_its_failed_shard(tmp_path, monkeypatch):
    """A channel left partial by a shard that failed for good said "1 of 3 shard jobs
    failed (shards 1)" and no more: the finish job now quotes the shard's recorded error."""
    import auditor.distributed as d
    from tests.test_distributed import _in_process

    real = d.finish_channel
    monkeypatch.setattr(d, "finish_channel", lambda *a, **k: real(
        *a, errors={"shard 1": "OperationalError: server closed the connection"}, **k))
    store, summary = _in_process(tmp_path, "bad", 1)
    store.close()
    assert summary.status.value == "partial"
    assert summary.message.endswith("nothing concluded missing or removed; shard 1: "
                                    "OperationalError: server closed the connection")


class _SlowFeed(http.server.BaseHTTPRequestHandler):
    """Serves one file after ``delay`` seconds: a read job that is surely in flight."""

    body = b""
    delay = 0.0

    def do_GET(self) -> None:  # noqa: N802
        time.sleep(self.delay)
        try:
            self.send_response(200)
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(self.body)))
            self.end_headers()
            self.wfile.write(self.body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the worker that asked was killed meanwhile

    def log_message(self, *args: object) -> None:
        pass


def test_a_job_whose_worker_died_on_its_last_attempt_names_that_as_the_reason(
        tmp_path, pg_server):
    """With `[run] job_attempts = 1`, a read job whose worker was SIGKILL-ed fails for
    good: the channel says its worker stopped sending heartbeats, the others finish on
    another worker, and the run exits 2."""
    url = pg_server.new_database()
    cfg = _demo_config(tmp_path, url, "[run]\nstalled_after = 2\njob_attempts = 1\n"
                                      "[http]\nallow_private = true\n")
    feed = tmp_path / "world" / "feeds" / "google.xml"
    handler = type("Slow", (_SlowFeed,), {"body": feed.read_bytes(), "delay": 8.0})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    cfg.write_text(cfg.read_text().replace(
        f'source = "{feed}"', f'source = "http://127.0.0.1:{server.server_address[1]}/g.xml"'))
    victim = subprocess.Popen([sys.executable, "-m", "auditor", "worker", "--config",
                               str(cfg), "--heartbeat", "0.5"], cwd=ROOT,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    out, err = tmp_path / "run.out", tmp_path / "run.err"
    coordinator = subprocess.Popen(
        [sys.executable, "-m", "auditor", "-v", "run", "--distributed", "--config", str(cfg)],
        cwd=ROOT, stdout=out.open("wb"), stderr=err.open("wb"))
    rescuer = None
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            with psycopg.connect(url, autocommit=True) as conn:
                if conn.execute("SELECT to_regclass('procrastinate_jobs')").fetchone()[0] \
                        and conn.execute(
                            "SELECT 1 FROM procrastinate_jobs WHERE status = 'doing' AND"
                            " task_name = 'auditor.read' AND args->>'channel' = 'google'"
                        ).fetchone():
                    break
            time.sleep(0.1)
        else:
            raise AssertionError("the google read job was never taken")
        victim.kill()  # SIGKILL, while its read waits for the slow feed
        victim.wait()
        rescuer = subprocess.Popen([sys.executable, "-m", "auditor", "worker", "--config",
                                    str(cfg), "--heartbeat", "0.5"], cwd=ROOT,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        assert coordinator.wait(150) == 2, err.read_text()[-3000:]
    finally:
        server.shutdown()
        for p in (coordinator, victim, rescuer):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()
    text = out.read_text()
    assert ("google: the read job of channel google failed: its worker stopped sending "
            "heartbeats (killed, or its machine lost) on each of 1 attempts") in text, text
    assert "│ amazon " in text and "complete" in text.split("│ amazon ", 1)[1].split("\n")[0]
    # -v: the coordinator's progress per channel, without procrastinate's "Deferred 1 job"
    log = err.read_text()
    assert re.search(r"run 1 channel amazon read: [\d,]+ listings, \d+ shard job\(s\) queued", log)
    assert re.search(r"run 1 channel amazon finished: complete \([12] of 2 channels done\)", log)
    assert "Deferred 1 job" not in log


def test_crawl_pacing_survives_a_lost_database_session(pg_server):
    """A worker's pacing connection lived for the worker's life: after a PostgreSQL restart
    the next crawl request of every worker failed ("connector shopify crashed:
    AdminShutdown: terminating connection due to administrator command") and its channel
    with it. The pacer now reconnects once; the lost session's slots are free already."""
    from auditor.distributed import ensure_queue
    from auditor.storage.jobs import HostPacer

    url = pg_server.new_database()
    ensure_queue(url)
    pacer = HostPacer(url)
    try:
        assert pacer("shop.example", 0.0) == 0.0
        assert pacer.acquire("shop.example", 1) == 0
        with psycopg.connect(url, autocommit=True) as admin:
            killed = admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE"
                " application_name = 'auditor crawl pacing'").fetchall()
            assert killed == [(True,)]
        assert pacer("shop.example", 0.0) == 0.0   # the next request's reservation
        pacer.release("shop.example", 0)           # its lock went with the session
        assert pacer.acquire("shop.example", 1) == 0  # a new session: the slot is free
        pacer.back_off("shop.example", 0.5)
        assert 0.3 < pacer("shop.example", 0.1) <= 0.6  # the back-off holds on the new one
        pacer.release("shop.example", 0)
    finally:
        pacer.close()


def test_config_check_opens_the_store_and_names_the_key_that_set_it(tmp_path, pg_server):
    """`auditor config check` said "OK, store postgresql://..." for a wrong password or a
    database that does not exist (the first `auditor run` then failed), and a bad URL
    given as `store = "..."` at the top was reported as `[store].url`."""
    from tests.pg_server import PASSWORD

    url = pg_server.new_database()
    cfg = _demo_config(tmp_path, url.replace(PASSWORD, "not-the-password"))
    r = _cli("config", "check", "--config", cfg)
    assert r.returncode == 2
    assert "  - store: cannot open the PostgreSQL store postgresql://auditor:***@" in r.stderr
    assert "password authentication failed" in r.stderr and "not-the-password" not in r.stderr
    cfg.write_text(cfg.read_text().replace(url.replace(PASSWORD, "not-the-password"),
                                           url.rsplit("/", 1)[0] + "/no_such_db"))
    r = _cli("config", "check", "--config", cfg)
    assert r.returncode == 2 and 'database "no_such_db" does not exist' in r.stderr
    assert PASSWORD not in r.stderr
    cfg.write_text(cfg.read_text().replace(url.rsplit("/", 1)[0] + "/no_such_db", url))
    r = _cli("config", "check", "--config", cfg)
    assert r.returncode == 0, r.stderr
    assert "every source opens" in r.stdout and PASSWORD not in r.stdout
    with psycopg.connect(url, autocommit=True) as conn:  # checked, not created
        assert conn.execute("SELECT to_regclass('schema_version')").fetchone() == (None,)
    cfg.write_text(cfg.read_text().replace(url, "postgresq://auditor@db/auditor"))
    r = _cli("config", "check", "--offline", "--config", cfg)
    assert r.returncode == 2 and "  - store: store URL postgresq://" in r.stderr
    assert "[store].url" not in r.stderr
    lite = tmp_path / "lite.toml"
    lite.write_text(cfg.read_text().replace('store = "postgresq://auditor@db/auditor"',
                                            f'[store]\npath = "{tmp_path}/gone/a.db"'))
    r = _cli("config", "check", "--config", lite)
    assert r.returncode == 2
    assert f"  - [store].path: no folder {tmp_path}/gone for the SQLite store" in r.stderr


def test_the_progress_display_marks_a_finished_channel():
    """On a terminal a distributed run showed each channel's spinner from its read on,
    still spinning while its shard jobs ran and after the channel was done: a channel
    done now says so and stops."""
    import io

    from rich.console import Console
    from rich.progress import Progress

    from auditor.cli import ProgressListener
    from auditor.events import ChannelFinished, SourceProgress

    progress = Progress(console=Console(file=io.StringIO()))
    listener = ProgressListener(progress)
    listener.source_progress(SourceProgress(1, "google", 19044))
    listener.source_progress(SourceProgress(1, "meta", 1000))
    listener.channel_finished(ChannelFinished(1, "google", "complete", listings=19044))
    listener.channel_finished(ChannelFinished(1, "amazon", "failed"))  # failed unread
    tasks = {t.description: t for t in progress.tasks}
    assert set(tasks) == {"google complete", "meta", "amazon failed"}
    assert tasks["google complete"].finished and tasks["google complete"].completed == 19044
    assert tasks["amazon failed"].finished and not tasks["meta"].finished


def test_auditor_worker_says_it_started_without_v(tmp_path, pg_server):
    """`auditor worker` printed nothing without -v: a new operator could not tell a
    worker waiting for jobs from one that hung. It says one line (the URL without its
    password); -q keeps it quiet."""
    from tests.pg_server import PASSWORD

    url = pg_server.new_database()
    cfg = _demo_config(tmp_path, url)
    r = _cli("worker", "--once", "--config", cfg)
    assert r.returncode == 0, r.stderr
    assert re.fullmatch(r"auditor worker \d+ taking jobs of postgresql://auditor:\*\*\*@"
                        r"127\.0\.0\.1:\d+/\w+ until the queue is empty; Ctrl-C stops it "
                        r"after the job in hand\n", r.stderr), r.stderr
    assert PASSWORD not in r.stderr
    assert _cli("-q", "worker", "--once", "--config", cfg).stderr == ""


def test_a_run_after_a_killed_coordinator_drops_what_that_run_left(tmp_path, pg_server):
    """A coordinator killed with SIGKILL (or crashed after storing its master pack) left its
    staged listings and pack in the database for good (30 MB at 20,000 SKUs; ~500 MB at
    250,000) and its run `running` in dist_runs, so its queued jobs still ran. The next
    distributed run (the run lock says no other coordinator lives) ends such runs."""
    from auditor.distributed import ensure_queue

    url = pg_server.new_database()
    cfg = _demo_config(tmp_path, url)
    ensure_queue(url)
    with psycopg.connect(url, autocommit=True) as conn:  # what a killed run 7 left
        conn.execute("INSERT INTO dist_runs (run_id, config, config_sha, snapshot_id, now,"
                     " shard_size) VALUES (7, 'c.toml', 'x', 1, now(), 10)")
        conn.execute("INSERT INTO dist_staged VALUES (7, 'google', 1, 0, 'listings')")
        conn.execute("INSERT INTO dist_packs VALUES (7, 0, 'pack'), (6, 0, 'pack')")
    worker = subprocess.Popen([sys.executable, "-m", "auditor", "worker", "--config",
                               str(cfg)], cwd=ROOT, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        r = _cli("run", "--distributed", "--config", cfg)
    finally:
        worker.terminate()
        worker.wait(30)
    assert r.returncode in (0, 1), r.stderr
    with psycopg.connect(url, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM dist_staged").fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM dist_packs").fetchone() == (0,)
        assert conn.execute("SELECT run_id, status FROM dist_runs ORDER BY run_id").fetchall() \
            == [(1, "finished"), (7, "interrupted")]
