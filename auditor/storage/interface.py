"""The storage interface: what the auditor asks of a store, split by concern.

Each concern is a ``typing.Protocol``; ``Store`` combines them and is what the
runner, the CLI and the reports are typed against. ``auditor.storage.sqlite``
implements it (the default), ``auditor.storage.postgres`` too; both pass the same
contract suite (``tests/test_storage_contract.py``).
Get a store from ``auditor.storage.open_store(url)``, never by constructing one.

Read APIs return the typed records of ``auditor.storage.records``; write APIs take
model objects (``auditor.model``). Nothing here names a table, a column or a file:
upsert syntax, locking, batching and paths belong to an implementation.

Times are timezone-aware ``datetime`` objects. Methods are grouped as the
implementations group them:

- ``MasterStore``: master snapshots, the record in force per SKU, every earlier
  version with the time it changed, the per-field change log, image slot history;
- ``ListingStore``: the latest observation of each listing (a version each time it
  changes), its link to the master, removals;
- ``FindingStore``: findings with their lifecycle state and events (the rules are
  ``auditor.lifecycle``'s; a store applies what it decides);
- ``RunStore``: runs, per-source results and bad rows, consistency scores;
- ``CacheStore``: HTTP validators and extractions, image signatures and image URLs;
- ``ServiceStore``: what ``auditor serve`` reads (run history, metric aggregates, API pages)
  and the API's triage writes;
- ``AlertStore``: silences, alert groups, the notification outbox and the propagation
  latency recorded per master change and channel (``auditor.alerts``).
"""

from __future__ import annotations

from datetime import datetime
from typing import (Any, Callable, ContextManager, Iterable, Iterator, Mapping, Protocol,
                    Sequence, runtime_checkable)

from auditor.events import FindingChange
from auditor.model import Finding, Link, Listing, MasterRecord, Run, SourceResult, SourceStatus
from auditor.storage.records import (FindingChanges, FindingEvent, FindingRecord,
                                     HttpCacheRow, HttpValidators, ImageUrlRow,
                                     LinkDecisionRecord, LinkRecord, LinkStateRecord,
                                     ListingSave, ShardSpec, MasterAssetRow, MasterChange, MasterHistory,
                                     MasterImportResult, MasterPlan, MasterSnapshot,
                                     PresenceHoldRecord, RunErrorRecord, RunRecord,
                                     RunSourceRecord, ScoreRecord, OpenFinding,
                                     FindingActivity, RunFindingChange, FindingPage,
                                     ProductListing)


@runtime_checkable
class MasterStore(Protocol):
    """Master snapshots and the history of every value."""

    def current_master(self) -> Mapping[str, MasterRecord]:
        """The master records in force, by SKU: an ``auditor.compact.CompactMaster``
        (``CompactMaster.from_bodies(rows of (sku, stored JSON))``), which a run holds
        for its whole length (issue 20)."""
        ...

    def master_count(self) -> int:
        """How many master records are in force."""
        ...

    def last_master_snapshot(self) -> MasterSnapshot | None:
        """The latest import, None before the first."""
        ...

    def save_master(self, records: Iterable[MasterRecord], source: str, sha256: str | None,
                    now: datetime, skipped_rows: int = 0) -> MasterImportResult:
        """``plan_master`` then ``commit_master``: make ``records`` the master in force."""
        ...

    def plan_master(self, records: Mapping[str, MasterRecord], now: datetime) -> MasterPlan:
        """What importing ``records`` would change, read-only."""
        ...

    def commit_master(self, plan: MasterPlan, records: Mapping[str, MasterRecord],
                      source: str, sha256: str | None, skipped_rows: int = 0
                      ) -> MasterImportResult:
        """Write a planned import as a new snapshot, all or nothing. Records absent
        from the import leave the master; each replaced version joins the history."""
        ...

    def master_history(self) -> MasterHistory:
        """Earlier versions of every SKU that ever changed, oldest first."""
        ...

    def master_changes(self, sku: str | None = None) -> list[MasterChange]:
        """The per-field change log, newest first."""
        ...

    def record_master_assets(self, assets: Mapping[str, Sequence[tuple[str, str | None]]],
                             now: datetime) -> int:
        """Note each SKU's image slots [(ref, sha256 or None when unknown)], primary
        first; a slot whose content changed (or that is gone) is closed at ``now``.
        Returns how many slots were closed."""
        ...

    def master_asset_history(self, skus: Iterable[str] | None = None
                             ) -> dict[str, list[MasterAssetRow]]:
        """Replaced master images by SKU, newest first."""
        ...


