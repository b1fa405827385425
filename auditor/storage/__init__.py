"""Storage: the store interface, its records, and the factory that opens a store by URL.

    from auditor.storage import open_store
    store = open_store("sqlite:///auditor.db")     # or a plain path, as [store] path takes

URLs:

- ``sqlite:///relative/path.db``, ``sqlite:////absolute/path.db`` or a plain path:
  the SQLite store (``auditor.storage.sqlite``), the default;
- ``sqlite:///:memory:`` (or ``:memory:``): a private in-memory SQLite store (tests);
- ``postgresql://...``: designed (docs/scaling.md), not implemented yet.

The interface (``auditor.storage.interface``) and records (``auditor.storage.records``)
are what callers use; nothing outside this package speaks SQL or knows a file path.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from auditor.errors import StoreError
from auditor.storage.interface import (CacheStore, FindingStore, ListingStore, MasterStore,
                                       PresenceHoldStore, RunStore, ServiceStore,
                                       Store)
from auditor.storage.records import (FindingChanges, FindingEvent, FindingRecord,
                                     LinkDecisionRecord, LinkRecord, LinkStateRecord,
                                     ListingSave, MasterChange, MasterHistory,
                                     MasterImportResult, MasterPlan, MasterSnapshot,
                                     PresenceHoldRecord, RunErrorRecord, RunRecord,
                                     RunSourceRecord, ScoreRecord)

__all__ = ["open_store", "check_url", "remove_store", "store_exists", "describe", "Store",
           "MasterStore", "ListingStore", "FindingStore", "RunStore", "CacheStore",
           "PresenceHoldStore", "ServiceStore", "FindingChanges", "FindingEvent", "FindingRecord",
           "LinkDecisionRecord", "LinkRecord", "LinkStateRecord", "ListingSave", "MasterChange",
           "MasterHistory", "MasterImportResult", "MasterPlan", "MasterSnapshot",
           "PresenceHoldRecord", "RunErrorRecord", "RunRecord", "RunSourceRecord", "ScoreRecord"]

SCHEMES = ("sqlite",)                       # implemented
PLANNED = ("postgresql", "postgres")        # designed in docs/scaling.md
_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://(.*)$", re.S)


def describe(url: str | os.PathLike[str]) -> str:
    """The URL as it may be shown: any password replaced by ``***``."""
    return re.sub(r"^([A-Za-z][A-Za-z0-9+.-]*://[^/@:]*):[^/@]*@", r"\1:***@", str(url))


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
    if scheme.split("+")[0] in PLANNED:
        raise StoreError(f"store URL {describe(text)}: the PostgreSQL store is not implemented "
                         f"yet (see docs/scaling.md); use sqlite:///PATH or a file path")
    if scheme not in SCHEMES:
        raise StoreError(f"store URL {describe(text)}: unknown scheme {scheme!r} (known: "
                         f"sqlite:///PATH, sqlite:///:memory:, or a plain file path)")
    if not rest.startswith("/") or rest == "/":
        raise StoreError(f"store URL {describe(text)}: expected sqlite:///PATH (three slashes "
                         f"for a relative path, four for an absolute one)")
    return rest[1:]


def check_url(url: str | os.PathLike[str]) -> None:
    """Raise StoreError when ``url`` names no store this build can open."""
    _sqlite_file(url)


def open_store(url: str | os.PathLike[str], *, create: bool = True,
               write_wait: float = 30.0) -> Store:
    """Open (and migrate) the store at ``url``.

    ``create=False`` raises StoreError when the store does not exist yet (the
    read-only commands ask for it). ``write_wait``: seconds a write waits for
    another process's (a worker's) write to end."""
    path = _sqlite_file(url)
    from auditor.storage.sqlite import MEMORY, SQLiteStore

    if path != MEMORY and not create and not Path(path).exists():
        raise StoreError(f"no store at {path} yet: run `auditor run` first")
    return SQLiteStore(path, busy_timeout=write_wait)


def store_exists(url: str | os.PathLike[str]) -> bool:
    """Whether the store at ``url`` was created already (an in-memory one never is)."""
    path = _sqlite_file(url)
    return path != ":memory:" and Path(path).exists()


def remove_store(url: str | os.PathLike[str]) -> None:
    """Delete the store at ``url`` and everything beside it (WAL, lock): a fresh start."""
    path = _sqlite_file(url)
    if path == ":memory:":
        return
    from auditor.storage.sqlite import lock_path

    lock = lock_path(path)
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(path + suffix).unlink(missing_ok=True)
    lock.unlink(missing_ok=True)
