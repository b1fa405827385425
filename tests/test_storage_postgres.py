"""What is the PostgreSQL store's own (the contract suite covers the interface):
partitions per channel, versioned migrations under concurrent openers, a repeat read
that writes nothing, concurrent worker processes without lost updates, the run lock
as an advisory lock, and a password that never shows. A real server: tests/pg_server.py.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import time
from datetime import timedelta

import psycopg
import pytest

from auditor.errors import LockedError, StoreError
from auditor.model import Outcome, Severity, SourceStatus, Finding
from auditor.storage import open_store, remove_store, store_exists
from auditor.storage import postgres
from auditor.storage.postgres import PostgresStore
from tests.conftest import NOW, make_listing, make_master
from tests.pg_server import PASSWORD

CTX = mp.get_context("fork")


@pytest.fixture
def url(pg_server) -> str:
    return pg_server.new_database()


@pytest.fixture
def store(url):
    s = open_store(url)
    yield s
    s.close()


def _sql(url: str, q: str, args=()):
    with psycopg.connect(url, autocommit=True) as c:
        cur = c.execute(q, args)
        return cur.fetchall() if cur.description else []


def _partitions(url: str, table: str) -> dict[str, str]:
    """partition name -> its bound, for one partitioned table."""
    return dict(_sql(url, "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i"
                          " JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = %s::regclass",
                     (table,)))


# ----------------------------------------------------------------------------- factory, secrets

def test_open_store_by_url_and_schemes(pg_server, url):
    s = open_store(url.replace("postgresql://", "postgresql+psycopg://"))
    assert isinstance(s, PostgresStore) and s.multi_process \
        and s.schema_version == postgres.SCHEMA_VERSION == 5
    assert PASSWORD not in repr(s)
    s.close()
    assert store_exists(url)
    remove_store(url)
    assert not store_exists(url)
    with pytest.raises(StoreError, match=r"no store at postgresql://auditor:\*\*\*@.* yet"):
        open_store(url, create=False)
    with pytest.raises(StoreError, match="unknown driver 'postgresql\\+asyncpg'"):
        open_store(url.replace("postgresql://", "postgresql+asyncpg://"))


def test_a_password_never_shows_in_errors(pg_server):
    wrong = pg_server.url(password="hunter2-wrong")
    with pytest.raises(StoreError) as e:
        open_store(wrong)
    msg = str(e.value)
    assert "cannot open the PostgreSQL store postgresql://auditor:***@127.0.0.1" in msg
    assert "password authentication failed" in msg and "hunter2" not in msg
    assert e.value.__cause__ is None and e.value.__suppress_context__
    # libpq's query-string form of the password is hidden too
    q = f"postgresql://auditor@127.0.0.1:{pg_server.port}/nodb?password=hunter2-wrong"
    with pytest.raises(StoreError) as e:
        open_store(q)
    assert "hunter2" not in str(e.value) and "password=***" in str(e.value)


# ----------------------------------------------------------------------------- schema

def test_schema_versions_and_concurrent_migrators(pg_server):
    url = pg_server.new_database()
    barrier = CTX.Barrier(6)

    def opener(q):
        try:
            barrier.wait(10)
            s = open_store(url)
            q.put(s.schema_version)
            s.close()
        except BaseException as e:  # noqa: BLE001
            q.put(repr(e))

    q = CTX.Queue()
    procs = [CTX.Process(target=opener, args=(q,)) for _ in range(6)]
    for p in procs:
        p.start()
    results = [q.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(10)
    assert results == [postgres.SCHEMA_VERSION] * 6
    # one row per migration, each applied once
    assert [r[0] for r in _sql(url, "SELECT version FROM schema_version ORDER BY 1")] == [1, 2, 3, 4, 5]
    # A store newer than this auditor is refused, not migrated backwards.
    _sql(url, "INSERT INTO schema_version (version) VALUES (99)")
    with pytest.raises(StoreError, match="schema version 99 is newer"):
        open_store(url)


def test_an_older_store_is_migrated_forward_with_its_data(pg_server):
    """A store made at version 2 (before the alerts' migration) opens at the current
    version, its findings and outbox rows kept, the new columns empty."""
    url = pg_server.new_database()
    with psycopg.connect(url, autocommit=True) as c:
        c.execute("SET TIME ZONE 'UTC'")
        assert postgres.migrate(c, postgres.MIGRATIONS[:2]) == 2
    s = PostgresStore.__new__(PostgresStore)  # the v2 store's own writes, no migration
    s.url, s.lock_timeout, s._channels, s._staged = url, 30.0, set(), set()
    s.conn = postgres.connect(url)
    s.conn.execute("INSERT INTO outbox (created_at, kind, payload) VALUES (now(), 'x', '{}')")
    s._ensure_channel("google")
    s.conn.execute("INSERT INTO findings (channel, fingerprint, check_name, field, outcome,"
                   " severity, state, first_seen_at, last_seen_at) VALUES ('google', 'ab12cd',"
                   " 'price', 'price', 'failed', 'major', 'open', now(), now())")
    s.close()
    s = open_store(url)
    assert s.schema_version == postgres.SCHEMA_VERSION
    rec = s.finding_record("ab12cd")
    assert rec is not None and rec.state == "open" and rec.ack_at is None
    assert s.find_fingerprint("AB12") == "ab12cd"
    assert [r["kind"] for r in s.outbox(None)] == ["x"]
    s.ack_finding("ab12cd", "ana", "mine", NOW)
    assert s.finding("ab12cd")["state"] == "acknowledged"
    assert s.finding_events("ab12cd")[-1].actor == "ana"
    s.close()


def test_listings_and_findings_are_partitioned_by_channel(store, url):
    assert _partitions(url, "listings") == {}  # made on first use of a channel
    store.save_listings(1, "google", [(make_listing("A"), None)])
    store.apply_findings(1, "meta", [Finding("price", "meta", "A", "price", Outcome.FAILED,
                                             Severity.MAJOR, listing_key="A")],
                         SourceStatus.COMPLETE, None, ["price"], NOW)
    for table in postgres.PARTITIONED:
        bounds = sorted(_partitions(url, table).values())
        assert bounds == ["FOR VALUES IN ('google')", "FOR VALUES IN ('meta')"], table
    # A channel's rows live in its own partition, and a query by channel reads only it.
    (google,) = [n for n, b in _partitions(url, "listings").items() if "google" in b]
    assert _sql(url, f'SELECT key FROM "{google}"') == [("A",)]
    plan = "\n".join(r[0] for r in _sql(url, "EXPLAIN SELECT key FROM listings"
                                             " WHERE channel = 'google'"))
    assert google in plan and "listings__" not in plan.replace(google, "")
    # A channel name that is no identifier is a value, not SQL.
    odd = "pos'; DROP TABLE listings; --"
    store.save_listings(1, odd, [(make_listing("B", channel=odd), None)])
    assert [li.key for li in store.listings(odd)] == ["B"]


# ----------------------------------------------------------------------------- repeat reads

def test_an_unchanged_listing_costs_no_write(store, url):
    obs = [(make_listing(f"K{i:04d}"), None) for i in range(2000)]
    assert store.save_listings(1, "google", iter(obs)).new == 2000
    before = dict(_sql(url, "SELECT key, xmin::text FROM listings"))
    res = store.save_listings(2, "google", iter(obs))
    assert (res.new, res.changed, res.unseen) == (0, 0, [])
    assert dict(_sql(url, "SELECT key, xmin::text FROM listings")) == before  # no row rewritten
    # One changed listing rewrites one row and keeps the version it replaced.
    obs[7] = (make_listing("K0007", title="Another title"), None)
    assert store.save_listings(3, "google", iter(obs)).changed == 1
    after = dict(_sql(url, "SELECT key, xmin::text FROM listings"))
    assert {k for k in after if after[k] != before[k]} == {"K0007"}
    assert _sql(url, "SELECT key, run_id, until_run FROM listing_versions") == [("K0007", 1, 3)]


# ----------------------------------------------------------------------------- concurrency

def _worker_channel(url, channel, n, run_id, q):
    try:
        s = open_store(url)
        s.save_listings(run_id, channel, [(make_listing(f"K{i}", channel=channel), None)
                                          for i in range(n)])
        s.apply_findings(run_id, channel,
                         [Finding("price", channel, f"K{i}", "price", Outcome.FAILED,
                                  Severity.MAJOR, listing_key=f"K{i}") for i in range(0, n, 2)],
                         SourceStatus.COMPLETE, None, ["price"], NOW)
        for i in range(20):  # read-modify-write of one shared row, interleaved
            s.update_run_summary(run_id, **{f"{channel}-{i}": i})
        s.close()
        q.put("ok")
    except BaseException as e:  # noqa: BLE001
        q.put(repr(e))


def test_concurrent_worker_processes_lose_no_update(store, url):
    run_id = store.start_run(NOW, None)
    channels = [f"ch{i}" for i in range(4)]
    q = CTX.Queue()
    procs = [CTX.Process(target=_worker_channel, args=(url, ch, 1500, run_id, q))
             for ch in channels]
    for p in procs:
        p.start()
    assert [q.get(timeout=120) for _ in procs] == ["ok"] * 4
    for p in procs:
        p.join(10)
    for ch in channels:
        assert len(store.listings(ch)) == 1500
        assert len(store.findings(channel=ch)) == 750
    summary = store.run_summary(run_id)
    assert len(summary) == 4 * 20 and all(summary[f"{ch}-19"] == 19 for ch in channels)


def _save_same_channel(url, q):
    try:
        s = open_store(url)
        res = s.save_listings(1, "google", [(make_listing(f"K{i}"), None) for i in range(3000)])
        s.close()
        q.put((res.new, res.changed))
    except BaseException as e:  # noqa: BLE001
        q.put(repr(e))


def test_two_processes_saving_one_channel_take_turns(store, url):
    q = CTX.Queue()
    procs = [CTX.Process(target=_save_same_channel, args=(url, q)) for _ in range(2)]
    for p in procs:
        p.start()
    got = sorted(q.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(10)
    # Each reads what the other wrote: one finds them all new, the other none.
    assert got == [(0, 0), (3000, 0)]
    assert len(store.listings("google")) == 3000


def _hold_lock(url, ready, q):
    s = open_store(url)
    with s.run_lock():
        q.put(os.getpid())
        ready.set()
        time.sleep(60)


def test_run_lock_is_an_advisory_lock_that_dies_with_its_holder(store, url):
    ready, q = CTX.Event(), CTX.Queue()
    p = CTX.Process(target=_hold_lock, args=(url, ready, q))
    p.start()
    try:
        assert ready.wait(30)
        pid = q.get(timeout=5)
        with pytest.raises(LockedError) as e:
            with store.run_lock(wait=0.3):
                pass
        assert f"auditor run lock pid {pid} since" in str(e.value)
        assert PASSWORD not in str(e.value)
        os.kill(p.pid, signal.SIGKILL)  # the holder dies: its session and lock go with it
        p.join(10)
        with store.run_lock(wait=10):
            assert store.holds_run_lock()
    finally:
        if p.is_alive():
            p.kill()


def test_a_forked_child_does_not_hold_its_parents_lock(store, url):
    q = CTX.Queue()
    with store.run_lock():
        p = CTX.Process(target=lambda: q.put(store.holds_run_lock()))
        p.start()
        assert q.get(timeout=20) is False
        p.join(10)
        assert store.holds_run_lock()
        other = open_store(url)  # the parent's lock survived the child's exit
        try:
            with pytest.raises(LockedError):
                with other.run_lock():
                    pass
        finally:
            other.close()


def test_interrupt_drops_what_was_being_written(store):
    run_id = store.start_run(NOW, None)
    store.save_master([make_master("A")], "m.csv", "h", NOW)
    tx = store.conn.transaction()
    tx.__enter__()  # a write caught half-way
    store.conn.execute("DELETE FROM master_records")
    assert store.interrupt_run(run_id, NOW + timedelta(minutes=1), "SIGTERM")
    assert store.master_count() == 1 and store.runs()[0].status == "interrupted"


def test_missing_server_binaries_fail_with_what_to_install(monkeypatch):
    import glob as glob_mod
    import shutil

    from tests import pg_server

    monkeypatch.setattr(glob_mod, "glob", lambda pattern: [])
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(pytest.fail.Exception,
                       match="install the Debian package `postgresql`.*AUDITOR_SKIP_POSTGRES=1"):
        pg_server._bindir()


def test_shards_of_one_channel_apply_findings_at_once(store, url):
    """``apply_findings(shard=...)`` holds the channel's findings lock shared and the
    shard's exclusive: another shard of the channel applies while one is in its
    transaction; the same shard, and a whole-channel apply, wait for it."""
    from auditor.storage import ShardSpec

    store.start_run(NOW, None)
    n = 3
    keys = [f"K{i:02d}" for i in range(30)]
    by_shard = {i: [k for k in keys if ShardSpec.of(k, n) == i] for i in range(n)}
    assert all(by_shard.values())

    def found(k):
        return Finding("price", "google", k, "price", Outcome.FAILED, Severity.MAJOR,
                       listing_key=k)

    holder = open_store(url)
    other = open_store(url)
    try:
        with postgres._findings_lock(holder.conn, "google", ShardSpec(0, n)):
            # shard 1 of the same channel: not blocked (lock_timeout would raise)
            other.conn.execute("SET lock_timeout = '2s'")
            ch = other.apply_findings(1, "google", [found(k) for k in by_shard[1]],
                                      SourceStatus.COMPLETE, set(by_shard[1]), ["price"],
                                      NOW, shard=ShardSpec(1, n))
            assert ch.opened == len(by_shard[1])
            # shard 0 again, and the whole channel: they wait for the holder
            for shard in (ShardSpec(0, n), None):
                with pytest.raises(psycopg.errors.LockNotAvailable):
                    other.apply_findings(1, "google", [found(by_shard[0][0])],
                                         SourceStatus.COMPLETE, {by_shard[0][0]}, ["price"],
                                         NOW, shard=shard)
                other.conn.rollback()
        # released: the whole channel applies, and sees shard 1's findings
        ch = other.apply_findings(1, "google", [found(k) for k in keys], SourceStatus.COMPLETE,
                                  set(keys), ["price"], NOW)
        assert ch.still_open == len(by_shard[1]) and ch.opened == len(keys) - len(by_shard[1])
    finally:
        holder.close()
        other.close()
