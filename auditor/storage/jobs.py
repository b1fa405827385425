"""The bookkeeping of distributed runs, in the PostgreSQL store's database.

``auditor.distributed`` splits one run into jobs on a procrastinate queue (its own
tables, ``procrastinate_*``, in the same database and schema). What the jobs hand
each other lives here, beside the store's tables:

- ``dist_runs``: one row per distributed run (its config's hash, master snapshot,
  audit clock, shard size, its master job's id, ``master_key`` once the run's master is
  ready for the workers, and the master job's outcome for the coordinator); a job of a
  run no longer ``running`` does nothing;
- ``dist_staged``: a channel's listings as read and linked by its ``read`` job, per
  shard, for the shard jobs (dropped when the run ends; the first shard's are checked
  by the read job itself and never staged; an UNLOGGED table; a shard's pickles one
  after another, cut into rows of ``ROW_BYTES`` that stay in the table's pages, neither
  compressed nor moved to TOAST);
- ``dist_packs``: the run's master, history and linker indexes, packed once by its
  master job (``auditor.masterpack``) for every worker, in parts (``PARTS``: the
  master and its linker, whose readiness ``master_key`` says; the linker's other
  indexes and the history, whose readiness ``dist_runs.packed`` says) (UNLOGGED,
  dropped when the run ends);
- ``dist_channels``: a ``read`` job's outcome (source status, counts, presence
  decisions) and, once the channel is finished, its summary;
- ``dist_shards``: a shard job's outcome (check tallies, open counts);
- ``crawl_hosts``: per host, the next free request slot, shared by every worker
  (``HostPacer``).
- ``dist_errors``: why a job of a run failed (its last attempt's error, or its worker
  gone silent), per (run, channel, job): the channel's failure names it.

Rows are written by the jobs and read by the coordinator (``auditor run
--distributed``) and the other jobs. Chunks and outcomes are pickles of the auditor's own objects: the
job tables are as trusted as the store itself (whoever can write them can write the
findings too).
"""

from __future__ import annotations

import contextlib
import copyreg
import dataclasses
import gc
import io
import operator
import pickle
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Self

import psycopg

from auditor.errors import MasterRequeued
from auditor.storage.postgres import connect

SCHEMA = """
CREATE TABLE IF NOT EXISTS dist_runs (
    run_id BIGINT PRIMARY KEY, config TEXT NOT NULL, config_sha TEXT NOT NULL,
    snapshot_id BIGINT, now TIMESTAMPTZ NOT NULL, shard_size INTEGER NOT NULL,
    status TEXT NOT NULL DEFAULT 'running');
ALTER TABLE dist_runs ADD COLUMN IF NOT EXISTS master_key TEXT;
ALTER TABLE dist_runs ADD COLUMN IF NOT EXISTS packed JSONB NOT NULL DEFAULT '{}';
ALTER TABLE dist_runs ADD COLUMN IF NOT EXISTS master_job BIGINT;
ALTER TABLE dist_runs ADD COLUMN IF NOT EXISTS master_outcome BYTEA;
CREATE UNLOGGED TABLE IF NOT EXISTS dist_staged (
    run_id BIGINT NOT NULL, channel TEXT COLLATE "C" NOT NULL, shard INTEGER NOT NULL,
    seq INTEGER NOT NULL, data BYTEA NOT NULL, PRIMARY KEY (run_id, channel, shard, seq));
CREATE TABLE IF NOT EXISTS dist_channels (
    run_id BIGINT NOT NULL, channel TEXT COLLATE "C" NOT NULL, shards INTEGER NOT NULL,
    read BYTEA NOT NULL, summary BYTEA, PRIMARY KEY (run_id, channel));
CREATE TABLE IF NOT EXISTS dist_shards (
    run_id BIGINT NOT NULL, channel TEXT COLLATE "C" NOT NULL, shard INTEGER NOT NULL,
    result BYTEA NOT NULL, PRIMARY KEY (run_id, channel, shard));
CREATE UNLOGGED TABLE IF NOT EXISTS dist_packs (
    run_id BIGINT NOT NULL, seq INTEGER NOT NULL, data BYTEA NOT NULL,
    PRIMARY KEY (run_id, seq));
CREATE TABLE IF NOT EXISTS crawl_hosts (
    host TEXT COLLATE "C" PRIMARY KEY, next_at TIMESTAMPTZ NOT NULL);
ALTER TABLE crawl_hosts ADD COLUMN IF NOT EXISTS last_at TIMESTAMPTZ;
ALTER TABLE crawl_hosts ADD COLUMN IF NOT EXISTS crawl_delay FLOAT8 NOT NULL DEFAULT 0;
CREATE TABLE IF NOT EXISTS dist_errors (
    run_id BIGINT NOT NULL, channel TEXT COLLATE "C" NOT NULL, job TEXT COLLATE "C" NOT NULL,
    error TEXT NOT NULL, at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (run_id, channel, job));
"""

