"""The PostgreSQL store: ``auditor.storage.interface.Store`` on a PostgreSQL database.

Open it with ``auditor.storage.open_store("postgresql://user@host:5432/dbname")`` (the
password is best left to libpq's ``PGPASSWORD`` or ``~/.pgpass``; one in the URL is never
shown: errors and logs print ``describe(url)``). Driver: psycopg 3.

What is PostgreSQL's own stays here:

- **Schema versions**: a ``schema_version`` table, one row per applied migration
  (``MIGRATIONS``); each migration runs in its own transaction under a transaction-level
  advisory lock, so concurrent migrators take turns and the second finds the work done.
- **Partitions**: ``listings``, ``listing_versions``, ``findings``, ``finding_events`` and
  ``finding_observations`` are ``PARTITION BY LIST (channel)``; a channel's partitions are
  created the first time the channel is written (``_ensure_channel``, serialized by an
  advisory lock per channel), so one channel's reads, writes and vacuum touch only its own.
- **Writes**: a repeat read of an unchanged listing costs a hash comparison in this
  process and no statement at all (the channel's ``(key, hash, evidence, link)`` rows are
  read once, by the primary key's partition); new, changed and moved rows go in batches of
  multi-row upserts (``executemany``, which psycopg sends in pipeline mode: one round trip
  per batch, not per row).
- **Concurrent writers**: several worker processes write at once. Row locks and ``ON
  CONFLICT`` keep single-row writes whole; read-modify-write paths take a lock first:
  ``apply_findings`` a transaction-level advisory lock per channel (read, decide, write in
  one transaction), ``save_listings`` a session-level one per channel for the whole read,
  a run's summary ``SELECT ... FOR UPDATE``.
- **Run lock**: a session advisory lock (``pg_try_advisory_lock``) held by a connection
  of its own, instead of SQLite's ``flock``: it goes with the holder's connection when its
  process dies. The holder is named in ``application_name`` (pid and start time), which
  ``LockedError`` quotes.

Times the records return as ``datetime`` are ``timestamptz``; times the caches hand
around as text (HTTP validators, image URLs, master image slots, a listing's read time)
stay text, as the SQLite store keeps them. Identifiers (channel, key, SKU, URL) are
``COLLATE "C"``: byte order, as SQLite sorts, and prefix ranges on URLs use the index.
"""

from __future__ import annotations

import bisect
import contextlib
import functools
import hashlib
import json
import os
import re
from datetime import datetime, timezone
from operator import itemgetter
from typing import Any, Iterable, Iterator, Mapping, Sequence

import orjson
import psycopg
from psycopg import sql
from psycopg.rows import dict_row
from psycopg.types.datetime import DatetimeBinaryDumper
from psycopg.types.string import StrBinaryDumper, StrDumperUnknown

from auditor import codec
from auditor.compact import CompactMaster, body_of
from auditor import lifecycle
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


def digest(body: bytes) -> str:
    """The stored hash of a record's body: the same as the SQLite store's."""
    return hashlib.blake2b(body, digest_size=10).hexdigest()


def describe(url: str) -> str:
    from auditor.storage import describe as _describe

    return _describe(url)


# Advisory lock keys: (class, hashtext(schema [/ channel])). The class says what is locked;
# the schema lets several stores (brands) share one database without sharing locks.
LOCK_RUN, LOCK_MIGRATE, LOCK_PARTITION, LOCK_LISTINGS, LOCK_FINDINGS, LOCK_MASTER = (
    0x41554400 + i for i in range(6))
LOCK_ALERTS = 0x41554406  # one alert evaluation recorded at a time
LOCK_DELIVERY = 0x41554407  # one process delivering the outbox

C = 'COLLATE "C"'

# --------------------------------------------------------------------------- schema

_M1 = f"""
CREATE TABLE master_snapshots (
    id BIGSERIAL PRIMARY KEY, imported_at TIMESTAMPTZ NOT NULL, source TEXT NOT NULL,
    sha256 TEXT, records INTEGER, added INTEGER, changed INTEGER, removed INTEGER,
    skipped_rows INTEGER DEFAULT 0);
-- the master in force: one row per SKU
CREATE TABLE master_records (
    sku TEXT {C} PRIMARY KEY, hash TEXT NOT NULL, data TEXT NOT NULL,
    snapshot_id BIGINT NOT NULL, valid_from TIMESTAMPTZ NOT NULL);
-- earlier versions of a record, closed at valid_to
CREATE TABLE master_history (
    id BIGSERIAL PRIMARY KEY, sku TEXT {C} NOT NULL, hash TEXT NOT NULL, data TEXT NOT NULL,
    valid_from TIMESTAMPTZ NOT NULL, valid_to TIMESTAMPTZ NOT NULL,
    snapshot_id BIGINT NOT NULL);
CREATE INDEX master_history_sku ON master_history (sku);
CREATE TABLE master_changes (
    id BIGSERIAL PRIMARY KEY, snapshot_id BIGINT NOT NULL, sku TEXT {C} NOT NULL,
    field TEXT {C} NOT NULL, old TEXT, new TEXT, changed_at TIMESTAMPTZ NOT NULL);
CREATE INDEX master_changes_sku ON master_changes (sku, field);
-- which content each master image slot held, and until when (slot 0 = primary)
CREATE TABLE master_assets (
    id BIGSERIAL PRIMARY KEY, sku TEXT {C} NOT NULL, slot INTEGER NOT NULL, ref TEXT NOT NULL,
    sha256 TEXT NOT NULL, valid_from TEXT NOT NULL, valid_to TEXT);
CREATE INDEX master_assets_sku ON master_assets (sku, valid_to);

CREATE TABLE runs (
    id BIGSERIAL PRIMARY KEY, started_at TIMESTAMPTZ NOT NULL, finished_at TIMESTAMPTZ,
    status TEXT, master_snapshot_id BIGINT, summary TEXT);
CREATE INDEX runs_running ON runs (id) WHERE status = 'running';
CREATE TABLE run_sources (
    run_id BIGINT NOT NULL, source TEXT {C} NOT NULL, status TEXT NOT NULL,
    listings INTEGER, errors INTEGER, message TEXT, started_at TIMESTAMPTZ,
    finished_at TIMESTAMPTZ, PRIMARY KEY (run_id, source));
CREATE INDEX run_sources_source ON run_sources (source, run_id);
CREATE TABLE run_errors (
    id BIGSERIAL PRIMARY KEY, run_id BIGINT NOT NULL, source TEXT {C} NOT NULL,
    location TEXT, reason TEXT NOT NULL);
CREATE INDEX run_errors_run ON run_errors (run_id, source, id);

-- the latest observation of each listing, with its link to the master
CREATE TABLE listings (
    channel TEXT {C} NOT NULL, key TEXT {C} NOT NULL, hash TEXT NOT NULL, data TEXT NOT NULL,
    first_seen_run BIGINT, last_seen_run BIGINT, last_changed_run BIGINT, removed_run BIGINT,
    fetched_at TEXT, evidence TEXT, master_sku TEXT {C}, link_method TEXT,
    link_confidence DOUBLE PRECISION, link_candidates TEXT, link_run BIGINT,
    PRIMARY KEY (channel, key)) PARTITION BY LIST (channel);
CREATE INDEX listings_master_sku ON listings (master_sku);
-- earlier versions of a listing: first seen in run_id, replaced in until_run
CREATE TABLE listing_versions (
    id BIGSERIAL, channel TEXT {C} NOT NULL, key TEXT {C} NOT NULL, run_id BIGINT NOT NULL,
    hash TEXT NOT NULL, data TEXT NOT NULL, until_run BIGINT NOT NULL, fetched_at TEXT,
    evidence TEXT, PRIMARY KEY (channel, id)) PARTITION BY LIST (channel);
CREATE INDEX listing_versions_key ON listing_versions (channel, key);
CREATE VIEW links AS SELECT channel, key AS listing_key, master_sku AS sku,
    link_method AS method, link_confidence AS confidence, link_candidates AS candidates,
    link_run AS run_id FROM listings WHERE link_method IS NOT NULL;

CREATE TABLE findings (
    channel TEXT {C} NOT NULL, fingerprint TEXT {C} NOT NULL, check_name TEXT {C} NOT NULL,
    sku TEXT {C}, listing_key TEXT {C}, field TEXT {C} NOT NULL, outcome TEXT NOT NULL,
    severity TEXT NOT NULL, expected TEXT, actual TEXT, score DOUBLE PRECISION, message TEXT,
    details TEXT, state TEXT NOT NULL, first_seen_at TIMESTAMPTZ NOT NULL,
    last_seen_at TIMESTAMPTZ NOT NULL, first_run BIGINT, last_run BIGINT,
    resolved_at TIMESTAMPTZ, resolved_run BIGINT,
    PRIMARY KEY (channel, fingerprint)) PARTITION BY LIST (channel);
CREATE INDEX findings_state ON findings (state, channel, check_name);
CREATE INDEX findings_sku ON findings (sku);
CREATE INDEX findings_fingerprint ON findings (fingerprint);
-- every state change: opened, changed, resolved, reopened
CREATE TABLE finding_events (
    id BIGSERIAL, channel TEXT {C} NOT NULL, fingerprint TEXT {C} NOT NULL, run_id BIGINT,
    at TIMESTAMPTZ NOT NULL, event TEXT NOT NULL, state TEXT NOT NULL, outcome TEXT,
    expected TEXT, actual TEXT, PRIMARY KEY (channel, id)) PARTITION BY LIST (channel);
CREATE INDEX finding_events_fp ON finding_events (fingerprint);
CREATE INDEX finding_events_run ON finding_events (run_id);
-- the non-passed outcome of each finding in each run (confirmation needs it)
CREATE TABLE finding_observations (
    channel TEXT {C} NOT NULL, run_id BIGINT NOT NULL, fingerprint TEXT {C} NOT NULL,
    outcome TEXT NOT NULL, PRIMARY KEY (channel, run_id, fingerprint))
    PARTITION BY LIST (channel);

CREATE TABLE scores (
    run_id BIGINT NOT NULL, channel TEXT {C} NOT NULL, check_name TEXT {C} NOT NULL,
    passed INTEGER, failed INTEGER, warn INTEGER, not_evaluated INTEGER,
    score DOUBLE PRECISION, PRIMARY KEY (run_id, channel, check_name));

-- alerts to send, written in the same transaction as the findings (phase 2)
CREATE TABLE outbox (
    id BIGSERIAL PRIMARY KEY, created_at TIMESTAMPTZ NOT NULL, kind TEXT NOT NULL,
    fingerprint TEXT, payload TEXT NOT NULL, status TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0, next_attempt_at TIMESTAMPTZ, last_error TEXT);

-- conditional GET state per URL, and the last extraction for a 304
CREATE TABLE http_cache (
    url TEXT {C} PRIMARY KEY, etag TEXT, last_modified TEXT, fetched_at TEXT,
    status INTEGER, sha256 TEXT, content_type TEXT, extraction TEXT);
-- one perceptual signature per distinct image content (see auditor.images)
CREATE TABLE image_signatures (
    sha256 TEXT {C} PRIMARY KEY, version INTEGER NOT NULL, data TEXT NOT NULL,
    created_at TEXT NOT NULL);
-- the last fetch of each image URL
CREATE TABLE image_urls (
    url TEXT {C} PRIMARY KEY, etag TEXT, last_modified TEXT, sha256 TEXT, error TEXT,
    fetched_at TEXT NOT NULL);
"""

# The same schema as the SQLite store's four migrations, as one (a PostgreSQL store has
# no older databases to carry forward). A later change is appended as _M2 ...
_M2 = f"""
-- link decisions a person made (kept across runs) and the last run's notes on listings
-- not linked; presence a run held back for a channel (auditor.holds); a position for
-- each source result (the metrics collector reads failed reads after a position)
CREATE TABLE link_decisions (
    channel TEXT {C} NOT NULL, listing_key TEXT {C} NOT NULL, sku TEXT {C} NOT NULL,
    decision TEXT NOT NULL CHECK (decision IN ('confirmed', 'rejected')),
    decided_at TEXT NOT NULL, note TEXT, PRIMARY KEY (channel, listing_key, sku));
CREATE TABLE link_notes (
    channel TEXT {C} NOT NULL, listing_key TEXT {C} NOT NULL, run_id BIGINT, method TEXT,
    score DOUBLE PRECISION, reason TEXT, candidates TEXT, evidence TEXT,
    PRIMARY KEY (channel, listing_key));
CREATE TABLE presence_holds (
    run_id BIGINT NOT NULL, channel TEXT {C} NOT NULL, kind TEXT NOT NULL,
    reason TEXT NOT NULL, vanished TEXT, findings TEXT, checks TEXT,
    state TEXT NOT NULL DEFAULT 'held', decided_run BIGINT, decided_at TEXT,
    PRIMARY KEY (run_id, channel));
ALTER TABLE run_sources ADD COLUMN seq BIGSERIAL;
CREATE INDEX run_sources_seq ON run_sources (seq);
CREATE INDEX listings_key ON listings (key);
"""

# The SQLite store's migration 7: alerts (acknowledgements and snoozes on findings, who did
# what in the event log, silences, notification groups, the outbox's receiver and
# idempotency key, the propagation latency of master changes per channel).
_M3 = f"""
ALTER TABLE findings ADD COLUMN ack_by TEXT, ADD COLUMN ack_at TIMESTAMPTZ,
    ADD COLUMN ack_note TEXT, ADD COLUMN snoozed_until TIMESTAMPTZ, ADD COLUMN snoozed_by TEXT,
    ADD COLUMN alert_state TEXT, ADD COLUMN alert_reason TEXT;
ALTER TABLE finding_events ADD COLUMN actor TEXT, ADD COLUMN note TEXT;
CREATE TABLE silences (
    id BIGSERIAL PRIMARY KEY, matchers TEXT NOT NULL, starts_at TIMESTAMPTZ NOT NULL,
    ends_at TIMESTAMPTZ NOT NULL, created_by TEXT, comment TEXT,
    created_at TIMESTAMPTZ NOT NULL);
-- what each receiver was last told about each group of alerts
CREATE TABLE alert_groups (
    receiver TEXT {C} NOT NULL, group_key TEXT {C} NOT NULL, labels TEXT NOT NULL,
    members TEXT NOT NULL, seq INTEGER NOT NULL DEFAULT 0, last_sent_at TEXT,
    PRIMARY KEY (receiver, group_key));
ALTER TABLE outbox ADD COLUMN receiver TEXT, ADD COLUMN idempotency_key TEXT,
    ADD COLUMN sent_at TIMESTAMPTZ;
CREATE UNIQUE INDEX outbox_key ON outbox (idempotency_key);
CREATE INDEX outbox_status ON outbox (status, next_attempt_at);
-- each master change per channel: when the channel first showed it
CREATE TABLE propagation (
    id BIGSERIAL PRIMARY KEY, change_id BIGINT NOT NULL, channel TEXT {C} NOT NULL,
    sku TEXT {C} NOT NULL, field TEXT {C} NOT NULL, check_name TEXT {C} NOT NULL,
    changed_at TIMESTAMPTZ NOT NULL, snapshot_id BIGINT NOT NULL, caught_up_at TIMESTAMPTZ,
    caught_up_run BIGINT, latency_seconds DOUBLE PRECISION, checked_run BIGINT,
    UNIQUE (change_id, channel, check_name));
CREATE INDEX propagation_pending ON propagation (channel, caught_up_at);
-- bookkeeping of the alert evaluation: cursors and what the last evaluation saw
CREATE TABLE alert_cursors (name TEXT {C} PRIMARY KEY, value TEXT NOT NULL);
CREATE INDEX finding_events_episode ON finding_events (fingerprint, id)
    WHERE event IN ('opened', 'reopened');
"""

# The SQLite store's migration 8: only the propagation rows still pending are indexed
# (nearly every row is written caught up; only the pending ones are looked up again).
_M4 = """
DROP INDEX propagation_pending;
CREATE INDEX propagation_pending ON propagation (channel) WHERE caught_up_at IS NULL;
"""

# The SQLite store's migration 9: the incremental alert evaluation's lookups (and the
# finding events after an id, which SQLite finds by its rowid).
_M5 = """
CREATE INDEX findings_alert ON findings (alert_state, channel, check_name, field)
    WHERE state != 'resolved' AND outcome != 'not_evaluated';
CREATE INDEX findings_snoozed ON findings (snoozed_until) WHERE snoozed_until IS NOT NULL;
-- the events after an id (their key is (channel, id)): a BRIN index, as they are appended
CREATE INDEX finding_events_id ON finding_events USING brin (id);
"""

MIGRATIONS: list[str] = [_M1, _M2, _M3, _M4, _M5]
SCHEMA_VERSION = len(MIGRATIONS)
# Columns of the partitioned tables that no query filters, joins or sorts on: their
# partitions collect no statistics for them (SET STATISTICS 0). ANALYZE (autovacuum's,
# as a first audit fills a channel's partitions) otherwise sorts a sample of each
# column under the database's collation: the listings' JSON bodies were most of its CPU.
_NO_STATISTICS = {"listings": ("data", "link_candidates"),
                  "listing_versions": ("data",),
                  "findings": ("expected", "actual", "message", "details")}
