"""A CLI that tells the truth (issue 13 items 8-11), as a user types it."""

from __future__ import annotations

import csv
import io
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from auditor.cli import main
from connector_helpers import serve
from conftest import write

ROOT = Path(__file__).parent.parent


def cli(*args, env=None):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False, env=env)


@pytest.fixture
def audited(mini_world):
    cfg = mini_world / "config.toml"
    assert cli("run", "--config", cfg).exit_code == 1
    return cfg


# ---------------------------------------------------------------- item 8: filters

@pytest.mark.parametrize("args,word", [
    (["--channel", "posx"], "unknown channel 'posx'"),
    (["--check", "prise"], "unknown check 'prise' (did you mean 'price'?)"),
    (["--severity", "urgent"], "unknown severity 'urgent'"),
    (["--state", "opne"], "unknown state 'opne' (did you mean 'open'?)"),
])
def test_unknown_filter_value_is_an_error(audited, args, word):
    r = cli("findings", "--config", audited, *args)
    assert r.exit_code == 2, r.output
    assert word in r.output
    assert not re.search(r"\d+ findings?\b", r.output)  # no list printed


def test_channel_and_check_repeat(audited, tmp_path):
    rows = json.loads(cli("findings", "--config", audited, "--format", "json").stdout)
    checks = sorted({f["check"] for f in rows})
    assert len(checks) >= 2
    one = json.loads(cli("findings", "--config", audited, "--check", checks[0],
                         "--format", "json").stdout)
    both = json.loads(cli("findings", "--config", audited, "--check", checks[0], "--check",
                          checks[1], "--format", "json").stdout)
    assert 0 < len(one) < len(both) == len([f for f in rows if f["check"] in checks[:2]])
    r = cli("findings", "--config", audited, "--channel", "google", "--channel", "google",
            "--format", "json")
    assert len(json.loads(r.stdout)) == len(rows)
    sev = json.loads(cli("findings", "--config", audited, "--severity", "critical",
                         "--format", "json").stdout)
    assert {f["severity"] for f in sev} <= {"critical"}


def test_limit_zero_is_an_error(audited):
    r = cli("findings", "--config", audited, "--limit", "0")
    assert r.exit_code == 2 and "--limit" in r.output
    r = cli("runs", "--config", audited, "--limit", "0")
    assert r.exit_code == 2
    r = cli("findings", "--config", audited, "--limit", "1", "--format", "json")
    assert len(json.loads(r.stdout)) == 1


# ---------------------------------------------------------------- item 9: the table

def test_findings_table_reads_at_100_columns(audited):
    rows = json.loads(cli("findings", "--config", audited, "--format", "json").stdout)
    r = cli("findings", "--config", audited, env={"COLUMNS": "100"})
    assert r.exit_code == 0
    lines = r.output.splitlines()
    assert max(len(line) for line in lines) <= 100
    header = next(line for line in lines if "message" in line)
    for col in ("sku", "channel", "check", "severity", "message"):
        assert col in header
    assert "fingerprint" not in r.output and "…" not in r.output
    flat = " ".join(" ".join(c.strip() for c in line.split("│")) for line in lines)
    for f in rows:
        for word in f["message"].split():  # every word whole, none split or cut
            assert word in flat.split(), word
        assert f["sku"] in flat
    wide = cli("findings", "--config", audited, "--wide", env={"COLUMNS": "250"})
    assert "fingerprint" in wide.output and "expected" in wide.output


# ---------------------------------------------------------------- item 10

def test_config_options_keeps_table_headers():
    r = cli("config", "options")
    assert r.exit_code == 0
    lines = r.output.splitlines()
    for title in ("[checks.price]", "[store]", "[[channels]] (all types)",
                  '[[channels]] type = "tabular"'):
        assert title in lines
    assert "" not in [line.strip() for line in lines]