@runtime_checkable
class ListingStore(Protocol):
    """The latest observation of each listing, its versions and its link."""

    def save_listings(self, run_id: int, channel: str,
                      observed: Iterable[tuple[Listing, Link | None]],
                      shard: ShardSpec | None = None) -> ListingSave:
        """Record one read of ``channel``: each listing with its link (None: no link).

        ``observed`` may be a generator of any length: it is consumed in batches.
        A listing read again unchanged, from the same place and with the same link,
        costs no write. A changed one keeps the version it replaces. ``unseen`` in
        the result: the keys present before this read and not in it. With ``shard``
        the read is one shard of the channel (``auditor.distributed``): ``observed``
        holds only that shard's listings and ``unseen`` is computed within it; saves
        of different shards of one channel may run at once."""
        ...

    def mark_removed(self, run_id: int, channel: str, keys: Iterable[str]) -> int:
        """After a complete read: these keys (``ListingSave.unseen``) are removed."""
        ...

    def listings(self, channel: str | None = None, sku: str | None = None,
                 include_removed: bool = False) -> list[Listing]:
        """Latest observed listings, optionally of one channel or linked to one SKU."""
        ...

    def links(self, channel: str | None = None) -> list[LinkRecord]:
        """How each present listing is linked, by channel and key."""
        ...

    def link_decisions(self, channel: str) -> dict[str, dict[str, Any]]:
        """A person's decisions on one channel's links: ``confirmed`` (listing key -> SKU)
        and ``rejected`` (listing key -> set of SKUs); kept across runs."""
        ...

    def present_keys(self, channel: str) -> set[str]:
        """The keys of the channel's listings not marked removed (what a complete read
        that misses them would call ``unseen``)."""
        ...

    def decide_link(self, channel: str, listing_key: str, sku: str, decision: str,
                    at: datetime, note: str | None = None) -> None:
        """Record a pair a person ``confirmed`` or ``rejected``; the listing's current
        link follows at once."""
        ...

    def decided_links(self, channel: str | None = None) -> list[LinkDecisionRecord]:
        """Every recorded decision, by channel, listing and SKU."""
        ...

    def listing_channels(self, listing_key: str) -> list[str]:
        """The channels on which a listing with this key is present."""
        ...

    def save_link_notes(self, run_id: int, channel: str, links: Iterable[Link]) -> None:
        """Replace the channel's notes with this run's: each listing not linked with its
        reason, score, candidates and evidence."""
        ...

    def link_states(self, channel: str | None = None, state: str | None = None
                    ) -> list[LinkStateRecord]:
        """Each present listing's link with its state (linked, suggested, unlinked) and,
        when not linked, the last run's reason and evidence; ``state`` filters."""
        ...

    def earlier_link_notes(self, channel: str) -> list[tuple]:
        """The channel's link notes whose listing has not changed since the note's run:
        (listing key, run id, the listing's stored body hash, method, score, reason,
        candidates, evidence) as stored (``auditor.linkreuse``)."""
        ...


