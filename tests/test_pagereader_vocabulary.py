"""The reader's vocabulary beyond English and German, and the scores that keep wrong amounts,
stale markup and placeholder images out (auditor/pagereader.py, auditor/extract.py).

Every page here is small and synthetic: one behaviour each, in the languages it names.
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from auditor.extract import extract
from auditor.model import Availability
from auditor.pagereader import page_currency

URL = "https://shop.example.test/p/1"


def page(body: str, *, title: str = "Trail Runner 2", head: str = "", lang: str = "en",
         url: str = URL):
    """A plain shop page (no product markup unless ``body`` brings it): a menu, the
    product's heading and ``body`` as its buy box, a footer."""
    html = (f'<!doctype html><html lang="{lang}"><head><title>{title} | Shop</title>{head}'
            f'</head><body><nav><ul><li><a href="/a">Shoes</a></li><li><a href="/b">Bags</a>'
            f'</li></ul></nav><main><div class="product"><h1>{title}</h1>{body}</div></main>'
            f'<footer><p>Contact</p></footer></body></html>')
    return extract(html.encode(), url)


def microdata(price: str, shown: str, extra: str = "", availability: str = "InStock",
              button: bool = True) -> str:
    """A microdata offer with a price and no priceCurrency, and what the page shows."""
    return (f'<div itemscope itemtype="http://schema.org/Product"><span itemprop="name">'
            f'Trail Runner 2</span><div itemprop="offers" itemscope '
            f'itemtype="http://schema.org/Offer"><link itemprop="availability" '
            f'href="http://schema.org/{availability}"><span itemprop="price" content="{price}">'
            f'{shown}</span></div>{extra}</div>' +
            ('<button class="add-to-cart">Add to cart</button>' if button else ""))


# ---------------------------------------------------------------------------- currency

@pytest.mark.parametrize("price,shown,currency", [
    ("87.50", "£87.50", "GBP"),
    ("2000", "2 000&nbsp;Ft", "HUF"),
    ("9900.00", "9 900,00 zł", "PLN"),
    ("870", "870руб", "RUB"),
    ("163290.00", "163 290.00 руб.", "RUB"),
    ("1290", "1 290 Kč", "CZK"),
    ("253.0", "253.0 грн", "UAH"),
    ("10.83", "€ 10,83*", "EUR"),
])
def test_currency_from_the_price_own_sign_when_markup_names_none(price, shown, currency):
    ex = page(microdata(price, shown))
    assert ex.price == Decimal(price)
    assert ex.currency == currency


def test_currency_from_the_sign_in_a_separate_element():
    ex = page(microdata("40", '<span class="sym">$</span><span>40.00</span>'))
    assert ex.currency == "USD"


def test_currency_from_the_pages_other_prices_then_meta_then_weak_hints():
    # the amount itself shows no sign, the shipping line does
    c, conf = page_currency("<p>Price: 49</p><p>Shipping 4,90 €</p>", Decimal("49"))
    assert c == "EUR" and conf >= 0.6
    # only a meta tag names it
    c, _ = page_currency('<meta property="og:price:currency" content="SEK"><p>499</p>',
                         Decimal("499"))
    assert c == "SEK"
    # "Alle Preise in Euro"
    c, _ = page_currency("<p>12,99</p><small>Alle Preise in Euro inkl. MwSt.</small>",
                         Decimal("12.99"))
    assert c == "EUR"
    # nothing on the page: the domain, then the page's language, with a low confidence
    c, conf = page_currency("<p>12,99</p>", Decimal("12.99"), "sklep.example.pl")
    assert c == "PLN" and conf <= 0.5
    c, conf = page_currency('<html lang="cs"><p>12,99</p>', Decimal("12.99"), "shop.example.com")
    assert c == "CZK" and conf < 0.5
    assert page_currency("<p>12,99</p>", Decimal("12.99"), "shop.example.com") == (None, 0.0)


