"""The store contract: what every implementation of ``auditor.storage.Store`` must do.

Each test runs against every implementation in ``STORES`` and uses only the
interface (``auditor.storage.interface``): no SQL, no file. An implementation joins
by an entry in ``STORES`` that returns the URL of an empty store of its kind (the
PostgreSQL one: a new database on the real server ``tests/pg_server.py`` starts).

SQLite-only behaviour (WAL, page size, migrations, batching under another writer,
the listing_versions table) is tested in tests/test_auditor_store.py, PostgreSQL's own
(partitions, advisory locks, concurrent writers) in tests/test_storage_postgres.py.
"""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from decimal import Decimal
from typing import Callable

import pytest

from auditor.errors import LockedError
from auditor.model import (Finding, Link, LinkMethod, Money, Outcome, Run, Severity,
                           SourceResult, SourceStatus)
from auditor.storage import (FindingRecord, LinkRecord, MasterChange, MasterSnapshot, RunRecord,
                             RunSourceRecord, ScoreRecord, Store, open_store)
from auditor.storage import interface
from tests.conftest import NOW, make_listing, make_master

# name -> ((tmp_path, request) -> URL of a new, empty store)
STORES: dict[str, Callable] = {
    "sqlite-file": lambda tmp_path, request: f"sqlite:///{tmp_path / 'contract.db'}",
    "sqlite-memory": lambda tmp_path, request: "sqlite:///:memory:",
    # a new database on the session's real server (tests/pg_server.py)
    "postgresql": lambda tmp_path, request: request.getfixturevalue("pg_server").new_database(),
}
# Implementations another process can open by URL (workers, a second run).
SHARED = ["sqlite-file", "postgresql"]


@pytest.fixture(params=list(STORES))
def store(request, tmp_path) -> Store:
    s = open_store(STORES[request.param](tmp_path, request))
    yield s
    s.close()


@pytest.fixture(params=SHARED)
def shared_url(request, tmp_path) -> str:
    return STORES[request.param](tmp_path, request)


def _f(key, outcome=Outcome.FAILED, check="price", actual="2 EUR", channel="google",
       severity=Severity.CRITICAL, **kw):
    return Finding(check, channel, key, "price" if check == "price" else "title", outcome,
                   severity, expected="1 EUR", actual=actual, listing_key=key, **kw)


# ----------------------------------------------------------------------------- the interface

def test_implements_every_concern(store):
    for proto in (interface.MasterStore, interface.ListingStore, interface.FindingStore,
                  interface.RunStore, interface.CacheStore, interface.PresenceHoldStore,
                  interface.ServiceStore, interface.AlertStore,
                  interface.Store):
        assert isinstance(store, proto), proto.__name__


def test_everything_public_is_in_the_interface(store):
    """Callers cannot reach past the interface: every public method of an
    implementation is declared by one of the protocols."""
    declared = {n for n in dir(interface.Store) if not n.startswith("_")}
    public = {n for n in dir(type(store)) if not n.startswith("_")
              and callable(getattr(type(store), n))}
    assert public <= declared, sorted(public - declared)


def test_every_method_of_the_interface_is_implemented(store):
    """The other way round: each store has every method the protocols declare (a
    method added to one store and the interface but not to the other fails here, by
    name, before any caller meets it)."""
    declared = {n for n in dir(interface.Store) if not n.startswith("_")}
    public = {n for n in dir(type(store)) if not n.startswith("_")}
    assert declared <= public, sorted(declared - public)


def test_url_reopens_the_same_store(shared_url):
    a = open_store(shared_url)
    a.save_master([make_master("A")], "m.csv", "h1", NOW)
    b = open_store(a.url)
    try:
        assert b.multi_process and set(b.current_master()) == {"A"}
    finally:
        a.close()
        b.close()


def test_run_lock_excludes_a_second_run_on_the_same_store(shared_url):
    a, b = open_store(shared_url), open_store(shared_url)
    try:
        with a.run_lock():
            with pytest.raises(LockedError, match="another run holds the lock"):
                with b.run_lock(wait=0.2):
                    pass
        with b.run_lock():  # released
            pass
    finally:
        a.close()
        b.close()


# ----------------------------------------------------------------------------- masters