def test_config_check_opens_every_source(mini_world, monkeypatch):
    cfg = mini_world / "config.toml"
    with serve({"/feed.xml": (200, {"Content-Type": "application/xml"},
                              (mini_world / "google.xml").read_bytes())}) as (base, _):
        text = cfg.read_text() + f"""
[http]
allow_private = true
retries = 0
timeout = 5
[[channels]]
name = "remote"
type = "google_merchant"
source = "{base}/feed.xml"
[[channels]]
name = "gone"
type = "google_merchant"
source = "{base}/gone.xml"
[[channels]]
name = "pos"
type = "tabular"
source = "pos/*.csv"
[[channels]]
name = "secret"
type = "google_merchant"
source = "{base}/feed.xml"
headers = {{ Authorization = {{ env = "AUDITOR_TEST_UNSET_TOKEN" }} }}
"""
        cfg.write_text(text)
        monkeypatch.delenv("AUDITOR_TEST_UNSET_TOKEN", raising=False)
        r = cli("config", "check", "--config", cfg)
        assert r.exit_code == 2, r.output
        out = r.output
        assert "'gone'.source: " in out and "HTTP 404" in out
        assert "'pos'.source: no file matches" in out
        assert "environment variable AUDITOR_TEST_UNSET_TOKEN is not set" in out
        assert "'remote'" not in out and "'google'" not in out
        assert "4 source problems" not in out and "3 source problems" in out
        r = cli("config", "check", "--config", cfg, "--offline")
        assert r.exit_code == 0 and "OK" in r.output
        monkeypatch.setenv("AUDITOR_TEST_UNSET_TOKEN", "t0ken-value")
        (mini_world / "pos").mkdir()
        (mini_world / "pos" / "a.csv").write_text("sku,price\nA,1\n")
        cfg.write_text(text.replace("/gone.xml", "/feed.xml"))
        r = cli("config", "check", "--config", cfg)
        assert r.exit_code == 0, r.output
        assert "every source opens" in r.output and "t0ken-value" not in r.output


def test_missing_master_file_is_named(mini_world):
    (mini_world / "master.csv").unlink()
    r = cli("config", "check", "--config", mini_world / "config.toml")
    assert r.exit_code == 2 and "[master].source: file not found" in r.output


def test_init_guesses_connectors_and_columns(tmp_path):
    write(tmp_path / "pim.csv", """
        Article No,Bezeichnung,VK,Währung,Bestand,EAN,Farbe
        A-1,Tischlampe,19.99,EUR,5,4006381333931,Rot
        A-2,Stehlampe,49.00,EUR,2,,Schwarz
        """)
    write(tmp_path / "berlin.csv", """
        Art.Nr;Name;Preis;Menge
        A-1;Tischlampe;19,99 €;3
        """)
    (tmp_path / "google.xml").write_text(
        '<?xml version="1.0"?><rss xmlns:g="http://base.google.com/ns/1.0" version="2.0">'
        "<channel><item><g:id>A-1</g:id><g:title>Tischlampe</g:title>"
        "<g:price>19.99 EUR</g:price></item></channel></rss>")
    fixtures = Path(__file__).parent / "fixtures"
    amazon = tmp_path / "amazon.txt"
    amazon.write_bytes((fixtures / "amazon_listings" / "all_listings_de.txt").read_bytes())
    shop = tmp_path / "shopify.csv"
    shop.write_bytes((fixtures / "shopify" / "export_legacy.csv").read_bytes())
    cfg = tmp_path / "config.toml"
    r = cli("init", tmp_path / "pim.csv", tmp_path / "berlin.csv", tmp_path / "google.xml",
            amazon, shop, "--output", cfg)
    assert r.exit_code == 0, r.output
    assert "pim.csv: master (csv)" in r.output
    assert "sku = 'Article No'" in r.output and "price = 'VK'" in r.output
    assert "channel 'berlin' (tabular)" in r.output and "decimal commas" in r.output
    assert "channel 'google' (google_merchant)" in r.output
    assert "channel 'amazon' (amazon_listings)" in r.output
    assert "channel 'shopify' (shopify)" in r.output
    text = cfg.read_text()
    assert text.startswith("# omni-auditor configuration, written by `auditor init`")
    assert 'sku = "Article No"' in text and 'color = "Farbe"' in text
    assert 'columns = { sku = "Art.Nr", title = "Name", price = "Preis", quantity = "Menge" }' \
        in text
    r = cli("config", "check", "--config", cfg)
    assert r.exit_code == 0, r.output
    r = cli("run", "--config", cfg, "--format", "json")
    assert r.exit_code in (0, 1), r.output
    summary = json.loads(r.stdout)
    assert summary["master"]["records"] == 2
    berlin = {c["channel"]: c for c in summary["channels"]}["berlin"]
    assert berlin["status"] == "complete" and berlin["linked"] == 1
    # Never overwrites by accident.
    r = cli("init", tmp_path / "pim.csv", "--output", cfg)
    assert r.exit_code == 2 and "--force" in r.output


def test_missing_config_points_to_init(tmp_path):
    r = cli("config", "check", "--config", tmp_path / "none.toml")
    assert r.exit_code == 2 and "auditor init" in r.output
    r = cli("init", "--output", tmp_path / "template.toml")
    assert r.exit_code == 0 and (tmp_path / "template.toml").read_text().startswith("#")


# ---------------------------------------------------------------- item 11