def test_sign_of_the_amount_itself_beats_the_domain():
    # a .ru shop selling in hryvnia: the sign next to the price decides, not the TLD
    ex = page(microdata("253.0", "Цена : 253.0 грн"), url="https://shop.example.ru/p/1")
    assert ex.currency == "UAH"


# ---------------------------------------------------------------------------- price

@pytest.mark.parametrize("box,price,currency", [
    ('<p><span class="label">Cena:</span> <span class="amount">32,00 €</span></p>'
     '<button>Pridať do košíka</button>', "32.00", "EUR"),
    ('<p>Verfügbarkeit: sofort lieferbar</p><p><span>999,00 €</span>Barpreis inkl 19% MwSt</p>'
     '<button>In den Warenkorb</button>', "999.00", "EUR"),
    ('<p>9 900,00 zł</p><button>Do koszyka</button>', "9900.00", "PLN"),
    ('<p>Цена: <span class="cost">163 290.00&nbsp;руб.</span></p>'
     '<a href="/basket/" class="add" title="Добавить товар в корзину" '
     'onclick="InsertCart(1); return false;"><i>В корзину</i></a>', "163290.00", "RUB"),
    ('<p class="prise"><span class="value">870</span><br>руб</p>'
     '<input type="submit" value="В корзину">', "870", "RUB"),
    ('<p>Ár: 2 000 Ft</p><button>Kosárba tesz</button>', "2000", "HUF"),
])
def test_labelled_prices_in_other_languages_on_pages_without_markup(box, price, currency):
    ex = page(box)
    assert ex.price == Decimal(price)
    assert ex.currency == currency


def test_regular_price_class_alone_is_the_price():
    # "regular-price" with no sale price beside it (a common theme's plain price)
    ex = page('<div class="price-box"><span class="regular-price"><span class="price">'
              '32,00 €</span></span></div><button class="add-to-cart">Add to cart</button>')
    assert ex.price == Decimal("32.00") and ex.sale_price is None


@pytest.mark.parametrize("decoy", [
    '<p class="ref">Cena w innych sklepach: <span>4 699,00 zł</span></p>',
    '<p>Price in other stores: <span>$46.99</span></p>',
    '<div class="combo"><p>Price for both: <span>$47.98</span></p></div>',
    '<p>Your Savings: <span>$11.05</span></p>',
    '<p>You save <span>$11.05</span></p>',
    '<p>Sie sparen <span>11,05 €</span></p>',
    '<p>Économisez <span>11,05 €</span></p>',
])
def test_reference_bundle_and_saving_amounts_are_not_the_price(decoy):
    sign = "zł" if "zł" in decoy else "€" if "€" in decoy else "$"
    shown = {"zł": "23,99 zł", "€": "23,99 €", "$": "$23.99"}[sign]
    # the decoy comes first and is marked up like the price: only its label tells them apart
    decoy = decoy.replace("<span>", '<span class="price">')
    ex = page(f'<div class="buy-box">{decoy}<p><span class="price">{shown}</span></p>'
              f'<button class="add-to-cart">Add to cart</button></div>')
    assert ex.price == Decimal("23.99"), decoy


def test_price_filter_in_a_breadcrumb_holding_the_heading_is_not_the_price():
    html = ('<html><head><title>Junior Boot</title></head><body><div id="bread_crumbs">'
            '<a href="/d">Departments</a> &gt; <a href="/s">Sale</a> &gt; '
            '<a href="/u30">Less Than $30</a> &gt;<h1>Junior Boot</h1></div>'
            '<div id="item_price"><div class="strike_price">$54.99</div>'
            '<div class="sale_price">$24.99</div></div><ul class="links"><li>'
            '<a href="/g10">Gifts Under $10</a></li></ul></body></html>')
    ex = extract(html.encode(), URL)
    assert (ex.sale_price or ex.price) == Decimal("24.99")


# ---------------------------------------------------------------------------- availability