NOTIFY_CHANNEL = "auditor_jobs"
NOTIFY_SQL = f"""
CREATE OR REPLACE FUNCTION auditor_job_ended() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' OR NEW.status::text IN ('succeeded', 'failed', 'cancelled',
                                                 'aborted') THEN
        PERFORM pg_notify('{NOTIFY_CHANNEL}', OLD.id::text);
    END IF;
    RETURN NULL;
END $$;
CREATE OR REPLACE TRIGGER auditor_job_ended AFTER UPDATE OF status OR DELETE
    ON procrastinate_jobs FOR EACH ROW EXECUTE FUNCTION auditor_job_ended();
"""

# Storage parameters of the run-scoped tables (``dist_staged``, ``dist_packs``): no
# autovacuum or autoanalyze triggered by their inserts, on the table or its TOAST table.
_NO_INSERT_VACUUM = ("autovacuum_vacuum_insert_threshold = -1,"
                     " toast.autovacuum_vacuum_insert_threshold = -1,"
                     " autovacuum_analyze_threshold = 2000000000")
# Their rows are at most ``ROW_BYTES`` of data and stay in the table's own pages: no
# TOAST (a value of MBs is cut by the server into ~2 KB chunks, each a row of the TOAST
# table and an entry of its index: twice the server's CPU of rows cut here, measured).
_INLINE = "toast_tuple_target = 8160"
ROW_BYTES = 7_800  # bytes of a staged stream or a pack per row (a row fits in a page)
LOCK_SCHEMA = 0x61756400  # advisory lock class of the job tables' creation
LOCK_COORDINATOR = 0x61756401  # (class, run id): held by a run's coordinator while it runs
CHUNK = 5_000  # listings per pickle of a staged shard
# The parts of a master pack (``auditor.distributed``): part p's rows are rows
# p * PART_SEQ + 0, 1, ... of ``dist_packs`` (up to 8 GB a part).
PARTS = {"master": 0, "indexes": 1, "history": 2}
PART_SEQ = 1 << 20


def _positional(cls: type) -> Any:
    """A pickle reducer rebuilding a frozen dataclass from its fields in order: pickle's
    default for slotted dataclasses (``__getstate__``/``__setstate__``, which look up
    ``dataclasses.fields`` per object) costs several times the CPU of the listing's own
    parsing; this is one ``attrgetter`` and one constructor call."""
    fields = dataclasses.fields(cls)
    assert all(f.init for f in fields), cls
    get = operator.attrgetter(*(f.name for f in fields))
    return lambda obj: (cls, get(obj))


_DISPATCH: dict[type, Any] = {}


def _dispatch() -> dict[type, Any]:
    if not _DISPATCH:
        from auditor.model import Link, Listing, Money

        _DISPATCH.update(copyreg.dispatch_table)
        for cls in (Listing, Link, Money):
            _DISPATCH[cls] = _positional(cls)
    return _DISPATCH


def dumps(obj: Any) -> bytes:
    """``pickle.dumps`` with the fast reducers of the auditor's listing records."""
    buf = io.BytesIO()
    pickler = pickle.Pickler(buf, pickle.HIGHEST_PROTOCOL)
    pickler.dispatch_table = _dispatch()
    pickler.dump(obj)
    return buf.getvalue()


# Staged chunks and packs travel in COPY's binary format, and are read back in binary:
# in text, every byte of a pickle would be sent as two hex digits (and escaped once
# more by COPY), which the server then decodes.
STAGED_TYPES = ("int8", "text", "int4", "int4", "bytea")
PACK_TYPES = ("int8", "int4", "bytea")


def _rows_of(data: bytes | memoryview) -> Iterator[memoryview]:
    """``data`` in pieces of ``ROW_BYTES``, one per row."""
    view = memoryview(data)
    return (view[i:i + ROW_BYTES] for i in range(0, len(data), ROW_BYTES))


def _in_order(rows: Iterable[tuple[int, bytes]]) -> list[bytes]:
    """The data of ``(seq, data)`` rows in ``seq`` order, put in order here: the tables
    have no statistics (``_NO_INSERT_VACUUM``), and the server, guessing, may fetch a
    pack's thousands of rows by bitmap and sort their MBs on disk for an ``ORDER BY``."""
    return [data for _, data in sorted(rows, key=operator.itemgetter(0))]


def _stage_rows(copy: Any, run_id: int, channel: str, shard: int, rows: list[Any]) -> None:
    """One shard's listings as rows of ``dist_staged``: pickles of ``CHUNK`` listings one
    after another, the stream cut into rows of ``ROW_BYTES`` (``RunJobs.staged`` joins
    them and loads the pickles in turn); one pickle held at a time, the bytes that do not
    fill a row carried over to the next."""
    seq, carry = 0, b""
    for i in range(0, len(rows), CHUNK):
        data = carry + dumps(rows[i:i + CHUNK])
        whole = len(data) - len(data) % ROW_BYTES if i + CHUNK < len(rows) else len(data)
        for piece in _rows_of(memoryview(data)[:whole]):
            copy.write_row((run_id, channel, shard, seq, piece))
            seq += 1
        carry = data[whole:]