# Tables partitioned by channel (a partition per channel, made on first use).
PARTITIONED = ("listings", "listing_versions", "findings", "finding_events",
               "finding_observations")
TABLES = ("master_snapshots", "master_records", "master_history", "master_changes",
          "master_assets", "runs", "run_sources", "run_errors", *PARTITIONED, "scores",
          "outbox", "http_cache", "image_signatures", "image_urls", "link_decisions",
          "link_notes", "presence_holds", "silences", "alert_groups", "propagation",
          "alert_cursors", "schema_version")


def _check_version(current: int, known: int, store: str = "") -> None:
    if current > known:
        raise StoreUnavailable(f"the store {store or '(PostgreSQL)'}: schema version {current} "
                               f"is newer than this auditor knows ({known}); upgrade "
                               f"omni-auditor")


def _current_version(conn: psycopg.Connection) -> int | None:
    """The schema version, None when the store was never created."""
    if _first(conn.execute("SELECT to_regclass('schema_version')")) is None:
        return None
    return _first(conn.execute("SELECT coalesce(max(version), 0) FROM schema_version"))


def migrate(conn: psycopg.Connection, migrations: Sequence[str] = MIGRATIONS,
            store: str = "") -> int:
    """Apply the migrations newer than the store's version, each in its own transaction
    under an advisory lock: concurrent migrators take turns, and each reads the version
    again once it holds the lock (the second finds the work done). ``store`` (the URL
    without its password) is named in the error and in the info line logged when
    migrations were applied."""
    target = len(migrations)
    current = _current_version(conn)
    if current is not None:
        _check_version(current, target, store)
        if current == target:  # the usual case: no lock taken
            return target
    first: int | None = None  # the version this process migrated from
    while True:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s, hashtext(current_schema()))",
                         (LOCK_MIGRATE,))
            conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY "
                         "KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())")
            current = _current_version(conn) or 0
            _check_version(current, target, store)
            if current == target:
                if first is not None:
                    migrated(store or "(PostgreSQL)", first, target)
                return target
            first = current if first is None else first
            conn.execute(migrations[current])  # type: ignore[arg-type]
            conn.execute("INSERT INTO schema_version (version) VALUES (%s)", (current + 1,))


# --------------------------------------------------------------------------- connections

def conninfo(url: str) -> str:
    """The libpq URL for a store URL (``postgresql+psycopg://`` and ``postgres://`` too)."""
    scheme, sep, rest = url.partition("://")
    return "postgresql://" + rest if sep else url


def _password(url: str) -> str | None:
    with contextlib.suppress(Exception):
        pw = psycopg.conninfo.conninfo_to_dict(conninfo(url)).get("password")
        return None if pw is None else str(pw)
    return None


def _safe(url: str, e: BaseException) -> str:
    """An error's text without the URL's password (also where the driver quotes a URL
    it could not parse)."""
    from auditor.storage import redact

    text = str(e).strip()
    pw = _password(url)
    if pw:
        text = text.replace(pw, "***")
    return redact(text, url)


class _TextDumper(StrDumperUnknown):
    """Text as psycopg sends it, but a NUL character, which PostgreSQL text cannot hold
    (SQLite's can), becomes U+FFFD: a value read from a feed or a filter typed in the API
    with a NUL in it is stored, or matches nothing, instead of failing the statement. The
    same replacement on writes and reads keeps a key with a NUL equal to itself."""

    def dump(self, obj: str) -> bytes:  # type: ignore[override]
        if "\x00" in obj:
            obj = obj.replace("\x00", "\ufffd")
        return super().dump(obj)  # type: ignore[return-value]


class _TextBinaryDumper(StrBinaryDumper):
    """``_TextDumper``'s NUL replacement for a ``text`` column in a binary ``COPY``
    (registered by type only: ``%s`` parameters keep ``_TextDumper``)."""

    def dump(self, obj: str) -> bytes:  # type: ignore[override]
        if "\x00" in obj:
            obj = obj.replace("\x00", "\ufffd")
        return super().dump(obj)  # type: ignore[return-value]


class _TimeBinaryDumper(DatetimeBinaryDumper):
    """A ``timestamptz`` in a binary ``COPY``: a ``datetime``, or the ISO 8601 text the
    write paths hold (``_now``, ``_iso``; without an offset: UTC, the session's time zone,
    as the server reads it in text). Registered by type only."""

    def dump(self, obj: datetime | str) -> bytes:  # type: ignore[override]
        at = _parse_time(obj) if isinstance(obj, str) else obj
        if at.tzinfo is None:
            at = at.replace(tzinfo=timezone.utc)
        return super().dump(at)  # type: ignore[return-value]


@functools.lru_cache(maxsize=1024)
def _parse_time(text: str) -> datetime:
    """(A run's rows share a few times: each is parsed once.)"""
    return datetime.fromisoformat(text)


# Column types a ``COPY`` sends in binary (``PostgresStore._copy``): text, bigint, integer,
# double precision, bytea, boolean, timestamptz. The server then takes each value as it
# comes (length and bytes) instead of scanning every line for delimiters and escapes and
# parsing numbers and times from text: a fifth to a third of a backend's CPU copying
# listings. A table with another column type is copied in text.
_BINARY_OIDS = frozenset({25, 20, 23, 701, 17, 16, 1184})


def connect(url: str, application_name: str = "auditor",
            lock_timeout: float | None = None) -> psycopg.Connection:
    """A connection in autocommit mode (writes open their own transactions), UTC times.
    StoreError, naming the store without its password, when it cannot be opened."""
    try:
        conn = psycopg.connect(conninfo(url), autocommit=True,
                               application_name=application_name[:63])
    except psycopg.Error as e:
        raise StoreUnavailable(f"cannot open the PostgreSQL store {describe(url)}: "
                         f"{_safe(url, e)}") from None
    conn.adapters.register_dumper(str, _TextDumper)
    conn.adapters.register_dumper(None, _TextBinaryDumper)
    conn.adapters.register_dumper(None, _TimeBinaryDumper)
    conn.execute("SET TIME ZONE 'UTC'")
    if lock_timeout is not None:
        conn.execute(f"SET lock_timeout = {int(lock_timeout * 1000)}")
    return conn


def store_exists(url: str) -> bool:
    with contextlib.closing(connect(url)) as conn:
        return _current_version(conn) is not None


def remove_store(url: str) -> None:
    """Drop every table of the store (in the connection's schema): a fresh start."""
    with contextlib.closing(connect(url)) as conn, conn.transaction():
        conn.execute("DROP VIEW IF EXISTS links")
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {} CASCADE").format(
            sql.SQL(", ").join(sql.Identifier(t) for t in TABLES)))


# --------------------------------------------------------------------------- run lock

# The run locks this process holds: store URL -> the connection holding the lock. A
# forked child (a channel worker) forgets them at once, so only the run's own process
# holds the lock; the connections are kept referenced (never closed by the child: that
# would end the parent's session and release its lock).
_HELD_LOCKS: dict[str, psycopg.Connection] = {}
_INHERITED: list[psycopg.Connection] = []


def _forget_inherited_locks() -> None:
    _INHERITED.extend(_HELD_LOCKS.values())
    _HELD_LOCKS.clear()


os.register_at_fork(after_in_child=_forget_inherited_locks)


@contextlib.contextmanager
def run_lock(url: str, wait: float = 0.0) -> Iterator[None]:
    """Hold the store's run lock: a session advisory lock on a connection of its own,
    whose ``application_name`` names the holder (pid, since when) for a refused run."""
    import time

    conn = connect(url, f"auditor run lock pid {os.getpid()} since "
                        f"{datetime.now(timezone.utc):%Y-%m-%dT%H:%M:%SZ}")
    deadline = time.monotonic() + wait
    try:
        while not _first(conn.execute(
                "SELECT pg_try_advisory_lock(%s, hashtext(current_schema()))", (LOCK_RUN,))):
            if time.monotonic() >= deadline:
                row = conn.execute(
                    "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a"
                    " USING (pid) WHERE l.locktype = 'advisory' AND l.granted"
                    " AND l.database = (SELECT oid FROM pg_database"
                    " WHERE datname = current_database())"
                    " AND l.classid = %s::bigint AND l.objid ="
                    " (hashtext(current_schema())::bigint & 4294967295) AND l.objsubid = 2",
                    (LOCK_RUN,)).fetchone()
                holder = row[0] if row else "unknown holder"
                raise LockedError(f"another run holds the lock on {describe(url)} ({holder}); "
                                  f"wait for it, or pass --wait SECONDS")
            time.sleep(0.2)
        _HELD_LOCKS[url] = conn
        try:
            yield
        finally:
            _HELD_LOCKS.pop(url, None)
    finally:
        conn.close()  # ends the session: the lock goes with it


# --------------------------------------------------------------------------- store

_KEY0, _KEY1, _KEY2, _KEY_LAST = itemgetter(0), itemgetter(1), itemgetter(2), itemgetter(-1)
# Rows sent per transaction when a run stores listings: one pipeline each.
WRITE_BATCH = 20_000


def _iso(v: datetime | None) -> str | None:
    return v.isoformat() if v is not None else None


_TIME_OIDS = frozenset({1184, 1114})  # timestamptz, timestamp: datetimes in Python

# The lifecycle state people see (auditor.alerts.policy.display_state, less "reopened"),
# from a finding's row; one parameter: now. As the SQLite store's _SHOWN_STATE.
_SHOWN_STATE = ("(CASE WHEN state = 'resolved' THEN 'resolved' WHEN outcome = 'not_evaluated' "
                "THEN 'not_evaluated' WHEN ack_at IS NOT NULL THEN 'acknowledged' "
                "WHEN snoozed_until > %s THEN 'snoozed' ELSE 'open' END)")