def test_master_import_history_and_changes(store):
    assert store.last_master_snapshot() is None and store.master_count() == 0
    r1 = store.save_master([make_master("A"), make_master("B")], "m.csv", "h1", NOW)
    assert (r1.records, r1.added, r1.changed, r1.removed) == (2, 2, 0, 0)
    snap = store.last_master_snapshot()
    assert isinstance(snap, MasterSnapshot)
    assert (snap.id, snap.imported_at, snap.source, snap.sha256, snap.records) == (
        r1.snapshot_id, NOW, "m.csv", "h1", 2)

    later = NOW + timedelta(days=3)
    r2 = store.save_master([make_master("A", price=Money(Decimal("49.90"), "EUR"))], "m.csv",
                           "h2", later, skipped_rows=1)
    assert (r2.added, r2.changed, r2.removed) == (0, 1, 1) and r2.snapshot_id > r1.snapshot_id
    assert store.last_master_snapshot().skipped_rows == 1
    assert store.master_count() == 1
    assert store.current_master() == {"A": make_master("A", price=Money(Decimal("49.90"),
                                                                          "EUR"))}
    hist = store.master_history()
    assert hist["A"] == [(later, make_master("A"))]
    assert hist["B"] == [(later, make_master("B"))]  # removed: its last version is kept
    assert "C" not in hist and len(hist) == 2
    changes = store.master_changes("A")
    assert changes == [MasterChange(changes[0].id, r2.snapshot_id, "A", "price", "59.90 EUR",
                                    "49.90 EUR", later)]
    assert store.master_changes() == changes  # B was removed, not changed

    same = store.save_master([make_master("A", price=Money(Decimal("49.90"), "EUR"))], "m.csv",
                             "h3", later + timedelta(days=1))
    assert (same.added, same.changed, same.removed) == (0, 0, 0)


def test_master_plan_is_read_only_until_committed(store):
    store.save_master([make_master(k) for k in "ABCDE"], "m.csv", "h1", NOW)
    later = NOW + timedelta(days=1)
    new = {k: make_master(k) for k in "ABCFG"}
    new["B"] = make_master("B", price=Money(Decimal("1.00"), "EUR"))
    plan = store.plan_master(new, later)
    assert set(plan.writes) == {"B", "F", "G"} and plan.added == 2
    assert sorted(plan.removed) == ["D", "E"] and set(plan.replaced) == {"B", "D", "E"}
    assert set(store.current_master()) == set("ABCDE")  # nothing written yet
    # The history a run hands its checks before the snapshot is written.
    hist = store.master_history()
    hist.add(plan.replaced, plan.at)
    assert hist["B"] == [(later, make_master("B"))]
    res = store.commit_master(plan, new, "m.csv", "h2")
    assert (res.added, res.changed, res.removed) == (2, 1, 2)
    assert store.current_master() == new
    assert store.master_history()["B"] == [(later, make_master("B"))]


def test_master_asset_slots_history(store):
    assert store.record_master_assets({"A": [("a.jpg", "s1"), ("a2.jpg", "s2")]}, NOW) == 0
    later = NOW + timedelta(days=1)
    # slot 0 changed content, slot 1 gone; unknown content (None) leaves a slot alone
    assert store.record_master_assets({"A": [("a.jpg", "s9")], "B": [("b.jpg", None)]},
                                      later) == 2
    hist = store.master_asset_history()
    assert set(hist) == {"A"}
    assert {(r["slot"], r["sha256"], r["valid_to"]) for r in hist["A"]} == {
        (0, "s1", later.isoformat()), (1, "s2", later.isoformat())}
    assert store.master_asset_history(["B"]) == {}


# ----------------------------------------------------------------------------- listings, links

def test_listings_save_change_and_unchanged_costs_nothing(store):
    a, b = make_listing("A"), make_listing("B")
    res = store.save_listings(1, "google", ((li, None) for li in (a, b)))  # a generator
    assert (res.seen, res.new, res.changed, res.unseen) == (2, 2, 0, [])
    assert sorted(store.listings("google"), key=lambda li: li.key) == [a, b]

    moved = make_listing("A", fetched_at=NOW + timedelta(hours=1), evidence="feed.xml:9")
    res = store.save_listings(2, "google", [(moved, None), (make_listing("B", title="New"),
                                                           None)])
    assert (res.new, res.changed) == (0, 1)
    got = {li.key: li for li in store.listings("google")}
    assert got["B"].title == "New"
    assert (got["A"].fetched_at, got["A"].evidence) == (moved.fetched_at, "feed.xml:9")

    # Read again unchanged from the same place: nothing is written, so the stored read
    # time stays the one of the read that found this version.
    again = make_listing("A", fetched_at=NOW + timedelta(hours=2), evidence="feed.xml:9")
    res = store.save_listings(3, "google", [(again, None), (make_listing("B", title="New"),
                                                           None)])
    assert (res.new, res.changed, res.unseen) == (0, 0, [])
    assert {li.key: li for li in store.listings("google")}["A"].fetched_at == moved.fetched_at
    assert store.listings("meta") == []


def test_duplicate_keys_in_one_read_count_once(store):
    res = store.save_listings(1, "google", [(make_listing("A"), None),
                                            (make_listing("A", title="Other"), None)])
    assert (res.seen, res.new) == (1, 1)
    assert [li.title for li in store.listings("google")] == [make_listing("A").title]


