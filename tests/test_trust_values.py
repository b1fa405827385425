"""Nonsense master prices and VAT traps, as a user meets them through the CLI
(issue 13 items 2 and 5)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from auditor.cli import main
from conftest import write


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture
def world(tmp_path: Path) -> Path:
    write(tmp_path / "master.csv", """
        sku,title,price,currency
        A-1,Alpha Lamp,159.66,EUR
        A-2,Beta Lamp,10.00,EUR
        """)
    write(tmp_path / "pos.csv", """
        sku,title,price
        A-1,Alpha Lamp,190.00
        A-2,Beta Lamp,11.90
        """)
    write(tmp_path / "config.toml", """
        [store]
        path = "auditor.db"
        [master]
        source = "master.csv"
        [[channels]]
        name = "pos"
        type = "tabular"
        source = "pos.csv"
        currency = "EUR"
          [channels.checks.price]
          tax_inclusive = true
          vat_rate = 0.19
        """)
    return tmp_path


@pytest.mark.parametrize("cell,why", [
    ("1e3", "scientific notation"),
    ("-5", "a price cannot be negative"),
    ("19.99 USD", "the cell is in USD but the row's currency column says EUR"),
])
def test_nonsense_master_price_is_an_error_with_file_line_and_column(world, cell, why):
    (world / "master.csv").write_text(
        f"sku,title,price,currency\nA-1,Alpha Lamp,{cell},EUR\nA-2,Beta Lamp,10.00,EUR\n")
    r = cli("run", "--config", world / "config.toml")
    assert r.exit_code == 2
    assert f"master.csv:2 column price: bad price '{cell}': {why}" in r.output
    assert not (world / "auditor.db").exists() or "critical" not in r.output


def test_price_in_a_currency_column_must_agree(world):
    (world / "master.csv").write_text(
        "sku,title,price,currency,price_usd\nA-1,Alpha Lamp,159.66,EUR,12.00 EUR\n")
    r = cli("run", "--config", world / "config.toml")
    assert r.exit_code == 2
    assert "master.csv:2 column price_usd: bad price '12.00 EUR': the cell is in EUR but " \
        "its column says USD" in r.output


def test_sale_price_cannot_be_negative_either(world):
    (world / "master.csv").write_text(
        "sku,title,price,currency,sale_price\nA-1,Alpha Lamp,159.66,EUR,-1.00\n")
    r = cli("run", "--config", world / "config.toml")
    assert r.exit_code == 2 and "column sale_price: bad price '-1.00'" in r.output


@pytest.mark.parametrize("value", ["19", "19.0", "1.19", "0", '"190%"'])
def test_vat_rate_that_is_not_a_fraction_is_refused(world, value):
    cfg = world / "config.toml"
    cfg.write_text(cfg.read_text().replace("vat_rate = 0.19", f"vat_rate = {value}"))
    r = cli("config", "check", "--config", cfg, "--offline")
    assert r.exit_code == 2, r.output
    assert "[[channels]] 'pos'.checks.price.vat_rate: expected a fraction between 0 and 1" \
        in r.output
    assert cli("run", "--config", cfg).exit_code == 2
    assert not (world / "auditor.db").exists()


@pytest.mark.parametrize("value", ["0.19", '"19%"', '"19 %"'])
def test_vat_rate_as_fraction_or_percent_string(world, value):
    cfg = world / "config.toml"
    cfg.write_text(cfg.read_text().replace("vat_rate = 0.19", f"vat_rate = {value}"))
    r = cli("config", "check", "--config", cfg, "--offline")
    assert r.exit_code == 0, r.output
    r = cli("run", "--config", cfg)
    assert r.exit_code == 0, r.output


def test_one_cent_from_rounding_net_to_gross_passes(world):
    # 159.66 net x 1.19 = 189.9954: 190.00, but a net of 159.655 (rounded to 159.66)
    # gives 189.99 -- both are the master's price with VAT.
    (world / "pos.csv").write_text("sku,title,price\nA-1,Alpha Lamp,189.99\nA-2,Beta Lamp,11.90\n")
    r = cli("run", "--config", world / "config.toml")
    assert r.exit_code == 0, r.output


def test_real_gross_difference_names_net_and_vat(world):
    (world / "pos.csv").write_text("sku,title,price\nA-1,Alpha Lamp,185.00\nA-2,Beta Lamp,11.92\n")
    cfg = world / "config.toml"
    assert cli("run", "--config", cfg).exit_code == 1
    rows = json.loads(cli("findings", "--config", cfg, "--format", "json").stdout)
    msgs = {f["sku"]: f["message"] for f in rows}
    assert msgs["A-1"] == "price 185.00 EUR differs from master 159.66 EUR net, " \
        "190.00 EUR with 19% VAT"
    assert msgs["A-2"] == "price 11.92 EUR differs from master 10.00 EUR net, " \
        "11.90 EUR with 19% VAT"


def test_jsonl_master_prices_are_strict_too(world):
    (world / "master.jsonl").write_text(
        '{"sku": "A-1", "title": "Alpha Lamp", "price": "1e3", "currency": "EUR"}\n'
        '{"sku": "A-2", "title": "Beta Lamp", "price": -5, "currency": "EUR"}\n'
        '{"sku": "A-3", "title": "Gamma Lamp", "price": 12.5, "currency": "EUR"}\n')
    cfg = world / "config.toml"
    cfg.write_text(cfg.read_text().replace('source = "master.csv"',
                                           'type = "jsonl"\nsource = "master.jsonl"'))
    r = cli("run", "--config", cfg)
    assert r.exit_code == 2
    assert "master.jsonl:1 column price: bad price '1e3': scientific notation" in r.output
    assert "master.jsonl:2 column price: bad price '-5': a price cannot be negative" in r.output
    assert "master.jsonl:3" not in r.output
