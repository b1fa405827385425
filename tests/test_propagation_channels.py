"""Propagation rows written channel by channel (``sync_propagation(..., channels)``, as each
channel's run does as soon as its findings are written) are the rows one sync of every
channel after the run writes, on SQLite and on PostgreSQL alike.

One scripted history (master changes across several runs, listings added and removed,
failing checks that hold a change back, a partial and a failed read, a channel left out
of a run) is written to a store; after every run the propagation is synced either for all
channels at once (the reference) or channel by channel and then for all; the stored rows
(everything but the row id) must be equal, and both stores must agree.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from auditor.model import Finding, Link, LinkMethod, Money, Outcome, Severity, SourceResult, \
    SourceStatus
from auditor.storage import open_store
from tests.conftest import NOW, make_listing, make_master

CHECKS = {"price": ["price"], "title": ["title"], "quantity": ["availability"]}
CHANNELS = ["google", "meta", "pos"]
SKUS = [f"S-{i}" for i in range(12)]


def _master(version: int) -> list:
    """The master of import ``version``: prices, titles and quantities change between."""
    out = []
    for i, sku in enumerate(SKUS):
        price = Decimal("10.00") + i + (version if i % 3 == version % 3 else 0)
        title = f"Thing {i}" + (" v2" if version >= 2 and i % 4 == 0 else "")
        out.append(make_master(sku, price=Money(price, "EUR"), title=title,
                               quantity=i + (version if i % 5 == 1 else 0)))
    return out


def _listed(channel: str, run: int) -> list[str]:
    """What ``channel`` lists in ``run``: each drops and gains some SKUs over time."""
    k = CHANNELS.index(channel)
    return [s for i, s in enumerate(SKUS) if (i + k) % 4 != run % 4 or i < 2]


def _bad(channel: str, run: int, sku: str) -> list[tuple[str, str]]:
    """(check, field) failing on a SKU: a few SKUs lag behind the master for a few runs."""
    i, k = SKUS.index(sku), CHANNELS.index(channel)
    out = []
    if (i + k + run) % 3 == 0 and run < 4 or (i, k) == (3, 0):  # S-3 on google: always
        out.append(("price", "price"))
    if i % 4 == 0 and run in (2, 3) and k != 1:
        out.append(("title", "title"))
    if i % 5 == 1 and k == 2 and run < 5:
        out.append(("availability", "quantity"))
    return out


def _status(channel: str, run: int) -> SourceStatus | None:
    """How the channel's read ended in ``run`` (None: the channel was not in the run)."""
    if (channel, run) == ("meta", 2):
        return SourceStatus.FAILED
    if (channel, run) == ("google", 3):
        return SourceStatus.PARTIAL
    if (channel, run) == ("pos", 4):
        return None
    return SourceStatus.COMPLETE


def _history(s, by_channel: bool) -> list[dict]:
    """Write the history; sync after every run; return every sync's counts."""
    counts = []
    for run in range(1, 7):
        t = NOW + timedelta(hours=6 * run)
        if run in (1, 2, 3, 5):  # a new master import before the run
            s.save_master(_master(run), "m.csv", f"h{run}", t - timedelta(hours=1))
        if run == 4:  # a master import no run reads yet (a run on the old snapshot)
            snap = s.last_master_snapshot().id
            s.save_master(_master(4), "m.csv", "h4", t + timedelta(hours=1))
        else:
            snap = s.last_master_snapshot().id
        rid = s.start_run(t, snap)
        assert rid == run
        for ch in CHANNELS:
            status = _status(ch, run)
            if status is None:
                continue
            keys = _listed(ch, run)
            if status != SourceStatus.FAILED:
                s.save_listings(run, ch, [(make_listing(k, channel=ch),
                                           Link(ch, k, k, LinkMethod.SKU, 1.0)) for k in keys])
                if status == SourceStatus.COMPLETE:
                    gone = set(s.present_keys(ch)) - set(keys)
                    s.mark_removed(run, ch, gone)
            fs = [Finding(chk, ch, k, fld, Outcome.FAILED if chk == "price" else Outcome.WARN,
                          Severity.MAJOR, listing_key=k)
                  for k in keys for chk, fld in _bad(ch, run, k)] \
                if status != SourceStatus.FAILED else []
            s.apply_findings(run, ch, fs, status, set(keys), ["price", "title", "availability"],
                             t)
            s.save_source_result(run, SourceResult(ch, status, len(keys), 0, None, t,
                                                   t + timedelta(minutes=10 + run)))
            if by_channel:
                counts.append(s.sync_propagation(CHECKS, [ch]))
        counts.append(s.sync_propagation(CHECKS))
        counts.append(s.sync_propagation(CHECKS))  # idempotent
        assert counts[-1] == {"added": 0, "caught_up": 0}
    return counts


