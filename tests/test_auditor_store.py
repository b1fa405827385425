import os
import sqlite3
import time
from datetime import timedelta
from decimal import Decimal

import pytest
import sqlite_utils

from auditor.errors import LockedError, StoreError
from auditor.model import Finding, Money, Outcome, Severity, SourceStatus
from auditor.storage import sqlite as store_mod
from auditor.storage.sqlite import SQLiteStore as Store, migrate, run_lock
from tests.conftest import NOW, make_listing, make_master


def _obs(*listings):
    """Listings as save_listings takes them, without links."""
    return [(li, None) for li in listings]


def test_fresh_store_is_at_latest_schema_and_wal(tmp_path):
    s = Store(tmp_path / "a.db")
    assert s.schema_version == store_mod.SCHEMA_VERSION
    assert s.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert s.db.execute("PRAGMA page_size").fetchone()[0] == 16384
    assert {"master_records", "master_history", "master_changes", "runs", "run_sources",
            "listings", "listing_versions", "findings", "finding_events",
            "scores", "outbox", "http_cache"} <= set(s.db.table_names())
    assert "links" in s.db.view_names()
    s.close()


def test_migrations_apply_forward_only_once():
    db = sqlite_utils.Database(memory=True)
    calls = []
    migs = [lambda d: calls.append(1) or d.execute("CREATE TABLE a (x)"),
            lambda d: calls.append(2) or d.execute("CREATE TABLE b (x)")]
    assert migrate(db, migs[:1]) == 1
    assert migrate(db, migs) == 2
    assert migrate(db, migs) == 2
    assert calls == [1, 2]
    with pytest.raises(StoreError, match="newer than this auditor"):
        migrate(db, migs[:1])


def test_failed_migration_rolls_back():
    db = sqlite_utils.Database(memory=True)

    def broken(d):
        d.execute("CREATE TABLE half (x)")
        raise sqlite3.OperationalError("boom")

    with pytest.raises(sqlite3.OperationalError):
        migrate(db, [broken])
    assert db.execute("PRAGMA user_version").fetchone()[0] == 0
    assert "half" not in db.table_names()


def test_master_history_keeps_every_value_with_its_time(fresh_store):
    s = fresh_store
    r1 = s.save_master([make_master("A"), make_master("B")], "m.csv", "h1", NOW)
    assert (r1.added, r1.changed, r1.removed) == (2, 0, 0)
    later = NOW + timedelta(days=3)
    r2 = s.save_master([make_master("A", price=Money(Decimal("49.90"), "EUR"))], "m.csv", "h2",
                       later)
    assert (r2.added, r2.changed, r2.removed) == (0, 1, 1)
    assert set(s.current_master()) == {"A"}
    assert s.current_master()["A"].price.amount == Decimal("49.90")
    hist = s.master_history()
    (until, old), = hist["A"]
    assert until == later and old.price.amount == Decimal("59.90")
    assert "B" in hist  # removed records keep their last version
    ch = s.master_changes("A")
    assert [(c.field, c.old, c.new) for c in ch] == [("price", "59.90 EUR", "49.90 EUR")]
    assert ch[0].changed_at == later


def test_master_plan_then_commit_writes_only_what_changed(fresh_store):
    s = fresh_store
    s.save_master([make_master(k) for k in "ABCDE"], "m.csv", "h1", NOW)
    later = NOW + timedelta(days=1)
    new = {k: make_master(k) for k in "ABCFG"}
    new["B"] = make_master("B", price=Money(Decimal("1.00"), "EUR"))
    plan = s.plan_master(new, later)
    assert set(plan.writes) == {"B", "F", "G"} and set(plan.bodies) == {"B"}
    assert plan.added == 2
    assert sorted(plan.removed) == ["D", "E"] and set(plan.replaced) == {"B", "D", "E"}
    s.commit_master(plan, new, "m.csv", "h2")
    assert s.current_master() == new


