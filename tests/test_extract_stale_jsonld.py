"""JSON-LD saying "in stock" on a page whose buy box says "out of stock": the buy box wins,
without building a tree for pages that show no out-of-stock phrase at all."""

from __future__ import annotations

import json

import pytest

from auditor import extract as ex
from auditor import pagereader
from auditor.model import Availability


def _page(buy_box: str, after: str = "", script: str = "", availability: str = "InStock") -> str:
    ld = {"@context": "https://schema.org", "@type": "Product", "name": "Trail Runner 2",
          "sku": "TR-2", "image": "https://shop.example/img/tr2.jpg",
          "offers": {"@type": "Offer", "price": "89.90", "priceCurrency": "EUR",
                     "availability": f"https://schema.org/{availability}"}}
    return f"""<!doctype html><html lang="en"><head><title>Trail Runner 2</title>
<script type="application/ld+json">{json.dumps(ld)}</script>
<script>{script}</script></head><body>
<nav><a href="/">Home</a> <a href="/shoes">Shoes</a></nav>
<main><div class="product">
<img src="https://shop.example/img/tr2.jpg" alt="Trail Runner 2">
<h1>Trail Runner 2</h1><div class="price">89,90 €</div>
{buy_box}
</div>{after}</main><footer>Imprint</footer></body></html>"""


@pytest.mark.parametrize("shown", [
    '<p class="stock">Out of stock</p><button disabled>Add to cart</button>',
    '<p class="availability">Ausverkauft</p><button class="add-to-cart" disabled>In den Warenkorb</button>',
    '<div class="stock-status">Currently unavailable</div><button disabled>Add to cart</button>',
])
def test_a_visible_out_of_stock_overrules_stale_json_ld(shown):
    e = ex.extract(_page(shown), "https://shop.example/p/tr2")
    assert e.price == ex.Decimal("89.90") and e.sku == "TR-2"
    assert e.availability is Availability.OUT_OF_STOCK
    assert e.sources["availability"] == ex.HEURISTIC


def test_in_stock_page_with_sold_out_elsewhere_stays_in_stock():
    after = ('<section class="related"><h2>You may also like</h2><div class="card">'
             '<a href="/p/x">Road Runner</a><span class="badge">Sold out</span>'
             '<span>59,90 €</span></div></section>')
    e = ex.extract(_page('<p class="stock">In stock</p><button>Add to cart</button>', after,
                         script='var t = {"soldOut": "Sold out"};'),
                   "https://shop.example/p/tr2")
    assert e.availability is Availability.IN_STOCK
    assert e.sources["availability"] == ex.JSON_LD


def test_no_out_of_stock_phrase_builds_no_tree(monkeypatch):
    def boom(*a, **k):
        raise AssertionError("the page was parsed")

    monkeypatch.setattr(ex, "_lxml_doc", boom)
    e = ex.extract(_page('<p class="stock">In stock</p><button>Add to cart</button>',
                         script='var labels = {"oos": "out of stock"};'),
                   "https://shop.example/p/tr2")
    assert e.availability is Availability.IN_STOCK


def test_says_out_of_stock_reads_the_text_after_the_name_only():
    says = pagereader.says_out_of_stock
    body = "<html><head><title>Trail Runner 2</title></head><body><h1>Trail Runner 2</h1>"
    assert says(body + "<p>Sorry, this item is sold out.</p></body></html>", "Trail Runner 2")
    assert says(body + "<p>Nicht <b>lieferbar</b></p>", "Trail Runner 2")
    # in a script, in an attribute, before the name, far after it, or no name on the page
    assert not says(body + '<script>var s = "out of stock";</script><p>In stock</p>', "Trail Runner 2")
    assert not says(body + '<img alt="out of stock" src="x.png"><p>Buy now</p>', "Trail Runner 2")
    assert not says('<body><p>Sold out: Road Runner</p><h1>Trail Runner 2</h1><p>In stock</p>',
                    "Trail Runner 2")
    assert not says(body + "<p>" + "In stock, ships today. " * 400 + "</p><p>Sold out</p>",
                    "Trail Runner 2")
    assert not says("<body><h1>Other</h1><p>Sold out</p></body>", "Trail Runner 2")
    assert not says(body + "<p>Sold out</p>", None)
    # the name as the page writes it: HTML-escaped
    assert says("<body><h1>Salt &amp; Pepper Mill</h1><p>Out of stock</p>", "Salt & Pepper Mill")


def test_json_ld_out_of_stock_is_kept():
    e = ex.extract(_page('<p class="stock">Out of stock</p>', availability="OutOfStock"),
                   "https://shop.example/p/tr2")
    assert e.availability is Availability.OUT_OF_STOCK
    assert e.sources["availability"] == ex.JSON_LD


# one phrase per alternative of the reader's out-of-stock pattern
OUT_OF_STOCK_PHRASES = [
    "out of stock", "sold out", "currently unavailable", "no longer available", "not available",
    "unavailable", "temporarily out", "ausverkauft", "nicht auf lager", "nicht lieferbar",
    "nicht verfügbar", "nicht vorrätig", "nicht mehr verfügbar", "derzeit nicht", "vergriffen",
    "épuisé", "epuise", "en rupture", "rupture de stock", "indisponible", "plus disponible",
    "agotado", "sin stock", "no disponible", "fuera de stock", "esaurito", "non disponibile",
    "niet op voorraad", "uitverkocht", "niet leverbaar", "slut i lager", "slutsåld", "ej i lager",
    "ikke på lager", "udsolgt", "utsolgt", "brak w magazynie", "niedostępny", "wyprzedany",
    "esgotado", "indisponível", "sem estoque", "vyprodáno", "není skladem", "nincs raktáron",
    "elfogyott", "loppu varastosta", "tükendi", "stokta yok", "нет в наличии", "распродано",
    "在庫切れ", "売り切れ", "缺货", "품절", "we don't currently have that one in stock",
    "not in stock", "no stock", "nie je na sklade", "nie je skladom", "vypredané", "nedostupný",
    "brak na stanie", "brak towaru", "produkt niedostępny", "nincs készleten", "nem elérhető",
    "отсутствует", "нет на складе", "Наличие: нет", "немає в наявності", "відсутній", "Stock: 0",
    "0 in stock", "0 auf Lager", "0 available"]


@pytest.mark.parametrize("phrase", OUT_OF_STOCK_PHRASES)
def test_every_out_of_stock_phrase_is_seen_after_the_name(phrase):
    page = ("<body><h1>Trail Runner 2</h1><p>" + "Lightweight trail shoe. " * 30 +
            f"</p><p class='stock'>{phrase.upper() if phrase.isascii() else phrase}</p></body>")
    assert pagereader.says_out_of_stock(page, "Trail Runner 2"), phrase
