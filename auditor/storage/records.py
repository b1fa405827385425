"""The typed records a store returns from its read APIs.

Callers (the CLI, reports, the runner) see these, never a store's rows: a record's
field names are the auditor's vocabulary (``check``, not a column ``check_name``),
times are ``datetime`` objects and JSON columns are decoded. ``to_dict()`` gives
the plain, JSON-ready form (times as ISO 8601) that ``--format json`` prints.

Write paths (``save_listings``, ``apply_findings``) take model objects and return
plain counts: records are built only where something is read back, so the hot
paths pay nothing for them.

The caches (HTTP validators, image signatures, image URLs, master image slots) are
plumbing between the store and one module each; their rows are ``TypedDict``\\ s.
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Iterable, Iterator, Mapping, TypedDict

import orjson

from auditor import codec
from auditor.compact import Packer
from auditor.model import MasterRecord


def _plain(v: Any) -> Any:
    if isinstance(v, datetime):
        return v.isoformat()
    if isinstance(v, tuple):
        return [_plain(x) for x in v]
    return v


def parse_time(v: str | None) -> datetime | None:
    """A stored ISO 8601 time (None stays None)."""
    return datetime.fromisoformat(v) if v else None


class _Record:
    """Common behaviour of the records: a JSON-ready dict."""

    def to_dict(self) -> dict[str, Any]:
        return {f.name: _plain(getattr(self, f.name))
                for f in dataclasses.fields(self)}  # type: ignore[arg-type]


# --------------------------------------------------------------------------- masters

@dataclass(frozen=True, slots=True)
class MasterSnapshot(_Record):
    """One master import kept as a snapshot."""

    id: int
    imported_at: datetime
    source: str
    sha256: str | None
    records: int
    added: int
    changed: int
    removed: int
    skipped_rows: int = 0


@dataclass(frozen=True, slots=True)
class MasterChange(_Record):
    """One master value that changed in a snapshot, with the time it changed.

    ``old`` and ``new`` are the values as text (money as ``"59.90 EUR"``, lists
    and mappings as JSON); None where the field had no value."""

    id: int
    snapshot_id: int
    sku: str
    field: str
    old: str | None
    new: str | None
    changed_at: datetime


@dataclass
class MasterImportResult:
    """What one master import changed."""

    snapshot_id: int
    records: int
    added: int
    changed: int
    removed: int
    unchanged_file: bool = False


@dataclass
class MasterPlan:
    """A master import worked out but not yet written (see ``MasterStore.plan_master``).

    ``writes`` and ``removed`` say what the import changes; ``replaced`` holds the
    stored versions it replaces (as a store's JSON text), which a run hands to its
    checks as history before the snapshot is written."""

    at: str                                                # the import time, ISO 8601
    records: int                                           # records in the import
    writes: dict[str, str] = field(default_factory=dict)   # new or changed SKU -> hash
    added: int = 0
    removed: list[str] = field(default_factory=list)       # SKUs no longer in the master
    replaced: dict[str, str] = field(default_factory=dict)  # SKU -> stored data it replaces
    bodies: dict[str, str] = field(default_factory=dict)  # changed SKU -> data to write


def plan_writes(plan: MasterPlan, existing: Mapping[str, str],
                records: Mapping[str, MasterRecord]) -> None:
    """Fill ``plan.writes`` / ``added`` / ``bodies`` / ``removed`` by comparing each
    record's hash with the stored one (``existing``: SKU -> hash); both stores plan so.

    A compact master was hashed as the file was read (``CompactMaster.hashes``): no body
    is encoded again. Otherwise each body is encoded and hashed here, and a changed
    record's body is kept beside the version it replaces (a new record is encoded again
    at commit: a first import of a million records must not hold them all)."""
    from auditor.compact import CompactMaster, body_of

    compact = isinstance(records, CompactMaster)
    known = records.hashes() if isinstance(records, CompactMaster) else None
    if known is not None:
        for sku, h in known:
            old = existing.get(sku)
            if old != h:
                plan.writes[sku] = h
                if old is None:
                    plan.added += 1
    for sku in records if known is None else ():
        body = body_of(records, sku)
        h = codec.body_hash(body).hex()
        old = existing.get(sku)
        if old == h:
            continue
        plan.writes[sku] = h
        if old is None:
            plan.added += 1
        elif not compact:  # a compact master holds it already
            plan.bodies[sku] = body.decode()  # exact size: orjson's buffer is larger
    plan.removed = [sku for sku in existing if sku not in records]


def repack_version(v: bytes, repack: Any) -> bytes:
    """A held version (time number, packed body) with its body packed again."""
    return v[:3] + repack(v[3:])


class MasterHistory(Mapping[str, list[tuple[datetime, MasterRecord]]]):
    """SKU -> earlier master versions [(valid_until, record)], oldest first, decoded
    when first read (a run looks up history only where a listing disagrees).

    Held compactly (issue 20): each version is one ``bytes``, the number of its
    valid-until time (3 bytes) before its stored JSON packed by an
    ``auditor.compact.Packer``; a SKU with one version holds that ``bytes``, with more a
    tuple of them. SKU strings are interned, so they are the master's own."""

    __slots__ = ("_raw", "_packer", "_times", "_time_no", "_decoded", "_early")

    def __init__(self) -> None:
        self._raw: dict[str, bytes | tuple[bytes, ...]] = {}
        self._packer = Packer()
        self._times: list[str] = []          # valid-until times (ISO 8601), by number
        self._time_no: dict[str, bytes] = {}  # time -> its number (3 bytes)
        self._decoded: dict[str, list[tuple[datetime, MasterRecord]]] = {}
        self._early: list[str] | None = []  # SKUs put before the packer had a dictionary

    def put(self, sku: str, until: str, data: str | bytes) -> None:
        """One more version of ``sku`` (its stored JSON), valid until ``until`` (ISO 8601),
        newer than the ones held."""
        no = self._time_no.get(until)
        if no is None:
            no = self._time_no[until] = len(self._times).to_bytes(3, "big")
            self._times.append(until)
        v = no + self._packer.pack(data.encode() if isinstance(data, str) else data)
        had = self._raw.get(sku)
        if had is None:
            self._raw[sys.intern(sku)] = v
        else:
            self._raw[sku] = (had, v) if isinstance(had, bytes) else (*had, v)
        self._decoded.pop(sku, None)
        if self._early is not None:
            self._early.append(sku)
            if self._packer.zdict is not None:  # it has just learnt it: compress the early
                repack = self._packer.repack
                for s in dict.fromkeys(self._early):
                    held = self._raw[s]
                    self._raw[s] = repack_version(held, repack) if isinstance(held, bytes) \
                        else tuple(repack_version(x, repack) for x in held)
                self._early = None

    def __getitem__(self, sku: str) -> list[tuple[datetime, MasterRecord]]:
        got = self._decoded.get(sku)
        if got is None:
            held = self._raw[sku]  # KeyError when the SKU never changed
            unpack, times = self._packer.unpack, self._times
            got = self._decoded[sku] = [
                (datetime.fromisoformat(times[int.from_bytes(v[:3], "big")]),
                 codec.master_from_dict(orjson.loads(unpack(v[3:]))))
                for v in ((held,) if isinstance(held, bytes) else held)]
            if len(self._decoded) > 4096:  # read once per listing: keep only the recent
                self._decoded.clear()
                self._decoded[sku] = got
        return got

    def add(self, replaced: Mapping[str, str], until: str) -> None:
        """Versions (SKU -> stored data) valid until ``until``, newer than any held."""
        for sku, data in replaced.items():
            self.put(sku, until, data)

    def __iter__(self) -> Iterator[str]:
        return iter(self._raw)

    def __len__(self) -> int:
        return len(self._raw)

    def __contains__(self, sku: object) -> bool:
        return sku in self._raw


