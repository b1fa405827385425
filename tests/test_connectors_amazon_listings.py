"""Amazon listing and inventory reports: header mapping, locale, product ids."""

from __future__ import annotations

import pytest

from auditor.errors import SourceError
from auditor.model import Availability, Money
from connector_helpers import FIXTURES, by_key, read

AMZ = FIXTURES / "amazon_listings"


def test_all_listings_report_with_decimal_commas():
    listings, ctx = read("amazon_listings", str(AMZ / "all_listings_de.txt"), currency="EUR",
                         decimal_separator=",", product_url="https://www.amazon.de/dp/{asin}")
    got = by_key(listings)
    assert list(got) == ["TS-RED-M", "TS-BLU-M", "BOOK-1", "MUG-1", "BAD-1", "UPC-SHORT"]
    bad1 = got["BAD-1"]  # price "gratis": read without its price, the reason kept
    assert bad1.price is None and set(bad1.unread) == {"price"}
    assert ":6: " in bad1.unread["price"] and "gratis" in bad1.unread["price"]
    assert ctx.result.presence_held is None
    assert {"price", "quantity", "availability", "gtin", "title"} <= ctx.carried
    # image-url counts once a row shows an image (listing reports leave it empty)
    assert "images" not in ctx.carried
    red = got["TS-RED-M"]
    assert red.sku == "TS-RED-M" and red.title == "Acme Tee Rot M"
    assert red.price == Money.of("19.99", "EUR") and red.quantity == 7
    assert red.availability is Availability.IN_STOCK
    assert red.gtin == "04006381333931"
    assert red.attributes["asin"] == "B0TEE00001"
    assert red.url == "https://www.amazon.de/dp/B0TEE00001"
    assert red.images == ("https://m.media-amazon.com/images/I/1.jpg",)
    blue = got["TS-BLU-M"]
    assert blue.price == Money.of("1299.00", "EUR")
    assert blue.availability is Availability.OUT_OF_STOCK  # quantity 0
    assert blue.gtin == "00036282818705"  # UPC that lost its leading zero
    book = got["BOOK-1"]
    assert book.gtin == "09780306406157"  # ISBN-10 0306406152 without its zero
    assert book.quantity is None and book.availability is Availability.IN_STOCK  # FBA, active
    mug = got["MUG-1"]
    assert mug.gtin is None and mug.attributes["asin"] == "B0MUG00001"
    assert mug.availability is Availability.OUT_OF_STOCK  # inactive despite quantity 3
    assert got["UPC-SHORT"].gtin == "00000000123457"
    bad = {loc.rsplit(":", 1)[1]: r for loc, r in ctx.errors}
    assert "6" not in bad
    assert "duplicate seller-sku 'TS-RED-M'" in bad["8"]


def test_inventory_report():
    listings, ctx = read("amazon_listings", str(AMZ / "open_listings.txt"), currency="GBP")
    got = by_key(listings)
    assert got["INV-1"].price == Money.of("12.50", "GBP")
    assert got["INV-1"].attributes["asin"] == "B0INV00001"
    assert got["INV-2"].availability is Availability.OUT_OF_STOCK
    assert ctx.result.errors == 0


def test_currency_is_required():
    with pytest.raises(SourceError, match="currency"):
        read("amazon_listings", str(AMZ / "open_listings.txt"))


def test_missing_sku_column_names_the_header(tmp_path):
    p = tmp_path / "r.txt"
    p.write_text("item-name\tprice\nTee\t1.00\n", encoding="utf-8")
    with pytest.raises(SourceError,
                       match=r"sku \(seller-sku or sku or Händler-SKU\).*item-name, price"):
        read("amazon_listings", str(p), currency="EUR")


def test_header_override(tmp_path):
    p = tmp_path / "r.txt"
    p.write_text("Händler-SKU\tPreis\tMenge\nA-1\t2,50\t1\n", encoding="utf-8")
    listings, _ = read("amazon_listings", str(p), currency="EUR",
                       columns={"sku": "Händler-SKU", "price": "Preis", "quantity": "Menge"})
    assert listings[0].key == "A-1" and listings[0].price == Money.of("2.50", "EUR")


def test_german_headers_without_override(tmp_path):
    p = tmp_path / "r.txt"
    p.write_text("Artikelbezeichnung\tHändler-SKU\tPreis\tMenge\tProdukt-ID\tProdukt-ID-Typ\n"
                 "Tasse\tA-1\t2,50\t0\t4006381333931\t4\n", encoding="cp1252")
    (li,), ctx = read("amazon_listings", str(p), currency="EUR", decimal_separator=",")
    assert (li.key, li.title, li.price, li.quantity, li.gtin) == (
        "A-1", "Tasse", Money.of("2.50", "EUR"), 0, "04006381333931")
    assert li.availability is Availability.OUT_OF_STOCK and ctx.result.errors == 0