def test_format_on_every_command_that_prints_records(audited):
    for args in (["findings"], ["links"], ["runs"], ["connectors"], ["checks"],
                 ["config", "options"]):
        needs = [] if args[0] in ("connectors", "checks", "config") else ["--config", audited]
        j = cli(*args, *needs, "--format", "json")
        assert j.exit_code == 0, (args, j.output)
        assert json.loads(j.stdout), args
        c = cli(*args, *needs, "--format", "csv")
        assert c.exit_code == 0, (args, c.output)
        assert list(csv.DictReader(io.StringIO(c.stdout))), args
    r = cli("run", "--config", audited, "--format", "csv")
    assert [row["channel"] for row in csv.DictReader(io.StringIO(r.stdout))] == ["google"]
    r = cli("run", "--config", audited, "--format", "text")  # the old spelling
    assert r.exit_code == 1 and "exit 1" in r.output


def test_extract_format_and_json_alias(tmp_path):
    page = tmp_path / "p.html"
    page.write_text('<html><head><script type="application/ld+json">{"@context": '
                    '"https://schema.org", "@type": "Product", "name": "Tee", "sku": "T-1", '
                    '"offers": {"@type": "Offer", "price": "9.99", "priceCurrency": "EUR"}}'
                    "</script></head><body></body></html>")
    a = cli("extract", page, "--format", "json")
    b = cli("extract", page, "--json")
    assert a.exit_code == b.exit_code == 0
    assert json.loads(a.stdout) == json.loads(b.stdout)
    assert json.loads(a.stdout)["sku"] == "T-1"
    c = cli("extract", page, "--format", "csv")
    rows = {r["field"]: r["value"] for r in csv.DictReader(io.StringIO(c.stdout))}
    assert rows["sku"] == "T-1"


def test_quiet_run_prints_nothing(mini_world):
    r = cli("-q", "run", "--config", mini_world / "config.toml")
    assert r.exit_code == 1 and r.output == ""


def test_global_config_before_the_subcommand(audited):
    r = cli("--config", audited, "findings", "--format", "json")
    assert r.exit_code == 0 and json.loads(r.stdout)
    r = cli("--config", audited, "runs", "--format", "json")
    assert r.exit_code == 0 and json.loads(r.stdout)[0]["id"] == 1
    # The subcommand's own --config wins.
    r = cli("--config", audited.parent / "nope.toml", "findings", "--config", audited)
    assert r.exit_code == 0


def test_stderr_is_not_hard_wrapped(tmp_path):
    env = {"COLUMNS": "40", "PYTHONPATH": str(ROOT)}
    p = subprocess.run([sys.executable, "-m", "auditor", "config", "check", "--config",
                        str(tmp_path / "none.toml")], capture_output=True, text=True,
                       cwd=ROOT, env={**__import__("os").environ, **env}, timeout=60)
    assert p.returncode == 2
    assert f"file not found: {tmp_path / 'none.toml'} (write one with `auditor init [FILES]`, " \
        "a commented template without FILES; or name another with --config FILE or " \
        "AUDITOR_CONFIG)" in p.stderr


def test_extract_refusal_names_allow_private():
    with serve({"/p": (200, {"Content-Type": "text/html"}, b"<html></html>")}) as (base, _):
        r = cli("extract", f"{base}/p")
        assert r.exit_code == 2
        assert "--allow-private" in r.output and "127.0.0.1" in r.output
        r = cli("extract", f"{base}/p", "--allow-private")
        assert r.exit_code == 1  # read, no product on it


def test_init_takes_an_xlsx_channel_but_asks_for_a_csv_master(tmp_path):
    from openpyxl import Workbook

    wb = Workbook()
    ws = wb.active
    ws.append(["SKU", "Name", "Price", "Qty"])
    ws.append(["A-1", "Lamp", 19.99, 3])
    wb.save(tmp_path / "pos.xlsx")
    write(tmp_path / "pim.csv", "sku,title,price,currency\nA-1,Lamp,19.99,EUR\n")
    cfg = tmp_path / "audit.toml"
    r = cli("init", tmp_path / "pos.xlsx", tmp_path / "pim.csv", "-o", cfg)
    assert r.exit_code == 0, r.output
    assert "pim.csv: master" in r.output and "channel 'pos' (tabular)" in r.output
    assert cli("run", "--config", cfg).exit_code == 0
    r = cli("init", "--master", tmp_path / "pos.xlsx", tmp_path / "pim.csv", "-o",
            tmp_path / "other.toml")
    assert r.exit_code == 2 and "save the workbook as CSV" in r.output
    # The master import itself says what it got, not a header of binary garbage.
    cfg.write_text(cfg.read_text().replace('source = "pim.csv"', 'source = "pos.xlsx"'))
    r = cli("run", "--config", cfg)
    assert r.exit_code == 2 and "got XLSX where a CSV master export was expected" in r.output
