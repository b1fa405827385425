"""Shopify stores: the storefront ``/products.json`` (+ ``/products/<handle>.js``) and CSV exports.

With an http(s) source (the shop's address) the public ``/products.json`` is
paged until an empty page, products deduplicated by id (some stores repeat a
page). Barcodes are only in the Ajax API: with ``barcodes = true`` each
product's ``/products/<handle>.js`` is fetched too (integer minor-unit prices,
x100 even for currencies without minor units). The store currency comes from
the config or ``/cart.js``. A closed endpoint (401/403/404) is a SourceError
that says what to do instead.

With a file source, the Shopify product CSV export is read (legacy and current
headers; continuation rows carry further variants and images of the handle
above them). One Listing per variant either way.
"""

from __future__ import annotations

import asyncio
import json
import time
from datetime import datetime
from decimal import Decimal
from typing import Any, Iterable, Iterator, Mapping
from urllib.parse import quote, urlsplit

from auditor import csvio, http
from auditor.connector import Connector, SourceContext
from auditor.errors import BadRecord, FetchError, SourceError
from auditor.model import Availability, Listing, Money
from auditor.options import Opt
from auditor.plugins import register_connector
from auditor.sources import is_url
from auditor.values import (availability_from_quantity, money_from_minor, normalize_currency,
                            normalize_gtin, parse_int, parse_money)
from auditor.connectors._common import dedupe, make_listing, map_columns

PAGE_SIZE = 250
DEFAULT_TITLE = "Default Title"  # the one option value of a product without variants
CLOSED = {401, 403, 404}


# ----------------------------------------------------------------------------- pure mapping

def _https(url: str | None) -> str | None:
    if not url:
        return None
    return "https:" + url if url.startswith("//") else url


def _html_text(html: str | None) -> str | None:
    """The text of an HTML description (tags dropped, entities decoded)."""
    if not html or not html.strip():
        return None
    if "<" not in html and "&" not in html:
        return html.strip()
    from lxml import html as lhtml

    try:
        text = lhtml.fromstring(f"<div>{html}</div>").text_content()
    except Exception:  # lxml refuses some fragments; fall back to the raw text
        return html.strip()
    return " ".join(text.split()) or None


def _money(value: Any, currency: str, minor: bool = False) -> Money | None:
    if value is None or value == "":
        return None
    if minor:
        # The Ajax API writes value x 100 whatever the currency's minor units.
        return money_from_minor(value, currency, exponent=2)
    return Money(Decimal(str(value)), currency)


def _gtin(barcode: Any, attributes: dict[str, str]) -> str | None:
    if barcode is None or str(barcode).strip() == "":
        return None
    try:
        return normalize_gtin(str(barcode))
    except ValueError:
        attributes["gtin_raw"] = str(barcode)
        return str(barcode).strip()


_OPTION_ATTR = {"color": "color", "colour": "color", "farbe": "color", "couleur": "color",
                "size": "size", "größe": "size", "grösse": "size", "taille": "size",
                "material": "material"}


def _option_attributes(names: list[str], values: Iterable[Any]) -> dict[str, str]:
    out = {}
    for name, value in zip(names, values, strict=False):
        if value is None or str(value).strip() in ("", DEFAULT_TITLE) or not name:
            continue
        key = _OPTION_ATTR.get(name.strip().lower(), "option_" + name.strip().lower())
        out[key] = str(value).strip()
    return out