@pytest.mark.parametrize("phrase,value", [
    ("В наличии", Availability.IN_STOCK),
    ("Есть в наличии", Availability.IN_STOCK),
    ("Нет в наличии", Availability.OUT_OF_STOCK),
    ("Наличие на складе: Да", Availability.IN_STOCK),
    ("Skladem", Availability.IN_STOCK),
    ("Není skladem", Availability.OUT_OF_STOCK),
    ("Na sklade", Availability.IN_STOCK),
    ("Nie je na sklade", Availability.OUT_OF_STOCK),
    ("Raktáron", Availability.IN_STOCK),
    ("Nincs raktáron", Availability.OUT_OF_STOCK),
    ("Na stanie", Availability.IN_STOCK),
    ("Brak na stanie", Availability.OUT_OF_STOCK),
    ("...we don't currently have that one in stock", Availability.OUT_OF_STOCK),
    ("Під замовлення", None),
    ("Под заказ", Availability.BACKORDER),
])
def test_stock_phrases_in_more_languages(phrase, value):
    ex = page(f'<p class="price">19,99 €</p><p class="stock">{phrase}</p>'
              f'<button class="add-to-cart">Add to cart</button>')
    if value is None:
        assert ex.availability is not Availability.OUT_OF_STOCK
    else:
        assert ex.availability is value, phrase


def test_visible_out_of_stock_in_the_buy_box_beats_stale_in_stock_markup():
    # the notice sits in the buy box, beside the (still enabled) button
    ex = page(microdata("11.99", "$11.99", extra='<form action="/cart/add" method="post">'
                        '<button class="add-to-cart">Add to Cart</button><div class="find-in-'
                        'store"><p>This product is out of stock online. Find it in a store near '
                        'you.</p></div></form>', button=False))
    assert ex.availability is Availability.OUT_OF_STOCK
    assert ex.sources["availability"] == "heuristic"
    # the same markup without the notice stays in stock
    ex = page(microdata("11.99", "$11.99"))
    assert ex.availability is Availability.IN_STOCK


def test_out_of_stock_text_far_from_the_buy_box_does_not_overrule_markup():
    ex = page(microdata("11.99", "$11.99") + "".join(
        f'<div class="teaser"><p>Other item {i}</p></div>' for i in range(30)) +
        '<div class="blog"><div><div><div><p>Last winter the boots were sold out in a '
        'week, read the story of how we restocked them for every size</p></div></div></div></div>')
    assert ex.availability is Availability.IN_STOCK


def test_per_variant_stock_labels_in_the_size_menu():
    ex = page('<p class="price">$24.99</p><select id="size"><option>Please choose:</option>'
              '<option value="1 [Low Stock]">1 [Low Stock]</option>'
              '<option value="2 [In Stock]">2 [In Stock]</option></select>')
    assert ex.availability is Availability.IN_STOCK
    ex = page('<p class="price">$24.99</p><select id="size"><option>Please choose:</option>'
              '<option>S - sold out</option><option>M - sold out</option></select>')
    assert ex.availability is Availability.OUT_OF_STOCK


# ---------------------------------------------------------------------------- SKU

@pytest.mark.parametrize("shown,sku", [
    ('<div class="code"><span>Kód tovaru:</span> <span>g36173</span></div>', "g36173"),
    ('<table><tr><td>Kód produktu:</td><td>HSF07-039</td></tr></table>', "HSF07-039"),
    ('<div><span class="lbl">Код:&nbsp;</span><span>96133</span></div>', "96133"),
    ('<p>Артикул: TR-2024/B</p>', "TR-2024/B"),
    ('<p>In Stock - Item #601576</p>', "601576"),
    ('<div class="sku">Catalog #: 2731080</div>', "2731080"),
    ('<span>Catalog Item # 34961</span>', "34961"),
    ('<div class="item-no">Item No. 704665</div>', "704665"),
    ('<div class="number">Style <span>YLS0030</span></div>', "YLS0030"),
    ('<p>Cikkszám: 12-3456</p>', "12-3456"),
    ('<p>Kod produktu: BPZ046/15</p>', "BPZ046/15"),
    ('<p><span class="bold">Artikelnummer:</span> 8570931</p>', "8570931"),
    ('<div><strong>Product ID:</strong> VBAG</div>', "VBAG"),
    ('<p>SKU:&nbsp;Treasure Garden UM9109-3462</p>', "Treasure Garden UM9109-3462"),
    ('<span class="meta sku">HB095BLK</span>', "HB095BLK"),
])
def test_sku_labels_in_more_languages_and_forms(shown, sku):
    ex = page(f'<p class="price">19,99 €</p>{shown}<button class="add-to-cart">Add to cart'
              f'</button>')
    assert ex.sku == sku


