"""A real `auditor run` with real forked workers, stopped by SIGTERM, SIGINT and SIGKILL:
no process of the run remains, the run is recorded `interrupted`, the lock is free and the
next run completes. Also `run_in_child`: events forwarded, stop, crash."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import psutil
import pytest

from auditor.child import run_in_child
from auditor.hookspecs import EVENT_HOOKS, hookimpl
from auditor.storage import open_store
from tests.conftest import write

ROOT = Path(__file__).parent.parent

ITEM = ("<item><g:id>TS-{i}</g:id><title>Acme Tee {i}</title><g:price>20.00 USD</g:price>"
        "<g:availability>in stock</g:availability></item>\n")


class SlowFeed(ThreadingHTTPServer):
    """A Google feed on 127.0.0.1 that trickles (an item every 50 ms, for up to two
    minutes) while ``slow`` is set, and comes at once when it is not."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _FeedHandler)
        self.slow = threading.Event()
        self.slow.set()
        self.requests = 0
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/feed.xml"

    def close(self) -> None:
        self.slow.clear()
        self.shutdown()
        self.server_close()


class _FeedHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"  # no length: the body ends when the connection does
    server: SlowFeed

    def log_message(self, *a) -> None:
        pass

    def do_GET(self) -> None:
        self.server.requests += 1
        slow = self.server.slow.is_set()
        self.send_response(200)
        self.send_header("Content-Type", "application/xml")
        self.end_headers()
        try:
            self.wfile.write(b'<?xml version="1.0"?><rss xmlns:g="http://base.google.com/ns/1.0"'
                             b' version="2.0"><channel>\n')
            for i in range(3):
                self.wfile.write(ITEM.format(i=i).encode())
            deadline = time.monotonic() + 120
            while slow and self.server.slow.is_set() and time.monotonic() < deadline:
                self.wfile.write(b"<!-- still coming -->\n")
                self.wfile.flush()
                time.sleep(0.05)
            self.wfile.write(b"</channel></rss>\n")
        except OSError:  # the reader is gone
            pass


@pytest.fixture
def slow_world(tmp_path):
    feed = SlowFeed()
    write(tmp_path / "master.csv", "sku,title,brand,price,currency,quantity\n" + "".join(
        f"TS-{i},Acme Tee {i},Acme,20.00,USD,5\n" for i in range(3)))
    write(tmp_path / "config.toml", f"""
        [store]
        path = "auditor.db"
        [run]
        workers = 2
        [http]
        allow_private = true
        [master]
        type = "csv"
        source = "master.csv"
        [[channels]]
        name = "google"
        type = "google_merchant"
        source = "{feed.url}"
        [[channels]]
        name = "google-2"
        type = "google_merchant"
        source = "{feed.url}?second"
        """)
    yield tmp_path, feed
    feed.close()


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    return env