class PostgresStore:
    """Domain-level access to one PostgreSQL database (its current schema).

    Implements ``auditor.storage.interface.Store``; ``lock_timeout`` (seconds) is how
    long a write waits for a lock another process holds."""

    def __init__(self, url: str, lock_timeout: float = 30.0):
        self.url = url
        self.lock_timeout = lock_timeout
        self.conn = connect(url, lock_timeout=lock_timeout)
        self._channels: set[str] = set()  # channels whose partitions exist
        self._staged: set[str] = set()  # this session's staging tables
        # (table, columns) -> their type oids when a COPY sends them in binary, else None
        self._copy_types: dict[tuple[str, tuple[str, ...]], list[int] | None] = {}
        try:
            migrate(self.conn, store=describe(url))
        except psycopg.Error as e:
            self.conn.close()
            raise StoreUnavailable(f"cannot migrate the PostgreSQL store {describe(url)}: "
                             f"{_safe(url, e)}") from None

    def __repr__(self) -> str:
        return f"PostgresStore({describe(self.url)!r})"

    def close(self) -> None:
        self.conn.close()

    @property
    def multi_process(self) -> bool:
        return True

    def run_lock(self, wait: float = 0.0) -> contextlib.AbstractContextManager[None]:
        return run_lock(self.url, wait)

    def holds_run_lock(self) -> bool:
        """Whether this process holds this store's ``run_lock``."""
        return self.url in _HELD_LOCKS

    @property
    def schema_version(self) -> int:
        return _current_version(self.conn) or 0

    def _ensure_channel(self, channel: str) -> None:
        """Create the channel's partitions of the tables partitioned by channel, once."""
        if channel in self._channels:
            return
        suffix = hashlib.blake2b(channel.encode(), digest_size=6).hexdigest()
        names = [f"{t}__{suffix}" for t in PARTITIONED]
        c = self.conn
        if any(_first(c.execute("SELECT to_regclass(%s)", (sql.Identifier(n).as_string(c),)
                         )) is None for n in names):
            with c.transaction():
                c.execute("SELECT pg_advisory_xact_lock(%s, hashtext(current_schema() || '/' "
                          "|| %s))", (LOCK_PARTITION, channel))
                for table, name in zip(PARTITIONED, names, strict=True):
                    c.execute(sql.SQL("CREATE TABLE IF NOT EXISTS {} PARTITION OF {} FOR "
                                      "VALUES IN ({})").format(
                        sql.Identifier(name), sql.Identifier(table), sql.Literal(channel)))
                    for col in _NO_STATISTICS.get(table, ()):
                        c.execute(sql.SQL("ALTER TABLE {} ALTER COLUMN {} SET STATISTICS 0"
                                          ).format(sql.Identifier(name), sql.Identifier(col)))
        self._channels.add(channel)

    def _stage(self, name: str, table: str, cols: Sequence[str]) -> str:
        """A temporary staging table (this session's, emptied at each commit) with
        ``cols`` of ``table``, for ``COPY`` then one set-based merge."""
        if name not in self._staged:
            self.conn.execute(sql.SQL(
                "CREATE TEMP TABLE IF NOT EXISTS {} ON COMMIT DELETE ROWS AS SELECT {} FROM {}"
                " WITH NO DATA").format(sql.Identifier(name),
                                        sql.SQL(", ").join(map(sql.Identifier, cols)),
                                        sql.Identifier(table)))
            self._staged.add(name)
        return name

    def _copy(self, cur: psycopg.Cursor, table: str, cols: Sequence[str], rows: Iterable[tuple]
              ) -> None:
        """``COPY`` rows into ``table`` (a partitioned table routes each to its partition),
        in binary when every column's type allows (``_BINARY_OIDS``)."""
        key = (table, tuple(cols))
        if key not in self._copy_types:
            got: dict[str, int] = dict(cur.execute(
                "SELECT attname, atttypid::int FROM pg_attribute WHERE attrelid ="
                " to_regclass(%s) AND attnum > 0 AND NOT attisdropped",
                (sql.Identifier(table).as_string(cur),)).fetchall())
            found = [got.get(c, 0) for c in cols]
            self._copy_types[key] = found if all(o in _BINARY_OIDS for o in found) else None
        oids = self._copy_types[key]
        with cur.copy(sql.SQL("COPY {} ({}) FROM STDIN{}").format(
                sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, cols)),
                sql.SQL(" (FORMAT BINARY)" if oids else ""))) as cp:
            if oids:
                cp.set_types(oids)  # type: ignore[arg-type]
            for row in rows:
                cp.write_row(row)

    @contextlib.contextmanager
    def _xact_lock(self, kind: int, name: str) -> Iterator[None]:
        """A transaction holding the advisory lock ``(kind, name)`` until it ends."""
        with self.conn.transaction():
            self.conn.execute("SELECT pg_advisory_xact_lock(%s, hashtext(current_schema() "
                              "|| '/' || %s))", (kind, name))
            yield

    # ----------------------------------------------------------------- master
    def current_master(self) -> CompactMaster:
        """The master records in force, by SKU (held as stored, decoded when read)."""
        return CompactMaster.from_bodies(self.conn.execute("SELECT sku, data FROM master_records"))

    def master_count(self) -> int:
        return _first(self.conn.execute("SELECT count(*) FROM master_records"))

    def last_master_snapshot(self) -> MasterSnapshot | None:
        row = self.conn.execute(
            "SELECT id, imported_at, source, sha256, records, added, changed, removed,"
            " skipped_rows FROM master_snapshots ORDER BY id DESC LIMIT 1").fetchone()
        if row is None:
            return None
        return MasterSnapshot(row[0], row[1], row[2], row[3], row[4] or 0, row[5] or 0,
                              row[6] or 0, row[7] or 0, row[8] or 0)

    def save_master(self, records: Iterable[MasterRecord], source: str, sha256: str | None,
                    now: datetime, skipped_rows: int = 0) -> MasterImportResult:
        recs = {r.sku: r for r in records}
        return self.commit_master(self.plan_master(recs, now), recs, source, sha256,
                                  skipped_rows)

    def plan_master(self, records: Mapping[str, MasterRecord], now: datetime) -> MasterPlan:
        existing: dict[str, str] = dict(
            self.conn.execute("SELECT sku, hash FROM master_records").fetchall())
        plan = MasterPlan(at=now.isoformat(), records=len(records))
        plan_writes(plan, existing, records)
        replaced = [sku for sku in plan.writes if sku in existing] + plan.removed
        for i in range(0, len(replaced), 10_000):
            plan.replaced.update(self.conn.execute(
                "SELECT sku, data FROM master_records WHERE sku = ANY(%s)",
                (replaced[i:i + 10_000],)).fetchall())
        return plan

    def commit_master(self, plan: MasterPlan, records: Mapping[str, MasterRecord],
                      source: str, sha256: str | None, skipped_rows: int = 0
                      ) -> MasterImportResult:
        """Write a planned import as a new snapshot, in one transaction (under the master's
        advisory lock: two imports never interleave)."""
        at = plan.at
        changed = len(plan.writes) - plan.added
        c = self.conn
        stage = self._stage("stage_master", "master_records", _MASTER_COLS)
        with self._xact_lock(LOCK_MASTER, "master"), c.cursor() as cur:
            # A first import (nothing stored, checked under the lock: no import can have
            # come between plan and commit) is copied straight into the table, with
            # no staging table and no conflict to look for.
            first = not plan.replaced and not plan.removed and _first(c.execute(
                "SELECT NOT EXISTS (SELECT 1 FROM master_records)"))
            snap = _first(c.execute(
                "INSERT INTO master_snapshots (imported_at, source, sha256, records, added, "
                "changed, removed, skipped_rows) VALUES (%s,%s,%s,%s,%s,%s,%s,%s) RETURNING id",
                (at, source, sha256, plan.records, plan.added, changed, len(plan.removed),
                 skipped_rows)))
            skus = list(plan.writes)
            for i in range(0, len(skus), 5000):
                upserts, history, changes = [], [], []
                for sku in skus[i:i + 5000]:
                    data = plan.bodies.get(sku) or body_of(records, sku).decode()
                    upserts.append((sku, plan.writes[sku], data, snap, at))
                    old_data = plan.replaced.get(sku)
                    if old_data is None:
                        continue
                    history.append(sku)
                    old_d, new_d = orjson.loads(old_data), orjson.loads(data)
                    for fld in sorted(set(old_d) | set(new_d)):
                        if fld != "sku" and old_d.get(fld) != new_d.get(fld):
                            changes.append((snap, sku, fld, _cell(old_d.get(fld)),
                                            _cell(new_d.get(fld)), at))
                # The replaced versions first, while master_records still holds them.
                self._to_history(history, at, snap)
                if first:
                    self._copy(cur, "master_records", _MASTER_COLS, upserts)
                else:
                    self._copy(cur, stage, _MASTER_COLS, upserts)
                    cur.execute(
                        "INSERT INTO master_records (sku, hash, data, snapshot_id, valid_from)"
                        " SELECT sku, hash, data, snapshot_id, valid_from FROM stage_master"
                        " ON CONFLICT (sku) DO UPDATE SET hash=excluded.hash,"
                        " data=excluded.data, snapshot_id=excluded.snapshot_id,"
                        " valid_from=excluded.valid_from")
                    cur.execute("TRUNCATE stage_master")  # the next chunk, same transaction
                self._copy(cur, "master_changes", _CHANGE_COLS, changes)
            for i in range(0, len(plan.removed), 5000):
                chunk = plan.removed[i:i + 5000]
                self._to_history(chunk, at, snap)
                c.execute("DELETE FROM master_records WHERE sku = ANY(%s)", (chunk,))
        return MasterImportResult(snap, plan.records, plan.added, changed, len(plan.removed))

    def _to_history(self, skus: list[str], at: str, snap: int) -> None:
        if skus:
            self.conn.execute(
                "INSERT INTO master_history (sku, hash, data, valid_from, valid_to, snapshot_id)"
                " SELECT sku, hash, data, valid_from, %s, %s FROM master_records"
                " WHERE sku = ANY(%s) ORDER BY sku", (at, snap, skus))

    def master_history(self) -> MasterHistory:
        history = MasterHistory()
        put = history.put
        for sku, data, valid_to in self.conn.execute(
                "SELECT sku, data, valid_to FROM master_history ORDER BY sku, valid_to, id"):
            put(sku, valid_to.isoformat(), data)
        return history

    def master_changes(self, sku: str | None = None) -> list[MasterChange]:
        q = "SELECT id, snapshot_id, sku, field, old, new, changed_at FROM master_changes"
        rows = self.conn.execute(q + " ORDER BY id DESC") if sku is None else \
            self.conn.execute(q + " WHERE sku = %s ORDER BY id DESC", (sku,))
        return [MasterChange(*r) for r in rows]

    def record_master_assets(self, assets: Mapping[str, Sequence[tuple[str, str | None]]],
                             now: datetime) -> int:
        at = now.isoformat()
        c = self.conn
        closed = 0
        skus = list(assets)
        with self._xact_lock(LOCK_MASTER, "assets"), c.cursor() as cur:
            for i in range(0, len(skus), 5000):
                chunk = skus[i:i + 5000]
                open_rows: dict[str, dict[int, tuple[int, str]]] = {}
                for rid, sku, slot, sha in c.execute(
                        "SELECT id, sku, slot, sha256 FROM master_assets WHERE valid_to IS NULL"
                        " AND sku = ANY(%s)", (chunk,)):
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
                            close.append(old[0])
                        insert.append((sku, slot, ref, sha, at))
                    close += [rid for slot, (rid, _) in have.items() if slot >= len(slots)]
                if close:
                    c.execute("UPDATE master_assets SET valid_to = %s WHERE id = ANY(%s)",
                              (at, close))
                cur.executemany("INSERT INTO master_assets (sku, slot, ref, sha256, valid_from)"
                                " VALUES (%s,%s,%s,%s,%s)", insert)
                closed += len(close)
        return closed

    def master_asset_history(self, skus: Iterable[str] | None = None
                             ) -> dict[str, list[MasterAssetRow]]:
        q = ("SELECT id, sku, slot, ref, sha256, valid_from, valid_to FROM master_assets"
             " WHERE valid_to IS NOT NULL")
        out: dict[str, list[MasterAssetRow]] = {}
        with self.conn.cursor(row_factory=dict_row) as cur:
            if skus is None:
                rows = cur.execute(q + " ORDER BY sku, valid_to DESC, id DESC").fetchall()
            else:
                rows = cur.execute(q + " AND sku = ANY(%s) ORDER BY sku, valid_to DESC,"
                                   " id DESC", (list(dict.fromkeys(skus)),)).fetchall()
        for r in rows:
            out.setdefault(r["sku"], []).append(r)  # type: ignore[arg-type]
        return out

    # ----------------------------------------------------------------- runs
    def start_run(self, started_at: datetime, snapshot_id: int | None) -> int:
        return _first(self.conn.execute(
            "INSERT INTO runs (started_at, status, master_snapshot_id) VALUES (%s, 'running',"
            " %s) RETURNING id", (started_at, snapshot_id)))

    def set_run_snapshot(self, run_id: int, snapshot_id: int | None) -> None:
        self.conn.execute("UPDATE runs SET master_snapshot_id=%s WHERE id=%s",
                          (snapshot_id, run_id))

    def finish_run(self, run: Run, summary: dict[str, Any]) -> None:
        self.conn.execute(
            "UPDATE runs SET finished_at=%s, status=%s, summary=%s WHERE id=%s",
            (run.finished_at or datetime.now(timezone.utc), run.status.value,
             codec.dumps(summary), run.id))

    def save_source_result(self, run_id: int, res: SourceResult,
                           errors: Sequence[tuple[str, str]] = ()) -> None:
        with self.conn.transaction(), self.conn.cursor() as cur:
            cur.execute(
                "INSERT INTO run_sources (run_id, source, status, listings, errors, message,"
                " started_at, finished_at) VALUES (%s,%s,%s,%s,%s,%s,%s,%s)"
                " ON CONFLICT (run_id, source) DO UPDATE SET status=excluded.status,"
                " listings=excluded.listings, errors=excluded.errors, message=excluded.message,"
                " started_at=excluded.started_at, finished_at=excluded.finished_at",
                (run_id, res.name, res.status.value, res.listings, res.errors, res.message,
                 res.started_at, res.finished_at))
            cur.executemany(
                "INSERT INTO run_errors (run_id, source, location, reason) VALUES (%s,%s,%s,%s)",
                [(run_id, res.name, loc, reason) for loc, reason in errors])

    @staticmethod
    def _run_record(row: tuple) -> RunRecord:
        i, started, finished, status, snap, summary = row
        return RunRecord(i, started, finished, status, snap,
                         orjson.loads(summary) if summary else {})

    def runs(self, limit: int = 20) -> list[RunRecord]:
        return [self._run_record(r) for r in self.conn.execute(
            "SELECT id, started_at, finished_at, status, master_snapshot_id, summary"
            " FROM runs ORDER BY id DESC LIMIT %s", (limit,))]

    _SOURCE_COLS = "run_id, source, status, listings, errors, message, started_at, finished_at"

    def run_sources(self, run_id: int) -> list[RunSourceRecord]:
        return [RunSourceRecord(*r) for r in self.conn.execute(
            f"SELECT {self._SOURCE_COLS} FROM run_sources WHERE run_id = %s ORDER BY source",
            (run_id,))]

    def run_errors(self, run_id: int, source: str | None = None,
                   limit: int = 1000) -> list[RunErrorRecord]:
        q = "SELECT id, run_id, source, location, reason FROM run_errors WHERE run_id=%s"
        args: list[Any] = [run_id]
        if source:
            q += " AND source=%s"
            args.append(source)
        return [RunErrorRecord(*r) for r in self.conn.execute(q + " ORDER BY id LIMIT %s",
                                                              [*args, limit])]

    def last_source_result(self, source: str, before_run: int | None = None
                           ) -> RunSourceRecord | None:
        q = f"SELECT {self._SOURCE_COLS} FROM run_sources WHERE source = %s"
        args: list[Any] = [source]
        if before_run is not None:
            q += " AND run_id < %s"
            args.append(before_run)
        row = self.conn.execute(q + " ORDER BY run_id DESC LIMIT 1", args).fetchone()
        return RunSourceRecord(*row) if row else None

    def last_durations(self) -> dict[str, float]:
        return {source: seconds for source, seconds in self.conn.execute(
            "SELECT DISTINCT ON (source) source,"
            " extract(epoch FROM finished_at - started_at)::float8 FROM run_sources"
            " WHERE status='complete' AND started_at IS NOT NULL AND finished_at IS NOT NULL"
            " ORDER BY source, run_id DESC")}

    def last_good_listing_count(self, source: str, before_run: int) -> int | None:
        row = self.conn.execute(
            "SELECT listings FROM run_sources WHERE source=%s AND run_id<%s AND "
            "status='complete' ORDER BY run_id DESC LIMIT 1", (source, before_run)).fetchone()
        return row[0] if row else None

    def save_scores(self, run_id: int, rows: Iterable[tuple[str, str, dict[str, int]]]) -> None:
        data = []
        for channel, check, n in rows:
            total = n.get("passed", 0) + n.get("failed", 0) + n.get("warn", 0)
            score = n.get("passed", 0) / total if total else None
            data.append((run_id, channel, check, n.get("passed", 0), n.get("failed", 0),
                         n.get("warn", 0), n.get("not_evaluated", 0), score))
        with self.conn.transaction(), self.conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO scores (run_id, channel, check_name, passed, failed, warn,"
                " not_evaluated, score) VALUES (%s,%s,%s,%s,%s,%s,%s,%s)"
                " ON CONFLICT (run_id, channel, check_name) DO UPDATE SET"
                " passed=excluded.passed, failed=excluded.failed, warn=excluded.warn,"
                " not_evaluated=excluded.not_evaluated, score=excluded.score", data)

    def scores(self, run_id: int) -> list[ScoreRecord]:
        return [ScoreRecord(*r) for r in self.conn.execute(
            "SELECT run_id, channel, check_name, passed, failed, warn, not_evaluated, score"
            " FROM scores WHERE run_id=%s ORDER BY channel, check_name", (run_id,))]

    # ----------------------------------------------------------------- a run's own record
    def run_summary(self, run_id: int) -> dict[str, Any]:
        row = self.conn.execute("SELECT summary FROM runs WHERE id=%s", (run_id,)).fetchone()
        return json.loads(row[0]) if row and row[0] else {}

    def _locked_summary(self, run_id: int) -> dict[str, Any]:
        """The summary, its row locked until the transaction ends (no lost update when
        two processes add to it at once)."""
        row = self.conn.execute("SELECT summary FROM runs WHERE id=%s FOR UPDATE",
                                (run_id,)).fetchone()
        return json.loads(row[0]) if row and row[0] else {}

    def update_run_summary(self, run_id: int, **parts: Any) -> None:
        with self.conn.transaction():
            summary = self._locked_summary(run_id)
            summary.update(parts)
            self.conn.execute("UPDATE runs SET summary=%s WHERE id=%s",
                              (codec.dumps(summary), run_id))

    def record_master_import(self, run_id: int, info: Mapping[str, Any],
                             errors: Sequence[tuple[str, str]] = ()) -> None:
        with self.conn.transaction(), self.conn.cursor() as cur:
            summary = self._locked_summary(run_id)
            summary["master"] = dict(info)
            cur.execute("UPDATE runs SET summary=%s WHERE id=%s", (codec.dumps(summary), run_id))
            cur.executemany(
                "INSERT INTO run_errors (run_id, source, location, reason) VALUES (%s,%s,%s,%s)",
                [(run_id, "master", loc, reason) for loc, reason in errors])

    def finding_changes(self, run_id: int, channel: str) -> list[FindingChange]:
        return [FindingChange(*row) for row in self.conn.execute(
            "SELECT e.fingerprint, e.event, f.check_name, f.channel, f.sku,"
            " f.listing_key, f.field, f.outcome, f.severity, f.expected, f.actual, f.message"
            " FROM finding_events e JOIN findings f ON f.channel = e.channel"
            " AND f.fingerprint = e.fingerprint WHERE e.channel = %s AND e.run_id = %s"
            " AND (f.last_run = %s OR f.resolved_run = %s) ORDER BY e.id",
            (channel, run_id, run_id, run_id))]

    def interrupt_run(self, run_id: int, at: datetime, reason: str) -> bool:
        # Whatever this connection was writing when the run was stopped stays unwritten:
        # a connection caught inside a transaction (or a statement) is replaced, which
        # ends its session and rolls the transaction back.
        if self.conn.closed or self.conn.info.transaction_status != \
                psycopg.pq.TransactionStatus.IDLE:
            with contextlib.suppress(Exception):
                self.conn.close()
            self.conn = connect(self.url, lock_timeout=self.lock_timeout)
            self._staged.clear()
        with self.conn.transaction():
            summary = self._locked_summary(run_id)
            summary["interrupted"] = {"at": at.isoformat(), "reason": reason}
            cur = self.conn.execute(
                "UPDATE runs SET finished_at=%s, status='interrupted', summary=%s "
                "WHERE id=%s AND status='running'", (at, codec.dumps(summary), run_id))
        return cur.rowcount > 0

    def running_runs(self) -> list[RunRecord]:
        return [self._run_record(r) for r in self.conn.execute(
            "SELECT id, started_at, finished_at, status, master_snapshot_id, summary"
            " FROM runs WHERE status = 'running' ORDER BY id")]

    # ----------------------------------------------------------------- listings
    def save_listings(self, run_id: int, channel: str,
                      observed: Iterable[tuple[Listing, Link | None]],
                      shard: ShardSpec | None = None) -> ListingSave:
        """As the SQLite store's: a listing read again unchanged, from the same place and
        with the same link, costs a hash comparison and no statement. One transaction per
        batch of ``WRITE_BATCH`` rows; the channel's advisory lock is held for the whole
        read, so two processes saving one channel take turns (each reads what the other
        wrote) instead of losing each other's updates. A key not stored when the batch's
        stored rows were read (under that lock) is copied straight into the table; one
        written meanwhile by a writer outside the lock fails the save (a unique key), it
        is never merged unseen."""
        self._ensure_channel(channel)
        c = self.conn
        # One lock per channel, or per shard of it: disjoint shards save at once.
        scope = channel if shard is None else f"{channel}#{shard.index}/{shard.count}"
        c.execute("SELECT pg_advisory_lock(%s, hashtext(current_schema() || '/' || %s))",
                  (LOCK_LISTINGS, scope))
        try:
            return self._save_listings(run_id, channel, observed, shard)
        finally:
            if c.info.transaction_status == psycopg.pq.TransactionStatus.IDLE:
                c.execute("SELECT pg_advisory_unlock(%s, hashtext(current_schema() || '/' "
                          "|| %s))", (LOCK_LISTINGS, scope))

    def _save_listings(self, run_id: int, channel: str,
                       observed: Iterable[tuple[Listing, Link | None]],
                       shard: ShardSpec | None = None) -> ListingSave:
        c = self.conn
        known = {k: (h, ev, gone, (sku, method, conf, cands), link_run)
                 for k, h, ev, gone, sku, method, conf, cands, link_run in c.execute(
                     "SELECT key, hash, evidence, removed_run, master_sku, link_method,"
                     " link_confidence, link_candidates, link_run FROM listings"
                     " WHERE channel = %s" + _shard_where(shard, "key"),
                     (channel, *_shard_args(shard)))
                 if shard is None or shard.contains(k)}
        seen: set[str] = set()
        new = changed = 0
        batch_up: list[tuple] = []
        batch_new: list[tuple] = []  # keys not stored (``known`` was read under the lock)
        batch_ver: list[str] = []
        batch_seen: list[tuple] = []
        batch_link: list[tuple] = []

        up_stage = self._stage("stage_listings", "listings", _UP_COLS)
        seen_stage = self._stage("stage_listings_seen", "listings", _SEEN_COLS)
        link_stage = self._stage("stage_listings_link", "listings", _LINK_COLS)

        def flush() -> None:
            if not (batch_up or batch_new or batch_seen or batch_link):
                return
            batch_up.sort(key=_KEY1)
            batch_new.sort(key=_KEY1)
            batch_seen.sort(key=_KEY_LAST)
            batch_link.sort(key=_KEY_LAST)
            # Each kind of row is COPY-ed into its staging table and merged by one statement.
            with c.transaction(), c.cursor() as cur:
                if batch_ver:  # the replaced versions first, while listings holds them
                    cur.execute(
                        "INSERT INTO listing_versions (channel, key, run_id, hash, data,"
                        " until_run, fetched_at, evidence) SELECT channel, key,"
                        " last_changed_run, hash, data, %s, fetched_at, evidence FROM listings"
                        " WHERE channel = %s AND key = ANY(%s) ORDER BY key",
                        (run_id, channel, sorted(batch_ver)))
                if batch_new:  # straight in: no staging table, no conflict to look for
                    self._copy(cur, "listings", _UP_COLS, batch_new)
                if batch_up:
                    self._copy(cur, up_stage, _UP_COLS, batch_up)
                    cur.execute(
                        "INSERT INTO listings (channel, key, hash, data, first_seen_run,"
                        " last_seen_run, last_changed_run, fetched_at, evidence, master_sku,"
                        " link_method, link_confidence, link_candidates, link_run)"
                        " SELECT channel, key, hash, data, first_seen_run,"
                        " last_seen_run, last_changed_run, fetched_at, evidence, master_sku,"
                        " link_method, link_confidence, link_candidates, link_run"
                        " FROM stage_listings"
                        " ON CONFLICT (channel, key) DO UPDATE SET hash=excluded.hash,"
                        " data=excluded.data, last_seen_run=excluded.last_seen_run,"
                        " last_changed_run=excluded.last_changed_run,"
                        " fetched_at=excluded.fetched_at, evidence=excluded.evidence,"
                        " removed_run=NULL, master_sku=excluded.master_sku,"
                        " link_method=excluded.link_method,"
                        " link_confidence=excluded.link_confidence,"
                        " link_candidates=excluded.link_candidates, link_run=excluded.link_run")
                if batch_seen:
                    self._copy(cur, seen_stage, _SEEN_COLS, batch_seen)
                    cur.execute(
                        "UPDATE listings l SET last_seen_run=s.last_seen_run, removed_run=NULL,"
                        " fetched_at=s.fetched_at, evidence=s.evidence, master_sku=s.master_sku,"
                        " link_method=s.link_method, link_confidence=s.link_confidence,"
                        " link_candidates=s.link_candidates, link_run=s.link_run"
                        " FROM stage_listings_seen s WHERE l.channel = %s"
                        " AND l.channel = s.channel AND l.key = s.key", (channel,))
                if batch_link:
                    self._copy(cur, link_stage, _LINK_COLS, batch_link)
                    cur.execute(
                        "UPDATE listings l SET master_sku=s.master_sku,"
                        " link_method=s.link_method, link_confidence=s.link_confidence,"
                        " link_candidates=s.link_candidates, link_run=s.link_run"
                        " FROM stage_listings_link s WHERE l.channel = %s"
                        " AND l.channel = s.channel AND l.key = s.key", (channel,))
            for batch in (batch_up, batch_new, batch_ver, batch_seen, batch_link):
                batch.clear()

        last_dt: datetime | None = None
        fetched: str | None = None
        no_link = (None, None, None, None)
        for li, lk in observed:
            key = li.key
            if key in seen:
                continue
            seen.add(key)
            body = codec.body(li)
            h = digest(body)
            was = known.get(key)
            link = no_link if lk is None else (
                lk.sku, lk.method, lk.confidence,
                json.dumps(list(lk.candidates)) if lk.candidates else None)
            link_run = was[4] if was is not None and was[3] == link else \
                (None if lk is None else run_id)
            if li.fetched_at is not last_dt:
                last_dt = li.fetched_at
                fetched = last_dt.isoformat() if last_dt else None
            if was is not None and was[0] == h:
                if was[2] is not None or was[1] != li.evidence:  # back again, or moved
                    batch_seen.append((run_id, fetched, li.evidence, *_link_cells(link),
                                       link_run, channel, key))
                elif was[3] != link:
                    batch_link.append((*_link_cells(link), link_run, channel, key))
            else:
                (batch_new if was is None else batch_up).append(
                    (channel, key, h, body.decode(), run_id, run_id, run_id, fetched,
                     li.evidence, *_link_cells(link), link_run))
                if was is None:
                    new += 1
                else:
                    changed += 1
                    batch_ver.append(key)
            if len(batch_up) + len(batch_new) + len(batch_seen) + len(batch_link) >= \
                    WRITE_BATCH:
                flush()
        flush()
        unseen = [k for k, was in known.items() if was[2] is None and k not in seen]
        return ListingSave(len(seen), new, changed, unseen)

    def mark_removed(self, run_id: int, channel: str, keys: Iterable[str]) -> int:
        keys = list(keys)
        if keys:
            self.conn.execute("UPDATE listings SET removed_run=%s WHERE channel=%s"
                              " AND key = ANY(%s)", (run_id, channel, keys))
        return len(keys)

    def listings(self, channel: str | None = None, sku: str | None = None,
                 include_removed: bool = False) -> list[Listing]:
        q = "SELECT data, fetched_at, evidence FROM listings"
        where, args = [], []
        if sku is not None:
            where.append("master_sku = %s")
            args.append(sku)
        if channel is not None:
            where.append("channel = %s")
            args.append(channel)
        if not include_removed:
            where.append("removed_run IS NULL")
        if where:
            q += " WHERE " + " AND ".join(where)
        return [codec.listing_from_row(d, fetched, evidence) for d, fetched, evidence in
                self.conn.execute(q + " ORDER BY channel, key", args)]

    def links(self, channel: str | None = None) -> list[LinkRecord]:
        q = ("SELECT channel, key, master_sku, link_method, link_confidence, link_candidates,"
             " link_run FROM listings WHERE link_method IS NOT NULL AND removed_run IS NULL")
        args: list[Any] = []
        if channel:
            q += " AND channel = %s"
            args.append(channel)
        return [LinkRecord(ch, key, sku, method, conf,
                           tuple(json.loads(cands)) if cands else (), run)
                for ch, key, sku, method, conf, cands, run in self.conn.execute(
                    q + " ORDER BY channel, key", args)]

    # ----------------------------------------------------------------- findings
    def apply_findings(self, run_id: int, channel: str, observed: Iterable[Finding],
                       status: SourceStatus, seen_keys: set[str] | None,
                       checks_ran: Sequence[str], now: datetime,
                       shard: ShardSpec | None = None) -> FindingChanges:
        """As the SQLite store's, in one transaction that holds the channel's findings
        lock from the read of the existing findings to the last write."""
        self._ensure_channel(channel)
        at = now
        c = self.conn
        as_previous = Previous._make
        evidence = Evidence(status, seen_keys, frozenset(checks_ran))
        transition = lifecycle.transition
        opened = reopened = still_open = 0
        observed_fps: set[str] = set()
        upd_stage = self._stage("stage_findings", "findings", _FUPD_COLS)
        obs_stage = self._stage("stage_observations", "finding_observations", _OBS_COLS)
        moved_stage = self._stage("stage_findings_moved", "findings", _MOVED_COLS)
        with _findings_lock(c, channel, shard), c.cursor() as cur:
            # Findings this run observed already (a retried job's): only their
            # observations can be stored; the others' are copied straight in.
            ours: set[str] = set()
            existing: dict[str, Previous] = {}
            for row in c.execute(
                    "SELECT fingerprint, state, outcome, expected, actual, check_name,"
                    " listing_key, last_run = %s FROM findings WHERE channel=%s"
                    + _shard_where(shard, "listing_key"),
                    (run_id, channel, *_shard_args(shard))):
                if shard is None or shard.contains(row[6]):
                    existing[row[0]] = as_previous(row[1:7])
                    if row[7]:
                        ours.add(row[0])
            events: list[tuple] = []
            obs: list[tuple] = []
            obs_new: list[tuple] = []
            inserts: list[tuple] = []
            updates: list[tuple] = []
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
                (obs if fp in ours else obs_new).append((channel, run_id, fp, f.outcome.value))
                details = codec.dumps(dict(f.details)) if f.details else None
                if old is None:
                    inserts.append((channel, fp, f.check, f.sku, f.listing_key, f.field,
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
                                    f.score, f.message, details, t.state, at, run_id, f.sku,
                                    channel, fp))
                if t.event:
                    events.append((channel, fp, run_id, at, t.event, t.state, f.outcome.value,
                                   f.expected, f.actual))
            inserts.sort(key=_KEY1)
            updates.sort(key=_KEY_LAST)
            obs.sort(key=_KEY2)
            obs_new.sort(key=_KEY2)
            # New findings and events are COPY-ed in (no conflict: the channel's lock is
            # held since its findings were read); updates go through staging tables.
            if inserts:
                self._copy(cur, "findings", _FINS_COLS, inserts)
            if updates:
                self._copy(cur, upd_stage, _FUPD_COLS, updates)
                cur.execute(
                    "UPDATE findings f SET outcome=s.outcome, severity=s.severity,"
                    " expected=s.expected, actual=s.actual, score=s.score, message=s.message,"
                    " details=s.details, state=s.state, last_seen_at=s.last_seen_at,"
                    " last_run=s.last_run, sku=s.sku, resolved_at=NULL, resolved_run=NULL"
                    " FROM stage_findings s WHERE f.channel = %s AND f.channel = s.channel"
                    " AND f.fingerprint = s.fingerprint", (channel,))
            # a finding back again needs a person again: its acknowledgement and snooze go
            back = sorted(e[1] for e in events if e[4] == lifecycle.REOPENED)
            if back:
                cur.execute("UPDATE findings SET ack_by=NULL, ack_at=NULL, ack_note=NULL,"
                            " snoozed_until=NULL, snoozed_by=NULL WHERE channel = %s"
                            " AND fingerprint = ANY(%s)", (channel, back))
            if obs_new:  # (an observation is stored with its finding's last_run)
                self._copy(cur, "finding_observations", _OBS_COLS, obs_new)
            if obs:
                self._copy(cur, obs_stage, _OBS_COLS, obs)
                cur.execute(
                    "INSERT INTO finding_observations (channel, run_id, fingerprint, outcome)"
                    " SELECT channel, run_id, fingerprint, outcome FROM stage_observations"
                    " ON CONFLICT (channel, run_id, fingerprint)"
                    " DO UPDATE SET outcome=excluded.outcome")
            moved = []
            for fp, prev in existing.items():
                if fp not in observed_fps:
                    t = transition(prev, None, evidence)
                    if t is not None:
                        moved.append((fp, t))
            moved.sort(key=_KEY0)
            if moved:
                self._copy(cur, moved_stage, _MOVED_COLS,
                           [(t.state, at if t.state == RESOLVED else None,
                             run_id if t.state == RESOLVED else None, channel, fp)
                            for fp, t in moved])
                cur.execute(
                    "UPDATE findings f SET state=s.state, resolved_at=s.resolved_at,"
                    " resolved_run=s.resolved_run FROM stage_findings_moved s"
                    " WHERE f.channel = %s AND f.channel = s.channel"
                    " AND f.fingerprint = s.fingerprint", (channel,))
            events += [(channel, fp, run_id, at, t.event, t.state, None, None, None)
                       for fp, t in moved if t.event]
            events.sort(key=_KEY1)
            if events:
                self._copy(cur, "finding_events", _EVENT_COLS, events)
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
        where, args = [], []
        for col, val in (("state", state), ("channel", channel), ("check_name", check),
                         ("sku", sku)):
            if val is not None:
                where.append(f"{col} = %s")
                args.append(val)
        return self._finding_records(where, args, limit)

    def _finding_records(self, where: list[str], args: list[Any], limit: int | None
                         ) -> list[FindingRecord]:
        q = f"SELECT {self._FINDING_COLS} FROM findings"
        if where:
            q += " WHERE " + " AND ".join(where)
        # NULLS FIRST: the order SQLite gives (findings without a SKU first).
        q += (" ORDER BY CASE severity WHEN 'critical' THEN 0 WHEN 'major' THEN 1 "
              "WHEN 'minor' THEN 2 ELSE 3 END, channel, check_name, sku NULLS FIRST, field")
        if limit:
            q += f" LIMIT {int(limit)}"
        return [self._record(r) for r in self.conn.execute(q, args)]

    def finding_events(self, fingerprint: str) -> list[FindingEvent]:
        return [FindingEvent(*r) for r in self.conn.execute(
            "SELECT id, fingerprint, run_id, at, event, state, outcome, expected, actual,"
            " actor, note FROM finding_events WHERE fingerprint=%s ORDER BY id",
            (fingerprint,))]

    # ----------------------------------------------------------------- caches
    _HTTP_COLS = frozenset(("etag", "last_modified", "fetched_at", "status", "sha256",
                            "content_type", "extraction"))

    def http_cache_get(self, url: str) -> HttpCacheRow | None:
        with self.conn.cursor(row_factory=dict_row) as cur:
            return cur.execute("SELECT url, etag, last_modified, fetched_at, status, sha256,"
                               " content_type, extraction FROM http_cache WHERE url = %s",
                               (url,)).fetchone()  # type: ignore[return-value]

    def http_cache_put(self, url: str, **values: Any) -> None:
        self.http_cache_put_many([{"url": url, **values}])

    def http_cache_put_many(self, rows: list[dict[str, Any]]) -> None:
        """Upsert many rows (each with ``url``); a row changes only the columns it names
        (rows are grouped by the columns they carry: one statement shape per group)."""
        groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        for r in rows:
            cols = tuple(sorted(k for k in r if k != "url"))
            unknown = set(cols) - self._HTTP_COLS
            if unknown:
                raise StoreError(f"http_cache has no column {sorted(unknown)[0]!r}")
            groups.setdefault(cols, []).append(r)
        if not groups:
            return
        with self.conn.transaction(), self.conn.cursor() as cur:
            for cols, group in groups.items():
                names = ("url", *cols)
                q = sql.SQL("INSERT INTO http_cache ({}) VALUES ({}) ON CONFLICT (url) ").format(
                    sql.SQL(", ").join(map(sql.Identifier, names)),
                    sql.SQL(", ").join(sql.Placeholder() * len(names)))
                q += (sql.SQL("DO UPDATE SET ") + sql.SQL(", ").join(
                    sql.SQL("{0} = excluded.{0}").format(sql.Identifier(c)) for c in cols)
                ) if cols else sql.SQL("DO NOTHING")
                cur.executemany(q, [tuple(r.get(n) for n in names) for r in group])

    def http_cache_extractions(self, urls: Sequence[str]) -> dict[str, str]:
        return dict(self.conn.execute(
            "SELECT url, extraction FROM http_cache WHERE url = ANY(%s)"
            " AND extraction IS NOT NULL", (list(urls),)).fetchall())

    def http_cache_validators(self, prefix: str) -> Iterator[HttpValidators]:
        with self.conn.cursor(row_factory=dict_row) as cur:
            yield from cur.execute(  # type: ignore[misc]
                "SELECT url, etag, last_modified, fetched_at, sha256,"
                " extraction IS NOT NULL AS had_extraction FROM http_cache"
                " WHERE url >= %s AND url < %s", (prefix, prefix + "\U0010ffff")).fetchall()

    def image_signatures(self, shas: Iterable[str], version: int) -> dict[str, dict[str, Any]]:
        return {sha: json.loads(data) for sha, data in self.conn.execute(
            "SELECT sha256, data FROM image_signatures WHERE version = %s AND sha256 = ANY(%s)",
            (version, list(dict.fromkeys(shas))))}

    def put_image_signatures(self, rows: Iterable[tuple[str, int, dict[str, Any]]]) -> None:
        at = _now()
        with self.conn.transaction(), self.conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO image_signatures (sha256, version, data, created_at)"
                " VALUES (%s,%s,%s,%s) ON CONFLICT (sha256) DO UPDATE SET"
                " version=excluded.version, data=excluded.data, created_at=excluded.created_at",
                [(sha, v, codec.dumps(d), at) for sha, v, d in rows])

    def image_urls(self, urls: Iterable[str]) -> dict[str, ImageUrlRow]:
        with self.conn.cursor(row_factory=dict_row) as cur:
            return {r["url"]: r for r in cur.execute(  # type: ignore[misc]
                "SELECT url, etag, last_modified, sha256, error, fetched_at FROM image_urls"
                " WHERE url = ANY(%s)", (list(dict.fromkeys(urls)),))}

    def put_image_urls(self, rows: Iterable[Mapping[str, Any]]) -> None:
        at = _now()
        with self.conn.transaction(), self.conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO image_urls (url, etag, last_modified, sha256, error, fetched_at)"
                " VALUES (%s,%s,%s,%s,%s,%s) ON CONFLICT (url) DO UPDATE SET"
                " etag=excluded.etag, last_modified=excluded.last_modified,"
                " sha256=excluded.sha256, error=excluded.error, fetched_at=excluded.fetched_at",
                [(r["url"], r.get("etag"), r.get("last_modified"), r.get("sha256"),
                  r.get("error"), at) for r in rows])


    # ----------------------------------------------------------------- helpers (dict rows)
    def _dicts(self, q: str, args: Sequence[Any] = ()) -> list[dict[str, Any]]:
        """Rows as dicts, times as ISO 8601 text (as the SQLite store's dict rows hold them)."""
        with self.conn.cursor(row_factory=dict_row) as cur:
            rows = cur.execute(q, args).fetchall()  # type: ignore[arg-type]
            # the time columns by their type (not every value of every row looked at)
            times = [d.name for d in cur.description or () if d.type_code in _TIME_OIDS]
        for r in rows:
            for k in times:
                v = r[k]
                if v is not None:
                    r[k] = v.isoformat()
        return rows

    # ----------------------------------------------------------------- service reads
    # (auditor serve: the scheduler's run history, the metrics collector, the JSON API)
    def last_complete_reads(self) -> dict[str, datetime]:
        out: dict[str, datetime] = dict(self.conn.execute(
            "SELECT source, max(finished_at) FROM run_sources WHERE status='complete' "
            "AND finished_at IS NOT NULL GROUP BY source").fetchall())
        if "master" not in out:
            for finished, status, summary in self.conn.execute(
                    "SELECT finished_at, status, summary FROM runs WHERE finished_at IS NOT NULL"
                    " AND status IN ('complete', 'partial') ORDER BY id DESC LIMIT 50"):
                sm = json.loads(summary) if summary else {}
                if status == "complete" or not sm.get("master_error"):
                    out["master"] = finished
                    break
        return out

    def interrupt_running_runs(self, at: datetime) -> list[int]:
        with self.conn.transaction():
            return [r[0] for r in self.conn.execute(
                "UPDATE runs SET status='interrupted', finished_at=%s WHERE status='running'"
                " RETURNING id", (at,)).fetchall()]

    def latest_scores(self) -> list[tuple[str, str, float]]:
        return [(c, k, sc) for c, k, sc in self.conn.execute(
            "SELECT s.channel, s.check_name, s.score FROM scores s JOIN (SELECT channel, "
            "max(run_id) AS run_id FROM scores GROUP BY channel) l ON l.channel = s.channel "
            "AND l.run_id = s.run_id WHERE s.score IS NOT NULL ORDER BY 1, 2")]

    def unresolved_finding_counts(self) -> list[tuple[str, str, str, int]]:
        return [tuple(r) for r in self.conn.execute(  # type: ignore[misc]
            "SELECT channel, check_name, severity, count(*) FROM findings "
            "WHERE state != 'resolved' GROUP BY 1, 2, 3 ORDER BY 1, 2, 3")]

    def latest_source_results(self) -> list[dict[str, Any]]:
        rows = self._dicts(
            "SELECT r.run_id, r.source, r.status, r.listings, r.errors, r.message, r.started_at,"
            " r.finished_at FROM run_sources r JOIN (SELECT source, max(run_id) AS run_id FROM "
            "run_sources GROUP BY source) l ON l.source = r.source AND l.run_id = r.run_id "
            "ORDER BY r.source")
        return rows

    def source_durations(self) -> list[tuple[str, float]]:
        return [(source, max(0.0, float(sec))) for source, sec in self.conn.execute(
            "SELECT source, extract(epoch FROM finished_at - started_at)::float8 FROM "
            "run_sources WHERE started_at IS NOT NULL AND finished_at IS NOT NULL")]

    def run_errors_after(self, after_id: int, limit: int = 100_000
                         ) -> list[tuple[int, str, str]]:
        return [tuple(r) for r in self.conn.execute(  # type: ignore[misc]
            "SELECT id, source, reason FROM run_errors WHERE id > %s ORDER BY id LIMIT %s",
            (after_id, limit))]

    def failed_reads_after(self, after_rowid: int) -> list[tuple[int, str, str, str | None]]:
        """(position, source, status, message) of reads not complete, after a position
        (``seq``: the order results were recorded in)."""
        return [tuple(r) for r in self.conn.execute(  # type: ignore[misc]
            "SELECT seq, source, status, message FROM run_sources WHERE seq > %s AND "
            "status != 'complete' ORDER BY seq", (after_rowid,))]

    def data_version(self) -> tuple[Any, ...]:
        row = self.conn.execute(
            "SELECT (SELECT max(id) FROM runs), (SELECT max(finished_at) FROM runs), "
            "(SELECT count(*) FROM run_sources), (SELECT max(id) FROM master_snapshots), "
            "(SELECT max(id) FROM finding_events)").fetchone()
        return tuple(row) if row else ()

    def outbox_counts(self) -> dict[str, int]:
        return dict(self.conn.execute("SELECT status, count(*) FROM outbox GROUP BY status"
                                      ).fetchall())

    def propagation(self, since: datetime, max_changes: int = 20_000
                    ) -> list[tuple[str, float | None]]:
        """As the SQLite store's: how long master changes took to show on each channel."""
        import bisect

        from auditor.storage.sqlite import _CORE_FIELDS, _PROPAGATION_FIELDS

        changes = self.conn.execute(
            "SELECT sku, field, changed_at FROM master_changes WHERE changed_at >= %s "
            "ORDER BY id DESC LIMIT %s", (since, max_changes)).fetchall()
        if not changes:
            return []
        skus = sorted({c[0] for c in changes})
        on: dict[str, set[str]] = {}
        fps: dict[tuple[str, str], list[tuple[str, str]]] = {}
        for channel, sku in self.conn.execute(
                "SELECT channel, master_sku FROM listings WHERE master_sku = ANY(%s) "
                "AND removed_run IS NULL", (skus,)):
            on.setdefault(sku, set()).add(channel)
        for fp, channel, sku, fld in self.conn.execute(
                "SELECT fingerprint, channel, sku, field FROM findings WHERE sku = ANY(%s)",
                (skus,)):
            fps.setdefault((channel, sku), []).append((fp, fld))
        timeline: dict[str, list[tuple[int, bool]]] = {}
        every_fp = [fp for v in fps.values() for fp, _ in v]
        for fp, run_id, event in self.conn.execute(
                "SELECT fingerprint, run_id, event FROM finding_events WHERE fingerprint ="
                " ANY(%s) AND run_id IS NOT NULL ORDER BY id", (every_fp,)):
            timeline.setdefault(fp, []).append((run_id, event != "resolved"))

        def open_after(fp: str, run_id: int) -> bool:
            state = False
            for r, is_open in timeline.get(fp, ()):
                if r > run_id:
                    break
                state = is_open
            return state

        reads: dict[str, tuple[list[datetime], list[int]]] = {}
        for source, started, run_id in self.conn.execute(
                "SELECT source, started_at, run_id FROM run_sources WHERE status='complete' "
                "AND started_at IS NOT NULL AND started_at >= %s ORDER BY started_at",
                (since,)):
            starts, runs = reads.setdefault(source, ([], []))
            starts.append(started)
            runs.append(run_id)
        out: list[tuple[str, float | None]] = []
        for sku, fld, t0 in changes:
            shown_as = _PROPAGATION_FIELDS.get(fld, (fld,))
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
        q, args = ("SELECT id, started_at, finished_at, status, master_snapshot_id, summary"
                   " FROM runs"), []
        if before is not None:
            q += " WHERE id < %s"
            args.append(before)
        rows = self._dicts(q + " ORDER BY id DESC LIMIT %s", [*args, limit])
        for r in rows:
            r["summary"] = json.loads(r["summary"]) if r["summary"] else None
            r["sources"] = [x.to_dict() for x in self.run_sources(r["id"])]
        return rows

    _RANK = ("CASE severity WHEN 'critical' THEN 0 WHEN 'major' THEN 1 WHEN 'minor' "
             "THEN 2 ELSE 3 END")

    @staticmethod
    def _finding_dict(r: dict[str, Any]) -> dict[str, Any]:
        r["check"] = r.pop("check_name")
        r["details"] = json.loads(r["details"]) if r["details"] else {}
        return r

    def findings_page(self, filters: Mapping[str, Any], after: tuple[int, str] | None,
                      limit: int) -> list[dict[str, Any]]:
        where, args = [], []
        now = datetime.now(timezone.utc)
        cols = {"state": _SHOWN_STATE, "channel": "channel", "check": "check_name",
                "severity": "severity", "sku": "sku", "outcome": "outcome"}
        for key, value in filters.items():
            if value is not None:
                where.append(f"{cols[key]} = %s")
                args += [now, value] if key == "state" else [value]
        if after is not None:
            where.append(f"({self._RANK} > %s OR ({self._RANK} = %s AND fingerprint > %s))")
            args += [after[0], after[0], after[1]]
        q = (f"SELECT {self._FINDING_COLS}, {self._RANK} AS severity_rank, {_SHOWN_STATE}"
             " AS shown_state FROM findings")
        if where:
            q += " WHERE " + " AND ".join(where)
        rows = []
        for r in self._dicts(q + " ORDER BY severity_rank, fingerprint LIMIT %s",
                             [now, *args, limit]):
            r["state"] = r.pop("shown_state")
            rows.append(self._finding_dict(r))
        return rows

    def master_record(self, sku: str) -> dict[str, Any] | None:
        row = self.conn.execute("SELECT data, valid_from FROM master_records WHERE sku = %s",
                                (sku,)).fetchone()
        if row is None:
            return None
        return {**json.loads(row[0]), "valid_from": row[1].isoformat()}

    def sku_listings(self, sku: str) -> list[dict[str, Any]]:
        rows = self._dicts(
            "SELECT channel, key, data, fetched_at, evidence, master_sku, link_method, "
            "link_confidence, link_candidates, last_changed_run, last_seen_run, removed_run "
            "FROM listings WHERE master_sku = %s ORDER BY channel, key", [sku])
        for r in rows:
            r["data"] = json.loads(r["data"])
            r["link_candidates"] = json.loads(r["link_candidates"]) \
                if r["link_candidates"] else []
        return rows

    def link_suggestions(self, channel: str | None, after: tuple[str, str] | None,
                         limit: int) -> list[dict[str, Any]]:
        where, args = ["l.link_method = 'suggested'", "l.master_sku IS NULL",
                       "l.removed_run IS NULL"], []
        if channel is not None:
            where.append("l.channel = %s")
            args.append(channel)
        if after is not None:
            where.append("(l.channel > %s OR (l.channel = %s AND l.key > %s))")
            args += [after[0], after[0], after[1]]
        rows = self._dicts(
            "SELECT l.channel, l.key, l.link_confidence AS confidence, l.link_candidates AS"
            " candidates, n.reason, n.evidence, l.data FROM listings l LEFT JOIN link_notes n"
            " ON n.channel = l.channel AND n.listing_key = l.key WHERE "
            + " AND ".join(where) + " ORDER BY l.channel, l.key LIMIT %s", [*args, limit])
        for r in rows:
            r["candidates"] = json.loads(r["candidates"]) if r["candidates"] else []
            r["sku"] = r["candidates"][0] if r["candidates"] else None
            r["evidence"] = json.loads(r["evidence"]) if r["evidence"] else {}
            r["data"] = json.loads(r["data"])
        return rows

    def listing_link(self, channel: str, key: str) -> dict[str, Any] | None:
        rows = self._dicts(
            "SELECT master_sku AS sku, link_method AS method, link_confidence AS confidence, "
            "link_candidates AS candidates FROM listings WHERE channel=%s AND key=%s "
            "AND removed_run IS NULL", [channel, key])
        if not rows:
            return None
        r = rows[0]
        r["candidates"] = json.loads(r["candidates"]) if r["candidates"] else []
        return r

    def _triage(self, fingerprint: str, event: str, by: str | None, note: str | None,
                sets: str, args: tuple, now: datetime | None, allow_resolved: bool = False
                ) -> dict[str, Any]:
        at = now or datetime.now(timezone.utc)
        c = self.conn
        with c.transaction():
            row = c.execute("SELECT state, outcome, expected, actual, channel FROM findings "
                            "WHERE fingerprint=%s FOR UPDATE", (fingerprint,)).fetchone()
            if row is None:
                raise NotFound(f"no finding with fingerprint {fingerprint}")
            if row[0] == RESOLVED and not allow_resolved:
                raise Conflict(f"finding {fingerprint} is resolved: nothing to "
                                 f"{event.rstrip('d')}")
            channel = row[4]
            c.execute(f"UPDATE findings SET {sets} WHERE channel=%s AND fingerprint=%s",
                      (*args, channel, fingerprint))
            state = RESOLVED if event == "resolved" else row[0]
            c.execute("INSERT INTO finding_events (channel, fingerprint, run_id, at, event, state,"
                      " outcome, expected, actual, actor, note) VALUES"
                      " (%s,%s,NULL,%s,%s,%s,%s,%s,%s,%s,%s)",
                      (channel, fingerprint, at, event, state, row[1], row[2], row[3], by, note))
        return self.finding(fingerprint) or {}

    def ack_finding(self, fingerprint: str, by: str | None, note: str | None = None,
                    now: datetime | None = None) -> dict[str, Any]:
        at = now or datetime.now(timezone.utc)
        return self._triage(fingerprint, "acknowledged", by, note,
                            "ack_by=%s, ack_at=%s, ack_note=%s", (by, at, note), now)

    def snooze_finding(self, fingerprint: str, until: datetime, by: str | None,
                       now: datetime | None = None, note: str | None = None) -> dict[str, Any]:
        return self._triage(fingerprint, "snoozed", by, note or f"until {until.isoformat()}",
                            "snoozed_until=%s, snoozed_by=%s", (until, by), now)

    def resolve_finding(self, fingerprint: str, by: str | None, now: datetime | None = None,
                        note: str | None = None) -> dict[str, Any]:
        at = now or datetime.now(timezone.utc)
        return self._triage(fingerprint, "resolved", by, note,
                            "state=%s, resolved_at=%s, resolved_run=NULL", (RESOLVED, at), now)

    def finding(self, fingerprint: str) -> dict[str, Any] | None:
        """As the SQLite store's: the finding as a dict, with ``episode`` and the state
        people see (``stored_state``: open or resolved, as the lifecycle keeps it)."""
        rows = self._dicts(f"SELECT {self._FINDING_COLS} FROM findings WHERE fingerprint = %s",
                           [fingerprint])
        if not rows:
            return None
        r = self._finding_dict(rows[0])
        ep = self.conn.execute(
            "SELECT event, at, run_id FROM finding_events WHERE fingerprint=%s AND event IN "
            "('opened','reopened') ORDER BY id DESC LIMIT 1", (fingerprint,)).fetchone()
        since = ep[1].isoformat() if ep else None
        r["episode"] = {"event": ep[0], "at": since, "run_id": ep[2]} if ep else None
        r["stored_state"] = r["state"]
        from auditor.alerts.policy import display_state

        r["state"] = display_state({**r, "episode_event": ep[0] if ep else None,
                                    "since": since}, datetime.now(timezone.utc))
        return r

    # ----------------------------------------------------------------- link decisions
    def link_decisions(self, channel: str) -> dict[str, dict[str, Any]]:
        confirmed: dict[str, str] = {}
        rejected: dict[str, set[str]] = {}
        for key, sku, decision in self.conn.execute(
                "SELECT listing_key, sku, decision FROM link_decisions WHERE channel = %s",
                (channel,)):
            if decision == "confirmed":
                confirmed[key] = sku
            else:
                rejected.setdefault(key, set()).add(sku)
        return {"confirmed": confirmed, "rejected": rejected}

    def decide_link(self, channel: str, listing_key: str, sku: str, decision: str,
                    at: datetime, note: str | None = None) -> None:
        if decision not in ("confirmed", "rejected"):
            raise ValueError(f"decision must be confirmed or rejected, not {decision!r}")
        stamp = at.isoformat()
        c = self.conn
        with c.transaction():
            if decision == "confirmed":  # one confirmed master per listing
                c.execute("DELETE FROM link_decisions WHERE channel = %s AND listing_key = %s"
                          " AND (decision = 'confirmed' OR sku = %s)", (channel, listing_key, sku))
                c.execute("UPDATE listings SET master_sku = %s, link_method = 'confirmed',"
                          " link_confidence = 1.0, link_candidates = NULL"
                          " WHERE channel = %s AND key = %s", (sku, channel, listing_key))
                c.execute("DELETE FROM link_notes WHERE channel = %s AND listing_key = %s",
                          (channel, listing_key))
            else:
                c.execute("DELETE FROM link_decisions WHERE channel = %s AND listing_key = %s"
                          " AND sku = %s", (channel, listing_key, sku))
                row = c.execute("SELECT master_sku, link_candidates FROM listings"
                                " WHERE channel = %s AND key = %s FOR UPDATE",
                                (channel, listing_key)).fetchone()
                if row is not None and (row[0] == sku or (
                        row[0] is None and row[1] and sku in json.loads(row[1]))):
                    c.execute("UPDATE listings SET master_sku = NULL, link_method = 'none',"
                              " link_confidence = 0.0, link_candidates = NULL"
                              " WHERE channel = %s AND key = %s", (channel, listing_key))
                    c.execute("UPDATE link_notes SET method = 'none', reason = %s,"
                              " candidates = NULL WHERE channel = %s AND listing_key = %s",
                              (f"rejected {sku} by hand", channel, listing_key))
            c.execute("INSERT INTO link_decisions (channel, listing_key, sku, decision,"
                      " decided_at, note) VALUES (%s,%s,%s,%s,%s,%s)",
                      (channel, listing_key, sku, decision, stamp, note))

    def decided_links(self, channel: str | None = None) -> list[LinkDecisionRecord]:
        q = ("SELECT channel, listing_key, sku, decision, decided_at, note"
             " FROM link_decisions")
        args = [channel] if channel else []
        if channel:
            q += " WHERE channel = %s"
        return [LinkDecisionRecord(ch, key, sku, decision, datetime.fromisoformat(at), note)
                for ch, key, sku, decision, at, note in self.conn.execute(
                    q + " ORDER BY channel, listing_key, sku", args)]

    def listing_channels(self, listing_key: str) -> list[str]:
        return [r[0] for r in self.conn.execute(
            "SELECT channel FROM listings WHERE key = %s AND removed_run IS NULL"
            " ORDER BY channel", (listing_key,))]

    def save_link_notes(self, run_id: int, channel: str, links: Iterable[Link]) -> None:
        rows: dict[str, tuple] = {}
        for lk in links:  # the last note of a key wins, as INSERT OR REPLACE does
            rows[lk.listing_key] = (
                channel, lk.listing_key, run_id, lk.method.value, lk.confidence, lk.reason,
                json.dumps(list(lk.candidates)) if lk.candidates else None,
                codec.dumps(lk.evidence) if lk.evidence else None)
        with self.conn.transaction(), self.conn.cursor() as cur:
            cur.execute("DELETE FROM link_notes WHERE channel = %s", (channel,))
            if rows:
                self._copy(cur, "link_notes", ("channel", "listing_key", "run_id", "method",
                                               "score", "reason", "candidates", "evidence"),
                           rows.values())

    def link_states(self, channel: str | None = None, state: str | None = None
                    ) -> list[LinkStateRecord]:
        q = ("SELECT l.channel, l.key, l.master_sku, l.link_method, l.link_confidence,"
             " l.link_candidates, l.link_run, n.reason, n.evidence"
             " FROM listings l LEFT JOIN link_notes n"
             " ON n.channel = l.channel AND n.listing_key = l.key"
             " WHERE l.link_method IS NOT NULL AND l.removed_run IS NULL")
        args: list[Any] = []
        if channel:
            q += " AND l.channel = %s"
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
                for ch, key, sku, method, conf, cands, run, reason, evidence in self.conn.execute(
                    q + " ORDER BY l.channel, l.key", args)]

    # ----------------------------------------------------------------- presence holds
    def save_presence_hold(self, run_id: int, channel: str, kind: str, reason: str,
                           vanished: Sequence[str], held: Iterable[Finding],
                           checks_ran: Sequence[str]) -> None:
        self.conn.execute(
            "INSERT INTO presence_holds (run_id, channel, kind, reason, vanished, findings,"
            " checks, state) VALUES (%s,%s,%s,%s,%s,%s,%s,'held') ON CONFLICT (run_id, channel)"
            " DO UPDATE SET kind=excluded.kind, reason=excluded.reason,"
            " vanished=excluded.vanished, findings=excluded.findings, checks=excluded.checks,"
            " state='held', decided_run=NULL, decided_at=NULL",
            (run_id, channel, kind, reason, json.dumps(sorted(vanished)),
             codec.dumps([codec.finding_to_dict(f) for f in held]),
             json.dumps(list(checks_ran))))

    def presence_holds(self, run_id: int | None = None, channel: str | None = None,
                       state: str | None = None) -> list[PresenceHoldRecord]:
        where, args = [], []
        for col, val in (("run_id", run_id), ("channel", channel), ("state", state)):
            if val is not None:
                where.append(f"{col} = %s")
                args.append(val)
        q = ("SELECT run_id, channel, kind, reason, vanished, findings, checks, state,"
             " decided_run, decided_at FROM presence_holds"
             + (" WHERE " + " AND ".join(where) if where else ""))
        return [PresenceHoldRecord(run, ch, kind, reason, tuple(orjson.loads(van or "[]")),
                                   tuple(orjson.loads(fs or "[]")),
                                   tuple(orjson.loads(checks or "[]")), st, drun,
                                   parse_time(dat))
                for run, ch, kind, reason, van, fs, checks, st, drun, dat in self.conn.execute(
                    q + " ORDER BY run_id DESC, channel", args)]

    def previous_run_of(self, channel: str, before_run: int) -> int | None:
        return _first(self.conn.execute(
            "SELECT max(run_id) FROM run_sources WHERE source=%s AND run_id<%s",
            (channel, before_run)))

    def decide_presence_hold(self, run_id: int, channel: str, state: str,
                             decided_run: int | None, now: datetime) -> None:
        self.conn.execute(
            "UPDATE presence_holds SET state=%s, decided_run=%s, decided_at=%s "
            "WHERE run_id=%s AND channel=%s AND state='held'",
            (state, decided_run, now.isoformat(), run_id, channel))

    def accept_presence_hold(self, run_id: int, channel: str, now: datetime) -> dict[str, int]:
        """As the SQLite store's (see there)."""
        holds = self.presence_holds(run_id, channel)
        if not holds:
            raise StoreError(f"run {run_id} held nothing for channel {channel!r} "
                             f"(see `auditor runs`)")
        hold = holds[0]
        if hold.state != "held":
            raise StoreError(f"run {run_id}'s hold on channel {channel!r} is already "
                             f"{hold.state}")
        latest = _first(self.conn.execute(
            "SELECT max(run_id) FROM run_sources WHERE source=%s", (channel,)))
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
        c = self.conn
        with self._xact_lock(LOCK_FINDINGS, channel), c.cursor() as cur:
            observed = {fp for (fp,) in c.execute(
                "SELECT fingerprint FROM finding_observations WHERE channel=%s AND run_id=%s",
                (channel, run_id))}
            to_resolve = sorted(
                fp for fp, check, key in c.execute(
                    "SELECT fingerprint, check_name, listing_key FROM findings "
                    "WHERE channel=%s AND state=%s", (channel, OPEN))
                if fp not in observed and check in ran and (key is None or key in vanished))
            if to_resolve:
                c.execute("UPDATE findings SET state=%s, resolved_at=%s, resolved_run=%s "
                          "WHERE channel=%s AND fingerprint = ANY(%s)",
                          (RESOLVED, now, run_id, channel, to_resolve))
                self._copy(cur, "finding_events", _EVENT_COLS,
                           [(channel, fp, run_id, now, lifecycle.RESOLVED_EVENT, RESOLVED,
                             None, None, None) for fp in to_resolve])
        removed = self.mark_removed(run_id, channel, vanished)
        self.decide_presence_hold(run_id, channel, "accepted", None, now)
        return {"opened": counts.opened + counts.reopened, "resolved": len(to_resolve),
                "removed": removed}

    # ----------------------------------------------------------------- finding queries
    def query_findings(self, *, states: Sequence[str] = (), channels: Sequence[str] = (),
                       checks: Sequence[str] = (), severities: Sequence[str] = (),
                       sku: str | None = None, limit: int | None = None
                       ) -> list[FindingRecord]:
        where: list[str] = []
        args: list[Any] = []
        for col, vals in (("state", states), ("channel", channels), ("check_name", checks),
                          ("severity", severities)):
            if vals:
                where.append(f"{col} = ANY(%s)")
                args.append(list(vals))
        if sku is not None:
            where.append("sku = %s")
            args.append(sku)
        return self._finding_records(where, args, limit)

    def finding_values(self, column: str) -> set[str]:
        if column not in ("channel", "check_name", "severity", "state"):
            raise ValueError(f"not a finding filter column: {column}")
        return {v for (v,) in self.conn.execute(
            sql.SQL("SELECT DISTINCT {} FROM findings").format(sql.Identifier(column)))
            if v is not None}


    # ----------------------------------------------------------------- history reads
    # (the weekly report: each channel's state at a point in time, from finding events
    # and listing runs; as the SQLite store's, in PostgreSQL's SQL)
    _CLOCK = "COALESCE((summary::jsonb ->> 'at')::timestamptz, started_at)"

    def run_at(self, at: datetime) -> int | None:
        return _first(self.conn.execute(
            f"SELECT max(id) FROM runs WHERE {self._CLOCK} <= %s", (at,)))

    _STATE_CTES = (
        "last AS (SELECT fingerprint, max(id) AS id FROM finding_events "
        "WHERE at <= %(at)s GROUP BY fingerprint), "
        "open_at AS (SELECT f.channel, f.sku, f.check_name, f.listing_key FROM last "
        "JOIN finding_events e ON e.id = last.id AND e.fingerprint = last.fingerprint "
        "JOIN findings f ON f.fingerprint = last.fingerprint AND f.channel = e.channel "
        "WHERE e.state != 'resolved' AND e.outcome IN ('failed', 'warn') "
        "AND f.sku IS NOT NULL), "
        "missing AS (SELECT DISTINCT channel, sku FROM open_at "
        "WHERE check_name = 'presence' AND listing_key IS NULL), "
        "bad AS (SELECT DISTINCT channel, sku FROM open_at "
        "WHERE NOT (check_name = 'presence' AND listing_key IS NULL)), "
        "live AS (SELECT DISTINCT l.channel, l.master_sku AS sku FROM listings l "
        "WHERE l.master_sku IS NOT NULL AND l.link_method IN "
        "('sku','gtin','mpn','url','fuzzy','confirmed') "
        "AND l.first_seen_run <= %(run)s AND (l.removed_run IS NULL OR l.removed_run > %(run)s) "
        "AND NOT EXISTS (SELECT 1 FROM missing m WHERE m.channel = l.channel "
        "AND m.sku = l.master_sku))")

    def channel_health(self, at: datetime) -> dict[str, tuple[int, int]]:
        run = self.run_at(at)
        if run is None:
            return {}
        q = (f"WITH {self._STATE_CTES} "
             "SELECT live.channel, count(*), count(*) FILTER (WHERE bad.sku IS NULL) FROM live "
             "LEFT JOIN bad ON bad.channel = live.channel AND bad.sku = live.sku "
             "GROUP BY live.channel")
        return {ch: (n, int(ok or 0)) for ch, n, ok in
                self.conn.execute(q, {"run": run, "at": at})}

    def channel_skus(self, at: datetime) -> dict[str, tuple[set[str], set[str]]]:
        run = self.run_at(at)
        out: dict[str, tuple[set[str], set[str]]] = {}
        if run is None:
            return out
        q = (f"WITH {self._STATE_CTES} "
             "SELECT live.channel, live.sku, bad.sku IS NOT NULL FROM live "
             "LEFT JOIN bad ON bad.channel = live.channel AND bad.sku = live.sku")
        for ch, sku, is_bad in self.conn.execute(q, {"run": run, "at": at}):
            live, bad = out.setdefault(ch, (set(), set()))
            live.add(sku)
            if is_bad:
                bad.add(sku)
        return out

    def findings_at(self, at: datetime) -> list[OpenFinding]:
        q = ("WITH last AS (SELECT fingerprint, max(id) AS id FROM finding_events "
             "WHERE at <= %(at)s GROUP BY fingerprint), "
             "opened AS (SELECT fingerprint, max(at) AS since FROM finding_events "
             "WHERE at <= %(at)s AND event IN ('opened', 'reopened') GROUP BY fingerprint) "
             "SELECT f.fingerprint, f.check_name, f.channel, f.sku, f.listing_key, f.field,"
             " e.outcome, f.severity, e.expected, e.actual, f.message, f.details, opened.since "
             "FROM last JOIN finding_events e ON e.id = last.id"
             " AND e.fingerprint = last.fingerprint "
             "JOIN findings f ON f.fingerprint = last.fingerprint AND f.channel = e.channel "
             "LEFT JOIN opened ON opened.fingerprint = last.fingerprint "
             "WHERE e.state != 'resolved' AND e.outcome IN ('failed', 'warn') "
             "ORDER BY f.channel, f.check_name, f.sku NULLS FIRST, f.field")
        return [OpenFinding(fp, chk, ch, sku, key, fld, out, sev, exp, act, msg,
                            json.loads(det) if det else {}, since)
                for fp, chk, ch, sku, key, fld, out, sev, exp, act, msg, det, since
                in self.conn.execute(q, {"at": at})]

    def finding_activity(self, start: datetime, end: datetime) -> list[FindingActivity]:
        q = ("SELECT e.event, e.at, f.channel, f.check_name, f.sku, f.field, f.severity,"
             " (SELECT max(o.at) FROM finding_events o"
             "  WHERE o.fingerprint = e.fingerprint AND o.channel = e.channel AND o.id < e.id"
             "  AND o.event IN ('opened', 'reopened')) "
             "FROM finding_events e JOIN findings f ON f.fingerprint = e.fingerprint"
             " AND f.channel = e.channel "
             "WHERE e.at >= %s AND e.at < %s AND e.event IN ('opened', 'reopened', 'resolved') "
             "AND (e.outcome IS NULL OR e.outcome != 'not_evaluated') ORDER BY e.id")
        return [FindingActivity(*row) for row in self.conn.execute(q, (start, end))]

    def runs_between(self, start: datetime, end: datetime) -> list[RunRecord]:
        return [self._run_record(r) for r in self.conn.execute(
            "SELECT id, started_at, finished_at, status, master_snapshot_id, summary"
            f" FROM runs WHERE {self._CLOCK} >= %s AND {self._CLOCK} < %s ORDER BY id",
            (start, end))]

    def listing_keys(self, channel: str, skus: Iterable[str]) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for sku, key in self.conn.execute(
                "SELECT master_sku, key FROM listings WHERE channel = %s AND removed_run IS "
                "NULL AND master_sku = ANY(%s) ORDER BY key", (channel, list(skus))):
            out.setdefault(sku, []).append(key)
        return out

    def sales_units(self, names: Sequence[str]) -> dict[str, float]:
        out: dict[str, float] = {}
        for name in names:
            for sku, v in self.conn.execute(
                    "SELECT master_sku, data::jsonb -> 'attributes' ->> %s FROM listings"
                    " WHERE master_sku IS NOT NULL AND removed_run IS NULL"
                    " AND data::jsonb -> 'attributes' ->> %s IS NOT NULL", (name, name)):
                try:
                    out[sku] = out.get(sku, 0.0) + float(str(v).replace(",", "."))
                except ValueError:
                    continue
        return out

    def run_finding_changes(self, run_id: int) -> list[RunFindingChange]:
        return [RunFindingChange(*row) for row in self.conn.execute(
            "SELECT e.event, f.channel, f.check_name, f.sku, f.listing_key, f.field,"
            " f.severity, e.outcome, f.message FROM finding_events e"
            " JOIN findings f ON f.fingerprint = e.fingerprint AND f.channel = e.channel"
            " WHERE e.run_id = %s AND e.event IN ('opened', 'reopened', 'resolved')"
            " AND (e.outcome IS NULL OR e.outcome != 'not_evaluated')"
            " ORDER BY f.channel, e.event, f.check_name, f.sku NULLS FIRST", (run_id,))]

    # ----------------------------------------------------------------- web UI reads
    _SORTS = {
        "impact": ("CASE f.severity WHEN 'critical' THEN 0 WHEN 'major' THEN 1 "
                   "WHEN 'minor' THEN 2 ELSE 3 END, f.first_seen_at, f.fingerprint"),
        "age": "f.first_seen_at, f.fingerprint",
        "newest": "f.last_seen_at DESC, f.fingerprint",
        "sku": "f.sku NULLS FIRST, f.channel, f.check_name, f.fingerprint",
    }

    @staticmethod
    def _record(r: Sequence[Any]) -> FindingRecord:
        (fp, chk, ch, k, lk, fld, out, sev, exp, act, score, msg, det, st, first, last, frun,
         lrun, res_at, res_run, ack_by, ack_at, ack_note, snoozed, snoozed_by, alert_state,
         alert_reason) = r
        return FindingRecord(fp, chk, ch, k, lk, fld, out, sev, exp, act, score, msg,
                             orjson.loads(det) if det else {}, st, first, last, frun, lrun,
                             res_at, res_run, ack_by, ack_at, ack_note, snoozed, snoozed_by,
                             alert_state, alert_reason)

    def search_findings(self, channels: Sequence[str] = (), checks: Sequence[str] = (),
                        severities: Sequence[str] = (), states: Sequence[str] = (),
                        text: str | None = None, sort: str = "impact", limit: int = 50,
                        offset: int = 0) -> FindingPage:
        where: list[str] = []
        args: list[Any] = []
        for col, vals in (("f.channel", channels), ("f.check_name", checks),
                          ("f.severity", severities)):
            if vals:
                where.append(f"{col} = ANY(%s)")
                args.append(list(vals))
        if states:  # the state people see: open, acknowledged, snoozed, resolved ...
            where.append(f"{_SHOWN_STATE} = ANY(%s)")
            args += [datetime.now(timezone.utc), list(states)]
        if text:  # ILIKE: SQLite's LIKE ignores ASCII case too
            like = "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            where.append("(f.sku ILIKE %s OR f.listing_key ILIKE %s OR "
                         "m.data::jsonb ->> 'title' ILIKE %s)")
            args += [like, like, like]
        cond = (" WHERE " + " AND ".join(where)) if where else ""
        base = "FROM findings f LEFT JOIN master_records m ON m.sku = f.sku" + cond
        total = _first(self.conn.execute(f"SELECT count(*) {base}", args))
        cols = ", ".join("f." + c.strip() for c in self._FINDING_COLS.split(","))
        rows = self.conn.execute(
            f"SELECT {cols} {base} ORDER BY {self._SORTS.get(sort, self._SORTS['impact'])} "
            f"LIMIT %s OFFSET %s", [*args, int(limit), int(offset)]).fetchall()
        return FindingPage(tuple(self._record(r) for r in rows), total)

    def finding_record(self, fingerprint: str) -> FindingRecord | None:
        row = self.conn.execute(f"SELECT {self._FINDING_COLS} FROM findings"
                                f" WHERE fingerprint = %s", (fingerprint,)).fetchone()
        return self._record(row) if row else None

    def master_for(self, sku: str) -> MasterRecord | None:
        row = self.conn.execute("SELECT data FROM master_records WHERE sku = %s",
                                (sku,)).fetchone()
        return codec.master_from_dict(orjson.loads(row[0])) if row else None

    def product_listings(self, sku: str) -> list[ProductListing]:
        q = ("SELECT l.channel, l.key, l.data, l.fetched_at, l.evidence, l.link_method,"
             " l.link_confidence, l.removed_run IS NOT NULL,"
             " COALESCE((r1.summary::jsonb ->> 'at')::timestamptz, r1.started_at),"
             " COALESCE((r2.summary::jsonb ->> 'at')::timestamptz, r2.started_at)"
             " FROM listings l LEFT JOIN runs r1 ON r1.id = l.first_seen_run"
             " LEFT JOIN runs r2 ON r2.id = COALESCE(l.last_changed_run, l.first_seen_run)"
             " WHERE l.master_sku = %s ORDER BY l.channel, l.key")
        return [ProductListing(ch, key, codec.listing_from_row(d, fetched, ev), method, conf,
                               bool(removed), first, changed)
                for ch, key, d, fetched, ev, method, conf, removed, first, changed
                in self.conn.execute(q, (sku,))]

    def finding_channels(self) -> list[str]:
        return [c for (c,) in self.conn.execute(
            "SELECT DISTINCT channel FROM findings ORDER BY 1")]

    def listing(self, channel: str, key: str) -> Listing | None:
        """One listing's latest version, removed or not."""
        row = self.conn.execute("SELECT data, fetched_at, evidence FROM listings WHERE"
                                " channel = %s AND key = %s", (channel, key)).fetchone()
        return codec.listing_from_row(*row) if row else None

    # ----------------------------------------------------------------- alerts: triage
    # (auditor.alerts; as the SQLite store's. Times in dict rows are ISO 8601 text.)
    def find_fingerprint(self, prefix: str) -> str:
        """The one finding fingerprint starting with ``prefix`` (as shown, often shortened)."""
        prefix = prefix.strip().lower()
        if not re.fullmatch(r"[0-9a-f]{4,40}", prefix):
            raise BadRequest(f"{prefix!r} is not a finding fingerprint (hex, 4 characters or more)")
        rows = [r[0] for r in self.conn.execute(
            "SELECT DISTINCT fingerprint FROM findings WHERE fingerprint >= %s AND"
            " fingerprint < %s LIMIT 2", (prefix, prefix + "g"))]
        if not rows:
            raise NotFound(f"no finding with fingerprint {prefix}")
        if len(rows) > 1:
            raise Conflict(f"fingerprint {prefix} is ambiguous: give more characters")
        return rows[0]

    # A finding's current episode: its last opened or reopened event (``f``: findings).
    _EPISODE = ("LATERAL (SELECT x.event, x.at, x.run_id FROM finding_events x"
                " WHERE x.channel = f.channel AND x.fingerprint = f.fingerprint"
                " AND x.event IN ('opened','reopened') ORDER BY x.id DESC LIMIT 1) e")

    def finding_episodes(self, fingerprints: Iterable[str] | None = None
                         ) -> dict[str, tuple[str, str, int | None, int]]:
        """Each finding's current episode: (opened|reopened, since, run, runs), runs
        counting the complete reads of its channel since the episode began. Without
        ``fingerprints``: every finding not resolved."""
        q = ("SELECT f.fingerprint, f.channel, e.event, e.at, e.run_id FROM findings f"
             f" JOIN {self._EPISODE} ON true")
        if fingerprints is None:
            rows = self.conn.execute(q + " WHERE f.state != %s", (RESOLVED,)).fetchall()
        else:
            rows = self.conn.execute(q + " WHERE f.fingerprint = ANY(%s)",
                                     (list(dict.fromkeys(fingerprints)),)).fetchall()
        return self._episodes((fp, ch, ev, at.isoformat(), run)
                              for fp, ch, ev, at, run in rows)

    def _episodes(self, rows: Iterable[tuple[str, str, str, str, int | None]]
                  ) -> dict[str, tuple[str, str, int | None, int]]:
        """``finding_episodes``' value from (fingerprint, channel, event, since, run)."""
        rows = list(rows)
        complete: dict[str, list[int]] = {}
        for ch in {r[1] for r in rows}:
            complete[ch] = [r for (r,) in self.conn.execute(
                "SELECT run_id FROM run_sources WHERE source=%s AND status='complete' "
                "ORDER BY run_id", (ch,))]
        out = {}
        for fp, ch, ev, at, run in rows:
            runs = complete.get(ch, [])
            n = len(runs) - bisect.bisect_left(runs, run) if run is not None else 1
            out[fp] = (ev, at, run, max(1, n))
        return out

    def alert_candidates(self) -> list[dict[str, Any]]:
        """Every finding not resolved, with its current episode (``since``, ``runs``, as
        ``finding_episodes`` gives it), read in the same query: one pass over the
        findings, not two."""
        cols = ", ".join(f"f.{c}" for c in self._FINDING_COLS.split(", "))
        rows = self._dicts(
            f"SELECT {cols}, e.event AS ep_event, e.at AS ep_at, e.run_id AS ep_run"
            f" FROM findings f LEFT JOIN {self._EPISODE} ON true"
            " WHERE f.state != %s AND f.outcome != %s"
            " ORDER BY f.fingerprint", [RESOLVED, Outcome.NOT_EVALUATED.value])
        found = []
        for r in rows:
            ev, at, run = r.pop("ep_event"), r.pop("ep_at"), r.pop("ep_run")
            if ev is not None:
                found.append((r["fingerprint"], r["channel"], ev, at, run))
            r["check"] = r.pop("check_name")
            # (orjson: as the SQLite store reads them)
            r["details"] = orjson.loads(r["details"]) if r["details"] else {}
        episodes = self._episodes(found)
        return [with_episode(r, episodes) for r in rows]

    def findings_by_fingerprint(self, fingerprints: Iterable[str]) -> dict[str, dict[str, Any]]:
        fps = list(dict.fromkeys(fingerprints))
        if not fps:
            return {}
        return {r["fingerprint"]: self._finding_dict(r) for r in self._dicts(
            f"SELECT {self._FINDING_COLS} FROM findings WHERE fingerprint = ANY(%s)", [fps])}

    def recent_master_changes(self, since: datetime) -> list[tuple[str, str, str]]:
        """(sku, field, changed_at) of master changes at or after ``since``."""
        return [(sku, fld, at.isoformat()) for sku, fld, at in self.conn.execute(
            "SELECT sku, field, changed_at FROM master_changes WHERE changed_at >= %s"
            " ORDER BY id", (since,))]

    def listing_context(self, pairs: Iterable[tuple[str, str]]) -> dict[tuple[str, str], dict]:
        """For (channel, listing key): the listing's ``url`` and ``title``."""
        wanted = list(dict.fromkeys(pairs))
        if not wanted:
            return {}
        out: dict[tuple[str, str], dict] = {}
        for ch, key, data in self.conn.execute(
                "SELECT l.channel, l.key, l.data FROM listings l JOIN unnest(%s::text[],"
                " %s::text[]) AS w(channel, key) ON l.channel = w.channel AND l.key = w.key",
                ([p[0] for p in wanted], [p[1] for p in wanted])):
            d = orjson.loads(data)
            out[(ch, key)] = {"url": d.get("url"), "title": d.get("title")}
        return out

    def master_titles(self, skus: Iterable[str]) -> dict[str, str | None]:
        wanted = [s for s in dict.fromkeys(skus) if s]
        if not wanted:
            return {}
        return {sku: orjson.loads(data).get("title") for sku, data in self.conn.execute(
            "SELECT sku, data FROM master_records WHERE sku = ANY(%s)", (wanted,))}

    def source_failure_streaks(self) -> dict[str, dict[str, Any]]:
        """Each source's latest recorded result, with ``failing_runs``: how many of its
        latest results in a row were not complete."""
        out: dict[str, dict[str, Any]] = {}
        for r in self._dicts("SELECT run_id, source, status, listings, errors, message,"
                             " started_at, finished_at FROM run_sources"
                             " ORDER BY source, run_id DESC"):
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
        return int(_first(self.conn.execute(
            "INSERT INTO silences (matchers, starts_at, ends_at, created_by, comment,"
            " created_at) VALUES (%s,%s,%s,%s,%s,%s) RETURNING id",
            (codec.dumps(dict(matchers)), starts_at, ends_at, by, comment,
             now or datetime.now(timezone.utc)))))

    def silences(self, active_at: datetime | None = None) -> list[dict[str, Any]]:
        """Silences, newest first; only those in force at ``active_at`` when given."""
        q, args = ("SELECT id, matchers, starts_at, ends_at, created_by, comment, created_at"
                   " FROM silences"), []
        if active_at is not None:
            q += " WHERE starts_at <= %s AND ends_at > %s"
            args = [active_at, active_at]
        rows = self._dicts(q + " ORDER BY id DESC", args)
        for r in rows:
            r["matchers"] = json.loads(r["matchers"])
        return rows

    def expire_silence(self, silence_id: int, now: datetime | None = None) -> bool:
        at = now or datetime.now(timezone.utc)
        with self.conn.transaction():
            n = self.conn.execute("UPDATE silences SET ends_at=%s WHERE id=%s AND ends_at>%s",
                                  (at, silence_id, at)).rowcount
            if n:
                self.conn.execute(
                    "INSERT INTO alert_cursors (name, value) VALUES ('silences_expired', '1')"
                    " ON CONFLICT (name) DO UPDATE SET"
                    " value = (alert_cursors.value::bigint + 1)::text")
        return n > 0

    def alert_inputs(self) -> str:
        """A token that changes whenever anything an alert evaluation reads changes
        (finding events, source results, master changes, silences). Besides the highest
        ids, the number of source results: ids are handed out before commit, so a
        channel's findings committed after another's higher ids would not move a maximum,
        but each channel's read records its result after its findings."""
        row = self.conn.execute(
            "SELECT (SELECT max(id) FROM finding_events), (SELECT max(seq) FROM run_sources),"
            " (SELECT count(*) FROM run_sources), (SELECT max(id) FROM master_changes),"
            " (SELECT max(id) FROM silences),"
            " (SELECT max(value) FROM alert_cursors WHERE name='silences_expired')").fetchone()
        return ":".join(str(p) for p in (row or ()))

    def alert_cursor(self, name: str) -> str | None:
        row = self.conn.execute("SELECT value FROM alert_cursors WHERE name=%s",
                                (name,)).fetchone()
        return row[0] if row else None

    # ----------------------------------------------------------------- alerts: outbox
    @contextlib.contextmanager
    def alert_snapshot(self) -> Iterator[None]:
        """A read-only REPEATABLE READ transaction: everything an alert evaluation reads
        comes from one snapshot of the store, and no lock is held meanwhile."""
        c = self.conn
        c.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        try:
            yield
        finally:
            c.execute("ROLLBACK")  # nothing was written

    @contextlib.contextmanager
    def delivery_lock(self) -> Iterator[bool]:
        """Yields True when this process may deliver the outbox: a session advisory lock
        on a connection of its own, which goes with its session when the process dies."""
        conn = connect(self.url, f"auditor alert delivery pid {os.getpid()}")
        try:
            yield bool(_first(conn.execute(
                "SELECT pg_try_advisory_lock(%s, hashtext(current_schema()))",
                (LOCK_DELIVERY,))))
        finally:
            conn.close()  # ends the session: the lock goes with it

    def alert_groups(self) -> dict[tuple[str, str], dict[str, Any]]:
        out = {}
        for r in self._dicts("SELECT receiver, group_key, labels, members, seq, last_sent_at"
                             " FROM alert_groups"):
            r["labels"] = json.loads(r["labels"])
            r["members"] = json.loads(r["members"])
            out[(r["receiver"], r["group_key"])] = r
        return out

    def record_alerts(self, groups: Iterable[Mapping[str, Any]], drop: Iterable[tuple[str, str]],
                      notifications: Iterable[Mapping[str, Any]],
                      finding_states: Iterable[tuple[str | None, str | None, str]],
                      now: datetime, generation: str, cursors: Mapping[str, str]
                      ) -> int | None:
        """As the SQLite store's: one transaction, under an advisory lock so that two
        evaluations record one after the other; None (nothing written) when another
        evaluation was recorded since ``generation``."""
        c = self.conn
        with c.transaction(), c.cursor() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(%s, hashtext(current_schema()))",
                        (LOCK_ALERTS,))
            row = cur.execute("SELECT value FROM alert_cursors WHERE name='generation'"
                              ).fetchone()
            if (row[0] if row else "0") != generation:
                return None
            cur.executemany(
                "INSERT INTO alert_groups (receiver, group_key, labels, members, seq,"
                " last_sent_at) VALUES (%s,%s,%s,%s,%s,%s) ON CONFLICT (receiver, group_key)"
                " DO UPDATE SET labels=excluded.labels, members=excluded.members,"
                " seq=excluded.seq, last_sent_at=excluded.last_sent_at",
                [(g["receiver"], g["group_key"], codec.dumps(g["labels"]),
                  codec.dumps(g["members"]), g["seq"], g["last_sent_at"]) for g in groups])
            cur.executemany("DELETE FROM alert_groups WHERE receiver=%s AND group_key=%s",
                            list(drop))
            n = 0
            for r in notifications:
                n += cur.execute(
                    "INSERT INTO outbox (created_at, kind, fingerprint, payload, status,"
                    " attempts, next_attempt_at, receiver, idempotency_key)"
                    " VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s)"
                    " ON CONFLICT (idempotency_key) DO NOTHING",
                    (now, "notification", r["group_key"], codec.dumps(r["payload"]), "pending",
                     0, now, r["receiver"], r["idempotency_key"])).rowcount
            states = sorted(finding_states, key=_KEY2)
            if states:
                cur.execute(
                    "UPDATE findings f SET alert_state=s.st, alert_reason=s.why FROM"
                    " unnest(%s::text[], %s::text[], %s::text[]) AS s(st, why, fp)"
                    " WHERE f.fingerprint = s.fp",
                    ([x[0] for x in states], [x[1] for x in states], [x[2] for x in states]))
            cur.executemany(
                "INSERT INTO alert_cursors (name, value) VALUES (%s,%s) ON CONFLICT (name)"
                " DO UPDATE SET value=excluded.value",
                [*cursors.items(), ("generation", str(int(generation) + 1))])
        return n

    def outbox(self, statuses: Sequence[str] | None = ("pending", "failed"),
               limit: int = 1000) -> list[dict[str, Any]]:
        """Outbox rows (oldest first), by default those not yet delivered."""
        q, args = ("SELECT id, created_at, kind, fingerprint, payload, status, attempts,"
                   " next_attempt_at, last_error, receiver, idempotency_key, sent_at"
                   " FROM outbox"), []
        if statuses:
            q += " WHERE status = ANY(%s)"
            args = [list(statuses)]
        rows = self._dicts(q + " ORDER BY id LIMIT %s", [*args, limit])
        for r in rows:
            r["payload"] = json.loads(r["payload"])
        return rows

    def outbox_sent(self, row_id: int, now: datetime) -> None:
        self.conn.execute("UPDATE outbox SET status='sent', sent_at=%s, attempts=attempts+1,"
                          " last_error=NULL WHERE id=%s", (now, row_id))

    def outbox_failed(self, row_id: int, error: str, next_attempt_at: datetime | None) -> None:
        """A failed attempt: retried at ``next_attempt_at``, or given up (None)."""
        self.conn.execute(
            "UPDATE outbox SET attempts=attempts+1, last_error=%s, next_attempt_at=%s, "
            "status=%s WHERE id=%s",
            (error[:1000], next_attempt_at, "pending" if next_attempt_at else "failed",
             row_id))

    def outbox_retry_failed(self, now: datetime) -> int:
        return self.conn.execute(
            "UPDATE outbox SET status='pending', next_attempt_at=%s, attempts=0 "
            "WHERE status='failed'", (now,)).rowcount

    # ----------------------------------------------------------------- alerts: propagation
    def sync_propagation(self, checks_by_field: Mapping[str, Sequence[str]],
                         channels: Sequence[str] | None = None) -> dict[str, int]:
        """As the SQLite store's (see there): every master change of a field some check
        compares gets a row per channel listing the SKU and per check, caught up at the
        first complete read of the channel, in or after the run that imported the change,
        in which that check had nothing against the SKU; ``channels``: only these
        channels' rows (the same rows). Idempotent; one caller at a time (an advisory
        lock)."""
        c = self.conn
        pairs = [(f, chk) for f, checks in checks_by_field.items() for chk in checks]
        if not pairs:
            return {"added": 0, "caught_up": 0}
        with self._xact_lock(LOCK_ALERTS, "propagation"), c.cursor() as cur:
            marks = propagation_cursors(cur.execute(
                "SELECT name, value FROM alert_cursors WHERE name = 'master_changes'"
                " OR left(name, 15) = 'master_changes:'").fetchall())
            top = _first(cur.execute("SELECT max(id) FROM master_changes")) or 0
            # Changes already turned into rows, per channel: the channel's own cursor (set
            # by a sync of that channel alone) or the cursor of every channel.
            own = {ch: max(n, marks.get(None, 0)) for ch, n in marks.items() if ch is not None}
            names = None if channels is None else sorted(set(channels))
            since = [marks.get(None, 0)] if names is None else \
                [own.get(ch, marks.get(None, 0)) for ch in names]
            added = 0
            if top > min(since):
                only = "" if names is None else " AND channel = ANY(%(names)s)"
                added = cur.execute(
                    "INSERT INTO propagation (change_id, channel, sku, field, check_name,"
                    " changed_at, snapshot_id) SELECT mc.id, l.channel, mc.sku, mc.field,"
                    " fc.check_name, mc.changed_at, mc.snapshot_id FROM master_changes mc"
                    " JOIN unnest(%(fields)s::text[], %(checks)s::text[]) AS fc(field,"
                    " check_name) ON fc.field = mc.field JOIN (SELECT DISTINCT channel,"
                    " master_sku FROM listings WHERE master_sku IS NOT NULL AND removed_run"
                    f" IS NULL{only}) l ON l.master_sku = mc.sku"
                    " LEFT JOIN unnest(%(own)s::text[], %(own_since)s::bigint[]) AS"
                    " oc(channel, since) ON oc.channel = l.channel"
                    " WHERE mc.id > %(low)s AND mc.id <= %(top)s"
                    " AND mc.id > coalesce(oc.since, %(all)s)"
                    " ON CONFLICT (change_id, channel, check_name) DO NOTHING",
                    {"fields": [p[0] for p in pairs], "checks": [p[1] for p in pairs],
                     "names": names, "own": list(own), "own_since": list(own.values()),
                     "low": min(since), "top": top, "all": marks.get(None, 0)}).rowcount
            if names is None:
                cur.execute("DELETE FROM alert_cursors WHERE left(name, 15) = 'master_changes:'")
                cur.execute("INSERT INTO alert_cursors (name, value) VALUES"
                            " ('master_changes', %s) ON CONFLICT (name) DO UPDATE"
                            " SET value=excluded.value", (str(top),))
            else:
                cur.executemany("INSERT INTO alert_cursors (name, value) VALUES (%s, %s)"
                                " ON CONFLICT (name) DO UPDATE SET value=excluded.value",
                                [(f"master_changes:{ch}", str(top)) for ch, n
                                 in zip(names, since, strict=True) if n < top])
            first_runs: dict[int, int] = dict(cur.execute(
                "SELECT master_snapshot_id, min(id) FROM runs WHERE master_snapshot_id IS NOT"
                " NULL GROUP BY master_snapshot_id").fetchall())
            snaps = sorted(first_runs)
            suffix_min: list[int] = []  # the first run on snapshot snaps[i] or a later one
            for snap_id in reversed(snaps):
                suffix_min.append(min(first_runs[snap_id], suffix_min[-1]) if suffix_min
                                  else first_runs[snap_id])
            suffix_min.reverse()
            pending: dict[str, list[list]] = {}
            for pid, ch, sku, chk, at, snap, checked in cur.execute(
                    "SELECT id, channel, sku, check_name, changed_at, snapshot_id, checked_run"
                    " FROM propagation WHERE caught_up_at IS NULL"
                    + ("" if names is None else " AND channel = ANY(%s)"),
                    () if names is None else (names,)).fetchall():
                i = bisect.bisect_left(snaps, snap)
                if i == len(snaps):
                    continue
                pending.setdefault(ch, []).append(
                    [pid, sku, chk, at, max(suffix_min[i], (checked or 0) + 1)])
            done: list[tuple] = []
            checked_rows: list[tuple] = []
            for ch, rows in pending.items():
                start = min(r[4] for r in rows)
                runs = cur.execute("SELECT run_id, finished_at FROM run_sources WHERE"
                                   " source=%s AND status='complete' AND run_id >= %s"
                                   " ORDER BY run_id", (ch, start)).fetchall()
                open_rows = rows
                for run_id, finished in runs:
                    bad = set(cur.execute(
                        "SELECT f.sku, f.check_name FROM finding_observations o JOIN findings f"
                        " ON f.channel = o.channel AND f.fingerprint = o.fingerprint"
                        " WHERE o.channel=%s AND o.run_id=%s AND o.outcome IN"
                        " ('failed','warn')", (ch, run_id)).fetchall())
                    left = []
                    for r in open_rows:
                        if r[4] <= run_id and (r[1], r[2]) not in bad:
                            fin = finished or r[3]
                            lat = max(0.0, (fin - r[3]).total_seconds())
                            done.append((fin, run_id, lat, run_id, r[0]))
                        else:
                            left.append(r)
                    open_rows = left
                    if not open_rows:
                        break
                if runs:
                    checked_rows += [(runs[-1][0], r[0]) for r in open_rows]
            cur.executemany("UPDATE propagation SET caught_up_at=%s, caught_up_run=%s,"
                            " latency_seconds=%s, checked_run=%s WHERE id=%s", done)
            cur.executemany("UPDATE propagation SET checked_run=%s WHERE id=%s", checked_rows)
        return {"added": added, "caught_up": len(done)}

    def propagation_rows(self, channel: str | None = None, pending: bool | None = None,
                         limit: int | None = None) -> list[dict[str, Any]]:
        """Propagation rows (newest first): channel, sku, field, check_name, changed_at,
        caught_up_at, latency_seconds (None while the channel has not caught up)."""
        where: list[str] = []
        args: list[Any] = []
        if channel is not None:
            where.append("channel = %s")
            args.append(channel)
        if pending is not None:
            where.append("caught_up_at IS NULL" if pending else "caught_up_at IS NOT NULL")
        q = ("SELECT id, change_id, channel, sku, field, check_name, changed_at, snapshot_id,"
             " caught_up_at, caught_up_run, latency_seconds, checked_run FROM propagation"
             + (" WHERE " + " AND ".join(where) if where else ""))
        q += " ORDER BY id DESC" + (f" LIMIT {int(limit)}" if limit else "")
        return self._dicts(q, args)

    def present_keys(self, channel: str) -> set[str]:
        return {k for (k,) in self.conn.execute(
            "SELECT key FROM listings WHERE channel = %s AND removed_run IS NULL", (channel,))}

    def earlier_link_notes(self, channel: str) -> list[tuple]:
        """The channel's link notes whose listing is unchanged since the note's run."""
        return [tuple(r) for r in self.conn.execute(
            "SELECT n.listing_key, n.run_id, l.hash, n.method, n.score, n.reason,"
            " n.candidates, n.evidence FROM link_notes n JOIN listings l"
            " ON l.channel = n.channel AND l.key = n.listing_key"
            " WHERE n.channel = %s AND l.last_changed_run <= n.run_id", (channel,))]

    # ----------------------------------------------------------------- alerts: incremental
    # As the SQLite store's (findings_alert and findings_snoozed: migration 5).
    _ALERTABLE = "state != 'resolved' AND outcome != 'not_evaluated'"

    def alert_positions(self, previous: Mapping[str, Any] | None) -> dict[str, Any]:
        """Where the next incremental evaluation resumes (``events``, ``master``: every
        finding event and master change up to these ids has been evaluated). Ids are
        handed out before commit, so a transaction still in progress when this snapshot
        was taken may commit lower ids than the highest visible. So the highest ids
        visible become the positions only when no transaction was in progress; else the
        highest ids the previous evaluation saw do, once every transaction in progress
        then has ended; else the previous positions stay (the next evaluation reads those
        events again: evaluating a finding twice is harmless)."""
        row = self.conn.execute(
            "SELECT (SELECT max(x::text::bigint) FROM pg_snapshot_xip(pg_current_snapshot())"
            " AS x), pg_snapshot_xmin(pg_current_snapshot())::text::bigint,"
            " (SELECT max(id) FROM finding_events), (SELECT max(id) FROM master_changes)"
        ).fetchone()
        busy, xmin, ev, mc = row if row else (None, 0, None, None)
        seen = {"events": int(ev or 0), "master": int(mc or 0), "busy": busy}
        prev = dict(previous or {})
        if busy is None:
            return {**seen, "seen": seen}
        old = prev.get("seen") or {}
        if old and (old.get("busy") is None or int(old["busy"]) < int(xmin)):
            return {"events": int(old["events"]), "master": int(old["master"]), "seen": seen}
        return {"events": int(prev.get("events", 0)), "master": int(prev.get("master", 0)),
                "seen": seen}

    def alert_touched(self, events_after: int, master_after: int, snoozed_after: datetime,
                      limit: int) -> dict[str, tuple[str, str, str, str | None, bool]] | None:
        """As the SQLite store's."""
        c = self.conn
        if _first(c.execute("SELECT count(*) FROM finding_events WHERE id > %s",
                            (events_after,))) > limit:
            return None
        fps = {fp for (fp,) in c.execute(
            "SELECT fingerprint FROM finding_events WHERE id > %s", (events_after,))}
        fps.update(fp for (fp,) in c.execute(
            f"SELECT fingerprint FROM findings WHERE {self._ALERTABLE} AND alert_state = %s",
            ("pending",)))
        fps.update(fp for (fp,) in c.execute(
            "SELECT fingerprint FROM findings WHERE snoozed_until IS NOT NULL"
            " AND snoozed_until > %s", (snoozed_after,)))
        fps.update(fp for (fp,) in c.execute(
            f"SELECT fingerprint FROM findings WHERE {self._ALERTABLE} AND sku IN"
            " (SELECT sku FROM master_changes WHERE id > %s)", (master_after,)))
        return {fp: (ch, check, fld, ast, bool(ok)) for fp, ch, check, fld, ast, ok in c.execute(
            f"SELECT fingerprint, channel, check_name, field, alert_state, {self._ALERTABLE}"
            " FROM findings WHERE fingerprint = ANY(%s)", (sorted(fps),))}

    def alert_rows(self, fingerprints: Iterable[str]) -> list[dict[str, Any]]:
        """As the SQLite store's."""
        fps = sorted(set(fingerprints))
        if not fps:
            return []
        episodes = self.finding_episodes(fps)
        rows = []
        for r in self._dicts(f"SELECT {self._FINDING_COLS} FROM findings WHERE"
                             f" {self._ALERTABLE} AND fingerprint = ANY(%s)"
                             " ORDER BY fingerprint", [fps]):
            r = self._finding_dict(r)
            rows.append(with_episode(r, episodes))
        return rows

    def alert_firing(self, groups: Iterable[tuple[str, str, str]]) -> list[str]:
        """As the SQLite store's."""
        wanted = sorted(set(groups))
        if not wanted:
            return []
        return [fp for (fp,) in self.conn.execute(
            "SELECT f.fingerprint FROM findings f JOIN unnest(%s::text[], %s::text[],"
            " %s::text[]) AS g(channel, check_name, field) ON f.channel = g.channel"
            " AND f.check_name = g.check_name AND f.field = g.field"
            " WHERE f.state != 'resolved' AND f.outcome != 'not_evaluated'"
            " AND f.alert_state = 'firing'",
            ([g[0] for g in wanted], [g[1] for g in wanted], [g[2] for g in wanted]))]

    def alert_state_counts(self) -> dict[str | None, int]:
        """As the SQLite store's."""
        return {st: n for st, n in self.conn.execute(
            f"SELECT alert_state, count(*) FROM findings WHERE {self._ALERTABLE}"
            " GROUP BY alert_state")}


