"""Storage: the store interface, its records, and the factory that opens a store by URL.

    from auditor.storage import open_store
    store = open_store("sqlite:///auditor.db")     # or a plain path, as [store] path takes

URLs:

- ``sqlite:///relative/path.db``, ``sqlite:////absolute/path.db`` or a plain path:
  the SQLite store (``auditor.storage.sqlite``), the default;
- ``sqlite:///:memory:`` (or ``:memory:``): a private in-memory SQLite store (tests);
- ``postgresql://user@host:5432/dbname`` (also ``postgres://``, ``postgresql+psycopg://``):
  the PostgreSQL store (``auditor.storage.postgres``, needs the ``postgres`` extra:
  psycopg 3). libpq's settings apply (``PGPASSWORD``, ``~/.pgpass``, ``?sslmode=``,
  ``?options=-csearch_path%3Dbrand`` for a store in its own schema).

The interface (``auditor.storage.interface``) and records (``auditor.storage.records``)
are what callers use; nothing outside this package speaks SQL or knows a file path.
"""

from __future__ import annotations

import logging
import os
import re
import sqlite3
from pathlib import Path
from urllib.parse import unquote

from auditor.errors import StoreError, StoreUnavailable
from auditor.storage.interface import (CacheStore, FindingStore, ListingStore, MasterStore,
                                       PresenceHoldStore, RunStore, ServiceStore,
                                       Store)
from auditor.storage.records import (FindingChanges, FindingEvent, FindingRecord,
                                     LinkDecisionRecord, LinkRecord, LinkStateRecord,
                                     ListingSave, MasterChange, MasterHistory,
                                     MasterImportResult, MasterPlan, MasterSnapshot,
                                     PresenceHoldRecord, RunErrorRecord, RunRecord,
                                     RunSourceRecord, ShardSpec, ScoreRecord)

__all__ = ["open_store", "check_url", "remove_store", "store_exists", "describe", "redact",
           "unavailable",
           "Store",
           "MasterStore", "ListingStore", "FindingStore", "RunStore", "CacheStore",
           "PresenceHoldStore", "ServiceStore", "FindingChanges", "FindingEvent", "FindingRecord",
           "LinkDecisionRecord", "LinkRecord", "LinkStateRecord", "ListingSave", "MasterChange",
           "MasterHistory", "MasterImportResult", "MasterPlan", "MasterSnapshot",
           "PresenceHoldRecord", "RunErrorRecord", "RunRecord", "RunSourceRecord", "ScoreRecord",
           "ShardSpec"]

log = logging.getLogger(__name__)
SCHEMES = ("sqlite",)                       # a file (or :memory:)
POSTGRES = ("postgresql", "postgres")       # a server (``postgresql+psycopg`` too)
_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://(.*)$", re.S)


def describe(url: str | os.PathLike[str]) -> str:
    """The URL as it may be shown: any password replaced by ``***``."""
    text = re.sub(r"^([A-Za-z][A-Za-z0-9+.-]*://[^/@:]*):[^/@]*@", r"\1:***@", str(url))
    return re.sub(r"([?&]password=)[^&]*", r"\1***", text)  # libpq's query form too


def redact(text: str, url: str | os.PathLike[str]) -> str:
    """``text`` (an error's message) without the password of ``url``: the URL shown as
    ``describe`` shows it, and the password alone, as written in the URL or decoded,
    replaced by ``***`` wherever else it appears (a driver quoting the URL it could
    not parse, say)."""
    raw = os.fspath(url)
    forms = {raw}
    m = _URL.match(raw)
    if m is not None:
        forms.add("postgresql://" + m.group(2))  # as the driver was given it
    for form in sorted(forms, key=len, reverse=True):
        text = text.replace(form, describe(form))
    secrets: set[str] = set()
    m = re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://[^/@:]*:([^/@]*)@", raw)
    for pw in ([m.group(1)] if m else []) + re.findall(r"[?&]password=([^&#]*)", raw):
        secrets |= {pw, unquote(pw)}
    for pw in sorted(secrets - {""}, key=len, reverse=True):
        text = text.replace(pw, "***")
    return text


def migrated(store: str, old: int, new: int) -> None:
    """The one line logged (info) when opening a store applied migrations: which store,
    from which schema version to which (0: the store was created)."""
    if store == ":memory:":
        return
    if old == 0:
        log.info("store %s created (schema version %d)", store, new)
    else:
        log.info("store %s migrated from schema version %d to %d", store, old, new)


