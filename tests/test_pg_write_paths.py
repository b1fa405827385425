"""The PostgreSQL store's cheaper write paths (issue 20, two workers: the server's CPU):
rows nobody stored yet are copied straight in (no staging table, no ON CONFLICT), with
the upsert kept where a row may exist (a retried job, a later import); a channel's new
partitions collect no statistics on the columns no query filters on; the distributed
run's own tables trigger no autovacuum by their inserts and are truncated at the run's
end. A real server: tests/pg_server.py.
"""

from __future__ import annotations

from datetime import timedelta, timezone

import psycopg
import pytest

from auditor.model import Finding, Outcome, Severity, SourceStatus
from auditor.storage.jobs import RunJobs
from tests.conftest import NOW, make_listing, make_master
from tests import test_storage_postgres as pg_tests

# The same database-per-test fixtures and SQL helper as the store's own tests.
url, store, _sql = pg_tests.url, pg_tests.store, pg_tests._sql


def _finding(key: str, actual: str = "1.00 EUR") -> Finding:
    return Finding("price", "google", key, "price", Outcome.FAILED, Severity.MAJOR,
                   expected="59.90 EUR", actual=actual, listing_key=key)


def test_a_first_import_is_copied_in_and_a_later_one_merged(store, url):
    first = store.save_master([make_master(f"S{i}") for i in range(50)], "m.csv", "h1", NOW)
    assert (first.records, first.added) == (50, 50)
    assert _sql(url, "SELECT count(*) FROM master_records") == [(50,)]
    # A later import goes through the merge: changed, added and removed records.
    recs = [make_master(f"S{i}", title="New title" if i == 3 else "Acme Trail Shoe, Red, 42")
            for i in range(1, 52)]
    res = store.save_master(recs, "m.csv", "h2", NOW)
    assert (res.added, res.changed, res.removed) == (2, 1, 1)
    assert store.current_master()["S3"].title == "New title"
    assert "S0" not in store.current_master() and "S51" in store.current_master()
    assert [c.field for c in store.master_changes("S3")] == ["title"]


def test_new_listings_are_copied_in_and_a_second_save_of_the_run_merges(store, url):
    obs = [(make_listing(f"K{i:03d}"), None) for i in range(300)]
    assert store.save_listings(1, "google", obs).new == 300
    # The same run saving again (a retried job): every key is stored now, nothing fails.
    again = store.save_listings(1, "google", obs)
    assert (again.new, again.changed) == (0, 0)
    # A changed listing is merged and its earlier version kept.
    obs[5] = (make_listing("K005", title="Changed"), None)
    assert store.save_listings(2, "google", obs).changed == 1
    assert _sql(url, "SELECT key, run_id, until_run FROM listing_versions") == [("K005", 1, 2)]
    assert _sql(url, "SELECT count(*) FROM listings") == [(300,)]


def test_a_key_stored_behind_the_lock_fails_the_save_instead_of_merging_unseen(store, url):
    """A key stored by a writer that ignored the channel's lock, between the save's read of
    the stored rows and its copy, is a primary-key violation: nothing is merged unseen."""
    store.save_listings(1, "google", [(make_listing("A"), None)])  # (the partition exists)
    seen = []
    real = store.conn.execute

    def execute(q, *a, **kw):
        cur = real(q, *a, **kw)
        if isinstance(q, str) and q.startswith("SELECT key, hash") and not seen:
            seen.append(q)
            _sql(url, "INSERT INTO listings (channel, key, hash, data) VALUES"
                      " ('google', 'B', 'x', '{}')")
        return cur

    store.conn.execute = execute  # type: ignore[method-assign]
    with pytest.raises(psycopg.errors.UniqueViolation):
        store.save_listings(2, "google", [(make_listing("B"), None)])
    store.conn.execute = real  # type: ignore[method-assign]
    assert _sql(url, "SELECT hash FROM listings WHERE key = 'B'") == [("x",)]


def test_observations_are_copied_in_once_and_upserted_when_the_run_retries(store, url):
    store.apply_findings(1, "google", [_finding("A"), _finding("B")], SourceStatus.COMPLETE,
                         None, ["price"], NOW)
    # The same run again (a retried shard job): its observations exist, they are upserted.
    store.apply_findings(1, "google", [_finding("A", "2.00 EUR"), _finding("B")],
                         SourceStatus.COMPLETE, None, ["price"], NOW)
    assert _sql(url, "SELECT run_id, fingerprint, outcome FROM finding_observations"
                     " ORDER BY 1, 2") == sorted(
        (1, f.fingerprint, "failed") for f in (_finding("A"), _finding("B")))
    # The next run's are new: copied straight in, beside the first run's.
    store.apply_findings(2, "google", [_finding("A")], SourceStatus.COMPLETE, None,
                         ["price"], NOW)
    assert _sql(url, "SELECT run_id, count(*) FROM finding_observations GROUP BY 1"
                     " ORDER BY 1") == [(1, 2), (2, 1)]
    assert {f.listing_key: f.state for f in store.findings()} == {"A": "open",
                                                                   "B": "resolved"}