# Columns of the rows the write paths COPY, in the order their tuples hold them.
_MASTER_COLS = ("sku", "hash", "data", "snapshot_id", "valid_from")
_CHANGE_COLS = ("snapshot_id", "sku", "field", "old", "new", "changed_at")
_UP_COLS = ("channel", "key", "hash", "data", "first_seen_run", "last_seen_run",
            "last_changed_run", "fetched_at", "evidence", "master_sku", "link_method",
            "link_confidence", "link_candidates", "link_run")
_SEEN_COLS = ("last_seen_run", "fetched_at", "evidence", "master_sku", "link_method",
              "link_confidence", "link_candidates", "link_run", "channel", "key")
_LINK_COLS = ("master_sku", "link_method", "link_confidence", "link_candidates", "link_run",
              "channel", "key")
_FINS_COLS = ("channel", "fingerprint", "check_name", "sku", "listing_key", "field", "outcome",
              "severity", "expected", "actual", "score", "message", "details", "state",
              "first_seen_at", "last_seen_at", "first_run", "last_run")
_FUPD_COLS = ("outcome", "severity", "expected", "actual", "score", "message", "details",
              "state", "last_seen_at", "last_run", "sku", "channel", "fingerprint")
_OBS_COLS = ("channel", "run_id", "fingerprint", "outcome")
_MOVED_COLS = ("state", "resolved_at", "resolved_run", "channel", "fingerprint")
_EVENT_COLS = ("channel", "fingerprint", "run_id", "at", "event", "state", "outcome",
               "expected", "actual")