def test_removed_listings_and_their_return(store):
    store.save_listings(1, "google", [(make_listing("A"), None), (make_listing("B"), None)])
    res = store.save_listings(2, "google", [(make_listing("A"), None)])
    assert res.unseen == ["B"]
    assert len(store.listings("google")) == 2  # not removed until the caller says so
    assert store.mark_removed(2, "google", res.unseen) == 1
    assert [li.key for li in store.listings("google")] == ["A"]
    assert sorted(li.key for li in store.listings("google", include_removed=True)) == ["A", "B"]
    assert store.save_listings(3, "google", [(make_listing("A"), None)]).unseen == []
    res = store.save_listings(4, "google", [(make_listing("A"), None), (make_listing("B"),
                                                                       None)])
    assert res.new == 0 and sorted(li.key for li in store.listings("google")) == ["A", "B"]


def test_links_are_typed_and_keep_the_run_that_set_them(store):
    a, b = make_listing("A"), make_listing("B")
    sku_a = Link("google", "A", "A", LinkMethod.SKU, 1.0)
    store.save_listings(1, "google", [
        (a, sku_a), (b, Link("google", "B", None, LinkMethod.AMBIGUOUS, 0.0, ("X", "Y")))])
    assert store.links("google") == [
        LinkRecord("google", "A", "A", "sku", 1.0, (), 1),
        LinkRecord("google", "B", None, "ambiguous", 0.0, ("X", "Y"), 1)]
    store.save_listings(2, "google", [(a, sku_a),
                                      (b, Link("google", "B", "X", LinkMethod.FUZZY, 0.93))])
    got = {r.listing_key: (r.sku, r.method, r.run_id) for r in store.links()}
    assert got == {"A": ("A", "sku", 1), "B": ("X", "fuzzy", 2)}
    assert [li.key for li in store.listings(sku="X")] == ["B"]
    assert store.links("meta") == []
    assert store.links()[1].to_dict()["candidates"] == []
    # A listing saved without a link (None) has none.
    store.save_listings(3, "google", [(a, None), (b, None)])
    assert store.links() == []


def test_link_states_notes_and_decisions(store):
    a, b, c = make_listing("A"), make_listing("B"), make_listing("C")
    sugg = Link("google", "B", None, LinkMethod.SUGGESTED, 0.7, ("X", "Y"),
                "a second candidate scores 0.68", {"title": 0.7, "score": 0.7})
    none = Link("google", "C", None, LinkMethod.NONE, 0.0, (), "title has no words")
    store.save_listings(1, "google", [(a, Link("google", "A", "A", LinkMethod.FUZZY, 0.9)),
                                      (b, sugg), (c, none)])
    store.save_link_notes(1, "google", [sugg, none])
    states = {r.listing_key: r for r in store.link_states("google")}
    assert {k: r.state for k, r in states.items()} == \
        {"A": "linked", "B": "suggested", "C": "unlinked"}
    assert states["B"].candidates == ("X", "Y") and states["B"].evidence["title"] == 0.7
    assert states["C"].reason == "title has no words"
    assert [r.listing_key for r in store.link_states(state="suggested")] == ["B"]
    assert store.listing_channels("B") == ["google"] and store.listing_channels("Z") == []
    # a person decides: the link follows at once, the decisions stay
    store.decide_link("google", "B", "Y", "confirmed", NOW, "checked the photo")
    store.decide_link("google", "A", "A", "rejected", NOW)
    states = {r.listing_key: r for r in store.link_states("google")}
    assert (states["B"].sku, states["B"].method) == ("Y", "confirmed")
    assert states["A"].sku is None and states["A"].state == "unlinked"
    assert store.link_decisions("google") == {"confirmed": {"B": "Y"},
                                              "rejected": {"A": {"A"}}}
    assert store.link_decisions("meta") == {"confirmed": {}, "rejected": {}}
    # confirming another master replaces the confirmation; rejecting it removes it
    store.decide_link("google", "B", "X", "confirmed", NOW)
    store.decide_link("google", "B", "X", "rejected", NOW)
    assert store.link_decisions("google")["confirmed"] == {}
    assert {(d.listing_key, d.sku, d.decision) for d in store.decided_links()} == \
        {("B", "X", "rejected"), ("A", "A", "rejected")}
    with pytest.raises(ValueError):
        store.decide_link("google", "B", "X", "maybe", NOW)


# ----------------------------------------------------------------------------- findings

