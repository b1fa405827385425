"""The run lifecycle: import the master, read each channel, link, check, store.

Each channel is streamed: listings flow from the connector through linking and
the checks into the store in batches, so memory stays bounded. A channel's
failure is isolated: it is recorded on the run and the next channel is read.
"""

from __future__ import annotations

import contextlib
import gc
import glob
import logging
import logging.handlers
import multiprocessing as mp
import os
import queue
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

from auditor import plugins
from auditor import holds
from auditor.check import CarriedFields, CheckContext, CheckSpec, Preparations, with_unread
from auditor.config import ChannelConfig, Config, secret_value
from auditor.connector import SourceContext
from auditor.errors import AuditorError, SourceError
from auditor.forking import PR_SET_PDEATHSIG, _in_fork, _leave_fork, die_with_parent  # noqa: F401
from auditor.events import ChannelFinished, FindingsChanged, SourceFinished, SourceProgress
from auditor.http import FetchPolicy
from auditor.compact import CompactMaster, CompactRecords
from auditor.linking import Linker
from auditor.linkreuse import earlier_links, link_inputs
from auditor.master import load_master
from auditor.model import (Finding, Link, LinkMethod, Listing, MasterRecord, Outcome,
                           Severity, SourceResult, SourceStatus)
from auditor.confidence import prefer_master
from auditor.sources import is_url
from auditor.storage import MasterHistory, MasterPlan, Store, open_store

log = logging.getLogger(__name__)

Progress = Callable[[str, int], None]
# SKU -> earlier master versions [(valid until, record)] (a MasterHistory, or a plain dict)
MasterVersions = Mapping[str, Sequence[tuple[datetime, MasterRecord]]]
Emit = Callable[[Any], None]