def unavailable(e: BaseException) -> bool:
    """Whether ``e`` says the store cannot be used now: it could not be opened
    (``StoreUnavailable``: the server down, a file that is no database, a newer schema),
    or the database went away mid-request (the driver's operational errors). Not a
    bug's SQL error, nor a store refusing what was asked (no such finding)."""
    if isinstance(e, (StoreUnavailable, sqlite3.OperationalError)) or \
            type(e) is sqlite3.DatabaseError:
        return True
    names = {c.__name__ for c in type(e).__mro__}
    return type(e).__module__.split(".")[0] == "psycopg" and bool(
        names & {"OperationalError", "InterfaceError"})


def _postgres_url(url: str | os.PathLike[str]) -> str | None:
    """The URL when it names a PostgreSQL store, else None."""
    text = os.fspath(url)
    m = _URL.match(text)
    if m is None or m.group(1).lower().split("+")[0] not in POSTGRES:
        return None
    scheme = m.group(1).lower()
    if "+" in scheme and scheme != "postgresql+psycopg":
        raise StoreError(f"store URL {describe(text)}: unknown driver {scheme!r} (the "
                         f"PostgreSQL store uses psycopg: postgresql://...)")
    return text


def _sqlite_file(url: str | os.PathLike[str]) -> str:
    """The SQLite file (or ``:memory:``) a URL or plain path names; StoreError for a URL
    of another scheme. ``sqlite:///x.db`` is relative, ``sqlite:////abs/x.db`` absolute
    (as SQLAlchemy reads them)."""
    text = os.fspath(url)
    m = _URL.match(text)
    if m is None:  # a plain path, as [store] path has always taken
        if not text:
            raise StoreError("empty store URL: give a path or sqlite:///PATH")
        return text
    scheme, rest = m.group(1).lower(), m.group(2)
    if scheme not in SCHEMES:
        raise StoreError(f"store URL {describe(text)}: unknown scheme {scheme!r} (known: "
                         f"sqlite:///PATH, sqlite:///:memory:, postgresql://HOST/DB, or a "
                         f"plain file path)")
    if not rest.startswith("/") or rest == "/":
        raise StoreError(f"store URL {describe(text)}: expected sqlite:///PATH (three slashes "
                         f"for a relative path, four for an absolute one)")
    return rest[1:]


def _postgres_module():  # type: ignore[no-untyped-def]
    try:
        from auditor.storage import postgres
    except ImportError as e:
        raise StoreError(f"the PostgreSQL store needs psycopg 3: pip install "
                         f"'omni-auditor[postgres]' ({e})") from None
    return postgres


def check_url(url: str | os.PathLike[str]) -> None:
    """Raise StoreError when ``url`` names no store this build can open."""
    if _postgres_url(url) is None:
        _sqlite_file(url)


def open_store(url: str | os.PathLike[str], *, create: bool = True,
               write_wait: float = 30.0) -> Store:
    """Open (and migrate) the store at ``url``.

    ``create=False`` raises StoreError when the store does not exist yet (the
    read-only commands ask for it). ``write_wait``: seconds a write waits for
    another process's (a worker's) write to end."""
    pg = _postgres_url(url)
    if pg is not None:
        postgres = _postgres_module()
        if not create and not postgres.store_exists(pg):
            raise StoreError(f"no store at {describe(pg)} yet: run `auditor run` first")
        return postgres.PostgresStore(pg, lock_timeout=write_wait)
    path = _sqlite_file(url)
    from auditor.storage.sqlite import MEMORY, SQLiteStore

    if path != MEMORY and not create and not Path(path).exists():
        raise StoreError(f"no store at {path} yet: run `auditor run` first")
    try:
        return SQLiteStore(path, busy_timeout=write_wait)
    except sqlite3.DatabaseError as e:  # not a database, a read-only folder, a full disk
        raise StoreUnavailable(f"cannot open the SQLite store {path}: {e}") from None


def store_exists(url: str | os.PathLike[str]) -> bool:
    """Whether the store at ``url`` was created already (an in-memory one never is)."""
    pg = _postgres_url(url)
    if pg is not None:
        return bool(_postgres_module().store_exists(pg))
    path = _sqlite_file(url)
    return path != ":memory:" and Path(path).exists()


def remove_store(url: str | os.PathLike[str]) -> None:
    """Delete the store at ``url`` and everything beside it (WAL, lock): a fresh start.
    A PostgreSQL store's tables are dropped (the database itself stays)."""
    pg = _postgres_url(url)
    if pg is not None:
        _postgres_module().remove_store(pg)
        return
    path = _sqlite_file(url)
    if path == ":memory:":
        return
    from auditor.storage.sqlite import lock_path

    lock = lock_path(path)
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(path + suffix).unlink(missing_ok=True)
    lock.unlink(missing_ok=True)
