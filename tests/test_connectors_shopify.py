"""Shopify: /products.json paging, .js barcodes, closed stores, CSV exports."""

from __future__ import annotations

import json
import logging

import pytest

from auditor.errors import SourceError
from auditor.model import Availability, Money
from connector_helpers import FIXTURES, HTTP_LOCAL, NOW, by_key, read, serve

SHOP = FIXTURES / "shopify"


def _json(name: str) -> tuple[int, dict, bytes]:
    return 200, {"Content-Type": "application/json"}, (SHOP / name).read_bytes()


def _store(**extra) -> dict:
    routes = {
        "/products.json?limit=250&page=1": _json("products_page1.json"),
        "/products.json?limit=250&page=2": _json("products_page2.json"),
        # A store that repeats its last page instead of answering an empty one.
        "/products.json?limit=250&page=3": _json("products_page2.json"),
        "/cart.js": (200, {"Content-Type": "application/json"}, b'{"currency": "JPY"}'),
        "/products/acme-tee.js": _json("acme-tee.js"),
        "/products/acme-mug.js": _json("acme-mug.js"),
    }
    routes.update(extra)
    return routes


def test_products_json_paged_deduplicated_currency_from_cart():
    with serve(_store()) as (base, seen):
        listings, ctx = read("shopify", base, http_options=HTTP_LOCAL)
    got = by_key(listings)
    assert list(got) == ["11", "12", "21", "31"]
    red = got["11"]
    assert red.sku == "TS-RED-M" and red.title == "Acme Tee" and red.brand == "Acme"
    assert red.price == Money.of("2000.00", "JPY") and red.sale_price == Money.of("1500.00", "JPY")
    assert red.availability is Availability.IN_STOCK
    assert red.url == f"{base}/products/acme-tee?variant=11"
    assert red.description == "Soft cotton & more"
    assert red.attributes["color"] == "Red" and red.attributes["size"] == "M"
    assert red.attributes["product_weight"] == "200 g"
    assert red.group_id == "1001" and red.gtin is None
    blue = got["12"]
    assert blue.availability is Availability.OUT_OF_STOCK and blue.sale_price is None
    # A variant with an image of its own shows that; the shared gallery may show other colours.
    assert blue.images == ("https://cdn.shopify.example/tee-blue.jpg",)
    assert got["21"].sku is None and "option_title" not in got["21"].attributes
    paths = [s["path"] for s in seen]
    assert "/products.json?limit=250&page=3" in paths and not any(".js" in p and "products/" in p
                                                                   for p in paths)
    assert ctx.result.errors == 0 and ctx.result.status.value == "complete"


def test_barcodes_from_product_js_with_minor_units_x100():
    with serve(_store()) as (base, _):
        listings, ctx = read("shopify", base, http_options=HTTP_LOCAL, barcodes=True)
    got = by_key(listings)
    red = got["11"]
    assert red.gtin == "00036282818705"
    # 150000 in the Ajax API is 1500 JPY: x100 although JPY has no minor unit.
    assert red.price == Money.of("2000", "JPY") and red.sale_price == Money.of("1500", "JPY")
    assert got["12"].gtin == "00036282818712"
    assert got["21"].gtin == "not-a-gtin" and got["21"].attributes["gtin_raw"] == "not-a-gtin"
    assert got["31"].gtin is None  # acme-cap.js answers 404
    (loc, reason), = ctx.errors
    assert loc.endswith("/products/acme-cap.js") and "HTTP 404" in reason


@pytest.mark.parametrize("status", [401, 404])
def test_closed_endpoint_is_a_clear_source_error(status):
    routes = {"/products.json?limit=250&page=1": (status, {}, b"closed")}
    with serve(routes) as (base, _):
        with pytest.raises(SourceError, match=f"HTTP {status}.*closed.*CSV export"):
            read("shopify", base, http_options=HTTP_LOCAL, currency="EUR")


def test_html_instead_of_json_is_a_source_error():
    routes = {"/products.json?limit=250&page=1": (200, {"Content-Type": "text/html"},
                                                   b"<html>password page</html>")}
    with serve(routes) as (base, _):
        with pytest.raises(SourceError, match="HTML page"):
            read("shopify", base, http_options=HTTP_LOCAL, currency="EUR")


def test_later_page_failure_makes_the_source_partial():
    routes = _store(**{"/products.json?limit=250&page=2": (500, {}, b"oops")})
    with serve(routes) as (base, _):
        listings, ctx = read("shopify", base, http_options=HTTP_LOCAL, currency="EUR")
    assert [li.key for li in listings] == ["11", "12", "21"]
    assert ctx.result.status.value == "partial" and "page=2" in ctx.result.message


