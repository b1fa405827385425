"""The candidate-scoring reader on pages without structured data (auditor/pagereader.py),
confidence per field and what an uncertain read does to findings."""

from __future__ import annotations

import time
from datetime import datetime, timezone
from decimal import Decimal

import pytest

from auditor.check import CheckContext
from auditor.confidence import prefer_master, uncertain
from auditor.extract import LOW_CONFIDENCE, extract
from auditor.model import Availability, Listing, MasterRecord, Money, Outcome
from auditor.pagereader import parse_amount

URL = "https://shop.example.test/p/1"
NOW = datetime(2026, 11, 1, tzinfo=timezone.utc)


def shop_page(buy_box: str, *, title: str = "Merino Crew Sweater", head: str = "",
              extra: str = "", nav_price: str = "from 9,99 EUR") -> str:
    """A theme page: mega menu with prices, a cookie banner, the product, recommendations."""
    menu = "".join(f'<li><a href="/c/{i}">Category {i} <span class="price">{nav_price}</span>'
                   f'</a></li>' for i in range(12))
    recs = "".join(f'<div class="product-tile"><img src="/r/{i}.jpg" alt="Other {i}">'
                   f'<span class="price">€ {10 + i},00</span><button>Add to cart</button></div>'
                   for i in range(6))
    return (f"<!doctype html><html><head><title>{title} | Shop</title>{head}</head><body>"
            f'<div id="cookie-banner"><p>We use cookies. 1,99 € off with the newsletter</p>'
            f'<button>Accept all cookies</button></div>'
            f'<header class="site-header"><nav><ul>{menu}</ul></nav>'
            f'<div class="mini-cart">Cart: <span class="price">€ 0,00</span></div></header>'
            f'<main><div class="product-detail"><div class="gallery">'
            f'<img class="logo" src="/logo.png" alt="Shop">'
            f'<img class="main" src="/img/sweater-main.jpg" alt="{title}" width="800">'
            f'<img src="/img/sweater-2.jpg" alt="{title} back" width="800"></div>'
            f'<div class="info"><h1>{title}</h1>{buy_box}</div></div>'
            f'<section class="recommendations"><h2>Customers also bought</h2>{recs}</section>'
            f"{extra}</main><footer><p>Gift cards from 5 €</p></footer></body></html>")


def read(html: str, url: str = URL):
    return extract(html.encode(), url)


def test_nav_prices_and_plain_image_class_do_not_fool_the_reader():
    ex = read(shop_page('<div class="buy-box"><span class="product-price">79,95 €</span>'
                        '<p>Auf Lager</p><button class="add-to-cart">In den Warenkorb</button>'
                        '</div>'))
    assert ex.price == Decimal("79.95") and ex.currency == "EUR"
    assert ex.sources["price"] == "heuristic" and ex.confidence["price"] >= 0.8
    assert ex.images[0] == "https://shop.example.test/img/sweater-main.jpg"
    assert ex.availability is Availability.IN_STOCK
    assert ex.title == "Merino Crew Sweater"
    assert ex.hints["price"]  # a selector the user can pin


@pytest.mark.parametrize("box,price,sale", [
    # was/now with <del>
    ('<del class="price">€ 99,00</del> <span class="price">€ 79,00</span>', "99.00", "79.00"),
    # struck through by style and "statt"
    ('<span style="text-decoration:line-through">129.00 EUR</span>'
     '<span class="price">99.00 EUR</span>', "129.00", "99.00"),
    # a recommended retail price (UVP, RRP) is the manufacturer's, not the shop's regular
    # price: the selling price is the price, and no sale is read (tests/test_messy_inputs.py)
    ('<span class="uvp">UVP 59,99 €</span><span class="price">49,99 €</span>', "49.99", None),
    ('<del class="rrp">RRP £59.99</del> <span class="price">£49.99</span>', "49.99", None),
    ('<span class="price">49,99 €</span> <s>statt 59,99 €</s>', "59.99", "49.99"),
    # cents in <sup>
    ('<span class="price">€ 19<sup>99</sup></span>', "19.99", None),
    # unit price and instalments beside the real price
    ('<span class="price">4,99 €</span><span class="base-price">(9,98 € / kg)</span>'
     '<p class="financing">oder 0,42 € / Monat</p>', "4.99", None),
    ('<span class="price">$1,299.00</span><p>or 4 interest-free payments of $324.75 '
     'with Klarna</p>', "1299.00", None),
    # thousands separators
    ("<span class='price'>CHF 1'299.50</span>", "1299.50", None),
    ('<span class="price">1 299,95 €</span>', "1299.95", None),
    ('<span class="price">1.299,- €</span>', "1299", None),
])
def test_price_forms(box, price, sale):
    ex = read(shop_page(f'<div class="buy-box">{box}<button>Add to cart</button></div>'))
    assert ex.price == Decimal(price), ex.summary()
    assert (ex.sale_price == Decimal(sale)) if sale else ex.sale_price is None


