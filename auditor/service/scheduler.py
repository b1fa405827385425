"""When each source is audited: the master's and every channel's cron schedule.

APScheduler 3 (a ``BackgroundScheduler`` with a memory job store: the run history in
the store, not a pickled job store, says what ran) fires one job per source. A job
starts the audit through a ``Launcher`` (a child process) and waits for it:

- one audit at a time per source: a source still running refuses the next start;
- missed runs coalesce into one, and a run later than its time by up to ~90% of the
  interval still happens (``misfire_grace_time``);
- a random jitter (``[serve] jitter``, at most a tenth of the interval) spreads
  channels on the same schedule;
- at start-up, every source whose last complete read is older than its interval
  runs once (catch-up after downtime);
- ``stop()`` takes no more jobs, gives running audits ``stop_timeout`` seconds, then
  stops them; runs left behind are recorded as interrupted.

The clock is injectable (``clock=``) so catch-up, staleness and intervals are tested
with a controlled time.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Callable
from zoneinfo import ZoneInfo

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.date import DateTrigger

from auditor.config import Config
from auditor.service.cron import cron_trigger, interval
from auditor.service.launcher import MASTER, Launcher, RunHandle

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


@dataclass
class Source:
    """One scheduled source: the master or a channel."""

    name: str
    schedule: str
    trigger: BaseTrigger
    interval: timedelta

    @property
    def jitter(self) -> int | None:
        return getattr(self.trigger, "jitter", None)


@dataclass
class SourceState:
    """What the scheduler knows about a source while it runs."""

    running: RunHandle | None = None
    started_at: datetime | None = None
    last_exit: int | None = None
    last_finished_at: datetime | None = None
    last_reason: str | None = None
    refused: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


def plan_sources(cfg: Config, now: datetime) -> list[Source]:
    """Every source with a schedule: the master (``[master] schedule``) and each enabled
    channel (``schedule``), with its trigger (jitter included) and interval."""
    tz = ZoneInfo(cfg.serve.get("timezone") or "UTC")
    wanted = [(MASTER, cfg.master.get("schedule"))]
    wanted += [(ch.name, ch.schedule) for ch in cfg.channels if ch.enabled]
    out = []
    for name, expr in wanted:
        if not expr:
            continue
        every = interval(cron_trigger(expr, tz), now)
        jitter = int(min(float(cfg.serve.get("jitter", 30.0)), every.total_seconds() / 10))
        out.append(Source(name, expr, cron_trigger(expr, tz, jitter or None), every))
    return out


def misfire_grace(every: timedelta) -> int:
    """Seconds a run may start late: 90% of the interval, so a late run still happens but
    never runs into the next one."""
    return max(1, int(every.total_seconds() * 0.9))


def due_at_startup(sources: list[Source], last_complete: dict[str, datetime],
                   now: datetime) -> list[str]:
    """Sources whose last complete read is older than their interval (or never happened)."""
    due = []
    for s in sources:
        last = last_complete.get(s.name)
        if last is None or now - last > s.interval:
            due.append(s.name)
    return due


def stale(sources: list[Source], last_complete: dict[str, datetime], now: datetime,
          since: datetime, factor: float = 2.0) -> dict[str, str]:
    """Sources with no complete read for ``factor`` times their interval (counted from
    ``since``, the service's start, when a source never completed): name -> reason."""
    out = {}
    for s in sources:
        last = last_complete.get(s.name)
        ref = last or since
        if now - ref > s.interval * factor:
            what = f"last complete read {last.isoformat()}" if last else "never read completely"
            out[s.name] = f"{what}; expected every {s.interval}"
    return out


class AuditScheduler:
    """Runs the sources' audits on their schedules, one at a time per source."""

    def __init__(self, cfg: Config, launcher: Launcher,
                 last_complete: Callable[[], dict[str, datetime]],
                 mark_interrupted: Callable[[datetime], list[int]] | None = None,
                 clock: Clock = utcnow, rng: random.Random | None = None):
        self.cfg = cfg
        self.launcher = launcher
        self.last_complete = last_complete
        self.mark_interrupted = mark_interrupted
        self.clock = clock
        self.rng = rng or random.Random()
        self.sources: list[Source] = []
        self.states: dict[str, SourceState] = {}
        self.started_at: datetime | None = None
        self.stopping = threading.Event()
        self._aps: BackgroundScheduler | None = None
        self._mutex = threading.Lock()

    # -------------------------------------------------------------- lifecycle
    def start(self, catch_up: bool | None = None) -> list[str]:
        """Start the schedules; returns the sources queued for a catch-up run."""
        self.started_at = self.clock()
        self.sources = plan_sources(self.cfg, self.started_at)
        tz = ZoneInfo(self.cfg.serve.get("timezone") or "UTC")
        self._aps = BackgroundScheduler(
            timezone=tz, executors={"default": ThreadPoolExecutor(max(4, len(self.sources) + 2))},
            job_defaults={"coalesce": True, "max_instances": 1})
        self._add_jobs()
        self._aps.start()
        due: list[str] = []
        if catch_up if catch_up is not None else self.cfg.serve.get("catch_up", True):
            due = due_at_startup(self.sources, self.safe_last_complete(), self.started_at)
            for i, name in enumerate(due):
                # staggered a little, in the order of the config
                delay = i * 0.5 + self.rng.uniform(0, 1.0)
                self._aps.add_job(self.run_source, DateTrigger(
                    datetime.now(timezone.utc) + timedelta(seconds=delay)),
                    args=[name, "catch-up"], id=f"catch-up:{name}", replace_existing=True,
                    misfire_grace_time=None)
            if due:
                log.info("catch-up after downtime: %s", ", ".join(due))
        log.info("scheduler started: %s", "; ".join(
            f"{s.name} '{s.schedule}' (every {s.interval}, jitter {s.jitter or 0}s)"
            for s in self.sources) or "no source has a schedule")
        return due

    def _add_jobs(self) -> None:
        assert self._aps is not None
        for s in self.sources:
            self.states.setdefault(s.name, SourceState())
            self._aps.add_job(self.run_source, s.trigger, args=[s.name, "schedule"],
                              id=f"source:{s.name}", name=s.name, replace_existing=True,
                              coalesce=True, max_instances=1,
                              misfire_grace_time=misfire_grace(s.interval))

    @property
    def running(self) -> bool:
        return self._aps is not None and self._aps.running and not self.stopping.is_set()

    def reload(self, cfg: Config) -> None:
        """Replace the schedules with those of ``cfg`` (already validated). Audits that
        are running go on."""
        sources = plan_sources(cfg, self.clock())
        with self._mutex:
            self.cfg = cfg
            if self._aps is not None:
                for job in self._aps.get_jobs():
                    if job.id.startswith("source:"):
                        job.remove()
            self.sources = sources
            if self._aps is not None:
                self._add_jobs()
        log.info("schedules reloaded: %s", ", ".join(f"{s.name} '{s.schedule}'"
                                                     for s in sources) or "none")

    def stop(self, timeout: float | None = None) -> dict[str, str]:
        """Take no more jobs; let running audits finish within ``timeout`` seconds (default
        ``[serve] stop_timeout``), then stop them. Returns source -> how it ended."""
        if timeout is None:
            timeout = float(self.cfg.serve.get("stop_timeout", 60.0))
        self.stopping.set()
        if self._aps is not None and self._aps.running:
            self._aps.shutdown(wait=False)
        ended: dict[str, str] = {}
        deadline = time.monotonic() + timeout
        running = {n: st.running for n, st in self.states.items() if st.running is not None}
        for name, handle in running.items():
            code = handle.wait(max(0.0, deadline - time.monotonic()))
            if code is not None:
                ended[name] = f"finished (exit {code})"
        interrupted = [n for n in running if n not in ended]
        for name in interrupted:
            log.warning("audit of %s still running after %.0f s: stopping it", name, timeout)
            running[name].terminate()
        for name in interrupted:
            if running[name].wait(10.0) is None:
                running[name].kill()
                running[name].wait(5.0)
            ended[name] = "interrupted"
        if interrupted and self.mark_interrupted is not None:
            try:
                ids = self.mark_interrupted(self.clock())
                if ids:
                    log.warning("runs recorded as interrupted: %s", ", ".join(map(str, ids)))
            except Exception:
                log.exception("could not record the interrupted runs")
        return ended

    def add_task(self, name: str, schedule: str, fn: Callable[[], Any]) -> None:
        """A further cron job beside the audits (the weekly report): coalesced, one at a
        time, in the scheduler's time zone. Kept across config reloads."""
        assert self._aps is not None, "start the scheduler first"
        tz = ZoneInfo(self.cfg.serve.get("timezone") or "UTC")
        trigger = cron_trigger(schedule, tz)
        self._aps.add_job(fn, trigger, id=f"task:{name}", name=name, replace_existing=True,
                          coalesce=True, max_instances=1,
                          misfire_grace_time=misfire_grace(interval(trigger, self.clock())))
        log.info("task %s scheduled '%s'", name, schedule)

    # -------------------------------------------------------------- jobs
    def run_source(self, name: str, reason: str = "schedule") -> str:
        """Audit one source now and wait for it: "refused" when it is already running
        (or the scheduler is stopping), else how it ended ("exit N")."""
        st = self.states.setdefault(name, SourceState())
        if self.stopping.is_set():
            return "refused"
        if not st.lock.acquire(blocking=False):
            st.refused += 1
            log.warning("audit of %s (%s) refused: the previous one is still running", name,
                        reason)
            return "refused"
        try:
            src = next((s for s in self.sources if s.name == name), None)
            wait = src.interval.total_seconds() * 0.9 if src else 3600.0
            st.started_at = self.clock()
            st.last_reason = reason
            handle = self.launcher.start(name, wait)
            st.running = handle
            if self.stopping.is_set():  # stop() began while this one was starting
                handle.terminate()
            log.info("audit of %s (%s) started, pid %s", name, reason, handle.pid)
            code = handle.wait(None)
            st.last_exit = code
            st.last_finished_at = self.clock()
            # the child's summary is not kept (its stdout): the log says where the why is
            log.log(logging.WARNING if code not in (0, 1) else logging.INFO,
                    "audit of %s (%s) ended with exit code %s%s", name, reason, code,
                    "" if code != 2 else
                    ": could not run, or read a source only partly (`auditor runs --errors` "
                    "and the web UI's /runs say why)")
            return f"exit {code}"
        except Exception:
            log.exception("audit of %s (%s) could not start", name, reason)
            return "error"
        finally:
            st.running = None
            st.lock.release()

    # -------------------------------------------------------------- status
    def safe_last_complete(self) -> dict[str, datetime]:
        try:
            return self.last_complete()
        except Exception:
            log.exception("could not read the run history")
            return {}

    def stale(self) -> dict[str, str]:
        """Sources with no complete read for twice their interval."""
        return stale(self.sources, self.safe_last_complete(), self.clock(),
                     self.started_at or self.clock())

    def status(self) -> list[dict[str, Any]]:
        """Each source's schedule, next run, and the audit running or last run."""
        last = self.safe_last_complete()
        out = []
        for s in self.sources:
            st = self.states.get(s.name, SourceState())
            job = self._aps.get_job(f"source:{s.name}") if self._aps and self._aps.running \
                else None
            nxt = getattr(job, "next_run_time", None) if job else None
            out.append({
                "source": s.name, "schedule": s.schedule,
                "interval_seconds": s.interval.total_seconds(), "jitter_seconds": s.jitter or 0,
                "next_run_at": nxt.isoformat() if nxt else None,
                "running": st.running is not None,
                "running_pid": st.running.pid if st.running else None,
                "started_at": st.started_at.isoformat() if st.started_at else None,
                "last_exit": st.last_exit, "last_reason": st.last_reason,
                "refused": st.refused,
                "last_complete_at": last[s.name].isoformat() if s.name in last else None,
            })
        return out