@runtime_checkable
class FindingStore(Protocol):
    """Findings, their lifecycle state and events."""

    def apply_findings(self, run_id: int, channel: str, observed: Iterable[Finding],
                       status: SourceStatus, seen_keys: set[str] | None,
                       checks_ran: Sequence[str], now: datetime,
                       shard: ShardSpec | None = None) -> FindingChanges:
        """Record this run's non-passed outcomes on ``channel`` and move each finding
        as ``auditor.lifecycle.transition`` decides, with an event per change. With
        ``shard`` only the findings of that shard's listings (``ShardSpec.contains``)
        are considered: the others are neither resolved nor touched."""
        ...

    def findings(self, state: str | None = None, channel: str | None = None,
                 check: str | None = None, sku: str | None = None,
                 limit: int | None = None) -> list[FindingRecord]:
        """Stored findings, most severe first, then by channel, check, SKU and field."""
        ...

    def finding_events(self, fingerprint: str) -> list[FindingEvent]:
        """A finding's state changes, oldest first."""
        ...

    def query_findings(self, *, states: Sequence[str] = (), channels: Sequence[str] = (),
                       checks: Sequence[str] = (), severities: Sequence[str] = (),
                       sku: str | None = None, limit: int | None = None
                       ) -> list[FindingRecord]:
        """``findings`` with repeatable filters: each a set of allowed values."""
        ...

    def finding_values(self, column: str) -> set[str]:
        """Distinct stored values of channel, check_name, severity or state."""
        ...


@runtime_checkable
class PresenceHoldStore(Protocol):
    """Presence a run held back for a channel (``auditor.holds``)."""

    def save_presence_hold(self, run_id: int, channel: str, kind: str, reason: str,
                           vanished: Sequence[str], held: Iterable[Finding],
                           checks_ran: Sequence[str]) -> None:
        """Keep what the run would have concluded: vanished keys, presence findings."""
        ...

    def presence_holds(self, run_id: int | None = None, channel: str | None = None,
                       state: str | None = None) -> list[PresenceHoldRecord]:
        """Recorded holds, newest first."""
        ...

    def previous_run_of(self, channel: str, before_run: int) -> int | None:
        """The latest run before ``before_run`` that read ``channel``."""
        ...

    def decide_presence_hold(self, run_id: int, channel: str, state: str,
                             decided_run: int | None, now: datetime) -> None:
        """Close a held hold: confirmed, superseded or accepted."""
        ...

    def accept_presence_hold(self, run_id: int, channel: str, now: datetime
                             ) -> dict[str, int]:
        """Apply a held hold now (the channel's latest run only): counts opened,
        resolved and removed."""
        ...


