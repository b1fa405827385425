"""bench/checks.py runs and counts what it compares (no timing asserted)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

spec = importlib.util.spec_from_file_location(
    "bench_checks_mod", Path(__file__).resolve().parents[1] / "bench" / "checks.py")
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)


def test_bench_checks_counts_comparisons_and_planted_drift():
    master, listings, history = bench.synthetic(200, 400, drift=0.25, benign=0.25)
    r = bench.bench_checks(master, listings, {"type": "google_merchant"}, history=history)
    assert r["comparisons"] == 400
    assert r["per_s"] > 0 and r["seconds"] >= 0
    assert set(r["checks"]) >= {"title", "price", "availability", "attributes", "presence",
                                "identifiers"}
    assert 0 < r["not_passed"] <= 400 * 2


def test_bench_without_drift_finds_nothing():
    master, listings, history = bench.synthetic(100, 100, drift=0.0, benign=0.5)
    r = bench.bench_checks(master, listings, {"type": "google_merchant"}, history=history)
    assert r["not_passed"] == 0, r["by_check"]


def test_bench_linking():
    master, listings, _ = bench.synthetic(100, 10, drift=0.0)
    r = bench.bench_linking(master, listings)
    assert r["links"] == 10 and r["methods"] == {"sku": 10}
