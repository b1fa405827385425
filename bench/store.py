"""Benchmark: the store's write hot paths, through the storage interface.

    python bench/store.py --listings 200000 --findings 100000 [--url sqlite:///PATH]

Times, on one core: ``save_listings`` of N new listings, of the same N read again
unchanged (a hash comparison each, no write) and with 10% changed; ``apply_findings``
of M new findings, the same M seen again (10% with another value), and a complete
read that resolves half of them. Prints a table; best of ``--repeat`` runs, each on a
new store. Any store URL ``auditor.storage.open_store`` takes can be measured, so the
PostgreSQL store is measured by the same script (``--url postgresql://...``): there the
server does much of the work in its own processes, so wall-clock seconds are printed
beside this process's CPU seconds.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import replace
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from auditor.model import (Finding, Link, LinkMethod, Listing, Money, Outcome,  # noqa: E402
                           Severity, SourceStatus)

NOW = datetime(2026, 11, 27, 12, tzinfo=timezone.utc)


def _open(url: str):
    from auditor.storage import open_store

    return open_store(url)


def _remove(url: str) -> None:
    from auditor.storage import remove_store

    remove_store(url)


def _listings(n: int) -> list[tuple[Listing, Link]]:
    out = []
    for i in range(n):
        key = f"SKU-{i:07d}"
        li = Listing(channel="google", key=key, fetched_at=NOW, sku=key,
                     title=f"Acme Trail Shoe {i}, Red, 42", brand="Acme", gtin=None,
                     price=Money(Decimal("59.90"), "EUR"), url=f"https://shop/p/{i}",
                     attributes={"color": "Red", "size": "42"}, evidence=f"feed.xml:{i + 2}")
        out.append((li, Link("google", key, key, LinkMethod.SKU, 1.0)))
    return out


def _findings(m: int, actual: str = "2 EUR") -> list[Finding]:
    return [Finding("price", "google", f"SKU-{i:07d}", "price", Outcome.FAILED,
                    Severity.CRITICAL, expected="1 EUR", actual=actual if i % 10 else "3 EUR",
                    message="price differs", listing_key=f"SKU-{i:07d}") for i in range(m)]


def run_once(url: str, n: int, m: int) -> dict[str, tuple[float, float]]:
    _remove(url)
    store = _open(url)
    obs = _listings(n)
    changed = [(replace(li, title=li.title + " v2"), lk) if i % 10 == 0 else (li, lk)
               for i, (li, lk) in enumerate(obs)]
    first, again = _findings(m), _findings(m, actual="2 EUR")
    half = first[: m // 2]
    t: dict[str, tuple[float, float]] = {}
    try:
        for name, fn in (
                ("save_listings new", lambda: store.save_listings(1, "google", iter(obs))),
                ("save_listings unchanged", lambda: store.save_listings(2, "google",
                                                                        iter(obs))),
                ("save_listings 10% changed", lambda: store.save_listings(3, "google",
                                                                          iter(changed))),
                ("apply_findings new", lambda: store.apply_findings(
                    1, "google", first, SourceStatus.COMPLETE, None, ["price"], NOW)),
                ("apply_findings seen again", lambda: store.apply_findings(
                    2, "google", again, SourceStatus.COMPLETE, None, ["price"], NOW)),
                ("apply_findings resolve half", lambda: store.apply_findings(
                    3, "google", half, SourceStatus.COMPLETE, None, ["price"], NOW))):
            c0, w0 = time.process_time(), time.perf_counter()
            fn()
            t[name] = (time.process_time() - c0, time.perf_counter() - w0)
    finally:
        store.close()
        _remove(url)
    return t


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--listings", type=int, default=200_000)
    ap.add_argument("--findings", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--url", help="store URL (default: a SQLite file in a temp folder)")
    args = ap.parse_args(argv)
    tmp = tempfile.mkdtemp(prefix="bench-store-")
    url = args.url or f"sqlite:///{tmp}/bench.db"
    best: dict[str, tuple[float, float]] = {}
    for _ in range(args.repeat):
        for k, (cpu, wall) in run_once(url, args.listings, args.findings).items():
            old = best.get(k, (cpu, wall))
            best[k] = (min(cpu, old[0]), min(wall, old[1]))
    os.rmdir(tmp)
    print(f"{'step':<30} {'rows':>9} {'cpu s':>7} {'rows/cpu-s':>12} {'wall s':>7} "
          f"{'rows/wall-s':>12}")
    for k, (v, w) in best.items():
        rows = args.listings if k.startswith("save") else (
            args.findings // 2 if "half" in k else args.findings)
        print(f"{k:<30} {rows:>9,} {v:>7.3f} {rows / v if v else 0:>12,.0f} {w:>7.3f} "
              f"{rows / w if w else 0:>12,.0f}")
    print(f"best of {args.repeat}, CPU seconds of this process and wall seconds, store "
          f"{url.split('://')[0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