def product_listings(product: Mapping[str, Any], channel: str, fetched_at: datetime,
                     currency: str, base_url: str, js: Mapping[str, Any] | None = None,
                     location: str | None = None) -> list[Listing]:
    """The Listings (one per variant) of one ``products.json`` product.

    ``js`` is the product's ``/products/<handle>.js`` document, when fetched:
    it adds barcodes, and its integer minor-unit prices are used.
    """
    handle = product.get("handle") or ""
    pid = product.get("id")
    option_names = [o.get("name", "") for o in product.get("options") or [] if isinstance(o, dict)]
    images = sorted((i for i in product.get("images") or [] if isinstance(i, dict)),
                    key=lambda i: i.get("position") or 0)
    js_variants = {v.get("id"): v for v in (js or {}).get("variants") or [] if isinstance(v, dict)}
    out = []
    for v in product.get("variants") or []:
        vid = v.get("id")
        if vid is None:
            raise BadRecord(f"product {pid} has a variant without id", "variants.id")
        attributes = _option_attributes(option_names, (v.get("option1"), v.get("option2"),
                                                        v.get("option3")))
        if product.get("product_type"):
            attributes["product_type"] = str(product["product_type"])
        vt = v.get("title")
        if vt and vt != DEFAULT_TITLE:
            attributes["variant_title"] = str(vt)
        if v.get("grams"):
            attributes["product_weight"] = f"{v['grams']} g"
        jv = js_variants.get(vid)
        src = jv if jv is not None else v
        available = jv.get("available", v.get("available")) if jv is not None \
            else v.get("available")
        where = location or f"{base_url}/products.json"
        bad: dict[str, str] = {}
        price = compare = None
        try:
            price = _money(src.get("price"), currency, minor=jv is not None)
        except (ValueError, ArithmeticError) as e:
            bad["price"] = f"{where}: variant {vid}: bad price: {e}"
        try:
            compare = _money(src.get("compare_at_price"), currency, minor=jv is not None)
        except (ValueError, ArithmeticError) as e:
            # The compare-at price decides which of the two is the sale price.
            bad["price"] = bad["sale_price"] = f"{where}: variant {vid}: bad compare-at " \
                                               f"price: {e}"
            price = None
        sale = None
        if compare is not None and price is not None and compare.amount > price.amount:
            price, sale = compare, price  # the "was" price is the regular one
        own = [_https(i.get("src")) for i in images if vid in (i.get("variant_ids") or [])]
        # A product's gallery is shared by all its variants (other colours included): when
        # a variant has images of its own, only those are known to show it.
        rest = [] if own else [_https(i.get("src")) for i in images if not i.get("variant_ids")]
        if not images and js:
            rest = [_https(u) for u in js.get("images") or [] if isinstance(u, str)]
        avail = None
        if isinstance(available, bool):
            avail = Availability.IN_STOCK if available else Availability.OUT_OF_STOCK
        out.append(make_listing(
            channel=channel, key=str(vid), fetched_at=fetched_at,
            sku=(str(v.get("sku")).strip() or None) if v.get("sku") else None,
            title=product.get("title"), description=_html_text(product.get("body_html")),
            brand=product.get("vendor") or None,
            gtin=_gtin((jv or v).get("barcode"), attributes),
            price=price, sale_price=sale, availability=avail,
            url=f"{base_url}/products/{quote(handle)}?variant={vid}" if handle else None,
            images=tuple(u for u in own + rest if u), attributes=attributes,
            group_id=str(pid) if pid is not None else None,
            evidence=where, unread=bad))
    return out


# ----------------------------------------------------------------------------- storefront API

def _store_base(source: str) -> str:
    parts = urlsplit(source)
    path = parts.path.rstrip("/")
    for suffix in ("/products.json", "/products", "/collections/all"):
        if path.endswith(suffix):
            path = path[: -len(suffix)]
    return f"{parts.scheme}://{parts.netloc}{path}"


class _Loop:
    """One event loop and one Fetcher for a synchronous, streaming read.

    The whole read, every page and retry, must finish within the policy's
    ``source_deadline``; past it the source fails.
    """

    def __init__(self, ctx: SourceContext):
        self.loop = asyncio.new_event_loop()
        policy = ctx.policy()
        self.fetcher = http.Fetcher(policy, headers=ctx.headers(), auth=ctx.auth())
        self.deadline = policy.source_deadline
        self.source = ctx.channel.source or ctx.channel.name
        self.started = time.monotonic()
        self.loop.run_until_complete(self.fetcher.__aenter__())

    def run(self, coro):
        """Run one coroutine on this read's loop, within what is left of the deadline."""
        if not self.deadline:
            return self.loop.run_until_complete(coro)
        left = self.deadline - (time.monotonic() - self.started)
        try:
            if left <= 0:
                raise asyncio.TimeoutError
            return self.loop.run_until_complete(asyncio.wait_for(coro, left))
        except asyncio.TimeoutError:
            coro.close()
            raise SourceError(self.source, f"the store was not read within source_deadline "
                                           f"({self.deadline:g} s)") from None

    def close(self) -> None:
        """Close the client and the loop."""
        try:
            self.loop.run_until_complete(self.fetcher.__aexit__(None, None, None))
        finally:
            self.loop.close()


def _json(resp: http.Response, url: str) -> Any:
    try:
        return json.loads(resp.body or b"")
    except (ValueError, UnicodeDecodeError):
        kind = "an HTML page" if (resp.body or b"").lstrip()[:1] == b"<" else "not JSON"
        raise BadRecord(f"{url} answered {kind} where JSON was expected") from None


