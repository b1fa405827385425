"""Metrics read from the store at scrape time: names, labels, values, the textfile output."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from auditor.service.metrics import (METRICS, reason_class, registry_for, store_opener)

ROOT = Path(__file__).resolve().parent.parent
ALLOWED_LABELS = {"channel", "check", "severity", "source", "reason"}


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "auditor", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, PYTHONPATH=str(ROOT)))


def scrape(db: Path) -> dict:
    text = generate_latest(registry_for(store_opener(db))).decode()
    return {f.name: f for f in text_string_to_metric_families(text)}


@pytest.fixture
def audited(mini_world):
    r = run_cli("run", "--config", mini_world / "config.toml")
    assert r.returncode == 1, r.stderr
    return mini_world


def test_names_and_labels_follow_prometheus_conventions(audited):
    families = scrape(audited / "auditor.db")
    assert {f"auditor_{n}" if k != "counter" else f"auditor_{n[:-len('_total')]}"
            for n, k, _ in METRICS} <= set(families)
    for name, fam in families.items():
        assert name.startswith("auditor_")
        assert (fam.type == "counter") == any(s.name.endswith("_total") for s in fam.samples) \
            or not fam.samples
        for s in fam.samples:
            labels = set(s.labels) - {"le"}
            if name == "auditor_build_info":
                assert labels == {"version", "python"}
            else:
                assert labels <= ALLOWED_LABELS, (name, labels)
    for n, kind, _ in METRICS:
        assert n.endswith("_total") == (kind == "counter"), n


def test_values_match_the_audit(audited):
    f = scrape(audited / "auditor.db")
    ratios = {(s.labels["channel"], s.labels["check"]): s.value
              for s in f["auditor_consistency_ratio"].samples}
    assert all(0 <= v <= 1 for v in ratios.values())
    assert ratios[("google", "price")] == pytest.approx(2 / 3)
    open_ = {(s.labels["check"], s.labels["severity"]): s.value
             for s in f["auditor_findings_open"].samples}
    assert open_ == {("price", "critical"): 1, ("title", "major"): 1}
    [seen] = f["auditor_listings_seen"].samples
    assert seen.labels == {"channel": "google"} and seen.value == 3
    assert [s.value for s in f["auditor_source_up"].samples] == [1]
    [store_up] = f["auditor_store_up"].samples
    assert store_up.value == 1
    counts = [s for s in f["auditor_run_duration_seconds"].samples if s.name.endswith("_count")]
    assert counts[0].value == 1
    assert {s.labels["source"] for s in
            f["auditor_source_last_success_timestamp_seconds"].samples} == {"google", "master"}


def test_error_counter_grows_with_new_runs_and_reads_only_new_rows(audited):
    feed = audited / "google.xml"
    feed.write_text(feed.read_text().replace(
        "<g:price>22.00 USD</g:price>", "<g:price>ten USD</g:price>"))
    reg = registry_for(store_opener(audited / "auditor.db"))

    def errors():
        text = generate_latest(reg).decode()
        fams = {f.name: f for f in text_string_to_metric_families(text)}
        return {(s.labels["source"], s.labels["reason"]): s.value
                for s in fams["auditor_fetch_errors"].samples if s.name.endswith("_total")}

    before = errors()
    run_cli("run", "--config", audited / "config.toml")
    mid = errors()
    assert mid.get(("google", "parse"), 0) == before.get(("google", "parse"), 0) + 1
    run_cli("run", "--config", audited / "config.toml")
    assert errors()[("google", "parse")] == mid[("google", "parse")] + 1


def test_an_unreadable_store_still_answers_with_store_up_0(tmp_path):
    @contextlib.contextmanager
    def broken():
        raise OSError("disk gone")
        yield

    text = generate_latest(registry_for(broken)).decode()
    fams = {f.name: f for f in text_string_to_metric_families(text)}
    assert fams["auditor_store_up"].samples[0].value == 0
    assert "auditor_build_info" in fams


@pytest.mark.parametrize("text, cls", [
    ("HTTP 404 Not Found", "http_4xx"), ("status 503", "http_5xx"),
    ("read timed out", "timeout"), ("disallowed by robots.txt", "robots"),
    ("page shows a captcha", "blocked"), ("bad price 'ten'", "parse"),
    ("duplicate id 'A'; kept the first", "duplicate"), ("connection refused", "connection"),
    ("source yielded no listings where the last complete read had 3", "empty"),
    ("something odd", "other"), (None, "other"),
])
def test_reasons_are_a_bounded_set(text, cls):
    assert reason_class(text) == cls


def test_run_metrics_file_is_written_atomically(audited):
    out = audited / "textfile" / "auditor.prom"
    r = run_cli("run", "--config", audited / "config.toml", "--metrics-file", out)
    assert r.returncode == 1, r.stderr
    text = out.read_text()
    fams = {f.name: f for f in text_string_to_metric_families(text)}
    assert "auditor_consistency_ratio" in fams and "auditor_findings_open" in fams
    assert [p.name for p in out.parent.iterdir()] == ["auditor.prom"]  # no temp file left
    first = out.stat().st_ino
    run_cli("run", "--config", audited / "config.toml", "--metrics-file", out)
    assert out.stat().st_ino != first  # replaced by a rename, never rewritten in place


def test_master_only_run_reads_no_channel(mini_world):
    r = run_cli("run", "--config", mini_world / "config.toml", "--master-only",
                "--format", "json")
    assert r.returncode == 0, r.stderr
    import json

    body = json.loads(r.stdout)
    assert body["channels"] == [] and body["master"]["records"] == 3
    r = run_cli("run", "--config", mini_world / "config.toml", "--master-only",
                "--channel", "google")
    assert r.returncode == 2 and "--master-only" in r.stderr
