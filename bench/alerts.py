"""Alert evaluation at scale: `python -m bench.alerts --findings 100000 [--no-write]`.

Opens N findings over 4 channels (a quarter of them stale prices, the rest spread over
checks and SKUs), then times: the first evaluation (everything new: incidents, routing,
outbox rows), a second one (nothing changed), one after a run that resolves half, and
the propagation bookkeeping of N/4 master price changes. Prints Markdown and appends it
to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

from bench.common import record, table


def run(n: int, write: bool) -> None:
    from auditor.alerts import engine
    checks_by_field, evaluate = engine.checks_by_field, engine.evaluate
    from auditor.config import parse_config
    from auditor.model import (Finding, Link, LinkMethod, Listing, MasterRecord, Money, Outcome,
                               Severity, SourceResult, SourceStatus)
    from auditor.storage.sqlite import SQLiteStore as Store

    channels = ["google", "meta", "amazon", "shop"]
    tmp = Path(tempfile.mkdtemp(prefix="bench-alerts-"))
    cfg = parse_config({"master": {"source": "m.csv"},
                        "channels": [{"name": c, "type": "google_merchant", "source": "x.xml"}
                                     for c in channels],
                        "alerts": {"receivers": [{"name": "hook", "type": "webhook",
                                                  "url": "http://127.0.0.1:9/x"}],
                                   "routes": [{"receivers": ["hook"],
                                               "group_by": ["channel", "check"]}]}},
                       tmp / "config.toml")
    store = Store(tmp / "a.db")
    t0 = datetime(2026, 11, 20, 12, tzinfo=timezone.utc)
    per = n // len(channels)
    skus = [f"SKU-{i:07d}" for i in range(per)]
    store.save_master([MasterRecord(s, title=f"T {s}", price=Money(Decimal("10"), "EUR"))
                       for s in skus], "m.csv", None, t0 - timedelta(days=1))
    checks = ["price", "title", "availability", "attributes"]

    def findings(ch: str, keep: float = 1.0) -> list[Finding]:
        out = []
        for i, s in enumerate(skus[: int(per * keep)]):
            stale = i % 4 == 0
            chk = "price" if stale else checks[i % 4]
            out.append(Finding(chk, ch, s, chk if chk != "attributes" else "color",
                               Outcome.FAILED, Severity.MAJOR, expected="10.00 EUR",
                               actual="12.00 EUR", listing_key=s,
                               details={"stale": True, "valid_until": t0.isoformat()}
                               if stale else {}))
        return out

    rows = []
    t = time.perf_counter()
    for ch in channels:
        store.save_listings(1, ch, ((Listing(ch, s, t0, sku=s), Link(ch, s, s, LinkMethod.SKU, 1.0))
                                    for s in skus))
    for ch in channels:
        store.apply_findings(1, ch, findings(ch), SourceStatus.COMPLETE, None, checks, t0)
        store.save_source_result(1, SourceResult(ch, started_at=t0, finished_at=t0))
    rows.append(["store listings and findings (run 1)", n, time.perf_counter() - t, "-"])
    t = time.perf_counter()
    r = evaluate(store, cfg, t0)
    rows.append(["evaluate: all new", n, time.perf_counter() - t, r["notifications"]])
    t = time.perf_counter()
    r = evaluate(store, cfg, t0 + timedelta(minutes=1))
    rows.append(["evaluate: nothing changed (skipped)", n, time.perf_counter() - t,
                 r["notifications"]])
    store.ack_finding(findings(channels[0])[1].fingerprint, "bench", now=t0)
    t = time.perf_counter()
    r = evaluate(store, cfg, t0 + timedelta(minutes=2))
    rows.append(["evaluate: one finding acknowledged", n, time.perf_counter() - t,
                 r["notifications"]])
    for ch in channels:
        store.apply_findings(2, ch, findings(ch, 0.5), SourceStatus.COMPLETE, None, checks,
                             t0 + timedelta(hours=1))
        store.save_source_result(2, SourceResult(ch, started_at=t0, finished_at=t0))
    t = time.perf_counter()
    r = evaluate(store, cfg, t0 + timedelta(hours=1))
    rows.append(["evaluate: half resolved", n // 2, time.perf_counter() - t, r["notifications"]])
    store.save_master([MasterRecord(s, title=f"T {s}",
                                    price=Money(Decimal("11" if i % 4 == 0 else "10"), "EUR"))
                       for i, s in enumerate(skus)], "m.csv", None, t0 + timedelta(hours=2))
    snap = store.last_master_snapshot().id
    rid = store.start_run(t0 + timedelta(hours=2), snap)
    for ch in channels:
        store.save_source_result(rid, SourceResult(ch, started_at=t0, finished_at=t0 +
                                                   timedelta(hours=3)))
    t = time.perf_counter()
    p = store.sync_propagation(checks_by_field())
    rows.append(["propagation: changes x channels", p["added"], time.perf_counter() - t,
                 p["caught_up"]])
    store.close()
    record(f"Alerts ({n:,} findings)", [table(
        f"Alert evaluation over {n:,} open findings, 4 channels (bench/alerts.py)",
        ["step", "rows", "seconds", "notifications / caught up"], rows)], write)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--findings", type=int, default=100_000)
    ap.add_argument("--no-write", action="store_true")
    a = ap.parse_args()
    run(a.findings, not a.no_write)
