"""The events a run emits (see ``auditor.hookspecs``): small frozen dataclasses.

Each event has a hook of the same meaning (``RunStarted`` -> ``run_started``) and
travels between processes as one JSON line (``to_json`` / ``from_json``): from
forked channel workers to the auditor's process, and from an audit child process
to the long-running parent that started it. Times are UTC ``datetime``s (ISO 8601
in JSON).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar


@dataclass(frozen=True)
class Event:
    """Base class: ``hook`` names the hook that carries the event."""

    hook: ClassVar[str] = ""

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able data, with ``"event": hook``."""
        out: dict[str, Any] = {"event": self.hook}
        for f in dataclasses.fields(self):
            out[f.name] = _plain(getattr(self, f.name))
        return out

    def to_json(self) -> str:
        """One line of JSON."""
        return json.dumps(self.to_dict(), ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def _from_data(cls, data: dict[str, Any]) -> "Event":
        kw = {}
        for f in dataclasses.fields(cls):
            if f.name not in data:
                continue
            v = data[f.name]
            if f.name.endswith("_at") and isinstance(v, str):
                v = datetime.fromisoformat(v)
            elif f.name == "changes":
                v = tuple(FindingChange(**c) for c in v)
            elif isinstance(v, list):
                v = tuple(tuple(x) if isinstance(x, list) else x for x in v)
            kw[f.name] = v
        return cls(**kw)


def _plain(v: Any) -> Any:
    if isinstance(v, datetime):
        return v.isoformat()
    if dataclasses.is_dataclass(v) and not isinstance(v, type):
        return {f.name: _plain(getattr(v, f.name)) for f in dataclasses.fields(v)}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    return v


@dataclass(frozen=True)
class RunStarted(Event):
    """A run began (its row is in the store, status ``running``)."""

    hook: ClassVar[str] = "run_started"
    run_id: int
    started_at: datetime
    channels: tuple[str, ...]          # the channels this run audits, in config order
    pid: int                           # the process that runs the audit
    interrupted_before: tuple[int, ...] = ()   # ids of the runs just before, interrupted


@dataclass(frozen=True)
class MasterImported(Event):
    """The master export was read. ``accepted`` False: rejected, ``errors`` says why;
    the snapshot in force (``kept_previous``), if any, is audited against."""

    hook: ClassVar[str] = "master_imported"
    run_id: int
    accepted: bool
    source: str | None = None
    records: int = 0                   # records audited against
    added: int = 0
    changed: int = 0
    removed: int = 0
    unchanged: bool = False            # the same file as the snapshot in force: not parsed
    snapshot_id: int | None = None     # the snapshot audited against
    skipped_rows: int = 0              # bad rows skipped (skip_bad_rows = true)
    errors: tuple[tuple[str, str], ...] = ()   # (location, reason), the first 100
    error_count: int = 0
    kept_previous: bool = False        # rejected, and an earlier snapshot stays in force
    seconds: float = 0.0


@dataclass(frozen=True)
class SourceProgress(Event):
    """Listings read so far from one channel's source."""

    hook: ClassVar[str] = "source_progress"
    run_id: int
    channel: str
    listings: int


@dataclass(frozen=True)
class SourceFinished(Event):
    """One channel's source was read (complete, partial or failed)."""

    hook: ClassVar[str] = "source_finished"
    run_id: int
    channel: str
    status: str                        # complete | partial | failed
    listings: int = 0
    errors: int = 0                    # bad rows / pages recorded
    first_errors: tuple[tuple[str, str], ...] = ()   # (location, reason), at most 20
    message: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None


@dataclass(frozen=True)
class FindingChange:
    """One finding that moved in this run."""

    fingerprint: str
    change: str                        # opened | changed | resolved | reopened
    check: str
    channel: str
    sku: str | None
    listing_key: str | None
    field: str
    outcome: str                       # the finding's outcome (for resolved: its last)
    severity: str
    expected: str | None = None
    actual: str | None = None
    message: str | None = None


@dataclass(frozen=True)
class FindingsChanged(Event):
    """Every finding of one channel opened, changed, resolved or reopened by the run."""

    hook: ClassVar[str] = "findings_changed"
    run_id: int
    channel: str
    changes: tuple[FindingChange, ...] = ()

    def count(self, change: str) -> int:
        """How many changes of one kind (``opened``, ``resolved``...)."""
        return sum(1 for c in self.changes if c.change == change)


@dataclass(frozen=True)
class ChannelFinished(Event):
    """One channel's audit is done: its summary."""

    hook: ClassVar[str] = "channel_finished"
    run_id: int
    channel: str
    status: str
    listings: int = 0
    linked: int = 0
    unlinked: int = 0
    ambiguous: int = 0
    errors: int = 0
    opened: int = 0                    # opened or reopened
    resolved: int = 0
    failed: int = 0                    # failed outcomes observed in this run
    warn: int = 0
    score: float | None = None
    seconds: float = 0.0
    message: str | None = None


@dataclass(frozen=True)
class RunFinished(Event):
    """The run ended. ``status``: complete, partial, failed or interrupted."""

    hook: ClassVar[str] = "run_finished"
    run_id: int
    status: str
    exit_code: int
    started_at: datetime
    finished_at: datetime
    seconds: float = 0.0               # wall time of the whole run
    master_seconds: float = 0.0        # reading (and planning) the master
    channel_seconds: dict[str, float] = field(default_factory=dict)
    reason: str | None = None          # why it was interrupted or failed


EVENTS: dict[str, type[Event]] = {cls.hook: cls for cls in (
    RunStarted, MasterImported, SourceProgress, SourceFinished, FindingsChanged,
    ChannelFinished, RunFinished)}


def from_json(line: str | bytes) -> Event:
    """The event a ``to_json`` line holds."""
    data = json.loads(line)
    return from_dict(data)


def from_dict(data: dict[str, Any]) -> Event:
    """The event ``Event.to_dict`` made."""
    cls = EVENTS[data["event"]]
    return cls._from_data(data)
