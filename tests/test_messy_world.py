"""The messy retail world end to end: `auditor run` on data nobody here generated.

tests/fixtures/messy_retail is a hand-made catalogue with real exports' quirks (its
README.md lists them) and 16 planted drifts (truth.csv). The run must find every one,
raise nothing else, and conclude no listing missing where a source could not be read.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench.common import ROOT
from bench.messy import NOW, fixture_module


def _cli(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "auditor", *args], cwd=cwd, text=True,
                          capture_output=True, timeout=300,
                          env=dict(os.environ, PYTHONPATH=str(ROOT)))


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Any:
    serve = fixture_module("serve")
    where = tmp_path_factory.mktemp("messy")
    server, _config = serve.start(where)
    try:
        yield where
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def first(world: Path) -> dict[str, Any]:
    run = _cli(world, "run", "--now", NOW, "--format", "json")
    found = _cli(world, "findings", "--format", "json")
    assert found.returncode == 0, found.stderr
    return {"run": run, "summary": json.loads(run.stdout), "findings": json.loads(found.stdout)}


def test_every_planted_drift_is_found_and_nothing_else(first):
    score = fixture_module("score").score(first["findings"], first["summary"])
    assert score["planted"] == 16
    assert score["missed"] == []
    assert score["false_alarms"] == []
    assert len(score["found"]) == 16
    assert score["missing_on_unread_sources"] == []


def test_sources_that_could_not_be_read_conclude_nothing(first):
    channels = {c["channel"]: c for c in first["summary"]["channels"]}
    # The expired portal feed answers with a login page: failed, not "every product missing".
    assert channels["idealo"]["status"] == "failed"
    assert "HTML page" in channels["idealo"]["message"]
    # One shop page answers 503: the crawl is partial and the gloves are not missing.
    assert channels["webshop"]["status"] == "partial"
    assert any("GL-7001" in n and "HTTP 503" in n for n in channels["webshop"]["notes"])
    assert not [f for f in first["findings"] if f["channel"] in ("idealo", "webshop")
                and f["check"] == "presence" and f["outcome"] == "failed"
                and (f.get("details") or {}).get("kind") == "missing"]
    assert first["run"].returncode == 2  # not everything could be read: said in the exit code
    # The Munich XLSX (a title row above its header, a totals row) is read whole.
    assert channels["pos-muc"]["status"] == "complete" and channels["pos-muc"]["listings"] == 12
    assert channels["pos-muc"]["presence_held"] is None
    # The outlet's only held presence is its note row without an article number.
    assert "outlet_export.csv:6" in channels["pos-outlet"]["presence_held"]


def test_bad_cells_and_rows_name_file_line_and_column(world, first):
    errors = _cli(world, "runs", "--errors")
    assert errors.returncode == 0, errors.stderr
    out = errors.stdout
    assert "pos/outlet_export.csv:2: GTIN '4,00638E+12'" in out and "column 'EAN'" in out
    assert "pos/outlet_export.csv:9: not a number: 'viele' in column 'Menge'" in out
    assert "pos/outlet_export.csv:6: " in out and "column 'Artikel' is empty" in out
    assert "/p/fleece-gloves: error: HTTP 503" in out


def test_fields_a_channel_never_shows_are_said_once_not_per_listing(first):
    channels = {c["channel"]: c for c in first["summary"]["channels"]}
    assert channels["amazon-de"]["not_carried"] == {"image": ["image", "additional_images"]}
    assert channels["pos-muc"]["not_carried"]["image"] == ["image", "additional_images"]
    assert "price" not in channels["pos-muc"]["not_carried"]  # it has a sale price column


def test_a_sale_an_amazon_report_cannot_show_is_not_evaluated(first):
    beanies = [f for f in first["findings"] if f["channel"] == "amazon-de"
               and f["check"] == "price" and f["field"] == "sale_price"]
    assert sorted(f["sku"] for f in beanies) == ["WB-3001", "WB-3002"]
    assert all(f["outcome"] == "not_evaluated" and "regular_price_only" in f["message"]
               for f in beanies)


def test_a_second_run_changes_nothing(world, first):
    run = _cli(world, "run", "--now", NOW, "--format", "json")
    summary = json.loads(run.stdout)
    assert {c["channel"]: (c["opened"], c["resolved"]) for c in summary["channels"]} == {
        c["channel"]: (0, 0) for c in first["summary"]["channels"]}