def read_storefront(ctx: SourceContext, source: str) -> Iterator[Listing]:
    """Every variant of every product of a store's /products.json, page by page."""
    base = _store_base(source)
    opts = ctx.channel.options
    max_pages = opts.get("max_pages") or 1000
    io = _Loop(ctx)
    try:
        currency = opts.get("currency")
        if currency:
            currency = normalize_currency(currency)
        else:
            currency = _cart_currency(io, base)
        seen: set[Any] = set()
        for page in range(1, max_pages + 1):
            url = f"{base}/products.json?limit={PAGE_SIZE}&page={page}"
            try:
                resp = io.run(io.fetcher.get(url))
            except FetchError as e:
                if page == 1:
                    raise SourceError(url, e.reason) from None
                ctx.partial(f"{url}: {e.reason}; later pages not read")
                return
            if resp.status in CLOSED and page == 1:
                raise SourceError(url, f"HTTP {resp.status}: this store's /products.json is "
                                       f"closed; read its product CSV export instead (a file "
                                       f"source) or crawl the web shop")
            if resp.status >= 400:
                if page == 1:
                    raise SourceError(url, f"HTTP {resp.status}")
                ctx.partial(f"{url}: HTTP {resp.status}; later pages not read")
                return
            try:
                data = _json(resp, url)
            except BadRecord as e:
                if page == 1:
                    raise SourceError(url, e.reason) from None
                ctx.partial(f"{e.reason}; later pages not read")
                return
            products = data.get("products") if isinstance(data, dict) else None
            if products is None:
                if page == 1:
                    raise SourceError(url, "no 'products' array in the answer")
                ctx.partial(f"{url}: no 'products' array; later pages not read")
                return
            new = [p for p in products if isinstance(p, dict) and p.get("id") not in seen]
            if not new:
                break  # an empty page, or the store repeating its last page
            seen.update(p.get("id") for p in new)
            scripts: list[Any] = [None] * len(new)
            if opts.get("barcodes"):
                scripts = io.run(_product_scripts(io.fetcher, base, new, ctx))
            for product, js in zip(new, scripts, strict=True):
                try:
                    listings = product_listings(product, ctx.channel.name, ctx.now, currency,
                                                base, js, location=f"{url}#{product.get('id')}")
                except BadRecord as e:  # a variant without id: its listing is unknown
                    ctx.key_lost(f"{url}#{product.get('id')}", str(e))
                    continue
                except (TypeError, AttributeError, ValueError) as e:
                    # JSON of an unexpected shape (a string where a list belongs).
                    ctx.key_lost(f"{url}#{product.get('id')}", f"unexpected product JSON: {e}")
                    continue
                yield from listings
        else:
            ctx.partial(f"stopped after max_pages = {max_pages}; later pages not read")
    finally:
        io.close()


def _cart_currency(io: _Loop, base: str) -> str:
    url = f"{base}/cart.js"
    try:
        resp = io.run(io.fetcher.get(url))
        data = _json(resp, url) if resp.status < 400 else {}
    except (FetchError, BadRecord) as e:
        raise SourceError(url, f"cannot learn the store currency ({e}); set currency = "
                               f"\"EUR\" (or the like) on the channel") from None
    cur = data.get("currency") if isinstance(data, dict) else None
    if not cur:
        raise SourceError(url, f"HTTP {resp.status}, no currency in /cart.js; set currency = "
                               f"\"EUR\" (or the like) on the channel")
    try:
        return normalize_currency(cur)
    except ValueError as e:
        raise SourceError(url, str(e)) from None


async def _product_scripts(fetcher: http.Fetcher, base: str, products: list[dict],
                           ctx: SourceContext) -> list[Any]:
    async def one(p: dict) -> Any:
        handle = p.get("handle")
        if not handle:
            return None
        url = f"{base}/products/{quote(str(handle))}.js"
        try:
            resp = await fetcher.get(url)
            if resp.status >= 400:
                raise BadRecord(f"HTTP {resp.status}")
            return _json(resp, url)
        except (FetchError, BadRecord) as e:
            # Without its .js the product's barcodes are unknown, not absent.
            ctx.bad(url, f"no barcodes for {handle!r}: {getattr(e, 'reason', e)}")
            return None

    return list(await asyncio.gather(*(one(p) for p in products)))


# ----------------------------------------------------------------------------- CSV export

