"""The incremental alert evaluation records what the full one does.

A scripted history (tests/alerts_history.py) is played on SQLite and on PostgreSQL,
evaluated incrementally (the default) and in full (``evaluate(..., full=True)``); after
every evaluation the outbox rows, the groups each receiver was told about, every
finding's alert state and the counts must be the same, and the same as the full
evaluation of main recorded before the incremental one existed."""

from __future__ import annotations

import json

import pytest

from auditor.alerts import engine
from auditor.alerts.engine import evaluate
from auditor.storage import open_store
from auditor.storage.sqlite import SQLiteStore
from tests.alerts_history import RECORDED, play


@pytest.fixture(params=["sqlite", "postgresql"])
def new_store(request):
    opened = []

    def make():
        if request.param == "sqlite":
            s = SQLiteStore(":memory:")
        else:
            s = open_store(request.getfixturevalue("pg_server").new_database())
        opened.append(s)
        return s

    yield make
    for s in opened:
        s.close()


def _modes(store):
    """Which evaluations were incremental, read from the results."""
    seen = []

    def ev(s, cfg, at):
        res = evaluate(s, cfg, at)
        seen.append(res.get("full"))
        return res
    return ev, seen


def test_incremental_matches_full_and_main(new_store):
    ev, modes = _modes(None)
    incremental = play(new_store(), ev)
    full = play(new_store(), lambda s, cfg, at: evaluate(s, cfg, at, full=True))
    recorded = json.loads(RECORDED.read_text())
    assert [s["at"] for s in incremental] == [s["at"] for s in recorded]
    for inc, ref, main in zip(incremental, full, recorded, strict=True):
        assert inc == ref, inc["at"]
        assert inc == main, inc["at"]
    # It was incremental after the first evaluation (the silence and its end: full).
    assert modes[0] is True and modes.count(False) >= 10, modes


def test_nothing_changed_reads_nothing(new_store, monkeypatch):
    """A repeat run that changes no finding evaluates none of them (no scan)."""
    from datetime import timedelta

    from auditor.model import SourceResult
    from tests.alerts_history import T0, _f, config

    store, cfg = new_store(), config()
    found = [_f("google", f"P{i}") for i in range(30)]
    for run, at in ((1, T0), (2, T0 + timedelta(hours=1))):
        store.apply_findings(run, "google", found, "complete", None, ["price"], at)
        store.save_source_result(run, SourceResult("google", started_at=at, finished_at=at))
        if run == 2:
            monkeypatch.setattr(store, "alert_candidates", lambda: pytest.fail("full scan"))
        res = evaluate(store, cfg, at)
    assert res["evaluated"] == 0 and res["firing"] == 30 and res["incidents"] == 1
    assert res["full"] is False


def test_a_first_audit_is_evaluated_in_one_scan(new_store, monkeypatch):
    """More new finding events than INCREMENTAL_LIMIT: every finding read at once."""
    from auditor.model import SourceResult
    from tests.alerts_history import T0, _f, config

    monkeypatch.setattr(engine, "INCREMENTAL_LIMIT", 5)
    store, cfg = new_store(), config()
    results = []
    for run, n in ((1, 1), (2, 7), (3, 8)):  # 1 event, then 6 (> 5), then 1
        store.apply_findings(run, "google", [_f("google", f"P{i}") for i in range(n)],
                             "complete", None, ["price"], T0)
        store.save_source_result(run, SourceResult("google", started_at=T0, finished_at=T0))
        results.append(evaluate(store, cfg, T0))
    assert [(r["full"], r["evaluated"], r["firing"]) for r in results] == [
        (True, 1, 1), (True, 7, 7), (False, 1, 8)]


def test_postgresql_positions_wait_for_transactions_in_progress(pg_server):
    """A transaction in progress when an evaluation reads may commit finding events with
    lower ids than the ones it saw: the evaluation does not move past them until every
    such transaction has ended."""
    import psycopg

    from auditor.model import SourceResult
    from tests.alerts_history import T0, _f, config

    url = pg_server.new_database()
    store, cfg = open_store(url), config()
    store.apply_findings(1, "google", [_f("google", "A")], "complete", None, ["price"], T0)
    store.save_source_result(1, SourceResult("google", started_at=T0, finished_at=T0))
    evaluate(store, cfg, T0)
    first = json.loads(store.alert_cursor("evaluated"))["positions"]
    assert first["events"] >= 1
    other = psycopg.connect(url)
    try:
        with other.transaction():  # in progress, holding a transaction id
            other.execute("SELECT pg_current_xact_id()")
            store.apply_findings(2, "google", [_f("google", "A"), _f("google", "B")],
                                 "complete", None, ["price"], T0)
            store.save_source_result(2, SourceResult("google", started_at=T0,
                                                     finished_at=T0))
            res = evaluate(store, cfg, T0)
            held = json.loads(store.alert_cursor("evaluated"))["positions"]
            assert res["firing"] == 2 and held["events"] == first["events"]
        store.apply_findings(3, "google", [_f("google", "A")], "complete", None,
                             ["price"], T0)
        store.save_source_result(3, SourceResult("google", started_at=T0, finished_at=T0))
        res = evaluate(store, cfg, T0)
        moved = json.loads(store.alert_cursor("evaluated"))["positions"]
        assert res["firing"] == 1 and moved["events"] > held["events"]
    finally:
        other.close()
        store.close()
