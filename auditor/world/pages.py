"""HTML of the demo shop, rendered on demand from the world (the site channel's view).

Product pages come in five kinds, as on real shops: JSON-LD Product, JSON-LD
ProductGroup with ``hasVariant``, microdata only, OpenGraph only, and no
structured data at all (price, stock and SKU only in the visible HTML). Each
page carries navigation, recommendations and inline CSS/JS so it weighs
50-150 KB like a real theme's output.
"""

from __future__ import annotations

import json
import random
import re
from decimal import Decimal
from functools import lru_cache
from html import escape

from auditor.world.catalog import Product
from auditor.world.drift import View

SCHEMA = "https://schema.org/"
HANDLE_RE = re.compile(r"^(?:[a-z0-9-]*?-)?(\d+)(?:-x(\d+))?$")
CATEGORIES = ("apparel", "home", "accessories")
PER_PAGE = 48


def parse_handle(handle: str) -> tuple[int, int | None] | None:
    """(product index, orphan number or None) of a product handle; None if foreign."""
    m = HANDLE_RE.match(handle)
    if not m:
        return None
    return int(m.group(1)), (int(m.group(2)) if m.group(2) is not None else None)


@lru_cache(maxsize=1)
def _noise() -> tuple[str, str]:
    """A theme's inline CSS and JS: page weight that carries no product data."""
    r = random.Random("theme")
    css = "\n".join(
        f".c-{i}{{margin:{r.randint(0, 24)}px {r.randint(0, 24)}px;padding:{r.randint(0, 16)}px;"
        f"color:#{r.randrange(1 << 24):06x};font-size:{r.randint(10, 24)}px;"
        f"display:{r.choice(['block', 'flex', 'grid', 'inline-block'])}}}"
        for i in range(260))
    tracking = {f"exp_{i}": {"variant": r.choice("ABCD"), "weight": r.random(),
                             "segments": [r.randrange(10**6) for _ in range(6)]}
                for i in range(90)}
    js = ("window.__THEME__=" + json.dumps(tracking, separators=(",", ":")) + ";\n"
          "(function(){var q=[];function t(e,d){q.push([e,d,Date.now()]);}"
          "document.addEventListener('click',function(e){t('click',e.target.id)});"
          "window.addEventListener('scroll',function(){t('scroll',window.scrollY)});})();\n")
    return css, js


def _nav() -> str:
    links = "".join(f'<li><a href="/collections/{c}">{c.title()}</a></li>' for c in CATEGORIES)
    extra = "".join(f'<li><a href="/pages/info-{i}">Service {i}</a></li>' for i in range(40))
    return (f'<header class="site-header"><a class="logo" href="/">Demo Shop</a><nav><ul>'
            f'<li><a href="/collections/all">All products</a></li>{links}</ul></nav>'
            f'<form action="/search"><input name="q" placeholder="Search"></form>'
            f'<a href="/cart">Cart (0)</a></header><aside class="mega-menu"><ul>{extra}</ul>'
            f'</aside>')


def _footer() -> str:
    cols = "".join(f'<div class="c-{i}"><h4>Column {i}</h4><ul>' +
                   "".join(f'<li><a href="/pages/f{i}-{j}">Footer link {j}</a></li>'
                           for j in range(12)) + "</ul></div>" for i in range(6))
    return f'<footer class="site-footer">{cols}<p>&copy; Demo Shop. All prices incl. VAT.</p></footer>'


def layout(title: str, body: str, head_extra: str = "", canonical: str | None = None,
           filler: int = 0) -> str:
    """A full page: head with inline theme CSS/JS, header, body, footer."""
    css, js = _noise()
    can = f'<link rel="canonical" href="{escape(canonical)}">' if canonical else ""
    reviews = "".join(
        f'<div class="review c-{k % 260}"><strong>Customer {k}</strong><p>'
        f'{"Great quality and fast delivery. " * (3 + k % 5)}</p></div>' for k in range(filler))
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            f'<title>{escape(title)} | Demo Shop</title>'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">{can}'
            f'{head_extra}<style>{css}</style><script>{js}</script></head><body>'
            f'{_nav()}<main>{body}<section class="reviews">{reviews}</section></main>'
            f'{_footer()}<script>{js[:4000]}</script></body></html>')


