"""Inputs as retailers' systems really write them, one quirk per test.

Each test is a false alarm or a miss the independently designed messy world
(tests/fixtures/messy_retail, tests/test_messy_world.py) found, pinned at its root.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from auditor.check import is_carried
from auditor.connectors.google_merchant import _gtins
from auditor.model import Availability, Money
from auditor.extract import extract
from auditor.values import LostDigits, normalize_gtin
from connector_helpers import by_key, read


def _csv(tmp_path: Path, text: str, name: str = "pos.csv", encoding: str = "cp1252") -> str:
    p = tmp_path / name
    p.write_bytes(text.replace("\n", "\r\n").encode(encoding))
    return str(p)


OUTLET = """Filiale Outlet Ingolstadt;;;;
Bestandsliste vom 15.06.2026;;;;
;;;;
Artikel;Bezeichnung;EAN;Preis;Menge
TB-1001;Trailblazer Boot;4,00638E+12;€ 129,99;7
RJ-2001;Storm Jacket;4006381333955;€ 1.299,00;viele
;;;;
Summe;;;;7
"""


def test_a_csv_with_title_rows_above_its_header_blank_rows_of_delimiters_and_a_totals_row(
        tmp_path):
    src = _csv(tmp_path, OUTLET)
    listings, ctx = read("tabular", src, currency="EUR", decimal_separator=",",
                         columns={"sku": "Artikel", "title": "Bezeichnung", "gtin": "EAN",
                                  "price": "Preis", "quantity": "Menge"})
    got = by_key(listings)
    # The header is the row with the SKU column; the title rows, the row of semicolons and
    # "Summe" are no products and no bad rows: presence is not held.
    assert list(got) == ["TB-1001", "RJ-2001"]
    assert ctx.result.presence_held is None
    assert got["RJ-2001"].price == Money.of("1299.00", "EUR")
    # Bad cells name file, line and the export's own column.
    assert got["RJ-2001"].quantity is None
    assert got["RJ-2001"].unread["quantity"].startswith(f"{src}:6: ")
    assert "'Menge'" in got["RJ-2001"].unread["quantity"]
    assert not ctx.errors  # no bad row: the cells are recorded with their listings


def test_an_excel_rounded_gtin_is_an_unread_cell_not_a_wrong_gtin(tmp_path):
    listings, _ctx = read("tabular", _csv(tmp_path, OUTLET), currency="EUR",
                          decimal_separator=",",
                          columns={"sku": "Artikel", "gtin": "EAN", "price": "Preis"})
    boot = by_key(listings)["TB-1001"]
    assert boot.gtin is None
    assert ":5: " in boot.unread["gtin"] and "'EAN'" in boot.unread["gtin"]
    assert "4,00638E+12" in boot.unread["gtin"] and "digits are lost" in boot.unread["gtin"]
    for mangled in ("4,00638E+12", "7.61234E+12", "4.006381E12"):
        with pytest.raises(LostDigits):
            normalize_gtin(mangled)
    assert normalize_gtin("36000291452") == "00036000291452"  # a lost leading zero restores


def test_the_blank_sku_row_still_holds_presence_and_names_its_column(tmp_path):
    src = _csv(tmp_path, "Artikel;Bezeichnung;Preis\nA-1;Boot;1,00\n;Rabattaktion Sommer;\n")
    _listings, ctx = read("tabular", src, currency="EUR", decimal_separator=",",
                          columns={"sku": "Artikel", "title": "Bezeichnung", "price": "Preis"})
    assert ctx.result.presence_held is not None
    assert any(loc.endswith(":3") and "'Artikel'" in why for loc, why in ctx.errors)


def _workbook(path: Path) -> str:
    from openpyxl import Workbook

    wb = Workbook()
    ws = wb.active
    ws["A1"] = "Filiale München – Bestandsliste"
    ws.merge_cells("A1:E1")
    ws["A2"] = "Stand: 15.06.2026"
    ws.append([])
    ws.append(["Art.-Nr.", "Bezeichnung", "EAN", "VK-Preis", "Bestand"])
    ws.append(["tb-1002 ", "TRAILBLAZER BOOT", 4006381333948, 119.99, 2])   # numbers as numbers
    ws.cell(5, 3).number_format = "0.00E+00"                              # shown as 4.01E+12
    ws.append(["BP-6001", "DAYPACK", "7612345000053", "74,50", "1"])     # numbers as text
    ws.append([])
    ws.append(["GL-7001", "GLOVES", 7612345000077, 24.9, 5])
    ws.append(["Summe", None, None, None, 8])
    wb.save(path)
    return str(path)


def test_an_xlsx_with_a_merged_title_row_number_cells_and_a_totals_row(tmp_path):
    src = _workbook(tmp_path / "Bestand.xlsx")
    listings, ctx = read("tabular", src, currency="EUR", decimal_separator=",",
                         columns={"sku": "Art.-Nr.", "title": "Bezeichnung", "gtin": "EAN",
                                  "price": "VK-Preis", "quantity": "Bestand"})
    got = by_key(listings)
    assert list(got) == ["tb-1002", "BP-6001", "GL-7001"]
    assert ctx.result.presence_held is None and not ctx.errors
    # A number cell is a number whatever the channel's decimal separator for text.
    assert got["tb-1002"].price == Money.of("119.99", "EUR")
    assert got["GL-7001"].price == Money.of("24.90", "EUR")
    assert got["BP-6001"].price == Money.of("74.50", "EUR")
    assert got["tb-1002"].gtin == "04006381333948"   # the cell's value, not its display
    assert got["GL-7001"].quantity == 5 and got["GL-7001"].availability is Availability.IN_STOCK


def test_an_amazon_report_with_an_empty_image_column_declares_no_images(tmp_path):
    head = "item-name\tseller-sku\tprice\tquantity\tproduct-id\tproduct-id-type\timage-url\tstatus"
    rows = ["Beanie\tWB-3001\t19,99\t5\t7612345000015\t4\t\tActive",
            "Socks\tSK-5001\t12,99\t3\t36000291452\t3\t\tActive"]
    p = tmp_path / "All Listings Report.txt"
    p.write_bytes(("\ufeff" + "\r\n".join([head, *rows]) + "\r\n").encode("utf-8"))
    listings, ctx = read("amazon_listings", str(p), currency="EUR", decimal_separator=",")
    got = by_key(listings)
    assert got["SK-5001"].gtin == "00036000291452"
    assert got["WB-3001"].price == Money.of("19.99", "EUR")
    # image-url is in every listing report and empty in most: the header alone does not
    # declare images (they count once a row shows one), so no "missing image" per listing.
    declared = ctx.carried or set()
    assert is_carried("price", declared) and not is_carried("image", declared)


@pytest.mark.parametrize("raw,first,more", [
    ("4 006381 333931", "04006381333931", None),          # as printed under the barcode
    ("4006381333931 7612345000015", "04006381333931", "07612345000015"),
    ("4006381333931, 7612345000015", "04006381333931", "07612345000015"),
    ("400-6381-33393-1", "04006381333931", None),
])
def test_google_gtin_lists_and_gtins_with_spaces(raw, first, more):
    attrs: dict[str, str] = {}
    assert _gtins(raw, attrs) == first
    assert attrs.get("additional_gtins") == more
    assert "gtin_raw" not in attrs


TILE = ('<div class="tile"><a href="/p/{i}">Boot {i}</a> <span class="price">129,99 €</span>'
        '<button class="add-to-cart">In den Warenkorb</button></div>')


def _page(body: str) -> str:
    return (f"<!DOCTYPE html><html lang='de'><head><title>Schuhe</title></head><body>"
            f"<header><nav><a href='/'>Shop</a></nav></header><main>{body}</main></body></html>")


def test_a_small_category_page_is_no_product_even_with_equal_prices():
    ex = extract(_page("<h1>Schuhe</h1>" + TILE.format(i=1) + TILE.format(i=2)),
                 "http://shop.test/c/schuhe")
    assert not ex.is_product and "category" in (ex.reason or "")


def test_a_product_page_with_a_sticky_buy_button_is_still_a_product():
    box = ('<div class="buybox"><h1>Trailblazer Boot</h1><span class="price">129,99 €</span>'
           '<button class="add-to-cart">In den Warenkorb</button></div>')
    sticky = ('<div class="sticky-bar"><span class="price">129,99 €</span>'
              '<button class="add-to-cart">In den Warenkorb</button></div>')
    ex = extract(_page(box + "<p>Ein leichter Wanderschuh.</p>" + sticky), "http://shop.test/p/boot")
    assert ex.is_product and ex.price == Decimal("129.99")


def test_a_buy_form_with_its_submit_input_is_one_buy_box_not_a_category():
    form = ('<h1>Trailblazer Boot</h1><form action="/basket/add" method="get">'
            '<input type="hidden" name="action" value="add"><div class="product-form-price">'
            '<span class="symbol">£</span>44.99</div>'
            '<a href="/help/pre-order">Pre-order help</a>'
            '<input type="submit" class="add-to-basket" value="Add to basket"></form>')
    ex = extract(_page(form), "http://shop.test/p/boot")
    assert ex.is_product and ex.price == Decimal("44.99")


@pytest.mark.parametrize("prices,price,sale", [
    # the manufacturer's recommended price beside the shop's: no sale, the price is 1299
    ('<span class="amount">1.299,-&nbsp;€</span><span class="was">UVP 1.499,00 €</span>',
     "1299", None),
    ('<strike class="common-msrp-price">$70.00</strike> <span class="price">$59.99</span>',
     "59.99", None),
    # "Save £20.98" is a saving, never a regular price
    ('<ul class="list-unstyled prices"><li><span class="price">£5.99</span></li>'
     '<li class="rrp">RRP £26.97</li><li>Save £20.98</li></ul>', "5.99", None),
    # the shop's own earlier price is a sale
    ('<span class="price">49,99 €</span> <del>statt 59,99 €</del>', "59.99", "49.99"),
])
def test_a_recommended_retail_price_is_no_regular_price(prices, price, sale):
    box = (f'<div class="pdp-info"><h1>Base Camp Lantern Pro</h1><div>{prices}</div>'
           f'<button class="pdp-info__cta">In den Warenkorb</button></div>')
    ex = extract(_page(box), "http://shop.test/p/lantern")
    assert ex.price == Decimal(price)
    assert ex.sale_price == (Decimal(sale) if sale else None)
