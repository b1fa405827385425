"""The scheduler with a controlled clock and a launcher whose audits the test ends."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta, timezone

import pytest

from auditor.config import parse_config
from auditor.service.scheduler import (AuditScheduler, due_at_startup, misfire_grace,
                                       plan_sources, stale)

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=timezone.utc)  # a Wednesday


def config(tmp_path, **serve):
    raw = {"master": {"source": "m.csv", "schedule": "0 6 * * 1"},
           "channels": [
               {"name": "google", "type": "google_merchant", "source": "g.xml",
                "schedule": "0 */4 * * *"},
               {"name": "meta", "type": "meta_catalog", "source": "m.csv",
                "schedule": "0 6 * * 0"},
               {"name": "manual", "type": "meta_catalog", "source": "m.csv"}],
           "serve": serve}
    return parse_config(raw, tmp_path / "config.toml")


class FakeHandle:
    """An audit that ends when the test says so (or when terminated, unless stubborn)."""

    def __init__(self, pid: int, stubborn: bool = False):
        self.pid = pid
        self.code: int | None = None
        self.done = threading.Event()
        self.stubborn = stubborn
        self.terminated = self.killed = False

    def finish(self, code: int = 0) -> None:
        self.code = code
        self.done.set()

    def wait(self, timeout=None):
        self.done.wait(timeout)
        return self.code

    def terminate(self):
        self.terminated = True
        if not self.stubborn:
            self.finish(-15)

    def kill(self):
        self.killed = True
        self.finish(-9)


class FakeLauncher:
    def __init__(self, stubborn: bool = False):
        self.started: list[tuple[str, float]] = []
        self.handles: list[FakeHandle] = []
        self.stubborn = stubborn
        self.cond = threading.Condition()

    def start(self, source, wait_for_lock):
        with self.cond:
            h = FakeHandle(1000 + len(self.handles), self.stubborn)
            self.started.append((source, wait_for_lock))
            self.handles.append(h)
            self.cond.notify_all()
            return h

    def wait_started(self, n: int, timeout: float = 10.0) -> None:
        with self.cond:
            assert self.cond.wait_for(lambda: len(self.started) >= n, timeout), self.started


def test_sources_have_crons_intervals_jitter_and_grace(tmp_path):
    sources = {s.name: s for s in plan_sources(config(tmp_path, jitter=45.0), NOW)}
    assert set(sources) == {"master", "google", "meta"}  # 'manual' has no schedule
    assert sources["google"].interval == timedelta(hours=4)
    assert sources["master"].interval == timedelta(days=7)
    assert sources["google"].jitter == 45
    assert misfire_grace(sources["google"].interval) == int(4 * 3600 * 0.9)
    # the jitter is at most a tenth of a short interval
    raw_short = config(tmp_path, jitter=3600.0)
    assert {s.name: s.jitter for s in plan_sources(raw_short, NOW)}["google"] == 1440


def test_catch_up_runs_sources_older_than_their_interval():
    cfg_sources = plan_sources(config_at(), NOW)
    last = {"google": NOW - timedelta(hours=5),      # missed one 4-hour run: due
            "meta": NOW - timedelta(days=2),        # weekly, ran two days ago: not due
            "master": NOW - timedelta(days=8)}      # weekly, 8 days: due
    assert due_at_startup(cfg_sources, last, NOW) == ["master", "google"]
    assert due_at_startup(cfg_sources, {**last, "google": NOW - timedelta(hours=3)},
                          NOW) == ["master"]
    # never read at all: due
    assert due_at_startup(cfg_sources, {}, NOW) == ["master", "google", "meta"]


def config_at():
    from pathlib import Path

    return config(Path("/tmp"))


def test_stale_beyond_twice_the_interval():
    sources = plan_sources(config_at(), NOW)
    since = NOW - timedelta(hours=1)
    last = {"google": NOW - timedelta(hours=9), "meta": NOW - timedelta(days=13),
            "master": NOW - timedelta(days=15)}
    out = stale(sources, last, NOW, since)
    assert set(out) == {"google", "master"} and "expected every 4:00:00" in out["google"]
    # never read: counted from the service's start
    assert stale(sources, {}, NOW, since) == {}
    assert set(stale(sources, {}, NOW, NOW - timedelta(days=15))) == {"google", "meta",
                                                                      "master"}


def test_start_with_controlled_clock_queues_catch_up_and_cron_jobs(tmp_path):
    launcher = FakeLauncher()
    last = {"google": NOW - timedelta(hours=1), "meta": NOW - timedelta(days=1),
            "master": NOW - timedelta(days=30)}
    sched = AuditScheduler(config(tmp_path), launcher, lambda: last, clock=lambda: NOW)
    try:
        due = sched.start()
        assert due == ["master"]
        launcher.wait_started(1)
        assert launcher.started[0][0] == "master"
        # the lock wait is bounded by the interval
        assert launcher.started[0][1] == pytest.approx(7 * 86400 * 0.9)
        jobs = {j.id: j for j in sched._aps.get_jobs()}
        g = jobs["source:google"]
        assert g.coalesce is True and g.max_instances == 1
        assert g.misfire_grace_time == int(4 * 3600 * 0.9)
        launcher.handles[0].finish(0)
        deadline = time.monotonic() + 5
        while sched.states["master"].last_exit is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert sched.states["master"].last_exit == 0
        assert [s["source"] for s in sched.status()] == ["master", "google", "meta"]
    finally:
        sched.stop(timeout=1)


def test_overlap_is_refused_one_audit_per_source(tmp_path):
    launcher = FakeLauncher()
    sched = AuditScheduler(config(tmp_path), launcher, lambda: {}, clock=lambda: NOW)
    sched.sources = plan_sources(sched.cfg, NOW)
    results: list[str] = []
    t = threading.Thread(target=lambda: results.append(sched.run_source("google")))
    t.start()
    launcher.wait_started(1)
    assert sched.run_source("google", "manual") == "refused"   # same source: refused
    assert sched.states["google"].refused == 1
    other = threading.Thread(target=lambda: results.append(sched.run_source("meta")))
    other.start()
    launcher.wait_started(2)                                   # another source may run
    launcher.handles[0].finish(1)
    launcher.handles[1].finish(0)
    t.join(5)
    other.join(5)
    assert sorted(results) == ["exit 0", "exit 1"]
    assert [s for s, _ in launcher.started] == ["google", "meta"]


def test_stop_lets_a_short_audit_finish(tmp_path):
    launcher = FakeLauncher()
    marked: list[datetime] = []
    sched = AuditScheduler(config(tmp_path), launcher, lambda: {}, marked.append,
                           clock=lambda: NOW)
    sched.sources = plan_sources(sched.cfg, NOW)
    threading.Thread(target=sched.run_source, args=("google",), daemon=True).start()
    launcher.wait_started(1)
    threading.Timer(0.3, launcher.handles[0].finish, args=(0,)).start()
    ended = sched.stop(timeout=5)
    assert ended == {"google": "finished (exit 0)"}
    assert not launcher.handles[0].terminated and marked == []
    assert sched.run_source("meta") == "refused"  # no new audits once stopping


def test_stop_interrupts_an_audit_past_the_bound_and_records_it(tmp_path):
    launcher = FakeLauncher()
    marked: list[datetime] = []
    sched = AuditScheduler(config(tmp_path), launcher, lambda: {},
                           lambda at: marked.append(at) or [7], clock=lambda: NOW)
    sched.sources = plan_sources(sched.cfg, NOW)
    threading.Thread(target=sched.run_source, args=("google",), daemon=True).start()
    launcher.wait_started(1)
    t0 = time.monotonic()
    ended = sched.stop(timeout=0.5)
    assert 0.4 < time.monotonic() - t0 < 5
    assert ended == {"google": "interrupted"}
    assert launcher.handles[0].terminated and not launcher.handles[0].killed
    assert marked == [NOW]


def test_stop_kills_an_audit_that_ignores_sigterm(tmp_path, monkeypatch):
    launcher = FakeLauncher(stubborn=True)
    sched = AuditScheduler(config(tmp_path), launcher, lambda: {}, lambda at: [],
                           clock=lambda: NOW)
    sched.sources = plan_sources(sched.cfg, NOW)
    threading.Thread(target=sched.run_source, args=("google",), daemon=True).start()
    launcher.wait_started(1)
    h = launcher.handles[0]
    real_wait = h.wait
    h.wait = lambda timeout=None: real_wait(min(timeout or 0.2, 0.2))  # keep the test short
    assert sched.stop(timeout=0.1) == {"google": "interrupted"}
    assert h.terminated and h.killed


def test_reload_replaces_the_schedules(tmp_path):
    launcher = FakeLauncher()
    sched = AuditScheduler(config(tmp_path), launcher, lambda: {}, clock=lambda: NOW)
    try:
        sched.start(catch_up=False)
        new = parse_config({"master": {"source": "m.csv"},
                            "channels": [{"name": "google", "type": "google_merchant",
                                          "source": "g.xml", "schedule": "15 3 * * 2"}]},
                           tmp_path / "config.toml")
        sched.reload(new)
        assert [(s["source"], s["schedule"]) for s in sched.status()] == [
            ("google", "15 3 * * 2")]
        ids = sorted(j.id for j in sched._aps.get_jobs())
        assert ids == ["source:google"]
        nxt = sched._aps.get_job("source:google").next_run_time
        assert nxt.strftime("%a %H:%M") == "Tue 03:15" or nxt.strftime("%a") == "Tue"
    finally:
        sched.stop(timeout=1)


class _Clock(datetime):
    """datetime with a controlled now(), for APScheduler's own modules."""

    current = NOW

    @classmethod
    def now(cls, tz=None):
        return cls.current.astimezone(tz) if tz else cls.current.replace(tzinfo=None)