# Our field -> legacy and current export headers (matched ignoring case and spaces).
CSV_COLUMNS: dict[str, list[str]] = {
    "handle": ["Handle", "URL handle"],
    "title": ["Title"],
    "body": ["Body (HTML)", "Description"],
    "vendor": ["Vendor"],
    "type": ["Type"],
    "tags": ["Tags"],
    "status": ["Status"],
    "sku": ["Variant SKU", "SKU"],
    "qty": ["Variant Inventory Qty", "Inventory quantity"],
    "policy": ["Variant Inventory Policy", "Continue selling when out of stock"],
    "price": ["Variant Price", "Price"],
    "compare": ["Variant Compare At Price", "Compare-at price"],
    "barcode": ["Variant Barcode", "Barcode"],
    "image": ["Image Src", "Product image URL"],
    "variant_image": ["Variant Image", "Variant image URL"],
    "grams": ["Variant Grams", "Weight value (grams)"],
    "published": ["Published", "Published on online store"],
}
for _n in (1, 2, 3):
    CSV_COLUMNS[f"option{_n}_name"] = [f"Option{_n} Name"]
    CSV_COLUMNS[f"option{_n}_value"] = [f"Option{_n} Value"]
_VARIANT_FIELDS = ("sku", "price", "compare", "barcode", "qty", "option1_value",
                   "option2_value", "option3_value")


def csv_carried(header: list[str], name: str) -> set[str]:
    """The listing fields a product export with this header carries."""
    idx = map_columns(header, CSV_COLUMNS, name)
    out = {"group_id"} | {ours for theirs, ours in (("title", "title"), ("body", "description"),
                                                     ("vendor", "brand"), ("price", "price"))
                          if theirs in idx}
    if "compare" in idx:
        out.add("sale_price")
    if "qty" in idx:
        out.update(("quantity", "availability"))
    if "status" in idx:
        out.add("availability")
    if "barcode" in idx:
        out.add("gtin")
    if "image" in idx or "variant_image" in idx:
        out.add("images")
    return out


def csv_listings(header: list[str], rows: Iterable[tuple[int, list[str]]], name: str,
                 channel: str, fetched_at: datetime, opts: Mapping[str, Any],
                 bad, lost=None) -> Iterator[Listing]:
    """Listings from a Shopify product CSV export (rows grouped by Handle)."""
    idx = map_columns(header, CSV_COLUMNS, name, required=("handle",))
    if "price" not in idx and "sku" not in idx:
        raise SourceError(name, "not a Shopify product export: no Variant SKU or Variant "
                                f"Price column (header is: {', '.join(header[:20])})")
    currency = normalize_currency(opts["currency"])
    dsep = opts.get("decimal_separator")
    store = (opts.get("store_url") or "").rstrip("/")

    def get(cells: list[str], field: str) -> str:
        i = idx.get(field)
        return cells[i].strip() if i is not None and i < len(cells) else ""

    product: dict[str, str] = {}
    images: list[str] = []
    variants: list[tuple[int, list[str]]] = []

    def flush() -> Iterator[Listing]:
        names = [product.get(f"option{n}_name", "") for n in (1, 2, 3)]
        for line, cells in variants:
            try:
                yield _csv_variant(cells, line, product, names, images)
            except BadRecord as e:
                bad(f"{name}:{line}", str(e))

    def _csv_variant(cells, line, product, names, images) -> Listing:
        handle = product["handle"]
        sku = get(cells, "sku") or None
        opt_values = [get(cells, f"option{n}_value") for n in (1, 2, 3)]
        attributes = _option_attributes(names, opt_values)
        for f in ("type", "tags", "status", "published"):
            if product.get(f):
                attributes[f if f != "type" else "product_type"] = product[f]
        if get(cells, "grams"):
            attributes["product_weight"] = f"{get(cells, 'grams')} g"
        where = f"{name}:{line}"
        bad: dict[str, str] = {}
        price = compare = None
        try:
            price = parse_money(get(cells, "price"), currency, dsep) if get(cells, "price") \
                else None
        except ValueError as e:
            bad["price"] = f"{where}: bad Variant Price {get(cells, 'price')!r}: {e}"
        try:
            compare = parse_money(get(cells, "compare"), currency, dsep) \
                if get(cells, "compare") else None
        except ValueError as e:
            # The compare-at price decides which of the two is the sale price.
            bad["price"] = bad["sale_price"] = (
                f"{where}: bad Variant Compare At Price {get(cells, 'compare')!r}: {e}")
            price = None
        sale = None
        if compare is not None and price is not None and compare.amount > price.amount:
            price, sale = compare, price
        qty = None
        avail = None
        if get(cells, "qty"):
            try:
                qty = parse_int(get(cells, "qty"), dsep)
            except ValueError as e:
                bad["quantity"] = f"{where}: {e} (Variant Inventory Qty)"
            if qty is not None:
                avail = availability_from_quantity(qty)
                if qty <= 0 and get(cells, "policy").lower() in ("continue", "true", "yes"):
                    avail = Availability.BACKORDER
        status = product.get("status", "").lower()
        if status in ("draft", "archived"):
            avail = Availability.OUT_OF_STOCK
        key = sku or f"{handle}:{'/'.join(v for v in opt_values if v and v != DEFAULT_TITLE) or 'default'}"
        vimg = get(cells, "variant_image")
        imgs = tuple(dict.fromkeys(u for u in [vimg, *images] if u))
        return make_listing(
            channel=channel, key=key, fetched_at=fetched_at, sku=sku,
            title=product.get("title") or None, description=_html_text(product.get("body")),
            brand=product.get("vendor") or None, gtin=_gtin(get(cells, "barcode"), attributes),
            price=price, sale_price=sale, quantity=qty, availability=avail, images=imgs,
            url=f"{store}/products/{quote(handle)}" if store else None,
            attributes=attributes, group_id=handle, evidence=where, unread=bad)

    for line, cells in rows:
        handle = get(cells, "handle")
        if not handle:
            if any(c.strip() for c in cells):
                (lost or bad)(f"{name}:{line}", "Handle: row has no handle")
            continue
        if handle != product.get("handle"):
            yield from flush()
            product = {f: get(cells, f) for f in ("handle", "title", "body", "vendor", "type",
                                                   "tags", "status", "published",
                                                   "option1_name", "option2_name",
                                                   "option3_name")}
            images, variants = [], []
        elif get(cells, "title") and get(cells, "title") != product.get("title"):
            bad(f"{name}:{line}", f"Title: handle {handle!r} repeats with another title; "
                                  f"read as a continuation row")
        img = get(cells, "image")
        if img and img not in images:
            images.append(img)
        if any(get(cells, f) for f in _VARIANT_FIELDS):
            variants.append((line, cells))
        # else: an image-only or blank continuation row
    yield from flush()