def _start_run(world: Path) -> subprocess.Popen:
    # A process group of its own, as a shell gives a foreground job.
    return subprocess.Popen([sys.executable, "-m", "auditor", "run", "--config",
                             str(world / "config.toml")], cwd=world, env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def _wait_mid_run(proc: subprocess.Popen, feed: SlowFeed) -> list[psutil.Process]:
    """Wait until both workers are reading the trickling feed; the run's processes."""
    parent = psutil.Process(proc.pid)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        kids = parent.children(recursive=True)
        if feed.requests >= 2 and len(kids) >= 2:
            return [parent, *kids]
        time.sleep(0.1)
    raise AssertionError(f"the run never got both workers reading ({feed.requests} requests)")


def _gone(p: psutil.Process) -> bool:
    try:
        return not p.is_running() or p.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _wait_gone(procs: list[psutil.Process], timeout: float = 20) -> list[psutil.Process]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        left = [p for p in procs if not _gone(p)]
        if not left:
            return []
        time.sleep(0.1)
    return [p for p in procs if not _gone(p)]


def _runs(world: Path) -> list[dict]:
    store = open_store(world / "auditor.db")
    try:
        return [r.to_dict() for r in store.runs()]
    finally:
        store.close()


def _next_run_completes(world: Path, feed: SlowFeed) -> None:
    feed.slow.clear()  # the feed comes at once now
    done = subprocess.run([sys.executable, "-m", "auditor", "run", "--config",
                           str(world / "config.toml")], cwd=world, env=_env(),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode in (0, 1), done.stdout + done.stderr
    runs = _runs(world)
    assert f"the previous run {runs[1]['id']} was interrupted" in done.stdout
    assert runs[0]["status"] == "complete"
    shown = subprocess.run([sys.executable, "-m", "auditor", "runs", "--config",
                            str(world / "config.toml")], cwd=world, env=_env(),
                           capture_output=True, text=True, timeout=60)
    assert f"run {runs[1]['id']}" in shown.stdout and "interrupted" in shown.stdout


@pytest.mark.parametrize("sig, code, reason, group", [
    (signal.SIGTERM, 143, "SIGTERM", False),
    (signal.SIGINT, 130, "SIGINT (Ctrl-C)", False),
    (signal.SIGINT, 130, "SIGINT (Ctrl-C)", True),  # Ctrl-C in a terminal: the whole group
], ids=["SIGTERM", "SIGINT", "Ctrl-C to the process group"])
def test_signal_stops_the_run_its_workers_and_frees_the_lock(slow_world, sig, code, reason,
                                                             group):
    world, feed = slow_world
    proc = _start_run(world)
    try:
        procs = _wait_mid_run(proc, feed)
        if group:
            os.killpg(proc.pid, sig)
        else:
            proc.send_signal(sig)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == code, out + err
    assert "interrupted" in err
    assert _wait_gone(procs) == [], "processes of the run are still alive"
    (run,) = _runs(world)
    assert run["status"] == "interrupted" and run["finished_at"]
    assert run["summary"]["interrupted"]["reason"] == reason
    _next_run_completes(world, feed)


def test_killed_run_workers_die_with_it_and_the_next_run_records_it(slow_world):
    world, feed = slow_world
    proc = _start_run(world)
    try:
        procs = _wait_mid_run(proc, feed)
        proc.kill()  # SIGKILL: no chance to clean up
        proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    # The workers notice (PR_SET_PDEATHSIG, and their parent watch) and die.
    assert _wait_gone(procs) == [], "workers outlived their killed parent"
    (run,) = _runs(world)
    assert run["status"] == "running"  # nobody could record it yet
    shown = subprocess.run([sys.executable, "-m", "auditor", "runs", "--config",
                            str(world / "config.toml")], cwd=world, env=_env(),
                           capture_output=True, text=True, timeout=60)
    assert f"its process {proc.pid} is gone" in shown.stdout
    _next_run_completes(world, feed)
    old = _runs(world)[1]
    assert old["status"] == "interrupted"
    assert "found still 'running'" in old["summary"]["interrupted"]["reason"]


# ---------------------------------------------------------------- run_in_child

class Recorder:
    def __init__(self) -> None:
        self.events: list = []


for _hook in EVENT_HOOKS:
    def _record(self, event, _hook=_hook):
        self.events.append(event)
    _record.__name__ = _hook
    setattr(Recorder, _hook, hookimpl(_record))


def test_run_in_child_forwards_the_events_and_returns_the_run(mini_world, caplog):
    import logging

    caplog.set_level(logging.INFO)
    rec = Recorder()
    before = threading.active_count()
    result = run_in_child(mini_world / "config.toml", listeners=[rec])
    # the child's log records are handled by this process's logging
    assert any(r.name == "auditor.runner" and "channel google: complete" in r.getMessage()
               for r in caplog.records)
    assert result.status == "complete" and result.exit_code == 1 and result.run_id == 1
    assert result.pid != os.getpid() and result.child_exitcode == 1
    hooks = [e.hook for e in rec.events]
    assert hooks[0] == "run_started" and hooks[-1] == "run_finished"
    assert rec.events[0].pid == result.pid  # the audit ran in the child
    assert "findings_changed" in hooks and result.events == len(rec.events)
    assert result.report["channels"][0]["channel"] == "google"
    assert threading.active_count() == before  # nothing left running here


def test_run_in_child_stop_interrupts_the_run(slow_world):
    world, feed = slow_world
    rec = Recorder()
    stop = threading.Event()

    def stop_when_reading() -> None:
        deadline = time.monotonic() + 60
        while feed.requests < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        stop.set()

    threading.Thread(target=stop_when_reading, daemon=True).start()
    result = run_in_child(world / "config.toml", listeners=[rec], stop=stop)
    assert result.status == "interrupted" and result.exit_code == 143
    assert rec.events[-1].hook == "run_finished" and rec.events[-1].status == "interrupted"
    (run,) = _runs(world)
    assert run["status"] == "interrupted" and run["summary"]["interrupted"]["reason"] == "SIGTERM"
    assert not psutil.Process().children(recursive=True)
    _next_run_completes(world, feed)


def test_run_in_child_records_a_crashed_child_as_interrupted(slow_world):
    world, feed = slow_world
    rec = Recorder()
    tree: list[psutil.Process] = []

    def kill_when_reading() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            kids = psutil.Process().children(recursive=True)
            if feed.requests >= 2 and len(kids) >= 3:  # the child and its two workers
                break
            time.sleep(0.1)
        tree.extend(kids)
        for p in psutil.Process().children():
            p.kill()  # the audit process dies without a word (like the OOM killer)

    threading.Thread(target=kill_when_reading, daemon=True).start()
    result = run_in_child(world / "config.toml", listeners=[rec])
    assert len(tree) >= 3 and result.status == "interrupted" and result.child_exitcode == -9
    assert "exited with code -9" in result.error
    assert rec.events[-1].hook == "run_finished" and rec.events[-1].status == "interrupted"
    (run,) = _runs(world)
    assert run["status"] == "interrupted" and "-9" in run["summary"]["interrupted"]["reason"]
    assert _wait_gone(tree) == [], "the workers outlived the killed audit process"
    _next_run_completes(world, feed)


def test_run_in_child_reports_a_held_lock_without_running(mini_world):
    rec = Recorder()
    held = open_store(mini_world / "auditor.db")
    with held.run_lock():
        result = run_in_child(mini_world / "config.toml", listeners=[rec])
    held.close()
    assert result.status == "error" and result.exit_code == 2 and result.run_id is None
    assert "another run holds the lock" in result.error and rec.events == []
    again = run_in_child(mini_world / "config.toml", listeners=[rec])
    assert again.status == "complete" and again.run_id == 1


def test_run_in_child_of_a_rejected_first_master(mini_world):
    (mini_world / "master.csv").write_text("sku,title,price,currency\nX,broken,abc,USD\n")
    rec = Recorder()
    result = run_in_child(mini_world / "config.toml", listeners=[rec])
    assert result.status == "failed" and result.exit_code == 2 and result.run_id == 1
    assert "bad price 'abc'" in result.error
    assert [e.hook for e in rec.events] == ["run_started", "master_imported", "run_finished"]
    assert rec.events[1].accepted is False and rec.events[1].error_count == 1