def _money_visible(d: Decimal, currency: str) -> str:
    sym = {"EUR": "€", "USD": "$", "GBP": "£"}.get(currency, currency + " ")
    return f"{sym}{d:.2f}"


def _avail(v: View) -> str:
    return SCHEMA + ("InStock" if v.in_stock else "OutOfStock")


def _offer(v: View, base: str) -> dict:
    return {"@type": "Offer", "price": f"{v.shown_price:.2f}", "priceCurrency": v.currency,
            "availability": _avail(v), "itemCondition": SCHEMA + "NewCondition",
            "url": base + v.path}


def _product_ld(v: View, base: str, with_context: bool = True) -> dict:
    d = {"@type": "Product", "name": v.title, "sku": v.sku, "mpn": v.mpn,
         "brand": {"@type": "Brand", "name": v.brand}, "description": v.description,
         "image": [base + u for u in v.images], "url": base + v.path, "offers": _offer(v, base)}
    if with_context:
        d = {"@context": "https://schema.org", **d}
    if v.gtin:
        d["gtin13"] = v.gtin
    for k in ("color", "size", "material"):
        if k in v.attributes:
            d[k] = v.attributes[k]
    return d


def _ld(obj: dict) -> str:
    text = json.dumps(obj, ensure_ascii=False).replace("</", "<\\/")
    return f'<script type="application/ld+json">{text}</script>'


def _visible(v: View, show_sku: bool = True) -> str:
    """What a person sees: title, price (with the regular one struck through), stock."""
    price = f'<span class="price">{escape(_money_visible(v.shown_price, v.currency))}</span>'
    if v.sale_price is not None:
        price = (f'<del class="price-regular">{escape(_money_visible(v.price, v.currency))}</del>'
                 + price.replace('class="price"', 'class="price price--sale"'))
    specs = "".join(f"<tr><th>{escape(k.title())}</th><td>{escape(val)}</td></tr>"
                    for k, val in v.attributes.items())
    imgs = "".join(f'<img class="product-image" src="{escape(u)}" alt="{escape(v.title)}" '
                   f'width="800" height="600">' for u in v.images)
    sku = f'<p class="sku">SKU: <span>{escape(v.sku)}</span></p>' if show_sku else ""
    return (f'<div class="gallery">{imgs}</div><div class="buy-box">'
            f'<p class="brand">{escape(v.brand)}</p>{sku}<div class="prices">{price}</div>'
            f'<p class="stock">{"In stock" if v.in_stock else "Out of stock"}</p>'
            f'<button {"disabled" if not v.in_stock else ""}>Add to cart</button></div>'
            f'<table class="specs">{specs}</table><div class="description">'
            f'<p>{escape(v.description)}</p></div>')


def _recommendations(p: Product, products: int, handle_of) -> str:
    cards = []
    for k in range(1, 9):
        j = (p.index * 7 + k * 13) % max(products, 1)
        h = handle_of(j)
        if h:
            cards.append(f'<li class="card"><a href="/products/{h}">Recommended {k}</a></li>')
    return f'<section class="recommendations"><h2>You may also like</h2><ul>{"".join(cards)}</ul></section>'