# --------------------------------------------------------------------------- listings

@dataclass(frozen=True, slots=True)
class ListingSave:
    """What ``save_listings`` did with one read of a channel."""

    seen: int                     # distinct listing keys read
    new: int                      # never seen before
    changed: int                  # seen before with another body (a new version)
    unseen: list[str]             # present before this read and not in it


@dataclass(frozen=True, slots=True)
class LinkRecord(_Record):
    """How a present listing is linked to the master."""

    channel: str
    listing_key: str
    sku: str | None               # None: not linked (ambiguous or no match)
    method: str                   # a LinkMethod value: sku, gtin, mpn_brand, url, fuzzy ...
    confidence: float | None
    candidates: tuple[str, ...]   # the SKUs an ambiguous link could not choose between
    run_id: int | None            # the run that set this link


@dataclass(frozen=True, slots=True)
class LinkStateRecord(_Record):
    """A present listing's link with its state and, when not linked, why (last run)."""

    channel: str
    listing_key: str
    state: str                    # linked, suggested, unlinked
    sku: str | None
    method: str
    confidence: float | None
    candidates: tuple[str, ...]
    run_id: int | None
    reason: str | None            # why it is not linked (None when linked)
    evidence: dict[str, Any]      # what the matcher weighed ({} when none)


@dataclass(frozen=True, slots=True)
class LinkDecisionRecord(_Record):
    """A pair a person confirmed or rejected (kept across runs)."""

    channel: str
    listing_key: str
    sku: str
    decision: str                 # confirmed, rejected
    decided_at: datetime
    note: str | None


