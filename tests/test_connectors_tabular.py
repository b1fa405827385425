"""Tabular exports: presets, column maps, locales, per-location stock, XLSX."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from auditor.errors import SourceError
from auditor.model import Availability, Money
from connector_helpers import FIXTURES, by_key, read

TAB = FIXTURES / "tabular"


def test_square_preset_cp1252_semicolons_decimal_commas_locations():
    listings, ctx = read("tabular", str(TAB / "square_export.csv"), preset="square",
                         currency="EUR", decimal_separator=",")
    got = by_key(listings)
    # Rows with a readable key are listings even when a cell is unreadable.
    assert sorted(got) == ["BAD-1@Café Gare", "BAD-1@Main St", "BAD-2@Café Gare",
                           "BAD-2@Main St", "TOK3@Café Gare", "TOK3@Main St",
                           "TS-BLU-M@Café Gare", "TS-BLU-M@Main St", "TS-RED-M@Café Gare",
                           "TS-RED-M@Main St"]
    red_main = got["TS-RED-M@Main St"]
    assert red_main.sku == "TS-RED-M" and red_main.location == "Main St"
    assert red_main.title == "Acme Tee" and red_main.attributes["variation"] == "Red, M"
    assert red_main.price == Money.of("19.99", "EUR")
    assert red_main.quantity == 5 and red_main.availability is Availability.IN_STOCK
    assert red_main.gtin == "04006381333931" and red_main.group_id == "#tee"
    assert got["TS-RED-M@Café Gare"].availability is Availability.OUT_OF_STOCK
    blue_main = got["TS-BLU-M@Main St"]
    assert blue_main.price == Money.of("1299.00", "EUR")
    assert blue_main.quantity is None and blue_main.availability is None
    assert blue_main.gtin == "00036282818705"
    assert got["TOK3@Main St"].sku is None  # no SKU: keyed by the Square token
    bad1 = got["BAD-1@Main St"]
    assert bad1.price is None and bad1.quantity == 1
    assert set(bad1.unread) == {"price"}
    assert bad1.unread["price"].startswith("square_export.csv:5: ") or \
        "square_export.csv:5: " in bad1.unread["price"]
    assert "'abc'" in bad1.unread["price"] and "'Price'" in bad1.unread["price"]
    bad2 = got["BAD-2@Main St"]
    assert bad2.quantity is None and set(bad2.unread) == {"quantity"}
    assert ":6: " in bad2.unread["quantity"] and "Current Quantity Main St" in bad2.unread["quantity"]
    assert got["BAD-2@Café Gare"].quantity == 1 and not got["BAD-2@Café Gare"].unread
    assert not got["TS-RED-M@Main St"].unread
    assert ctx.result.presence_held is None  # every row had its key
    assert {"price", "quantity", "availability", "gtin", "title"} <= ctx.carried
    assert "images" not in ctx.carried


def test_lightspeed_preset_with_bom_and_dollar_prices():
    listings, ctx = read("tabular", str(TAB / "lightspeed_export.csv"), preset="lightspeed",
                         currency="USD")
    got = by_key(listings)
    assert sorted(got) == ["210000000002@Main Shop", "210000000002@Outlet",
                           "TS-RED-M@Main Shop", "TS-RED-M@Outlet"]
    red = got["TS-RED-M@Main Shop"]
    assert red.price == Money.of("19.99", "USD") and red.gtin == "00036282818705"
    assert red.mpn == "MFR-1" and red.brand == "Acme" and red.quantity == 3
    blue = got["210000000002@Outlet"]
    assert blue.price == Money.of("1299.00", "USD") and blue.gtin == "04006381333931"
    assert ctx.result.errors == 0


def test_column_map_dates_and_explicit_locations(tmp_path):
    p = tmp_path / "pos.csv"
    p.write_text("Art.Nr;Bezeichnung;VK;Aktion;Von;Bis;Lager A;Lager B\n"
                 "A-1;Tasse;1.234,50;999,00;01.03.2025;08.03.2025;2;0\n", encoding="utf-8")
    listings, ctx = read(
        "tabular", str(p), currency="EUR", decimal_separator=",", date_format="%d.%m.%Y",
        timezone="Europe/Berlin",
        columns={"sku": "Art.Nr", "title": "Bezeichnung", "price": "VK", "sale_price": "Aktion",
                 "sale_start": "Von", "sale_end": "Bis"},
        locations={"Berlin": "Lager A", "Hamburg": "Lager B"})
    got = by_key(listings)
    a = got["A-1@Berlin"]
    assert a.price == Money.of("1234.50", "EUR") and a.sale_price == Money.of("999.00", "EUR")
    assert a.sale_start.astimezone(timezone.utc) == datetime(2025, 2, 28, 23, tzinfo=timezone.utc)
    assert a.quantity == 2 and got["A-1@Hamburg"].availability is Availability.OUT_OF_STOCK
    assert ctx.result.errors == 0


def test_plain_headers_without_map(tmp_path):
    p = tmp_path / "plain.csv"
    p.write_text("SKU,Title,Price,Quantity,Group ID\nX-1,Thing,2.50 GBP,0,G\n", encoding="utf-8")
    (li,), _ = read("tabular", str(p))
    assert (li.key, li.title, li.price, li.quantity, li.group_id) == (
        "X-1", "Thing", Money.of("2.50", "GBP"), 0, "G")
    assert li.availability is Availability.OUT_OF_STOCK


def test_a_currency_column_gives_each_rows_prices_their_currency(tmp_path):
    """A `currency` column (as in the master) is read, not kept as an attribute, and wins
    over the channel's `currency`; a code in the price cell wins over both."""
    p = tmp_path / "plain.csv"
    p.write_text("sku,title,price,sale_price,currency\nA,Tee,10.00,8.00,EUR\nB,Cap,5.00,,GBP\n"
                 "C,Hat,7.00 USD,,GBP\nD,Bag,3.00,,\n", encoding="utf-8")
    got = by_key(read("tabular", str(p), currency="CHF")[0])
    assert got["A"].price == Money.of("10.00", "EUR")
    assert got["A"].sale_price == Money.of("8.00", "EUR")
    assert got["B"].price == Money.of("5.00", "GBP")
    assert got["C"].price == Money.of("7.00", "USD")
    assert got["D"].price == Money.of("3.00", "CHF")
    assert "currency" not in got["A"].attributes
    one = tmp_path / "one.csv"
    one.write_text("sku,price,currency\nA,10.00,EUR\n", encoding="utf-8")
    (li,), _ = read("tabular", str(one))  # no channel currency: the column is enough
    assert li.price == Money.of("10.00", "EUR") and not li.unread