def test_new_partitions_collect_no_statistics_on_bodies_and_texts(store, url):
    store.save_listings(1, "google", [(make_listing("A"), None)])
    targets = dict(_sql(url, "SELECT c.relname || '.' || a.attname, a.attstattarget"
                             " FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid"
                             " JOIN pg_inherits i ON i.inhrelid = c.oid"
                             " WHERE a.attnum > 0 AND NOT a.attisdropped"))
    by_col: dict[str, set[int]] = {}
    for name, target in targets.items():
        table = name.split("__")[0]
        by_col.setdefault(f"{table}.{name.split('.')[-1]}", set()).add(target)
    for col in ("listings.data", "listings.link_candidates", "listing_versions.data",
                "findings.message", "findings.details", "findings.expected",
                "findings.actual"):
        assert by_col[col] == {0}, col
    for col in ("listings.key", "listings.master_sku", "findings.state", "findings.sku"):
        assert 0 not in by_col[col], col
    _sql(url, "ANALYZE listings")  # and ANALYZE still works


def test_run_tables_skip_insert_vacuum_and_are_truncated_at_the_runs_end(url):
    with RunJobs(url) as jobs:
        jobs.ensure_schema()
        jobs.ensure_schema()  # (again: nothing to change)
        opts = dict(_sql(url, "SELECT relname, reloptions FROM pg_class WHERE relname IN"
                              " ('dist_staged', 'dist_packs')"))
        for table in ("dist_staged", "dist_packs"):
            assert "autovacuum_vacuum_insert_threshold=-1" in opts[table]
        toast = _sql(url, "SELECT t.reloptions FROM pg_class c JOIN pg_class t"
                          " ON t.oid = c.reltoastrelid WHERE c.relname = 'dist_staged'")
        assert "autovacuum_vacuum_insert_threshold=-1" in toast[0][0]
        assert _sql(url, "SELECT attstorage FROM pg_attribute WHERE attrelid ="
                         " 'dist_channels'::regclass AND attname IN ('read', 'summary')"
                    ) == [("e",), ("e",)]
        for run in (1, 2):
            jobs.start_run(run, "c.toml", "sha", None, NOW, 10)
            jobs.stage(run, "google", 1, [(make_listing("A"), None)])
            jobs.save_pack(run, b"x" * 100)
        # Another run still running: only this run's rows go.
        jobs.end_run(1, "finished")
        assert _sql(url, "SELECT DISTINCT run_id FROM dist_staged") == [(2,)]
        assert _sql(url, "SELECT DISTINCT run_id FROM dist_packs") == [(2,)]
        # The last running run: the tables are truncated (a new file, no dead rows).
        node = _sql(url, "SELECT relfilenode FROM pg_class WHERE relname = 'dist_staged'")
        jobs.end_run(2, "finished")
        assert _sql(url, "SELECT count(*) FROM dist_staged") == [(0,)]
        assert _sql(url, "SELECT count(*) FROM dist_packs") == [(0,)]
        assert _sql(url, "SELECT relfilenode FROM pg_class WHERE relname = 'dist_staged'"
                    ) != node
        assert _sql(url, "SELECT run_id, status FROM dist_runs ORDER BY 1") == [
            (1, "finished"), (2, "finished")]


def test_a_run_ends_with_a_delete_when_a_reader_holds_its_rows(url):
    with RunJobs(url) as jobs:
        jobs.ensure_schema()
        jobs.start_run(3, "c.toml", "sha", None, NOW, 10)
        jobs.stage(3, "google", 1, [(make_listing("A"), None)])
        with psycopg.connect(url) as reader:  # a job still reading, in a transaction
            reader.execute("SELECT count(*) FROM dist_staged").fetchone()
            node = _sql(url, "SELECT relfilenode FROM pg_class WHERE relname='dist_staged'")
            jobs.end_run(3, "interrupted")  # waits 2 s for the lock, then deletes
            reader.rollback()
        assert _sql(url, "SELECT count(*) FROM dist_staged") == [(0,)]
        assert _sql(url, "SELECT relfilenode FROM pg_class WHERE relname = 'dist_staged'"
                    ) == node
        assert _sql(url, "SELECT status FROM dist_runs WHERE run_id = 3") == [
            ("interrupted",)]