def test_findings_apply_events_and_records(store):
    c = store.apply_findings(1, "google", [_f("A", details={"kind": "x", "n": [1, 2]}),
                                           _f("B"), _f("C", outcome=Outcome.PASSED)],
                             SourceStatus.COMPLETE, {"A", "B", "C"}, ["price"], NOW)
    assert (c.opened, c.reopened, c.resolved, c.still_open) == (2, 0, 0, 0)
    (a,) = store.findings(sku="A")
    assert isinstance(a, FindingRecord)
    assert (a.fingerprint, a.check, a.channel, a.listing_key, a.field, a.outcome,
            a.severity, a.expected, a.actual, a.state, a.first_seen_at, a.first_run,
            a.resolved_at) == (_f("A").fingerprint, "price", "google", "A", "price",
                               "failed", "critical", "1 EUR", "2 EUR", "open", NOW, 1, None)
    assert a.details == {"kind": "x", "n": [1, 2]}
    assert a.to_dict()["first_seen_at"] == NOW.isoformat()

    t2 = NOW + timedelta(hours=4)
    c = store.apply_findings(2, "google", [_f("A", actual="3 EUR")], SourceStatus.COMPLETE,
                             {"A", "B"}, ["price"], t2)
    assert (c.opened, c.resolved, c.still_open) == (0, 1, 1)
    t3 = t2 + timedelta(hours=4)
    c = store.apply_findings(3, "google", [_f("B")], SourceStatus.COMPLETE, {"A", "B"},
                             ["price"], t3)
    assert (c.reopened, c.resolved) == (1, 1)
    events = store.finding_events(_f("B").fingerprint)
    assert [(e.event, e.state, e.run_id, e.at) for e in events] == [
        ("opened", "open", 1, NOW), ("resolved", "resolved", 2, t2),
        ("reopened", "open", 3, t3)]
    assert [(e.event, e.actual) for e in store.finding_events(_f("A").fingerprint)] == [
        ("opened", "2 EUR"), ("changed", "3 EUR"), ("resolved", None)]
    a, b = store.findings(sku="A")[0], store.findings(sku="B")[0]
    assert (a.state, a.resolved_at, a.resolved_run, a.actual) == ("resolved", t3, 3, "3 EUR")
    assert (b.state, b.resolved_at, b.last_seen_at, b.last_run, b.first_run) == (
        "open", None, t3, 3, 1)
    assert store.finding_events("nope") == []


def test_a_failed_read_opens_and_resolves_nothing(store):
    store.apply_findings(1, "google", [_f("A"), _f("B")], SourceStatus.COMPLETE, {"A", "B"},
                         ["price"], NOW)
    c = store.apply_findings(2, "google", [_f("C")], SourceStatus.FAILED, {"A", "B", "C"},
                             ["price"], NOW)
    assert (c.resolved, c.opened) == (0, 0)
    assert store.apply_findings(4, "google", [], SourceStatus.COMPLETE, {"A"}, ["title"],
                                NOW).resolved == 0  # the price check did not run
    assert store.apply_findings(5, "google", [_f("B")], SourceStatus.COMPLETE, {"A", "B"},
                                ["price"], NOW).resolved == 1
    assert {r.sku: r.state for r in store.findings()} == {"A": "resolved", "B": "open"}
    c = store.apply_findings(6, "google", [_f("A")], SourceStatus.FAILED, {"A", "B"},
                             ["price"], NOW)
    assert (c.reopened, c.resolved) == (0, 0)
    assert {r.sku: r.state for r in store.findings()} == {"A": "resolved", "B": "open"}


def _missing(sku):
    """A finding about no listing: a master missing from the channel."""
    return Finding("presence", "google", sku, "listing", Outcome.FAILED, Severity.CRITICAL,
                   expected=sku, actual=None)


def test_a_partial_read_is_evidence_about_the_listings_it_read(store):
    ran = ["price", "presence"]
    store.apply_findings(1, "google", [_f("A"), _f("B"), _f("C"), _missing("M1")],
                         SourceStatus.COMPLETE, {"A", "B", "C"}, ran, NOW)
    # Run 2 reads A (another value), B (now passing) and D (a new difference), not C.
    t2 = NOW + timedelta(days=1)
    c = store.apply_findings(2, "google", [_f("A", actual="3 EUR"), _f("D")],
                             SourceStatus.PARTIAL, {"A", "B", "D"}, ran, t2)
    assert (c.opened, c.reopened, c.resolved, c.still_open) == (1, 0, 1, 1)
    assert {r.sku: r.state for r in store.findings()} == {
        "A": "open", "B": "resolved", "C": "open", "D": "open", "M1": "open"}
    assert [e.event for e in store.finding_events(_f("A").fingerprint)] == [
        "opened", "changed"]
    assert store.findings(sku="C")[0].last_run == 1  # nothing about C changed
    # Run 3 reads B again, failing: it reopens; the keys read unknown, nothing resolves.
    c = store.apply_findings(3, "google", [_f("B")], SourceStatus.PARTIAL, None, ran, t2)
    assert (c.opened, c.reopened, c.resolved) == (0, 1, 0)
    # Run 4 reads every listing and sees nothing: they resolve; a missing listing neither
    # resolves (M1) nor opens (M2) on a partial read.
    c = store.apply_findings(4, "google", [_missing("M2")], SourceStatus.PARTIAL,
                             {"A", "B", "C", "D"}, ran, t2)
    assert (c.opened, c.resolved) == (0, 4)
    assert {r.sku: r.state for r in store.findings()} == {
        "A": "resolved", "B": "resolved", "C": "resolved", "D": "resolved", "M1": "open"}
    # A not_evaluated outcome on a partial read is no note either.
    c = store.apply_findings(5, "google", [_f("E", Outcome.NOT_EVALUATED)],
                             SourceStatus.PARTIAL, {"E"}, ran, t2)
    assert store.findings(sku="E") == []