def test_no_sku_column_is_a_source_error(tmp_path):
    p = tmp_path / "x.csv"
    p.write_text("Name,Cost\nA,1\n", encoding="utf-8")
    with pytest.raises(SourceError, match="no SKU column"):
        read("tabular", str(p), currency="EUR")


def test_locations_regex_matching_nothing_is_a_source_error(tmp_path):
    p = tmp_path / "x.csv"
    p.write_text("SKU,Price\nA,1\n", encoding="utf-8")
    with pytest.raises(SourceError, match="no column matches locations"):
        read("tabular", str(p), currency="EUR", locations="Stock (.*)")


def test_xlsx_streamed_with_numbers_as_cells(tmp_path):
    from openpyxl import Workbook

    wb = Workbook()
    ws = wb.active
    ws.title = "Items"
    ws.append([None])
    ws.append(["Token", "Item Name", "SKU", "Price", "GTIN", "Current Quantity Main St"])
    ws.append(["T1", "Acme Tee", "TS-RED-M", 19.99, 36282818705, 4])
    ws.append(["T2", "Acme Mug", "MUG-1", 1299, None, 0])
    ws.append([None, None, None, None, None, None])
    wb.save(tmp_path / "export.xlsx")
    listings, ctx = read("tabular", str(tmp_path / "export.xlsx"), preset="square",
                         currency="USD", sheet="Items")
    got = by_key(listings)
    tee = got["TS-RED-M@Main St"]
    assert tee.price == Money.of("19.99", "USD") and tee.gtin == "00036282818705"
    assert tee.quantity == 4 and tee.evidence.endswith(":3")
    assert got["MUG-1@Main St"].price == Money.of("1299", "USD")
    assert ctx.result.errors == 0


def test_xlsx_missing_sheet_names_the_sheets(tmp_path):
    from openpyxl import Workbook

    wb = Workbook()
    wb.active.title = "Data"
    wb.save(tmp_path / "e.xlsx")
    with pytest.raises(SourceError, match="no sheet named 'Items'.*Data"):
        read("tabular", str(tmp_path / "e.xlsx"), sheet="Items")


def test_duplicate_rows_are_reported_once(tmp_path):
    p = tmp_path / "d.csv"
    p.write_text("SKU,Price,Qty A,Qty B\nA,1.00,1,2\nA,2.00,3,4\n", encoding="utf-8")
    listings, ctx = read("tabular", str(p), currency="EUR", locations="Qty (.*)")
    assert sorted(li.key for li in listings) == ["A@A", "A@B"]
    assert all(li.price == Money.of("1.00", "EUR") for li in listings)
    assert ctx.errors == [(f"{p}:3", "duplicate key 'A'; kept the first")]


def test_listing_makers_build_what_the_dataclass_builds():
    from auditor.model import Listing
    from auditor.connectors._common import listing_maker, make_listing
    from connector_helpers import NOW

    expected = Listing(channel="c", key="k", fetched_at=NOW, title="t", images=("i",))
    assert make_listing(channel="c", key="k", fetched_at=NOW, title="t", images=("i",)) == expected
    assert listing_maker("channel", "key", "fetched_at", "title", "images")(
        "c", "k", NOW, "t", ("i",)) == expected
    a, b = make_listing(channel="c", key="k", fetched_at=NOW), make_listing(
        channel="c", key="k", fetched_at=NOW)
    assert a.attributes == {} and a.attributes is not b.attributes  # fresh defaults
    with pytest.raises(TypeError, match="unknown"):
        listing_maker("channel", "key", "fetched_at", "colour")
    with pytest.raises(TypeError, match="required field 'fetched_at'"):
        listing_maker("channel", "key")


def test_truncated_xlsx_is_a_source_error(tmp_path):
    from openpyxl import Workbook

    wb = Workbook()
    for i in range(200):
        wb.active.append([f"SKU-{i}", i])
    wb.save(tmp_path / "full.xlsx")
    data = (tmp_path / "full.xlsx").read_bytes()
    (tmp_path / "cut.xlsx").write_bytes(data[: len(data) // 2])
    with pytest.raises(SourceError, match="XLSX"):
        read("tabular", str(tmp_path / "cut.xlsx"), currency="EUR")


def test_repeated_header_row_is_not_a_listing(tmp_path):
    p = tmp_path / "joined.csv"
    p.write_text("sku,title,price\nA-1,Tee,1.00\nsku,title,price\nA-2,Mug,2.00\n",
                 encoding="utf-8")
    listings, ctx = read("tabular", str(p), currency="EUR")
    assert [li.key for li in listings] == ["A-1", "A-2"]
    assert ctx.result.errors == 0 and ctx.result.presence_held is None
