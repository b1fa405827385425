"""The SQLite store: the default implementation of ``auditor.storage.interface.Store``.

The only module that talks to SQLite (through sqlite-utils). Everything else asks it
for domain objects and typed records (``auditor.storage.records``); open it with
``auditor.storage.open_store("sqlite:///auditor.db")`` (or a plain path). The schema
is versioned with ``PRAGMA user_version`` and grows by forward migrations
(``MIGRATIONS``). What is SQLite's own stays here: upsert syntax, the file lock that
keeps two runs apart, WAL and page settings, single-writer batching (``BatchGate``).
"""

from __future__ import annotations

import bisect
import contextlib
import fcntl
import json
import os
import re
import sqlite3
import time
from datetime import datetime, timezone
from operator import itemgetter
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import orjson
import sqlite_utils

from auditor import codec
from auditor import lifecycle
from auditor.compact import CompactMaster, body_of
from auditor.errors import (BadRequest, Conflict, LockedError, NotFound, StoreError,
                            StoreUnavailable)
from auditor.events import FindingChange
from auditor.lifecycle import OPEN, RESOLVED, Evidence, Previous
from auditor.model import (Finding, Link, Listing, MasterRecord, Outcome, Run, SourceResult,
                           SourceStatus)
from auditor.storage import migrated
from auditor.storage.records import propagation_cursors, with_episode
from auditor.storage.records import (plan_writes, FindingChanges, FindingEvent, FindingRecord, HttpCacheRow,
                                     HttpValidators, ImageUrlRow, LinkDecisionRecord,
                                     LinkRecord, LinkStateRecord, ListingSave, ShardSpec,
                                     MasterAssetRow, MasterChange, MasterHistory,
                                     MasterImportResult, MasterPlan, MasterSnapshot,
                                     PresenceHoldRecord, RunErrorRecord, RunRecord,
                                     RunSourceRecord, ScoreRecord, parse_time,
                                     OpenFinding, FindingActivity, RunFindingChange,
                                     FindingPage, ProductListing)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()


# --------------------------------------------------------------------------- schema

def _script(db: sqlite_utils.Database, sql: str) -> None:
    """Run DDL statement by statement (executescript would commit mid-migration)."""
    for stmt in sql.split(";"):
        if stmt.strip():
            db.execute(stmt)


def _m1(db: sqlite_utils.Database) -> None:
    _script(db, """
    CREATE TABLE master_snapshots (
        id INTEGER PRIMARY KEY, imported_at TEXT NOT NULL, source TEXT NOT NULL,
        sha256 TEXT, records INTEGER, added INTEGER, changed INTEGER, removed INTEGER,
        skipped_rows INTEGER DEFAULT 0);
    -- the master in force: one row per SKU
    CREATE TABLE master_records (
        sku TEXT PRIMARY KEY, hash TEXT NOT NULL, data TEXT NOT NULL,
        snapshot_id INTEGER NOT NULL, valid_from TEXT NOT NULL);
    -- earlier versions of a record, closed at valid_to
    CREATE TABLE master_history (
        id INTEGER PRIMARY KEY, sku TEXT NOT NULL, hash TEXT NOT NULL, data TEXT NOT NULL,
        valid_from TEXT NOT NULL, valid_to TEXT NOT NULL, snapshot_id INTEGER NOT NULL);
    CREATE INDEX master_history_sku ON master_history(sku);
    -- one row per changed master value, with the time it changed
    CREATE TABLE master_changes (
        id INTEGER PRIMARY KEY, snapshot_id INTEGER NOT NULL, sku TEXT NOT NULL,
        field TEXT NOT NULL, old TEXT, new TEXT, changed_at TEXT NOT NULL);
    CREATE INDEX master_changes_sku ON master_changes(sku, field);

    CREATE TABLE runs (
        id INTEGER PRIMARY KEY, started_at TEXT NOT NULL, finished_at TEXT,
        status TEXT, master_snapshot_id INTEGER, summary TEXT);
    CREATE TABLE run_sources (
        run_id INTEGER NOT NULL, source TEXT NOT NULL, status TEXT NOT NULL,
        listings INTEGER, errors INTEGER, message TEXT, started_at TEXT, finished_at TEXT,
        PRIMARY KEY (run_id, source));
    CREATE TABLE run_errors (
        id INTEGER PRIMARY KEY, run_id INTEGER NOT NULL, source TEXT NOT NULL,
        location TEXT, reason TEXT NOT NULL);
    CREATE INDEX run_errors_run ON run_errors(run_id, source);

    -- the latest observation of each listing
    CREATE TABLE listings (
        channel TEXT NOT NULL, key TEXT NOT NULL, hash TEXT NOT NULL, data TEXT NOT NULL,
        first_seen_run INTEGER, last_seen_run INTEGER, last_changed_run INTEGER,
        removed_run INTEGER, PRIMARY KEY (channel, key));
    -- earlier versions of a listing: first seen in run_id, replaced in until_run
    CREATE TABLE listing_versions (
        id INTEGER PRIMARY KEY, channel TEXT NOT NULL, key TEXT NOT NULL,
        run_id INTEGER NOT NULL, hash TEXT NOT NULL, data TEXT NOT NULL,
        until_run INTEGER NOT NULL);
    CREATE INDEX listing_versions_key ON listing_versions(channel, key);

    CREATE TABLE links (
        channel TEXT NOT NULL, listing_key TEXT NOT NULL, sku TEXT, method TEXT NOT NULL,
        confidence REAL, candidates TEXT, run_id INTEGER,
        PRIMARY KEY (channel, listing_key));
    CREATE INDEX links_sku ON links(sku);

    CREATE TABLE findings (
        fingerprint TEXT PRIMARY KEY, check_name TEXT NOT NULL, channel TEXT NOT NULL,
        sku TEXT, listing_key TEXT, field TEXT NOT NULL, outcome TEXT NOT NULL,
        severity TEXT NOT NULL, expected TEXT, actual TEXT, score REAL, message TEXT,
        details TEXT, state TEXT NOT NULL, first_seen_at TEXT NOT NULL,
        last_seen_at TEXT NOT NULL, first_run INTEGER, last_run INTEGER,
        resolved_at TEXT, resolved_run INTEGER);
    CREATE INDEX findings_state ON findings(state, channel, check_name);
    CREATE INDEX findings_sku ON findings(sku);
    -- every state change: opened, changed, resolved, reopened
    CREATE TABLE finding_events (
        id INTEGER PRIMARY KEY, fingerprint TEXT NOT NULL, run_id INTEGER, at TEXT NOT NULL,
        event TEXT NOT NULL, state TEXT NOT NULL, outcome TEXT, expected TEXT, actual TEXT);
    CREATE INDEX finding_events_fp ON finding_events(fingerprint);
    -- the non-passed outcome of each finding in each run (confirmation needs it)
    CREATE TABLE finding_observations (
        run_id INTEGER NOT NULL, fingerprint TEXT NOT NULL, outcome TEXT NOT NULL,
        PRIMARY KEY (run_id, fingerprint));

    CREATE TABLE scores (
        run_id INTEGER NOT NULL, channel TEXT NOT NULL, check_name TEXT NOT NULL,
        passed INTEGER, failed INTEGER, warn INTEGER, not_evaluated INTEGER, score REAL,
        PRIMARY KEY (run_id, channel, check_name));

    -- alerts to send, written in the same transaction as the findings (phase 2)
    CREATE TABLE outbox (
        id INTEGER PRIMARY KEY, created_at TEXT NOT NULL, kind TEXT NOT NULL,
        fingerprint TEXT, payload TEXT NOT NULL, status TEXT NOT NULL DEFAULT 'pending',
        attempts INTEGER NOT NULL DEFAULT 0, next_attempt_at TEXT, last_error TEXT);

    -- conditional GET state per URL, and the last extraction for a 304
    CREATE TABLE http_cache (
        url TEXT PRIMARY KEY, etag TEXT, last_modified TEXT, fetched_at TEXT,
        status INTEGER, sha256 TEXT, content_type TEXT, extraction TEXT);
    """)


def _m2(db: sqlite_utils.Database) -> None:
    """Image signatures by content, image URLs with their validators, master asset history."""
    _script(db, """
    -- one perceptual signature per distinct image content (see auditor.images)
    CREATE TABLE image_signatures (
        sha256 TEXT PRIMARY KEY, version INTEGER NOT NULL, data TEXT NOT NULL,
        created_at TEXT NOT NULL);
    -- the last fetch of each image URL: validators for a conditional GET, and
    -- the content it had (or why it could not be used)
    CREATE TABLE image_urls (
        url TEXT PRIMARY KEY, etag TEXT, last_modified TEXT, sha256 TEXT, error TEXT,
        fetched_at TEXT NOT NULL);
    -- which content each master image slot held, and until when (slot 0 = primary)
    CREATE TABLE master_assets (
        id INTEGER PRIMARY KEY, sku TEXT NOT NULL, slot INTEGER NOT NULL, ref TEXT NOT NULL,
        sha256 TEXT NOT NULL, valid_from TEXT NOT NULL, valid_to TEXT);
    CREATE INDEX master_assets_sku ON master_assets(sku, valid_to);
    """)


def _m3(db: sqlite_utils.Database) -> None:
    """Where and when a listing was read sits beside its body, so the body (and its
    hash) only changes when what the listing shows changes."""
    _script(db, """
    ALTER TABLE listings ADD COLUMN fetched_at TEXT;
    ALTER TABLE listings ADD COLUMN evidence TEXT;
    ALTER TABLE listing_versions ADD COLUMN fetched_at TEXT;
    ALTER TABLE listing_versions ADD COLUMN evidence TEXT;
    """)


def _m4(db: sqlite_utils.Database) -> None:
    """A listing's link sits in its row: one row, one write, per listing. ``links``
    stays as a view of those columns (same names as the table it replaces)."""
    _script(db, """
    ALTER TABLE listings ADD COLUMN master_sku TEXT;
    ALTER TABLE listings ADD COLUMN link_method TEXT;
    ALTER TABLE listings ADD COLUMN link_confidence REAL;
    ALTER TABLE listings ADD COLUMN link_candidates TEXT;
    ALTER TABLE listings ADD COLUMN link_run INTEGER;
    UPDATE listings SET master_sku = k.sku, link_method = k.method,
        link_confidence = k.confidence, link_candidates = k.candidates, link_run = k.run_id
        FROM links k WHERE k.channel = listings.channel AND k.listing_key = listings.key;
    DROP TABLE links;
    CREATE INDEX listings_master_sku ON listings(master_sku);
    CREATE VIEW links AS SELECT channel, key AS listing_key, master_sku AS sku,
        link_method AS method, link_confidence AS confidence, link_candidates AS candidates,
        link_run AS run_id FROM listings WHERE link_method IS NOT NULL;
    """)


def _m5(db: sqlite_utils.Database) -> None:
    """Link decisions a person made (confirmed or rejected pairs, kept across runs) and
    the notes of the last run on listings not linked: reason, score, evidence."""
    _script(db, """
    CREATE TABLE link_decisions (
        channel TEXT NOT NULL, listing_key TEXT NOT NULL, sku TEXT NOT NULL,
        decision TEXT NOT NULL CHECK (decision IN ('confirmed', 'rejected')),
        decided_at TEXT NOT NULL, note TEXT,
        PRIMARY KEY (channel, listing_key, sku));
    CREATE TABLE link_notes (
        channel TEXT NOT NULL, listing_key TEXT NOT NULL, run_id INTEGER,
        method TEXT, score REAL, reason TEXT, candidates TEXT, evidence TEXT,
        PRIMARY KEY (channel, listing_key));
    """)


def _m6(db: sqlite_utils.Database) -> None:
    """Presence held by a run for a channel (a row without a readable key, a sharp drop
    in items): what it would have concluded, kept until confirmed or accepted."""
    _script(db, """
    CREATE TABLE presence_holds (
        run_id INTEGER NOT NULL, channel TEXT NOT NULL, kind TEXT NOT NULL,
        reason TEXT NOT NULL, vanished TEXT, findings TEXT, checks TEXT,
        state TEXT NOT NULL DEFAULT 'held', decided_run INTEGER, decided_at TEXT,
        PRIMARY KEY (run_id, channel));
    """)


def _m7(db: sqlite_utils.Database) -> None:
    """Alerts: acknowledgements and snoozes on findings, who did what in the event log,
    silences, notification groups, the outbox's receiver and idempotency key, and the
    propagation latency of master changes per channel."""
    _script(db, """
    ALTER TABLE findings ADD COLUMN ack_by TEXT;
    ALTER TABLE findings ADD COLUMN ack_at TEXT;
    ALTER TABLE findings ADD COLUMN ack_note TEXT;
    ALTER TABLE findings ADD COLUMN snoozed_until TEXT;
    ALTER TABLE findings ADD COLUMN snoozed_by TEXT;
    -- the alert state as last evaluated: pending, firing or suppressed, and why
    ALTER TABLE findings ADD COLUMN alert_state TEXT;
    ALTER TABLE findings ADD COLUMN alert_reason TEXT;
    ALTER TABLE finding_events ADD COLUMN actor TEXT;
    ALTER TABLE finding_events ADD COLUMN note TEXT;
    CREATE TABLE silences (
        id INTEGER PRIMARY KEY, matchers TEXT NOT NULL, starts_at TEXT NOT NULL,
        ends_at TEXT NOT NULL, created_by TEXT, comment TEXT, created_at TEXT NOT NULL);
    -- what each receiver was last told about each group of alerts
    CREATE TABLE alert_groups (
        receiver TEXT NOT NULL, group_key TEXT NOT NULL, labels TEXT NOT NULL,
        members TEXT NOT NULL, seq INTEGER NOT NULL DEFAULT 0, last_sent_at TEXT,
        PRIMARY KEY (receiver, group_key));
    ALTER TABLE outbox ADD COLUMN receiver TEXT;
    ALTER TABLE outbox ADD COLUMN idempotency_key TEXT;
    ALTER TABLE outbox ADD COLUMN sent_at TEXT;
    CREATE UNIQUE INDEX outbox_key ON outbox(idempotency_key);
    CREATE INDEX outbox_status ON outbox(status, next_attempt_at);
    -- each master change per channel: when the channel first showed it
    CREATE TABLE propagation (
        id INTEGER PRIMARY KEY, change_id INTEGER NOT NULL, channel TEXT NOT NULL,
        sku TEXT NOT NULL, field TEXT NOT NULL, check_name TEXT NOT NULL,
        changed_at TEXT NOT NULL, snapshot_id INTEGER NOT NULL, caught_up_at TEXT,
        caught_up_run INTEGER, latency_seconds REAL, checked_run INTEGER,
        UNIQUE (change_id, channel, check_name));
    CREATE INDEX propagation_pending ON propagation(channel, caught_up_at);
    -- bookkeeping of the alert evaluation: cursors and what the last evaluation saw
    CREATE TABLE alert_cursors (name TEXT PRIMARY KEY, value TEXT NOT NULL);
    """)


def _m8(db: sqlite_utils.Database) -> None:
    """Only the propagation rows still pending are indexed: nearly every row is written
    caught up already (a first audit of a million SKUs writes millions), and only the
    pending ones are looked up again."""
    _script(db, """
    DROP INDEX propagation_pending;
    CREATE INDEX propagation_pending ON propagation(channel) WHERE caught_up_at IS NULL;
    """)


def _m9(db: sqlite_utils.Database) -> None:
    """The incremental alert evaluation's lookups: findings that can alert by their alert
    state and group (the pending ones, the firing ones of one channel, check and field,
    counts by state), and the snoozed ones."""
    _script(db, """
    CREATE INDEX findings_alert ON findings(alert_state, channel, check_name, field)
        WHERE state != 'resolved' AND outcome != 'not_evaluated';
    CREATE INDEX findings_snoozed ON findings(snoozed_until) WHERE snoozed_until IS NOT NULL;
    """)


MIGRATIONS: list[Callable[[sqlite_utils.Database], None]] = [_m1, _m2, _m3, _m4, _m5,
                                                              _m6, _m7, _m8, _m9]
SCHEMA_VERSION = len(MIGRATIONS)


def _check_version(current: int, known: int, store: str = "") -> None:
    if current > known:
        raise StoreUnavailable(f"the store {store or '(SQLite)'}: schema version {current} "
                               f"is newer than this auditor knows ({known}); upgrade "
                               f"omni-auditor")


