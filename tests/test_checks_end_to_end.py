"""All checks through auditor.runner.run_audit: a CSV master and a Google TSV feed."""

from __future__ import annotations

from pathlib import Path

from auditor.config import parse_config
from auditor.runner import run_audit
from auditor.storage import open_store
from tests.checks_factory import GTIN, NOW, OTHER_GTIN

MASTER = """sku,title,brand,gtin,price,currency,quantity,status,color,size,weight,sale_price,sale_start,sale_end
OK-1,Acme Alpine Hoodie Grey M,Acme,{g1},49.99,EUR,10,active,Grey,M,1.2 kg,,,
TYPO-2,Acme Coastal Jacket Red L,Acme,,89.00,EUR,5,active,Red,L,,,,
GONE-3,Acme Summit Beanie Navy,Acme,,19.00,EUR,7,active,Navy,,,,,
ZOMBIE-4,Acme Legacy Mug,Acme,,9.00,EUR,0,discontinued,,,,,,
SALE-5,Acme Willow Vase Green,Acme,,30.00,EUR,3,active,Green,,,24.00,2026-11-20,2026-12-10
GTIN-6,Acme Ember Lamp,Acme,{g2},59.00,EUR,2,active,,,,,,
"""
bad_check = OTHER_GTIN[:-1] + str((int(OTHER_GTIN[-1]) + 1) % 10)
FEED = "\t".join(["id", "title", "brand", "gtin", "price", "sale_price", "availability",
                  "color", "size"]) + "\n" + "\n".join("\t".join(r) for r in [
    # brand prefix, case, gray/grey, Medium/M: all benign
    ["OK-1", "ACME Acme Alpine Hoodie - Grey - M", "Acme", GTIN, "49.99 EUR", "",
     "in_stock", "Gray", "Medium"],
    ["TYPO-2", "Acme Coastal Jacket Red L", "Acme", "", "8.90 EUR", "", "in stock", "Red", "L"],
    ["ZOMBIE-4", "Acme Legacy Mug", "Acme", "", "9.00 EUR", "", "out_of_stock", "", ""],
    # sale in force, missing on the channel; and out of stock although the master has 3
    ["SALE-5", "Acme Willow Vase Green", "Acme", "", "30.00 EUR", "", "out_of_stock",
     "Green", ""],
    ["GTIN-6", "Acme Ember Lamp", "Acme", bad_check, "59.00 EUR", "", "in_stock", "", ""],
    ["GHOST-9", "Zephyr Ukulele Deluxe", "Kestrel", "", "12.00 EUR", "", "in_stock", "", ""],
]) + "\n"


def setup(tmp_path: Path, broken_second: bool = False):
    (tmp_path / "master.csv").write_text(MASTER.format(g1=GTIN, g2=OTHER_GTIN), encoding="utf-8")
    (tmp_path / "google.tsv").write_text(FEED, encoding="utf-8")
    channels = [{"name": "google", "type": "google_merchant", "source": "google.tsv"}]
    if broken_second:
        channels.append({"name": "meta", "type": "google_merchant", "source": "nope/*.tsv"})
    raw = {"store": {"path": "a.db"}, "master": {"type": "csv", "source": "master.csv"},
           "channels": channels}
    cfg = parse_config(raw, tmp_path / "config.toml")
    return cfg, open_store(cfg.store_url)


def test_end_to_end_findings(tmp_path):
    cfg, store = setup(tmp_path)
    report = run_audit(cfg, store, now=NOW)
    got = {(f.sku or f.listing_key, f.check, f.field) for f in store.findings()}
    assert got == {
        ("TYPO-2", "price", "price"),
        ("GONE-3", "presence", "listing"),
        ("ZOMBIE-4", "presence", "listing"),
        ("SALE-5", "price", "sale_price"),
        ("SALE-5", "availability", "availability"),
        ("GTIN-6", "identifiers", "gtin"),
        ("GHOST-9", "presence", "listing"),
    }
    scores = {(r.channel, r.check): r for r in store.scores(report.run_id)}
    assert scores[("google", "attributes")].failed == 0
    assert scores[("google", "attributes")].passed >= 3
    assert scores[("google", "title")].score == 1.0
    assert scores[("google", "price")].failed == 2
    assert report.exit_code == 1
    store.close()


def test_failed_source_produces_no_missing_listings(tmp_path):
    cfg, store = setup(tmp_path, broken_second=True)
    report = run_audit(cfg, store, now=NOW)
    meta = [c for c in report.channels if c.channel == "meta"][0]
    assert meta.status.value == "failed"
    assert store.findings(channel="meta") == []
    assert any(f.check == "presence" for f in store.findings(channel="google"))
    store.close()


def test_partly_read_source_produces_no_missing_listings(tmp_path):
    cfg, store = setup(tmp_path)
    run_audit(cfg, store, now=NOW)
    missing_before = {f.sku for f in store.findings(check="presence")
                      if f.details.get("kind") == "missing"}
    assert missing_before == {"GONE-3"}
    # The next feed has one row of six: under min_ratio of the last complete read.
    lines = FEED.splitlines()
    (tmp_path / "google.tsv").write_text("\n".join(lines[:2]) + "\n", encoding="utf-8")
    report = run_audit(cfg, store, now=NOW)
    assert "5 of 6 listings vanished" in report.channels[0].presence_held
    assert report.exit_code == 2
    missing_after = {f.sku for f in store.findings(check="presence", state="open")
                     if f.details.get("kind") == "missing"}
    assert missing_after == missing_before  # nothing new concluded missing
    store.close()
