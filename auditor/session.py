"""An audit run as an object: ``AuditSession`` holds what one run needs and emits its events.

A session holds the config, the store, the master (as read for this run), the
linker, the master's history and the clock. ``run()`` imports the master, audits
the selected channels (in forked workers when ``[run] workers`` allows) and
records everything on a run in the store; on the way it emits the events of
``auditor.hookspecs`` to its listeners (objects or modules with ``@hookimpl``
functions) and to every plugin that implements them. The CLI's progress display
is one such listener.

A run that does not end normally (Ctrl-C, SIGTERM, a crash) is recorded
``interrupted`` with the time and the reason, and a ``run_finished`` event says so;
its forked workers are stopped, and die by themselves if this process dies first.
A run left ``running`` by a process that is gone (killed with SIGKILL, the machine
lost power) is marked interrupted by the next run that takes the store's lock.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Mapping, Sequence

import pluggy

from auditor import plugins
from auditor.check import Preparations
from auditor.config import Config
from auditor.errors import Interrupted, MasterImportError
from auditor.events import (Event, FindingChange, MasterImported, RunFinished, RunStarted,
                            SourceProgress)
from auditor.hookspecs import EVENT_HOOKS, hookimpl
from auditor.linking import Linker
from auditor.model import MasterRecord, Run, SourceStatus

if TYPE_CHECKING:
    from auditor.storage import Store

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def run_status(master_error: str | None, summaries: Sequence[Any]) -> SourceStatus:
    """A run's status from its master and channels: partial when the master could not be
    stored or a channel was not read completely, failed when every channel failed."""
    if summaries and all(s.status == SourceStatus.FAILED for s in summaries):
        return SourceStatus.FAILED
    if master_error or any(s.status != SourceStatus.COMPLETE for s in summaries):
        return SourceStatus.PARTIAL
    return SourceStatus.COMPLETE


class AuditSession:
    """One audit run: ``AuditSession(cfg, store, listeners=[...]).run()`` -> ``RunReport``.

    ``channels`` limits the run to these channel names; ``now`` is the time sale
    windows and history are evaluated at (default: the clock at the start);
    ``clock`` gives wall-clock times (tests pass a fixed one). After ``run()`` the
    session keeps ``run_id``, ``master``, ``history`` and ``linker`` for a caller
    that wants to look at them.
    """

    def __init__(self, config: Config, store: Store, *, channels: Iterable[str] | None = None,
                 now: datetime | None = None, listeners: Iterable[Any] = (),
                 clock: Clock | None = None):
        self.config = config
        self.store = store
        self.channels = list(channels) if channels else None
        self.clock = clock or utc_now
        self.now = now
        self.master: Mapping[str, MasterRecord] | None = None
        self.history: Any = None
        self.linker: Linker | None = None
        self.run_id: int | None = None
        self.interrupted_before: list[dict[str, Any]] = []
        self._children: list[Callable[[], None]] = []  # cancels forked helpers
        # The steps after the channels' audit (recording the run, its last events), timed:
        # `auditor run` adds its own (alerts, the exit code) and logs them (-v).
        self.after = Steps()
        self._pm = self._manager(listeners)
        self.wanted = frozenset(h for h in EVENT_HOOKS
                                if getattr(self._pm.hook, h).get_hookimpls())

    # ------------------------------------------------------------------ events
    @staticmethod
    def _manager(listeners: Iterable[Any]) -> pluggy.PluginManager:
        """The process's plugins plus this session's listeners."""
        pm = plugins.new_manager()
        for name, plugin in plugins.manager().list_name_plugin():
            if plugin is not None:
                pm.register(plugin, name=name)
        for i, listener in enumerate(listeners):
            pm.register(listener, name=f"listener-{i}-{id(listener)}")
        return pm

    def wants(self, hook: str) -> bool:
        """Whether any listener or plugin implements ``hook``."""
        return hook in self.wanted

    def emit(self, event: Event) -> None:
        """Call every implementation of ``event.hook``; one that raises is logged and the
        others still run."""
        if event.hook in self.wanted:
            dispatch(self._pm, event)

    # ------------------------------------------------------------------ the run
    def run(self) -> Any:
        """Audit once; returns a ``runner.RunReport``. Raises ``Interrupted`` (or the
        crash) after recording the run as interrupted."""
        from auditor import runner

        cfg, store = self.config, self.store
        self.now = self.now or self.clock()
        started = self.clock()
        t_run = time.perf_counter()
        selected = [c for c in cfg.channels
                    if c.enabled and (not self.channels or c.name in self.channels)]
        workers = runner.worker_count(cfg, store, len(selected))
        self._interrupt_stale_runs(store.holds_run_lock())
        self.interrupted_before = self._interrupted_before()
        self.run_id = run_id = store.start_run(started, None)
        try:
            store.update_run_summary(run_id, pid=os.getpid())
            self.emit(RunStarted(run_id, started, tuple(c.name for c in selected),
                                 os.getpid(), tuple(r["id"] for r in self.interrupted_before)))
            return self._run(runner, selected, workers, started, t_run)
        except BaseException as e:
            self._record_interrupted(e, started, t_run)
            raise

    def _run(self, runner: Any, selected: list, workers: int, started: datetime,
             t_run: float) -> Any:
        cfg, store, now, run_id = self.config, self.store, self.now, self.run_id
        assert now is not None and run_id is not None
        master_info: dict[str, Any]
        master_error: str | None = None
        master: Mapping[str, MasterRecord] | None = None
        update: Any = None
        t_master = time.perf_counter()
        with runner._gc_paused():  # a large master is many long-lived objects and no cycles
            try:
                update = runner.read_master(cfg, store, now, plan=False)
                master_info, master = update.info, update.records
            except MasterImportError as e:
                count = store.master_count()
                snap = store.last_master_snapshot() if count else None
                master_info = {"snapshot_id": snap.id if snap else None, "records": count,
                               "kept_previous": bool(count), "rejected": True,
                               "source": e.source, "errors": e.errors[:100],
                               "error_count": len(e.errors)}
                master_error = str(e)
                # (`auditor run`'s summary shows the same text: it drops this line there)
                log.error("%s", e, extra={"summary": "master_error"})
                store.record_master_import(run_id, master_info, e.errors[:10_000])
                self.emit(MasterImported(
                    run_id, False, e.source, count, snapshot_id=master_info["snapshot_id"],
                    errors=tuple((loc, why) for loc, why in e.errors[:100]),
                    error_count=len(e.errors),
                    kept_previous=bool(count), seconds=time.perf_counter() - t_master))
                if count == 0:
                    return self._finish_without_master(master_info, master_error, started,
                                                       t_run, time.perf_counter() - t_master)
                store.set_run_snapshot(run_id, master_info["snapshot_id"])
            # Read before the forked step below may write the new snapshot (and with it
            # the versions it replaces): those are added from the plan (history.add).
            history = store.master_history()
            planned = None
            if update is not None and update.records is not None:
                records, url = update.records, store.url
                if workers > 1:  # compare with the snapshot in force, and write the new
                    # one, on the other core while the linker's indexes are built here:
                    # written before the channel workers start, it never holds up their
                    # writes (one writer at a time) nor takes a core from them.
                    src, sha, skipped = update.source, update.sha256, update.skipped_rows
                    planned = runner._in_fork(lambda: runner._plan_and_write_in(
                        url, records, now, src, sha, skipped, history))
                    self._children.append(planned.cancel)
            if master is None:
                master = store.current_master()
            linker = Linker(master, cfg.linking)
            if update is not None and update.records is None:  # the snapshot in force
                linker.master_version = update.info["snapshot_id"]
            if update is not None and update.records is not None and planned is None:
                runner.plan_update(update, store.plan_master(update.records, now))
            if workers > 1:  # once, shared by the workers: the indexes they will need
                # (the key indexes in a forked process, the title index here meanwhile)
                linker.prepare(self._link_indexes(selected, linker), background=True)
            if planned is not None:  # the history with the replaced versions added there
                history = runner.written_update(update, planned())
                self._children.remove(planned.cancel)
                self._stored_as(update, linker)
            elif update is not None and update.plan is not None:
                # The versions this import replaces were valid until now: stale-value checks
                # must know them before the snapshot is written.
                history.add(update.plan.replaced, update.plan.at)
        self.master, self.history, self.linker = master, history, linker
        master_seconds = time.perf_counter() - t_master
        log.info("master ready in %.1f s: %d records, %d SKUs with history",
                 master_seconds, len(master), len(history))
        with runner.streaming_gc():
            def store_master() -> None:
                nonlocal master_error
                if update is None:
                    return  # rejected: recorded and announced above
                try:
                    if update.plan is not None and not update.written:
                        runner.write_master(store, update)
                        self._stored_as(update, linker)
                    store.set_run_snapshot(run_id, update.info["snapshot_id"])
                    store.record_master_import(
                        run_id, {k: v for k, v in update.info.items() if k != "errors"},
                        update.info.get("errors") or ())
                    i = update.info
                    self.emit(MasterImported(
                        run_id, True, i.get("source"), i.get("records", 0), i.get("added", 0),
                        i.get("changed", 0), i.get("removed", 0), bool(i.get("unchanged")),
                        i.get("snapshot_id"), i.get("skipped_rows", 0),
                        tuple(tuple(x) for x in (i.get("errors") or ())[:100]),
                        len(i.get("errors") or ()), seconds=master_seconds))
                except Exception as e:  # the audit goes on against the master as read
                    log.exception("the master was read but could not be stored")
                    master_error = f"the master was read but could not be stored: {e}"
                    self.emit(MasterImported(run_id, False, update.source, len(master or {}),
                                             errors=(("store", master_error),), error_count=1,
                                             seconds=master_seconds))

            summaries = self._audit_channels(runner, selected, workers, master, linker,
                                             history, store_master)
            return self._finish(run_status(master_error, summaries), master_info,
                                master_error, summaries, started, t_run, master_seconds)

    @staticmethod
    def _stored_as(update: Any, linker: Linker) -> None:
        """The master read anew is now stored as a snapshot (``update`` written): the
        linker's master is that snapshot, so the links decided against it in this run may
        be carried over by the next run on the same snapshot (``auditor.linkreuse``), which
        then needs no title-matching index for them (the first repeat after an import, not
        only the second, is the steady state)."""
        snapshot = update.info.get("snapshot_id")
        if update.records is not None and snapshot is not None and update.write_error is None:
            linker.master_version = snapshot

    def _link_indexes(self, selected: list, linker: Linker) -> set[str] | None:
        """The linker's indexes the selected channels' latest complete reads consulted
        (their run summaries' ``link_indexes``, and ``carried_link_indexes`` unless what
        the links depend on is unchanged since, so that those links are carried over:
        ``auditor.linkreuse``); None (all of them) when a channel has no such read among
        the recent runs. Only a forecast: a worker builds an index that was left out when
        one of its listings needs it."""
        from auditor.linkreuse import link_inputs

        wanted = {c.name for c in selected}
        needed: set[str] = set()
        for r in self.store.runs(50):
            for c in r.summary.get("channels") or ():
                name = c.get("channel")
                if name in wanted and c.get("status") == SourceStatus.COMPLETE.value:
                    wanted.discard(name)
                    kinds, carried = c.get("link_indexes"), c.get("carried_link_indexes")
                    if kinds is None or carried is None:
                        return None
                    needed.update(kinds)
                    inputs = c.get("link_inputs")
                    if inputs is None or inputs != link_inputs(
                            self.config.linking, linker.master_version,
                            self.store.decided_links(name)):
                        needed.update(carried)
            if not wanted:
                return needed
        return None

    def _audit_channels(self, runner: Any, selected: list, workers: int,
                        master: Mapping[str, MasterRecord], linker: Linker, history: Any,
                        store_master: Callable[[], None]) -> list:
        """Store the master (``store_master``) and audit the channels: in forked workers,
        or one after another here. ``auditor.distributed.DistributedSession`` audits
        them as jobs on a queue instead."""
        cfg, store, now, run_id = self.config, self.store, self.now, self.run_id
        assert now is not None and run_id is not None
        if workers > 1:
            # The snapshot is written while the workers audit the channels.
            return runner._audit_in_workers(
                cfg, store, run_id, selected, master, linker, history, now, workers,
                store_master, self.emit, self.wanted)
        store_master()
        # Checks' preparation stages (the image check's), shared by the channels.
        preparations = Preparations(store, master, cfg.http, cfg.base_dir, now, cfg.checks)
        try:
            return [runner.audit_channel(cfg, store, run_id, ch, master, linker, history, now,
                                         preparations=preparations, emit=self.emit,
                                         wanted=self.wanted)
                    for ch in selected]
        finally:
            preparations.close()

    def _finish(self, status: SourceStatus, master_info: dict[str, Any],
                master_error: str | None, summaries: list, started: datetime, t_run: float,
                master_seconds: float) -> Any:
        from auditor.runner import RunReport, _summary_dict

        assert self.run_id is not None
        finished = self.clock()
        report = RunReport(self.run_id, status, master_info, summaries, started, finished,
                           master_error, self.interrupted_before)
        assert self.now is not None  # set when the run started
        with self.after("run recorded"):
            self.store.finish_run(Run(self.run_id, started, finished, status),
                                  # "at": the run's audit clock (what --now sets), the time
                                  # its finding events carry (reports place runs by it).
                                  {"at": self.now.isoformat(), "master": master_info,
                                   "master_error": master_error, "pid": os.getpid(),
                                   "channels": [_summary_dict(s) for s in summaries]})
        with self.after("run_finished"):
            self.emit(RunFinished(self.run_id, status.value, report.exit_code, started,
                                  finished, time.perf_counter() - t_run, master_seconds,
                                  {s.channel: round(s.seconds, 3) for s in summaries},
                                  master_error))
        return report

    def _finish_without_master(self, master_info: dict[str, Any], master_error: str,
                               started: datetime, t_run: float, master_seconds: float) -> Any:
        """The master was rejected and no earlier snapshot exists: nothing to audit
        against. The run is recorded ``failed`` with the master's errors."""
        log.error("no earlier master snapshot: no channel was audited",
                  extra={"summary": "master_error"})  # (the run's summary says it)
        return self._finish(SourceStatus.FAILED, master_info, master_error, [], started,
                            t_run, master_seconds)

    # ------------------------------------------------------------------ interruptions
    def _record_interrupted(self, e: BaseException, started: datetime, t_run: float) -> None:
        for cancel in list(self._children):
            with contextlib.suppress(Exception):
                cancel()
        if isinstance(e, Interrupted):
            reason = e.reason
        elif isinstance(e, KeyboardInterrupt):
            reason = "SIGINT (Ctrl-C)"
        elif isinstance(e, SystemExit):
            reason = f"exit({e.code})"
        else:
            reason = f"crashed: {e.__class__.__name__}: {e}"
        at = self.clock()
        if self.run_id is None:
            return  # no run row yet: nothing to mark
        try:
            recorded = self.store.interrupt_run(self.run_id, at, reason)
        except Exception:
            log.exception("run %s: could not record the interruption", self.run_id)
            return
        if not recorded or self.run_id is None:
            return  # it had finished: the exception came after
        log.error("run %s interrupted: %s", self.run_id, reason)
        self.emit(RunFinished(self.run_id, "interrupted", 2, started, at,
                              time.perf_counter() - t_run, reason=reason))

    def _interrupted_before(self) -> list[dict[str, Any]]:
        """The runs just before this one (newest first) that were interrupted."""
        out = []
        for r in self.store.runs(20):
            if r.status != "interrupted":
                break
            info = r.summary.get("interrupted") or {}
            out.append({"id": r.id, "at": info.get("at") or (
                r.finished_at.isoformat() if r.finished_at else None),
                "reason": info.get("reason")})
        return out

    def _interrupt_stale_runs(self, holds_lock: bool) -> None:
        """Runs still ``running`` whose process is gone become ``interrupted``: every run
        when this process holds the store's run lock (no other run can be going on),
        else those whose recorded process no longer exists on this machine."""
        for r in self.store.running_runs():
            pid = r.summary.get("pid")
            if holds_lock or (pid and pid != os.getpid() and not _alive(pid)):
                reason = (f"found still 'running' by the next run (its process "
                          f"{pid or '?'} is gone)")
                if self.store.interrupt_run(r.id, self.clock(), reason):
                    log.warning("run %s was left running: recorded as interrupted", r.id)