@runtime_checkable
class RunStore(Protocol):
    """Runs, how each source was read, bad rows, scores."""

    def start_run(self, started_at: datetime, snapshot_id: int | None) -> int:
        """Record a run as running; returns its id (ids increase)."""
        ...

    def set_run_snapshot(self, run_id: int, snapshot_id: int | None) -> None:
        """The master snapshot a run audited against (written once the run has begun)."""
        ...

    def finish_run(self, run: Run, summary: dict[str, Any]) -> None:
        """Record a run's end: status, finish time and summary."""
        ...

    def save_source_result(self, run_id: int, res: SourceResult,
                           errors: Sequence[tuple[str, str]] = ()) -> None:
        """How a source was read in a run, with its bad rows [(location, reason)]."""
        ...

    def runs(self, limit: int = 20) -> list[RunRecord]:
        """The latest runs, newest first."""
        ...

    def run_sources(self, run_id: int) -> list[RunSourceRecord]:
        """Each source of a run, by name."""
        ...

    def run_errors(self, run_id: int, source: str | None = None,
                   limit: int = 1000) -> list[RunErrorRecord]:
        """A run's bad rows and pages, in the order recorded."""
        ...

    def last_source_result(self, source: str, before_run: int | None = None
                           ) -> RunSourceRecord | None:
        """The most recent result of ``source`` (optionally before a run)."""
        ...

    def last_durations(self) -> dict[str, float]:
        """Seconds the latest complete read of each source took."""
        ...

    def last_good_listing_count(self, source: str, before_run: int) -> int | None:
        """Listings of the last complete read of ``source`` before ``before_run``."""
        ...

    def save_scores(self, run_id: int, rows: Iterable[tuple[str, str, dict[str, int]]]
                    ) -> None:
        """Outcome counts per (channel, check) of a run."""
        ...

    def scores(self, run_id: int) -> list[ScoreRecord]:
        """A run's scores, by channel and check."""
        ...

    # The run's own record while it goes on (auditor.session): master imports,
    # finding changes announced as events, interrupted runs.
    def run_summary(self, run_id: int) -> dict[str, Any]:
        """A run's summary (master import, pid, interruption, channels); ``{}`` if none."""
        ...

    def update_run_summary(self, run_id: int, **parts: Any) -> None:
        """Merge ``parts`` into a run's summary while the run goes on."""
        ...

    def record_master_import(self, run_id: int, info: Mapping[str, Any],
                             errors: Sequence[tuple[str, str]] = ()) -> None:
        """A run's master import (accepted or rejected) into its summary (``master``),
        each error (location, reason) as a run error of the source ``master``."""
        ...

    def finding_changes(self, run_id: int, channel: str) -> list[FindingChange]:
        """Every finding of ``channel`` that ``run_id`` opened, changed, resolved or
        reopened, as it reads now, in the order the run wrote the changes. Asked right
        after the run applied the channel's findings (a later run of the channel
        supersedes what this one touched)."""
        ...

    def interrupt_run(self, run_id: int, at: datetime, reason: str) -> bool:
        """Record a run still ``running`` as ``interrupted`` at ``at`` for ``reason``
        (anything this connection had not committed is dropped); False when the run
        was not running."""
        ...

    def running_runs(self) -> list[RunRecord]:
        """Runs recorded ``running``, oldest first."""
        ...

    def holds_run_lock(self) -> bool:
        """Whether this process holds this store's ``run_lock`` (then no other run can
        be going on, and a ``running`` run is one whose process is gone)."""
        ...


