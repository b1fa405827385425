"""How long a Prometheus scrape of `auditor serve` takes on a large store.

    python -m bench.scrape --findings 200000 --channels 20 --runs 200

Builds a synthetic store (runs, sources, scores, findings with observations, listings
linked to masters, master changes) and times the collector: the first scrape (everything
read), a scrape with nothing new (cached), and one after a run wrote (cache missed).
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from prometheus_client import generate_latest

from bench.common import record, table


def build(path: Path, findings: int, channels: int, runs: int, skus: int) -> None:
    from auditor.storage import open_store

    rng = random.Random(1)
    store = open_store(path)
    c = store.db.conn
    t0 = datetime.now(timezone.utc) - timedelta(days=20)
    names = [f"ch{i:02d}" for i in range(channels)]
    checks = ["title", "price", "availability", "attributes", "image", "presence", "identifiers"]
    with c:
        for r in range(1, runs + 1):
            start = t0 + timedelta(hours=2 * r)
            c.execute("INSERT INTO runs (id, started_at, finished_at, status) VALUES (?,?,?,?)",
                      (r, start.isoformat(), (start + timedelta(minutes=5)).isoformat(),
                       "complete"))
            for ch in names:
                c.execute("INSERT INTO run_sources VALUES (?,?,?,?,?,?,?,?)",
                          (r, ch, "complete" if rng.random() > 0.05 else "partial", skus, 3,
                           None, start.isoformat(),
                           (start + timedelta(seconds=rng.uniform(5, 300))).isoformat()))
                c.executemany("INSERT INTO run_errors (run_id, source, location, reason) "
                              "VALUES (?,?,?,?)", [(r, ch, f"f.csv:{i}", "bad price 'x'")
                                                   for i in range(3)])
                c.executemany("INSERT INTO scores VALUES (?,?,?,?,?,?,?,?)",
                              [(r, ch, k, 90, 10, 0, 0, 0.9) for k in checks])
        c.executemany("INSERT INTO listings (channel, key, hash, data, master_sku, link_method) "
                      "VALUES (?,?,?,?,?,?)",
                      [(ch, f"S{i}", "h", "{}", f"S{i}", "sku") for ch in names
                       for i in range(skus)])
        rows, obs = [], []
        for i in range(findings):
            ch, sku = names[i % channels], f"S{rng.randrange(skus)}"
            fp = f"fp{i:08d}"
            rows.append((fp, rng.choice(checks), ch, sku, sku, "price", "failed",
                         rng.choice(["critical", "major", "minor"]),
                         "open" if rng.random() < 0.7 else "resolved", t0.isoformat(),
                         t0.isoformat()))
            obs += [(r, fp, "failed") for r in range(runs - 2, runs + 1)]
        c.executemany("INSERT INTO findings (fingerprint, check_name, channel, sku, listing_key,"
                      " field, outcome, severity, state, first_seen_at, last_seen_at) "
                      "VALUES (?,?,?,?,?,?,?,?,?,?,?)", rows)
        c.executemany("INSERT INTO finding_observations VALUES (?,?,?)", obs)
        c.executemany("INSERT INTO master_changes (snapshot_id, sku, field, old, new, changed_at)"
                      " VALUES (1,?,?,?,?,?)",
                      [(f"S{rng.randrange(skus)}", "price", "1", "2",
                        (t0 + timedelta(hours=rng.uniform(0, 2 * runs))).isoformat())
                       for _ in range(skus // 10)])
    store.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--findings", type=int, default=200_000)
    ap.add_argument("--channels", type=int, default=20)
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--skus", type=int, default=5_000)
    ap.add_argument("--no-write", action="store_true")
    a = ap.parse_args()
    from auditor.service.metrics import registry_for, store_opener

    with tempfile.TemporaryDirectory() as d:
        db = Path(d) / "auditor.db"
        t = time.perf_counter()
        build(db, a.findings, a.channels, a.runs, a.skus)
        built = time.perf_counter() - t
        reg = registry_for(store_opener(db))
        timings = []
        for label in ("first scrape", "nothing new (cached)"):
            t = time.perf_counter()
            size = len(generate_latest(reg))
            timings.append([label, round((time.perf_counter() - t) * 1000, 1), size])
        from auditor.storage import open_store

        s = open_store(db)
        with s.db.conn:
            s.db.conn.execute("INSERT INTO finding_events (fingerprint, at, event, state) "
                              "VALUES ('fp00000001', '2026-01-01', 'changed', 'open')")
        s.close()
        t = time.perf_counter()
        size = len(generate_latest(reg))
        timings.append(["after a write (cache missed)", round((time.perf_counter() - t) * 1000, 1),
                        size])
    record("Metrics scrape", [table(
        f"Scrape of a store with {a.findings:,} findings, {a.channels} channels x {a.runs} runs, "
        f"{a.skus:,} SKUs per channel (built in {built:.0f} s)",
        ["scrape", "ms", "bytes"], timings)], not a.no_write)


if __name__ == "__main__":
    main()
