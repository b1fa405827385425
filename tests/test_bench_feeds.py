"""bench/feeds.py: the synthetic feeds parse completely (counts only, no timing asserted)."""

from __future__ import annotations

import pytest

from bench.feeds import FEEDS, bench_feed


@pytest.mark.parametrize("name", sorted(FEEDS))
def test_bench_feed_reads_every_synthetic_row(tmp_path, name):
    ctype, fname, writer, opts = FEEDS[name]
    path = tmp_path / fname
    writer(path, 50)
    r = bench_feed(ctype, path, opts)
    per_row = 2 if ctype == "tabular" else 1  # the POS feed has two store columns
    assert r["rows"] == 50 * per_row and r["errors"] == 0
    assert set(r) >= {"rows", "seconds", "rows_per_s", "peak_rss_mb"}
    assert r["peak_rss_mb"] > 0