def migrate(db: sqlite_utils.Database, migrations: Sequence[Callable] = MIGRATIONS,
            store: str = "") -> int:
    """Apply the migrations newer than the database's version, each in a transaction.

    The version is read again inside each migration's write transaction (``BEGIN
    IMMEDIATE``): two processes opening an old store at once take turns, and the
    second finds the migration done instead of applying it twice. ``store`` (the file)
    is named in the error and in the info line logged when migrations were applied."""
    target = len(migrations)
    current = db.execute("PRAGMA user_version").fetchone()[0]
    _check_version(current, target, store)
    if current == target:  # the usual case: no write lock taken
        return target
    conn = db.conn
    first: int | None = None  # the version this process migrated from
    # Explicit BEGIN/COMMIT: the sqlite3 module does not wrap DDL in a transaction.
    old_level = conn.isolation_level
    conn.isolation_level = None
    try:
        while True:
            conn.execute("BEGIN IMMEDIATE")  # waits (busy_timeout) for another migrator
            try:
                current = conn.execute("PRAGMA user_version").fetchone()[0]
                _check_version(current, target, store)
                if current == target:
                    conn.execute("COMMIT")
                    if first is not None:
                        migrated(store or "(SQLite)", first, target)
                    return target
                first = current if first is None else first
                migrations[current](db)
                conn.execute(f"PRAGMA user_version = {current + 1}")
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
    finally:
        conn.isolation_level = old_level


# --------------------------------------------------------------------------- lock

def lock_path(db_path: str | Path) -> Path:
    """The run lock's file: beside the real database file, whatever name (a symlink, a
    relative path) it was opened by, so every name of one store shares one lock."""
    return Path(str(Path(db_path).resolve()) + ".lock")


@contextlib.contextmanager
def run_lock(db_path: str | Path, wait: float = 0.0) -> Iterator[None]:
    """Hold an exclusive lock on ``<real db path>.lock`` so two runs never interleave.

    The holder writes its pid and start time into the file; a run that fails to get
    the lock only reads them (for its message) and leaves the file as it is."""
    path = lock_path(db_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    deadline = time.monotonic() + wait
    held = False
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                held = True
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = os.pread(fd, 200, 0).decode(errors="replace").strip()
                    raise LockedError(
                        f"another run holds the lock on {db_path} ({holder or 'unknown holder'}); "
                        f"wait for it, or pass --wait SECONDS") from None
                time.sleep(0.2)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} since {_now()}".encode(), 0)
        _HELD_LOCKS[str(Path(db_path).resolve())] = fd
        yield
    finally:
        if held:  # only the holder clears its note (closing the file releases the lock)
            _HELD_LOCKS.pop(str(Path(db_path).resolve()), None)
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
        os.close(fd)


# The run locks this process holds: path -> fd. A forked child (a channel worker)
# closes its copies at once, so that only the run's own process holds the lock and
# the lock goes with it, whatever becomes of the children.
_HELD_LOCKS: dict[str, int] = {}


def _close_inherited_locks() -> None:
    for fd in _HELD_LOCKS.values():
        with contextlib.suppress(OSError):
            os.close(fd)
    _HELD_LOCKS.clear()


os.register_at_fork(after_in_child=_close_inherited_locks)


def holds_run_lock(db_path: str | Path) -> bool:
    """Whether this process holds ``run_lock`` on ``db_path``."""
    return str(Path(db_path).resolve()) in _HELD_LOCKS


# --------------------------------------------------------------------------- store

def digest(body: bytes) -> str:
    """The stored hash of a record's body (``codec.body``): equal bodies, equal hashes."""
    return codec.body_hash(body).hex()


_KEY0, _KEY1, _KEY2, _KEY_LAST = itemgetter(0), itemgetter(1), itemgetter(2), itemgetter(-1)
# Rows written per transaction when a run stores listings and links: large enough that
# the B-tree pages a batch touches are written once, small enough that a worker holds
# the write lock for a fraction of a second.
WRITE_BATCH = 20_000


class BatchGate:
    """When to write a growing batch: at WRITE_BATCH rows. While another process holds
    the write lock the batch keeps growing and the write is tried again every quarter
    batch, rather than waiting idle; at 8 batches it waits for the lock."""

    def __init__(self) -> None:
        self.at = WRITE_BATCH

    def offer(self, write: Callable[[bool], bool], pending: int) -> bool:
        """Call ``write(wait)`` when ``pending`` rows are due; True when they were written."""
        if pending < self.at:
            return False
        done = write(pending >= 8 * WRITE_BATCH)
        self.at = WRITE_BATCH if done else pending + WRITE_BATCH // 4
        return done


MEMORY = ":memory:"


# The lifecycle state people see (auditor.alerts.policy.display_state, less "reopened"),
# from a finding's row; one parameter: now (ISO 8601). An acknowledgement or snooze is
# cleared when the finding reopens.
_SHOWN_STATE = ("(CASE WHEN state = 'resolved' THEN 'resolved' WHEN outcome = 'not_evaluated' "
                "THEN 'not_evaluated' WHEN ack_at IS NOT NULL THEN 'acknowledged' "
                "WHEN snoozed_until > ? THEN 'snoozed' ELSE 'open' END)")


