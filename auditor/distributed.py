"""Audits as jobs on a queue: ``auditor run --distributed`` and ``auditor worker``.

One run is split into jobs on a procrastinate queue (PostgreSQL-backed: its tables
sit in the store's own database, so a distributed run needs nothing beside
PostgreSQL; docs/scaling.md says why over Celery + Redis). The run's own process
(the coordinator, ``DistributedSession``) holds the run lock, defers the run's jobs and
watches them: it reads no master and audits nothing, so it can run on a small machine.
Any number of ``auditor worker`` processes, on any machines that reach the database and
see the config file and its sources at the same paths, take the jobs:

0. ``auditor.master(run)`` (deferred first, with a higher priority: the first job any
   worker takes): the master import as ``auditor run`` does it (read in parts on the
   worker's cores, compared with the snapshot in force), and the workers' pack
   (``auditor.masterpack``): its master part (master and linker) stored and the master
   marked ready, then the history part (with the versions this import replaces); then
   the new snapshot is written. The linker's other indexes (key kinds beyond the first,
   the title-matching index) are built by the first job of the run that needs one (a
   read job, as its channel's keyless listings link), which stores them as the pack's
   indexes part for the others (``RunJobs.claim_part``: a job whose builder died takes
   over); meanwhile the master job writes the snapshot and its worker takes the next
   job, instead of the other workers waiting for it to build them. The coordinator records
   the import (summary, errors, events) from the job's outcome. A job waiting for the
   master, or a part of its pack, whose master job is back in the queue (its worker
   died) gives way (``MasterRequeued``: it is queued again), so that a worker is free
   to take the master job.
1. ``auditor.read(run, channel)`` (deferred as the run starts, beside the master job):
   streams the channel's source once (parsing while the master job runs), then
   de-duplicates and links every listing (over the whole channel: keyless listings are
   assigned together, exactly as in one process), decides what only the whole channel
   can decide (source status, the empty-source rule, the listings that vanished, a sharp
   drop to hold, the fields the source never carries), checks and writes the first
   shard itself (step 2, on the listings in hand) and stages the others' linked
   listings (``ShardSpec``: ranges of ``md5(key)``, N shards from ``[run] shard_size``).
2. ``auditor.shard(run, channel, shard)``: checks its shard's listings against the
   master, writes them (``save_listings(shard=...)``) and applies their findings
   (``apply_findings(shard=...)``: only this shard's findings can resolve).
3. ``auditor.finish(run, channel)``: once every shard job has ended: the presence
   conclusions (masters no listing links to; vanished listings marked removed; held
   drops), the channel's scores, source result and link notes. A shard that failed
   for good makes the channel ``partial``: nothing is concluded missing or removed,
   and only the shards that completed resolved anything.

Every job is idempotent (a retried job rewrites what it wrote, and the lifecycle
records no second event for a finding it already moved), so a job whose worker died
(SIGKILL, a lost machine) is simply run again: the coordinator hands a job whose
worker stopped sending heartbeats back to the queue (``[run] stalled_after``), up to
``[run] job_attempts`` attempts. The run finishes when all its jobs have; its
summary, events and exit code are those of ``auditor run``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import gc
import hashlib
import logging
import math
import os
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from auditor import holds, plugins
from auditor.check import CarriedFields, CheckContext, Preparations, with_unread
from auditor.confidence import prefer_master
from auditor.config import ChannelConfig, Config, load_config
from auditor.connector import SourceContext
from auditor.errors import AuditorError, MasterImportError, MasterRequeued, StoreError
from auditor.events import MasterImported, SourceProgress
from auditor.linking import Linker
from auditor.model import (
    Finding,
    Link,
    LinkMethod,
    Listing,
    MasterRecord,
    Outcome,
    SourceResult,
    SourceStatus,
)
from auditor.session import AuditSession, run_status

log = logging.getLogger(__name__)

QUEUE = "auditor"
TERMINAL = frozenset({"succeeded", "failed", "cancelled", "aborted"})
# Workers delete a job that succeeded (``delete_jobs="successful"``): a job deferred and
# no longer in procrastinate's table has succeeded.
DONE = ("succeeded", 0)


def _postgres_url(url: str) -> str:
    from auditor.storage import _postgres_url as pg_url

    if not pg_url(url):
        raise StoreError(f"a distributed run needs the PostgreSQL store ([store] url = "
                         f"\"postgresql://...\"); this config's store is {url}")
    try:  # said before a run starts, not as a crash once its master is imported
        import procrastinate  # noqa: F401
    except ImportError as e:
        raise AuditorError(f"distributed runs and `auditor worker` need the job queue "
                           f"procrastinate: pip install 'omni-auditor[distributed]' ({e})"
                           ) from None
    return url


def config_sha(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


# --------------------------------------------------------------------------- the queue

def make_app(url: str) -> Any:
    """The procrastinate app on the store's database, with the auditor's four tasks."""
    import procrastinate

    from auditor.storage.postgres import conninfo

    app = procrastinate.App(connector=procrastinate.PsycopgConnector(
        conninfo=conninfo(_postgres_url(url)), kwargs={"application_name": "auditor queue"}))
    for name, fn in (("auditor.master", master_job), ("auditor.read", read_job),
                     ("auditor.shard", shard_job), ("auditor.finish", finish_job)):
        # A job that raises is tried once more (they are idempotent); one whose worker
        # died is handed back by the coordinator (``_retry_stalled``).
        app.task(name=name, queue=QUEUE, pass_context=True, retry=_Retry(max_attempts=2,
                                                                         wait=1))(fn)
    return app


def _retry_strategy() -> type:
    import procrastinate

    class Retry(procrastinate.RetryStrategy):  # type: ignore[misc]
        """procrastinate's strategy, but a job that gave way to its run's master job
        (``MasterRequeued``: it waited for the master while that job was queued again)
        is always queued again, a second later, without it counting as a failure."""

        def get_retry_decision(self, *, exception: BaseException, job: Any) -> Any:
            if isinstance(exception, MasterRequeued):
                return procrastinate.RetryDecision(retry_in={"seconds": 1})
            return super().get_retry_decision(exception=exception, job=job)

    return Retry


def _Retry(**kw: Any) -> Any:
    return _retry_strategy()(**kw)


def ensure_queue(url: str) -> None:
    """The job tables and procrastinate's schema, created by the first process to need
    them."""
    from auditor.storage.jobs import RunJobs

    with RunJobs(url) as jobs:
        jobs.ensure_schema()
        with jobs.schema_lock():
            if not jobs.procrastinate_installed():
                import procrastinate

                from auditor.storage.postgres import conninfo

                app = procrastinate.App(connector=procrastinate.SyncPsycopgConnector(
                    conninfo=conninfo(url)))
                app.open()
                try:
                    app.schema_manager.apply_schema()
                finally:
                    app.close()
        jobs.ensure_notify()


def run_worker(config_path: str | Path, *, concurrency: int = 1, once: bool = False,
               heartbeat: float = 5.0, announce: Callable[[str], None] | None = None) -> None:
    """``auditor worker``: take jobs until stopped (SIGTERM / Ctrl-C finish the job in
    hand first); ``once``: stop when the queue is empty. ``announce(url)`` is called
    once the queue is reachable (the CLI's line without ``-v``)."""
    from auditor import http
    from auditor.storage.jobs import HostPacer

    cfg = load_config(Path(config_path))
    url = _postgres_url(cfg.store_url)
    ensure_queue(url)
    global _worker_url
    _worker_url = url
    pacer = HostPacer(url)
    http.shared_pacer = pacer
    app = make_app(url)
    log.info("auditor worker %s: taking jobs of %s", os.getpid(), _describe(url))
    if announce is not None:
        announce(_describe(url))
    try:
        app.run_worker(queues=[QUEUE], concurrency=concurrency, wait=not once,
                       name=f"auditor-{os.uname().nodename}-{os.getpid()}",
                       update_heartbeat_interval=heartbeat,
                       stalled_worker_timeout=max(30.0, 6 * heartbeat),
                       delete_jobs="successful", listen_notify=True,
                       fetch_job_polling_interval=1.0)
    finally:
        http.shared_pacer = None
        pacer.close()


def _describe(url: str) -> str:
    from auditor.storage.postgres import describe

    return describe(url)


# --------------------------------------------------------------------------- in a worker

@dataclass
class _Loaded:
    cfg: Config
    master: Mapping[str, MasterRecord]
    history: Any = None  # None: not loaded yet (the pack's "history" part)
    linker: Linker | None = None
    # the pack's "indexes" part installed in ``linker`` (or known to be missing: the
    # linker then builds an index itself when a listing needs it)
    indexed: bool = False


_CACHE: dict[tuple, _Loaded] = {}


@dataclass
class _JobEnv:
    cfg: Config
    store: Any
    jobs: Any
    run_id: int
    now: datetime
    shard_size: int
    info: dict[str, Any]
    loaded: _Loaded | None = None

    def master(self) -> _Loaded | None:
        """The run's master and linker: waits until the coordinator has them ready (a
        read job parses its feed meanwhile); None when the run ended first. The linker's
        other indexes (the title-matching index, key kinds beyond the first) come when a
        listing first needs one (``_install_indexes``)."""
        if self.loaded is None:
            self.loaded = _load_master(self)
        loaded = self.loaded
        if loaded is not None and loaded.linker is not None and not loaded.indexed:
            loaded.linker.index.supply = functools.partial(_install_indexes, self, loaded)
        return loaded

    def history(self) -> Any:
        """The run's master history (the pack's "history" part: waits for it)."""
        loaded = self.master()
        if loaded is None:
            raise _RunOver
        if loaded.history is None:
            got = _part(self, "history")
            loaded.history = got if got is not None else self.store.master_history()
        return loaded.history

    def close(self) -> None:
        self.store.close()
        self.jobs.close()


class _RunOver(Exception):
    """The run ended (or its coordinator died) before its master was ready."""


def _env(run_id: int, master: bool = True) -> _JobEnv | None:
    """A job's run: its config (checked against the coordinator's), connections and,
    unless ``master`` is false (``_JobEnv.master`` then waits for it when asked), the
    master and history of its run (kept by the worker between jobs and runs of one
    master). None when the run is over (interrupted): the job does nothing."""
    from auditor.storage import open_store
    from auditor.storage.jobs import RunJobs

    url = _worker_url
    jobs = RunJobs(url)
    info = jobs.run(run_id)
    if info is None or info["status"] != "running":
        jobs.close()
        log.info("run %s is not running any more: job skipped", run_id)
        return None
    path = info["config"]
    if not Path(path).is_file() or config_sha(path) != info["config_sha"]:
        jobs.close()
        raise AuditorError(f"run {run_id}: the config {path} on this worker is missing or "
                           f"differs from the coordinator's (workers need the same file)")
    cached = [v for k, v in _CACHE.items() if k[:2] == (path, info["config_sha"])]
    cfg = cached[0].cfg if cached else load_config(Path(path))
    env = _JobEnv(cfg, open_store(url), jobs, run_id, info["now"], info["shard_size"], info)
    if master and env.master() is None:
        env.close()
        log.info("run %s ended before its master was ready: job skipped", run_id)
        return None
    return env


def _load_master(env: _JobEnv) -> _Loaded | None:
    run_id, info, jobs = env.run_id, env.info, env.jobs
    t_wait = time.perf_counter()
    key = info["master_key"] or jobs.wait_master(run_id)
    if key is None:
        return None
    waited = time.perf_counter() - t_wait
    global _waited
    _waited += waited
    if waited > 0.5:
        log.info("run %s: waited %.1f s for the run's master", run_id, waited)
    ck = (info["config"], info["config_sha"], key)
    loaded = _CACHE.get(ck)
    if loaded is not None:
        return loaded
    _CACHE.clear()
    cfg = env.cfg
    t0 = time.perf_counter()
    pack = jobs.pack(run_id)
    if pack is not None:  # the coordinator's master and linker (its first index)
        from auditor import masterpack

        size = len(pack)
        master, linker = masterpack.loads(pack)
        del pack
        loaded = _CACHE[ck] = _Loaded(cfg, master, None, linker)
        log.info("master pack of run %s (%s, %.0f MB) loaded in %.1f s (%d records)",
                 run_id, key, size / 1e6, time.perf_counter() - t0, len(master))
    else:  # a coordinator that packs nothing: the snapshot from the store
        loaded = _CACHE[ck] = _Loaded(cfg, env.store.current_master(),
                                      env.store.master_history(), indexed=True)
        log.info("master snapshot (%s) loaded in %.1f s (%d records)", key,
                 time.perf_counter() - t0, len(loaded.master))
    gc.freeze()  # out of the collector's scans, as the jobs' own policy does on entry
    return loaded


_CLAIMED = object()  # (``_part``: this job makes the part)


def _part(env: _JobEnv, part: str, claim: int | None = None) -> Any:
    """A later part of the run's pack (``RunJobs.PARTS``), once it is stored (waits);
    None when it has none (raises ``_RunOver`` when the run ended first). ``claim``
    (this job's id): ``_CLAIMED`` when nobody makes the part (``RunJobs.claim_part``):
    this job makes it then."""
    from auditor import masterpack

    from auditor.storage.jobs import RunJobs

    t0 = time.perf_counter()
    with RunJobs(_worker_url) as jobs:  # (the job that armed a linker's supply may be over)
        state = jobs.wait_part(env.run_id, part, job=claim)
        if state is None:
            raise _RunOver
        waited = time.perf_counter() - t0
        global _waited
        _waited += waited
        if state == "claimed":
            log.info("run %s: nobody makes the %s of the master pack: this job does (waited "
                     "%.1f s)", env.run_id, part, waited)
            return _CLAIMED
        data = jobs.pack(env.run_id, part) if state == "stored" else None
    if data is None:
        log.info("run %s: no %s in the master pack (waited %.1f s)", env.run_id, part,
                 waited)
        return None
    loaded = env.loaded
    assert loaded is not None
    got = masterpack.loads(data, loaded.master)
    log.info("run %s: %s of the master pack (%.0f MB) loaded in %.1f s (waited %.1f s)",
             env.run_id, part, len(data) / 1e6, time.perf_counter() - t0 - waited, waited)
    return got


def _install_indexes(env: _JobEnv, loaded: _Loaded) -> None:
    """The linker's other indexes (the pack's "indexes" part: key kinds beyond the
    master part's, the title-matching index), when a listing first needs one: most
    listings link by their first key and never wait for them. The first job of the run
    to need them builds them (``_build_indexes``), while the master job goes on with the
    snapshot and its worker with other jobs; the others wait for the part it stores."""
    from auditor import masterpack

    assert loaded.linker is not None
    got = _part(env, "indexes", _job_id)
    if got is _CLAIMED:
        _build_indexes(env, loaded.linker, loaded.master)
    elif got is not None:
        masterpack.install(loaded.linker, got)
    loaded.indexed = True


def _build_indexes(env: _JobEnv, linker: Linker, master: Mapping[str, MasterRecord]
                   ) -> None:
    """Build the linker's indexes (the hashed key kinds in a forked process beside the
    title-matching index: ``Linker.prepare``) and store them as the pack's "indexes"
    part for the run's other jobs; if that fails, the part is marked missing (each
    worker then builds those it needs)."""
    from auditor import masterpack

    from auditor.storage.jobs import RunJobs

    first = set(linker.index)
    t0 = time.perf_counter()
    with RunJobs(_worker_url) as jobs:
        try:
            linker.prepare(background=True)
            t1 = time.perf_counter()
            part = masterpack.dumps(masterpack.indexes(linker, first), master)
            jobs.save_pack(env.run_id, part, "indexes")
            log.info("run %s: linker indexes built in %.1f s, packed and stored in %.1f s "
                     "(%.0f MB)", env.run_id, t1 - t0, time.perf_counter() - t1,
                     len(part) / 1e6)
        except Exception:
            log.exception("run %s: the linker's indexes were not packed; each worker builds "
                          "those it needs", env.run_id)
            jobs.packed(env.run_id, "indexes", "none")


# The store of this worker (``run_worker`` sets it); the jobs open their own connections.
_worker_url = ""


def _enabled(ch: ChannelConfig) -> list:
    from auditor.runner import _enabled_checks

    return _enabled_checks(ch)


@dataclass
class ReadOutcome:
    """What a channel's read job decided for the whole channel."""

    result: SourceResult
    errors: list[tuple[str, str]]
    linked: int = 0
    unlinked: int = 0
    ambiguous: int = 0
    suggested: int = 0
    linked_skus: set[str] = field(default_factory=set)
    suggested_skus: set[str] = field(default_factory=set)
    link_notes: list[Link] = field(default_factory=list)
    unseen: list[str] = field(default_factory=list)
    verdict: holds.DropVerdict = field(default_factory=holds.DropVerdict)
    missing: dict[str, list[str]] = field(default_factory=dict)
    started: float = 0.0

    @property
    def evidence(self) -> SourceStatus:
        """The status findings are applied with (held presence: as a partial read)."""
        r = self.result
        return SourceStatus.PARTIAL if r.status == SourceStatus.COMPLETE and \
            r.presence_held is not None else r.status


@dataclass
class ShardOutcome:
    tallies: dict[str, Counter]
    open_failed: int = 0
    open_warn: int = 0
    listings: int = 0


@contextlib.contextmanager
def _timed(what: str, context: Any = None) -> Iterator[None]:
    """A job's collector policy (``runner.streaming_gc``, as in one process: the loaded
    master is kept out of the collector's scans) and its wall and CPU seconds, logged
    when it ends (``auditor -v worker``); ``context``: procrastinate's, whose job id is
    ``_job_id`` meanwhile."""
    from auditor.runner import streaming_gc

    global _waited, _job_id
    _waited = 0.0
    _job_id = getattr(getattr(context, "job", None), "id", None)
    start, t0, c0, f0 = time.time(), time.perf_counter(), time.process_time(), _forks_cpu()
    try:
        with streaming_gc():
            yield
    finally:
        # (its forks' CPU (the master read's parts), the seconds it waited for the master
        # or a part of its pack and the wall clock it started at: bench/distributed.py
        # draws each worker's timeline from them)
        log.info("%s: %.2f s (%.2f CPU s; forks %.2f CPU s; waited %.2f s; started at "
                 "%.3f)", what, time.perf_counter() - t0, time.process_time() - c0,
                 _forks_cpu() - f0, _waited, start)


def _forks_cpu() -> float:
    import resource

    u = resource.getrusage(resource.RUSAGE_CHILDREN)
    return u.ru_utime + u.ru_stime


_waited = 0.0  # seconds the job in hand has waited for its run's master or a pack part
_job_id: int | None = None  # the procrastinate id of the job in hand (None: not in a job)


@contextlib.contextmanager
def _failure_recorded(run_id: int, channel: str, job: str) -> Iterator[None]:
    """A job that raises leaves its reason in ``dist_errors`` (without the store's
    password) before the queue retries or fails it: the channel's failure then says
    why, not only that a job failed."""
    try:
        yield
    except MasterRequeued:
        log.info("run %s: job %s of channel %s gives way to the run's master job, queued "
                 "again; it is tried again later", run_id, job, channel)
        raise
    except Exception as e:
        from auditor.storage import redact
        from auditor.storage.jobs import RunJobs

        text = str(e) if isinstance(e, AuditorError) else f"{type(e).__name__}: {e}"
        try:
            with RunJobs(_worker_url) as jobs:
                jobs.save_error(run_id, channel, job, redact(text, _worker_url)[:2000])
        except Exception:
            log.exception("run %s: could not record why job %s of channel %s failed",
                          run_id, job, channel)
        raise


MASTER = ""  # the "channel" of the master job's recorded failure (``dist_errors``)
MASTER_PRIORITY = 10  # taken before any other job of the queue


def master_job(context: Any, run_id: int) -> None:
    with _timed(f"run {run_id} job master", context), _failure_recorded(run_id, MASTER, "master"):
        _master_job(run_id)


def _master_job(run_id: int) -> None:
    """``auditor.master``: the run's master import and the workers' pack, in a worker
    (what a single-process run does before its channels): read the master (in parts, on
    the worker's cores: ``auditor.masterparts``), store the pack's master part (master
    and linker with its first key kind's index) and mark the master ready, so that the
    read jobs link; plan the import (which versions it replaces) and store the history
    part; write the new snapshot (the linker's other indexes are left to the first job
    that needs them: ``_install_indexes``). What it did (``prepare_master``'s outcome) is left for the
    coordinator, which records the import and emits its event. The worker keeps the
    master, linker and history for its next jobs of the run."""
    from auditor import runner

    env = _env(run_id, master=False)
    if env is None:
        return
    try:
        with runner._gc_paused():
            outcome = prepare_master(env.cfg, env.store, env.jobs, run_id, env.now,
                                     env.info)
        env.jobs.save_master_outcome(run_id, outcome)
    finally:
        env.close()


def prepare_master(cfg: Config, store: Any, jobs: Any, run_id: int, now: datetime,
                   info: dict[str, Any]) -> dict[str, Any]:
    """The master job's work (see ``_master_job``); its outcome: ``rejected`` (and then
    ``info``, ``message``, ``errors`` and ``count``, the master in force's record count,
    as ``AuditSession._run`` records a rejected import), else ``info`` (the import's
    summary, its ``snapshot_id`` once written) and ``store_error`` when the snapshot
    could not be written (the audit goes on against the master as read)."""
    from auditor import masterpack, runner

    t0 = time.perf_counter()
    update: Any = None
    try:
        update = runner.read_master(cfg, store, now, plan=False)
    except MasterImportError as e:
        count = store.master_count()
        snap = store.last_master_snapshot() if count else None
        outcome: dict[str, Any] = {
            "rejected": True, "message": str(e), "errors": e.errors[:10_000],
            "count": count, "info": {
                "snapshot_id": snap.id if snap else None, "records": count,
                "kept_previous": bool(count), "rejected": True, "source": e.source,
                "errors": e.errors[:100], "error_count": len(e.errors)}}
        if count == 0:  # nothing to audit against: the master is never ready
            return outcome
        master: Mapping[str, MasterRecord] = store.current_master()
    else:
        outcome = {"rejected": False}
        master = update.records if update.records is not None else store.current_master()
    t_read = time.perf_counter()
    history = store.master_history()
    linker = Linker(master, cfg.linking)
    if update is not None and update.records is None:  # the snapshot in force
        linker.master_version = update.info["snapshot_id"]
    key = f"snapshot {linker.master_version}" if linker.master_version is not None \
        else f"run {run_id}"
    data = masterpack.dumps((master, linker))
    t_pack = time.perf_counter()
    jobs.save_pack(run_id, data)
    jobs.master_ready(run_id, key)
    size = len(data)
    del data
    t_ready = time.perf_counter()
    log.info("run %s: master read in %.1f s; its pack's master part (%.0f MB) packed in "
             "%.1f s, stored in %.1f s: the master is ready", run_id, t_read - t0,
             size / 1e6, t_pack - t_read, t_ready - t_pack)
    if update is not None and update.records is not None:
        runner.plan_update(update, store.plan_master(update.records, now))
        assert update.plan is not None
        # The versions this import replaces were valid until now: stale-value checks
        # must know them before the snapshot is written.
        history.add(update.plan.replaced, update.plan.at)
    if jobs.part_state(run_id, "history") is None:  # (a retried job keeps the first's:
        jobs.save_pack(run_id, masterpack.dumps(history), "history")  # planned before
    t_history = time.perf_counter()  # the snapshot it may have written)
    log.info("run %s: master planned and history stored in %.1f s", run_id,
             t_history - t_ready)
    # This worker's next jobs of the run use what it holds (no pack to load). The
    # linker's other indexes are built by the first job that needs one (``_JobEnv.
    # master``): a read job, whose worker would otherwise wait for this job to build
    # them while this one could not write the snapshot or take the next read job.
    ck = (info["config"], info["config_sha"], key)
    _CACHE.clear()
    _CACHE[ck] = _Loaded(cfg, master, history, linker)
    if update is not None:
        try:
            runner.write_master(store, update)  # (a no-op when unchanged or written)
        except Exception as e:  # the audit goes on against the master as read
            log.exception("the master was read but could not be stored")
            outcome["store_error"] = f"the master was read but could not be stored: {e}"
        outcome["info"] = dict(update.info)
        outcome["source"] = update.source
    outcome["seconds"] = t_history - t0  # (as a run's "master ready in": before the write)
    outcome["records"] = len(master)
    outcome["history"] = len(history)
    gc.freeze()  # kept for the run's next jobs: out of the collector's scans
    return outcome


def read_job(context: Any, run_id: int, channel: str) -> None:
    with _timed(f"run {run_id} job read {channel}", context), \
            _failure_recorded(run_id, channel, "read"):
        _read_job(run_id, channel)


def _read_job(run_id: int, channel: str) -> None:
    # Deferred as the run starts: the feed is parsed while the coordinator imports and
    # packs the master; linking waits for it (``_JobEnv.master``).
    env = _env(run_id, master=False)
    if env is None:
        return
    try:
        ch = env.cfg.channel(channel)

        def ready() -> tuple[Mapping[str, MasterRecord], Linker]:
            loaded = env.master()
            if loaded is None:
                raise _RunOver
            if loaded.linker is None:
                loaded.linker = Linker(loaded.master, env.cfg.linking)
            return loaded.master, loaded.linker

        try:
            outcome, staged = read_channel(env.cfg, env.store, run_id, ch, None, None,
                                           env.now, ready=ready)
            history = env.history()
        except _RunOver:
            log.info("run %s ended before its master was ready: read of %s dropped",
                     run_id, channel)
            return
        loaded = env.loaded
        assert loaded is not None
        n = max(1, math.ceil(outcome.result.listings / max(1, env.shard_size)))
        by_shard: dict[int, list] = {i: [] for i in range(n)}
        from auditor.storage import ShardSpec

        for row in staged:
            by_shard[ShardSpec.of(row[0].key, n)].append(row)
        # The first shard is checked and written here, by the job that holds its
        # listings: they are never staged (a channel of one shard is not staged at
        # all); the others are staged for shard jobs on any worker.
        first = by_shard.pop(0)
        env.jobs.save_read(run_id, channel, n, by_shard, outcome)
        log.info("run %s channel %s read: %d listings in %d shards", run_id, channel,
                 outcome.result.listings, n)
        try:
            done = audit_shard(env.cfg, env.store, run_id, ch, loaded.master, history,
                               env.now, 0, n, first, outcome)
        except Exception:  # a shard job of its own then tries it (and fails it for good)
            log.exception("run %s channel %s: shard 0 failed in the read job; staged for "
                          "a shard job", run_id, channel)
            env.jobs.stage(run_id, channel, 0, first)
        else:
            env.jobs.save_shard(run_id, channel, 0, done)
    finally:
        env.close()


def _read_result(env: _JobEnv, run_id: int, channel: str) -> tuple[int, Any]:
    """What the channel's read job recorded (listing count and read outcome)."""
    got = env.jobs.read_result(run_id, channel)
    assert got is not None, f"run {run_id} channel {channel}: no read recorded"
    return got


def shard_job(context: Any, run_id: int, channel: str, shard: int) -> None:
    with _timed(f"run {run_id} job shard {channel}/{shard}", context), \
            _failure_recorded(run_id, channel, f"shard {shard}"):
        _shard_job(run_id, channel, shard)


def _shard_job(run_id: int, channel: str, shard: int) -> None:
    env = _env(run_id)
    if env is None:
        return
    try:
        with _unless_over(run_id):
            _audit_staged(env, run_id, channel, shard)
    finally:
        env.close()


@contextlib.contextmanager
def _unless_over(run_id: int) -> Iterator[None]:
    """A job whose run ended while it waited for part of the master does nothing."""
    try:
        yield
    except _RunOver:
        log.info("run %s ended before its master was ready: job skipped", run_id)


def _audit_staged(env: _JobEnv, run_id: int, channel: str, shard: int) -> None:
    n, read = _read_result(env, run_id, channel)
    rows = env.jobs.staged(run_id, channel, shard)
    loaded = env.master()
    assert loaded is not None
    outcome = audit_shard(env.cfg, env.store, run_id, env.cfg.channel(channel),
                          loaded.master, env.history(), env.now, shard, n, rows, read)
    env.jobs.save_shard(run_id, channel, shard, outcome)


def finish_job(context: Any, run_id: int, channel: str, failed_shards: list[int]) -> None:
    with _timed(f"run {run_id} job finish {channel}", context), \
            _failure_recorded(run_id, channel, "finish"):
        _finish_job(run_id, channel, failed_shards)


def _finish_job(run_id: int, channel: str, failed_shards: list[int]) -> None:
    env = _env(run_id)
    if env is None:
        return
    try:
        n, read = _read_result(env, run_id, channel)
        loaded = env.master()
        assert loaded is not None
        with _unless_over(run_id):
            summary = finish_channel(env.cfg, env.store, run_id, env.cfg.channel(channel),
                                     loaded.master, env.history(), env.now, n, read,
                                     env.jobs.shard_results(run_id, channel), failed_shards,
                                     env.jobs.errors(run_id, channel))
            env.jobs.save_summary(run_id, channel, summary)
    finally:
        env.close()


# --------------------------------------------------------------------------- the steps

class _MasterWhenReady(Mapping[str, MasterRecord]):
    """The master of a read that started before it was ready: a connector that looks at
    it (a crawl seeding from the masters' URLs) waits for it."""

    def __init__(self, ready: Callable[[], tuple[Mapping[str, MasterRecord], Linker]]):
        self._ready = ready

    def __getitem__(self, sku: str) -> MasterRecord:
        return self._ready()[0][sku]

    def __iter__(self) -> Iterator[str]:
        return iter(self._ready()[0])

    def __len__(self) -> int:
        return len(self._ready()[0])


class _Parsed:
    """A connector's listings as read before linking; its ``read`` replays them, then
    raises what stopped the read, at the same point."""

    def __init__(self, listings: list[Listing], error: BaseException | None):
        self.listings, self.error = listings, error

    def read(self, ctx: SourceContext) -> Iterator[Listing]:
        listings, self.listings = self.listings, []
        listings.reverse()
        while listings:  # handed over one by one: a listing replaced when linked is freed
            yield listings.pop()
        if self.error is not None:
            raise self.error


def read_channel(cfg: Config, store: Any, run_id: int, ch: ChannelConfig,
                 master: Mapping[str, MasterRecord] | None, linker: Linker | None,
                 now: datetime,
                 ready: Callable[[], tuple[Mapping[str, MasterRecord], Linker]] | None = None
                 ) -> tuple[ReadOutcome, list[tuple[Listing, Link]]]:
    """Read, de-duplicate and link one channel (``runner.audit_channel`` up to the
    checks); decide what only the whole channel can. With ``ready`` (and no master or
    linker yet), the source is read first and ``ready()`` gives master and linker for the
    links: a distributed read parses its feed while the master is being prepared."""
    t0 = time.time()
    conn_cls = plugins.connectors()[ch.type]
    result = SourceResult(ch.name, started_at=datetime.now(UTC))
    ctx = SourceContext(channel=ch, now=now, http_options=cfg.http, store=store,
                        master=master if master is not None else
                        _MasterWhenReady(ready) if ready is not None else {},
                        result=result)
    connector: Any = conn_cls(ch)
    if master is None or linker is None:
        assert ready is not None
        parsed: list[Listing] = []
        error: Exception | None = None
        try:
            for li in connector.read(ctx):
                parsed.append(li)
        except (_RunOver, MasterRequeued):
            raise
        except Exception as e:  # replayed after the links, as if it stopped the stream
            error = e
        connector = _Parsed(parsed, error)
        del parsed
        t_wait = time.time()
        master, linker = ready()
        t0 += time.time() - t_wait  # the channel's seconds leave out the wait
        ctx.master = master
    out = ReadOutcome(result, ctx.errors, started=t0)
    specs = _enabled(ch)
    carried = CarriedFields(specs)
    decisions = store.link_decisions(ch.name)
    linking = linker.session(decisions["confirmed"], decisions["rejected"])
    staged: list[tuple[Listing, Link]] = []
    seen: set[str] = set()

    def settle(li: Listing, link: Link) -> None:
        m = master.get(link.sku) if link.sku else None
        if m is not None:
            out.linked_skus.add(m.sku)
            out.linked += 1
            if li.alternatives:
                li = prefer_master(li, m, ctx.now)
        elif link.method == LinkMethod.AMBIGUOUS:
            out.ambiguous += 1
        elif link.method == LinkMethod.SUGGESTED:
            out.suggested += 1
            out.suggested_skus.update(link.candidates)
        else:
            out.unlinked += 1
        if m is None and (link.reason or link.candidates):
            out.link_notes.append(link)
        result.listings += 1
        staged.append((li, link))

    from auditor.runner import empty_read_failed, read_failed, read_linked

    try:
        for li, link in read_linked(connector, ctx, seen, carried, linking):
            settle(li, link)
    except (_RunOver, MasterRequeued):
        raise
    except Exception as e:
        read_failed(result, ch, e)
    empty_read_failed(store, run_id, ch, result)
    if result.status == SourceStatus.COMPLETE:
        out.unseen = sorted(store.present_keys(ch.name) - seen)
        if result.presence_held is None:
            out.verdict = holds.judge_drop(store, ch, run_id, out.unseen, result.listings)
            result.presence_held = out.verdict.hold
    out.missing = carried.missing(specs, ctx.carried, result.listings)
    result.finished_at = datetime.now(UTC)
    return out, staged


class _Checker:
    """The checks of one channel over listings (and masters), with their tallies: the
    ``run_checks`` of ``runner.audit_channel``."""

    def __init__(self, cfg: Config, store: Any, ch: ChannelConfig, master: Mapping, history: Any,
                 now: datetime):
        self.specs = _enabled(ch)
        self.cctx = {s.name: CheckContext(s.name, ch.name, ch.checks.get(s.name, {}), now,
                                          history, ch.options) for s in self.specs}
        self.tallies: dict[str, Counter] = {s.name: Counter() for s in self.specs}
        self.observed: list[Finding] = []
        plan = [(s.fn, self.cctx[s.name], self.tallies[s.name], s.fields) for s in self.specs]
        passed = Outcome.PASSED
        observed = self.observed

        def run_checks(m: MasterRecord | None, li: Listing | None, link: Any = None) -> None:
            unread = li is not None and li.unread
            for fn, c, tally, fields in plan:
                c.link = link
                found = fn(m, li, c)
                if unread and li is not None:
                    found = with_unread(fields, found, m, li, c)
                for f in found:
                    o = f.outcome
                    tally[o] += 1
                    if o is not passed:
                        observed.append(f)

        self.run_checks: Callable[..., None] = run_checks

    def drop_not_carried(self, missing: dict[str, list[str]]) -> None:
        if not missing:
            return
        gone = {(c, f) for c, fs in missing.items() for f in fs}
        keep = []
        for f in self.observed:
            if (f.check, f.field) in gone:
                self.tallies[f.check][f.outcome] -= 1
                self.tallies[f.check][Outcome.NOT_EVALUATED] += 1
            else:
                keep.append(f)
        self.observed[:] = keep

    def counts(self) -> dict[str, Counter]:
        return {name: Counter({str(o): n for o, n in t.items()})
                for name, t in self.tallies.items()}


def audit_shard(cfg: Config, store: Any, run_id: int, ch: ChannelConfig, master: Mapping,
                history: Any, now: datetime, shard: int, shards: int,
                rows: list[tuple[Listing, Link]], read: ReadOutcome) -> ShardOutcome:
    """Check one shard's listings, write them and apply their findings."""
    from auditor.storage import ShardSpec

    spec = ShardSpec(shard, shards)
    ck = _Checker(cfg, store, ch, master, history, now)
    # Checks with a preparation stage (the image check) run in batches, as in one process.
    preparations = Preparations(store, master, cfg.http, cfg.base_dir, now,
                                {n: c.options for n, c in ck.cctx.items()})
    ctx = SourceContext(channel=ch, now=now, http_options=cfg.http, store=store, master=master)
    try:
        prepared = preparations.batcher(ck.specs, ck.cctx, ctx.policy())
        for li, link in rows:
            m = master.get(link.sku) if link is not None and link.sku else None
            if prepared is None:
                ck.run_checks(m, li, link)
            else:
                prepared.add(m, li, ck.run_checks, link)
        if prepared is not None:
            prepared.flush(ck.run_checks)
    finally:
        preparations.close()
    store.save_listings(run_id, ch.name, rows, shard=spec)
    ck.drop_not_carried(read.missing)
    store.apply_findings(run_id, ch.name, ck.observed, read.evidence,
                         {li.key for li, _ in rows}, [s.name for s in ck.specs], now,
                         shard=spec)
    return ShardOutcome(ck.counts(),
                        sum(1 for f in ck.observed if f.outcome is Outcome.FAILED),
                        sum(1 for f in ck.observed if f.outcome is Outcome.WARN), len(rows))


def finish_channel(cfg: Config, store: Any, run_id: int, ch: ChannelConfig, master: Mapping,
                   history: Any, now: datetime, shards: int, read: ReadOutcome,
                   shard_results: dict[int, ShardOutcome], failed_shards: list[int],
                   errors: Mapping[str, str] | None = None) -> Any:
    """The channel-wide conclusions once every shard job has ended; its summary.
    ``errors``: why jobs failed (``RunJobs.errors``), the first failed shard's quoted."""
    from auditor.runner import ChannelSummary, sync_channel_propagation
    from auditor.storage import ShardSpec

    result = read.result
    failed = sorted(set(failed_shards) | (set(range(shards)) - set(shard_results)))
    if failed and result.status == SourceStatus.COMPLETE:
        result.status = SourceStatus.PARTIAL
        result.message = (f"{len(failed)} of {shards} shard jobs failed "
                          f"(shards {', '.join(map(str, failed[:20]))}): nothing concluded "
                          f"missing or removed")
        why = [(i, (errors or {}).get(f"shard {i}")) for i in failed]
        why = [(i, e) for i, e in why if e]
        if why:
            result.message += f"; shard {why[0][0]}: {why[0][1]}"
    ck = _Checker(cfg, store, ch, master, history, now)
    if result.status == SourceStatus.COMPLETE:
        if result.presence_held is None:
            store.mark_removed(run_id, ch.name, read.unseen)
        for sku, m in master.items():
            if sku not in read.linked_skus and sku not in read.suggested_skus:
                ck.run_checks(m, None)
        if result.presence_held is not None:
            held = list(ck.observed)
            ck.observed.clear()
            for f in held:
                ck.tallies[f.check][f.outcome] -= 1
            store.save_presence_hold(run_id, ch.name, "drop" if read.verdict.hold else "row",
                                     result.presence_held, read.unseen, held,
                                     [s.name for s in ck.specs])
        holds.settle_earlier(store, ch.name, run_id, read.verdict.confirmed_run, now)
    ck.drop_not_carried(read.missing)
    evidence = read.evidence if result.status == SourceStatus.COMPLETE else result.status
    store.apply_findings(run_id, ch.name, ck.observed, evidence, None,
                         [s.name for s in ck.specs], now,
                         shard=ShardSpec(ShardSpec.NO_LISTING, shards))
    counts = ck.counts()
    for r in shard_results.values():
        for name, c in r.tallies.items():
            counts.setdefault(name, Counter()).update(c)
    store.save_scores(run_id, [(ch.name, name, dict(c)) for name, c in counts.items()])
    result.finished_at = datetime.now(UTC)
    store.save_source_result(run_id, result, read.errors)
    if result.status != SourceStatus.FAILED:
        store.save_link_notes(run_id, ch.name, read.link_notes)
    # As a channel's run in one process: its propagation rows, here on the worker beside
    # the other channels' jobs; the evaluation after the run finds them written.
    sync_channel_propagation(store, ch.name)
    changes = store.finding_changes(run_id, ch.name)
    summary = ChannelSummary(ch.name, result.status, listings=result.listings,
                             linked=read.linked, unlinked=read.unlinked,
                             ambiguous=read.ambiguous, suggested=read.suggested,
                             errors=result.errors, message=result.message,
                             presence_held=result.presence_held, not_carried=read.missing)
    if read.verdict.note:
        summary.notes.append(read.verdict.note)
    summary.outcomes = counts
    summary.opened = sum(1 for c in changes if c.change in ("opened", "reopened"))
    summary.resolved = sum(1 for c in changes if c.change == "resolved")
    summary.open_failed = sum(r.open_failed for r in shard_results.values()) + \
        sum(1 for f in ck.observed if f.outcome is Outcome.FAILED)
    summary.open_warn = sum(r.open_warn for r in shard_results.values()) + \
        sum(1 for f in ck.observed if f.outcome is Outcome.WARN)
    summary.seconds = time.time() - read.started
    return summary


# --------------------------------------------------------------------------- coordinator

class DistributedSession(AuditSession):
    """``auditor run --distributed``: the run's process defers the master job and the
    channels' jobs, records what they did and waits for them (see the module's doc)."""

    def __init__(self, config: Config, store: Any, config_path: str | Path, **kw: Any):
        # The coordinator audits nothing itself: no forked planner or shared linker.
        config = dataclasses.replace(config, run={**config.run, "workers": 1})
        super().__init__(config, store, **kw)
        self.config_path = str(Path(config_path).resolve())
        self.url = _postgres_url(store.url)
        # Seconds between looks at the jobs when none ends (each end is notified: see
        # ``RunJobs.wait``), and between looks for workers gone silent.
        self.poll = 1.0
        self.stall_poll = 2.0

    def _run(self, runner: Any, selected: list, workers: int, started: datetime,
             t_run: float) -> Any:
        """The run's jobs are deferred as it starts: the master job first (taken before
        any other), then the channels' read jobs, which parse their feeds while a worker
        imports the master (their links wait for it). This process only watches them."""
        from auditor.storage.jobs import RunJobs

        run_id, now, cfg = self.run_id, self.now, self.config
        assert run_id is not None and now is not None
        ensure_queue(self.url)
        self._jobs = jobs = RunJobs(self.url)
        self._app = app = make_app(self.url)
        try:
            app.open()
        except BaseException:
            jobs.close()
            raise
        self._open = True
        self._master_job: int | None = None
        try:
            jobs.hold_run(run_id)  # released with the connection: workers stop waiting
            jobs.start_run(run_id, self.config_path, config_sha(self.config_path), None, now,
                           int(cfg.run.get("shard_size", 150_000)))
            if jobs.end_stale_runs(run_id):
                log.info("earlier distributed runs left running: their staged listings and "
                         "master packs dropped")
            self._t_jobs = time.perf_counter()
            self._master_job = app.configure_task(
                "auditor.master", queue=QUEUE, priority=MASTER_PRIORITY).defer(run_id=run_id)
            jobs.set_master_job(run_id, self._master_job)
            self._reads = {ch.name: app.configure_task("auditor.read", queue=QUEUE).defer(
                run_id=run_id, channel=ch.name) for ch in selected}
            return self._audit_jobs(selected, started, t_run)
        finally:
            if self._open:  # ended before the channel phase's end (a crash)
                self._close_jobs([j for j in [self._master_job, *getattr(
                    self, "_reads", {}).values()] if j is not None], "interrupted")

    def _master_done(self, outcome: dict[str, Any] | None, seconds: float
                     ) -> tuple[dict[str, Any], str | None, bool]:
        """Record what the master job did, as ``AuditSession._run`` records an import:
        the master's summary, the run's error about it, and whether there is a master to
        audit against."""
        store, run_id = self.store, self.run_id
        assert run_id is not None
        if outcome is None:
            raise AuditorError(f"run {run_id}: the master job ended without an outcome")
        info = outcome["info"]
        if outcome["rejected"]:
            error = outcome["message"]
            log.error("%s", error, extra={"summary": "master_error"})
            store.record_master_import(run_id, info, outcome["errors"])
            count = outcome["count"]
            self.emit(MasterImported(
                run_id, False, info["source"], count, snapshot_id=info["snapshot_id"],
                errors=tuple((loc, why) for loc, why in outcome["errors"][:100]),
                error_count=info["error_count"], kept_previous=bool(count),
                seconds=seconds))
            if count:
                store.set_run_snapshot(run_id, info["snapshot_id"])
            return info, error, bool(count)
        store_error = outcome.get("store_error")
        if store_error:
            log.error("%s", store_error)
            self.emit(MasterImported(run_id, False, outcome.get("source"),
                                     outcome["records"], errors=(("store", store_error),),
                                     error_count=1, seconds=seconds))
            return info, store_error, True
        store.set_run_snapshot(run_id, info["snapshot_id"])
        store.record_master_import(run_id, {k: v for k, v in info.items() if k != "errors"},
                                   info.get("errors") or ())
        self.emit(MasterImported(
            run_id, True, info.get("source"), info.get("records", 0), info.get("added", 0),
            info.get("changed", 0), info.get("removed", 0), bool(info.get("unchanged")),
            info.get("snapshot_id"), info.get("skipped_rows", 0),
            tuple(tuple(x) for x in (info.get("errors") or ())[:100]),
            len(info.get("errors") or ()), seconds=seconds))
        return info, None, True

    def _close_jobs(self, queued: list[int], status: str) -> None:
        """End the run's bookkeeping: interrupted, its queued jobs are cancelled."""
        self._open = False
        assert self.run_id is not None
        try:
            if status != "finished":
                for j in queued:
                    try:
                        self._app.job_manager.cancel_job_by_id(j, abort=True)
                    except Exception:
                        log.exception("could not cancel job %s", j)
            self._jobs.end_run(self.run_id, status)
        finally:
            self._jobs.close()
            self._app.close()

    def _audit_jobs(self, selected: list, started: datetime, t_run: float) -> Any:
        """Watch the run's jobs: record the master job's import when it ends, queue a
        channel's shard jobs once its read job has ended and its finish job once they
        all have, hand back jobs whose workers died; then finish the run as
        ``AuditSession`` does."""
        from auditor.runner import ChannelSummary, channel_events
        from auditor.storage.jobs import RunJobs

        cfg, store, run_id, now = self.config, self.store, self.run_id, self.now
        assert run_id is not None and now is not None and self._master_job is not None
        jobs, app = self._jobs, self._app
        ends = RunJobs(self.url)  # a connection that only waits for jobs to end
        ends.listen()
        attempts = max(1, int(cfg.run.get("job_attempts", 3)))
        stalled = float(cfg.run.get("stalled_after", 30.0))
        names = [ch.name for ch in selected]
        t_jobs = self._t_jobs
        t_ready: float | None = None
        reads = self._reads
        master_job = self._master_job
        master: tuple[dict[str, Any], str | None, bool] | None = None
        master_seconds = 0.0
        shard_jobs: dict[str, dict[int, int]] = {}
        finishes: dict[str, int] = {}
        summaries: dict[str, Any] = {}
        started_at = {name: time.perf_counter() for name in names}
        status = "interrupted"

        def fail(name: str, reason: str, job: str, channel: str | None = None) -> None:
            cause = jobs.errors(run_id, name if channel is None else channel).get(job)
            reason += f": {cause}" if cause else " (see the workers' logs)"
            result = SourceResult(name, SourceStatus.FAILED, message=reason, started_at=now,
                                  finished_at=datetime.now(UTC))
            store.save_source_result(run_id, result, [])
            summaries[name] = ChannelSummary(name, SourceStatus.FAILED, message=reason,
                                             seconds=time.perf_counter() - started_at[name])
            channel_events(self.emit, self.wanted, store, run_id, summaries[name], result)

        stall_check = 0.0
        idle_warned = False
        try:
            while len(summaries) < len(names) or master is None:
                every = [master_job, *reads.values(), *finishes.values()] + \
                    [j for js in shard_jobs.values() for j in js.values()]
                states = jobs.job_states(every)
                if time.monotonic() - stall_check >= min(self.stall_poll, stalled / 4):
                    stall_check = time.monotonic()
                    self._retry_stalled(app, jobs, stalled, attempts, states)
                    if jobs.live_workers(stalled):
                        idle_warned = False
                    elif not idle_warned and time.perf_counter() - t_jobs >= stalled:
                        idle_warned = True
                        log.warning("run %s: no `auditor worker` is taking jobs on %s (none "
                                    "sent a heartbeat in %.0f s): the run waits for one; start "
                                    "`auditor worker --config %s`", run_id, _describe(self.url),
                                    stalled, self.config_path)
                if t_ready is None and (jobs.run(run_id) or {}).get("master_key"):
                    t_ready = time.perf_counter()
                if master is None:
                    st = states.get(master_job, DONE)[0]
                    if st == "succeeded":
                        master_seconds = time.perf_counter() - t_jobs
                        master = self._master_done(jobs.master_outcome(run_id),
                                                   master_seconds)
                        if not master[2]:  # rejected, and no earlier master: nothing read
                            break
                    elif st in TERMINAL:  # no master: no channel can be audited
                        cause = jobs.errors(run_id, MASTER).get("master")
                        error = f"the master job {st}: {cause or 'see the workers logs'}"
                        log.error("run %s: %s", run_id, error)
                        master = ({"records": 0, "failed": True}, error, True)
                        for name in names:
                            if name not in summaries:
                                fail(name, f"the master job {st}", "master", MASTER)
                for name in names:
                    if name in summaries:
                        continue
                    if name not in shard_jobs:
                        st = states.get(reads[name], DONE)[0]
                        if st == "succeeded":
                            got = jobs.read_result(run_id, name)
                            n = got[0] if got else 0
                            if got and self.wants("source_progress"):  # the channel is read
                                self.emit(SourceProgress(run_id, name, got[1].result.listings))
                            done = jobs.shards_done(run_id, name)  # (the read job's own)
                            shard_jobs[name] = {i: app.configure_task(
                                "auditor.shard", queue=QUEUE).defer(
                                    run_id=run_id, channel=name, shard=i)
                                for i in range(n) if i not in done}
                            log.info("run %s channel %s read: %s listings, %d shard job(s) "
                                     "queued", run_id, name,
                                     f"{got[1].result.listings:,}" if got else "no",
                                     len(shard_jobs[name]))
                        elif st in TERMINAL:
                            fail(name, f"the read job of channel {name} {st}", "read")
                        continue
                    if name not in finishes:
                        sts = {i: states.get(j, DONE)[0]
                               for i, j in shard_jobs[name].items()}
                        if all(s in TERMINAL for s in sts.values()):
                            finishes[name] = app.configure_task(
                                "auditor.finish", queue=QUEUE).defer(
                                    run_id=run_id, channel=name,
                                    failed_shards=[i for i, s in sts.items()
                                                   if s != "succeeded"])
                        continue
                    st = states.get(finishes[name], DONE)[0]
                    if st == "succeeded":
                        summary = jobs.summary(run_id, name)
                        summaries[name] = summary
                        log.info("run %s channel %s finished: %s (%d of %d channels done)",
                                 run_id, name, summary.status.value, len(summaries),
                                 len(names))
                        channel_events(self.emit, self.wanted, store, run_id, summary,
                                       _result_of(store, run_id, name),
                                       [(e.location, e.reason)
                                        for e in store.run_errors(run_id, name, 20)])
                    elif st in TERMINAL:
                        fail(name, f"the finish job of channel {name} {st}", "finish")
                if len(summaries) < len(names) or master is None:
                    ends.wait(self.poll)
            status = "finished"
            end = time.perf_counter()
            if master[2]:
                log.info("run %s: channels audited in %.1f s after the master was ready (%d "
                         "jobs; %.1f s since the jobs were deferred, as the run started; "
                         "master job %.1f s; this coordinator's CPU so far %.1f s)", run_id,
                         end - (t_ready or t_jobs), 1 + len(reads) + len(finishes) +
                         sum(map(len, shard_jobs.values())), end - t_jobs, master_seconds,
                         time.process_time())
        finally:
            try:
                with self.after("jobs closed"):
                    self._close_jobs([master_job, *reads.values(), *finishes.values()] +
                                     [j for js in shard_jobs.values() for j in js.values()],
                                     status)
            finally:
                ends.close()
        info, master_error, audited = master
        if not audited:
            assert master_error is not None
            return self._finish_without_master(info, master_error, started, t_run,
                                               master_seconds)
        out = [summaries[name] for name in names]
        return self._finish(run_status(master_error, out), info, master_error, out, started,
                            t_run, master_seconds)


    @staticmethod
    def _retry_stalled(app: Any, jobs: Any, stalled: float, attempts: int,
                       states: dict[int, tuple[str, int]]) -> None:
        """Jobs of this run whose worker stopped sending heartbeats (killed, machine
        lost) go back to the queue, up to ``attempts`` attempts; then they fail."""
        from procrastinate import sql

        sync = app.connector.get_sync_connector()
        rows = sync.execute_query_all(query=sql.queries["select_stalled_jobs_by_heartbeat"],
                                      queue=QUEUE, task_name=None,
                                      seconds_since_heartbeat=stalled)
        for row in rows:
            if row["id"] not in states:
                continue  # another run's (or an earlier one's) job
            args = row["args"] or {}
            job = {"auditor.master": "master", "auditor.read": "read",
                   "auditor.finish": "finish"}.get(
                row["task_name"], f"shard {args.get('shard')}")
            if row["attempts"] + 1 >= attempts:
                log.error("job %s (%s of channel %s) stalled on its last attempt: failed",
                          row["id"], job, args.get("channel"))
                with contextlib.suppress(Exception):
                    jobs.save_error(args["run_id"], args.get("channel", MASTER), job,
                                    f"its worker stopped sending heartbeats (killed, or its "
                                    f"machine lost) on each of {attempts} attempts")
                sync.execute_query(query=sql.queries["finish_job"], job_id=row["id"],
                                   status="failed", delete_job=False)
            else:
                log.warning("job %s (%s): its worker is gone; queued again (%s of channel "
                            "%s)", row["id"], row["task_name"], job, args.get("channel"))
                app.job_manager.retry_job_by_id(row["id"], datetime.now(UTC))


def _result_of(store: Any, run_id: int, channel: str) -> SourceResult | None:
    for r in store.run_sources(run_id):
        if r.source == channel:
            return SourceResult(r.source, SourceStatus(r.status), listings=r.listings or 0,
                                errors=r.errors or 0, message=r.message,
                                started_at=r.started_at, finished_at=r.finished_at)
    return None


__all__ = ["DistributedSession", "ReadOutcome", "ShardOutcome", "audit_shard",
           "ensure_queue", "finish_channel", "make_app", "read_channel", "run_worker"]