def test_several_currencies_on_one_page_take_the_buy_box_currency():
    ex = read(shop_page('<div class="buy-box"><span class="price">£45.00</span>'
                        '<button>Add to basket</button></div>',
                        extra='<div class="currency-switch">€ 52,00 · $ 57.00</div>'))
    assert (ex.price, ex.currency) == (Decimal("45.00"), "GBP")


@pytest.mark.parametrize("phrase,want", [
    ("Sold out", "out_of_stock"), ("Ausverkauft", "out_of_stock"), ("Épuisé", "out_of_stock"),
    ("Agotado", "out_of_stock"), ("Esaurito", "out_of_stock"),
    ("Niet op voorraad", "out_of_stock"), ("Slut i lager", "out_of_stock"),
    ("Brak w magazynie", "out_of_stock"), ("Esgotado", "out_of_stock"),
    ("Udsolgt", "out_of_stock"), ("Vyprodáno", "out_of_stock"), ("Stokta yok", "out_of_stock"),
    ("Loppu varastosta", "out_of_stock"), ("Nincs raktáron", "out_of_stock"),
    ("Нет в наличии", "out_of_stock"), ("在庫切れ", "out_of_stock"),
    ("In stock", "in_stock"), ("Auf Lager", "in_stock"), ("En stock", "in_stock"),
    ("Op voorraad", "in_stock"), ("Disponibile", "in_stock"), ("I lager", "in_stock"),
    ("Dostępny", "in_stock"), ("Skladem", "in_stock"), ("Only 3 left", "in_stock"),
    ("Pre-order now", "preorder"), ("Vorbestellen", "preorder"),
    ("Available on backorder", "backorder"),
])
def test_availability_phrases_in_many_languages(phrase, want):
    ex = read(shop_page(f'<div class="buy-box"><span class="price">10,00 €</span>'
                        f'<p class="stock">{phrase}</p></div>'))
    assert ex.availability is not None and ex.availability.value == want, phrase


def test_disabled_add_to_cart_button_means_out_of_stock():
    ex = read(shop_page('<div class="buy-box"><span class="price">10,00 €</span>'
                        '<button class="add-to-cart" disabled>Add to cart</button></div>'))
    assert ex.availability is Availability.OUT_OF_STOCK


def test_out_of_stock_in_recommendations_does_not_count():
    ex = read(shop_page('<div class="buy-box"><span class="price">10,00 €</span>'
                        '<button class="add-to-cart">Add to cart</button></div>',
                        extra='<aside><p>Sold out</p></aside>'))
    assert ex.availability is Availability.IN_STOCK


@pytest.mark.parametrize("label", ["SKU:", "Art.-Nr.:", "Artikelnummer", "Item #", "Ref.",
                                   "Référence", "Referencia", "Codice articolo", "Varenummer",
                                   "Nr katalogowy", "Bestellnummer", "Product code"])
def test_sku_labels_in_many_languages(label):
    ex = read(shop_page('<div class="buy-box"><span class="price">10,00 €</span>'
                        f'<table><tr><th>{label}</th><td>AB-12345</td></tr></table></div>'))
    assert ex.sku == "AB-12345", label


def test_model_label_is_a_less_sure_sku_and_words_are_no_sku():
    ex = read(shop_page('<div class="buy-box"><span class="price">10,00 €</span>'
                        '<p>Model: XR-500</p><p>Type: Underwear</p></div>'))
    assert ex.sku == "XR-500" and ex.confidence["sku"] < LOW_CONFIDENCE