@contextlib.contextmanager
def _binary_copy(cur: psycopg.Cursor, table: str, types: Sequence[str]) -> Iterator[Any]:
    """A binary ``COPY table FROM STDIN`` of all the table's columns, in order, of these
    types (``STAGED_TYPES``, ``PACK_TYPES``)."""
    cols = {"dist_staged": "run_id, channel, shard, seq, data",
            "dist_packs": "run_id, seq, data"}[table]
    with cur.copy(f"COPY {table} ({cols}) FROM STDIN (FORMAT BINARY)") as copy:
        copy.set_types(list(types))
        yield copy


class RunJobs:
    """The job tables of one store database, on a connection of their own."""

    def __init__(self, url: str):
        self.url = url
        self.conn = connect(url, application_name="auditor jobs")

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def ensure_schema(self) -> None:
        """Create the job tables and procrastinate's schema, once (concurrent callers
        take turns under an advisory lock)."""
        with self.conn.transaction():
            self.conn.execute("SELECT pg_advisory_xact_lock(%s, hashtext(current_schema()))",
                              (LOCK_SCHEMA,))
            self.conn.execute(SCHEMA)
            # Staged listings live for one run: no WAL for them (a server crash loses the
            # run anyway), and no TOAST compression (pickles hardly compress, and pglz on
            # hundreds of MB cost the server more CPU than the COPY). Tables made by
            # earlier versions are changed once.
            for table in ("dist_staged", "dist_packs"):
                row = self.conn.execute(
                    "SELECT c.relpersistence, a.attstorage, coalesce(c.reloptions, '{}')"
                    " FROM pg_class c JOIN pg_attribute a"
                    " ON a.attrelid = c.oid AND a.attname = 'data'"
                    " WHERE c.oid = %s::regclass", (table,)).fetchone()
                if row and row[0] != "u":
                    self.conn.execute(f"ALTER TABLE {table} SET UNLOGGED")
                if row and row[1] != "e":
                    self.conn.execute(f"ALTER TABLE {table} ALTER COLUMN data SET STORAGE"
                                      " EXTERNAL")
                # Their rows are written once, read once and dropped at the run's end
                # (``end_run``: a TRUNCATE): no vacuum after inserts (it would read
                # hundreds of MB of TOAST for nothing while the workers need the cores),
                # no statistics beyond the first (they are read by primary key only).
                # A vacuum after deletes (an interrupted run's) stays as configured.
                if row and "autovacuum_vacuum_insert_threshold=-1" not in row[2]:
                    self.conn.execute(f"ALTER TABLE {table} SET ({_NO_INSERT_VACUUM})")
                if row and "toast_tuple_target=8160" not in row[2]:
                    self.conn.execute(f"ALTER TABLE {table} SET ({_INLINE})")
            # A channel's read outcome (sets of SKUs, the keys it no longer saw: MBs) is read
            # by each of its shard jobs: stored uncompressed, pglz neither compresses it on
            # the way in nor decompresses it for every reader.
            for table, col in (("dist_channels", "read"), ("dist_channels", "summary")):
                row = self.conn.execute(
                    "SELECT attstorage FROM pg_attribute WHERE attrelid = %s::regclass AND"
                    " attname = %s", (table, col)).fetchone()
                if row and row[0] != "e":
                    self.conn.execute(f"ALTER TABLE {table} ALTER COLUMN {col} SET STORAGE"
                                      " EXTERNAL")

    def ensure_notify(self) -> None:
        """A trigger on procrastinate's job table: every job that ends (a terminal status,
        or deleted as succeeded) is announced on ``NOTIFY_CHANNEL`` with its id, so the
        coordinator waits for jobs instead of polling their states."""
        with self.conn.transaction():
            self.conn.execute("SELECT pg_advisory_xact_lock(%s, hashtext(current_schema()))",
                              (LOCK_SCHEMA,))
            self.conn.execute(NOTIFY_SQL)

    def procrastinate_installed(self) -> bool:
        row = self.conn.execute("SELECT to_regclass('procrastinate_jobs')").fetchone()
        return bool(row and row[0])

    @contextlib.contextmanager
    def schema_lock(self) -> Iterator[None]:
        """Held while procrastinate's schema is applied (by whichever process is first)."""
        self.conn.execute("SELECT pg_advisory_lock(%s, hashtext(current_schema()) + 1)",
                          (LOCK_SCHEMA,))
        try:
            yield
        finally:
            self.conn.execute("SELECT pg_advisory_unlock(%s, hashtext(current_schema()) + 1)",
                              (LOCK_SCHEMA,))

    # ------------------------------------------------------------------ runs
    def start_run(self, run_id: int, config: str, config_sha: str, snapshot_id: int | None,
                  now: Any, shard_size: int) -> None:
        self.conn.execute(
            "INSERT INTO dist_runs (run_id, config, config_sha, snapshot_id, now, shard_size)"
            " VALUES (%s,%s,%s,%s,%s,%s) ON CONFLICT (run_id) DO UPDATE SET"
            " config=excluded.config, config_sha=excluded.config_sha,"
            " snapshot_id=excluded.snapshot_id, now=excluded.now,"
            " shard_size=excluded.shard_size, status='running', master_key=NULL,"
            " packed='{}', master_job=NULL, master_outcome=NULL",
            (run_id, config, config_sha, snapshot_id, now, shard_size))

    def run(self, run_id: int) -> dict[str, Any] | None:
        row = self.conn.execute(
            "SELECT config, config_sha, snapshot_id, now, shard_size, status, master_key"
            " FROM dist_runs WHERE run_id=%s", (run_id,)).fetchone()
        if row is None:
            return None
        return dict(zip(("config", "config_sha", "snapshot_id", "now", "shard_size", "status",
                         "master_key"), row, strict=True))

    def hold_run(self, run_id: int) -> None:
        """The coordinator's sign of life for its run: a session advisory lock on this
        connection (gone with the connection, so with a killed coordinator too); a job
        waiting for the run's master stops waiting when nobody holds it."""
        self.conn.execute("SELECT pg_advisory_lock(%s, %s)", (LOCK_COORDINATOR, run_id))

    def coordinator_alive(self, run_id: int) -> bool:
        row = self.conn.execute(
            "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted"
            " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            " AND classid = %s::bigint AND objid = %s::bigint AND objsubid = 2)",
            (LOCK_COORDINATOR, run_id)).fetchone()
        return bool(row and row[0])

    def master_ready(self, run_id: int, key: str, snapshot_id: int | None = None) -> None:
        """The run's master is ready for the workers (its pack stored, or else its snapshot
        written): ``key`` names it (a worker keeps a loaded master across the jobs and runs
        of one key)."""
        self.conn.execute("UPDATE dist_runs SET master_key=%s,"
                          " snapshot_id=coalesce(%s, snapshot_id) WHERE run_id=%s",
                          (key, snapshot_id, run_id))

    def set_snapshot(self, run_id: int, snapshot_id: int | None) -> None:
        self.conn.execute("UPDATE dist_runs SET snapshot_id=%s WHERE run_id=%s",
                          (snapshot_id, run_id))

    def wait_master(self, run_id: int, poll: float = 0.2) -> str | None:
        """Until the run's master is ready: its key; None when the run is over or its
        coordinator is gone (the job then does nothing)."""
        return self._wait_run("master_key", (), run_id, poll)

    def _wait_run(self, column: str, params: tuple, run_id: int, poll: float,
                  between: Callable[[], str | None] | None = None) -> str | None:
        """Poll ``column`` of the run's ``dist_runs`` row (an SQL expression; ``params``
        fill its placeholders) until it is set: its text; None when the run is over or its
        coordinator is gone; ``between()``'s answer when it gives one (asked before
        each pause)."""
        import time

        while True:
            if between is not None:
                got = between()
                if got is not None:
                    return got
            row = self.conn.execute(
                f"SELECT r.status, {column}, j.status::text FROM dist_runs r LEFT JOIN"
                " procrastinate_jobs j ON j.id = r.master_job WHERE r.run_id=%s",
                (*params, run_id)).fetchone()
            if row is None or row[0] != "running":
                return None
            if row[1] is not None:
                return str(row[1])
            if not self.coordinator_alive(run_id):
                return None
            if row[2] == "todo":  # the master job is queued (again): free this worker
                raise MasterRequeued(f"run {run_id}: its master job is queued again")
            time.sleep(poll)

    def end_run(self, run_id: int, status: str) -> None:
        """The run is over: its staged listings and packs go; jobs still queued for it do
        nothing. When no other run is running (the usual case: one run holds the store's
        run lock), the two tables are truncated, which leaves no dead rows for a vacuum
        to read; when a job still holds them (an interrupted run's) or another run
        has rows there, only this run's rows are deleted."""
        with self.conn.transaction():
            self.conn.execute("UPDATE dist_runs SET status=%s WHERE run_id=%s",
                              (status, run_id))
            row = self.conn.execute("SELECT NOT EXISTS (SELECT 1 FROM dist_runs WHERE"
                                    " status='running')").fetchone()
            if row and row[0]:
                try:
                    with self.conn.transaction():  # (a savepoint)
                        self.conn.execute("SET LOCAL lock_timeout = '2s'")
                        self.conn.execute("TRUNCATE dist_staged, dist_packs")
                    return
                except psycopg.errors.LockNotAvailable:
                    pass
            self.conn.execute("DELETE FROM dist_staged WHERE run_id=%s", (run_id,))
            self.conn.execute("DELETE FROM dist_packs WHERE run_id=%s", (run_id,))

    # ------------------------------------------------------------------ the master pack
    def save_pack(self, run_id: int, data: bytes, part: str = "master") -> None:
        """One part of the run's master pack (``auditor.masterpack``; ``PARTS``), in
        rows of ``ROW_BYTES``, replacing any earlier one; a part other than the
        master is marked stored (``packed``) in the same transaction."""
        lo = PARTS[part] * PART_SEQ
        with self.conn.transaction(), self.conn.cursor() as cur:
            cur.execute("DELETE FROM dist_packs WHERE run_id=%s AND seq >= %s AND seq < %s",
                        (run_id, lo, lo + PART_SEQ))
            with _binary_copy(cur, "dist_packs", PACK_TYPES) as copy:
                for seq, piece in enumerate(_rows_of(data)):
                    copy.write_row((run_id, lo + seq, piece))
            if part != "master":
                self.packed(run_id, part, "stored")

    def pack(self, run_id: int, part: str = "master") -> bytes | None:
        """One part of the run's master pack, or None when its coordinator left none."""
        lo = PARTS[part] * PART_SEQ
        with self.conn.cursor(binary=True) as cur:
            chunks = _in_order(cur.execute(
                "SELECT seq, data FROM dist_packs WHERE run_id=%s AND seq >= %s AND seq < %s",
                (run_id, lo, lo + PART_SEQ)))
        return b"".join(chunks) if chunks else None

    def packed(self, run_id: int, part: str, state: str) -> None:
        """A later part of the run's pack is ``stored``, or there is ``none`` (a worker
        then makes what it holds itself); the first state said counts."""
        self.conn.execute("UPDATE dist_runs SET packed = jsonb_build_object(%s::text,"
                          " %s::text) || packed WHERE run_id=%s", (part, state, run_id))

    def wait_part(self, run_id: int, part: str, poll: float = 0.2,
                  job: int | None = None) -> str | None:
        """Until a later part of the run's pack is stored (``"stored"``) or known to be
        missing (``"none"``); None when the run is over or its coordinator is gone.
        With ``job`` (the asking job's id): ``"claimed"`` as soon as nobody is making
        the part, the job having claimed it (``claim_part``): it makes the part then."""
        return self._wait_run("packed ->> %s", (part,), run_id, poll, None if job is None
                              else lambda: "claimed" if self.claim_part(run_id, part, job)
                              else None)

    def claim_part(self, run_id: int, part: str, job: int) -> bool:
        """Whether the job ``job`` makes this later part of the run's pack (the first job
        of the run to need it does): true when the part is not settled yet and nobody
        claimed it, the job itself did (a retried job), or the job that claimed it is no
        longer running (its worker died, and the job went back to the queue, or failed);
        the claim is then this job's (``packed``'s key ``PART.by``)."""
        row = self.conn.execute(
            "UPDATE dist_runs r SET packed = r.packed || jsonb_build_object(%(by)s::text,"
            " %(job)s::bigint) WHERE r.run_id = %(run)s AND NOT (r.packed ? %(part)s) AND ("
            " NOT (r.packed ? %(by)s) OR (r.packed ->> %(by)s)::bigint = %(job)s OR NOT EXISTS"
            " (SELECT 1 FROM procrastinate_jobs j WHERE j.id = (r.packed ->> %(by)s)::bigint"
            " AND j.status = 'doing')) RETURNING 1",
            {"by": f"{part}.by", "job": job, "run": run_id, "part": part}).fetchone()
        return row is not None

    # ------------------------------------------------------------------ read -> shards
    def save_read(self, run_id: int, channel: str, shards: int,
                  staged: dict[int, list[Any]], read: Any) -> None:
        """A channel's read: its listings by shard and its outcome, in one transaction
        (a retried read replaces what an earlier attempt left)."""
        with self.conn.transaction(), self.conn.cursor() as cur:
            for table in ("dist_staged", "dist_shards"):
                cur.execute(f"DELETE FROM {table} WHERE run_id=%s AND channel=%s",
                            (run_id, channel))
            with _binary_copy(cur, "dist_staged", STAGED_TYPES) as copy:
                for shard, rows in staged.items():
                    _stage_rows(copy, run_id, channel, shard, rows)
            cur.execute(
                "INSERT INTO dist_channels (run_id, channel, shards, read) VALUES (%s,%s,%s,%s)"
                " ON CONFLICT (run_id, channel) DO UPDATE SET shards=excluded.shards,"
                " read=excluded.read, summary=NULL",
                (run_id, channel, shards, dumps(read)))

    def stage(self, run_id: int, channel: str, shard: int, rows: list[Any]) -> None:
        """One shard's listings staged (after the read), for a shard job."""
        with self.conn.transaction(), self.conn.cursor() as cur:
            cur.execute("DELETE FROM dist_staged WHERE run_id=%s AND channel=%s AND shard=%s",
                        (run_id, channel, shard))
            with _binary_copy(cur, "dist_staged", STAGED_TYPES) as copy:
                _stage_rows(copy, run_id, channel, shard, rows)

    def shards_done(self, run_id: int, channel: str) -> set[int]:
        """The shards of a channel whose outcome is recorded."""
        return {shard for (shard,) in self.conn.execute(
            "SELECT shard FROM dist_shards WHERE run_id=%s AND channel=%s", (run_id, channel))}

    def _binary_row(self, query: str, args: tuple) -> tuple | None:
        """One row of a query read in binary: a pickle (a ``bytea``) comes as its bytes,
        not as hex text the server encodes and the client decodes (MBs for a read's
        outcome, read by each of the channel's shard jobs)."""
        with self.conn.cursor(binary=True) as cur:
            return cur.execute(query, args).fetchone()

    def read_result(self, run_id: int, channel: str) -> tuple[int, Any] | None:
        row = self._binary_row("SELECT shards, read FROM dist_channels WHERE run_id=%s"
                               " AND channel=%s", (run_id, channel))
        return None if row is None else (row[0], pickle.loads(row[1]))

    def staged(self, run_id: int, channel: str, shard: int) -> list[Any]:
        out: list[Any] = []
        # No cyclic collection while they load: every listing unpickled stays alive (the
        # collector would only scan them over and over).
        was = gc.isenabled()
        gc.disable()
        try:
            with self.conn.cursor(binary=True) as cur:
                data = b"".join(_in_order(cur.execute(
                    "SELECT seq, data FROM dist_staged WHERE run_id=%s AND channel=%s AND"
                    " shard=%s", (run_id, channel, shard))))
            # The shard's pickles one after another (``_stage_rows``), each its own load.
            f = io.BytesIO(data)
            while f.tell() < len(data):
                out.extend(pickle.load(f))
        finally:
            if was:
                gc.enable()
        return out

    def save_shard(self, run_id: int, channel: str, shard: int, result: Any) -> None:
        self.conn.execute(
            "INSERT INTO dist_shards (run_id, channel, shard, result) VALUES (%s,%s,%s,%s)"
            " ON CONFLICT (run_id, channel, shard) DO UPDATE SET result=excluded.result",
            (run_id, channel, shard, dumps(result)))

    def shard_results(self, run_id: int, channel: str) -> dict[int, Any]:
        with self.conn.cursor(binary=True) as cur:
            return {shard: pickle.loads(data) for shard, data in cur.execute(
                "SELECT shard, result FROM dist_shards WHERE run_id=%s AND channel=%s",
                (run_id, channel))}

    def save_summary(self, run_id: int, channel: str, summary: Any) -> None:
        self.conn.execute("UPDATE dist_channels SET summary=%s WHERE run_id=%s AND channel=%s",
                          (dumps(summary), run_id, channel))

    def summary(self, run_id: int, channel: str) -> Any:
        row = self._binary_row("SELECT summary FROM dist_channels WHERE run_id=%s AND"
                               " channel=%s", (run_id, channel))
        return pickle.loads(row[0]) if row and row[0] is not None else None

    # ------------------------------------------------------------------ the queue's jobs
    def listen(self) -> None:
        """Receive the ends of jobs on this connection (then only ``wait`` on it)."""
        self.conn.execute(f"LISTEN {NOTIFY_CHANNEL}")

    def wait(self, timeout: float) -> bool:
        """Until a job ends (True) or ``timeout`` seconds pass (False)."""
        got = False
        for _ in self.conn.notifies(timeout=timeout, stop_after=1):
            got = True
        return got

    def job_states(self, ids: Iterable[int]) -> dict[int, tuple[str, int]]:
        """procrastinate's status and attempts of these jobs."""
        return {i: (status, attempts) for i, status, attempts in self.conn.execute(
            "SELECT id, status::text, attempts FROM procrastinate_jobs WHERE id = ANY(%s)",
            (list(ids),))}

    # ------------------------------------------------------------------ failures, workers
    def save_error(self, run_id: int, channel: str, job: str, error: str) -> None:
        """Why ``job`` (``read``, ``shard N``, ``finish``) of a channel failed, replacing
        an earlier attempt's reason."""
        self.conn.execute(
            "INSERT INTO dist_errors (run_id, channel, job, error) VALUES (%s,%s,%s,%s)"
            " ON CONFLICT (run_id, channel, job) DO UPDATE SET error=excluded.error,"
            " at=excluded.at", (run_id, channel, job, error))

    def errors(self, run_id: int, channel: str) -> dict[str, str]:
        """The recorded reasons of a channel's failed jobs: job -> error, oldest first."""
        return dict(self.conn.execute(
            "SELECT job, error FROM dist_errors WHERE run_id=%s AND channel=%s ORDER BY at",
            (run_id, channel)).fetchall())

    def end_stale_runs(self, current: int) -> int:
        """Runs other than ``current`` still ``running`` here had a coordinator that died
        (SIGKILL, a crash: only the run lock's holder coordinates): they are marked
        ``interrupted`` (a job of theirs still queued does nothing) and their staged
        listings and master packs, which only their end would have dropped, go. The
        number of such runs."""
        with self.conn.transaction():
            stale = self.conn.execute(
                "UPDATE dist_runs SET status='interrupted' WHERE status='running' AND"
                " run_id <> %s", (current,)).rowcount
            for table in ("dist_staged", "dist_packs"):  # (a pack is stored before its run)
                self.conn.execute(f"DELETE FROM {table} WHERE run_id <> %s AND run_id NOT IN"
                                  " (SELECT run_id FROM dist_runs WHERE status='running')",
                                  (current,))
        return stale

    def live_workers(self, seconds: float) -> int:
        """Workers (``auditor worker``) that sent a heartbeat within ``seconds``."""
        row = self.conn.execute(
            "SELECT count(*) FROM procrastinate_workers WHERE last_heartbeat >="
            " now() - make_interval(secs => %s)", (seconds,)).fetchone()
        return int(row[0]) if row else 0


    # ------------------------------------------------------------------ the master job
    def set_master_job(self, run_id: int, job_id: int) -> None:
        """The run's master job (``auditor.master``): a job waiting for the master or a
        part of its pack gives way when it is queued again (``MasterRequeued``)."""
        self.conn.execute("UPDATE dist_runs SET master_job=%s WHERE run_id=%s",
                          (job_id, run_id))

    def part_state(self, run_id: int, part: str) -> str | None:
        """``stored`` / ``none`` once a later part of the pack is settled, else None."""
        row = self.conn.execute("SELECT packed ->> %s FROM dist_runs WHERE run_id=%s",
                                (part, run_id)).fetchone()
        return row[0] if row else None

    def save_master_outcome(self, run_id: int, outcome: dict[str, Any]) -> None:
        """What the master job did (import summary, errors, rejection), for the
        coordinator; the first attempt's to finish counts (a retried job found the
        snapshot written already and would call the master unchanged)."""
        self.conn.execute("UPDATE dist_runs SET master_outcome=coalesce(master_outcome, %s)"
                          " WHERE run_id=%s", (dumps(outcome), run_id))

    def master_outcome(self, run_id: int) -> dict[str, Any] | None:
        row = self._binary_row("SELECT master_outcome FROM dist_runs WHERE run_id=%s",
                               (run_id,))
        return pickle.loads(row[0]) if row and row[0] is not None else None