def test_listing_versions_only_on_change(fresh_store):
    s = fresh_store
    s.save_listings(1, "google", _obs(make_listing("A"), make_listing("B")))
    s.save_listings(2, "google", _obs(make_listing("A", fetched_at=NOW + timedelta(hours=1),
                                                   evidence="feed.xml:9"),
                                      make_listing("B", title="Changed")))
    # Only B changed: its first version (seen in run 1) was replaced in run 2.
    versions = s.db.execute("SELECT key, run_id, until_run, data FROM listing_versions").fetchall()
    assert [v[:3] for v in versions] == [("B", 1, 2)]
    assert '"title":"Acme Trail Shoe, Red, 42"' in versions[0][3]
    assert [li.title for li in s.listings("google") if li.key == "B"] == ["Changed"]
    # A is the same listing read again: where and when are updated, no new version.
    a = next(li for li in s.listings("google") if li.key == "A")
    assert (a.fetched_at, a.evidence) == (NOW + timedelta(hours=1), "feed.xml:9")
    # Read again unchanged from the same place: no write at all.
    res = s.save_listings(3, "google", _obs(make_listing("A", fetched_at=NOW + timedelta(hours=2),
                                                         evidence="feed.xml:9")))
    row = s.db.execute("SELECT last_seen_run, fetched_at FROM listings WHERE key='A'").fetchone()
    assert row == (2, (NOW + timedelta(hours=1)).isoformat())
    assert res.unseen == ["B"]
    assert s.mark_removed(3, "google", res.unseen) == 1
    assert [li.key for li in s.listings("google")] == ["A"]
    # B is gone: not unseen again (already removed); back in a later read, it is present.
    assert s.save_listings(4, "google", _obs(make_listing("A"))).unseen == []
    assert s.save_listings(5, "google", _obs(make_listing("A"), make_listing("B", title="Changed"))
                           ).unseen == []
    assert sorted(li.key for li in s.listings("google")) == ["A", "B"]
    assert s.save_listings(6, "google", _obs(make_listing("B", title="Changed"))).unseen == ["A"]


def _f(key, outcome=Outcome.FAILED, check="price", actual="2 EUR"):
    return Finding(check, "google", key, "price", outcome, Severity.CRITICAL, expected="1 EUR",
                   actual=actual, listing_key=key)


def test_finding_lifecycle_open_change_resolve_reopen(fresh_store):
    s = fresh_store
    c = s.apply_findings(1, "google", [_f("A"), _f("B")], SourceStatus.COMPLETE, {"A", "B"},
                         ["price"], NOW)
    assert c.opened == 2
    c = s.apply_findings(2, "google", [_f("A", actual="3 EUR")], SourceStatus.COMPLETE,
                         {"A", "B"}, ["price"], NOW)
    assert c.resolved == 1 and c.still_open == 1
    c = s.apply_findings(3, "google", [_f("B")], SourceStatus.COMPLETE, {"A", "B"},
                         ["price"], NOW)
    assert c.reopened == 1 and c.resolved == 1
    fp_b = _f("B").fingerprint
    assert [e.event for e in s.finding_events(fp_b)] == ["opened", "resolved", "reopened"]
    assert [e.event for e in s.finding_events(_f("A").fingerprint)] == [
        "opened", "changed", "resolved"]
    assert {r.sku: r.state for r in s.findings()} == {"A": "resolved", "B": "open"}


def test_a_failed_source_opens_nothing_a_partial_one_only_about_what_it_read(fresh_store):
    s = fresh_store
    s.apply_findings(1, "google", [_f("A"), _f("B")], SourceStatus.COMPLETE, {"A", "B"},
                     ["price"], NOW)
    c = s.apply_findings(2, "google", [_f("C")], SourceStatus.FAILED, {"A", "B", "C"},
                         ["price"], NOW)
    assert c.resolved == 0 and c.opened == 0
    # A partial read that read A (now passing) and D (a new difference), not B.
    c = s.apply_findings(3, "google", [_f("D")], SourceStatus.PARTIAL, {"A", "D"}, ["price"], NOW)
    assert (c.resolved, c.opened) == (1, 1)
    assert {r.sku: r.state for r in s.findings()} == {"A": "resolved", "B": "open", "D": "open"}
    # A partial read that sees A again reopens it; with the keys read unknown, D (not seen)
    # does not resolve.
    c = s.apply_findings(4, "google", [_f("A"), _f("B")], SourceStatus.PARTIAL, None,
                         ["price"], NOW)
    assert (c.reopened, c.still_open, c.resolved) == (1, 1, 0)
    assert {r.sku: r.state for r in s.findings()} == {"A": "open", "B": "open", "D": "open"}
    assert [e.event for e in s.finding_events(_f("A").fingerprint)] == [
        "opened", "resolved", "reopened"]


def test_not_evaluated_never_opens_or_resolves(fresh_store):
    s = fresh_store
    s.apply_findings(1, "google", [_f("A")], SourceStatus.COMPLETE, {"A", "B"}, ["price"], NOW)
    c = s.apply_findings(2, "google", [_f("A", Outcome.NOT_EVALUATED),
                                       _f("B", Outcome.NOT_EVALUATED)],
                         SourceStatus.COMPLETE, {"A", "B"}, ["price"], NOW)
    assert (c.opened, c.reopened, c.resolved, c.still_open) == (0, 0, 0, 0)
    # A stays as it was; B is kept only as information (why it was not compared) and is
    # no alert candidate.
    assert {r.sku: (r.state, r.outcome) for r in s.findings()} == {
        "A": ("open", "failed"), "B": ("open", "not_evaluated")}
    assert [r["sku"] for r in s.alert_candidates()] == ["A"]
    # Compared at last and different: B opens (an "opened" event, for confirmation).
    c = s.apply_findings(3, "google", [_f("A"), _f("B")], SourceStatus.COMPLETE, {"A", "B"},
                         ["price"], NOW)
    assert c.opened == 1
    assert [e.event for e in s.finding_events(_f("B").fingerprint)] == ["opened", "opened"]