def _rows(s) -> list[tuple]:
    return sorted((r["change_id"], r["channel"], r["sku"], r["field"], r["check_name"],
                   str(r["changed_at"]), r["snapshot_id"], r["caught_up_at"] and
                   str(r["caught_up_at"]), r["caught_up_run"], r["latency_seconds"],
                   r["checked_run"]) for r in s.propagation_rows())


def _times(rows: list[tuple]) -> list[tuple]:
    """Rows with their times as instants (SQLite stores ISO text, PostgreSQL timestamps)."""
    from datetime import datetime

    def t(v):
        return v and datetime.fromisoformat(v.replace(" ", "T")).timestamp()

    return [(*r[:5], t(r[5]), r[6], t(r[7]), *r[8:]) for r in rows]


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path):
    if request.param == "postgresql":
        return request.getfixturevalue("pg_server").new_database
    n = iter(range(100))
    return lambda: f"sqlite:///{tmp_path}/s{next(n)}.db"


def _written(url: str, by_channel: bool) -> tuple[list[tuple], list[dict]]:
    s = open_store(url)
    try:
        counts = _history(s, by_channel)
        return _rows(s), counts
    finally:
        s.close()


def test_channel_by_channel_gives_the_rows_of_one_sync(store_url):
    whole, counts = _written(store_url(), False)
    split, _ = _written(store_url(), True)
    assert split == whole
    # absolute checks: the history has caught-up, pending and re-checked rows
    assert sum(c["added"] for c in counts) == len(whole) > 50
    caught = [r for r in whole if r[7] is not None]
    pending = [r for r in whole if r[7] is None]
    assert caught and pending
    assert {r[10] for r in pending} == {6} and {(r[1], r[2]) for r in pending if r[3] ==
                                              "price"} == {("google", "S-3")}
    assert any(r[8] is not None and r[8] > _first_run_of(r) for r in caught)  # caught up late
    assert {r[1] for r in whole} == set(CHANNELS)
    assert all(r[9] >= 0 for r in caught)
    # the channel left out of run 4 got no row of the import read first in run 4 ...
    assert not any(r[1] == "pos" and r[8] == 4 for r in whole)


def _first_run_of(row: tuple) -> int:
    return {1: 1, 2: 2, 3: 3, 4: 5, 5: 5}[row[6]]


def test_sqlite_and_postgresql_agree(pg_server, tmp_path):
    lite, _ = _written(f"sqlite:///{tmp_path}/a.db", True)
    pg, _ = _written(pg_server.new_database(), True)
    assert _times(pg) == _times(lite)


def test_a_channel_synced_alone_leaves_the_others_to_the_next_sync(tmp_path):
    s = open_store(f"sqlite:///{tmp_path}/a.db")
    try:
        s.save_master(_master(1), "m.csv", "h1", NOW)
        rid = s.start_run(NOW, s.last_master_snapshot().id)
        for ch in ("google", "meta"):
            s.save_listings(rid, ch, [(make_listing(k, channel=ch),
                                       Link(ch, k, k, LinkMethod.SKU, 1.0)) for k in SKUS])
        s.save_master(_master(2), "m.csv", "h2", NOW + timedelta(hours=1))
        got = s.sync_propagation(CHECKS, ["google"])
        assert got["added"] > 0
        assert {r["channel"] for r in s.propagation_rows()} == {"google"}
        assert s.sync_propagation(CHECKS, ["google"])["added"] == 0
        again = s.sync_propagation(CHECKS)
        assert again["added"] == got["added"]  # meta's rows, the same changes
        assert {r["channel"] for r in s.propagation_rows()} == {"google", "meta"}
    finally:
        s.close()


def test_a_channel_run_writes_its_rows_before_the_evaluation_after_the_run(mini_world):
    """``auditor run``: each channel's run writes its propagation rows as soon as its
    findings are written; the evaluation after the run then adds none."""
    from datetime import timedelta

    from auditor.alerts.engine import evaluate
    from auditor.config import load_config
    from auditor.runner import run_audit

    cfg = load_config(mini_world / "config.toml")
    store = open_store(cfg.store_url)
    try:
        run_audit(cfg, store, now=NOW)
        evaluate(store, cfg, NOW)
        master = mini_world / "master.csv"
        master.write_text(master.read_text().replace("TS-GRN-M,\"Acme Tee, Green, M\",Acme,,22.00",
                                                     "TS-GRN-M,\"Acme Tee, Green, M\",Acme,,24.00"))
        later = NOW + timedelta(hours=4)
        run_audit(cfg, store, now=later)
        rows = store.propagation_rows()
        assert [(r["channel"], r["sku"], r["check_name"]) for r in rows] == \
            [("google", "TS-GRN-M", "price")]
        assert rows[0]["caught_up_at"] is None  # the feed still shows 22.00
        assert store.alert_cursor("master_changes:google") == str(rows[0]["change_id"])
        assert evaluate(store, cfg, later)["propagation"] == {"added": 0, "caught_up": 0}
        assert store.alert_cursor("master_changes:google") is None  # one cursor for all
        assert store.propagation_rows() == rows
    finally:
        store.close()