def test_token_header_from_env_is_sent_and_never_shown(monkeypatch, caplog):
    secret = "shpat-very-secret-123"
    monkeypatch.setenv("SHOP_TOKEN", secret)
    routes = {"/products.json?limit=250&page=1": (403, {}, b"no")}
    with serve(routes) as (base, seen), caplog.at_level(logging.DEBUG):
        with pytest.raises(SourceError) as e:
            read("shopify", base, http_options=HTTP_LOCAL, currency="EUR",
                 headers={"X-Shopify-Storefront-Access-Token": {"env": "SHOP_TOKEN"}})
    assert seen[0]["x-shopify-storefront-access-token"] == secret
    assert secret not in str(e.value) and secret not in caplog.text


def test_csv_export_legacy_headers_and_continuation_rows():
    listings, ctx = read("shopify", str(SHOP / "export_legacy.csv"), currency="EUR",
                         store_url="https://shop.example/")
    got = by_key(listings)
    assert list(got) == ["TS-RED-M", "TS-BLU-M", "acme-mug:default", "CAP-1"]
    cap = got["CAP-1"]  # its price cell reads "abc": a listing without a price
    assert cap.price is None and cap.quantity == 2 and set(cap.unread) == {"price"}
    assert ":8: " in cap.unread["price"] and "Variant Price" in cap.unread["price"]
    assert ctx.result.presence_held is None
    assert {"price", "sale_price", "quantity", "availability", "gtin", "images"} <= ctx.carried
    red = got["TS-RED-M"]
    assert red.title == "Acme Tee" and red.description == "Soft tee" and red.brand == "Acme"
    assert red.price == Money.of("20.00", "EUR") and red.sale_price == Money.of("15.00", "EUR")
    assert red.gtin == "00036282818705" and red.quantity == 5
    assert red.availability is Availability.IN_STOCK
    assert red.images == ("https://cdn.example/tee.jpg", "https://cdn.example/tee-2.jpg",
                          "https://cdn.example/tee-3.jpg")
    assert red.url == "https://shop.example/products/acme-tee" and red.group_id == "acme-tee"
    blue = got["TS-BLU-M"]
    assert blue.title == "Acme Tee" and blue.attributes["color"] == "Blue"
    assert blue.availability is Availability.BACKORDER  # 0 in stock, policy "continue"
    assert blue.images[0] == "https://cdn.example/tee-blue.jpg"
    mug = got["acme-mug:default"]
    assert mug.price == Money.of("1000.00", "EUR")
    assert mug.availability is Availability.OUT_OF_STOCK and mug.attributes["status"] == "draft"
    assert ctx.errors == []


def test_csv_export_current_headers():
    listings, ctx = read("shopify", str(SHOP / "export_current.csv"), currency="EUR")
    got = by_key(listings)
    assert got["TS-RED-M"].sale_price == Money.of("15.00", "EUR")
    assert got["TS-BLU-M"].gtin == "00036282818712"
    assert got["TS-BLU-M"].availability is Availability.BACKORDER
    assert got["TS-BLU-M"].title == "Acme Tee" and ctx.result.errors == 0


def test_csv_export_needs_currency():
    with pytest.raises(SourceError, match="currency"):
        read("shopify", str(SHOP / "export_current.csv"))


def test_fixture_pages_overlap():
    # The fixture itself must repeat a product across pages for the dedup test to mean anything.
    p1 = {p["id"] for p in json.loads((SHOP / "products_page1.json").read_text())["products"]}
    p2 = {p["id"] for p in json.loads((SHOP / "products_page2.json").read_text())["products"]}
    assert p1 & p2


def test_odd_product_json_is_a_bad_record_not_a_crash():
    body = json.dumps({"products": [{"id": 1, "handle": "x", "options": 5, "variants": [{"id": 9}]},
                                    {"id": 2, "handle": "y", "variants": [{"id": 10,
                                                                           "price": "1.00"}]}]})
    routes = {"/products.json?limit=250&page=1": (200, {}, body.encode()),
              "/products.json?limit=250&page=2": (200, {}, b'{"products": []}')}
    with serve(routes) as (base, _):
        listings, ctx = read("shopify", base, http_options=HTTP_LOCAL, currency="EUR")
    assert [li.key for li in listings] == ["10"]
    (loc, reason), = ctx.errors
    assert loc.endswith("#1") and "unexpected product JSON" in reason


def test_variant_with_a_bad_price_is_a_listing_without_its_price():
    from auditor.connectors.shopify import product_listings

    product = {"id": 7, "handle": "tee", "title": "Tee", "options": [{"name": "Size"}],
               "variants": [{"id": 71, "sku": "T-S", "price": "cheap", "option1": "S"},
                            {"id": 72, "sku": "T-M", "price": "10.00", "option1": "M"}]}
    a, b = product_listings(product, "shop", NOW, "EUR", "https://shop.example",
                            location="https://shop.example/products.json?page=1#7")
    assert a.key == "71" and a.price is None and set(a.unread) == {"price"}
    assert a.unread["price"].startswith("https://shop.example/products.json?page=1#7: ")
    assert b.price == Money.of("10.00", "EUR") and not b.unread