# --------------------------------------------------------------------------- findings

@dataclass(frozen=True, slots=True)
class FindingRecord(_Record):
    """A stored finding with its lifecycle state."""

    fingerprint: str
    check: str
    channel: str
    sku: str | None
    listing_key: str | None
    field: str
    outcome: str                  # failed, warn (the last non-passed outcome seen)
    severity: str                 # critical, major, minor, info
    expected: str | None
    actual: str | None
    score: float | None
    message: str | None
    details: dict[str, Any]
    state: str                    # open, resolved (see auditor.lifecycle)
    first_seen_at: datetime
    last_seen_at: datetime
    first_run: int | None
    last_run: int | None
    resolved_at: datetime | None
    resolved_run: int | None
    # triage and alerting (see auditor.alerts): who acknowledged or snoozed it, and its
    # alert state as last evaluated (pending, firing, suppressed) with the reason
    ack_by: str | None = None
    ack_at: datetime | None = None
    ack_note: str | None = None
    snoozed_until: datetime | None = None
    snoozed_by: str | None = None
    alert_state: str | None = None
    alert_reason: str | None = None


@dataclass(frozen=True, slots=True)
class FindingEvent(_Record):
    """One state change of a finding: opened, changed, resolved, reopened, acknowledged,
    snoozed."""

    id: int
    fingerprint: str
    run_id: int | None
    at: datetime
    event: str
    state: str
    outcome: str | None
    expected: str | None
    actual: str | None
    actor: str | None = None      # who did it (acknowledged, snoozed, resolved by hand)
    note: str | None = None


@dataclass(frozen=True, slots=True)
class FindingChanges:
    """How many findings one channel's ``apply_findings`` moved."""

    opened: int = 0
    reopened: int = 0
    resolved: int = 0
    still_open: int = 0


# --------------------------------------------------------------------------- runs

@dataclass(frozen=True, slots=True)
class RunRecord(_Record):
    """One audit run."""

    id: int
    started_at: datetime
    finished_at: datetime | None
    status: str                   # running, complete, partial, failed
    master_snapshot_id: int | None
    summary: dict[str, Any]       # the run summary (master, channels), {} while running


@dataclass(frozen=True, slots=True)
class RunSourceRecord(_Record):
    """How one source (channel) of a run was read."""

    run_id: int
    source: str
    status: str                   # complete, partial, failed
    listings: int | None
    errors: int | None
    message: str | None
    started_at: datetime | None
    finished_at: datetime | None


@dataclass(frozen=True, slots=True)
class RunErrorRecord(_Record):
    """One bad row, page or item a source had in a run."""

    id: int
    run_id: int
    source: str
    location: str | None          # file:line, URL ...
    reason: str


@dataclass(frozen=True, slots=True)
class ScoreRecord(_Record):
    """Outcome counts and the consistency score of one check on one channel in a run."""

    run_id: int
    channel: str
    check: str
    passed: int
    failed: int
    warn: int
    not_evaluated: int
    score: float | None           # passed / (passed + failed + warn); None when none


# --------------------------------------------------------------------------- caches

class HttpCacheRow(TypedDict, total=False):
    """Conditional-GET state of a URL, and the last extraction for a 304."""

    url: str
    etag: str | None
    last_modified: str | None
    fetched_at: str | None
    status: int | None
    sha256: str | None
    content_type: str | None
    extraction: str | None        # JSON text


class HttpValidators(TypedDict):
    """A cached URL's validators, without its extraction text."""

    url: str
    etag: str | None
    last_modified: str | None
    fetched_at: str | None
    sha256: str | None
    had_extraction: bool


class ImageUrlRow(TypedDict, total=False):
    """The last fetch of an image URL."""

    url: str
    etag: str | None
    last_modified: str | None
    sha256: str | None
    error: str | None
    fetched_at: str


class MasterAssetRow(TypedDict):
    """Which content a master image slot held, and until when (slot 0 = primary)."""

    id: int
    sku: str
    slot: int
    ref: str
    sha256: str
    valid_from: str
    valid_to: str | None


# --------------------------------------------------------------------------- history

@dataclass(frozen=True, slots=True)
class OpenFinding(_Record):
    """A finding as it stood at a past moment: not resolved then, failed or warn, with
    the values and outcome it had then (its text as last seen), open since ``since``."""

    fingerprint: str
    check: str
    channel: str
    sku: str | None
    listing_key: str | None
    field: str
    outcome: str
    severity: str
    expected: str | None
    actual: str | None
    message: str | None
    details: dict[str, Any]
    since: datetime | None


