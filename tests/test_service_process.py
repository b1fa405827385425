"""A real `auditor serve` process: SIGTERM during an audit, SIGHUP with good and broken configs."""

from __future__ import annotations

import json
import signal
import sqlite3
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


from service_helpers import build_world, get, serving, wait_for
from service_helpers import get as _get


class SlowFeed:
    """Serves the world's Google feed after ``delay`` seconds."""

    def __init__(self, feed: bytes, delay: float):
        self.requested = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                outer.requested.set()
                time.sleep(delay)
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(feed)))
                    self.end_headers()
                    self.wfile.write(feed)
                except OSError:
                    pass

            def log_message(self, *a):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/google.xml"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def runs(config) -> list[tuple[int, str]]:
    db = sqlite3.connect(config.parent / "auditor.db")
    try:
        return db.execute("SELECT id, status FROM runs ORDER BY id").fetchall()
    finally:
        db.close()


def slow_world(tmp_path, delay, stop_timeout):
    build_world(tmp_path, n=10)  # writes google.xml
    feed = SlowFeed((tmp_path / "google.xml").read_bytes(), delay)
    config = build_world(tmp_path, n=10, feed_source=feed.url,
                         serve={"stop_timeout": stop_timeout, "jitter": 0.0},
                         master_schedule=None)
    return feed, config


def test_sigterm_during_an_audit_past_the_bound_records_it_interrupted(tmp_path):
    feed, config = slow_world(tmp_path, delay=120, stop_timeout=1.0)
    try:
        with serving(config) as s:
            # catch-up at start-up: the channel was never read
            assert feed.requested.wait(60), s.logtext()
            status, sched = get(s.url + "/api/schedule")
            assert sched["sources"][0]["running"] is True
            t0 = time.monotonic()
            code = s.stop(signal.SIGTERM, timeout=60)
            assert code == 0, s.logtext()
            assert time.monotonic() - t0 < 30
            log = s.logtext()
            assert "still running after 1 s: stopping it" in log
            assert "recorded as interrupted" in log
        assert runs(config)[-1][1] == "interrupted"
    finally:
        feed.close()


def test_sigterm_lets_a_short_audit_finish(tmp_path):
    feed, config = slow_world(tmp_path, delay=3, stop_timeout=60.0)
    try:
        with serving(config) as s:
            assert feed.requested.wait(60), s.logtext()
            assert s.stop(signal.SIGTERM, timeout=90) == 0, s.logtext()
            assert "interrupted" not in s.logtext()
        assert runs(config)[-1][1] == "complete"
    finally:
        feed.close()


def test_sighup_reloads_a_good_config_and_refuses_a_broken_one(tmp_path):
    """Robust on a loaded machine (it failed once there): every call waits up to a minute
    for its answer, and the service runs one reload at a time, logging a refusal before
    showing it (tests/test_operator_polish4.py has the race this removed)."""
    config = build_world(tmp_path, n=5, serve={"catch_up": False})

    def get(url):  # a loaded machine may take more than the helper's 10 s to answer
        return _get(url, timeout=60)

    with serving(config) as s:
        def schedules():
            return {x["source"]: x["schedule"] for x in get(s.url + "/api/schedule")[1]["sources"]}

        assert schedules() == {"master": "0 6 * * 1", "google": "0 */4 * * *"}
        good = config.read_text().replace('schedule = "0 */4 * * *"', 'schedule = "15 3 * * 0"')
        config.write_text(good)
        s.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: schedules().get("google") == "15 3 * * 0", what="the reload", timeout=90)
        nxt = next(x for x in get(s.url + "/api/schedule")[1]["sources"]
                   if x["source"] == "google")["next_run_at"]
        from datetime import datetime

        assert datetime.fromisoformat(nxt).strftime("%a") == "Sun"  # cron's 0 is Sunday

        config.write_text(good.replace('type = "google_merchant"', 'type = "googel"'))
        s.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: get(s.url + "/api/schedule")[1]["last_reload_error"],
                 what="the refused reload", timeout=90)
        body = get(s.url + "/api/schedule")[1]
        assert "unknown connector 'googel'" in body["last_reload_error"]
        assert schedules() == {"master": "0 6 * * 1", "google": "15 3 * * 0"}  # old kept
        assert body["running"] is True and get(s.url + "/healthz")[0] == 200
        assert "config reload refused, the previous config stays in force" in s.logtext()
        assert s.stop() == 0