@dataclass
class ChannelSummary:
    """What one channel's part of a run found."""

    channel: str
    status: SourceStatus
    listings: int = 0
    linked: int = 0
    unlinked: int = 0
    ambiguous: int = 0
    suggested: int = 0
    errors: int = 0
    message: str | None = None
    outcomes: dict[str, Counter] = field(default_factory=dict)  # check -> outcome counts
    opened: int = 0
    resolved: int = 0
    open_failed: int = 0
    open_warn: int = 0
    seconds: float = 0.0
    # Why presence was held for this channel in this run (see auditor.holds), or None.
    presence_held: str | None = None
    # Check -> fields the channel's source never carries (not evaluated, said once).
    not_carried: dict[str, list[str]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    # The linker's indexes a complete read consulted (key kinds, "title"), or None when
    # not known: the next run builds these before forking its workers (Linker.prepare).
    link_indexes: list[str] | None = None
    # The indexes its links that may be carried over to the next run consulted (an
    # orphan's title suggestions): needed again only when link_inputs changes.
    carried_link_indexes: list[str] | None = None
    # What the channel's links depended on beside the listings (auditor.linkreuse), or
    # None: the next run carries unchanged listings' link notes over when it is the same.
    link_inputs: str | None = None

    @property
    def score(self) -> float | None:
        """Share of evaluated comparisons that passed."""
        p = sum(c.get("passed", 0) for c in self.outcomes.values())
        t = p + sum(c.get("failed", 0) + c.get("warn", 0) for c in self.outcomes.values())
        return p / t if t else None


@dataclass
class RunReport:
    """The outcome of a run, for the CLI summary and exit code."""

    run_id: int
    status: SourceStatus
    master: dict[str, Any]
    channels: list[ChannelSummary]
    started_at: datetime
    finished_at: datetime
    master_error: str | None = None
    # The runs just before this one that were interrupted: [{"id", "at", "reason"}].
    interrupted_before: list[dict[str, Any]] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        """0 all consistent, 1 findings, 2 could not run (or ran only partly)."""
        if self.status != SourceStatus.COMPLETE or self.master_error or \
                any(c.presence_held for c in self.channels):
            return 2
        if any(c.open_failed or c.open_warn for c in self.channels):
            return 1
        return 0


def _master_policy(cfg: Config) -> FetchPolicy:
    """Fetch limits for a master given as a URL: its host is the one allowed."""
    return FetchPolicy.from_config(cfg.http, {}, [cfg.master["source"]]
                                   if str(cfg.master["source"]).startswith("http") else [])


@dataclass
class MasterUpdate:
    """A master export read and compared with the snapshot in force, not yet written."""

    info: dict[str, Any]                        # the import summary (for the run report)
    records: Mapping[str, MasterRecord] | None  # by SKU (a CompactMaster); None: unchanged
    plan: MasterPlan | None = None              # None when unchanged
    source: str = ""
    sha256: str | None = None
    skipped_rows: int = 0
    # Written already (by ``_plan_and_write_in``, in a forked process): the snapshot's
    # id is in ``info``; or why writing it failed there.
    written: bool = False
    write_error: str | None = None


def read_master(cfg: Config, store: Store, now: datetime, plan: bool = True) -> MasterUpdate:
    """Read the PIM export and work out what it changes; raise MasterImportError when
    it is rejected. Nothing is written (see ``write_master``). ``plan=False`` leaves
    the comparison with the snapshot in force to ``plan_update``."""
    m = cfg.master
    headers = {k: secret_value(v) for k, v in (m.get("headers") or {}).items()}
    auth = (secret_value(m["auth"]["username"]), secret_value(m["auth"]["password"])) \
        if m.get("auth") else None
    last = store.last_master_snapshot()
    imp = load_master(m, cfg.base_dir, _master_policy(cfg), headers, auth,
                      unchanged_sha=last.sha256 if last and store.master_count() else None)
    if imp.unchanged:
        assert last is not None
        return MasterUpdate({"snapshot_id": last.id, "records": store.master_count(),
                             "added": 0, "changed": 0, "removed": 0, "unchanged": True,
                             "source": imp.source}, None)
    records = imp.records.master() if isinstance(imp.records, CompactRecords) else \
        CompactMaster.of(imp.records)
    info = {"snapshot_id": None, "records": len(records), "skipped_rows": len(imp.errors),
            "errors": imp.errors[:100], "source": imp.source}
    update = MasterUpdate(info, records, None, imp.source, imp.sha256, len(imp.errors))
    if plan:
        plan_update(update, store.plan_master(records, now))
    return update


def plan_update(update: MasterUpdate, plan: MasterPlan) -> None:
    """Attach the comparison with the snapshot in force."""
    update.plan = plan
    update.info.update(added=plan.added, changed=len(plan.writes) - plan.added,
                       removed=len(plan.removed))


# _leave_fork, _in_fork and die_with_parent live in auditor.forking (also used by the linker)


def _plan_and_write_in(url: str, records: Mapping[str, MasterRecord], now: datetime,
                       source: str, sha256: str | None, skipped_rows: int,
                       history: MasterHistory | None = None
                       ) -> tuple[MasterPlan, int | None, str | None, MasterHistory | None]:
    """``plan_master`` and then ``commit_master`` on a connection of its own (for a
    forked process): the plan, the new snapshot's id, why writing it failed (None
    when it was written), and ``history`` with the versions the import replaces added
    (``plan.replaced`` is then left empty: the history holds them, packed here rather
    than in the run's process, where it would delay the channel workers' start).
    Done before a run forks its channel workers, so that their listing writes never
    wait for the snapshot's transaction (nor share the cores with it); the plan (the
    replaced versions the checks need as history) is needed then anyway."""
    own = open_store(url)
    try:
        plan = own.plan_master(records, now)
        if history is not None:
            history.add(plan.replaced, plan.at)
        try:
            t0 = time.perf_counter()
            res = own.commit_master(plan, records, source, sha256, skipped_rows)
            log.info("master snapshot %s written in %.1f s", res.snapshot_id,
                     time.perf_counter() - t0)
        except Exception as e:  # the run goes on against the master as read
            log.exception("the master was read but could not be stored")
            if history is not None:
                plan.replaced = {}  # in the history: not sent back
            return plan, None, f"{e.__class__.__name__}: {e}", history
        plan.bodies = {}  # written: not sent back
        if history is not None:
            plan.replaced = {}  # written, and in the history: not sent back
        return plan, res.snapshot_id, None, history
    finally:
        own.close()


def written_update(update: MasterUpdate,
                   done: tuple[MasterPlan, int | None, str | None, MasterHistory | None]
                   ) -> MasterHistory | None:
    """Attach what ``_plan_and_write_in`` did to ``update``; the history it returned."""
    plan, snapshot_id, error, history = done
    plan_update(update, plan)
    update.written = error is None
    update.write_error = error
    if error is None:
        update.info["snapshot_id"] = snapshot_id
    return history


def write_master(store: Store, update: MasterUpdate) -> None:
    """Store a changed master as the snapshot in force (no-op when unchanged, or when
    written already; raises when writing it failed in the forked process)."""
    if update.write_error is not None:
        raise AuditorError(update.write_error)
    if update.plan is None or update.written:
        return
    t0 = time.perf_counter()
    res = store.commit_master(update.plan, update.records or {}, update.source,
                              update.sha256, update.skipped_rows)
    update.plan.bodies = {}  # written: no need to keep them for the rest of the run
    update.info["snapshot_id"] = res.snapshot_id
    log.info("master snapshot %s written in %.1f s", res.snapshot_id, time.perf_counter() - t0)


def import_master(cfg: Config, store: Store, now: datetime
                  ) -> tuple[dict[str, Any], Mapping[str, MasterRecord] | None]:
    """Read the PIM export into a new snapshot; raise MasterImportError when rejected.

    Returns the import summary and the records by SKU (None when the file is
    unchanged since the snapshot in force, which then stays as it is).
    """
    update = read_master(cfg, store, now)
    write_master(store, update)
    return update.info, update.records


def _enabled_checks(ch: ChannelConfig) -> list[CheckSpec]:
    return [spec for name, spec in plugins.checks().items()
            if ch.checks.get(name, {}).get("enabled", True)]


def read_linked(connector: Any, ctx: SourceContext, seen: set[str], carried: CarriedFields,
                linking: Any) -> Iterator[tuple[Listing, Link]]:
    """A channel's listings with their links, as the connector reads them: a repeated key
    is reported and dropped, fields the source carries are noted, unread cells recorded;
    listings matched by what they show come after the whole channel (``linking.finish``).
    Used by ``audit_channel`` and the distributed read job."""
    for li in connector.read(ctx):
        if li.key in seen:
            ctx.bad(li.evidence or li.key, f"duplicate listing key {li.key!r}; kept the first")
            continue
        seen.add(li.key)
        if carried.unseen:
            carried.see(li)
        if li.unread:
            ctx.unread_cells(li)
        link = linking.link(li)
        if link is None:  # matched by what it shows, once the whole channel is read
            continue
        yield li, link
    yield from linking.finish()


def read_failed(result: SourceResult, ch: ChannelConfig, e: Exception) -> None:
    """Record why reading a channel failed: the source's reason, or a connector crash
    (logged with its traceback; it must not take the other channels down)."""
    result.status = SourceStatus.FAILED
    if isinstance(e, SourceError):
        result.message = f"{e.source}: {e.reason}"
    elif isinstance(e, AuditorError):
        result.message = str(e)
    else:
        log.exception("channel %s: connector %s crashed", ch.name, ch.type, exc_info=e)
        result.message = f"connector {ch.type} crashed: {e.__class__.__name__}: {e}"


def empty_read_failed(store: Store, run_id: int, ch: ChannelConfig,
                      result: SourceResult) -> None:
    """A complete read of no listings where the last complete read had some, or on the
    channel's first complete read (an empty file or feed is most often a broken export,
    and would make every SKU "missing"), is a source problem (the read failed), unless the
    channel allows being empty."""
    if result.status == SourceStatus.COMPLETE and result.listings == 0 \
            and not ch.opt("allow_empty"):
        prev = store.last_good_listing_count(ch.name, run_id)
        if prev:
            result.status = SourceStatus.FAILED
            result.message = (f"source yielded no listings where the last complete read had "
                              f"{prev}; treated as a source problem (set allow_empty = true if "
                              f"an empty channel is real)")
        elif prev is None:
            result.status = SourceStatus.FAILED
            result.message = (f"source {ch.source} yielded no listings on its first read; "
                              f"treated as a source problem, no listing concluded missing (set "
                              f"allow_empty = true if an empty channel is real)")


def audit_channel(cfg: Config, store: Store, run_id: int, ch: ChannelConfig,
                  master: Mapping[str, MasterRecord], linker: Linker, history: MasterVersions,
                  now: datetime, progress: Progress | None = None,
                  preparations: Preparations | None = None, emit: Emit | None = None,
                  wanted: frozenset[str] = frozenset()) -> ChannelSummary:
    """Read one channel and check every listing; record it all on the run.

    ``emit`` receives the channel's events (``auditor.events``) for the hooks named
    in ``wanted``: source_progress, source_finished, findings_changed,
    channel_finished. ``progress(channel, n)`` is the older form of source_progress.
    """
    t0 = time.perf_counter()
    if emit is not None and "source_progress" in wanted:
        report = progress

        def progress(name: str, n: int) -> None:  # noqa: F811
            emit(SourceProgress(run_id, name, n))
            if report is not None:
                report(name, n)
    conn_cls = plugins.connectors()[ch.type]
    result = SourceResult(ch.name, started_at=datetime.now(timezone.utc))
    ctx = SourceContext(channel=ch, now=now, http_options=cfg.http, store=store, master=master,
                        result=result)
    summary = ChannelSummary(ch.name, SourceStatus.COMPLETE)
    specs = _enabled_checks(ch)
    cctx = {s.name: CheckContext(s.name, ch.name, ch.checks.get(s.name, {}), now, history,
                                 ch.options) for s in specs}
    observed: list[Finding] = []
    linked_skus: set[str] = set()
    seen: set[str] = set()
    # Checks with a preparation stage (the image check): listings are checked in
    # batches once their stages have prepared them (auditor.check.Preparations).
    own_preps = preparations is None
    if own_preps:
        preparations = Preparations(store, master, cfg.http, cfg.base_dir, now,
                                    {n: c.options for n, c in cctx.items()})
    assert preparations is not None
    prepared = preparations.batcher(specs, cctx, ctx.policy())

    # Counted by Outcome member (a str enum) on the hot path, by plain string at the end.
    tallies: dict[str, Counter] = {s.name: Counter() for s in specs}
    plan = [(spec.fn, cctx[spec.name], tallies[spec.name], spec.fields) for spec in specs]
    passed = Outcome.PASSED
    carried = CarriedFields(specs)

    def run_checks(m: MasterRecord | None, li: Listing | None, link=None) -> None:
        unread = li is not None and li.unread
        for fn, c, tally, fields in plan:
            c.link = link  # presence tells an ambiguous link from an orphan
            found = fn(m, li, c)
            if unread and li is not None:  # cells that could not be read: not evaluated
                found = with_unread(fields, found, m, li, c)
            for f in found:
                o = f.outcome
                tally[o] += 1
                if o is not passed:
                    observed.append(f)

    decisions = store.link_decisions(ch.name)
    summary.link_inputs = link_inputs(cfg.linking, linker.master_version,
                                      store.decided_links(ch.name)
                                      if linker.master_version is not None else ())
    linking = linker.session(decisions["confirmed"], decisions["rejected"],
                             earlier=earlier_links(store, ch.name, summary.link_inputs))
    suggested_skus: set[str] = set()
    link_notes: list[Link] = []  # suggested and unlinked listings, with reason and evidence

    def settle(li: Listing, link: Link) -> Listing:
        m = master.get(link.sku) if link.sku else None
        if m is not None:
            linked_skus.add(m.sku)  # the record's own (interned) string
            summary.linked += 1
            if li.alternatives:  # an uncertain page read: the master picks in its buy box
                li = prefer_master(li, m, ctx.now)
        elif link.method == LinkMethod.AMBIGUOUS:
            summary.ambiguous += 1
        elif link.method == LinkMethod.SUGGESTED:
            summary.suggested += 1
            suggested_skus.update(link.candidates)  # any of them may be what it shows
        else:
            summary.unlinked += 1
        if m is None and (link.reason or link.candidates):
            link_notes.append(link)
        if prepared is None:
            run_checks(m, li, link)
        else:
            prepared.add(m, li, run_checks, link)
        result.listings += 1
        if progress and result.listings % 1000 == 0:
            progress(ch.name, result.listings)
        return li

    def pipeline() -> Iterator[tuple[Listing, Link]]:
        for li, link in read_linked(conn_cls(ch), ctx, seen, carried, linking):
            yield settle(li, link), link

    unseen: list[str] = []  # listings present before and not read now
    try:
        unseen = store.save_listings(run_id, ch.name, pipeline()).unseen
    except Exception as e:  # a connector bug must not take the other channels down
        read_failed(result, ch, e)
    if prepared is not None:
        try:
            prepared.flush(run_checks)
        except Exception:  # a check bug in the last batch must not lose the channel
            log.exception("channel %s: checks of the last prepared batch failed", ch.name)
    if own_preps:
        preparations.close()
    if progress:
        progress(ch.name, result.listings)

    empty_read_failed(store, run_id, ch, result)
    verdict = holds.DropVerdict()
    if result.status == SourceStatus.COMPLETE and result.presence_held is None:
        verdict = holds.judge_drop(store, ch, run_id, unseen, result.listings)
        result.presence_held = verdict.hold
    if result.status == SourceStatus.COMPLETE:
        if result.presence_held is None:
            store.mark_removed(run_id, ch.name, unseen)
        else:  # computed and kept, not concluded (see auditor.holds)
            kept = len(observed)
        for sku in master:  # decoded only when unlinked (a compact master decodes on access)
            # a master only suggested for a listing is not concluded missing: a person decides
            if sku not in linked_skus and sku not in suggested_skus:
                run_checks(master[sku], None)
        if result.presence_held is not None:
            held = observed[kept:]
            del observed[kept:]
            for f in held:  # not counted as this run's outcomes either
                tallies[f.check][f.outcome] -= 1
            store.save_presence_hold(run_id, ch.name, "drop" if verdict.hold else "row",
                                     result.presence_held, unseen, held,
                                     [s.name for s in specs])
        holds.settle_earlier(store, ch.name, run_id, verdict.confirmed_run, now)
    # A listing that could not be seen (its page behind a captcha or consent wall, an
    # error): presence is not evaluated for its SKU, with the reason, never "missing".
    # (Recorded as this run's outcomes and listed in the run's notes; a not_evaluated
    # outcome of a partial read opens no finding, auditor.lifecycle.)
    presence = cctx.get("presence")
    unread = [(sku, why) for sku, why in result.unknown_skus.items()
              if sku in master and sku not in linked_skus]
    if presence is not None and unread:
        for sku, why in unread:
            observed.append(presence.finding(
                master[sku], None, "listing", Outcome.NOT_EVALUATED, Severity.INFO,
                expected=sku, kind="unreadable", reason=why,
                message=f"the listing of SKU {sku} on {ch.name} could not be read: {why}"))
            tallies["presence"][Outcome.NOT_EVALUATED] += 1
        summary.notes.append(
            f"presence not evaluated for {len(unread)} SKU(s) whose page could not be read "
            f"(never concluded missing): " + "; ".join(f"{sku}: {why}" for sku, why in unread[:10])
            + (f"; and {len(unread) - 10} more" if len(unread) > 10 else ""))
    # Fields the whole source never carries: not evaluated for the channel, not per listing.
    missing = carried.missing(specs, ctx.carried, result.listings)
    if missing:
        gone = {(c, f) for c, fs in missing.items() for f in fs}
        keep = []
        for f in observed:
            if (f.check, f.field) in gone:
                tallies[f.check][f.outcome] -= 1
                tallies[f.check][Outcome.NOT_EVALUATED] += 1
            else:
                keep.append(f)
        observed[:] = keep

    result.finished_at = datetime.now(timezone.utc)
    counts = {name: Counter({str(o): n for o, n in t.items()}) for name, t in tallies.items()}
    # Held presence: conclusions only about the listings that were read (``seen``).
    evidence = SourceStatus.PARTIAL if result.status == SourceStatus.COMPLETE and \
        result.presence_held is not None else result.status
    counts_changes = store.apply_findings(run_id, ch.name, observed, evidence,
                                          seen, [s.name for s in specs], now)
    store.save_scores(run_id, [(ch.name, name, dict(c)) for name, c in counts.items()])
    store.save_source_result(run_id, result, ctx.errors)
    if result.status != SourceStatus.FAILED:
        store.save_link_notes(run_id, ch.name, link_notes)
    sync_channel_propagation(store, ch.name)
    summary.status = result.status
    summary.listings = result.listings
    summary.errors = result.errors
    summary.message = result.message
    summary.presence_held = result.presence_held
    summary.not_carried = missing
    if result.status == SourceStatus.COMPLETE:
        summary.link_indexes, summary.carried_link_indexes = linking.indexes()
    if linking.carried_over:
        log.info("channel %s: %d links carried over from the last run (auditor.linkreuse)",
                 ch.name, linking.carried_over)
    if verdict.note:
        summary.notes.append(verdict.note)
    summary.outcomes = counts
    summary.opened = counts_changes.opened + counts_changes.reopened
    summary.resolved = counts_changes.resolved
    summary.open_failed = sum(1 for f in observed if f.outcome is Outcome.FAILED)
    summary.open_warn = sum(1 for f in observed if f.outcome is Outcome.WARN)
    summary.seconds = time.perf_counter() - t0
    log.info("channel %s: %s, %d listings in %.1f s", ch.name, result.status.value,
             result.listings, summary.seconds)
    if emit is not None:
        channel_events(emit, wanted, store, run_id, summary, result, ctx.errors)
    return summary


def sync_channel_propagation(store: Store, channel: str) -> None:
    """The propagation rows of a channel just read (``Store.sync_propagation`` for it
    alone), written by the channel's own process as soon as its findings are: the
    channels' workers do it side by side, and the evaluation after the run finds it done.
    A failure is logged and left to that evaluation (the rows are the same)."""
    from auditor.alerts.engine import checks_by_field

    try:
        store.sync_propagation(checks_by_field(), [channel])
    except Exception:  # latency bookkeeping must never fail a channel
        log.exception("channel %s: propagation latency could not be recorded", channel)


# A first run can open hundreds of thousands of findings: they are announced in
# events of at most this many changes, so no single message grows without bound.
FINDING_CHANGES_PER_EVENT = 5_000


def channel_events(emit: Emit, wanted: frozenset[str], store: Store, run_id: int,
                   summary: ChannelSummary, result: SourceResult | None = None,
                   errors: Any = ()) -> None:
    """Emit a finished channel's source_finished, findings_changed and channel_finished."""
    if "source_finished" in wanted:
        emit(SourceFinished(run_id, summary.channel, summary.status.value, summary.listings,
                            summary.errors, tuple((str(a), str(b)) for a, b in list(errors)[:20]),
                            summary.message, result.started_at if result else None,
                            result.finished_at if result else None))
    if "findings_changed" in wanted:
        from auditor.session import finding_changes

        changes = finding_changes(store, run_id, summary.channel)
        for i in range(0, len(changes), FINDING_CHANGES_PER_EVENT):
            emit(FindingsChanged(run_id, summary.channel,
                                 changes[i:i + FINDING_CHANGES_PER_EVENT]))
    if "channel_finished" in wanted:
        emit(ChannelFinished(run_id, summary.channel, summary.status.value, summary.listings,
                             summary.linked, summary.unlinked, summary.ambiguous,
                             summary.errors, summary.opened, summary.resolved,
                             summary.open_failed, summary.open_warn, summary.score,
                             round(summary.seconds, 3), summary.message))


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """No cyclic garbage collection inside: building hundreds of thousands of objects
    that all stay alive would only make the collector scan them over and over."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


@contextlib.contextmanager
def streaming_gc() -> Iterator[None]:
    """The collector's policy while listings stream past a loaded master.

    Everything alive on entry (the master, its history, the indexes) is frozen out of
    the collector's reach: it lives for the whole run, and re-scanning its hundreds of
    thousands of objects on every collection would only cost (in forked workers it
    would also touch, and so copy, shared pages). Listings stream through by the
    hundred thousand, each a few short-lived objects and no cycles: the youngest
    generation is collected every 50,000 allocations, not 700. The checks benchmark
    runs under the same policy.
    """
    gc.freeze()
    thresholds = gc.get_threshold()
    gc.set_threshold(max(thresholds[0], 50_000), *thresholds[1:])
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()  # a long-lived process (auditor serve) must not keep old masters


def run_audit(cfg: Config, store: Store, channels: list[str] | None = None,
              now: datetime | None = None, progress: Progress | None = None,
              listeners: Any = ()) -> RunReport:
    """One full run (``auditor.session.AuditSession``, kept as a function for callers
    of the earlier API). ``progress(channel, n)`` becomes a ``source_progress``
    listener. A master rejected when no snapshot exists yet gives a FAILED report
    with ``master_error``; nothing is raised for it."""
    from auditor.session import AuditSession, ProgressCallback

    listeners = list(listeners) + ([ProgressCallback(progress)] if progress else [])
    return AuditSession(cfg, store, channels=channels, now=now, listeners=listeners).run()


def worker_count(cfg: Config, store: Store, channels: int) -> int:
    """How many channels to audit at once: ``[run] workers`` (0 = CPU cores), at most one
    per channel; 1 where a worker could not share the master (no ``fork``) or the store
    (one another process cannot open, as an in-memory database)."""
    wanted = cfg.run.get("workers", 0) or os.cpu_count() or 1
    if not store.multi_process or "fork" not in mp.get_all_start_methods():
        return 1
    return max(1, min(wanted, channels))


class _ToParent(logging.handlers.QueueHandler):
    """In a worker: log records go to the auditor's process, which handles them."""

    def enqueue(self, record: logging.LogRecord) -> None:
        self.queue.put_nowait(("log", record))


def _audit_in_workers(cfg: Config, store: Store, run_id: int, selected: list[ChannelConfig],
                      master: Mapping[str, MasterRecord], linker: Linker, history: MasterVersions,
                      now: datetime, workers: int,
                      meanwhile: Callable[[], None] | None = None, emit: Emit | None = None,
                      wanted: frozenset[str] = frozenset()) -> list[ChannelSummary]:
    """Audit the channels in forked worker processes, ``workers`` at a time.

    Each worker inherits the master, linker and history (copy-on-write: they were
    frozen out of the garbage collector's reach, so they stay shared), opens its own
    store connection and audits one channel exactly as the sequential path does.
    Events (``emit``, for the hooks in ``wanted``) and log records come back over a
    queue and are emitted and handled here. A worker that dies without reporting
    (killed, out of memory) leaves its channel FAILED with the reason; the other
    channels are unaffected. ``meanwhile`` runs in this process once the first
    workers are started. Workers die with this process (``die_with_parent``); when
    this function is left by an exception (an interruption) it stops them first.
    """
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    parent = os.getpid()

    def work(i: int, ch: ChannelConfig) -> None:  # in the forked child
        die_with_parent(parent)
        root = logging.getLogger()
        for h in list(root.handlers):
            root.removeHandler(h)
        root.addHandler(_ToParent(q))
        # Waits out the snapshot the parent may be writing (a large master takes a while).
        own = open_store(store.url, write_wait=3600)
        try:
            summary: ChannelSummary | str = audit_channel(
                cfg, own, run_id, ch, master, linker, history, now,
                emit=(lambda event: q.put(("event", event))) if emit else None, wanted=wanted)
        except BaseException as e:  # reported to the parent, which marks the channel failed
            log.exception("channel %s: worker failed", ch.name)
            summary = f"{e.__class__.__name__}: {e}"
        finally:
            own.close()
        q.put(("done", i, summary))
        _leave_fork(q)

    pending = longest_first(selected, store.last_durations())
    running: dict[int, Any] = {}
    results: dict[int, ChannelSummary] = {}
    started_at: dict[int, float] = {}

    def fail(i: int, reason: str) -> None:
        ch = selected[i]
        result = SourceResult(ch.name, SourceStatus.FAILED, message=reason,
                              started_at=now, finished_at=datetime.now(timezone.utc))
        store.save_source_result(run_id, result, [])
        results[i] = ChannelSummary(ch.name, SourceStatus.FAILED, message=reason,
                                    seconds=time.perf_counter() - started_at[i])
        if emit is not None:
            channel_events(emit, wanted, store, run_id, results[i], result)

    try:
        while pending or running:
            while pending and len(running) < workers:
                i, ch = pending.pop(0)
                p = ctx.Process(target=work, args=(i, ch), name=f"auditor-{ch.name}",
                                daemon=True)
                started_at[i] = time.perf_counter()
                p.start()
                running[i] = p
            if meanwhile is not None:
                meanwhile()
                meanwhile = None
            # Workers dead before this wait have flushed everything they sent.
            dead = [i for i, p in running.items() if p.exitcode is not None]
            try:
                msg = q.get(timeout=0.5)
            except queue.Empty:
                for i in dead:
                    p = running.pop(i)
                    p.join()
                    if i not in results:
                        fail(i, f"worker for channel {selected[i].name} exited with code "
                                f"{p.exitcode} before reporting")
                continue
            kind = msg[0]
            if kind == "log":
                record = msg[1]
                logging.getLogger(record.name).handle(record)
            elif kind == "event" and emit is not None:
                emit(msg[1])
            elif kind == "done":
                i, summary = msg[1], msg[2]
                p = running.pop(i)
                p.join()
                if isinstance(summary, ChannelSummary):
                    results[i] = summary
                else:
                    fail(i, f"worker for channel {selected[i].name} failed: {summary}")
    finally:
        for p in running.values():  # only when interrupted: stop the workers
            p.terminate()
        for p in running.values():
            p.join()
        q.close()
    return [results[i] for i in range(len(selected))]


def longest_first(selected: list[ChannelConfig], durations: Mapping[str, float]
                  ) -> list[tuple[int, ChannelConfig]]:
    """The order in which workers take channels: the longest first, so that no long
    channel is left to run alone at the end while the other cores idle.

    A channel's length is its last complete run's duration. A channel that has none
    comes before those that do (it may be long), larger local source files first.
    """
    def size(ch: ChannelConfig) -> int:
        src = ch.source or ""
        if is_url(src):
            return 1 << 62  # size unknown: assume large
        path = Path(src).expanduser()
        path = path if path.is_absolute() else ch.base_dir / path
        try:
            return max((os.stat(p).st_size for p in glob.glob(str(path))), default=0)
        except OSError:
            return 0

    def key(item: tuple[int, ChannelConfig]) -> tuple:
        i, ch = item
        known = durations.get(ch.name)
        return (0, -size(ch), i) if known is None else (1, -known, i)

    return sorted(enumerate(selected), key=key)


def _summary_dict(s: ChannelSummary) -> dict[str, Any]:
    return {"channel": s.channel, "status": s.status.value, "listings": s.listings,
            "linked": s.linked, "unlinked": s.unlinked, "ambiguous": s.ambiguous,
            "suggested": s.suggested,
            "errors": s.errors, "message": s.message, "opened": s.opened,
            "resolved": s.resolved, "failed": s.open_failed, "warn": s.open_warn,
            "score": s.score, "seconds": round(s.seconds, 3),
            "presence_held": s.presence_held, "not_carried": s.not_carried, "notes": s.notes,
            "link_indexes": s.link_indexes, "carried_link_indexes": s.carried_link_indexes,
            "link_inputs": s.link_inputs,
            "checks": {k: dict(v) for k, v in s.outcomes.items()}}