def test_missed_runs_coalesce_and_late_ones_within_the_grace_still_run(tmp_path, monkeypatch):
    import apscheduler.executors.base as exec_base
    import apscheduler.schedulers.base as sched_base

    monkeypatch.setattr(sched_base, "datetime", _Clock)
    monkeypatch.setattr(exec_base, "datetime", _Clock)
    _Clock.current = NOW  # Wednesday 12:00
    launcher = FakeLauncher()
    sched = AuditScheduler(config(tmp_path, jitter=0.0), launcher, lambda: {},
                           clock=lambda: _Clock.current)
    try:
        sched.start(catch_up=False)
        nxt = sched._aps.get_job("source:google").next_run_time
        assert nxt == NOW.replace(hour=16)
        # 12.5 hours pass while the machine sleeps: 16:00, 20:00 and 00:00 were missed;
        # they coalesce into one run (00:00 is 30 min late, well within the grace)
        _Clock.current = NOW + timedelta(hours=12, minutes=30)
        sched._aps.wakeup()
        launcher.wait_started(1)
        time.sleep(0.5)
        assert [s for s, _ in launcher.started] == ["google"]
        launcher.handles[0].finish(0)
        deadline = time.monotonic() + 5
        while sched.states["google"].last_exit is None and time.monotonic() < deadline:
            time.sleep(0.02)
        nxt = sched._aps.get_job("source:google").next_run_time
        assert nxt == (NOW + timedelta(hours=16)).replace(hour=4)  # Thursday 04:00
        # a run more than 90% of its interval late is skipped (the next one comes soon)
        _Clock.current = nxt + timedelta(hours=3, minutes=50)
        sched._aps.wakeup()
        time.sleep(1.0)
        assert len(launcher.started) == 1
        assert sched._aps.get_job("source:google").next_run_time == nxt + timedelta(hours=4)
    finally:
        sched.stop(timeout=1)


