"""`auditor demo`: generates, serves, configures and audits; exit 0 with planted findings."""

from __future__ import annotations

import json
import re
import tomllib
from dataclasses import replace
from datetime import datetime
from decimal import Decimal
from click.testing import CliRunner

from auditor import plugins
from auditor.cli import main
from auditor.config import parse_config
from auditor.connector import Connector
from auditor.demo import config_text
from auditor.options import Opt
from auditor.storage import open_store


def test_demo_runs_end_to_end(tmp_path):
    runner = CliRunner()
    result = runner.invoke(main, ["demo", "--dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "Where to look next" in out and "auditor findings --open --config" in out
    assert "google" in out and "run 1: complete" in out
    assert "history: last week's master (world/master_previous.csv) imported" in out
    # the run's own exit line would contradict the demo's exit code: left out
    assert "exit 1:" not in out and "the demo exits 0" in out
    assert "against the planted drift" in out and "planted" in out
    # the misses the run explained (a sale price on amazon's regular-price report) say so
    assert re.search(r"of those missed, \d+ planted findings? (was|were) not evaluated, the "
                     r"run saying why, e\.g\. amazon \S+: sale price", out), out
    cfg_path = tmp_path / "config.toml"
    raw = tomllib.loads(cfg_path.read_text())
    assert raw["http"]["allow_private"] is True
    assert {c["type"] for c in raw["channels"]} <= set(plugins.connectors())
    assert "google_merchant" in {c["type"] for c in raw["channels"]}
    findings = runner.invoke(main, ["findings", "--open", "--format", "json", "--config",
                                    str(cfg_path)])
    rows = json.loads(findings.output)
    labels = (tmp_path / "world/labels.csv").read_text().splitlines()
    planted = {tuple(line.split(",")[:2]) for line in labels[1:]}
    failed = {(r["channel"], r["sku"]) for r in rows if r["outcome"] == "failed"}
    assert failed and failed <= planted  # every failure found was planted
    store = open_store(tmp_path / "auditor.db")
    try:
        history = store.master_history()
        run = store.runs(1)[0]
    finally:
        store.close()
    assert history, "the previous master was imported as history"
    # the audit's clock is the run's: a finding is not seen before its run started (the
    # demo once rounded its clock down to the hour: "since 03:00" for a run at 03:14)
    first_seen = {datetime.fromisoformat(r["first_seen_at"]) for r in rows}
    assert all(abs((t - run.started_at).total_seconds()) < 60 for t in first_seen), \
        (first_seen, run.started_at)


def test_demo_runs_twice_in_one_folder(tmp_path):
    runner = CliRunner()
    assert runner.invoke(main, ["demo", "--dir", str(tmp_path)]).exit_code == 0
    second = runner.invoke(main, ["demo", "--dir", str(tmp_path)])
    assert second.exit_code == 0, second.output
    assert "run 1:" in second.output  # a fresh store each time


class _FakeTabular(Connector):
    type = "tabular"
    options = (Opt("delimiter", str, "auto", "d"), Opt("decimal_separator", str, None, "s"),
               Opt("columns", dict, {}, "c"))

    def read(self, ctx):  # pragma: no cover - never run
        return iter(())


class _FakeSite(Connector):
    type = "site"
    options = (Opt("crawl_delay", float, None, "c"),)

    def read(self, ctx):  # pragma: no cover - never run
        return iter(())


def test_config_entries_appear_when_connectors_and_options_are_registered(monkeypatch, tmp_path):
    plugins.load()
    monkeypatch.setitem(plugins.CONNECTORS, "tabular", _FakeTabular)
    monkeypatch.setitem(plugins.CONNECTORS, "site", _FakeSite)
    monkeypatch.delitem(plugins.CONNECTORS, "meta_catalog")  # as if not installed
    price = plugins.CHECKS["price"]
    monkeypatch.setitem(plugins.CHECKS, "price", replace(price, options=price.options + (
        Opt("tax_inclusive", bool, False, "t"), Opt("vat_rate", Decimal, Decimal(0), "v"))))
    text = config_text("http://127.0.0.1:9")
    raw = tomllib.loads(text)
    by_name = {c["name"]: c for c in raw["channels"]}
    pos = by_name["pos-berlin"]
    assert pos["type"] == "tabular" and pos["delimiter"] == ";"
    assert pos["decimal_separator"] == "," and by_name["pos-munich"]["decimal_separator"] == "."
    assert pos["encoding"] == "cp1252" and pos["columns"]["sku"] == "SKU"
    assert "location" not in pos  # undeclared keys are left out
    assert pos["checks"]["price"] == {"tax_inclusive": True, "vat_rate": 0.2}
    assert by_name["site"]["crawl_delay"] == 0.0
    assert "meta" not in by_name and "# Channels of the demo world whose connector" in text
    cfg = parse_config(raw, tmp_path / "config.toml")
    assert {c.name for c in cfg.channels} == {"site", "google", "amazon", "shopify", "pos-berlin",
                                              "pos-munich"}


def test_config_leaves_out_check_options_that_do_not_exist():
    raw = tomllib.loads(config_text("http://127.0.0.1:9"))
    for ch in raw.get("channels", []):
        for name, opts in ch.get("checks", {}).items():
            known = {o.name for o in plugins.checks()[name].all_options}
            assert set(opts) <= known


def test_demo_serve_points_at_the_web_ui(tmp_path, monkeypatch):
    """`auditor demo --serve` names the web UI first among its URLs (the service itself is
    replaced here: tests/test_service_process.py runs the real one)."""
    import auditor.service.app as app

    served = []
    monkeypatch.setattr(app, "serve", lambda path, host, port, **kw: served.append(port) or 0)
    monkeypatch.delenv("AUDITOR_UI_PASSWORD", raising=False)
    result = CliRunner().invoke(main, ["demo", "--dir", str(tmp_path), "--serve",
                                       "--port", "18999"])
    assert result.exit_code == 0, result.output
    assert served == [18999]
    assert re.search(r"http://127\.0\.0\.1:18999/ +# the web UI", result.output)
    # the comments of "Where to look next" in one column
    block = result.output.split("Where to look next:")[1].split("\nauditor serve on")[0]
    columns = {line.index("   # ") for line in block.splitlines() if "   # " in line
               and "auditor-dashboard" not in line}
    assert len(columns) == 1, block
    assert "http://127.0.0.1:18999/metrics" in result.output
    assert "read-only: start with AUDITOR_UI_PASSWORD" in result.output


def test_demo_serve_on_a_taken_port_says_so_before_the_audit(tmp_path):
    """`auditor demo --serve` on a port in use generated and audited the world (20 s) and
    only then failed to listen, after printing URLs on that port."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        r = CliRunner().invoke(main, ["demo", "--dir", str(tmp_path / "d"), "--serve",
                                      "--port", str(port)])
    assert r.exit_code == 2, r.output
    assert f"cannot listen on 127.0.0.1:{port}: Address already in use" in r.output
    assert "choose a port with --port" in r.output
    assert not (tmp_path / "d" / "world").exists()  # nothing generated, nothing audited