def test_a_partial_shard_resolves_only_the_listings_it_read(store):
    from auditor.storage import ShardSpec

    n = 3
    keys = [f"K{i:02d}" for i in range(40)]
    mine = [k for k in keys if ShardSpec.of(k, n) == 1]
    assert len(mine) >= 4
    store.apply_findings(1, "google", [_f(k) for k in keys] + [_missing("M1")],
                         SourceStatus.COMPLETE, set(keys), ["price", "presence"], NOW)
    # Shard 1 of a partial read (held presence) read half its listings and saw a new
    # difference on one: only those resolve or open; the other shards' stay as they are.
    read = mine[: len(mine) // 2]
    new = _f(read[0], check="title")
    ch = store.apply_findings(2, "google", [new], SourceStatus.PARTIAL, set(read),
                              ["price", "presence", "title"], NOW, shard=ShardSpec(1, n))
    assert (ch.opened, ch.resolved) == (1, len(read))
    state = {(f.check, f.listing_key): f.state for f in store.findings(channel="google")}
    assert {k for (c, k), s in state.items() if s == "resolved"} == set(read)
    assert state[("title", read[0])] == "open" and state[("presence", None)] == "open"
    # The channel's no-listing scope on a partial read: nothing is concluded.
    ch = store.apply_findings(2, "google", [_missing("M2")], SourceStatus.PARTIAL, None,
                              ["price", "presence"], NOW,
                              shard=ShardSpec(ShardSpec.NO_LISTING, n))
    assert (ch.opened, ch.resolved) == (0, 0)
    assert {f.sku for f in store.findings(check="presence")} == {"M1"}


def test_findings_filters_and_order(store):
    store.apply_findings(1, "google", [_f("A", severity=Severity.MINOR), _f("B"),
                                       _f("C", check="title", severity=Severity.MAJOR)],
                         SourceStatus.COMPLETE, None, ["price", "title"], NOW)
    store.apply_findings(1, "meta", [_f("A", channel="meta")], SourceStatus.COMPLETE, None,
                         ["price"], NOW)
    assert [(f.channel, f.sku) for f in store.findings()] == [
        ("google", "B"), ("meta", "A"), ("google", "C"), ("google", "A")]
    assert [f.sku for f in store.findings(channel="google", check="price")] == ["B", "A"]
    assert [f.channel for f in store.findings(sku="A")] == ["meta", "google"]
    assert len(store.findings(limit=2)) == 2
    assert store.findings(state="resolved") == []
    # One channel's run never touches another channel's findings.
    store.apply_findings(2, "google", [], SourceStatus.COMPLETE, None, ["price", "title"], NOW)
    assert [f.channel for f in store.findings(state="open")] == ["meta"]


def test_query_findings_takes_sets_of_values(store):
    store.apply_findings(1, "google", [_f("A", severity=Severity.MINOR), _f("B"),
                                       _f("C", check="title", severity=Severity.MAJOR)],
                         SourceStatus.COMPLETE, None, ["price", "title"], NOW)
    store.apply_findings(1, "meta", [_f("A", channel="meta")], SourceStatus.COMPLETE, None,
                         ["price"], NOW)
    assert [(f.channel, f.sku) for f in store.query_findings()] == [
        (f.channel, f.sku) for f in store.findings()]
    both = store.query_findings(channels=["google", "meta"], checks=["price"])
    assert [(f.channel, f.sku) for f in both] == [("google", "B"), ("meta", "A"),
                                                  ("google", "A")]
    assert [f.sku for f in store.query_findings(severities=["major", "minor"])] == ["C", "A"]
    assert store.query_findings(states=["resolved"]) == []
    assert len(store.query_findings(limit=1)) == 1
    assert store.finding_values("channel") == {"google", "meta"}
    assert store.finding_values("state") == {"open"}
    with pytest.raises(ValueError):
        store.finding_values("message")


def test_presence_hold_kept_then_accepted(store):
    lis = [make_listing(k) for k in ("A", "B", "C")]
    store.save_listings(1, "google", [(li, None) for li in lis])
    store.save_source_result(1, SourceResult("google", listings=3))
    store.apply_findings(1, "google", [_f("C")], SourceStatus.COMPLETE, {"A", "B", "C"},
                         ["price", "presence"], NOW)
    # Run 2 reads A only: B and C vanished; presence held, C's price finding kept open.
    save = store.save_listings(2, "google", [(lis[0], None)])
    assert sorted(save.unseen) == ["B", "C"]
    store.save_source_result(2, SourceResult("google", listings=1))
    store.apply_findings(2, "google", [], SourceStatus.PARTIAL, {"A"}, ["price", "presence"],
                         NOW)
    missing = Finding("presence", "google", "SKU-B", "listing", Outcome.FAILED,
                      Severity.MAJOR, expected="SKU-B", message="not on google")
    store.save_presence_hold(2, "google", "drop", "2 of 3 vanished", save.unseen, [missing],
                             ["price", "presence"])
    (hold,) = store.presence_holds(channel="google")
    assert (hold.run_id, hold.kind, hold.state, hold.vanished) == (2, "drop", "held",
                                                                   ("B", "C"))
    assert hold.findings[0]["sku"] == "SKU-B" and hold.checks == ("price", "presence")
    assert store.previous_run_of("google", 2) == 1
    assert store.presence_holds(state="accepted") == []
    counts = store.accept_presence_hold(2, "google", NOW)
    assert counts == {"opened": 1, "resolved": 1, "removed": 2}
    assert {(f.check, f.sku, f.state) for f in store.findings()} == {
        ("presence", "SKU-B", "open"), ("price", "C", "resolved")}
    assert {li.key for li in store.listings("google")} == {"A"}
    assert store.presence_holds(2, "google")[0].state == "accepted"
    with pytest.raises(Exception, match="already accepted"):
        store.accept_presence_hold(2, "google", NOW)


def test_presence_hold_decided_by_a_later_run(store):
    store.save_source_result(1, SourceResult("google", listings=3))
    store.save_presence_hold(1, "google", "row", "a row without a key", [], [], ["presence"])
    store.save_source_result(2, SourceResult("google", listings=3))
    with pytest.raises(Exception, match="not the latest run"):
        store.accept_presence_hold(1, "google", NOW)
    store.decide_presence_hold(1, "google", "superseded", 2, NOW)
    (h,) = store.presence_holds(1)
    assert (h.state, h.decided_run) == ("superseded", 2) and h.decided_at is not None
    assert h.to_dict()["decided_at"].startswith(str(NOW.year))


# ----------------------------------------------------------------------------- runs, sources

def test_runs_sources_errors_and_scores(store):
    r1 = store.start_run(NOW, None)
    r2 = store.start_run(NOW + timedelta(hours=1), None)
    assert r2 > r1
    runs = store.runs()
    assert [r.id for r in runs] == [r2, r1] and all(isinstance(r, RunRecord) for r in runs)
    assert (runs[0].status, runs[0].finished_at, runs[0].summary) == ("running", None, {})
    snap = store.save_master([make_master("A")], "m.csv", "h", NOW).snapshot_id
    store.set_run_snapshot(r1, snap)
    end = NOW + timedelta(minutes=5)
    store.finish_run(Run(r1, NOW, end, SourceStatus.PARTIAL), {"channels": [{"x": 1}]})
    (first,) = [r for r in store.runs() if r.id == r1]
    assert (first.status, first.finished_at, first.master_snapshot_id, first.summary) == (
        "partial", end, snap, {"channels": [{"x": 1}]})
    assert store.runs(limit=1)[0].id == r2

    t = NOW + timedelta(seconds=30)
    store.save_source_result(r1, SourceResult("google", SourceStatus.COMPLETE, 10, 2, None,
                                              NOW, t), [("feed.xml:3", "bad price"),
                                                        ("feed.xml:9", "no id")])
    store.save_source_result(r1, SourceResult("meta", SourceStatus.FAILED, 0, 0, "HTTP 500",
                                              NOW, t))
    assert store.run_sources(r1) == [
        RunSourceRecord(r1, "google", "complete", 10, 2, None, NOW, t),
        RunSourceRecord(r1, "meta", "failed", 0, 0, "HTTP 500", NOW, t)]
    errs = store.run_errors(r1)
    assert [(e.source, e.location, e.reason) for e in errs] == [
        ("google", "feed.xml:3", "bad price"), ("google", "feed.xml:9", "no id")]
    assert len(store.run_errors(r1, limit=1)) == 1 and store.run_errors(r1, "meta") == []
    assert store.last_durations() == {"google": 30.0}
    assert store.last_good_listing_count("google", r2) == 10
    assert store.last_good_listing_count("meta", r2) is None
    assert store.last_source_result("meta").message == "HTTP 500"
    assert store.last_source_result("google", before_run=r1) is None

    store.save_scores(r1, [("google", "price", {"passed": 3, "failed": 1}),
                           ("google", "title", {"not_evaluated": 4})])
    assert store.scores(r1) == [ScoreRecord(r1, "google", "price", 3, 1, 0, 0, 0.75),
                                ScoreRecord(r1, "google", "title", 0, 0, 0, 4, None)]
    assert store.scores(r2) == []


# ----------------------------------------------------------------------------- caches

def test_http_cache(store):
    assert store.http_cache_get("https://s/p/1") is None
    store.http_cache_put("https://s/p/1", etag='"e1"', sha256="h1", extraction='{"t": 1}')
    assert store.http_cache_get("https://s/p/1")["etag"] == '"e1"'
    # A row changes only the keys it names.
    store.http_cache_put_many([{"url": "https://s/p/1", "etag": '"e2"'},
                               {"url": "https://s/p/2", "etag": None, "fetched_at": "t"},
                               {"url": "https://other/p/3", "extraction": "{}"}])
    row = store.http_cache_get("https://s/p/1")
    assert (row["etag"], row["sha256"], row["extraction"]) == ('"e2"', "h1", '{"t": 1}')
    assert store.http_cache_extractions(["https://s/p/1", "https://s/p/2"]) == {
        "https://s/p/1": '{"t": 1}'}
    got = {r["url"]: bool(r["had_extraction"]) for r in store.http_cache_validators("https://s/")}
    assert got == {"https://s/p/1": True, "https://s/p/2": False}


def test_image_caches(store):
    store.put_image_signatures([("s1", 2, {"phash": "ab"}), ("s2", 2, {"phash": "cd"})])
    assert store.image_signatures(["s1", "s1", "s3"], 2) == {"s1": {"phash": "ab"}}
    assert store.image_signatures(["s1"], 1) == {}  # computed by another algorithm version
    store.put_image_urls([{"url": "https://i/a.jpg", "etag": "e", "sha256": "s1"},
                          {"url": "https://i/b.jpg", "error": "HTTP 404"}])
    got = store.image_urls(["https://i/a.jpg", "https://i/b.jpg", "https://i/c.jpg"])
    assert set(got) == {"https://i/a.jpg", "https://i/b.jpg"}
    assert (got["https://i/a.jpg"]["sha256"], got["https://i/b.jpg"]["error"]) == (
        "s1", "HTTP 404")
    assert got["https://i/a.jpg"]["fetched_at"]


def test_records_are_plain_data():
    """Records compare by value and give JSON-ready dicts (what --format json prints)."""
    rec = RunSourceRecord(1, "google", "complete", 1, 0, None, NOW, None)
    assert rec.to_dict() == {"run_id": 1, "source": "google", "status": "complete",
                             "listings": 1, "errors": 0, "message": None,
                             "started_at": NOW.isoformat(), "finished_at": None}
    assert dataclasses.replace(rec, listings=2) != rec


# ----------------------------------------------------------------------------- a run's own record
# (auditor.session: the master import, finding changes as events, interrupted runs)

def test_run_summary_master_import_and_interruption(store):
    from auditor.events import FindingChange  # noqa: F401  (the type finding_changes returns)

    run_id = store.start_run(NOW, None)
    assert store.run_summary(run_id) == {}
    store.update_run_summary(run_id, pid=4242)
    store.record_master_import(run_id, {"rejected": True, "records": 0, "error_count": 1},
                               [("m.csv:2 column price", "bad price 'abc'")])
    assert store.run_summary(run_id) == {"pid": 4242, "master": {
        "rejected": True, "records": 0, "error_count": 1}}
    assert [(e.source, e.location, e.reason) for e in store.run_errors(run_id)] == [
        ("master", "m.csv:2 column price", "bad price 'abc'")]
    (running,) = store.running_runs()
    assert isinstance(running, RunRecord) and running.id == run_id
    assert running.summary["pid"] == 4242

    at = NOW + timedelta(minutes=5)
    assert store.interrupt_run(run_id, at, "SIGTERM") is True
    assert store.interrupt_run(run_id, at, "again") is False  # not running any more
    (run,) = store.runs()
    assert (run.status, run.finished_at) == ("interrupted", at)
    assert run.summary["interrupted"] == {"at": at.isoformat(), "reason": "SIGTERM"}
    assert run.summary["master"]["rejected"] is True
    assert store.running_runs() == []
    finished = store.start_run(NOW, None)
    store.finish_run(Run(finished, NOW, at, SourceStatus.COMPLETE), {"channels": []})
    assert store.interrupt_run(finished, at, "late") is False
    assert store.runs()[0].status == "complete"


def test_finding_changes_of_a_run_and_channel(store):
    store.apply_findings(1, "google", [_f("A"), _f("B")], SourceStatus.COMPLETE, {"A", "B"},
                         ["price"], NOW)
    store.apply_findings(1, "meta", [_f("A", channel="meta")], SourceStatus.COMPLETE, None,
                         ["price"], NOW)
    assert sorted((c.sku, c.change, c.channel) for c in store.finding_changes(1, "google")) == [
        ("A", "opened", "google"), ("B", "opened", "google")]
    store.apply_findings(2, "google", [_f("A", actual="3 EUR")], SourceStatus.COMPLETE,
                         {"A", "B"}, ["price"], NOW)
    changes = store.finding_changes(2, "google")
    assert sorted((c.sku, c.change, c.actual) for c in changes) == [
        ("A", "changed", "3 EUR"), ("B", "resolved", "2 EUR")]
    c = next(c for c in changes if c.sku == "A")
    assert (c.fingerprint, c.check, c.field, c.outcome, c.severity, c.expected) == (
        _f("A").fingerprint, "price", "price", "failed", "critical", "1 EUR")
    store.apply_findings(3, "google", [_f("A", actual="3 EUR"), _f("B")],
                         SourceStatus.COMPLETE, {"A", "B"}, ["price"], NOW)
    assert [(c.sku, c.change) for c in store.finding_changes(3, "google")] == [("B", "reopened")]
    assert store.finding_changes(2, "meta") == []


def test_holds_run_lock_only_inside_it(store):
    assert store.holds_run_lock() is False
    with store.run_lock():
        # a store another process can open has a real lock; a private one needs none
        assert store.holds_run_lock() is store.multi_process
    assert store.holds_run_lock() is False


def test_a_nul_character_in_a_value_or_a_filter_never_fails(store):
    """SQLite text holds a NUL, PostgreSQL's cannot (it stores U+FFFD instead): either
    way a value with a NUL is stored and found again by the same value, and a filter
    with one matches nothing rather than failing."""
    f = _f("S\x00K", actual="2\x00EUR")
    store.apply_findings(1, "google", [f], SourceStatus.COMPLETE, None, ["price"], NOW)
    rec = store.finding_record(f.fingerprint)
    assert rec is not None and rec.actual in ("2\x00EUR", "2\ufffdEUR")
    assert [r.fingerprint for r in store.findings(sku="S\x00K")] == [f.fingerprint]
    assert store.findings(sku="\x00") == [] and store.finding("ab\x00") is None
    assert store.findings_page({"sku": "\x00\xff"}, None, 10) == []
    assert store.search_findings(text="zz\x00").total == 0
    li = make_listing("K\x00EY")
    store.save_listings(1, "google", [(li, None)])
    assert store.listing("google", "K\x00EY") is not None


def test_shard_scoped_saves_and_findings(store):
    """Distributed runs (auditor.distributed): a save or an apply scoped to one shard sees
    and concludes only that shard's listings and findings; the NO_LISTING scope only the
    findings about no listing."""
    from auditor.storage import ShardSpec

    keys = [f"K{i:02d}" for i in range(40)]
    store.start_run(NOW, None)
    store.start_run(NOW + timedelta(days=1), None)
    store.save_listings(1, "google", [(make_listing(k), None) for k in keys])
    assert store.present_keys("google") == set(keys)
    n = 3
    mine = [k for k in keys if ShardSpec.of(k, n) == 1]
    assert 0 < len(mine) < len(keys)
    # Shard 1 read again without its first key: only that key is unseen, not the others'.
    res = store.save_listings(2, "google", [(make_listing(k), None) for k in mine[1:]],
                              shard=ShardSpec(1, n))
    assert res.unseen == [mine[0]]
    # Findings: one per listing, and one about no listing (a missing master).
    missing = Finding("presence", "google", "SKU-GONE", "listing", Outcome.FAILED,
                      Severity.CRITICAL, expected="SKU-GONE", actual=None)
    store.apply_findings(1, "google", [_f(k) for k in keys] + [missing],
                         SourceStatus.COMPLETE, set(keys), ["price", "presence"], NOW)
    # Shard 1 complete, seeing nothing: only its findings resolve.
    ch = store.apply_findings(2, "google", [], SourceStatus.COMPLETE, set(mine), ["price"],
                              NOW + timedelta(days=1), shard=ShardSpec(1, n))
    assert ch.resolved == len(mine)
    by_key = {f.listing_key: f.state for f in store.findings(channel="google")}
    assert {k for k, s in by_key.items() if s == "resolved"} == set(mine)
    assert by_key[None] == "open"
    # The no-listing scope resolves the missing-listing finding and nothing else.
    ch = store.apply_findings(2, "google", [], SourceStatus.COMPLETE, None, ["presence", "price"],
                              NOW + timedelta(days=1), shard=ShardSpec(ShardSpec.NO_LISTING, n))
    assert ch.resolved == 1
    assert {f.listing_key for f in store.findings(state="open", channel="google")} == \
        set(keys) - set(mine)