@dataclass(frozen=True, slots=True)
class FindingActivity(_Record):
    """A finding opened, reopened or resolved at ``at``; for a resolution, when the
    finding had last opened."""

    event: str
    at: datetime
    channel: str
    check: str
    sku: str | None
    field: str
    severity: str
    opened_at: datetime | None


@dataclass(frozen=True, slots=True)
class RunFindingChange(_Record):
    """A finding one run opened, reopened or resolved."""

    event: str
    channel: str
    check: str
    sku: str | None
    listing_key: str | None
    field: str
    severity: str
    outcome: str | None
    message: str | None


@dataclass(frozen=True, slots=True)
class ProductListing(_Record):
    """One channel's listing of a SKU, as the product page shows it: what it shows,
    how it is linked, and when it last changed."""

    channel: str
    key: str
    listing: Any                   # auditor.model.Listing
    link_method: str | None
    link_confidence: float | None
    removed: bool
    first_seen_at: datetime | None
    last_changed_at: datetime | None


@dataclass(frozen=True, slots=True)
class FindingPage(_Record):
    """One page of a finding search, with the total that matched."""

    findings: tuple[FindingRecord, ...]
    total: int
# --------------------------------------------------------------------------- presence holds

@dataclass(frozen=True, slots=True)
class PresenceHoldRecord(_Record):
    """Presence a run held back for a channel, and what it would have concluded
    (``auditor.holds``)."""

    run_id: int
    channel: str
    kind: str                     # row (a row without a readable key), drop (items vanished)
    reason: str
    vanished: tuple[str, ...]     # listing keys present before and not read in that run
    findings: tuple[dict[str, Any], ...]  # presence findings computed (codec.finding_to_dict)
    checks: tuple[str, ...]       # checks that ran on the channel in that run
    state: str                    # held, confirmed, superseded, accepted
    decided_run: int | None
    decided_at: datetime | None


# --------------------------------------------------------------------------- shards

@dataclass(frozen=True, slots=True)
class ShardSpec:
    """One shard of a channel's listings, for a distributed run (``auditor.distributed``).

    A listing's shard comes from the first 32 bits of ``md5(key)``: shard ``i`` of ``count``
    holds the keys whose hash lies in ``[ceil(i * 2**32 / count), ceil((i + 1) * 2**32 /
    count))``. The key is stable across runs, so a listing, its versions and its findings
    stay in one shard; and a shard is a range of the hash's hex digits (``hex_range``), so
    a database computing ``md5`` (PostgreSQL) reads one shard's rows without the rest of
    the channel's. ``index = -1`` (``ShardSpec.NO_LISTING``) is the channel's findings
    about no listing (a master missing from the channel), which no shard holds.
    """

    index: int
    count: int

    NO_LISTING = -1

    @staticmethod
    def of(key: str, count: int) -> int:
        """The shard of listing ``key`` among ``count``."""
        import hashlib

        h = int.from_bytes(hashlib.md5(key.encode("utf-8", "surrogatepass"),
                                       usedforsecurity=False).digest()[:4], "big")
        return (h * count) >> 32

    def hex_range(self) -> tuple[str, str | None]:
        """The shard as a range of ``md5(key)``'s lowercase hex digits: ``lo <= md5 < hi``
        (compared byte by byte, ``COLLATE "C"``); ``hi`` None for the last shard."""
        assert self.index != self.NO_LISTING

        def bound(i: int) -> str:
            return format(-(-i * 2**32 // self.count), "08x")

        return bound(self.index), None if self.index + 1 >= self.count else \
            bound(self.index + 1)

    def contains(self, listing_key: str | None) -> bool:
        if listing_key is None:
            return self.index == self.NO_LISTING
        return self.index != self.NO_LISTING and self.of(listing_key, self.count) == self.index


def propagation_cursors(rows: Iterable[tuple[str, str]]) -> dict[str | None, int]:
    """The propagation cursors: the last master change id turned into rows for every
    channel (key None) and, ahead of it, for single channels (``master_changes:NAME``, set
    by ``sync_propagation(..., channels)``); both stores keep them alike."""
    out: dict[str | None, int] = {}
    for name, value in rows:
        out[None if name == "master_changes" else name.partition(":")[2]] = int(value)
    return out


def with_episode(r: dict[str, Any], episodes: Mapping[str, tuple]) -> dict[str, Any]:
    """A finding row (a dict) with its current episode attached: ``episode_event``,
    ``since``, ``episode_run`` and ``runs`` (an opened episode of one run when the
    finding has no event yet). Shared by both stores' alert reads."""
    ep = episodes.get(r["fingerprint"])
    r["episode_event"], r["since"], r["episode_run"], r["runs"] = \
        ep if ep else ("opened", r["first_seen_at"], r["first_run"], 1)
    return r