class HostPacer:
    """Per-host crawl limits shared by every process of a distributed run.

    - ``pacer(host, interval)`` reserves the host's next free slot and returns the
      seconds to wait for it: one row per host in ``crawl_hosts``, moved forward by
      ``interval`` in one statement, so requests to a host from any number of workers
      on any number of machines are spaced at least ``interval`` apart (the row lock
      orders the reservations; the database's clock is the one clock).
    - ``lock_host(host)`` / ``learn(host, seconds)`` / ``unlock_host(host)``: one worker
      at a time reads a host's robots.txt and publishes its Crawl-delay; the others wait
      for it, so their first request (their own robots.txt included) is already spaced
      by it (``crawl_delay=True`` reservations).
    - ``back_off(host, seconds)``: a ``429``/``503`` (its ``Retry-After``, else the
      retry's backoff) moves that row past ``seconds`` from now, so every worker's next
      request to the host waits, not only the one that was told.
    - ``acquire(host, cap)`` / ``release(host, slot)``: the per-host in-flight cap
      (``per_host_concurrency``) across processes: slot ``k`` of a host is a session
      advisory lock on ``hashtextextended(schema/host, k)``, held while a request is in
      flight; a killed process's connection closes and its slots are free again.

    Installed in ``auditor.http`` by ``auditor worker``.
    """

    def __init__(self, url: str):
        self.url = url
        self._conn: psycopg.Connection | None = None
        self._lock = threading.Lock()
        self._held: dict[str, set[int]] = {}  # slots this process holds (locks stack)

    def _c(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed:
            self._conn = connect(self.url, application_name="auditor crawl pacing")
            self._held.clear()  # a new session holds no lock
        return self._conn

    def _again(self, fn: Any) -> Any:
        """``fn(connection)``, and once more on a new connection when the session was lost
        (the server restarted, a proxy dropped it): the worker's next request must not
        fail for it. A lost session's in-flight slots are free already."""
        try:
            return fn(self._c())
        except psycopg.OperationalError:
            if self._conn is None or not self._conn.closed:
                raise
            return fn(self._c())

    def __call__(self, host: str, interval: float, crawl_delay: bool = False) -> float:
        """Reserve ``host``'s next slot; the seconds to wait for it (see ``reserve``)."""
        return self.reserve(host, interval, crawl_delay)[0]

    def reserve(self, host: str, interval: float,
                crawl_delay: bool = False) -> tuple[float, float]:
        """(seconds to wait, the slot's epoch time on the database's clock): the slot is
        ``interval`` after the host's previous slot (and no sooner than its back-off);
        ``crawl_delay``: the host's Crawl-delay published by ``learn`` spaces it too
        (a crawl's requests, not an image check's)."""
        with self._lock:
            row = self._again(lambda c: c.execute(
                "INSERT INTO crawl_hosts AS h (host, next_at, last_at)"
                " VALUES (%(h)s, clock_timestamp() + make_interval(secs => %(i)s),"
                " clock_timestamp())"
                " ON CONFLICT (host) DO UPDATE SET"
                " last_at = greatest(clock_timestamp(), h.next_at, h.last_at + make_interval("
                "secs => greatest(%(i)s, CASE WHEN %(d)s THEN h.crawl_delay ELSE 0 END))),"
                " next_at = greatest(clock_timestamp(), h.next_at, h.last_at + make_interval("
                "secs => greatest(%(i)s, CASE WHEN %(d)s THEN h.crawl_delay ELSE 0 END)))"
                " + make_interval(secs => greatest(%(i)s,"
                " CASE WHEN %(d)s THEN h.crawl_delay ELSE 0 END))"
                " RETURNING extract(epoch FROM h.last_at - clock_timestamp())::float8,"
                " extract(epoch FROM h.last_at)::float8",
                {"h": host, "i": interval, "d": crawl_delay}).fetchone())
        return (max(0.0, row[0]), row[1]) if row else (0.0, 0.0)

    def learn(self, host: str, seconds: float) -> None:
        """Publish ``host``'s Crawl-delay (robots.txt's, or the configured ``crawl_delay``)
        to every worker: their crawl requests to it are spaced by it from then on, from
        the host's last request on (whoever sent it)."""
        with self._lock:
            self._again(lambda c: c.execute(
                "INSERT INTO crawl_hosts AS h (host, next_at, crawl_delay)"
                " VALUES (%(h)s, clock_timestamp(), %(s)s)"
                " ON CONFLICT (host) DO UPDATE SET crawl_delay = %(s)s",
                {"h": host, "s": max(0.0, seconds)}))

    def lock_host(self, host: str) -> bool:
        """Try to become the one process learning ``host``'s limits (reading its
        robots.txt): a session advisory lock, so a killed process lets go of it."""
        with self._lock:
            row = self._again(lambda c: c.execute(
                "SELECT pg_try_advisory_lock(hashtextextended("
                "current_schema() || '/robots/' || %s, 0))", (host,)).fetchone())
        return bool(row and row[0])

    def unlock_host(self, host: str) -> None:
        with self._lock:
            if self._conn is None or self._conn.closed:
                return
            try:
                self._conn.execute("SELECT pg_advisory_unlock(hashtextextended("
                                   "current_schema() || '/robots/' || %s, 0))", (host,))
            except psycopg.OperationalError:
                if not self._conn.closed:
                    raise

    def back_off(self, host: str, seconds: float) -> None:
        with self._lock:
            self._again(lambda c: c.execute(
                "INSERT INTO crawl_hosts AS h (host, next_at)"
                " VALUES (%(h)s, clock_timestamp() + make_interval(secs => %(s)s))"
                " ON CONFLICT (host) DO UPDATE SET next_at = greatest(h.next_at,"
                " clock_timestamp() + make_interval(secs => %(s)s))",
                {"h": host, "s": seconds}))

    def acquire(self, host: str, cap: int) -> int | None:
        """A free in-flight slot of ``host`` (below ``cap``) now held, or None."""
        with self._lock:
            return self._again(lambda c: self._acquire(c, host, cap))

    def _acquire(self, c: psycopg.Connection, host: str, cap: int) -> int | None:
        held = self._held.setdefault(host, set())
        for slot in range(cap):
            if slot in held:
                continue
            row = c.execute("SELECT pg_try_advisory_lock(hashtextextended("
                            "current_schema() || '/crawl/' || %s, %s))",
                            (host, slot)).fetchone()
            if row and row[0]:
                held.add(slot)
                return slot
        return None

    def release(self, host: str, slot: int) -> None:
        with self._lock:
            held = self._held.get(host, set())
            if slot not in held or self._conn is None or self._conn.closed:
                return
            held.discard(slot)
            try:
                self._conn.execute("SELECT pg_advisory_unlock(hashtextextended("
                                   "current_schema() || '/crawl/' || %s, %s))", (host, slot))
            except psycopg.OperationalError:
                if not self._conn.closed:
                    raise  # (a lost session's locks went with it)

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