class SQLiteStore:
    """Domain-level access to one SQLite database file (or an in-memory one).

    Implements ``auditor.storage.interface.Store``; ``busy_timeout`` (seconds) is how
    long a write waits for another process's transaction to end."""

    def __init__(self, path: str | Path, busy_timeout: float = 30.0):
        self.path = str(path)
        # How long a write waits for another process's transaction to end: set before
        # anything else, so that opening a store another process is migrating waits.
        self.busy_timeout_ms = int(busy_timeout * 1000)
        if self.path != MEMORY:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            self.url = "sqlite:///" + str(Path(self.path).resolve())
            self.db = sqlite_utils.Database(self.path)
            self.db.execute(f"PRAGMA busy_timeout={self.busy_timeout_ms}")
            # A new database gets 16 KiB pages (an existing one keeps its own): listing rows
            # are around a kilobyte, and bulk writes of them cost 17% less CPU than with
            # 4 KiB pages (measured on 240,000 rows).
            self.db.execute("PRAGMA page_size=16384")
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
        else:
            self.url = "sqlite:///" + MEMORY
            self.db = sqlite_utils.Database(memory=True)
            self.db.execute(f"PRAGMA busy_timeout={self.busy_timeout_ms}")
        self.db.execute("PRAGMA cache_size=-65536")  # 64 MiB: a million-row table's index
        self.db.execute("PRAGMA foreign_keys=ON")
        migrate(self.db, store=self.path)

    def close(self) -> None:
        self.db.close()

    @property
    def multi_process(self) -> bool:
        """A file can be opened by a worker process; an in-memory database cannot."""
        return self.path != MEMORY

    def run_lock(self, wait: float = 0.0) -> contextlib.AbstractContextManager[None]:
        """The file lock beside the database (``run_lock``); an in-memory store is
        private to its process and needs none."""
        if self.path == MEMORY:
            return contextlib.nullcontext()
        return run_lock(self.path, wait)

    @property
    def schema_version(self) -> int:
        return self.db.execute("PRAGMA user_version").fetchone()[0]

    # ----------------------------------------------------------------- master
    def current_master(self) -> CompactMaster:
        """The master records in force, by SKU (held as stored, decoded when read)."""
        return CompactMaster.from_bodies(self.db.execute("SELECT sku, data FROM master_records"))

    def master_count(self) -> int:
        return self.db.execute("SELECT count(*) FROM master_records").fetchone()[0]

    def last_master_snapshot(self) -> MasterSnapshot | None:
        row = self.db.execute(
            "SELECT id, imported_at, source, sha256, records, added, changed, removed,"
            " skipped_rows FROM master_snapshots ORDER BY id DESC LIMIT 1").fetchone()
        if row is None:
            return None
        return MasterSnapshot(row[0], datetime.fromisoformat(row[1]), row[2], row[3],
                              row[4] or 0, row[5] or 0, row[6] or 0, row[7] or 0, row[8] or 0)

    def save_master(self, records: Iterable[MasterRecord], source: str, sha256: str | None,
                    now: datetime, skipped_rows: int = 0) -> MasterImportResult:
        """Make ``records`` the master in force, keeping every earlier value with its time.

        Records absent from this import are removed from the master (their last
        version goes to the history). All or nothing: one transaction.
        """
        recs = {r.sku: r for r in records}
        return self.commit_master(self.plan_master(recs, now), recs, source, sha256,
                                  skipped_rows)

    def plan_master(self, records: Mapping[str, MasterRecord], now: datetime) -> MasterPlan:
        """What importing ``records`` would change, read-only: the records to write (with
        their bodies) and the stored versions they replace (``commit_master`` writes it).

        Planning first lets a run hand the replaced versions to its checks as history
        and write the snapshot while the channels are audited.
        """
        existing = dict(self.db.execute("SELECT sku, hash FROM master_records"))
        plan = MasterPlan(at=now.isoformat(), records=len(records))
        plan_writes(plan, existing, records)
        replaced = [sku for sku in plan.writes if sku in existing] + plan.removed
        for i in range(0, len(replaced), 500):
            chunk = replaced[i:i + 500]
            plan.replaced.update(self.db.execute(
                "SELECT sku, data FROM master_records WHERE sku IN (%s)"
                % ",".join("?" * len(chunk)), chunk))
        return plan

    def commit_master(self, plan: MasterPlan, records: Mapping[str, MasterRecord],
                      source: str, sha256: str | None, skipped_rows: int = 0
                      ) -> MasterImportResult:
        """Write a planned import as a new snapshot, in one transaction."""
        at = plan.at
        changed = len(plan.writes) - plan.added
        c = self.db.conn
        with c:
            snap = c.execute(
                "INSERT INTO master_snapshots (imported_at, source, sha256, records, added, "
                "changed, removed, skipped_rows) VALUES (?,?,?,?,?,?,?,?)",
                (at, source, sha256, plan.records, plan.added, changed, len(plan.removed),
                 skipped_rows)).lastrowid
            skus = list(plan.writes)
            for i in range(0, len(skus), 5000):
                upserts, history, changes = [], [], []
                for sku in skus[i:i + 5000]:
                    data = plan.bodies.get(sku) or body_of(records, sku).decode()
                    upserts.append((sku, plan.writes[sku], data, snap, at))
                    old_data = plan.replaced.get(sku)
                    if old_data is None:
                        continue
                    history.append((at, snap, sku))
                    old_d, new_d = orjson.loads(old_data), orjson.loads(data)
                    for fld in sorted(set(old_d) | set(new_d)):
                        if fld != "sku" and old_d.get(fld) != new_d.get(fld):
                            changes.append((snap, sku, fld, _cell(old_d.get(fld)),
                                            _cell(new_d.get(fld)), at))
                # The replaced versions first, while master_records still holds them.
                c.executemany(
                    "INSERT INTO master_history (sku, hash, data, valid_from, valid_to, "
                    "snapshot_id) SELECT sku, hash, data, valid_from, ?, ? FROM master_records "
                    "WHERE sku = ?", history)
                c.executemany("INSERT OR REPLACE INTO master_records (sku, hash, data, "
                              "snapshot_id, valid_from) VALUES (?,?,?,?,?)", upserts)
                c.executemany("INSERT INTO master_changes (snapshot_id, sku, field, old, new, "
                              "changed_at) VALUES (?,?,?,?,?,?)", changes)
            for i in range(0, len(plan.removed), 500):
                chunk = plan.removed[i:i + 500]
                c.executemany(
                    "INSERT INTO master_history (sku, hash, data, valid_from, valid_to, snapshot_id)"
                    " SELECT sku, hash, data, valid_from, ?, ? FROM master_records WHERE sku = ?",
                    [(at, snap, s) for s in chunk])
                c.executemany("DELETE FROM master_records WHERE sku = ?", [(s,) for s in chunk])
        assert snap is not None
        return MasterImportResult(snap, plan.records, plan.added, changed, len(plan.removed))

    def master_history(self) -> MasterHistory:
        """Earlier versions of every SKU that ever changed: [(valid_until, record)], oldest first.

        Rows are read as stored and decoded per SKU on first access: a run looks up
        history only where a listing disagrees with the master.
        """
        history = MasterHistory()
        put = history.put
        for sku, data, valid_to in self.db.execute(
                "SELECT sku, data, valid_to FROM master_history ORDER BY sku, valid_to, id"):
            put(sku, valid_to, data)
        return history

    def master_changes(self, sku: str | None = None) -> list[MasterChange]:
        """The per-field change log, newest first."""
        q = "SELECT id, snapshot_id, sku, field, old, new, changed_at FROM master_changes"
        rows = self.db.execute(q + " ORDER BY id DESC") if sku is None else \
            self.db.execute(q + " WHERE sku = ? ORDER BY id DESC", [sku])
        return [MasterChange(i, snap, k, fld, old, new, datetime.fromisoformat(at))
                for i, snap, k, fld, old, new, at in rows]

    # ----------------------------------------------------------------- runs
    def start_run(self, started_at: datetime, snapshot_id: int | None) -> int:
        cur = self.db.conn.execute(
            "INSERT INTO runs (started_at, status, master_snapshot_id) VALUES (?, 'running', ?)",
            (started_at.isoformat(), snapshot_id))
        self.db.conn.commit()
        assert cur.lastrowid is not None
        return cur.lastrowid

    def set_run_snapshot(self, run_id: int, snapshot_id: int | None) -> None:
        """The master snapshot a run audited against (written once the run has begun)."""
        with self.db.conn:
            self.db.conn.execute("UPDATE runs SET master_snapshot_id=? WHERE id=?",
                                 (snapshot_id, run_id))

    def finish_run(self, run: Run, summary: dict[str, Any]) -> None:
        with self.db.conn:
            self.db.conn.execute(
                "UPDATE runs SET finished_at=?, status=?, summary=? WHERE id=?",
                (run.finished_at.isoformat() if run.finished_at else _now(), run.status.value,
                 codec.dumps(summary), run.id))

    def save_source_result(self, run_id: int, res: SourceResult,
                           errors: Sequence[tuple[str, str]] = ()) -> None:
        with self.db.conn:
            self.db.conn.execute(
                "INSERT OR REPLACE INTO run_sources (run_id, source, status, listings, errors,"
                " message, started_at, finished_at) VALUES (?,?,?,?,?,?,?,?)",
                (run_id, res.name, res.status.value, res.listings, res.errors, res.message,
                 res.started_at.isoformat() if res.started_at else None,
                 res.finished_at.isoformat() if res.finished_at else None))
            self.db.conn.executemany(
                "INSERT INTO run_errors (run_id, source, location, reason) VALUES (?,?,?,?)",
                [(run_id, res.name, loc, reason) for loc, reason in errors])

    def runs(self, limit: int = 20) -> list[RunRecord]:
        return [RunRecord(i, datetime.fromisoformat(started), parse_time(finished), status,
                          snap, orjson.loads(summary) if summary else {})
                for i, started, finished, status, snap, summary in self.db.execute(
                    "SELECT id, started_at, finished_at, status, master_snapshot_id, summary"
                    " FROM runs ORDER BY id DESC LIMIT ?", [limit])]

    _SOURCE_COLS = "run_id, source, status, listings, errors, message, started_at, finished_at"

    @staticmethod
    def _source_record(row: tuple) -> RunSourceRecord:
        run_id, source, status, listings, errors, message, started, finished = row
        return RunSourceRecord(run_id, source, status, listings, errors, message,
                               parse_time(started), parse_time(finished))

    def run_sources(self, run_id: int) -> list[RunSourceRecord]:
        return [self._source_record(r) for r in self.db.execute(
            f"SELECT {self._SOURCE_COLS} FROM run_sources WHERE run_id = ? ORDER BY source",
            [run_id])]

    def run_errors(self, run_id: int, source: str | None = None,
                   limit: int = 1000) -> list[RunErrorRecord]:
        q = "SELECT id, run_id, source, location, reason FROM run_errors WHERE run_id=?"
        args: list[Any] = [run_id]
        if source:
            q += " AND source=?"
            args.append(source)
        return [RunErrorRecord(*r) for r in self.db.execute(q + " ORDER BY id LIMIT ?",
                                                            [*args, limit])]

    def last_source_result(self, source: str, before_run: int | None = None
                           ) -> RunSourceRecord | None:
        """The most recent recorded result of ``source`` (optionally before a run)."""
        q = f"SELECT {self._SOURCE_COLS} FROM run_sources WHERE source = ?"
        args: list[Any] = [source]
        if before_run is not None:
            q += " AND run_id < ?"
            args.append(before_run)
        row = self.db.execute(q + " ORDER BY run_id DESC LIMIT 1", args).fetchone()
        return self._source_record(row) if row else None

    def last_durations(self) -> dict[str, float]:
        """Seconds the latest complete read of each source took (read and audited)."""
        out: dict[str, float] = {}
        for source, a, b in self.db.execute(
                "SELECT source, started_at, finished_at FROM run_sources WHERE status='complete'"
                " AND started_at IS NOT NULL AND finished_at IS NOT NULL ORDER BY run_id"):
            out[source] = (datetime.fromisoformat(b) - datetime.fromisoformat(a)).total_seconds()
        return out

    def last_good_listing_count(self, source: str, before_run: int) -> int | None:
        """Listings yielded by the last complete read of ``source`` before ``before_run``."""
        row = self.db.execute(
            "SELECT listings FROM run_sources WHERE source=? AND run_id<? AND status='complete' "
            "ORDER BY run_id DESC LIMIT 1", (source, before_run)).fetchone()
        return row[0] if row else None

    # ----------------------------------------------------------------- listings
    def save_listings(self, run_id: int, channel: str,
                      observed: Iterable[tuple[Listing, Link | None]],
                      shard: ShardSpec | None = None) -> ListingSave:
        """Record this run's observations: each listing with its link to the master (None:
        not linked by this caller; the row keeps no link). ``listings`` holds the latest
        version of each; when one changes, the version it replaces moves to
        ``listing_versions``. The link sits in the listing's row (``links`` is a view).

        ``observed`` may be a generator: it is consumed in batches, never held whole.

        A listing read again unchanged, from the same place and with the same link, costs
        no write: its row keeps the run, time and place it was first read in this version
        (``last_seen_run``, ``fetched_at``, ``evidence``) and the run that set its link
        (``link_run``); while ``removed_run`` is NULL it is on the channel as of the
        channel's latest complete read. Returns counts and ``unseen``: the keys present
        before this read and not in it (removed, if the read was complete: ``mark_removed``).
        """
        # Each row as SQLite returns it (key, hash, evidence, removed_run, the link's four
        # columns, link_run): a million listings are read on every repeat audit, and
        # regrouping each row into nested tuples cost a third of the read.
        rows = self.db.execute(
            "SELECT key, hash, evidence, removed_run, master_sku, link_method,"
            " link_confidence, link_candidates, link_run FROM listings WHERE channel = ?",
            (channel,))
        known = {r[0]: r for r in rows} if shard is None else \
            {r[0]: r for r in rows if shard.contains(r[0])}
        seen: set[str] = set()
        new = changed = 0
        batch_up: list[tuple] = []
        batch_ver: list[tuple] = []
        batch_seen: list[tuple] = []
        batch_link: list[tuple] = []
        c = self.db.conn

        def flush() -> None:
            # In key order: a feed's order scatters its keys over the B-tree, and sorted
            # writes touch each page once per batch (25% less CPU, measured).
            batch_ver.sort(key=_KEY2)
            batch_up.sort(key=_KEY1)
            batch_seen.sort(key=_KEY_LAST)
            batch_link.sort(key=_KEY_LAST)
            # The replaced versions first, while ``listings`` still holds them.
            c.executemany(
                "INSERT INTO listing_versions (channel, key, run_id, hash, data, until_run,"
                " fetched_at, evidence) SELECT channel, key, last_changed_run, hash, data, ?,"
                " fetched_at, evidence FROM listings WHERE channel=? AND key=?", batch_ver)
            c.executemany(
                "INSERT INTO listings (channel, key, hash, data, first_seen_run, last_seen_run,"
                " last_changed_run, fetched_at, evidence, master_sku, link_method,"
                " link_confidence, link_candidates, link_run) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
                " ON CONFLICT(channel, key) DO UPDATE SET hash=excluded.hash,"
                " data=excluded.data, last_seen_run=excluded.last_seen_run,"
                " last_changed_run=excluded.last_changed_run, fetched_at=excluded.fetched_at,"
                " evidence=excluded.evidence, removed_run=NULL, master_sku=excluded.master_sku,"
                " link_method=excluded.link_method, link_confidence=excluded.link_confidence,"
                " link_candidates=excluded.link_candidates, link_run=excluded.link_run",
                batch_up)
            c.executemany("UPDATE listings SET last_seen_run=?, removed_run=NULL, fetched_at=?,"
                          " evidence=?, master_sku=?, link_method=?, link_confidence=?,"
                          " link_candidates=?, link_run=? WHERE channel=? AND key=?", batch_seen)
            c.executemany("UPDATE listings SET master_sku=?, link_method=?, link_confidence=?,"
                          " link_candidates=?, link_run=? WHERE channel=? AND key=?", batch_link)
            batch_up.clear()
            batch_ver.clear()
            batch_seen.clear()
            batch_link.clear()

        last_dt: datetime | None = None
        fetched: str | None = None
        no_link = (None, None, None, None)
        gate = BatchGate()  # another process may be writing (the snapshot, a channel)
        # One transaction per batch: a long channel never holds the write lock for
        # its whole read, and each batch is all-or-nothing.
        for li, lk in observed:
            key = li.key
            if key in seen:
                continue
            seen.add(key)
            body = codec.body(li)
            h = digest(body)
            was = known.get(key)
            # (the method is a StrEnum: stored, and compared with the stored one, as its text)
            link = no_link if lk is None else (
                lk.sku, lk.method, lk.confidence,
                json.dumps(list(lk.candidates)) if lk.candidates else None)
            same_link = was is not None and was[4:8] == link
            link_run = was[8] if was is not None and same_link else \
                (None if lk is None else run_id)
            if li.fetched_at is not last_dt:  # a feed's listings share one read time
                last_dt = li.fetched_at
                fetched = last_dt.isoformat() if last_dt else None
            if was is not None and was[1] == h:
                if was[3] is not None or was[2] != li.evidence:  # back again, or moved
                    batch_seen.append((run_id, fetched, li.evidence, *link, link_run, channel,
                                       key))
                elif not same_link:
                    batch_link.append((*link, link_run, channel, key))
            else:
                batch_up.append((channel, key, h, body.decode(), run_id, run_id, run_id,
                                 fetched, li.evidence, *link, link_run))
                if was is None:
                    new += 1
                else:
                    changed += 1
                    batch_ver.append((run_id, channel, key))
            gate.offer(lambda wait: self._write(flush, wait),
                       len(batch_up) + len(batch_seen) + len(batch_link))
        self._write(flush, wait=True)
        # Present before this read and not in it: removed, if the read was complete (the
        # caller decides; see mark_removed). Known from the rows read above, no rescan.
        unseen = [k for k, was in known.items() if was[3] is None and k not in seen]
        return ListingSave(len(seen), new, changed, unseen)

    def mark_removed(self, run_id: int, channel: str, keys: Iterable[str]) -> int:
        """After a complete read: ``keys`` of ``channel`` (``save_listings``'s ``unseen``)
        are removed in this run."""
        rows = [(run_id, channel, k) for k in keys]
        if rows:
            with self.db.conn:
                self.db.conn.executemany(
                    "UPDATE listings SET removed_run=? WHERE channel=? AND key=?", rows)
        return len(rows)

    def listings(self, channel: str | None = None, sku: str | None = None,
                 include_removed: bool = False) -> list[Listing]:
        """Latest observed listings, optionally of one channel or linked to one SKU."""
        q = "SELECT l.data, l.fetched_at, l.evidence FROM listings l"
        where, args = [], []
        if sku is not None:
            where.append("l.master_sku = ?")
            args.append(sku)
        if channel is not None:
            where.append("l.channel = ?")
            args.append(channel)
        if not include_removed:
            where.append("l.removed_run IS NULL")
        if where:
            q += " WHERE " + " AND ".join(where)
        return [codec.listing_from_row(d, fetched, evidence)
                for d, fetched, evidence in self.db.execute(q, args)]

    def _write(self, fn: Callable[[], None], wait: bool) -> bool:
        """Run ``fn`` in one write transaction. With ``wait=False`` only when the write
        lock is free now: returns False at once (nothing done) when another process
        holds it, so the caller can go on working and try again with more rows."""
        c = self.db.conn
        if not wait:
            c.execute("PRAGMA busy_timeout=0")
            try:
                c.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as e:
                if "locked" not in str(e) and "busy" not in str(e):
                    raise
                return False
            finally:
                c.execute(f"PRAGMA busy_timeout={self.busy_timeout_ms}")
        else:
            c.execute("BEGIN IMMEDIATE")
        try:
            fn()
        except BaseException:
            c.rollback()
            raise
        c.commit()
        return True

    def links(self, channel: str | None = None) -> list[LinkRecord]:
        """How each present listing is linked (the run that set the link in ``run_id``)."""
        q = ("SELECT channel, key, master_sku, link_method, link_confidence, link_candidates,"
             " link_run FROM listings WHERE link_method IS NOT NULL AND removed_run IS NULL")
        args: list[Any] = []
        if channel:
            q += " AND channel = ?"
            args.append(channel)
        return [LinkRecord(ch, key, sku, method, conf,
                           tuple(json.loads(cands)) if cands else (), run)
                for ch, key, sku, method, conf, cands, run in self.db.execute(
                    q + " ORDER BY channel, key", args)]

    # ----------------------------------------------------------------- findings
    def apply_findings(self, run_id: int, channel: str, observed: Iterable[Finding],
                       status: SourceStatus, seen_keys: set[str] | None,
                       checks_ran: Sequence[str], now: datetime,
                       shard: ShardSpec | None = None) -> FindingChanges:
        """Record this run's non-passed outcomes and move finding states as
        ``auditor.lifecycle.transition`` decides (open, change, resolve, reopen), each
        change with its event, in one transaction."""
        at = now.isoformat()
        c = self.db.conn
        as_previous = Previous._make  # (no per-field argument parsing: the fastest build)
        existing = {row[0]: as_previous(row[1:]) for row in c.execute(
            "SELECT fingerprint, state, outcome, expected, actual, check_name, listing_key"
            " FROM findings WHERE channel=?", (channel,))
            if shard is None or shard.contains(row[6])}
        evidence = Evidence(status, seen_keys, frozenset(checks_ran))
        transition = lifecycle.transition
        opened = reopened = still_open = 0
        observed_fps: set[str] = set()
        with c:
            events: list[tuple] = []
            obs, inserts, updates = [], [], []
            for f in observed:
                if f.outcome == Outcome.PASSED:
                    continue
                fp = f.fingerprint
                if fp in observed_fps:
                    continue
                observed_fps.add(fp)  # (seen, so never resolved below, even with no t)
                old = existing.get(fp)
                t = transition(old, f, evidence)
                if t is None:  # no evidence (a failed read, a not_evaluated outcome)
                    continue
                obs.append((run_id, fp, f.outcome.value))
                details = codec.dumps(dict(f.details)) if f.details else None
                if old is None:
                    inserts.append((fp, f.check, f.channel, f.sku, f.listing_key, f.field,
                                    f.outcome.value, f.severity.value, f.expected, f.actual,
                                    f.score, f.message, details, t.state, at, at, run_id,
                                    run_id))
                    if f.outcome != Outcome.NOT_EVALUATED:  # (a note is not an opening)
                        opened += 1
                else:
                    if t.event == lifecycle.REOPENED:
                        reopened += 1
                    elif t.event == lifecycle.OPENED:  # a note compared at last: it differs
                        opened += 1
                    else:
                        still_open += 1
                    updates.append((f.outcome.value, f.severity.value, f.expected, f.actual,
                                    f.score, f.message, details, t.state, at, run_id, f.sku, fp))
                if t.event:
                    events.append((fp, run_id, at, t.event, t.state, f.outcome.value,
                                   f.expected, f.actual))
            # In fingerprint order, as the indexes are: fingerprints are hashes, so in
            # check order every write would land on a random page.
            inserts.sort(key=_KEY0)
            updates.sort(key=_KEY_LAST)
            obs.sort(key=_KEY1)
            c.executemany(
                "INSERT INTO findings (fingerprint, check_name, channel, sku, listing_key, field,"
                " outcome, severity, expected, actual, score, message, details, state,"
                " first_seen_at, last_seen_at, first_run, last_run)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", inserts)
            c.executemany(
                "UPDATE findings SET outcome=?, severity=?, expected=?, actual=?, score=?,"
                " message=?, details=?, state=?, last_seen_at=?, last_run=?, sku=?,"
                " resolved_at=NULL, resolved_run=NULL WHERE fingerprint=?", updates)
            # a finding back again needs a person again: its acknowledgement and snooze go
            c.executemany("UPDATE findings SET ack_by=NULL, ack_at=NULL, ack_note=NULL,"
                          " snoozed_until=NULL, snoozed_by=NULL WHERE fingerprint=?",
                          [(e[0],) for e in events if e[3] == lifecycle.REOPENED])
            c.executemany("INSERT OR REPLACE INTO finding_observations (run_id, fingerprint, "
                          "outcome) VALUES (?,?,?)", obs)
            # Findings not seen in this run: what the lifecycle makes of their absence.
            moved = []
            for fp, prev in existing.items():
                if fp not in observed_fps:
                    t = transition(prev, None, evidence)
                    if t is not None:
                        moved.append((fp, t))
            moved.sort(key=_KEY0)
            c.executemany("UPDATE findings SET state=?, resolved_at=?, resolved_run=? "
                          "WHERE fingerprint=?",
                          [(t.state, at if t.state == RESOLVED else None,
                            run_id if t.state == RESOLVED else None, fp) for fp, t in moved])
            events += [(fp, run_id, at, t.event, t.state, None, None, None)
                       for fp, t in moved if t.event]
            events.sort(key=_KEY0)
            c.executemany("INSERT INTO finding_events (fingerprint, run_id, at, event, state,"
                          " outcome, expected, actual) VALUES (?,?,?,?,?,?,?,?)", events)
        resolved = sum(1 for _, t in moved if t.event == lifecycle.RESOLVED_EVENT)
        return FindingChanges(opened, reopened, resolved, still_open)

    _FINDING_COLS = ("fingerprint, check_name, channel, sku, listing_key, field, outcome, "
                     "severity, expected, actual, score, message, details, state, "
                     "first_seen_at, last_seen_at, first_run, last_run, resolved_at, "
                     "resolved_run, ack_by, ack_at, ack_note, snoozed_until, snoozed_by, "
                     "alert_state, alert_reason")

    def findings(self, state: str | None = None, channel: str | None = None,
                 check: str | None = None, sku: str | None = None,
                 limit: int | None = None) -> list[FindingRecord]:
        """Stored findings, most severe and newest first."""
        where, args = [], []
        for col, val in (("state", state), ("channel", channel), ("check_name", check),
                         ("sku", sku)):
            if val is not None:
                where.append(f"{col} = ?")
                args.append(val)
        q = f"SELECT {self._FINDING_COLS} FROM findings"
        if where:
            q += " WHERE " + " AND ".join(where)
        q += (" ORDER BY CASE severity WHEN 'critical' THEN 0 WHEN 'major' THEN 1 "
              "WHEN 'minor' THEN 2 ELSE 3 END, channel, check_name, sku, field")
        if limit:
            q += f" LIMIT {int(limit)}"
        return [self._finding_record(r) for r in self.db.execute(q, args)]

    @staticmethod
    def _finding_record(row: Sequence[Any]) -> FindingRecord:
        (fp, chk, ch, k, lk, fld, out, sev, exp, act, score, msg, det, st, first, last, frun,
         lrun, res_at, res_run, ack_by, ack_at, ack_note, snoozed, snoozed_by, alert_state,
         alert_reason) = row
        return FindingRecord(fp, chk, ch, k, lk, fld, out, sev, exp, act, score, msg,
                             orjson.loads(det) if det else {}, st,
                             datetime.fromisoformat(first), datetime.fromisoformat(last), frun,
                             lrun, parse_time(res_at), res_run, ack_by, parse_time(ack_at),
                             ack_note, parse_time(snoozed), snoozed_by, alert_state,
                             alert_reason)

    def finding_events(self, fingerprint: str) -> list[FindingEvent]:
        return [FindingEvent(i, fp, run, datetime.fromisoformat(at), ev, st, out, exp, act,
                             actor, note)
                for i, fp, run, at, ev, st, out, exp, act, actor, note in self.db.execute(
                    "SELECT id, fingerprint, run_id, at, event, state, outcome, expected,"
                    " actual, actor, note FROM finding_events WHERE fingerprint=? ORDER BY id",
                    [fingerprint])]

    # ----------------------------------------------------------------- scores
    def save_scores(self, run_id: int, rows: Iterable[tuple[str, str, dict[str, int]]]) -> None:
        data = []
        for channel, check, n in rows:
            total = n.get("passed", 0) + n.get("failed", 0) + n.get("warn", 0)
            score = n.get("passed", 0) / total if total else None
            data.append((run_id, channel, check, n.get("passed", 0), n.get("failed", 0),
                         n.get("warn", 0), n.get("not_evaluated", 0), score))
        with self.db.conn:
            self.db.conn.executemany(
                "INSERT OR REPLACE INTO scores (run_id, channel, check_name, passed, failed,"
                " warn, not_evaluated, score) VALUES (?,?,?,?,?,?,?,?)", data)

    def scores(self, run_id: int) -> list[ScoreRecord]:
        return [ScoreRecord(*r) for r in self.db.execute(
            "SELECT run_id, channel, check_name, passed, failed, warn, not_evaluated, score"
            " FROM scores WHERE run_id=? ORDER BY channel, check_name", [run_id])]

    # ----------------------------------------------------------------- http cache
    def http_cache_get(self, url: str) -> HttpCacheRow | None:
        rows = list(self.db.query("SELECT * FROM http_cache WHERE url = ?", [url]))
        return rows[0] if rows else None  # type: ignore[return-value]

    def http_cache_put(self, url: str, **values: Any) -> None:
        self.db.table("http_cache").upsert({"url": url, **values}, pk="url")

    # ----------------------------------------------------------------- images
    def image_signatures(self, shas: Iterable[str], version: int) -> dict[str, dict[str, Any]]:
        """Stored signatures (as dicts) of these contents, computed by ``version``."""
        out: dict[str, dict[str, Any]] = {}
        shas = list(dict.fromkeys(shas))
        for i in range(0, len(shas), 500):
            chunk = shas[i:i + 500]
            q = ("SELECT sha256, data FROM image_signatures WHERE version = ? AND sha256 IN "
                 f"({','.join('?' * len(chunk))})")
            for sha, data in self.db.execute(q, [version, *chunk]):
                out[sha] = json.loads(data)
        return out

    def put_image_signatures(self, rows: Iterable[tuple[str, int, dict[str, Any]]]) -> None:
        """Keep signatures: (sha256, version, signature dict)."""
        at = _now()
        with self.db.conn:
            self.db.conn.executemany(
                "INSERT OR REPLACE INTO image_signatures (sha256, version, data, created_at) "
                "VALUES (?,?,?,?)", [(sha, v, codec.dumps(d), at) for sha, v, d in rows])

    def image_urls(self, urls: Iterable[str]) -> dict[str, ImageUrlRow]:
        """The last fetch of each URL: etag, last_modified, sha256, error, fetched_at."""
        out: dict[str, ImageUrlRow] = {}
        urls = list(dict.fromkeys(urls))
        for i in range(0, len(urls), 500):
            chunk = urls[i:i + 500]
            for r in self.db.query(f"SELECT * FROM image_urls WHERE url IN "
                                   f"({','.join('?' * len(chunk))})", chunk):
                out[r["url"]] = r  # type: ignore[assignment]
        return out

    def put_image_urls(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Record fetches: dicts with url, etag, last_modified, sha256, error."""
        at = _now()
        with self.db.conn:
            self.db.conn.executemany(
                "INSERT OR REPLACE INTO image_urls (url, etag, last_modified, sha256, error, "
                "fetched_at) VALUES (?,?,?,?,?,?)",
                [(r["url"], r.get("etag"), r.get("last_modified"), r.get("sha256"),
                  r.get("error"), at) for r in rows])

    def record_master_assets(self, assets: Mapping[str, Sequence[tuple[str, str | None]]],
                             now: datetime) -> int:
        """Note each SKU's image slots: [(ref, sha256 or None when unknown)], primary first.

        A slot whose content changed closes its old row (valid_to = now); slots
        the SKU no longer has are closed too; an unknown content (the image
        could not be fetched this run) leaves its slot as it was. Returns the
        number of rows closed.
        """
        at = now.isoformat()
        c = self.db.conn
        closed = 0
        skus = list(assets)
        with c:
            for i in range(0, len(skus), 500):
                chunk = skus[i:i + 500]
                open_rows: dict[str, dict[int, tuple[int, str]]] = {}
                for rid, sku, slot, sha in c.execute(
                        "SELECT id, sku, slot, sha256 FROM master_assets WHERE valid_to IS NULL "
                        f"AND sku IN ({','.join('?' * len(chunk))})", chunk):
                    open_rows.setdefault(sku, {})[slot] = (rid, sha)
                close, insert = [], []
                for sku in chunk:
                    have = open_rows.get(sku, {})
                    slots = assets[sku]
                    for slot, (ref, sha) in enumerate(slots):
                        old = have.get(slot)
                        if sha is None or (old is not None and old[1] == sha):
                            continue
                        if old is not None:
                            close.append((at, old[0]))
                        insert.append((sku, slot, ref, sha, at))
                    close += [(at, rid) for slot, (rid, _) in have.items() if slot >= len(slots)]
                c.executemany("UPDATE master_assets SET valid_to = ? WHERE id = ?", close)
                c.executemany("INSERT INTO master_assets (sku, slot, ref, sha256, valid_from) "
                              "VALUES (?,?,?,?,?)", insert)
                closed += len(close)
        return closed

    def master_asset_history(self, skus: Iterable[str] | None = None
                             ) -> dict[str, list[MasterAssetRow]]:
        """Replaced master images by SKU, newest first: slot, ref, sha256, valid_from, valid_to."""
        q = "SELECT * FROM master_assets WHERE valid_to IS NOT NULL"
        out: dict[str, list[MasterAssetRow]] = {}
        if skus is None:
            rows = list(self.db.query(q + " ORDER BY sku, valid_to DESC, id DESC"))
        else:
            wanted = list(dict.fromkeys(skus))
            rows = []
            for i in range(0, len(wanted), 500):
                chunk = wanted[i:i + 500]
                rows += self.db.query(q + f" AND sku IN ({','.join('?' * len(chunk))}) "
                                      "ORDER BY sku, valid_to DESC, id DESC", chunk)
        for r in rows:
            out.setdefault(r["sku"], []).append(r)  # type: ignore[arg-type]
        return out


    def http_cache_put_many(self, rows: list[dict[str, Any]]) -> None:
        """Upsert many cache rows (each with ``url``) in one transaction; a row
        changes only the columns it names."""
        # upsert_all would write NULL into columns one row of a batch lacks and
        # another has, so rows are grouped by the columns they carry.
        groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        for r in rows:
            groups.setdefault(tuple(sorted(r)), []).append(r)
        if groups:
            with self.db.conn:
                for group in groups.values():
                    self.db.table("http_cache").upsert_all(group, pk="url")

    def http_cache_extractions(self, urls: Sequence[str]) -> dict[str, str]:
        """The stored extraction (JSON text) of each of ``urls`` that has one."""
        out: dict[str, str] = {}
        urls = list(urls)
        for i in range(0, len(urls), 500):
            part = urls[i:i + 500]
            marks = ",".join("?" * len(part))
            for url, ex in self.db.execute(
                    f"SELECT url, extraction FROM http_cache WHERE url IN ({marks}) "
                    f"AND extraction IS NOT NULL", part):
                out[url] = ex
        return out

    def http_cache_validators(self, prefix: str) -> Iterator[HttpValidators]:
        """Validators (no extraction text) of every cached URL starting with ``prefix``."""
        yield from self.db.query(  # type: ignore[misc]
            "SELECT url, etag, last_modified, fetched_at, sha256, "
            "extraction IS NOT NULL AS had_extraction FROM http_cache "
            "WHERE url >= ? AND url < ?", [prefix, prefix + "\U0010ffff"])

    # ----------------------------------------------------------------- run lifecycle
    # (auditor.session: master imports, finding changes, interrupted runs)
    def run_summary(self, run_id: int) -> dict[str, Any]:
        """A run's stored summary (``{}`` when none yet)."""
        row = self.db.execute("SELECT summary FROM runs WHERE id=?", (run_id,)).fetchone()
        return json.loads(row[0]) if row and row[0] else {}

    def update_run_summary(self, run_id: int, **parts: Any) -> None:
        """Merge ``parts`` into a run's summary (while the run is going on)."""
        summary = self.run_summary(run_id)
        summary.update(parts)
        with self.db.conn:
            self.db.conn.execute("UPDATE runs SET summary=? WHERE id=?",
                                 (codec.dumps(summary), run_id))

    def record_master_import(self, run_id: int, info: Mapping[str, Any],
                             errors: Sequence[tuple[str, str]] = ()) -> None:
        """Note the run's master import (accepted or rejected) in its summary, and each
        error (location, reason) as a run error of the source ``master``."""
        summary = self.run_summary(run_id)
        summary["master"] = dict(info)
        with self.db.conn:
            self.db.conn.execute("UPDATE runs SET summary=? WHERE id=?",
                                 (codec.dumps(summary), run_id))
            self.db.conn.executemany(
                "INSERT INTO run_errors (run_id, source, location, reason) VALUES (?,?,?,?)",
                [(run_id, "master", loc, reason) for loc, reason in errors])

    def finding_changes(self, run_id: int, channel: str) -> list[FindingChange]:
        """Every finding of ``channel`` that ``run_id`` opened, changed, resolved or
        reopened, with what the finding says now (in the order they were written); asked
        right after the run applied the channel's findings."""
        # From the channel's findings this run touched to their events (by the
        # fingerprint index): finding_events has no index by run, and grows every run.
        return [FindingChange(*row) for row in self.db.execute(
            "SELECT e.fingerprint, e.event, f.check_name, f.channel, f.sku,"
            " f.listing_key, f.field, f.outcome, f.severity, f.expected, f.actual, f.message"
            " FROM findings f CROSS JOIN finding_events e ON e.fingerprint = f.fingerprint"
            " AND e.run_id = ? WHERE f.channel = ? AND (f.last_run = ? OR f.resolved_run = ?)"
            " ORDER BY e.id", [run_id, channel, run_id, run_id])]

    def interrupt_run(self, run_id: int, at: datetime, reason: str) -> bool:
        """Record a run that stopped before it finished as ``interrupted`` (at, why).
        False when the run had already finished."""
        # Whatever this connection was writing when the run was stopped stays unwritten
        # (a half-written batch of listings is not committed with the status).
        if self.db.conn.in_transaction:
            self.db.conn.rollback()
        summary = self.run_summary(run_id)
        summary["interrupted"] = {"at": at.isoformat(), "reason": reason}
        with self.db.conn:
            cur = self.db.conn.execute(
                "UPDATE runs SET finished_at=?, status='interrupted', summary=? "
                "WHERE id=? AND status='running'", (at.isoformat(), codec.dumps(summary), run_id))
        return cur.rowcount > 0

    def running_runs(self) -> list[RunRecord]:
        """Runs recorded as still ``running``, oldest first (``summary["pid"]``: the
        process that runs it, once noted)."""
        return [RunRecord(i, datetime.fromisoformat(started), parse_time(finished), status,
                          snap, orjson.loads(summary) if summary else {})
                for i, started, finished, status, snap, summary in self.db.execute(
                    "SELECT id, started_at, finished_at, status, master_snapshot_id, summary"
                    " FROM runs WHERE status = 'running' ORDER BY id")]

    def holds_run_lock(self) -> bool:
        """Whether this process holds this store's ``run_lock``."""
        return self.path != MEMORY and holds_run_lock(self.path)

    # ----------------------------------------------------------------- alerts: triage
    def find_fingerprint(self, prefix: str) -> str:
        """The one finding fingerprint starting with ``prefix`` (as shown, often shortened)."""
        prefix = prefix.strip().lower()
        if not re.fullmatch(r"[0-9a-f]{4,40}", prefix):
            raise BadRequest(f"{prefix!r} is not a finding fingerprint (hex, 4 characters or more)")
        rows = [r[0] for r in self.db.execute(
            "SELECT fingerprint FROM findings WHERE fingerprint >= ? AND fingerprint < ? LIMIT 2",
            (prefix, prefix + "g"))]
        if not rows:
            raise NotFound(f"no finding with fingerprint {prefix}")
        if len(rows) > 1:
            raise Conflict(f"fingerprint {prefix} is ambiguous: give more characters")
        return rows[0]

    def _triage(self, fingerprint: str, event: str, by: str | None, note: str | None,
                sets: str, args: tuple, now: datetime | None, allow_resolved: bool = False
                ) -> dict[str, Any]:
        at = (now or datetime.now(timezone.utc)).isoformat()
        c = self.db.conn
        with c:
            row = c.execute("SELECT state, outcome, expected, actual FROM findings "
                            "WHERE fingerprint=?", (fingerprint,)).fetchone()
            if row is None:
                raise NotFound(f"no finding with fingerprint {fingerprint}")
            if row[0] == RESOLVED and not allow_resolved:
                raise Conflict(f"finding {fingerprint} is resolved: nothing to {event.rstrip('d')}")
            c.execute(f"UPDATE findings SET {sets} WHERE fingerprint=?", (*args, fingerprint))
            state = RESOLVED if event == "resolved" else row[0]
            c.execute("INSERT INTO finding_events (fingerprint, run_id, at, event, state, outcome,"
                      " expected, actual, actor, note) VALUES (?,?,?,?,?,?,?,?,?,?)",
                      (fingerprint, None, at, event, state, row[1], row[2], row[3], by, note))
        return self.finding(fingerprint) or {}

    def ack_finding(self, fingerprint: str, by: str | None, note: str | None = None,
                    now: datetime | None = None) -> dict[str, Any]:
        """Acknowledge an open finding: someone owns it, so it stops alerting until it
        resolves and comes back (a reopen clears the acknowledgement)."""
        at = (now or datetime.now(timezone.utc)).isoformat()
        return self._triage(fingerprint, "acknowledged", by, note,
                            "ack_by=?, ack_at=?, ack_note=?", (by, at, note), now)

    def snooze_finding(self, fingerprint: str, until: datetime, by: str | None,
                       now: datetime | None = None, note: str | None = None) -> dict[str, Any]:
        """Mute an open finding until ``until``; it alerts again after, if still open."""
        return self._triage(fingerprint, "snoozed", by, note or f"until {until.isoformat()}",
                            "snoozed_until=?, snoozed_by=?", (until.isoformat(), by), now)

    def resolve_finding(self, fingerprint: str, by: str | None, now: datetime | None = None,
                        note: str | None = None) -> dict[str, Any]:
        """Resolve a finding by hand; the next complete read that still shows it reopens it."""
        at = (now or datetime.now(timezone.utc)).isoformat()
        return self._triage(fingerprint, "resolved", by, note,
                            "state=?, resolved_at=?, resolved_run=NULL", (RESOLVED, at), now)

    def finding(self, fingerprint: str) -> dict[str, Any] | None:
        """One stored finding as a dict (as ``findings`` returns them), with ``episode``:
        the opened/reopened event its current episode began with."""
        rows = list(self.db.query("SELECT * FROM findings WHERE fingerprint=?", [fingerprint]))
        if not rows:
            return None
        r = rows[0]
        r["check"] = r.pop("check_name")
        r["details"] = json.loads(r["details"]) if r["details"] else {}
        ep = self.db.execute(
            "SELECT event, at, run_id FROM finding_events WHERE fingerprint=? AND event IN "
            "('opened','reopened') ORDER BY id DESC LIMIT 1", (fingerprint,)).fetchone()
        r["episode"] = {"event": ep[0], "at": ep[1], "run_id": ep[2]} if ep else None
        r["stored_state"] = r["state"]  # open or resolved, as the lifecycle keeps it
        from auditor.alerts.policy import display_state

        r["state"] = display_state({**r, "episode_event": ep[0] if ep else None,
                                    "since": ep[1] if ep else None}, datetime.now(timezone.utc))
        return r

    def finding_episodes(self, fingerprints: Iterable[str] | None = None
                         ) -> dict[str, tuple[str, str, int | None, int]]:
        """Each finding's current episode: (opened|reopened, since, run, runs), where runs
        counts the complete reads of its channel since the episode began (an open finding
        not seen in a complete read resolves, so these are consecutive runs that showed it).
        Without ``fingerprints``: every finding not resolved."""
        q = ("SELECT f.fingerprint, f.channel, e.event, e.at, e.run_id FROM findings f "
             "JOIN finding_events e ON e.id = (SELECT max(id) FROM finding_events x WHERE "
             "x.fingerprint = f.fingerprint AND x.event IN ('opened','reopened'))")
        if fingerprints is None:
            rows = list(self.db.execute(q + " WHERE f.state != ?", (RESOLVED,)))
        else:
            fps = list(dict.fromkeys(fingerprints))
            rows = []
            for i in range(0, len(fps), 500):
                chunk = fps[i:i + 500]
                rows += self.db.execute(q + f" WHERE f.fingerprint IN ({','.join('?' * len(chunk))})",
                                        chunk)
        complete: dict[str, list[int]] = {}
        for ch in {r[1] for r in rows}:
            complete[ch] = [r for (r,) in self.db.execute(
                "SELECT run_id FROM run_sources WHERE source=? AND status='complete' "
                "ORDER BY run_id", (ch,))]
        out = {}
        for fp, ch, ev, at, run in rows:
            runs = complete.get(ch, [])
            n = len(runs) - bisect.bisect_left(runs, run) if run is not None else 1
            out[fp] = (ev, at, run, max(1, n))
        return out

    def alert_candidates(self) -> list[dict[str, Any]]:
        """Every finding not resolved, with its current episode (``since``, ``runs``)."""
        episodes = self.finding_episodes()
        rows = []
        cur = self.db.execute("SELECT * FROM findings WHERE state != ? AND outcome != ? "
                              "ORDER BY fingerprint", [RESOLVED, Outcome.NOT_EVALUATED.value])
        cols = ["check" if d[0] == "check_name" else d[0] for d in cur.description]
        for values in cur:
            r = dict(zip(cols, values, strict=True))
            r["details"] = orjson.loads(r["details"]) if r["details"] else {}
            rows.append(with_episode(r, episodes))
        return rows

    def findings_by_fingerprint(self, fingerprints: Iterable[str]) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        fps = list(dict.fromkeys(fingerprints))
        for i in range(0, len(fps), 500):
            chunk = fps[i:i + 500]
            for r in self.db.query("SELECT * FROM findings WHERE fingerprint IN "
                                   f"({','.join('?' * len(chunk))})", chunk):
                r["check"] = r.pop("check_name")
                r["details"] = json.loads(r["details"]) if r["details"] else {}
                out[r["fingerprint"]] = r
        return out

    def recent_master_changes(self, since: datetime) -> list[tuple[str, str, str]]:
        """(sku, field, changed_at) of master changes at or after ``since``."""
        return list(self.db.execute("SELECT sku, field, changed_at FROM master_changes "
                                    "WHERE changed_at >= ? ORDER BY id", (since.isoformat(),)))

    def listing_context(self, pairs: Iterable[tuple[str, str]]) -> dict[tuple[str, str], dict]:
        """For (channel, listing key): the listing's ``url`` and ``title``."""
        out: dict[tuple[str, str], dict] = {}
        for ch, key in dict.fromkeys(pairs):
            row = self.db.execute("SELECT data FROM listings WHERE channel=? AND key=?",
                                  (ch, key)).fetchone()
            if row:
                d = orjson.loads(row[0])
                out[(ch, key)] = {"url": d.get("url"), "title": d.get("title")}
        return out

    def master_titles(self, skus: Iterable[str]) -> dict[str, str | None]:
        out: dict[str, str | None] = {}
        wanted = [s for s in dict.fromkeys(skus) if s]
        for i in range(0, len(wanted), 500):
            chunk = wanted[i:i + 500]
            for sku, data in self.db.execute("SELECT sku, data FROM master_records WHERE sku IN "
                                             f"({','.join('?' * len(chunk))})", chunk):
                out[sku] = orjson.loads(data).get("title")
        return out

    def source_failure_streaks(self) -> dict[str, dict[str, Any]]:
        """Each source's latest recorded result, with ``failing_runs``: how many of its
        latest results in a row were not complete."""
        out: dict[str, dict[str, Any]] = {}
        for r in self.db.query("SELECT * FROM run_sources ORDER BY source, run_id DESC"):
            got = out.get(r["source"])
            if got is None:
                r["failing_runs"] = 0 if r["status"] == "complete" else 1
                r["_streak"] = r["status"] != "complete"
                out[r["source"]] = r
            elif got["_streak"]:
                if r["status"] == "complete":
                    got["_streak"] = False
                else:
                    got["failing_runs"] += 1
        for r in out.values():
            r.pop("_streak", None)
        return out

    # ----------------------------------------------------------------- alerts: silences
    def add_silence(self, matchers: Mapping[str, str], starts_at: datetime, ends_at: datetime,
                    by: str | None, comment: str | None, now: datetime | None = None) -> int:
        with self.db.conn:
            return int(self.db.conn.execute(
                "INSERT INTO silences (matchers, starts_at, ends_at, created_by, comment,"
                " created_at) VALUES (?,?,?,?,?,?)",
                (codec.dumps(dict(matchers)), starts_at.isoformat(), ends_at.isoformat(), by,
                 comment, (now or datetime.now(timezone.utc)).isoformat())).lastrowid or 0)

    def silences(self, active_at: datetime | None = None) -> list[dict[str, Any]]:
        """Silences, newest first; only those in force at ``active_at`` when given."""
        q, args = "SELECT * FROM silences", []
        if active_at is not None:
            q += " WHERE starts_at <= ? AND ends_at > ?"
            args = [active_at.isoformat(), active_at.isoformat()]
        rows = list(self.db.query(q + " ORDER BY id DESC", args))
        for r in rows:
            r["matchers"] = json.loads(r["matchers"])
        return rows

    def expire_silence(self, silence_id: int, now: datetime | None = None) -> bool:
        at = (now or datetime.now(timezone.utc)).isoformat()
        with self.db.conn:
            cur = self.db.conn.execute("UPDATE silences SET ends_at=? WHERE id=? AND ends_at>?",
                                       (at, silence_id, at))
            if cur.rowcount:
                self.db.conn.execute("INSERT INTO alert_cursors (name, value) VALUES "
                                     "('silences_expired', '1') ON CONFLICT(name) DO UPDATE SET "
                                     "value = CAST(value AS INTEGER) + 1")
        return cur.rowcount > 0

    def alert_inputs(self) -> str:
        """A token that changes whenever anything an alert evaluation reads changes
        (finding events, source results, master changes, silences)."""
        c = self.db.conn
        parts = [c.execute(q).fetchone()[0] for q in (
            "SELECT max(id) FROM finding_events", "SELECT max(rowid) FROM run_sources",
            "SELECT max(id) FROM master_changes", "SELECT max(id) FROM silences",
            "SELECT max(value) FROM alert_cursors WHERE name='silences_expired'")]
        return ":".join(str(p) for p in parts)

    def alert_cursor(self, name: str) -> str | None:
        row = self.db.conn.execute("SELECT value FROM alert_cursors WHERE name=?",
                                   (name,)).fetchone()
        return row[0] if row else None


    # ----------------------------------------------------------------- alerts: outbox
    @contextlib.contextmanager
    def alert_snapshot(self) -> Iterator[None]:
        """A read transaction: everything an alert evaluation reads comes from one
        consistent state of the store, and no write lock is held meanwhile."""
        c = self.db.conn
        if c.in_transaction:
            c.commit()
        c.execute("BEGIN")
        try:
            yield
        finally:
            c.rollback()  # nothing was written

    def alert_groups(self) -> dict[tuple[str, str], dict[str, Any]]:
        out = {}
        for r in self.db.query("SELECT * FROM alert_groups"):
            r["labels"] = json.loads(r["labels"])
            r["members"] = json.loads(r["members"])
            out[(r["receiver"], r["group_key"])] = r
        return out

    def record_alerts(self, groups: Iterable[Mapping[str, Any]], drop: Iterable[tuple[str, str]],
                      notifications: Iterable[Mapping[str, Any]],
                      finding_states: Iterable[tuple[str | None, str | None, str]],
                      now: datetime, generation: str, cursors: Mapping[str, str]
                      ) -> int | None:
        """Write an evaluation in one transaction: group states, dropped groups, new outbox
        rows (receiver, idempotency_key, group_key, payload), findings' alert states (state,
        reason, fingerprint) and the evaluation's cursors. Only if no other evaluation was
        recorded since the one this was computed from (``generation``): else nothing is
        written and None returned (evaluate again)."""
        c = self.db.conn
        at = now.isoformat()
        if c.in_transaction:
            c.commit()
        c.execute("BEGIN IMMEDIATE")
        try:
            row = c.execute("SELECT value FROM alert_cursors WHERE name='generation'").fetchone()
            if (row[0] if row else "0") != generation:
                c.rollback()
                return None
            c.executemany(
                "INSERT OR REPLACE INTO alert_groups (receiver, group_key, labels, members,"
                " seq, last_sent_at) VALUES (?,?,?,?,?,?)",
                [(g["receiver"], g["group_key"], codec.dumps(g["labels"]),
                  codec.dumps(g["members"]), g["seq"], g["last_sent_at"]) for g in groups])
            c.executemany("DELETE FROM alert_groups WHERE receiver=? AND group_key=?", list(drop))
            n = 0
            for r in notifications:
                cur = c.execute(
                    "INSERT OR IGNORE INTO outbox (created_at, kind, fingerprint, payload, status,"
                    " attempts, next_attempt_at, receiver, idempotency_key)"
                    " VALUES (?,?,?,?,?,?,?,?,?)",
                    (at, "notification", r["group_key"], codec.dumps(r["payload"]), "pending",
                     0, at, r["receiver"], r["idempotency_key"]))
                n += cur.rowcount
            c.executemany("UPDATE findings SET alert_state=?, alert_reason=? WHERE fingerprint=?",
                          list(finding_states))
            c.executemany("INSERT OR REPLACE INTO alert_cursors (name, value) VALUES (?,?)",
                          [*cursors.items(), ("generation", str(int(generation) + 1))])
        except BaseException:
            c.rollback()
            raise
        c.commit()
        return n

    def outbox(self, statuses: Sequence[str] | None = ("pending", "failed"),
               limit: int = 1000) -> list[dict[str, Any]]:
        """Outbox rows (oldest first), by default those not yet delivered."""
        q, args = "SELECT * FROM outbox", []
        if statuses:
            q += f" WHERE status IN ({','.join('?' * len(statuses))})"
            args = list(statuses)
        rows = list(self.db.query(q + " ORDER BY id LIMIT ?", [*args, limit]))
        for r in rows:
            r["payload"] = json.loads(r["payload"])
        return rows

    def outbox_sent(self, row_id: int, now: datetime) -> None:
        with self.db.conn:
            self.db.conn.execute("UPDATE outbox SET status='sent', sent_at=?, attempts=attempts+1,"
                                 " last_error=NULL WHERE id=?", (now.isoformat(), row_id))

    def outbox_failed(self, row_id: int, error: str, next_attempt_at: datetime | None) -> None:
        """A failed attempt: retried at ``next_attempt_at``, or given up (None)."""
        with self.db.conn:
            self.db.conn.execute(
                "UPDATE outbox SET attempts=attempts+1, last_error=?, next_attempt_at=?, "
                "status=? WHERE id=?",
                (error[:1000], next_attempt_at.isoformat() if next_attempt_at else None,
                 "pending" if next_attempt_at else "failed", row_id))

    def outbox_retry_failed(self, now: datetime) -> int:
        with self.db.conn:
            return self.db.conn.execute(
                "UPDATE outbox SET status='pending', next_attempt_at=?, attempts=0 "
                "WHERE status='failed'", (now.isoformat(),)).rowcount

    # ----------------------------------------------------------------- alerts: propagation
    def sync_propagation(self, checks_by_field: Mapping[str, Sequence[str]],
                         channels: Sequence[str] | None = None) -> dict[str, int]:
        """Record the propagation of master changes to channels.

        Every master change (of a field some check compares: ``checks_by_field``) gets a
        row per channel listing that SKU and per check; a row is caught up at the first
        complete read of the channel, in or after the run that imported the change, in
        which that check had nothing against the SKU. Latency = that read's end minus the
        change time. Idempotent, and each run is looked at once per row: call it after
        every run. ``channels``: only these channels' rows (a channel's run calls it for
        its own channel as soon as its findings are written, so that the call after the
        run finds that work done); the rows are the same either way.
        """
        c = self.db.conn
        checks: dict[str, list[str]] = {}
        for f, chks in checks_by_field.items():
            for chk in chks:
                if chk not in checks.setdefault(f, []):
                    checks[f].append(chk)
        if not any(checks.values()):
            return {"added": 0, "caught_up": 0}
        with c:
            done = propagation_cursors(c.execute(
                "SELECT name, value FROM alert_cursors WHERE name = 'master_changes'"
                " OR substr(name, 1, 15) = 'master_changes:'"))
            top = c.execute("SELECT max(id) FROM master_changes").fetchone()[0] or 0
            listed = _distinct_first(c, "listings", "channel")
            names = sorted(set(channels)) if channels is not None else listed
            # Changes already turned into rows, per channel: the channel's own cursor (set
            # by a sync of that channel alone) or the cursor of every channel.
            since = {ch: max(done.get(None, 0), done.get(ch, 0)) for ch in names}
            behind = [ch for ch in names if since[ch] < top and ch in set(listed)]
            new: list[tuple] = []
            if behind:
                low = min(since[ch] for ch in behind)
                changes = c.execute(
                    "SELECT id, sku, field, changed_at, snapshot_id FROM master_changes"
                    " WHERE id > ? AND id <= ? ORDER BY id", (low, top)).fetchall()
                changed = {r[1] for r in changes if r[2] in checks}
                # The SKUs each channel lists now, in one pass over its listings (joined in
                # SQL, every listing was looked up in the changes' index once per field).
                on: dict[str, set[str]] = {}
                for ch in behind:
                    on[ch] = {sku for (sku,) in c.execute(
                        "SELECT master_sku FROM listings WHERE channel = ? AND master_sku IS"
                        " NOT NULL AND removed_run IS NULL", (ch,)) if sku in changed}
                have: set[tuple[int, str, str]] = set()
                for ch in behind:
                    have.update(c.execute(
                        "SELECT change_id, channel, check_name FROM propagation WHERE"
                        " change_id > ? AND change_id <= ? AND channel = ?",
                        (since[ch], top, ch)))
                for cid, sku, fld, at, snap in changes:
                    fld_checks = checks.get(fld)
                    if not fld_checks:
                        continue
                    for ch in behind:
                        if cid > since[ch] and sku in on[ch]:
                            for chk in fld_checks:
                                if not have or (cid, ch, chk) not in have:
                                    new.append((cid, ch, sku, fld, chk, at, snap))
            if channels is None:
                c.execute("DELETE FROM alert_cursors WHERE substr(name, 1, 15) ="
                          " 'master_changes:'")
                c.execute("INSERT OR REPLACE INTO alert_cursors (name, value) VALUES "
                          "('master_changes', ?)", (str(top),))
            else:
                c.executemany("INSERT OR REPLACE INTO alert_cursors (name, value) VALUES"
                              " (?, ?)", [(f"master_changes:{ch}", str(top)) for ch in names
                                          if since[ch] < top])
            first_runs = dict(c.execute("SELECT master_snapshot_id, min(id) FROM runs WHERE "
                                        "master_snapshot_id IS NOT NULL GROUP BY master_snapshot_id"))
            snaps = sorted(first_runs)
            suffix_min: list[int] = []  # the first run on snapshot snaps[i] or a later one
            for snap_id in reversed(snaps):
                suffix_min.append(min(first_runs[snap_id], suffix_min[-1]) if suffix_min
                                  else first_runs[snap_id])
            suffix_min.reverse()
            first_of: dict[int, int | None] = dict(zip(snaps, suffix_min, strict=True))

            def first_run(snap: int) -> int | None:
                if snap not in first_of:
                    i = bisect.bisect_left(snaps, snap)
                    first_of[snap] = suffix_min[i] if i < len(snaps) else None
                return first_of[snap]

            # The first run each channel's rows are to be looked at in: the old pending rows'
            # [id, sku, check, changed_at, first run to look at] and the new rows' first.
            pending: dict[str, list[list]] = {}
            start: dict[str, int] = {}
            for ch in (_distinct_first(c, "propagation", "channel", "caught_up_at IS NULL")
                       if channels is None else names):
                for pid, sku, chk, at, snap, checked in c.execute(
                        "SELECT id, sku, check_name, changed_at, snapshot_id, checked_run FROM"
                        " propagation WHERE channel = ? AND caught_up_at IS NULL", (ch,)):
                    first = first_run(snap)
                    if first is not None:
                        first = max(first, (checked or 0) + 1)
                        pending.setdefault(ch, []).append([pid, sku, chk, at, first])
                        start[ch] = min(first, start.get(ch, first))
            for snap, ch in {(r[6], r[1]) for r in new}:
                first = first_run(snap)
                if first is not None:
                    start[ch] = min(first, start.get(ch, first))
            # Each channel's complete reads from its first run to look at, and what each
            # read found against which SKU (read when first needed).
            runs: dict[str, list[tuple[int, str | None]]] = {}
            bads: dict[tuple[str, int], set[tuple[str, str]]] = {}

            def bad(ch: str, run_id: int) -> set[tuple[str, str]]:
                got = bads.get((ch, run_id))
                if got is None:
                    got = bads[(ch, run_id)] = set(c.execute(
                        "SELECT f.sku, f.check_name FROM finding_observations o JOIN findings f "
                        "ON f.fingerprint = o.fingerprint WHERE o.run_id=? AND f.channel=? AND "
                        "o.outcome IN ('failed','warn')", (run_id, ch)))
                return got

            for ch, first in start.items():
                runs[ch] = list(c.execute(
                    "SELECT run_id, finished_at FROM run_sources WHERE source=? AND"
                    " status='complete' AND run_id >= ? ORDER BY run_id", (ch, first)))
            latencies: dict[tuple[str, str], float] = {}

            def latency(fin: str, at: str) -> float:
                got = latencies.get((fin, at))
                if got is None:
                    got = latencies[(fin, at)] = max(0.0, (
                        datetime.fromisoformat(fin) - datetime.fromisoformat(at)
                    ).total_seconds())
                return got

            caught = 0
            caught_rows, checked_rows = [], []
            for ch, rows in pending.items():
                open_rows = rows
                for run_id, finished in runs[ch]:
                    seen = bad(ch, run_id)
                    left = []
                    for r in open_rows:
                        if r[4] <= run_id and (r[1], r[2]) not in seen:
                            fin = finished or r[3]
                            caught += 1
                            caught_rows.append((fin, run_id, latency(fin, r[3]), run_id, r[0]))
                        else:
                            left.append(r)
                    open_rows = left
                    if not open_rows:
                        break
                if runs[ch]:
                    last = runs[ch][-1][0]
                    checked_rows += [(last, r[0]) for r in open_rows]
            # The new rows, caught up at the first complete read from their first run on
            # without a finding of their check against the SKU, in the order the changes
            # were read (rows get the ids they always got).
            rows_out: list[tuple] = []
            for row in new:
                ch, sku, chk, at = row[1], row[2], row[4], row[5]
                first = first_run(row[6])
                got: tuple = (None, None, None, None)
                if first is not None:
                    ch_runs = runs[ch]
                    for run_id, finished in ch_runs:
                        if run_id >= first and (sku, chk) not in bad(ch, run_id):
                            fin = finished or at
                            got = (fin, run_id, latency(fin, at), run_id)
                            caught += 1
                            break
                    else:
                        if ch_runs:
                            got = (None, None, None, ch_runs[-1][0])
                rows_out.append((*row, *got))
            before = c.total_changes
            c.executemany(
                "INSERT OR IGNORE INTO propagation (change_id, channel, sku, field, check_name,"
                " changed_at, snapshot_id, caught_up_at, caught_up_run, latency_seconds,"
                " checked_run) VALUES (?,?,?,?,?,?,?,?,?,?,?)", rows_out)
            added = c.total_changes - before
            c.executemany("UPDATE propagation SET caught_up_at=?, caught_up_run=?, "
                          "latency_seconds=?, checked_run=? WHERE id=?", caught_rows)
            c.executemany("UPDATE propagation SET checked_run=? WHERE id=?", checked_rows)
        return {"added": added, "caught_up": caught}

    def propagation_rows(self, channel: str | None = None, pending: bool | None = None,
                         limit: int | None = None) -> list[dict[str, Any]]:
        """Propagation rows (newest first): channel, sku, field, check_name, changed_at,
        caught_up_at, latency_seconds (None while the channel has not caught up)."""
        where, args = [], []
        if channel is not None:
            where.append("channel = ?")
            args.append(channel)
        if pending is not None:
            where.append("caught_up_at IS NULL" if pending else "caught_up_at IS NOT NULL")
        q = "SELECT * FROM propagation" + (" WHERE " + " AND ".join(where) if where else "")
        q += " ORDER BY id DESC" + (f" LIMIT {int(limit)}" if limit else "")
        return list(self.db.query(q, args))


    # ----------------------------------------------------------------- service reads
    # (auditor serve: the scheduler's run history, the metrics collector, the JSON API)

    def last_complete_reads(self) -> dict[str, datetime]:
        """When each source's latest complete read finished; ``"master"`` is the latest
        run whose master import was not rejected."""
        out: dict[str, datetime] = {}
        for source, at in self.db.execute(
                "SELECT source, max(finished_at) FROM run_sources WHERE status='complete' "
                "AND finished_at IS NOT NULL GROUP BY source"):
            out[source] = datetime.fromisoformat(at)
        if "master" not in out:
            for finished, status, summary in self.db.execute(
                    "SELECT finished_at, status, summary FROM runs WHERE finished_at IS NOT NULL"
                    " AND status IN ('complete', 'partial') ORDER BY id DESC LIMIT 50"):
                s = json.loads(summary) if summary else {}
                if status == "complete" or not s.get("master_error"):
                    out["master"] = datetime.fromisoformat(finished)
                    break
        return out

    def interrupt_running_runs(self, at: datetime) -> list[int]:
        """Record every run still marked running as interrupted at ``at``: call only while
        holding the run lock (no run is really running then). Returns their ids."""
        with self.db.conn:
            ids = [r for (r,) in self.db.execute("SELECT id FROM runs WHERE status='running'")]
            self.db.conn.executemany("UPDATE runs SET status='interrupted', finished_at=? "
                                     "WHERE id=?", [(at.isoformat(), i) for i in ids])
        return ids

    def latest_scores(self) -> list[tuple[str, str, float]]:
        """(channel, check, passed share) of each channel's latest scored run."""
        return [(c, k, s) for c, k, s in self.db.execute(
            "SELECT s.channel, s.check_name, s.score FROM scores s JOIN (SELECT channel, "
            "max(run_id) AS run_id FROM scores GROUP BY channel) l ON l.channel = s.channel "
            "AND l.run_id = s.run_id WHERE s.score IS NOT NULL ORDER BY 1, 2")]

    def unresolved_finding_counts(self) -> list[tuple[str, str, str, int]]:
        """(channel, check, severity, count) of findings not resolved."""
        return list(self.db.execute(
            "SELECT channel, check_name, severity, count(*) FROM findings "
            "WHERE state != 'resolved' GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"))

    def latest_source_results(self) -> list[dict[str, Any]]:
        """Each source's latest recorded read (a run_sources row)."""
        return list(self.db.query(
            "SELECT r.* FROM run_sources r JOIN (SELECT source, max(run_id) AS run_id FROM "
            "run_sources GROUP BY source) l ON l.source = r.source AND l.run_id = r.run_id "
            "ORDER BY r.source"))

    def source_durations(self) -> list[tuple[str, float]]:
        """(source, seconds) of every finished read on record."""
        out = []
        for source, a, b in self.db.execute(
                "SELECT source, started_at, finished_at FROM run_sources "
                "WHERE started_at IS NOT NULL AND finished_at IS NOT NULL"):
            out.append((source, max(0.0, (datetime.fromisoformat(b)
                                          - datetime.fromisoformat(a)).total_seconds())))
        return out

    def run_errors_after(self, after_id: int, limit: int = 100_000
                         ) -> list[tuple[int, str, str]]:
        """(id, source, reason) of recorded bad rows and pages with an id above ``after_id``."""
        return list(self.db.execute("SELECT id, source, reason FROM run_errors WHERE id > ? "
                                    "ORDER BY id LIMIT ?", (after_id, limit)))

    def failed_reads_after(self, after_rowid: int) -> list[tuple[int, str, str, str | None]]:
        """(rowid, source, status, message) of reads not complete, with a rowid above
        ``after_rowid``."""
        return list(self.db.execute(
            "SELECT rowid, source, status, message FROM run_sources WHERE rowid > ? AND "
            "status != 'complete' ORDER BY rowid", (after_rowid,)))

    def data_version(self) -> tuple[Any, ...]:
        """Changes whenever a run, finding or master snapshot is written (cache key)."""
        return tuple(self.db.execute(
            "SELECT (SELECT max(id) FROM runs), (SELECT max(finished_at) FROM runs), "
            "(SELECT count(*) FROM run_sources), (SELECT max(id) FROM master_snapshots), "
            "(SELECT max(id) FROM finding_events)").fetchone())

    def outbox_counts(self) -> dict[str, int]:
        """Notifications in the outbox by status (pending, failed, sent ...)."""
        return dict(self.db.execute("SELECT status, count(*) FROM outbox GROUP BY status"))

    def propagation(self, since: datetime, max_changes: int = 20_000
                    ) -> list[tuple[str, float | None]]:
        """How long master changes took to show on each channel: (channel, seconds), or
        (channel, None) while a channel does not show one yet.

        A change (SKU, field, time) shows on a channel at the channel's first complete
        read started after it in which that SKU's listing had no finding open on the
        field; the latency is that read's start minus the change time. Only changes since
        ``since`` (at most the newest ``max_changes``) and channels listing the SKU count.
        After a complete read a finding is open exactly when the read observed it, so the
        finding events (indexed by fingerprint) tell it, without scanning observations.
        """
        changes = list(self.db.execute(
            "SELECT sku, field, changed_at FROM master_changes WHERE changed_at >= ? "
            "ORDER BY id DESC LIMIT ?", (since.isoformat(), max_changes)))
        if not changes:
            return []
        skus = sorted({c[0] for c in changes})
        on: dict[str, set[str]] = {}                       # sku -> channels listing it
        fps: dict[tuple[str, str], list[tuple[str, str]]] = {}  # (channel, sku) -> [(fp, field)]
        for i in range(0, len(skus), 500):
            chunk = skus[i:i + 500]
            marks = ",".join("?" * len(chunk))
            for channel, sku in self.db.execute(
                    f"SELECT channel, master_sku FROM listings WHERE master_sku IN ({marks}) "
                    f"AND removed_run IS NULL", chunk):
                on.setdefault(sku, set()).add(channel)
            for fp, channel, sku, fld in self.db.execute(
                    f"SELECT fingerprint, channel, sku, field FROM findings "
                    f"WHERE sku IN ({marks})", chunk):
                fps.setdefault((channel, sku), []).append((fp, fld))
        # each finding's state after each run that changed it: [(run_id, open?)]
        timeline: dict[str, list[tuple[int, bool]]] = {}
        every_fp = [fp for v in fps.values() for fp, _ in v]
        for i in range(0, len(every_fp), 500):
            chunk = every_fp[i:i + 500]
            for fp, run_id, event in self.db.execute(
                    f"SELECT fingerprint, run_id, event FROM finding_events WHERE fingerprint IN "
                    f"({','.join('?' * len(chunk))}) AND run_id IS NOT NULL ORDER BY id", chunk):
                timeline.setdefault(fp, []).append((run_id, event != "resolved"))

        def open_after(fp: str, run_id: int) -> bool:
            state = False
            for r, is_open in timeline.get(fp, ()):
                if r > run_id:
                    break
                state = is_open
            return state

        reads: dict[str, tuple[list[datetime], list[int]]] = {}  # channel -> starts, runs
        for source, started, run_id in self.db.execute(
                "SELECT source, started_at, run_id FROM run_sources WHERE status='complete' "
                "AND started_at IS NOT NULL AND started_at >= ? ORDER BY started_at",
                (since.isoformat(),)):
            starts, runs = reads.setdefault(source, ([], []))
            starts.append(datetime.fromisoformat(started))
            runs.append(run_id)
        out: list[tuple[str, float | None]] = []
        for sku, fld, changed_at in changes:
            shown_as = _PROPAGATION_FIELDS.get(fld, (fld,))
            t0 = datetime.fromisoformat(changed_at)
            for channel in sorted(on.get(sku, ())):
                mine = [fp for fp, f in fps.get((channel, sku), ())
                        if (f not in _CORE_FIELDS if shown_as == ("*",) else f in shown_as)]
                starts, runs = reads.get(channel, ([], []))
                latency = None
                for j in range(bisect.bisect_left(starts, t0), len(starts)):
                    if not any(open_after(fp, runs[j]) for fp in mine):
                        latency = (starts[j] - t0).total_seconds()
                        break
                out.append((channel, latency))
        return out

    def runs_page(self, before: int | None, limit: int) -> list[dict[str, Any]]:
        """Runs newest first, with ids below ``before`` (a cursor), each with its sources."""
        q, args = "SELECT * FROM runs", []
        if before is not None:
            q += " WHERE id < ?"
            args.append(before)
        rows = list(self.db.query(q + " ORDER BY id DESC LIMIT ?", [*args, limit]))
        for r in rows:
            r["summary"] = json.loads(r["summary"]) if r["summary"] else None
            r["sources"] = [s.to_dict() for s in self.run_sources(r["id"])]
        return rows

    def findings_page(self, filters: Mapping[str, Any], after: tuple[int, str] | None,
                      limit: int) -> list[dict[str, Any]]:
        """Findings most severe first, then by fingerprint, after the (severity rank,
        fingerprint) cursor ``after``. ``filters``: state, channel, check, severity, sku,
        outcome (exact values)."""
        rank = ("CASE severity WHEN 'critical' THEN 0 WHEN 'major' THEN 1 WHEN 'minor' "
                "THEN 2 ELSE 3 END")
        where, args = [], []
        now = datetime.now(timezone.utc).isoformat()
        cols = {"state": _SHOWN_STATE, "channel": "channel", "check": "check_name",
                "severity": "severity", "sku": "sku", "outcome": "outcome"}
        for key, value in filters.items():
            if value is not None:
                where.append(f"{cols[key]} = ?")
                args += [now, value] if key == "state" else [value]
        if after is not None:
            where.append(f"({rank} > ? OR ({rank} = ? AND fingerprint > ?))")
            args += [after[0], after[0], after[1]]
        q = f"SELECT *, {rank} AS severity_rank, {_SHOWN_STATE} AS shown_state FROM findings"
        if where:
            q += " WHERE " + " AND ".join(where)
        rows = []
        for r in self.db.query(q + " ORDER BY severity_rank, fingerprint LIMIT ?",
                               [now, *args, limit]):
            r["state"] = r.pop("shown_state")
            r["check"] = r.pop("check_name")
            r["details"] = json.loads(r["details"]) if r["details"] else {}
            rows.append(r)
        return rows

    def master_record(self, sku: str) -> dict[str, Any] | None:
        """The master record in force for ``sku`` (its stored JSON, with ``valid_from``)."""
        row = self.db.execute("SELECT data, valid_from FROM master_records WHERE sku = ?",
                              (sku,)).fetchone()
        if row is None:
            return None
        return {**json.loads(row[0]), "valid_from": row[1]}

    def sku_listings(self, sku: str) -> list[dict[str, Any]]:
        """Every listing linked to ``sku``, each with its channel, body, link and when it
        was read and last changed."""
        rows = []
        for r in self.db.query(
                "SELECT channel, key, data, fetched_at, evidence, master_sku, link_method, "
                "link_confidence, link_candidates, last_changed_run, last_seen_run, removed_run "
                "FROM listings WHERE master_sku = ? ORDER BY channel, key", [sku]):
            r["data"] = json.loads(r["data"])
            r["link_candidates"] = json.loads(r["link_candidates"]) \
                if r["link_candidates"] else []
            rows.append(r)
        return rows

    def link_suggestions(self, channel: str | None, after: tuple[str, str] | None,
                         limit: int) -> list[dict[str, Any]]:
        """Listings the linker could only suggest a master for (link method
        ``suggested``), after the (channel, key) cursor ``after``: the suggested ``sku``
        (best candidate first in ``candidates``), the linker's reason and evidence, and
        what the listing shows (``data``)."""
        where, args = ["l.link_method = 'suggested'", "l.master_sku IS NULL",
                       "l.removed_run IS NULL"], []
        if channel is not None:
            where.append("l.channel = ?")
            args.append(channel)
        if after is not None:
            where.append("(l.channel > ? OR (l.channel = ? AND l.key > ?))")
            args += [after[0], after[0], after[1]]
        rows = []
        for r in self.db.query(
                "SELECT l.channel, l.key, l.link_confidence AS confidence, l.link_candidates AS"
                " candidates, n.reason, n.evidence, l.data FROM listings l LEFT JOIN link_notes n"
                " ON n.channel = l.channel AND n.listing_key = l.key WHERE "
                + " AND ".join(where) + " ORDER BY l.channel, l.key LIMIT ?", [*args, limit]):
            r["candidates"] = json.loads(r["candidates"]) if r["candidates"] else []
            r["sku"] = r["candidates"][0] if r["candidates"] else None
            r["evidence"] = json.loads(r["evidence"]) if r["evidence"] else {}
            r["data"] = json.loads(r["data"])
            rows.append(r)
        return rows

    def listing_link(self, channel: str, key: str) -> dict[str, Any] | None:
        """A present listing's link: sku, method, confidence, candidates; None when the
        channel has no such listing."""
        rows = list(self.db.query(
            "SELECT master_sku AS sku, link_method AS method, link_confidence AS confidence, "
            "link_candidates AS candidates FROM listings WHERE channel=? AND key=? "
            "AND removed_run IS NULL", [channel, key]))
        if not rows:
            return None
        r = rows[0]
        r["candidates"] = json.loads(r["candidates"]) if r["candidates"] else []
        return r

    # ----------------------------------------------------------------- link decisions
    def link_decisions(self, channel: str) -> dict[str, dict[str, Any]]:
        """A person's decisions on one channel's links: ``confirmed`` (listing key ->
        SKU) and ``rejected`` (listing key -> set of SKUs)."""
        confirmed: dict[str, str] = {}
        rejected: dict[str, set[str]] = {}
        for key, sku, decision in self.db.execute(
                "SELECT listing_key, sku, decision FROM link_decisions WHERE channel = ?",
                [channel]):
            if decision == "confirmed":
                confirmed[key] = sku
            else:
                rejected.setdefault(key, set()).add(sku)
        return {"confirmed": confirmed, "rejected": rejected}

    def decide_link(self, channel: str, listing_key: str, sku: str, decision: str,
                    at: datetime, note: str | None = None) -> None:
        """Record that a person confirmed or rejected the pair; the listing's current link
        follows at once (confirmed: linked to ``sku``; rejected: no longer to ``sku``)."""
        if decision not in ("confirmed", "rejected"):
            raise ValueError(f"decision must be confirmed or rejected, not {decision!r}")
        stamp = at.isoformat()
        with self.db.conn as c:
            if decision == "confirmed":  # one confirmed master per listing
                c.execute("DELETE FROM link_decisions WHERE channel = ? AND listing_key = ?"
                          " AND (decision = 'confirmed' OR sku = ?)", [channel, listing_key, sku])
                c.execute("UPDATE listings SET master_sku = ?, link_method = 'confirmed',"
                          " link_confidence = 1.0, link_candidates = NULL"
                          " WHERE channel = ? AND key = ?", [sku, channel, listing_key])
                c.execute("DELETE FROM link_notes WHERE channel = ? AND listing_key = ?",
                          [channel, listing_key])
            else:
                c.execute("DELETE FROM link_decisions WHERE channel = ? AND listing_key = ?"
                          " AND sku = ?", [channel, listing_key, sku])
                row = c.execute("SELECT master_sku, link_candidates FROM listings"
                                " WHERE channel = ? AND key = ?", [channel, listing_key]
                                ).fetchone()
                if row is not None and (row[0] == sku or (
                        row[0] is None and row[1] and sku in json.loads(row[1]))):
                    c.execute("UPDATE listings SET master_sku = NULL, link_method = 'none',"
                              " link_confidence = 0.0, link_candidates = NULL"
                              " WHERE channel = ? AND key = ?", [channel, listing_key])
                    c.execute("UPDATE link_notes SET method = 'none', reason = ?,"
                              " candidates = NULL WHERE channel = ? AND listing_key = ?",
                              [f"rejected {sku} by hand", channel, listing_key])
            c.execute("INSERT INTO link_decisions (channel, listing_key, sku, decision,"
                      " decided_at, note) VALUES (?,?,?,?,?,?)",
                      [channel, listing_key, sku, decision, stamp, note])

    def decided_links(self, channel: str | None = None) -> list[LinkDecisionRecord]:
        """Every recorded decision, by channel, listing and SKU."""
        q = "SELECT channel, listing_key, sku, decision, decided_at, note FROM link_decisions"
        args = [channel] if channel else []
        if channel:
            q += " WHERE channel = ?"
        return [LinkDecisionRecord(ch, key, sku, decision, datetime.fromisoformat(at), note)
                for ch, key, sku, decision, at, note in self.db.execute(
                    q + " ORDER BY channel, listing_key, sku", args)]

    def listing_channels(self, listing_key: str) -> list[str]:
        """The channels on which a listing with this key is present."""
        return [r[0] for r in self.db.execute(
            "SELECT channel FROM listings WHERE key = ? AND removed_run IS NULL ORDER BY channel",
            [listing_key])]

    def save_link_notes(self, run_id: int, channel: str, links: Iterable[Link]) -> None:
        """Replace the channel's link notes with this run's: each listing not linked
        (suggested, unlinked or ambiguous) with its reason, score and evidence."""
        rows = [(channel, lk.listing_key, run_id, lk.method.value, lk.confidence, lk.reason,
                 json.dumps(list(lk.candidates)) if lk.candidates else None,
                 codec.dumps(lk.evidence) if lk.evidence else None) for lk in links]
        with self.db.conn as c:
            c.execute("DELETE FROM link_notes WHERE channel = ?", [channel])
            c.executemany("INSERT OR REPLACE INTO link_notes (channel, listing_key, run_id,"
                          " method, score, reason, candidates, evidence)"
                          " VALUES (?,?,?,?,?,?,?,?)", rows)

    def link_states(self, channel: str | None = None, state: str | None = None
                    ) -> list[LinkStateRecord]:
        """``links()`` with each listing's state (linked, suggested, unlinked) and, for
        listings not linked, the reason and evidence of the last run; ``state`` filters."""
        q = ("SELECT l.channel, l.key, l.master_sku, l.link_method, l.link_confidence,"
             " l.link_candidates, l.link_run, n.reason, n.evidence"
             " FROM listings l LEFT JOIN link_notes n"
             " ON n.channel = l.channel AND n.listing_key = l.key"
             " WHERE l.link_method IS NOT NULL AND l.removed_run IS NULL")
        args: list[Any] = []
        if channel:
            q += " AND l.channel = ?"
            args.append(channel)
        if state == "linked":
            q += " AND l.master_sku IS NOT NULL"
        elif state == "suggested":
            q += " AND l.master_sku IS NULL AND l.link_method = 'suggested'"
        elif state == "unlinked":
            q += " AND l.master_sku IS NULL AND l.link_method != 'suggested'"
        elif state is not None:
            raise ValueError(f"state must be linked, suggested or unlinked, not {state!r}")
        return [LinkStateRecord(
                    ch, key, "linked" if sku else (
                        "suggested" if method == "suggested" else "unlinked"),
                    sku, method, conf, tuple(json.loads(cands)) if cands else (), run,
                    reason, json.loads(evidence) if evidence else {})
                for ch, key, sku, method, conf, cands, run, reason, evidence in self.db.execute(
                    q + " ORDER BY l.channel, l.key", args)]

    # ----------------------------------------------------------------- presence holds
    def save_presence_hold(self, run_id: int, channel: str, kind: str, reason: str,
                           vanished: Sequence[str], held: Iterable[Finding],
                           checks_ran: Sequence[str]) -> None:
        """Keep what a run would have concluded about presence, had it not held it:
        the listings that vanished and the presence findings it computed."""
        with self.db.conn:
            self.db.conn.execute(
                "INSERT OR REPLACE INTO presence_holds (run_id, channel, kind, reason, vanished,"
                " findings, checks, state) VALUES (?,?,?,?,?,?,?, 'held')",
                (run_id, channel, kind, reason, json.dumps(sorted(vanished)),
                 codec.dumps([codec.finding_to_dict(f) for f in held]),
                 json.dumps(list(checks_ran))))

    def presence_holds(self, run_id: int | None = None, channel: str | None = None,
                       state: str | None = None) -> list[PresenceHoldRecord]:
        """Recorded holds, newest first."""
        where, args = [], []
        for col, val in (("run_id", run_id), ("channel", channel), ("state", state)):
            if val is not None:
                where.append(f"{col} = ?")
                args.append(val)
        q = ("SELECT run_id, channel, kind, reason, vanished, findings, checks, state,"
             " decided_run, decided_at FROM presence_holds"
             + (" WHERE " + " AND ".join(where) if where else ""))
        return [PresenceHoldRecord(run, ch, kind, reason, tuple(orjson.loads(van or "[]")),
                                   tuple(orjson.loads(fs or "[]")),
                                   tuple(orjson.loads(checks or "[]")), st, drun,
                                   parse_time(dat))
                for run, ch, kind, reason, van, fs, checks, st, drun, dat in self.db.execute(
                    q + " ORDER BY run_id DESC, channel", args)]

    def previous_run_of(self, channel: str, before_run: int) -> int | None:
        """The latest run before ``before_run`` that read ``channel``."""
        row = self.db.execute("SELECT MAX(run_id) FROM run_sources WHERE source=? AND run_id<?",
                              (channel, before_run)).fetchone()
        return row[0] if row else None

    def decide_presence_hold(self, run_id: int, channel: str, state: str, decided_run: int | None,
                             now: datetime) -> None:
        """Close a hold: ``confirmed`` by a later run, ``superseded``, or ``accepted``."""
        with self.db.conn:
            self.db.conn.execute(
                "UPDATE presence_holds SET state=?, decided_run=?, decided_at=? "
                "WHERE run_id=? AND channel=? AND state='held'",
                (state, decided_run, now.isoformat(), run_id, channel))

    def accept_presence_hold(self, run_id: int, channel: str, now: datetime) -> dict[str, int]:
        """The user accepts what run ``run_id`` held for ``channel``: its presence findings
        open, the open findings it would have resolved resolve (not seen in that run, their
        check ran, about no listing or one that vanished), the vanished listings are
        removed. Only the channel's latest run can be accepted (a later run has superseded
        an earlier one's view). Returns counts: opened, resolved, removed (listings)."""
        holds = self.presence_holds(run_id, channel)
        if not holds:
            raise StoreError(f"run {run_id} held nothing for channel {channel!r} "
                             f"(see `auditor runs`)")
        hold = holds[0]
        if hold.state != "held":
            raise StoreError(f"run {run_id}'s hold on channel {channel!r} is already "
                             f"{hold.state}")
        latest = self.db.execute("SELECT MAX(run_id) FROM run_sources WHERE source=?",
                                 (channel,)).fetchone()[0]
        if latest != run_id:
            raise StoreError(f"run {run_id} is not the latest run of channel {channel!r} "
                             f"(run {latest} is): only the latest run's hold can be accepted")
        held = [codec.finding_from_dict(d) for d in hold.findings]
        # Opened (or reopened) as observations of that run, a person having accepted them as
        # evidence; with no check named as having run, nothing is resolved here.
        counts = self.apply_findings(run_id, channel, held, SourceStatus.COMPLETE, None, (),
                                     now)
        vanished = set(hold.vanished)
        ran = set(hold.checks)
        observed = {fp for (fp,) in self.db.execute(
            "SELECT fingerprint FROM finding_observations WHERE run_id=?", (run_id,))}
        at = now.isoformat()
        c = self.db.conn
        with c:
            to_resolve = sorted(
                fp for fp, check, key in c.execute(
                    "SELECT fingerprint, check_name, listing_key FROM findings "
                    "WHERE channel=? AND state=?", (channel, OPEN))
                if fp not in observed and check in ran and (key is None or key in vanished))
            c.executemany("UPDATE findings SET state=?, resolved_at=?, resolved_run=? "
                          "WHERE fingerprint=?", [(RESOLVED, at, run_id, fp) for fp in to_resolve])
            c.executemany("INSERT INTO finding_events (fingerprint, run_id, at, event, state,"
                          " outcome, expected, actual) VALUES (?,?,?,?,?,?,?,?)",
                          [(fp, run_id, at, lifecycle.RESOLVED_EVENT, RESOLVED, None, None,
                            None) for fp in to_resolve])
        removed = self.mark_removed(run_id, channel, vanished)
        self.decide_presence_hold(run_id, channel, "accepted", None, now)
        return {"opened": counts.opened + counts.reopened, "resolved": len(to_resolve),
                "removed": removed}

    # ----------------------------------------------------------------- finding queries
    def query_findings(self, *, states: Sequence[str] = (), channels: Sequence[str] = (),
                       checks: Sequence[str] = (), severities: Sequence[str] = (),
                       sku: str | None = None, limit: int | None = None
                       ) -> list[FindingRecord]:
        """Stored findings matching every given filter (each a set of allowed values),
        most severe first; ``findings`` with repeatable filters."""
        where: list[str] = []
        args: list[Any] = []
        for col, vals in (("state", states), ("channel", channels), ("check_name", checks),
                          ("severity", severities)):
            if vals:
                where.append(f"{col} IN ({','.join('?' * len(vals))})")
                args.extend(vals)
        if sku is not None:
            where.append("sku = ?")
            args.append(sku)
        q = f"SELECT {self._FINDING_COLS} FROM findings"
        if where:
            q += " WHERE " + " AND ".join(where)
        q += (" ORDER BY CASE severity WHEN 'critical' THEN 0 WHEN 'major' THEN 1 "
              "WHEN 'minor' THEN 2 ELSE 3 END, channel, check_name, sku, field")
        if limit is not None:
            q += f" LIMIT {int(limit)}"
        return [self._finding_record(r) for r in self.db.execute(q, args)]

    def finding_values(self, column: str) -> set[str]:
        """The distinct values of ``column`` (channel, check_name, severity, state) among
        stored findings, to tell a typo from a filter that matches nothing."""
        if column not in ("channel", "check_name", "severity", "state"):
            raise ValueError(f"not a finding filter column: {column}")
        return {v for (v,) in self.db.execute(f"SELECT DISTINCT {column} FROM findings")
                if v is not None}

# Which finding fields show a master field (``*``: any attribute field).

    # ----------------------------------------------------------------- history reads
    # What the weekly report (and the per-run headline) needs: the state of every
    # channel at a point in time, rebuilt from finding events and listing runs.

    def run_at(self, at: datetime) -> int | None:
        """The id of the last run that started at or before ``at``."""
        # A run's time is its audit clock (summary "at", what --now sets, the time its
        # finding events carry), else when it started.
        row = self.db.execute(
            "SELECT MAX(id) FROM runs WHERE COALESCE(json_extract(summary, '$.at'), started_at)"
            " <= ?", (at.isoformat(),)).fetchone()
        return row[0] if row else None

    def _state_ctes(self) -> str:
        # The state of each finding at ``at`` is the state its last event gave it.
        # A listing is live at run R when it was first seen by then and not removed (the
        # row keeps only its latest removal, so a SKU with a "missing" presence finding
        # open at ``at`` is not live then either), and it is confidently linked.
        return (
            "last AS (SELECT fingerprint, MAX(id) AS id FROM finding_events "
            "WHERE at <= :at GROUP BY fingerprint), "
            "open_at AS (SELECT f.channel, f.sku, f.check_name, f.listing_key FROM last "
            "JOIN finding_events e ON e.id = last.id "
            "JOIN findings f ON f.fingerprint = last.fingerprint "
            "WHERE e.state != 'resolved' AND e.outcome IN ('failed', 'warn') "
            "AND f.sku IS NOT NULL), "
            "missing AS (SELECT DISTINCT channel, sku FROM open_at "
            "WHERE check_name = 'presence' AND listing_key IS NULL), "
            "bad AS (SELECT DISTINCT channel, sku FROM open_at "
            "WHERE NOT (check_name = 'presence' AND listing_key IS NULL)), "
            "live AS (SELECT DISTINCT l.channel, l.master_sku AS sku FROM listings l "
            "WHERE l.master_sku IS NOT NULL AND l.link_method IN "
            "('sku','gtin','mpn','url','fuzzy','confirmed') "
            "AND l.first_seen_run <= :run AND (l.removed_run IS NULL OR l.removed_run > :run) "
            "AND NOT EXISTS (SELECT 1 FROM missing m WHERE m.channel = l.channel "
            "AND m.sku = l.master_sku))")

    def channel_health(self, at: datetime) -> dict[str, tuple[int, int]]:
        """Per channel at ``at``: (live SKUs, live SKUs with no open failed or warn
        finding). Empty when no run had started by then."""
        run = self.run_at(at)
        if run is None:
            return {}
        q = (f"WITH {self._state_ctes()} "
             "SELECT live.channel, COUNT(*), SUM(bad.sku IS NULL) FROM live "
             "LEFT JOIN bad ON bad.channel = live.channel AND bad.sku = live.sku "
             "GROUP BY live.channel")
        return {ch: (n, int(ok or 0)) for ch, n, ok in
                self.db.execute(q, {"run": run, "at": at.isoformat()})}

    def channel_skus(self, at: datetime) -> dict[str, tuple[set[str], set[str]]]:
        """Per channel at ``at``: (live SKUs, live SKUs with an open failed or warn
        finding), for readiness against the master's SKUs in the channel's scope."""
        run = self.run_at(at)
        out: dict[str, tuple[set[str], set[str]]] = {}
        if run is None:
            return out
        q = (f"WITH {self._state_ctes()} "
             "SELECT live.channel, live.sku, bad.sku IS NOT NULL FROM live "
             "LEFT JOIN bad ON bad.channel = live.channel AND bad.sku = live.sku")
        for ch, sku, is_bad in self.db.execute(q, {"run": run, "at": at.isoformat()}):
            live, bad = out.setdefault(ch, (set(), set()))
            live.add(sku)
            if is_bad:
                bad.add(sku)
        return out

    def findings_at(self, at: datetime) -> list[OpenFinding]:
        """Findings not resolved at ``at`` (failed or warn then), with the values and
        outcome they had then and their text as last seen."""
        q = ("WITH last AS (SELECT fingerprint, MAX(id) AS id FROM finding_events "
             "WHERE at <= ? GROUP BY fingerprint), "
             "opened AS (SELECT fingerprint, MAX(at) AS since FROM finding_events "
             "WHERE at <= ? AND event IN ('opened', 'reopened') GROUP BY fingerprint) "
             "SELECT f.fingerprint, f.check_name, f.channel, f.sku, f.listing_key, f.field,"
             " e.outcome, f.severity, e.expected, e.actual, f.message, f.details, opened.since "
             "FROM last JOIN finding_events e ON e.id = last.id "
             "JOIN findings f ON f.fingerprint = last.fingerprint "
             "LEFT JOIN opened ON opened.fingerprint = last.fingerprint "
             "WHERE e.state != 'resolved' AND e.outcome IN ('failed', 'warn') "
             "ORDER BY f.channel, f.check_name, f.sku, f.field")
        t = at.isoformat()
        return [OpenFinding(fp, chk, ch, sku, key, fld, out, sev, exp, act, msg,
                            json.loads(det) if det else {}, parse_time(since))
                for fp, chk, ch, sku, key, fld, out, sev, exp, act, msg, det, since
                in self.db.execute(q, [t, t])]

    def finding_activity(self, start: datetime, end: datetime) -> list[FindingActivity]:
        """Every opened, reopened and resolved event in [start, end), with its channel,
        check and (for a resolution) when the finding had last opened."""
        q = ("SELECT e.event, e.at, f.channel, f.check_name, f.sku, f.field, f.severity,"
             " (SELECT MAX(o.at) FROM finding_events o"
             "  WHERE o.fingerprint = e.fingerprint AND o.id < e.id"
             "  AND o.event IN ('opened', 'reopened')) "
             "FROM finding_events e JOIN findings f ON f.fingerprint = e.fingerprint "
             "WHERE e.at >= ? AND e.at < ? AND e.event IN ('opened', 'reopened', 'resolved') "
             "AND (e.outcome IS NULL OR e.outcome != 'not_evaluated') ORDER BY e.id")
        return [FindingActivity(ev, datetime.fromisoformat(at), ch, chk, sku, fld, sev,
                                parse_time(opened))
                for ev, at, ch, chk, sku, fld, sev, opened
                in self.db.execute(q, [start.isoformat(), end.isoformat()])]

    def runs_between(self, start: datetime, end: datetime) -> list[RunRecord]:
        """Runs whose audit clock (else start) falls in [start, end), oldest first."""
        clock = "COALESCE(json_extract(summary, '$.at'), started_at)"
        return [RunRecord(i, datetime.fromisoformat(started), parse_time(finished), status,
                          snap, orjson.loads(summary) if summary else {})
                for i, started, finished, status, snap, summary in self.db.execute(
                    "SELECT id, started_at, finished_at, status, master_snapshot_id, summary"
                    f" FROM runs WHERE {clock} >= ? AND {clock} < ? ORDER BY id",
                    [start.isoformat(), end.isoformat()])]

    def listing_keys(self, channel: str, skus: Iterable[str]) -> dict[str, list[str]]:
        """The present listing keys of ``channel`` linked to each of ``skus``."""
        out: dict[str, list[str]] = {}
        skus = list(skus)
        for i in range(0, len(skus), 500):
            part = skus[i:i + 500]
            marks = ",".join("?" * len(part))
            for sku, key in self.db.execute(
                    f"SELECT master_sku, key FROM listings WHERE channel = ? AND removed_run IS "
                    f"NULL AND master_sku IN ({marks}) ORDER BY key", [channel, *part]):
                out.setdefault(sku, []).append(key)
        return out

    def sales_units(self, names: Sequence[str]) -> dict[str, float]:
        """Units sold per SKU, summed over the present listings (POS exports) that carry
        one of the attributes ``names`` (e.g. a till's ``units_sold`` column)."""
        out: dict[str, float] = {}
        for name in names:
            path = "$.attributes." + json.dumps(name)
            for sku, v in self.db.execute(
                    "SELECT master_sku, json_extract(data, ?) FROM listings WHERE master_sku "
                    "IS NOT NULL AND removed_run IS NULL AND json_extract(data, ?) IS NOT NULL",
                    (path, path)):
                try:
                    out[sku] = out.get(sku, 0.0) + float(str(v).replace(",", "."))
                except ValueError:
                    continue
        return out

    def run_finding_changes(self, run_id: int) -> list[RunFindingChange]:
        """The findings a run opened, reopened or resolved, with what they are about."""
        return [RunFindingChange(*row) for row in self.db.execute(
            "SELECT e.event, f.channel, f.check_name, f.sku, f.listing_key, f.field,"
            " f.severity, e.outcome, f.message FROM finding_events e"
            " JOIN findings f ON f.fingerprint = e.fingerprint WHERE e.run_id = ?"
            " AND e.event IN ('opened', 'reopened', 'resolved')"
            " AND (e.outcome IS NULL OR e.outcome != 'not_evaluated')"
            " ORDER BY f.channel, e.event, f.check_name, f.sku", [run_id])]

    # ----------------------------------------------------------------- web UI reads
    _SORTS = {
        "impact": ("CASE f.severity WHEN 'critical' THEN 0 WHEN 'major' THEN 1 "
                   "WHEN 'minor' THEN 2 ELSE 3 END, f.first_seen_at, f.fingerprint"),
        "age": "f.first_seen_at, f.fingerprint",
        "newest": "f.last_seen_at DESC, f.fingerprint",
        "sku": "f.sku, f.channel, f.check_name, f.fingerprint",
    }

    def search_findings(self, channels: Sequence[str] = (), checks: Sequence[str] = (),
                        severities: Sequence[str] = (), states: Sequence[str] = (),
                        text: str | None = None, sort: str = "impact", limit: int = 50,
                        offset: int = 0) -> FindingPage:
        """Findings matching every given filter (each a set of allowed values) and, with
        ``text``, whose SKU, listing key or master title contains it; sorted by impact
        (severity, then age), age, newest or SKU."""
        where: list[str] = []
        args: list[Any] = []
        for col, vals in (("f.channel", channels), ("f.check_name", checks),
                          ("f.severity", severities)):
            if vals:
                where.append(f"{col} IN ({','.join('?' * len(vals))})")
                args.extend(vals)
        if states:  # the state people see: open, acknowledged, snoozed, resolved ...
            where.append(f"{_SHOWN_STATE} IN ({','.join('?' * len(states))})")
            args += [datetime.now(timezone.utc).isoformat(), *states]
        if text:
            like = "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            where.append("(f.sku LIKE ? ESCAPE '\\' OR f.listing_key LIKE ? ESCAPE '\\' OR "
                         "json_extract(m.data, '$.title') LIKE ? ESCAPE '\\')")
            args += [like, like, like]
        cond = (" WHERE " + " AND ".join(where)) if where else ""
        base = "FROM findings f LEFT JOIN master_records m ON m.sku = f.sku" + cond
        total = self.db.execute(f"SELECT count(*) {base}", args).fetchone()[0]
        cols = ", ".join("f." + c.strip() for c in self._FINDING_COLS.split(","))
        rows = self.db.execute(
            f"SELECT {cols} {base} ORDER BY {self._SORTS.get(sort, self._SORTS['impact'])} "
            f"LIMIT ? OFFSET ?", [*args, int(limit), int(offset)]).fetchall()
        return FindingPage(tuple(self._finding_record(r) for r in rows), total)

    def finding_record(self, fingerprint: str) -> FindingRecord | None:
        """One finding by fingerprint, as a record."""
        row = self.db.execute(f"SELECT {self._FINDING_COLS} FROM findings WHERE fingerprint=?",
                              [fingerprint]).fetchone()
        return self._finding_record(row) if row else None

    def master_for(self, sku: str) -> MasterRecord | None:
        """The master record in force for ``sku``."""
        row = self.db.execute("SELECT data FROM master_records WHERE sku = ?", [sku]).fetchone()
        return codec.master_from_dict(orjson.loads(row[0])) if row else None

    def product_listings(self, sku: str) -> list[ProductListing]:
        """Every channel's listings linked to ``sku`` (removed ones too), with when each
        was first seen and last changed (its runs' times)."""
        q = ("SELECT l.channel, l.key, l.data, l.fetched_at, l.evidence, l.link_method,"
             " l.link_confidence, l.removed_run IS NOT NULL,"
             " COALESCE(json_extract(r1.summary, '$.at'), r1.started_at),"
             " COALESCE(json_extract(r2.summary, '$.at'), r2.started_at)"
             " FROM listings l LEFT JOIN runs r1 ON r1.id = l.first_seen_run"
             " LEFT JOIN runs r2 ON r2.id = COALESCE(l.last_changed_run, l.first_seen_run)"
             " WHERE l.master_sku = ? ORDER BY l.channel, l.key")
        return [ProductListing(ch, key, codec.listing_from_row(d, fetched, ev), method, conf,
                               bool(removed), parse_time(first), parse_time(changed))
                for ch, key, d, fetched, ev, method, conf, removed, first, changed
                in self.db.execute(q, [sku])]

    def listing(self, channel: str, key: str) -> Listing | None:
        """One listing's latest version, removed or not."""
        row = self.db.execute("SELECT data, fetched_at, evidence FROM listings WHERE channel = ?"
                              " AND key = ?", [channel, key]).fetchone()
        return codec.listing_from_row(*row) if row else None

    def finding_channels(self) -> list[str]:
        """The channels that have findings."""
        return [c for (c,) in self.db.execute("SELECT DISTINCT channel FROM findings ORDER BY 1")]

    @contextlib.contextmanager
    def delivery_lock(self) -> Iterator[bool]:
        """Yields True when this process may deliver the outbox: a lock file beside the
        store (``<store>.alerts.lock``, released by the kernel when the process dies)."""
        if self.path == MEMORY:
            yield True
            return
        fd = os.open(str(self.path) + ".alerts.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            yield True
        finally:
            os.close(fd)

    def present_keys(self, channel: str) -> set[str]:
        return {k for (k,) in self.db.execute(
            "SELECT key FROM listings WHERE channel = ? AND removed_run IS NULL", (channel,))}

    def earlier_link_notes(self, channel: str) -> list[tuple]:
        """The channel's link notes whose listing is unchanged since the note's run."""
        return [tuple(r) for r in self.db.execute(
            "SELECT n.listing_key, n.run_id, l.hash, n.method, n.score, n.reason,"
            " n.candidates, n.evidence FROM link_notes n JOIN listings l"
            " ON l.channel = n.channel AND l.key = n.listing_key"
            " WHERE n.channel = ? AND l.last_changed_run <= n.run_id", (channel,))]

    # ----------------------------------------------------------------- alerts: incremental
    # What an incremental alert evaluation (auditor.alerts.engine) reads: the findings
    # that changed since the previous evaluation, and the firing findings of the groups
    # (channel, check, field) they belong to. The conditions ``state != 'resolved' AND
    # outcome != 'not_evaluated'`` are written out: they are the partial index's
    # (findings_alert, migration 9), which SQLite only uses when it can see them.
    _ALERTABLE = "state != 'resolved' AND outcome != 'not_evaluated'"

    def alert_positions(self, previous: Mapping[str, Any] | None) -> dict[str, Any]:
        """Where the next incremental evaluation resumes (``events``, ``master``: every
        finding event and master change up to these ids has been evaluated): the newest
        this read sees. SQLite writes one transaction at a time, so no lower id can be
        committed later. ``previous``: the positions the previous evaluation returned."""
        c = self.db.conn
        return {"events": c.execute("SELECT max(id) FROM finding_events").fetchone()[0] or 0,
                "master": c.execute("SELECT max(id) FROM master_changes").fetchone()[0] or 0}

    def alert_touched(self, events_after: int, master_after: int, snoozed_after: datetime,
                      limit: int) -> dict[str, tuple[str, str, str, str | None, bool]] | None:
        """The findings an incremental evaluation must evaluate again: those with a
        finding event after ``events_after``, those pending, those snoozed until after
        ``snoozed_after`` (the previous evaluation), and those of SKUs with a master
        change after ``master_after``: fingerprint -> (channel, check, field, stored
        alert state, can alert). None when more than ``limit`` events are new (a full
        evaluation is cheaper)."""
        c = self.db.conn
        if c.execute("SELECT count(*) FROM finding_events WHERE id > ?",
                     (events_after,)).fetchone()[0] > limit:
            return None
        fps = {fp for (fp,) in c.execute(
            "SELECT fingerprint FROM finding_events WHERE id > ?", (events_after,))}
        fps.update(fp for (fp,) in c.execute(
            f"SELECT fingerprint FROM findings WHERE {self._ALERTABLE} AND alert_state = ?",
            ("pending",)))
        for fp, until in c.execute("SELECT fingerprint, snoozed_until FROM findings"
                                   " WHERE snoozed_until IS NOT NULL"):
            if datetime.fromisoformat(until) > snoozed_after:
                fps.add(fp)
        skus = [s for (s,) in c.execute(
            "SELECT DISTINCT sku FROM master_changes WHERE id > ?", (master_after,))]
        for i in range(0, len(skus), 500):
            chunk = skus[i:i + 500]
            fps.update(fp for (fp,) in c.execute(
                f"SELECT fingerprint FROM findings WHERE {self._ALERTABLE} AND sku IN "
                f"({','.join('?' * len(chunk))})", chunk))
        out: dict[str, tuple[str, str, str, str | None, bool]] = {}
        wanted = sorted(fps)
        for i in range(0, len(wanted), 500):
            chunk = wanted[i:i + 500]
            for fp, ch, check, fld, ast, ok in c.execute(
                    "SELECT fingerprint, channel, check_name, field, alert_state,"
                    f" {self._ALERTABLE} FROM findings WHERE fingerprint IN"
                    f" ({','.join('?' * len(chunk))})", chunk):
                out[fp] = (ch, check, fld, ast, bool(ok))
        return out

    def alert_rows(self, fingerprints: Iterable[str]) -> list[dict[str, Any]]:
        """``alert_candidates`` of these fingerprints only (those that can alert), in
        fingerprint order."""
        fps = sorted(set(fingerprints))
        rows: list[dict[str, Any]] = []
        if not fps:
            return rows
        episodes = self.finding_episodes(fps)
        for i in range(0, len(fps), 500):
            chunk = fps[i:i + 500]
            cur = self.db.execute(f"SELECT * FROM findings WHERE {self._ALERTABLE} AND"
                                  f" fingerprint IN ({','.join('?' * len(chunk))})", chunk)
            cols = ["check" if d[0] == "check_name" else d[0] for d in cur.description]
            for values in cur:
                r = dict(zip(cols, values, strict=True))
                r["details"] = orjson.loads(r["details"]) if r["details"] else {}
                rows.append(with_episode(r, episodes))
        rows.sort(key=lambda r: r["fingerprint"])
        return rows

    def alert_firing(self, groups: Iterable[tuple[str, str, str]]) -> list[str]:
        """Fingerprints of the findings last evaluated firing, of these (channel, check,
        field)."""
        out: list[str] = []
        for ch, check, fld in groups:
            out += [fp for (fp,) in self.db.execute(
                f"SELECT fingerprint FROM findings WHERE {self._ALERTABLE} AND alert_state = ?"
                " AND channel = ? AND check_name = ? AND field = ?",
                ("firing", ch, check, fld))]
        return out

    def alert_state_counts(self) -> dict[str | None, int]:
        """How many findings that can alert are in each stored alert state."""
        return {st: n for st, n in self.db.execute(
            f"SELECT alert_state, count(*) FROM findings WHERE {self._ALERTABLE}"
            " GROUP BY alert_state")}


_CORE_FIELDS = frozenset({"title", "price", "sale_price", "availability", "gtin", "image",
                          "additional_images", "listing", "description", "brand", "mpn", "url"})
_PROPAGATION_FIELDS: dict[str, tuple[str, ...]] = {
    "attributes": ("*",), "images": ("image", "additional_images"),
    "quantity": ("availability",), "price": ("price", "sale_price"),
    "sale_price": ("price", "sale_price"), "sale_start": ("price", "sale_price"),
    "sale_end": ("price", "sale_price"), "prices": ("price", "sale_price"),
    "sale_prices": ("price", "sale_price"),
}


def _distinct_first(c: sqlite3.Connection, table: str, column: str,
                    where: str = "1") -> list[str]:
    """The distinct values of the first column of a table's index (``where``: of a partial
    index, its condition), ascending, looked up one after another in the index (a few
    channels among millions of rows)."""
    return [v for (v,) in c.execute(
        f"WITH RECURSIVE d(v) AS (SELECT min({column}) FROM {table} WHERE {where} UNION ALL"
        f" SELECT (SELECT min({column}) FROM {table} WHERE {where} AND {column} > d.v) FROM d"
        f" WHERE d.v IS NOT NULL) SELECT v FROM d WHERE v IS NOT NULL")]


def _cell(v: Any) -> str | None:
    if v is None:
        return None
    return v if isinstance(v, str) else codec.dumps(v)