def test_disabled_check_does_not_resolve_its_findings(fresh_store):
    s = fresh_store
    s.apply_findings(1, "google", [_f("A")], SourceStatus.COMPLETE, {"A"}, ["price"], NOW)
    s.apply_findings(2, "google", [], SourceStatus.COMPLETE, {"A"}, ["title"], NOW)
    assert s.findings()[0].state == "open"


def test_run_lock_excludes_a_second_run(tmp_path):
    db = tmp_path / "a.db"
    with run_lock(db):
        with pytest.raises(LockedError, match="another run holds the lock"):
            with run_lock(db, wait=0.3):
                pass
    with run_lock(db):  # released
        pass


def test_links_sit_in_listing_rows_and_unchanged_ones_are_not_rewritten(fresh_store):
    from auditor.model import Link, LinkMethod

    s = fresh_store
    a, b = make_listing("A"), make_listing("B")
    sku_a = Link("google", "A", "A", LinkMethod.SKU, 1.0)
    s.save_listings(1, "google", [
        (a, sku_a), (b, Link("google", "B", None, LinkMethod.AMBIGUOUS, 0.0, ("X", "Y")))])
    links = {r.listing_key: r for r in s.links("google")}
    assert (links["B"].method, links["B"].candidates) == ("ambiguous", ("X", "Y"))
    # B unchanged, its link changed: only the link is written, no new listing version.
    s.save_listings(2, "google", [(a, sku_a), (b, Link("google", "B", "X", LinkMethod.FUZZY,
                                                       0.93))])
    got = {r.listing_key: (r.sku, r.method, r.run_id) for r in s.links("google")}
    assert got == {"A": ("A", "sku", 1), "B": ("X", "fuzzy", 2)}
    assert s.db.execute("SELECT count(*) FROM listing_versions").fetchone()[0] == 0
    # A changed, same link: a new version, and the link keeps the run that set it.
    s.save_listings(3, "google", [(make_listing("A", title="New"), sku_a)])
    assert {r.listing_key: r.run_id for r in s.links("google")}["A"] == 1
    assert s.db.execute("SELECT key FROM listing_versions").fetchall() == [("A",)]
    # The links view and the listings of one master.
    assert s.db.execute("SELECT listing_key, sku, method FROM links ORDER BY listing_key"
                        ).fetchall() == [("A", "A", "sku"), ("B", "X", "fuzzy")]
    assert [li.key for li in s.listings(sku="X")] == ["B"]


def test_migration_moves_links_into_listing_rows(tmp_path):
    db = sqlite_utils.Database(tmp_path / "old.db")
    migrate(db, store_mod.MIGRATIONS[:3])
    db.execute("INSERT INTO listings (channel, key, hash, data, last_seen_run) "
               "VALUES ('google', 'A', 'h', '{}', 1)")
    db.execute("INSERT INTO links VALUES ('google', 'A', 'SKU-A', 'gtin', 1.0, NULL, 1)")
    db.conn.commit()
    db.close()
    s = Store(tmp_path / "old.db")
    assert s.schema_version == len(store_mod.MIGRATIONS)
    assert s.db.execute("SELECT master_sku, link_method FROM listings").fetchall() == [
        ("SKU-A", "gtin")]
    assert [(r.listing_key, r.sku, r.method) for r in s.links()] == [
        ("A", "SKU-A", "gtin")]
    s.close()