def test_next_data_state_and_shopify_product_json():
    nxt = ('<script id="__NEXT_DATA__" type="application/json">{"props":{"pageProps":'
           '{"product":{"name":"Merino Crew Sweater","sku":"MCS-1","price":{"value":89.5},'
           '"currency":"EUR","inStock":false,"images":["/i/mcs.jpg"]},'
           '"related":[{"name":"Other","sku":"X","price":5}]}}}</script>')
    ex = read(shop_page("<p>Loading…</p>", extra=nxt))
    assert (ex.price, ex.currency, ex.sku, ex.availability) == (
        Decimal("89.5"), "EUR", "MCS-1", Availability.OUT_OF_STOCK)
    assert ex.sources["price"] == "js-state"
    shopify = ('<script type="application/json" id="ProductJson-main">{"id":1,"title":'
               '"Merino Crew Sweater","handle":"merino","variants":[{"sku":"MCS-M","price":'
               '4990,"available":true}],"images":["//cdn.shop/mcs.jpg"]}</script>')
    ex = read(shop_page("<p>…</p>", extra=shopify))
    assert (ex.price, ex.sku, ex.availability) == (Decimal("49.90"), "MCS-M",
                                                   Availability.IN_STOCK)


def test_window_initial_state_assignment():
    js = ('<script>window.__INITIAL_STATE__ = {"pdp":{"product":{"title":"Merino Crew '
          'Sweater","id":7,"sku":"MCS-9","price":"119,00","available":true}}};</script>')
    ex = read(shop_page("<p>…</p>", extra=js))
    assert ex.sku == "MCS-9" and ex.price == Decimal("119.00")


def test_category_listing_is_not_a_product():
    tiles = "".join(f'<li class="tile"><a href="/p/{i}"><h3>Item {i}</h3></a>'
                    f'<span class="price">{10 + i},99 €</span>'
                    f'<button class="add-to-cart">In den Warenkorb</button></li>' for i in range(20))
    html = f"<html><head><title>Sweaters</title></head><body><h1>Sweaters</h1><ul>{tiles}</ul></body></html>"
    ex = read(html)
    assert not ex.is_product and "listing" in ex.reason


@pytest.mark.parametrize("html,attr,word", [
    ("<html><head><title>Page not found</title></head><body><h1>Oops! Page not found</h1>"
     "<p>Try our bestsellers: <span class='price'>9,99 €</span></p></body></html>",
     "reason", "404"),
    ("<html><head><title>Shop</title></head><body><div class='consent'><p>We value your privacy"
     "</p><button>Accept all cookies</button></div></body></html>", "blocked", "consent"),
])
def test_soft_404_and_consent_walls(html, attr, word):
    ex = read(html)
    assert not ex.is_product and word in getattr(ex, attr)


def test_consent_wall_is_blocked_in_the_crawl_never_missing():
    from auditor.crawl import BLOCKED, Crawl, CrawlSettings
    from auditor.http import FetchPolicy
    import asyncio
    import httpx

    body = ("<html><body><div id='onetrust-banner'><p>We value your privacy</p>"
            "<button>Accept all cookies</button></div></body></html>").encode()

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=body, headers={"content-type": "text/html"})

    crawl = Crawl(CrawlSettings(origin="http://127.0.0.1", user_agent="t/1"),
                  FetchPolicy(allow_hosts={"127.0.0.1"}, allow_private=True), {},
                  transport=httpx.MockTransport(handler))

    async def go():
        from auditor.http import Fetcher

        async with Fetcher(crawl.policy, transport=crawl.transport) as f:
            return await crawl.page(f, "http://127.0.0.1/p/1")

    res = asyncio.run(go())
    assert res.kind == BLOCKED and "consent" in res.reason, res


def test_deep_and_huge_pages_take_bounded_time():
    deep = "<html><body>" + "<div>" * 20000 + '<span class="price">€ 15,00</span>' + \
        "</div>" * 20000 + "</body></html>"
    t = time.perf_counter()
    ex = read(deep)
    assert time.perf_counter() - t < 10
    assert ex.price == Decimal("15.00")
    big = shop_page('<div class="buy-box"><span class="price">12,00 €</span></div>',
                    extra="<p>filler text</p>" * 300_000)  # ~5 MB
    t = time.perf_counter()
    ex = read(big)
    assert time.perf_counter() - t < 20
    assert ex.price == Decimal("12.00")