def product_page(p: Product, views: list[View], selected: View, base: str, products: int,
                 handle_of, kind: str | None = None) -> str:
    """The page of ``p`` showing ``selected`` (or every variant on a ProductGroup page).

    ``kind`` overrides the product's own page kind (benchmarks compare crawlers on
    pages of one kind)."""
    v = selected
    kind = "jsonld" if v.ghost else (kind or p.page_kind)
    head = ""
    crumbs = (f'<nav class="breadcrumbs"><a href="/">Home</a> / '
              f'<a href="/collections/{p.category}">{p.category.title()}</a></nav>')
    body_title = f'<h1 class="product-title">{escape(v.title)}</h1>'
    if kind == "jsonld":
        head = _ld(_product_ld(v, base)) + _ld(
            {"@context": "https://schema.org", "@type": "BreadcrumbList", "itemListElement": [
                {"@type": "ListItem", "position": 1, "name": "Home", "item": base + "/"}]})
        main = body_title + _visible(v)
    elif kind == "group":
        group = {"@context": "https://schema.org", "@type": "ProductGroup",
                 "name": p.base_title, "productGroupID": p.group_id, "description": p.description,
                 "brand": {"@type": "Brand", "name": p.brand},
                 "url": base + p.path,
                 "variesBy": [SCHEMA + "color"] + ([SCHEMA + "size"] if any(x.size for x in views)
                                                    else []),
                 "hasVariant": [_product_ld(x, base, with_context=False) for x in views]}
        head = _ld(group)
        picker = "".join(f'<option value="{escape(x.sku)}">{escape(x.title)}</option>'
                         for x in views)
        main = (f'<h1 class="product-title">{escape(p.base_title)}</h1>'
                f'<select class="variant-picker">{picker}</select>' + _visible(v))
    elif kind == "microdata":
        extra = "".join(f'<meta itemprop="{k}" content="{escape(val)}">'
                        for k, val in v.attributes.items())
        gt = f'<meta itemprop="gtin13" content="{v.gtin}">' if v.gtin else ""
        imgs = "".join(f'<link itemprop="image" href="{escape(base + u)}">' for u in v.images)
        main = (f'<div itemscope itemtype="{SCHEMA}Product">'
                f'<h1 class="product-title" itemprop="name">{escape(v.title)}</h1>'
                f'<meta itemprop="sku" content="{escape(v.sku)}">{gt}'
                f'<meta itemprop="mpn" content="{escape(v.mpn)}">{imgs}{extra}'
                f'<div itemprop="brand" itemscope itemtype="{SCHEMA}Brand">'
                f'<meta itemprop="name" content="{escape(v.brand)}"></div>'
                f'<div itemprop="offers" itemscope itemtype="{SCHEMA}Offer">'
                f'<meta itemprop="priceCurrency" content="{v.currency}">'
                f'<meta itemprop="price" content="{v.shown_price:.2f}">'
                f'<link itemprop="availability" href="{_avail(v)}"></div>'
                + _visible(v) + "</div>")
    elif kind == "opengraph":
        og = [("og:type", "product"), ("og:title", v.title), ("og:url", base + v.path),
              ("og:description", v.description), ("product:price:amount", f"{v.shown_price:.2f}"),
              ("product:price:currency", v.currency),
              ("product:availability", "in stock" if v.in_stock else "out of stock"),
              ("product:retailer_item_id", v.sku), ("product:brand", v.brand),
              ("product:condition", "new")]
        og += [("og:image", base + u) for u in v.images]
        head = "".join(f'<meta property="{k}" content="{escape(val)}">' for k, val in og)
        main = body_title + _visible(v, show_sku=False)
    else:  # plain: nothing machine-readable, only what a person reads
        main = body_title + _visible(v)
    filler = 30 + (p.index * 7919) % 290
    return layout(v.title, crumbs + f'<article class="product">{main}</article>'
                  + _recommendations(p, products, handle_of), head, base + v.path, filler)


def collection_page(name: str, items: list[tuple[str, str]], page: int, pages: int) -> str:
    """A category listing: product cards linking to product pages, with pagination."""
    cards = "".join(f'<li class="card"><a href="{escape(href)}">{escape(title)}</a></li>'
                    for href, title in items)
    nav = ""
    if page > 1:
        nav += f'<a rel="prev" href="/collections/{name}?page={page - 1}">Previous</a>'
    if page < pages:
        nav += f'<a rel="next" href="/collections/{name}?page={page + 1}">Next</a>'
    return layout(f"{name.title()} - page {page}",
                  f'<h1>{escape(name.title())}</h1><ul class="grid">{cards}</ul>'
                  f'<nav class="pagination">{nav}</nav>', filler=5)


def captcha_page() -> str:
    """What a bot wall answers with status 200."""
    return ('<!DOCTYPE html><html><head><title>Robot Check</title></head><body>'
            '<h1>Please verify you are a human</h1><p>Our systems have detected unusual '
            'traffic. Enter the characters you see below.</p><form action="/captcha">'
            '<img src="/captcha.png" alt="captcha"><input name="captcha"></form>'
            '<div class="g-recaptcha" data-sitekey="demo"></div></body></html>')