# ----------------------------------------------------------------------------- connector

@register_connector
class Shopify(Connector):
    """A Shopify store: /products.json (+ .js for barcodes) from a URL, or a CSV export file."""

    type = "shopify"
    help = "Shopify store: /products.json (and .js for barcodes) or the product CSV export."
    options = (
        Opt("barcodes", bool, False,
            "Also fetch /products/<handle>.js per product for barcodes (one request each)."),
        Opt("max_pages", int, 1000, "Stop after this many /products.json pages (250 each)."),
        Opt("store_url", str, None, "CSV export: the shop's address, to build product URLs."),
        Opt("decimal_separator", str, None, "CSV export: decimal separator of prices.",
            choices=(".", ",")),
        Opt("format", str, "auto", "auto (a URL is the storefront API, a file a CSV export), "
            "api or csv.", choices=("auto", "api", "csv")),
    )

    def read(self, ctx: SourceContext) -> Iterator[Listing]:
        """Every variant of the store (API) or of the export file (CSV) as a Listing."""
        src = self.channel.source or ""
        fmt = self.channel.opt("format", "auto")
        if fmt == "api" or (fmt == "auto" and is_url(src)
                            and not urlsplit(src).path.lower().endswith((".csv", ".csv.gz",
                                                                         ".zip"))):
            yield from dedupe(ctx, read_storefront(ctx, src), "variant id")
            return
        if not self.channel.opt("currency"):
            raise SourceError(self.channel.name, "a Shopify CSV export has no currency column: "
                              "set currency = \"EUR\" (or the like) on the channel")
        yield from dedupe(ctx, self._csv(ctx), "variant")

    def _csv(self, ctx: SourceContext) -> Iterator[Listing]:
        with ctx.files() as files:
            for sf in files:
                kind = sf.kind()
                if kind in ("html", "xml", "json", "xlsx"):
                    raise SourceError(sf.name, f"got {kind.upper()} where a Shopify product "
                                               f"CSV export was expected")
                header, rows = csvio.open_rows(sf, self.channel.opt("encoding", "auto"), ",",
                                               ctx.key_lost, ragged="report")
                if not header:
                    continue
                ctx.carries(*csv_carried(header, sf.name))
                yield from csv_listings(header, rows, sf.name, self.channel.name, ctx.now,
                                        self.channel.options, ctx.bad, ctx.key_lost)