def test_broken_html_and_legacy_encoding():
    html = ('<html><head><meta charset="windows-1252"><title>Caf\xe9</title></head><body>'
            '<h1>Caf\xe9 Cr\xe8me<div class="price">12,50 €<p>Auf Lager<table><td>SKU: CC-77'
            ).encode("cp1252")
    ex = extract(html, URL)
    assert ex.title.startswith("Café Crème") and ex.price == Decimal("12.50")
    assert ex.currency == "EUR" and ex.sku == "CC-77"


@pytest.mark.parametrize("s,want", [("1.299,00", "1299.00"), ("1,299.00", "1299.00"),
                                    ("1 299,95", "1299.95"), ("1'299.50", "1299.50"),
                                    ("12,-", "12"), ("0,99", "0.99"), ("1.299", "1299"),
                                    ("12.990", "12990"), ("7", "7")])
def test_parse_amount(s, want):
    assert parse_amount(s) == Decimal(want)


# ---------------------------------------------------------------------------- findings

def _listing(**kw) -> Listing:
    base = dict(channel="shop", key=URL, fetched_at=NOW, sku="MCS-1",
                price=Money(Decimal("9.99"), "EUR"))
    base.update(kw)
    return Listing(**base)


def _master(**kw) -> MasterRecord:
    base = dict(sku="MCS-1", title="Merino Crew Sweater", price=Money(Decimal("79.95"), "EUR"))
    base.update(kw)
    return MasterRecord(**base)


def _price_findings(listing: Listing, master: MasterRecord):
    from auditor import plugins

    spec = plugins.checks()["price"]
    ctx = CheckContext("price", "shop", {}, NOW)
    return [f for f in spec.fn(master, listing, ctx) if f.outcome is not Outcome.PASSED]


def test_low_confidence_price_never_fails_and_names_the_selector():
    li = _listing(sources={"price": "heuristic"}, confidence={"price": 0.45},
                  hints={"price": "div.buy-box span.price"})
    fs = _price_findings(li, _master())
    assert fs and all(f.outcome is Outcome.NOT_EVALUATED for f in fs)
    assert "low confidence" in fs[0].message and "div.buy-box span.price" in fs[0].message
    sure = _listing(sources={"price": "heuristic"}, confidence={"price": 0.9})
    assert [f.outcome for f in _price_findings(sure, _master())] == [Outcome.FAILED]
    assert uncertain(sure, "price", Outcome.FAILED) is None


def test_master_picks_only_among_its_buy_box_prices():
    li = _listing(price=Money(Decimal("99.00"), "EUR"), sources={"price": "heuristic"},
                  confidence={"price": 0.7}, alternatives={"price": ("79.95", "99.00")})
    got = prefer_master(li, _master(), NOW)
    assert got.price == Money(Decimal("79.95"), "EUR") and not _price_findings(got, _master())
    # the master's price is not in the buy box: the read stands and is reported
    wrong = _listing(price=Money(Decimal("99.00"), "EUR"), sources={"price": "heuristic"},
                     confidence={"price": 0.7}, alternatives={"price": ("89.00", "99.00")})
    assert prefer_master(wrong, _master(), NOW) is wrong
    # structured prices are never second-guessed
    ld = _listing(price=Money(Decimal("99.00"), "EUR"), sources={"price": "json-ld"},
                  confidence={"price": 0.95}, alternatives={"price": ("79.95", "99.00")})
    assert prefer_master(ld, _master(), NOW) is ld


def test_regular_and_sale_price_in_one_buy_box():
    m = _master(sale_price=Money(Decimal("59.95"), "EUR"))
    li = _listing(price=Money(Decimal("59.95"), "EUR"), sources={"price": "heuristic"},
                  confidence={"price": 0.55}, alternatives={"price": ("59.95", "79.95")})
    got = prefer_master(li, m, NOW)
    assert (got.price.amount, got.sale_price.amount) == (Decimal("79.95"), Decimal("59.95"))