class Steps:
    """Named steps' wall and CPU seconds (this process's), in order, for one log line:
    ``with steps("name"): ...``."""

    def __init__(self) -> None:
        self.done: list[tuple[str, float, float]] = []

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        t0, c0 = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            self.done.append((name, time.perf_counter() - t0, time.process_time() - c0))

    def seconds(self) -> float:
        return sum(s for _, s, _ in self.done)

    def __str__(self) -> str:
        return "; ".join(f"{name} {s:.2f} s ({c:.2f} CPU s)" for name, s, c in self.done)


def dispatch(pm: pluggy.PluginManager, event: Event) -> None:
    """Call the implementations of ``event.hook`` in pluggy's order (the last registered
    first), each on its own: one that raises is logged and the others still run."""
    hook = getattr(pm.hook, event.hook)
    impls = hook.get_hookimpls()
    if any(i.hookwrapper or getattr(i, "wrapper", False) for i in impls):
        try:  # wrappers need pluggy's own call (no isolation between listeners then)
            hook(event=event)
        except Exception:
            log.exception("a listener failed on %s", event.hook)
        return
    for impl in reversed(impls):
        try:
            impl.function(**({"event": event} if "event" in impl.argnames else {}))
        except Exception:
            log.exception("listener %s failed on %s", impl.plugin_name, event.hook)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def interrupt_on_signals(signals: Iterable[int] = (signal.SIGTERM, signal.SIGINT)
                         ) -> Iterator[None]:
    """Inside: SIGTERM and SIGINT raise ``Interrupted`` (once: a second signal while the
    run records its interruption is ignored). Only in the main thread; elsewhere a
    no-op."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    fired: list[int] = []

    def handler(signum: int, frame: Any) -> None:
        if fired:
            return
        fired.append(signum)
        name = signal.Signals(signum).name
        raise Interrupted(f"{name} (Ctrl-C)" if signum == signal.SIGINT else name, signum)

    old = {s: signal.signal(s, handler) for s in signals}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


class ProgressCallback:
    """A listener that calls ``fn(channel, listings)`` on each ``source_progress``
    (what ``run_audit``'s ``progress`` argument was)."""

    def __init__(self, fn: Callable[[str, int], None]):
        self.fn = fn

    @hookimpl
    def source_progress(self, event: SourceProgress) -> None:
        self.fn(event.channel, event.listings)


def finding_changes(store: Store, run_id: int, channel: str) -> tuple[FindingChange, ...]:
    """What ``run_id`` changed in ``channel``'s findings, as events carry them."""
    return tuple(store.finding_changes(run_id, channel))


__all__ = ["AuditSession", "ProgressCallback", "dispatch", "finding_changes",
           "interrupt_on_signals"]
