"""The ops artifacts are valid: promtool checks and unit-tests the rules, the dashboard and
the systemd unit are well-formed and match the metrics the auditor exports."""

from __future__ import annotations

import configparser
import json
import os
import re
import shutil
import subprocess

import pytest
import yaml

from auditor.service.metrics import METRICS
from service_helpers import ROOT

OPS = ROOT / "ops"
needs_promtool = pytest.mark.skipif(os.environ.get("AUDITOR_SKIP_PROMETHEUS") == "1",
                                    reason="AUDITOR_SKIP_PROMETHEUS=1")
SERVICE_ONLY = {"scheduler_running", "audit_running", "source_interval_seconds",
                "config_reload_ok"}


def promtool(*args: str) -> subprocess.CompletedProcess:
    binary = shutil.which("promtool")
    assert binary, "promtool (Debian's prometheus package) is missing: run scripts/test.sh"
    return subprocess.run([binary, *args], capture_output=True, text=True, timeout=120,
                          cwd=OPS / "prometheus")


@needs_promtool
def test_promtool_check_rules():
    r = promtool("check", "rules", "auditor-rules.yml")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS: 7 rules found" in r.stdout


@needs_promtool
def test_promtool_test_rules():
    r = promtool("test", "rules", "auditor-rules.test.yml")
    assert r.returncode == 0, r.stdout + r.stderr


@needs_promtool
def test_promtool_rule_tests_can_fail(tmp_path):
    # a wrong expectation must make promtool fail (the tests assert something)
    text = (OPS / "prometheus" / "auditor-rules.test.yml").read_text()
    (tmp_path / "auditor-rules.yml").write_text(
        (OPS / "prometheus" / "auditor-rules.yml").read_text())
    (tmp_path / "t.yml").write_text(text.replace("source: shop}", "source: other}"))
    r = subprocess.run([shutil.which("promtool"), "test", "rules", "t.yml"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode != 0


def exported_names() -> set[str]:
    from auditor.jobqueue import METRICS as QUEUE_METRICS  # serve on PostgreSQL

    names = {"auditor_" + n for n, _, _ in METRICS} | {"auditor_" + n for n in SERVICE_ONLY}
    names |= {"auditor_" + n for n, _ in QUEUE_METRICS}
    for n, kind, _ in METRICS:
        if kind == "histogram":
            names |= {f"auditor_{n}_bucket", f"auditor_{n}_sum", f"auditor_{n}_count"}
    return names


def test_dashboard_uses_only_exported_metrics_and_covers_the_topics():
    dash = json.loads((OPS / "grafana" / "auditor-dashboard.json").read_text())
    assert dash["uid"] and dash["title"] and dash["__inputs"][0]["pluginId"] == "prometheus"
    titles = " ".join(p["title"].lower() for p in dash["panels"])
    for topic in ("consistency per channel", "open findings", "propagation latency",
                  "fetch errors", "last complete read", "notifications", "job queue"):
        assert topic in titles, topic
    # Every job-queue metric (serve on PostgreSQL) has a panel.
    from auditor.jobqueue import METRICS as QUEUE_METRICS

    exprs = " ".join(t["expr"] for p in dash["panels"] for t in p.get("targets", []))
    for name, _ in QUEUE_METRICS:
        assert re.search(rf"\bauditor_{name}\b", exprs), name
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    known = exported_names()
    for p in dash["panels"]:
        if p["type"] == "row":
            continue
        assert p["datasource"]["uid"] == "${DS_PROMETHEUS}" and p["targets"]
        for t in p["targets"]:
            used = set(re.findall(r"\bauditor_[a-z_]+", t["expr"]))
            assert used and used <= known, (p["title"], used - known)


def test_rules_use_only_exported_metrics():
    rules = yaml.safe_load((OPS / "prometheus" / "auditor-rules.yml").read_text())
    known = exported_names()
    for r in rules["groups"][0]["rules"]:
        used = set(re.findall(r"\bauditor_[a-z_]+", r["expr"]))
        assert used and used <= known, (r["alert"], used - known)


def test_sample_scrape_config_scrapes_the_metrics_route():
    cfg = yaml.safe_load((OPS / "prometheus" / "prometheus.yml").read_text())
    [job] = cfg["scrape_configs"]
    assert job["job_name"] == "auditor" and job["metrics_path"] == "/metrics"
    assert cfg["rule_files"] == ["auditor-rules.yml"]


def test_systemd_unit_runs_serve_reloads_with_sighup_and_outlasts_the_stop_timeout():
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str
    unit.read(OPS / "systemd" / "auditor.service")
    svc = unit["Service"]
    assert svc["ExecStart"].endswith("auditor -v serve")
    assert svc["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert svc["KillSignal"] == "SIGTERM" and svc["KillMode"] == "mixed"
    from auditor.config import SERVE_OPTIONS

    stop_timeout = next(o.default for o in SERVE_OPTIONS if o.name == "stop_timeout")
    assert int(svc["TimeoutStopSec"]) > stop_timeout + 10  # + the audit's SIGTERM grace
    if shutil.which("systemd-analyze"):
        r = subprocess.run(["systemd-analyze", "verify", str(OPS / "systemd" / "auditor.service")],
                           capture_output=True, text=True, timeout=60)
        # the unit names a user and binary of the target machine; syntax errors are what count
        assert "Unknown key" not in r.stderr and "Invalid" not in r.stderr, r.stderr