def test_sku_never_the_next_label_nor_a_upc_in_the_title():
    ex = page('<p class="price">$14.99</p><ul><li><strong>Bestellnummer:</strong><meta '
              'content="1"><span>JB010949</span></li><li><strong>EAN:</strong><span>'
              '4711121603488</span></li></ul><button class="add-to-cart">Add to cart</button>',
              title="Diners Puzzle: 724819255917")
    assert ex.sku == "JB010949"
    ex = page('<p class="price">$14.99</p><p>ID : 201500014845</p><div><label>MPN:</label>'
              '<label>724819255917</label></div><button class="add-to-cart">Add to cart</button>',
              title="Diners Puzzle: 724819255917")
    assert ex.sku == "201500014845"


def test_a_shown_number_extending_the_data_article_number_gives_way_to_it():
    ex = page('<div data-article-number="61094760"></div><p class="price">19,99 €</p>'
              '<div>Artikel-Nr. <span>6109476094</span></div>'
              '<button class="add-to-cart">In den Warenkorb</button>')
    assert ex.sku == "61094760"


# ---------------------------------------------------------------------------- images

GIF = "data:image/gif;base64,R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7"


def test_lazy_placeholder_in_microdata_gives_way_to_the_linked_image():
    ex = page(microdata("6.99", "6,99 €", extra=(
        f'<a class="main-image" href="/img/w600/front.jpg"><img class="lazyload" src="{GIF}" '
        f'data-src="/img/w|vw|/front.jpg" alt="Trail Runner 2" itemprop="image"></a>')))
    assert ex.images and ex.images[0] == "https://shop.example.test/img/w600/front.jpg"
    assert not any(u.startswith("data:") for u in ex.images)


def test_swatch_and_url_sized_thumbnail_lose_to_the_product_photo():
    ex = page('<p class="price">$52.80</p><div class="swatches"><img '
              'src="/is/image/YLS0030_020_1_SWATCH" alt="Trail Runner 2"></div><div>'
              '<img src="/photos/166_166_CW014.jpg" alt="Trail Runner 2 other"></div>'
              '<p class="detailed"><img class="enlarge-img" src="/photos/420_420_a8b5d6.JPG" '
              'alt="Trail Runner 2"></p><button class="add-to-cart">Add to cart</button>')
    assert ex.images[0] == "https://shop.example.test/photos/420_420_a8b5d6.JPG"


def test_bad_image_words_in_the_host_name_do_not_drop_the_photo():
    html = ('<html><head><title>Leonin Snarecaster</title></head><body><div>'
            '<img src="https://static.starcards.example/scans/LeoninSnarecaster.jpg" '
            'alt="Leonin Snarecaster"><p class="price">$0.25</p><button '
            'id="cart_add_1" class="add-to-cart">Add to cart</button></div></body></html>')
    ex = extract(html.encode(), URL)
    assert ex.images and ex.images[0].endswith("/LeoninSnarecaster.jpg")


@pytest.mark.parametrize("notice", [
    "Die gewünschte Größe ist leider nicht mehr verfügbar",
    "The selected size is sold out",
    "Cette taille choisie est épuisée",
])
def test_a_sold_out_size_does_not_make_the_product_out_of_stock(notice):
    ex = page(f'<p class="price">49,99 €</p><div class="availability-label"><span>{notice}'
              f'</span></div><button class="add-to-cart">In den Warenkorb</button>')
    assert ex.availability is Availability.IN_STOCK