def test_listings_keep_batching_while_another_process_writes(tmp_path, monkeypatch):
    """A run's listings never wait idle for another writer: batches accumulate (up to a
    bound) and are written once the lock is free; nothing is lost."""
    monkeypatch.setattr(store_mod, "WRITE_BATCH", 10)
    s = Store(tmp_path / "a.db")
    other = sqlite3.connect(tmp_path / "a.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    attempts = []
    real = s._write

    def spy(fn, wait):
        attempts.append(wait)
        if wait and other.in_transaction:
            other.execute("COMMIT")  # the other writer finishes; the bound is reached
        return real(fn, wait)

    monkeypatch.setattr(s, "_write", spy)
    res = s.save_listings(1, "google", ((make_listing(f"K{i}"), None) for i in range(85)))
    assert res.new == 85
    # Tried without waiting at 10 rows and every few rows after, waited at the bound (80).
    assert attempts[:2] == [False, False] and attempts.index(True) > 2
    assert s.db.execute("SELECT count(*) FROM listings").fetchone()[0] == 85
    s.close()


# ----------------------------------------------------------------------------- run lock

def _hold_lock_in_child(name, ready, release):
    """Another run: holds the lock through ``name`` until told to let go."""
    with run_lock(name):
        ready.set()
        release.wait(30)


def test_run_lock_holds_for_every_name_of_the_store(tmp_path):
    """A symlink (to the file or to its folder) or a relative path is the same store:
    one lock, whichever name a run was given."""
    import multiprocessing as mp
    import os

    real = tmp_path / "a.db"
    Store(real).close()
    (tmp_path / "link.db").symlink_to(real)
    (tmp_path / "dir").symlink_to(tmp_path)
    names = [tmp_path / "link.db", tmp_path / "dir" / "a.db",
             os.path.relpath(real), tmp_path / "dir" / "link.db"]
    ctx = mp.get_context("fork")
    ready, release = ctx.Event(), ctx.Event()
    holder = ctx.Process(target=_hold_lock_in_child, args=(tmp_path / "link.db", ready, release))
    holder.start()
    try:
        assert ready.wait(30)
        for name in [real, *names]:
            with pytest.raises(LockedError, match=f"pid {holder.pid} since"):
                with run_lock(name, wait=0):
                    pass
        # the same through the store interface
        s = Store(tmp_path / "dir" / "link.db")
        with pytest.raises(LockedError):
            with s.run_lock(wait=0.1):
                pass
        s.close()
    finally:
        release.set()
        holder.join(30)
    with run_lock(tmp_path / "dir" / "a.db"):  # released
        pass


def test_failed_lock_attempt_leaves_the_holders_note(tmp_path):
    db = tmp_path / "a.db"
    with run_lock(db):
        note = store_mod.lock_path(db).read_text()
        assert note.startswith(f"pid {os.getpid()} since ")
        for _ in range(3):  # every later message still names the holder
            with pytest.raises(LockedError, match=f"pid {os.getpid()} since") as e:
                with run_lock(db, wait=0):
                    pass
            assert "unknown holder" not in str(e.value)
        assert store_mod.lock_path(db).read_text() == note
    assert store_mod.lock_path(db).read_text() == ""  # the holder clears it on release


# ----------------------------------------------------------------------------- migration race

def _v3_store(path):
    """A store as an auditor of schema version 3 left it (WAL, a linked listing)."""
    db = sqlite_utils.Database(path)
    db.execute("PRAGMA journal_mode=WAL")
    migrate(db, store_mod.MIGRATIONS[:3])
    db.execute("INSERT INTO listings (channel, key, hash, data, last_seen_run) "
               "VALUES ('google', 'A', 'h', '{}', 1)")
    db.execute("INSERT INTO links VALUES ('google', 'A', 'SKU-A', 'gtin', 1.0, NULL, 1)")
    db.conn.commit()
    db.close()


def _open_at_once(path, barrier, results, slow):
    try:
        if slow:  # a migration that takes a while: both processes are inside it at once
            real = store_mod.MIGRATIONS[3]

            def slow_m4(db):
                time.sleep(0.3)
                real(db)

            store_mod.MIGRATIONS[3] = slow_m4
        barrier.wait(30)
        s = Store(path)
        results.put(("ok", s.schema_version))
        s.close()
    except BaseException as e:
        results.put(("error", f"{e.__class__.__name__}: {e}"))


@pytest.mark.parametrize("slow", [False, True], ids=["as-is", "slow-migration"])
def test_two_processes_open_an_old_store_at_once(tmp_path, slow):
    """Both see the store at the latest version; the migration ran once (no
    'duplicate column name')."""
    import multiprocessing as mp

    ctx = mp.get_context("fork")
    for attempt in range(6 if slow else 12):
        path = tmp_path / f"old-{attempt}.db"
        _v3_store(path)
        barrier, results = ctx.Barrier(2), ctx.Queue()
        procs = [ctx.Process(target=_open_at_once, args=(str(path), barrier, results, slow))
                 for _ in range(2)]
        for p in procs:
            p.start()
        got = [results.get(timeout=60) for _ in procs]
        for p in procs:
            p.join(30)
        assert got == [("ok", store_mod.SCHEMA_VERSION)] * 2, (attempt, got)
        s = Store(path)
        assert [(r.listing_key, r.sku, r.method) for r in s.links()] == [("A", "SKU-A", "gtin")]
        s.close()