def _first(cur: psycopg.Cursor) -> Any:
    """The first column of a statement's one row."""
    row = cur.fetchone()
    assert row is not None
    return row[0]


def _link_cells(link: tuple) -> tuple:
    """A link as stored: the method (a StrEnum) as its text."""
    sku, method, conf, cands = link
    return (sku, None if method is None else str(method), conf, cands)


def _cell(v: Any) -> str | None:
    if v is None:
        return None
    return v if isinstance(v, str) else codec.dumps(v)


def _shard_where(shard: ShardSpec | None, column: str) -> str:
    """The SQL condition (`` AND ...``) keeping one shard's rows of a channel: the range
    of ``md5(column)`` of ``ShardSpec.hex_range`` (the server hashes; the other shards'
    rows never reach the client), or the rows with no listing for ``NO_LISTING``."""
    if shard is None:
        return ""
    if shard.index == ShardSpec.NO_LISTING:
        return f" AND {column} IS NULL"
    lo, hi = shard.hex_range()
    return f" AND md5({column}) COLLATE \"C\" >= %s" + \
        ("" if hi is None else f" AND md5({column}) COLLATE \"C\" < %s")


def _shard_args(shard: ShardSpec | None) -> tuple[str, ...]:
    if shard is None or shard.index == ShardSpec.NO_LISTING:
        return ()
    lo, hi = shard.hex_range()
    return (lo,) if hi is None else (lo, hi)


@contextlib.contextmanager
def _findings_lock(conn: psycopg.Connection, channel: str, shard: ShardSpec | None
                   ) -> Iterator[None]:
    """A transaction holding ``apply_findings``' advisory locks until it ends: the
    channel's, exclusive, for a whole channel; for a shard (or the findings about no
    listing) the channel's shared and the shard's own exclusive, so the shards of one
    channel apply their findings at once (their fingerprints are disjoint: a finding's
    shard is its listing's) while a whole-channel apply still waits for them all."""
    with conn.transaction():
        if shard is None:
            conn.execute("SELECT pg_advisory_xact_lock(%s, hashtext(current_schema() || '/'"
                         " || %s))", (LOCK_FINDINGS, channel))
        else:
            conn.execute("SELECT pg_advisory_xact_lock_shared(%s, hashtext(current_schema()"
                         " || '/' || %s)), pg_advisory_xact_lock(%s, hashtext(current_schema()"
                         " || '/' || %s))", (LOCK_FINDINGS, channel, LOCK_FINDINGS,
                                             f"{channel}#{shard.index}/{shard.count}"))
        yield