def test_listings_are_copied_in_binary_and_read_back_the_same(store, url):
    """A table whose columns are all text, integers, floats, times (``_BINARY_OIDS``) is
    copied in binary: the listings' values (a NUL as U+FFFD, None, a float, a run id) and
    the findings' times (ISO text, with or without an offset) come back as they went in."""
    from auditor.model import Link, LinkMethod
    from auditor.storage.postgres import _FINS_COLS, _UP_COLS

    obs = [(make_listing("K\x00Y", title="T\x00itle"), Link("google", "K\x00Y", "S1", LinkMethod.GTIN, 0.75)),
           (make_listing("K2"), None)]
    assert store.save_listings(3, "google", obs).new == 2
    assert store._copy_types[("listings", _UP_COLS)] is not None
    rows = _sql(url, "SELECT key, master_sku, link_confidence, first_seen_run, link_run"
                     " FROM listings ORDER BY key")
    assert rows == [("K2", None, None, 3, None), ("K\ufffdY", "S1", 0.75, 3, 3)]
    back = store.listing("google", "K\x00Y")
    assert back is not None and back.title == "T\x00itle"  # (a JSON escape in the body)
    store.apply_findings(3, "google", [_finding("K2")], SourceStatus.COMPLETE, {"K2"},
                         ["price"], NOW)
    assert store._copy_types[("findings", _FINS_COLS)] is not None
    assert _sql(url, "SELECT first_seen_at, last_seen_at FROM findings") == [(NOW, NOW)]
    assert _sql(url, "SELECT at FROM finding_events") == [(NOW,)]
    # A naive time is UTC, as the server reads one in text (the session's time zone).
    naive = (NOW + timedelta(hours=1)).astimezone(timezone.utc).replace(tzinfo=None)
    for at in (naive, naive.isoformat()):
        store.apply_findings(4, "google", [_finding("K2", actual="2.00 EUR")],
                             SourceStatus.COMPLETE, {"K2"}, ["price"], at)  # type: ignore[arg-type]
        assert _sql(url, "SELECT max(at) FROM finding_events") == [
            (naive.replace(tzinfo=timezone.utc),)]


def test_staged_shards_and_packs_are_rows_in_the_tables_pages(url, monkeypatch):
    """A shard's staged pickles and a pack are cut into rows of ``ROW_BYTES`` that stay
    in the table's pages (no TOAST rows); they come back whole, several pickles per shard
    (``CHUNK`` listings each) in their order, and a row staged by an earlier version (one
    whole pickle per row) reads the same."""
    from auditor.storage import jobs as jobs_mod

    monkeypatch.setattr(jobs_mod, "CHUNK", 7)
    rows = [(make_listing(f"K{i:04d}", title="x" * (i % 300)), None) for i in range(2000)]
    pack = bytes(range(256)) * 200
    with RunJobs(url) as jobs:
        jobs.ensure_schema()
        opts = dict(_sql(url, "SELECT relname, reloptions FROM pg_class WHERE relname IN"
                              " ('dist_staged', 'dist_packs')"))
        assert all("toast_tuple_target=8160" in opts[t] for t in opts) and len(opts) == 2
        jobs.start_run(1, "c.toml", "sha", None, NOW, 10)
        jobs.stage(1, "google", 2, rows)
        jobs.save_read(1, "meta", 3, {1: rows[:5], 2: rows[5:]}, {"read": True})
        jobs.save_pack(1, pack, "indexes")
        assert [li.key for li, _ in jobs.staged(1, "google", 2)] == [li.key for li, _ in rows]
        assert [li.title for li, _ in jobs.staged(1, "meta", 2)] == [
            li.title for li, _ in rows[5:]]
        assert jobs.pack(1, "indexes") == pack
        n, biggest = _sql(url, "SELECT count(*), max(length(data)) FROM dist_staged")[0]
        assert n > 50 and biggest == jobs_mod.ROW_BYTES
        toast = _sql(url, "SELECT pg_relation_size(reltoastrelid) FROM pg_class WHERE relname"
                          " IN ('dist_staged', 'dist_packs')")
        assert toast == [(0,), (0,)]
        # An earlier version's rows: one whole pickle each.
        with psycopg.connect(url, autocommit=True) as c:
            for seq in (0, 1):
                c.execute("INSERT INTO dist_staged VALUES (1, 'amazon', 0, %s, %s)",
                          (seq, jobs_mod.dumps(rows[seq * 3:seq * 3 + 3])))
        assert [li.key for li, _ in jobs.staged(1, "amazon", 0)] == [
            li.key for li, _ in rows[:6]]
