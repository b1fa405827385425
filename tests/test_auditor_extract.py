"""Extraction from saved real-world-like product pages (tests/fixtures/site/)."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given, settings, strategies as st

from auditor.cli import main
from auditor.extract import (Extraction, decode_html, extract, loads_lenient, prune_deep)
from auditor.model import Availability

FIX = Path(__file__).parent / "fixtures" / "site"
URL = "https://shop.acme.test/products/item"


def page(name: str) -> bytes:
    return (FIX / name).read_bytes()


@pytest.mark.parametrize("fixture,expect", [
    ("broken_jsonld.html", dict(title='Trail Runner 2 "Storm"', price="129.95", currency="EUR",
                                availability="in_stock", sku="TR2-STORM-42",
                                gtin="4006381333931", mpn="TR2-42", brand="Acme Outdoor",
                                src="json-ld")),
    ("microdata_only.html", dict(title="Canvas Tote", currency="EUR", availability="in_stock",
                                 sku="TOTE-01", gtin="4006381333931", brand="Acme Bags",
                                 src="microdata")),
    ("rdfa_only.html", dict(title="Desk Lamp Arc", price="89.50", currency="EUR",
                            availability="out_of_stock", sku="LAMP-ARC", brand="Lumo",
                            src="microdata")),  # RDFa Lite shares the microdata label
    ("opengraph_only.html", dict(title="Linen Shirt Sand", price="49.90", currency="USD",
                                 availability="out_of_stock", sku="LS-SAND-M", brand="Acme",
                                 src="opengraph")),
    ("no_structured_data.html", dict(title="Wool Socks (3 pack)", currency="USD",
                                     availability="in_stock", sku="SOCK-3PK", src="heuristic")),
    ("wrong_charset_cp1252.html", dict(title="Café Crème Tasse", price="12.00", currency="EUR",
                                       sku="CAFE-1", src="json-ld")),
    ("shift_jis.html", dict(title="抹茶ティーカップ", price="2980", currency="JPY",
                            sku="MATCHA-1", src="json-ld")),
    ("deep_nesting.html", dict(title="Deep", price="1.00", currency="EUR", sku="DEEP-1",
                               src="json-ld")),
    ("hostile.html", dict(price="15.00", currency="EUR", availability="in_stock", sku="HOST-1",
                          src="heuristic")),
])
def test_fixture_pages(fixture, expect):
    ex = extract(page(fixture), URL)
    got = ex.summary()
    src = expect.pop("src")
    for k, v in expect.items():
        assert got[k] == v, (fixture, k, got)
    assert got["sources"]["sku"] == src
    assert ex.is_product


@pytest.mark.parametrize("fixture,price,sale,price_src", [
    # crossed-out regular price next to the current one: price = regular, sale_price = current
    ("microdata_only.html", "39.00", "29.00", "heuristic"),
    ("no_structured_data.html", "24.00", "19.50", "heuristic"),
    ("sale_jsonld.html", "100.00", "80.00", "heuristic"),
])
def test_crossed_out_regular_price_makes_a_sale(fixture, price, sale, price_src):
    ex = extract(page(fixture), URL)
    assert (str(ex.price), str(ex.sale_price)) == (price, sale)
    assert ex.sources["price"] == price_src


def test_unrelated_strikethrough_elsewhere_is_not_a_sale():
    html = page("sale_jsonld.html").replace(b'<s class="price-was">\xc2\xa3100.00</s>', b"")
    ex = extract(html, URL)
    assert ex.price == Decimal("80.00") and ex.sale_price is None


@pytest.mark.parametrize("url,sku,want_sku,price,avail", [
    (URL + "?variant=4002", None, "MT-100-M-BLK", "64.00", Availability.OUT_OF_STOCK),
    (URL + "?variant=4003", None, "MT-100-L-BLK", "79.00", Availability.BACKORDER),
    (URL, "MT-100-S-BLK", "MT-100-S-BLK", "59.00", Availability.IN_STOCK),
    (URL, "12345600029", "MT-100-M-BLK", "64.00", Availability.OUT_OF_STOCK),  # GTIN
])
def test_variant_matching_sku_gtin_or_variant_param(url, sku, want_sku, price, avail):
    ex = extract(page("variants.html"), url, sku=sku)
    assert ex.sku == want_sku
    assert str(ex.price) == price
    assert ex.availability is avail
    assert ex.variants == []


def test_group_without_chosen_variant_lists_every_variant_and_no_first_price():
    ex = extract(page("variants.html"), URL)
    assert ex.price is None  # never simply the first variant's price
    assert [v.sku for v in ex.variants] == ["MT-100-S-BLK", "MT-100-M-BLK", "MT-100-L-BLK"]
    assert [str(v.price) for v in ex.variants] == ["59.00", "64.00", "79.00"]
    assert ex.variants[2].sale_price == Decimal("64.00")
    first = ex.variants[0]
    assert first.attributes == {"size": "S", "color": "Black", "material": "Merino wool"}
    assert first.brand == "Acme" and first.group_id == "MT-100"
    assert first.images == ["https://cdn.acme.test/merino-tee.jpg"]


@pytest.mark.parametrize("sku,price,avail", [
    (None, "19.00", "in_stock"),
    ("CUPS-4", "34.00", "out_of_stock"),
    ("CUPS-6", "45.00", "preorder"),
    ("SAUCER-1", "5.00", None),
])
def test_several_offers_pick_the_matching_one(sku, price, avail):
    got = extract(page("several_offers.html"), "https://home.acme.test/p/cups", sku=sku).summary()
    assert got["price"] == price and got["availability"] == avail


def test_captcha_page_is_not_a_product():
    ex = extract(page("captcha.html"), URL)
    assert not ex.is_product and ex.price is None


def test_selectors_fill_fields_structured_data_lacks():
    html = b"""<html><body><h1 class="t">Mug</h1><div class="p" data-sku="MUG-9">12,50 EUR</div>
    <img class="main" data-src="/m.jpg"></body></html>"""
    ex = extract(html, URL, selectors={"price": ".p", "sku": ".p@data-sku",
                                       "images": "img.main@data-src", "title": "h1.t"})
    assert (ex.price, ex.currency, ex.sku, ex.title) == (Decimal("12.50"), "EUR", "MUG-9", "Mug")
    assert ex.images == ["https://shop.acme.test/m.jpg"]
    assert {ex.sources[k] for k in ("price", "sku", "images", "title")} == {"selector"}


def test_json_ld_outranks_microdata_and_opengraph():
    html = (b'<html><head><meta property="og:type" content="product">'
            b'<meta property="og:price:amount" content="99.00">'
            b'<script type="application/ld+json">{"@type":"Product","name":"A","sku":"A1",'
            b'"offers":{"price":"10.00"}}</script></head><body>'
            b'<div itemscope itemtype="https://schema.org/Product"><span itemprop="price" '
            b'content="50.00"></span><meta itemprop="priceCurrency" content="CHF"></div></body></html>')
    ex = extract(html, URL)
    assert ex.price == Decimal("10.00") and ex.sources["price"] == "json-ld"
    assert ex.currency == "CHF" and ex.sources["currency"] == "microdata"


@pytest.mark.parametrize("text,expect", [
    ('{"a": 1,}', {"a": 1}),
    ('{"a": [1, 2,],}', {"a": [1, 2]}),
    ('{"name": "Tom &amp; Jerry", "x": &quot;y&quot;}', {"name": "Tom & Jerry", "x": "y"}),
    ('{"a": "line\nbreak\ttab"}', {"a": "line\nbreak\ttab"}),
    ('<!-- {"a": 2} -->', {"a": 2}),
    ('{"a": 1}{"b": 2}', [{"a": 1}, {"b": 2}]),
    ('{"p": 1.10}', {"p": Decimal("1.10")}),
])
def test_lenient_json(text, expect):
    assert loads_lenient(text) == expect


@pytest.mark.parametrize("bad", ['{"a": ', "not json", "[" * 5000])
def test_lenient_json_refuses_garbage_with_valueerror(bad):
    with pytest.raises(ValueError):
        loads_lenient(bad if bad != "[" * 5000 else bad + "x")


def test_prune_deep_keeps_shallow_values():
    deep = '{"keep": 1, "deep": ' + "[" * 500 + "]" * 500 + ', "s": "[[["}'
    assert json.loads(prune_deep(deep, limit=10)) == {"keep": 1, "deep": [[[[[[[[[None]]]]]]]]],
                                                       "s": "[[["}


@pytest.mark.parametrize("data,ctype,expect", [
    ("Café".encode("utf-8"), "text/html; charset=iso-8859-1", "Café"),  # valid UTF-8 wins
    ("Café".encode("cp1252"), "text/html; charset=utf-8", "Café"),     # declared wrong
    ("抹茶".encode("shift_jis"), "text/html; charset=Shift_JIS", "抹茶"),
    (b"\xef\xbb\xbfhello", None, "hello"),
    ("Crème Café".encode("utf-8")[:-1], None, "Crème Caf"),  # a cut last character
])
def test_decode_html(data, ctype, expect):
    assert decode_html(data, ctype)[0] == expect


def test_extraction_round_trips_through_dict():
    ex = extract(page("variants.html"), URL)
    back = Extraction.from_dict(json.loads(json.dumps(ex.to_dict())))
    assert back == ex


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=3000) | st.text(max_size=3000).map(str.encode))
def test_extract_never_crashes_on_arbitrary_bytes(data):
    ex = extract(b"<html><script type='application/ld+json'>" + data + b"</script>" + data, URL)
    assert isinstance(ex, Extraction)


def test_huge_hostile_page_is_read_without_error():
    junk = b"<div>" * 200_000 + b'<script type="application/ld+json">' + b"{" * 100_000
    ex = extract(junk, URL)
    assert not ex.is_product and ex.sources == {}


@pytest.mark.parametrize("args,code,checks", [
    (["variants.html", "--sku", "MT-100-M-BLK"], 0,
     {"price": "64.00", "availability": "out_of_stock", "sku": "MT-100-M-BLK"}),
    (["opengraph_only.html"], 0, {"price": "49.90", "currency": "USD"}),
    (["captcha.html"], 1, {"price": None, "sku": None}),
])
def test_extract_command_json(args, code, checks):
    r = CliRunner().invoke(main, ["extract", str(FIX / args[0]), "--url", URL, "--json",
                                  *args[1:]])
    assert r.exit_code == code, r.output
    data = json.loads(r.output)
    assert list(data) == ["title", "price", "currency", "availability", "sku", "gtin", "mpn",
                          "brand", "images", "sources", "confidence", "hints", "reason"]
    for k, v in checks.items():
        assert data[k] == v


def test_extract_command_table_escapes_markup():
    html = (b'<script type="application/ld+json">{"@type":"Product","name":"[bold]x[/bold]",'
            b'"offers":{"price":"1","priceCurrency":"EUR"}}</script>')
    with CliRunner().isolated_filesystem():
        Path("p.html").write_bytes(html)
        r = CliRunner().invoke(main, ["extract", "p.html", "--url", URL])
    assert r.exit_code == 0, r.output
    assert "[bold]x[/bold]" in r.output and "json-ld" in r.output


def test_extract_command_fetches_a_url_through_the_guard():
    from tests._site_server import ShopServer, product_page

    srv = ShopServer().start()
    try:
        srv.page("/p/1", product_page("Mug", "MUG-1", "7.50", "GBP"))
        r = CliRunner().invoke(main, ["extract", srv.base + "/p/1", "--json"])
        assert r.exit_code == 2 and "private" in r.output  # loopback refused by default
        assert "/p/1" not in srv.hits
        r = CliRunner().invoke(main, ["extract", srv.base + "/p/1", "--json", "--allow-private"])
        assert r.exit_code == 0, r.output
        data = json.loads(r.output)
        assert (data["sku"], data["price"], data["currency"]) == ("MUG-1", "7.50", "GBP")
        assert data["images"] == [srv.base + "/img/MUG-1.jpg"]
    finally:
        srv.stop()


def test_heuristic_reads_product_images_but_not_decoration():
    html = """<html><body><header><img src="/logo.png" alt="Shop"></header>
    <h1>Trail Shoe, Red</h1><span class="price">59,90 €</span>
    <img class="product-image" src="/img/shoe-1.jpg" alt="Trail Shoe, Red">
    <img src="/img/shoe-2.jpg" alt="Trail Shoe, Red">
    <img class="banner" src="/img/sale.jpg" alt="Sale">
    <img class="product-thumb" src="data:image/png;base64,AAAA"></body></html>"""
    ex = extract(html, "https://shop.example/p/shoe")
    assert ex.images == ["https://shop.example/img/shoe-1.jpg", "https://shop.example/img/shoe-2.jpg"]
    assert ex.sources["images"] == "heuristic"


def test_structured_page_without_image_records_that_the_page_was_looked_at():
    html = """<html><head><meta property="og:type" content="product">
    <meta property="og:title" content="Desk Organiser"><meta property="product:price:amount" content="19.00">
    <meta property="product:price:currency" content="EUR"></head>
    <body><img src="/logo.png" alt="Shop"><h1>Desk Organiser</h1></body></html>"""
    ex = extract(html, "https://shop.example/p/organiser")
    assert ex.price == Decimal("19.00") and ex.images == []
    assert ex.sources["images"] == "heuristic"  # looked at the page: no product image shown


def test_jsonld_page_without_any_image_is_looked_at_for_variants_too():
    html = """<html><head><script type="application/ld+json">
    {"@context": "https://schema.org", "@type": "ProductGroup", "name": "Chinos",
     "hasVariant": [
       {"@type": "Product", "sku": "CH-BLU-M", "name": "Chinos Blue M",
        "offers": {"@type": "Offer", "price": "49.00", "priceCurrency": "EUR",
                   "availability": "https://schema.org/InStock"}},
       {"@type": "Product", "sku": "CH-RED-M", "name": "Chinos Red M",
        "offers": {"@type": "Offer", "price": "49.00", "priceCurrency": "EUR",
                   "availability": "https://schema.org/InStock"}}]}
    </script></head><body><img src="/logo.png" alt="Shop"><h1>Chinos</h1></body></html>"""
    ex = extract(html, "https://shop.example/p/chinos")
    assert len(ex.variants) == 2
    assert all(v.images == [] and v.sources["images"] == "heuristic" for v in ex.variants)


def test_variant_without_image_among_variants_with_images_shows_none():
    html = """<script type="application/ld+json">
    {"@type": "ProductGroup", "name": "Polo", "hasVariant": [
      {"@type": "Product", "sku": "P-RED", "image": "/i/red.jpg",
       "offers": {"price": "30.00", "priceCurrency": "EUR"}},
      {"@type": "Product", "sku": "P-NAV",
       "offers": {"price": "30.00", "priceCurrency": "EUR"}}]}</script>"""
    ex = extract(html, "https://shop.example/p/polo")
    by_sku = {v.sku: v for v in ex.variants}
    assert by_sku["P-RED"].images == ["https://shop.example/i/red.jpg"]
    assert by_sku["P-NAV"].images == [] and by_sku["P-NAV"].sources["images"] == "json-ld"