def test_an_audit_ending_with_exit_2_logs_where_to_read_why(tmp_path, caplog, monkeypatch):
    """`auditor serve` logged only "audit of google (catch-up) ended with exit code 2": the
    child's own summary (its stdout) is not kept, so the line says where the reason is."""
    import logging

    # Secrets read by earlier tests are redacted from every log line (auditor.log): the
    # test PostgreSQL servers' password is "auditor", the word this line is checked for.
    monkeypatch.setattr("auditor.log.SECRET_VALUES", set())
    launcher = FakeLauncher()
    sched = AuditScheduler(config(tmp_path), launcher, lambda: {}, clock=lambda: NOW)
    sched.sources = plan_sources(sched.cfg, NOW)
    results: list[str] = []
    with caplog.at_level(logging.INFO, logger="auditor.service.scheduler"):
        for code in (2, 1):
            t = threading.Thread(target=lambda: results.append(sched.run_source("google")))
            t.start()
            launcher.wait_started(len(results) + 1)
            launcher.handles[-1].finish(code)
            t.join(5)
    assert results == ["exit 2", "exit 1"]
    ended = [r for r in caplog.records if "ended with exit code" in r.getMessage()]
    assert [r.levelno for r in ended] == [logging.WARNING, logging.INFO]
    assert "`auditor runs --errors`" in ended[0].getMessage()
    assert ended[1].getMessage() == "audit of google (schedule) ended with exit code 1"