@runtime_checkable
class CacheStore(Protocol):
    """What makes a second read cheap: HTTP validators, image signatures."""

    def http_cache_get(self, url: str) -> HttpCacheRow | None:
        ...

    def http_cache_put(self, url: str, **values: Any) -> None:
        ...

    def http_cache_put_many(self, rows: list[dict[str, Any]]) -> None:
        """Upsert many rows (each with ``url``); a row changes only the keys it has."""
        ...

    def http_cache_extractions(self, urls: Sequence[str]) -> dict[str, str]:
        """The stored extraction (JSON text) of each of ``urls`` that has one."""
        ...

    def http_cache_validators(self, prefix: str) -> Iterator[HttpValidators]:
        """Validators of every cached URL starting with ``prefix``."""
        ...

    def image_signatures(self, shas: Iterable[str], version: int) -> dict[str, dict[str, Any]]:
        """Stored signatures (as dicts) of these contents, computed by ``version``."""
        ...

    def put_image_signatures(self, rows: Iterable[tuple[str, int, dict[str, Any]]]) -> None:
        """Keep signatures: (sha256, version, signature dict)."""
        ...

    def image_urls(self, urls: Iterable[str]) -> dict[str, ImageUrlRow]:
        """The last fetch of each URL."""
        ...

    def put_image_urls(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Record fetches: url, etag, last_modified, sha256, error."""
        ...


@runtime_checkable
class BrowseStore(Protocol):
    """Reads for a person browsing (the web UI, the JSON API): findings searched and
    paged, one finding, one product on every channel."""

    def search_findings(self, channels: Sequence[str] = (), checks: Sequence[str] = (),
                        severities: Sequence[str] = (), states: Sequence[str] = (),
                        text: str | None = None, sort: str = "impact", limit: int = 50,
                        offset: int = 0) -> FindingPage:
        """Findings matching every filter, and ``text`` in SKU, listing key or title."""
        ...

    def finding_record(self, fingerprint: str) -> FindingRecord | None:
        """One finding by fingerprint, as a record."""
        ...

    def master_for(self, sku: str) -> MasterRecord | None:
        """The master record in force for ``sku``, as the model's object."""
        ...

    def product_listings(self, sku: str) -> list[ProductListing]:
        """Every channel's listings linked to ``sku``, with when each last changed."""
        ...

    def listing(self, channel: str, key: str) -> Listing | None:
        """One listing's latest version, removed or not."""
        ...

    def finding_channels(self) -> list[str]:
        """The channels that have findings."""
        ...


@runtime_checkable
class ServiceStore(Protocol):
    """What ``auditor serve`` reads and writes: the scheduler's run history, the metrics
    collector's aggregates (read at scrape time) and the JSON API's pages. Rows are
    JSON-ready dicts: they go out as JSON or metrics as they are."""

    def last_complete_reads(self) -> dict[str, datetime]:
        """When each source's latest complete read finished (``master``: the latest run
        whose master import was not rejected)."""
        ...

    def interrupt_running_runs(self, at: datetime) -> list[int]:
        """Record runs still marked running as interrupted (only under the run lock)."""
        ...

    def latest_scores(self) -> list[tuple[str, str, float]]:
        """(channel, check, passed share) of each channel's latest scored run."""
        ...

    def unresolved_finding_counts(self) -> list[tuple[str, str, str, int]]:
        """(channel, check, severity, count) of findings not resolved."""
        ...

    def latest_source_results(self) -> list[dict[str, Any]]:
        """Each source's latest read: source, status, listings, errors, message, times."""
        ...

    def source_durations(self) -> list[tuple[str, float]]:
        """(source, seconds) of every finished read."""
        ...

    def run_errors_after(self, after_id: int, limit: int = 100_000
                         ) -> list[tuple[int, str, str]]:
        """(id, source, reason) of bad rows and pages recorded after ``after_id``."""
        ...

    def failed_reads_after(self, after_rowid: int) -> list[tuple[int, str, str, str | None]]:
        """(position, source, status, message) of reads not complete, after a position."""
        ...

    def data_version(self) -> tuple[Any, ...]:
        """Changes whenever a run, finding or master snapshot is written."""
        ...

    def outbox_counts(self) -> dict[str, int]:
        """Notifications in the outbox by status."""
        ...

    def propagation(self, since: datetime, max_changes: int = 20_000
                    ) -> list[tuple[str, float | None]]:
        """(channel, seconds from a master change to the first read showing it, or None)."""
        ...

    def runs_page(self, before: int | None, limit: int) -> list[dict[str, Any]]:
        """Runs newest first below the ``before`` id, each with its ``sources``."""
        ...

    def findings_page(self, filters: Mapping[str, Any], after: tuple[int, str] | None,
                      limit: int) -> list[dict[str, Any]]:
        """Findings by severity rank and fingerprint, after a (rank, fingerprint) cursor."""
        ...

    def finding(self, fingerprint: str) -> dict[str, Any] | None:
        """One finding as a dict, or None."""
        ...

    def master_record(self, sku: str) -> dict[str, Any] | None:
        """The master record in force for ``sku`` as stored, with ``valid_from``."""
        ...

    def sku_listings(self, sku: str) -> list[dict[str, Any]]:
        """Every listing linked to ``sku`` with its channel, body and link."""
        ...

    def link_suggestions(self, channel: str | None, after: tuple[str, str] | None,
                         limit: int) -> list[dict[str, Any]]:
        """Listings only suggested a master, after a (channel, key) cursor."""
        ...

    def listing_link(self, channel: str, key: str) -> dict[str, Any] | None:
        """A present listing's link (sku, method, confidence, candidates), or None."""
        ...

    def ack_finding(self, fingerprint: str, by: str | None, note: str | None = None,
                    now: datetime | None = None) -> dict[str, Any]:
        """Acknowledge a finding; StoreError when unknown or resolved."""
        ...

    def snooze_finding(self, fingerprint: str, until: datetime, by: str | None,
                       now: datetime | None = None, note: str | None = None) -> dict[str, Any]:
        """Snooze a finding until ``until``; StoreError when unknown or resolved."""
        ...

    def resolve_finding(self, fingerprint: str, by: str | None, now: datetime | None = None,
                        note: str | None = None) -> dict[str, Any]:
        """Resolve a finding by hand; StoreError when unknown or resolved."""
        ...


@runtime_checkable
class AlertStore(Protocol):
    """Triage, silences, alert groups, the notification outbox and the recorded propagation
    latency (see auditor.alerts and docs/alerts.md); ack/snooze/resolve and ``finding``
    are declared by ServiceStore. Rows are plain dicts."""

    def find_fingerprint(self, prefix: str) -> str:
        """The one finding fingerprint starting with ``prefix`` (StoreError otherwise)."""
        ...

    def finding_episodes(self, fingerprints: Iterable[str] | None = None
                         ) -> dict[str, tuple[str, str, int | None, int]]:
        """fingerprint -> (opened|reopened, since, run, consecutive complete runs)."""
        ...

    def alert_candidates(self) -> list[dict[str, Any]]:
        """Unresolved findings that can alert, with ``since`` and ``runs``."""
        ...

    def findings_by_fingerprint(self, fingerprints: Iterable[str]
                                ) -> dict[str, dict[str, Any]]:
        ...

    def recent_master_changes(self, since: datetime) -> list[tuple[str, str, str]]:
        """(sku, field, changed_at) of master changes since ``since``."""
        ...

    def listing_context(self, pairs: Iterable[tuple[str, str]]
                        ) -> dict[tuple[str, str], dict[str, Any]]:
        """(channel, key) -> the listing's url and title."""
        ...

    def master_titles(self, skus: Iterable[str]) -> dict[str, str | None]:
        ...

    def source_failure_streaks(self) -> dict[str, dict[str, Any]]:
        """Each source's latest result with ``failing_runs`` in a row."""
        ...

    def add_silence(self, matchers: Mapping[str, str], starts_at: datetime, ends_at: datetime,
                    by: str | None, comment: str | None, now: datetime | None = None) -> int:
        ...

    def silences(self, active_at: datetime | None = None) -> list[dict[str, Any]]:
        ...

    def expire_silence(self, silence_id: int, now: datetime | None = None) -> bool:
        ...

    def alert_inputs(self) -> str:
        """A token that changes whenever anything an alert evaluation reads changes."""
        ...

    def alert_cursor(self, name: str) -> str | None:
        ...

    def alert_snapshot(self) -> ContextManager[None]:
        """A consistent read of everything an evaluation reads."""
        ...

    def delivery_lock(self) -> ContextManager[bool]:
        """Yields True when this process may deliver the outbox (no other process is
        delivering from this store); released when the holder ends, even by SIGKILL."""
        ...

    def alert_groups(self) -> dict[tuple[str, str], dict[str, Any]]:
        """(receiver, group key) -> what that receiver was last told about the group."""
        ...

    def record_alerts(self, groups: Iterable[Mapping[str, Any]], drop: Iterable[tuple[str, str]],
                      notifications: Iterable[Mapping[str, Any]],
                      finding_states: Iterable[tuple[str | None, str | None, str]],
                      now: datetime, generation: str, cursors: Mapping[str, str]
                      ) -> int | None:
        """Write an evaluation atomically, unless another was recorded since
        ``generation`` (None)."""
        ...

    def outbox(self, statuses: Sequence[str] | None = ("pending", "failed"),
               limit: int = 1000) -> list[dict[str, Any]]:
        ...

    def outbox_sent(self, row_id: int, now: datetime) -> None:
        ...

    def outbox_failed(self, row_id: int, error: str, next_attempt_at: datetime | None) -> None:
        ...

    def outbox_retry_failed(self, now: datetime) -> int:
        ...

    # The incremental evaluation (auditor.alerts.engine; docs/alerts.md).
    def alert_positions(self, previous: Mapping[str, Any] | None) -> dict[str, Any]:
        """Up to which finding event and master change (``events``, ``master``) this
        evaluation has seen everything, given the previous evaluation's positions."""
        ...

    def alert_touched(self, events_after: int, master_after: int, snoozed_after: datetime,
                      limit: int) -> dict[str, tuple[str, str, str, str | None, bool]] | None:
        """Findings to evaluate again -> (channel, check, field, stored alert state, can
        alert); None when more than ``limit`` events are new."""
        ...

    def alert_rows(self, fingerprints: Iterable[str]) -> list[dict[str, Any]]:
        """``alert_candidates`` of these fingerprints only."""
        ...

    def alert_firing(self, groups: Iterable[tuple[str, str, str]]) -> list[str]:
        """Findings last evaluated firing, of these (channel, check, field)."""
        ...

    def alert_state_counts(self) -> dict[str | None, int]:
        """Findings that can alert, by stored alert state."""
        ...

    def sync_propagation(self, checks_by_field: Mapping[str, Sequence[str]],
                         channels: Sequence[str] | None = None) -> dict[str, int]:
        """Record the propagation of master changes to channels (idempotent); only to
        ``channels`` when given (the same rows as a call for all channels)."""
        ...

    def propagation_rows(self, channel: str | None = None, pending: bool | None = None,
                         limit: int | None = None) -> list[dict[str, Any]]:
        """Per master change, channel and check: changed_at, caught_up_at, latency_seconds."""
        ...


@runtime_checkable
class HistoryStore(Protocol):
    """Reads of the past: the state of every channel at a moment, rebuilt from
    finding events and listing runs (the weekly report, the run headline)."""

    def run_at(self, at: datetime) -> int | None:
        """The last run whose audit clock (else start) is at or before ``at``."""
        ...

    def channel_health(self, at: datetime) -> dict[str, tuple[int, int]]:
        """Per channel at ``at``: (live SKUs, live SKUs with no failed/warn finding open)."""
        ...

    def channel_skus(self, at: datetime) -> dict[str, tuple[set[str], set[str]]]:
        """Per channel at ``at``: (live SKUs, those with a failed/warn finding open)."""
        ...

    def findings_at(self, at: datetime) -> list[OpenFinding]:
        """Findings failed or warn and not resolved at ``at``, as they stood then."""
        ...

    def finding_activity(self, start: datetime, end: datetime) -> list[FindingActivity]:
        """Findings opened, reopened and resolved in [start, end)."""
        ...

    def runs_between(self, start: datetime, end: datetime) -> list[RunRecord]:
        """Runs whose audit clock falls in [start, end), oldest first."""
        ...

    def run_finding_changes(self, run_id: int) -> list[RunFindingChange]:
        """The findings one run opened, reopened or resolved."""
        ...

    def listing_keys(self, channel: str, skus: Iterable[str]) -> dict[str, list[str]]:
        """The present listing keys of ``channel`` linked to each of ``skus``."""
        ...

    def sales_units(self, names: Sequence[str]) -> dict[str, float]:
        """Units sold per SKU from listing attributes named ``names`` (POS exports)."""
        ...


@runtime_checkable
class Store(MasterStore, ListingStore, FindingStore, RunStore, CacheStore, PresenceHoldStore,
            ServiceStore, HistoryStore, BrowseStore, AlertStore, Protocol):
    """A whole store: every concern, plus its own life cycle.

    ``url`` reopens the same store (``open_store(store.url)``), in another process
    too when ``multi_process`` is true (a worker opens its own connection).
    ``run_lock`` keeps two runs from interleaving on one store. Each write method is
    atomic on its own (one transaction, or one per batch for ``save_listings``)."""

    url: str

    @property
    def multi_process(self) -> bool:
        """Whether another process can open this store by its URL."""
        ...

    @property
    def schema_version(self) -> int:
        ...

    def run_lock(self, wait: float = 0.0) -> ContextManager[None]:
        """Hold the store's run lock (LockedError after ``wait`` seconds)."""
        ...

    def close(self) -> None:
        ...


StoreOpener = Callable[..., Store]