def test_readyz_reports_store_scheduler_and_staleness(tmp_path):
    config = build_world(tmp_path, n=5, serve={"catch_up": False})
    with serving(config) as s:
        status, body = get(s.url + "/readyz")
        assert status == 200 and body == {"ready": True, "problems": {}}
    with serving(config, "--no-schedule") as s:
        assert get(s.url + "/readyz")[0] == 200  # no scheduler expected
    (tmp_path / "auditor.db").unlink()
    (tmp_path / "auditor.db").mkdir()  # the store path is now unusable
    with serving(config, "--no-schedule") as s:
        status, body = get(s.url + "/readyz")
        assert status == 503 and "store" in body["problems"]
        assert get(s.url + "/healthz")[0] == 200


def test_demo_serve_leaves_a_service_with_metrics_on_the_demo_world(tmp_path):
    import os
    import subprocess
    import sys

    from service_helpers import ROOT, free_port

    port = free_port()
    log = open(tmp_path / "demo.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "auditor", "demo", "--serve", "--port",
                             str(port), "--dir", str(tmp_path / "demo")], cwd=ROOT,
                            env=dict(os.environ, PYTHONPATH=str(ROOT)), stdout=log,
                            stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for(lambda: get(url + "/healthz")[0] == 200, timeout=150, what="demo --serve")
        text = get(url + "/metrics")[1]
        assert 'auditor_consistency_ratio{channel="google",check="price"}' in text
        assert 'auditor_listings_seen{channel="site"}' in text
        sched = get(url + "/api/schedule")[1]
        assert sched["running"] and {s["schedule"] for s in sched["sources"]} == {
            "0 * * * *", "*/15 * * * *"}
        assert get(url + "/readyz")[0] == 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()


def test_serve_refuses_a_broken_config_and_a_taken_port(tmp_path):
    import socket

    from service_helpers import cli

    config = build_world(tmp_path, n=3, serve={"catch_up": False})
    broken = tmp_path / "broken.toml"
    broken.write_text(config.read_text().replace('schedule = "0 */4 * * *"',
                                                 'schedule = "0 6 * * 8"'))
    r = cli("serve", "--config", broken, timeout=60)
    assert r.returncode == 2 and "weekday 8 out of range 0-7" in " ".join(r.stderr.split())
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        r = cli("serve", "--config", config, "--port", port, timeout=60)
    assert r.returncode == 2 and f"cannot listen on 127.0.0.1:{port}" in " ".join(r.stderr.split())


def test_runs_left_running_by_a_killed_service_are_recorded_interrupted(tmp_path):
    from datetime import datetime, timezone

    from auditor.storage import open_store
    from service_helpers import cli

    config = build_world(tmp_path, n=3, serve={"catch_up": False})
    assert cli("run", "--config", config).returncode == 1
    store = open_store(tmp_path / "auditor.db")
    left = store.start_run(datetime.now(timezone.utc), None)  # as a SIGKILLed audit leaves it
    store.close()
    with serving(config, "--no-schedule") as s:
        status, body = get(s.url + "/api/runs?limit=1")
        assert body["items"][0]["id"] == left
        assert body["items"][0]["status"] == "interrupted"
        assert body["items"][0]["finished_at"]


def outbox(config) -> dict[str, int]:
    db = sqlite3.connect(config.parent / "auditor.db")
    try:
        return dict(db.execute("SELECT status, count(*) FROM outbox GROUP BY status"))
    finally:
        db.close()


def test_sigterm_flushes_pending_notifications(tmp_path):
    """The audit at start-up puts its notifications in the outbox; with no delivery after
    the run and an hour between the relay's cycles, only the SIGTERM flush can send them."""
    from tests.alert_receivers import WebhookServer

    hook = WebhookServer()
    try:
        config = build_world(tmp_path, n=10, serve={"jitter": 0.0}, master_schedule=None,
                             extra_toml=f"""
[alerts]
deliver_after_run = false
send_interval = "1h"

[[alerts.receivers]]
name = "hook"
type = "webhook"
url = "{hook.url}"

[[alerts.routes]]
receivers = ["hook"]
group_by = ["channel"]
""")
        with serving(config) as s:
            wait_for(lambda: runs(config) and runs(config)[-1][1] != "running"
                     and outbox(config).get("pending"), timeout=90,
                     what="the start-up audit's notifications in the outbox")
            time.sleep(1.0)  # the relay is asleep until its next cycle, an hour away
            assert hook.deliveries == [], s.logtext()
            pending = outbox(config)["pending"]
            assert s.stop(signal.SIGTERM, timeout=60) == 0, s.logtext()
        assert outbox(config).get("pending", 0) == 0, outbox(config)
        assert outbox(config).get("sent") == pending
        assert len(hook.by_key) == pending
        titles = json.dumps([d["body"] for d in hook.deliveries])
        assert "google" in titles
    finally:
        hook.close()
