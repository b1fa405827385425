"""Product data from one HTML page: a pure function from bytes (or text) to values.

Methods in order of trust: JSON-LD, microdata and RDFa, OpenGraph, per-site CSS
selectors, and a heuristic read of the visible HTML. Each field comes from the
most trusted method that has it; ``Extraction.sources`` says which one.

Speed matters (a crawl extracts tens of thousands of pages), so JSON-LD blocks
are cut out of the raw text with a regular expression and the DOM is parsed
only when JSON-LD leaves a core field empty, selectors ask for one, or the page
may show a crossed-out regular price.
"""

from __future__ import annotations

import codecs
import html as htmllib
import json
import re
from dataclasses import dataclass, field, fields as dc_fields
from decimal import Decimal
from typing import Any, Iterable, Iterator, Mapping
from urllib.parse import parse_qs, urljoin, urlsplit

from auditor.model import Availability
from auditor.values import normalize_currency, parse_availability, parse_decimal

# Source labels. RDFa Lite shares microdata's tier and its label: the documented
# vocabulary is json-ld, microdata, opengraph, selector, heuristic.
JSON_LD, MICRODATA, OPENGRAPH, SELECTOR, HEURISTIC, JS_STATE = (
    "json-ld", "microdata", "opengraph", "selector", "heuristic", "js-state")
# How sure a value read by each method is; the candidate reader (heuristic, js-state)
# scores each of its fields itself.
CONFIDENCE = {JSON_LD: 0.95, MICRODATA: 0.9, OPENGRAPH: 0.85, SELECTOR: 1.0, HEURISTIC: 0.5,
              JS_STATE: 0.6}
from auditor.pagereader import LOW_CONFIDENCE  # noqa: E402,F401  (re-exported)
from auditor.pagereader import says_out_of_stock  # noqa: E402
RDFA = MICRODATA

# Fields JSON-LD must fill for the DOM not to be parsed at all.
CORE = ("title", "price", "currency", "availability")
SCALARS = ("title", "description", "price", "currency", "sale_price", "availability", "sku",
           "gtin", "mpn", "brand", "url")
ATTRIBUTES = ("color", "size", "material")
INHERITED = ("title", "description", "brand", "images", "currency")
MAX_TEXT = 8_000_000       # characters of HTML looked at
MAX_JSON_BLOCK = 2_000_000  # characters in one JSON-LD block
MAX_DEPTH = 24             # nesting walked in structured data
MAX_NODES = 20_000         # structured-data nodes walked per page


@dataclass
class Extraction:
    """What one page says about its product, and where each value came from."""

    title: str | None = None
    description: str | None = None
    price: Decimal | None = None
    currency: str | None = None
    sale_price: Decimal | None = None
    availability: Availability | None = None
    sku: str | None = None
    gtin: str | None = None
    mpn: str | None = None
    brand: str | None = None
    url: str | None = None
    images: list[str] = field(default_factory=list)
    attributes: dict[str, str] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)
    # field -> how sure the read is, 0..1 (CONFIDENCE by method; the candidate reader
    # scores its own); below LOW_CONFIDENCE a field never raises a failed finding
    confidence: dict[str, float] = field(default_factory=dict)
    # field -> a CSS selector (``selectors`` syntax) that would read it for certain
    hints: dict[str, str] = field(default_factory=dict)
    # distinct prices shown inside the product's main region (read by the candidate
    # reader), among which a linked master may choose
    region_prices: list[Decimal] = field(default_factory=list)
    # why the page is not a product page (category listing, soft 404), or why it could
    # not be seen (captcha, consent wall: ``blocked``)
    reason: str | None = None
    blocked: str | None = None
    # Variants of a ProductGroup page, each a complete Extraction.
    variants: list["Extraction"] = field(default_factory=list)
    group_id: str | None = None

    @property
    def is_product(self) -> bool:
        """Whether the page carried product data at all."""
        if self.blocked or self.reason:
            return False
        return bool(self.variants) or self.price is not None or (
            self.title is not None and bool(self.sources.get("title") in
                                            (JSON_LD, MICRODATA, SELECTOR))
            and any(self.sources.get(f) for f in ("sku", "gtin", "availability")))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (decimals as strings), for the HTTP cache."""
        d: dict[str, Any] = {}
        for f in dc_fields(self):
            v = getattr(self, f.name)
            if f.name == "variants":
                v = [x.to_dict() for x in v]
            elif isinstance(v, Decimal):
                v = str(v)
            elif isinstance(v, Availability):
                v = v.value
            elif f.name == "region_prices":
                v = [str(x) for x in v]
            d[f.name] = v
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Extraction":
        """The inverse of ``to_dict``."""
        kw = dict(d)
        for k in ("price", "sale_price"):
            if kw.get(k) is not None:
                kw[k] = Decimal(kw[k])
        if kw.get("availability") is not None:
            kw["availability"] = Availability(kw["availability"])
        kw["variants"] = [cls.from_dict(v) for v in kw.get("variants") or []]
        kw["region_prices"] = [Decimal(x) for x in kw.get("region_prices") or []]
        return cls(**{k: v for k, v in kw.items() if k in _EXTRACTION_FIELDS})

    def summary(self) -> dict[str, Any]:
        """The `auditor extract --json` shape."""
        return {"title": self.title, "price": None if self.price is None else str(self.price),
                "currency": self.currency,
                "availability": self.availability.value if self.availability else None,
                "sku": self.sku, "gtin": self.gtin, "mpn": self.mpn, "brand": self.brand,
                "images": list(self.images), "sources": dict(self.sources),
                "confidence": dict(self.confidence), "hints": dict(self.hints),
                "reason": self.blocked or self.reason}


_EXTRACTION_FIELDS = frozenset(f.name for f in dc_fields(Extraction))


# ============================================================================ decoding

_META_CHARSET = re.compile(rb"""<meta[^>]{0,200}?charset\s*=\s*["']?\s*([A-Za-z0-9_\-.:]+)""", re.I)
_HEADER_CHARSET = re.compile(r"charset\s*=\s*[\"']?([A-Za-z0-9_\-.:]+)", re.I)


def _codec(name: str | None) -> str | None:
    if not name:
        return None
    try:
        return codecs.lookup(name.strip()).name
    except LookupError:
        return None


def decode_html(data: bytes, content_type: str | None = None) -> tuple[str, str]:
    """Text of an HTML body and the encoding used.

    Valid UTF-8 wins over a declaration (a wrong ``charset`` is common); then the
    HTTP header's charset, the ``<meta>`` one, a detector, and Windows-1252.
    """
    for bom, enc in ((codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"),
                     (codecs.BOM_UTF16_BE, "utf-16")):
        if data.startswith(bom):
            return data.decode(enc, errors="replace"), enc
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError as e:
        # A body cut inside its last character, in a page that is UTF-8 before it.
        if e.start >= len(data) - 3 and e.reason == "unexpected end of data" and \
                max(data[:e.start], default=0) >= 0x80:
            return data[:e.start].decode("utf-8"), "utf-8"
    declared = []
    if content_type:
        m = _HEADER_CHARSET.search(content_type)
        if m:
            declared.append(m.group(1))
    mb = _META_CHARSET.search(data[:8192])
    if mb:
        declared.append(mb.group(1).decode("ascii", "replace"))
    for name in declared:
        codec = _codec(name)
        if codec and codec not in ("utf-8", "ascii"):
            try:
                return data.decode(codec), codec
            except UnicodeDecodeError:
                continue
    # Mostly-Latin bytes read as Windows-1252; other scripts go to a detector.
    sample = data[:65536]
    if sum(1 for b in sample if b >= 0x80) > 0.3 * len(sample):
        from charset_normalizer import from_bytes

        best = from_bytes(sample).best()
        if best is not None:
            return data.decode(best.encoding, errors="replace"), best.encoding
    return data.decode("cp1252", errors="replace"), "cp1252"


# ============================================================================ JSON-LD

_LD_BLOCK = re.compile(
    r"<script\b[^>]*?type\s*=\s*[\"']?application/ld\+json[\"']?[^>]*>(.*?)</script\s*>",
    re.I | re.S)
_TRAILING_COMMA = re.compile(r",(\s*[}\]])")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")


def loads_lenient(text: str) -> Any:
    """JSON as shops write it: trailing commas, HTML entities, raw control characters,
    comment and CDATA wrappers. Raises ValueError when nothing makes it parse."""
    s = text.strip()
    if len(s) > MAX_JSON_BLOCK:
        raise ValueError(f"JSON-LD block of {len(s)} characters is over the limit")
    for prefix, suffix in (("<!--", "-->"), ("<![CDATA[", "]]>"), ("//<![CDATA[", "//]]>")):
        if s.startswith(prefix) and s.endswith(suffix):
            s = s[len(prefix):-len(suffix)].strip()
    attempts = [s]
    fixed = _CONTROL.sub(" ", _TRAILING_COMMA.sub(r"\1", s))
    attempts.append(fixed)
    if "&" in s:
        attempts.append(_TRAILING_COMMA.sub(r"\1", htmllib.unescape(fixed)))
    last: Exception | None = None
    for a in attempts:
        try:
            return json.loads(a, parse_float=Decimal, strict=False)
        except RecursionError:
            try:
                return json.loads(prune_deep(a), parse_float=Decimal, strict=False)
            except (RecursionError, ValueError):
                raise ValueError("JSON-LD nested too deeply") from None
        except ValueError as e:
            last = e
            # Several objects written one after another: parse them as a list.
            try:
                return _concatenated(a)
            except (ValueError, RecursionError):
                pass
    raise ValueError(f"unparseable JSON-LD: {last}")


def prune_deep(s: str, limit: int = MAX_DEPTH * 2) -> str:
    """JSON text with every value nested deeper than ``limit`` replaced by null.

    Only used after the parser gave up on recursion: a hostile page must not
    hide the product that sits beside its deep junk.
    """
    out: list[str] = []
    depth = 0
    in_str = esc = False
    start = 0  # start of the pending kept run
    for i, ch in enumerate(s):
        if in_str:
            if esc:
                esc = False
            elif ch == "\\":
                esc = True
            elif ch == '"':
                in_str = False
            continue
        if ch == '"':
            in_str = True
        elif ch in "[{":
            depth += 1
            if depth == limit + 1:
                out.append(s[start:i])
                out.append("null")
        elif ch in "]}":
            if depth == limit + 1:
                start = i + 1
            depth -= 1
    if depth <= limit:
        out.append(s[start:])
    return "".join(out)


def _concatenated(s: str) -> list[Any]:
    dec = json.JSONDecoder(parse_float=Decimal, strict=False)
    out, i = [], 0
    while i < len(s):
        while i < len(s) and s[i] in " \t\r\n;,":
            i += 1
        if i >= len(s):
            break
        obj, i = dec.raw_decode(s, i)
        out.append(obj)
    if len(out) < 2:
        raise ValueError("not concatenated objects")
    return out


_SCRIPT_OPEN = re.compile(r"<script\b[^>]*>", re.I)
_SCRIPT_CLOSE = re.compile(r"</script\s*>", re.I)
_LD_TYPE = re.compile(r"type\s*=\s*[\"']?application/ld\+json", re.I)


def _odd_case_ld(text: str) -> bool:
    """Whether "LD+JSON" appears in another case (found by str.find, not by upper-casing
    the whole page)."""
    for probe in ("+json", "+JSON", "+Json"):
        i = text.find(probe)
        while i >= 0:
            if text[max(0, i - 2):i].lower() == "ld":
                return True
            i = text.find(probe, i + 5)
    return False


def _ld_texts(text: str) -> Iterator[str]:
    """The contents of each JSON-LD script element.

    ``str.find`` jumps to each "ld+json" (case variants are rare and caught by the
    regex fallback), so a large page costs microseconds, not a regex over every tag.
    """
    m: re.Match[str] | None
    lower_hit = text.find("ld+json") >= 0
    if not lower_hit and not _odd_case_ld(text):
        return
    if not lower_hit:  # odd case: use the regex over the whole page
        for m in _LD_BLOCK.finditer(text):
            yield m.group(1)
        return
    pos = 0
    while True:
        i = text.find("ld+json", pos)
        if i < 0:
            return
        start = text.rfind("<", 0, i)
        m = _SCRIPT_OPEN.match(text, start) if start >= 0 else None
        if m is None or m.end() <= i or not _LD_TYPE.search(m.group(0)):
            pos = i + 7
            continue
        end = _SCRIPT_CLOSE.search(text, m.end())
        if end is None:
            yield text[m.end():]
            return
        yield text[m.end():end.start()]
        pos = end.end()


def jsonld_blocks(text: str) -> tuple[list[Any], list[str]]:
    """Every parseable JSON-LD block of a page, and the reasons others were skipped."""
    blocks, problems = [], []
    for raw in _ld_texts(text):
        try:
            blocks.append(loads_lenient(raw))
        except ValueError as e:
            problems.append(str(e)[:200])
    return blocks, problems


def _types(node: Mapping[str, Any]) -> set[str]:
    t = node.get("@type")
    if t is None:
        return set()
    ts = t if isinstance(t, list) else [t]
    return {str(x).rsplit("/", 1)[-1].rsplit(":", 1)[-1] for x in ts}


PRODUCT_TYPES = {"Product", "ProductGroup", "IndividualProduct", "ProductModel", "SomeProducts"}


def _products(nodes: Iterable[Any]) -> list[dict]:
    """Product and ProductGroup nodes, outermost first; a product's own properties
    (related products, variants) are not searched, and the walk is bounded."""
    found: list[dict] = []
    budget = [MAX_NODES]

    def walk(n: Any, depth: int) -> None:
        if depth > MAX_DEPTH or budget[0] <= 0:
            return
        budget[0] -= 1
        if isinstance(n, list):
            for x in n:
                walk(x, depth + 1)
        elif isinstance(n, dict):
            if _types(n) & PRODUCT_TYPES:
                found.append(n)
                return
            for v in n.values():
                if isinstance(v, (dict, list)):
                    walk(v, depth + 1)

    for n in nodes:
        walk(n, 0)
    return found


# ============================================================================ interpretation

def _text(v: Any) -> str | None:
    """A plain string from a schema.org value (string, number, {name}, [first])."""
    depth = 0
    while isinstance(v, (list, dict)) and depth < 4:
        depth += 1
        if isinstance(v, list):
            v = v[0] if v else None
        else:
            v = v.get("name") or v.get("@value") or v.get("value") or v.get("@id")
    if v is None or isinstance(v, (list, dict)):
        return None
    s = re.sub(r"\s+", " ", htmllib.unescape(str(v))).strip()
    return s or None


def _urls(v: Any, base: str) -> list[str]:
    out: list[str] = []
    for x in (v if isinstance(v, list) else [v]):
        if isinstance(x, dict):
            x = x.get("contentUrl") or x.get("url") or x.get("@id")
            if isinstance(x, list):
                x = x[0] if x else None
        if isinstance(x, str) and x.strip():
            x = x.strip()
            if "&" in x:
                x = htmllib.unescape(x)
            # an absolute URL without dot segments is already what urljoin would give
            u = x if x.startswith(("https://", "http://")) and "/." not in x and \
                " " not in x else urljoin(base, x)
            if u not in out:
                out.append(u)
        if len(out) >= 50:
            break
    return out


def _decimal(v: Any) -> Decimal | None:
    if v is None or isinstance(v, bool):
        return None
    if isinstance(v, (int, Decimal)):
        d = Decimal(v)
        return d if d.is_finite() else None
    if isinstance(v, float):
        return Decimal(str(v))
    s = str(v).strip()
    if not s:
        return None
    try:
        return parse_decimal(s)
    except ValueError:
        from price_parser import Price

        p = Price.fromstring(s)
        return Decimal(p.amount) if p.amount is not None else None


def _currency(v: Any) -> str | None:
    s = _text(v)
    if not s:
        return None
    try:
        return normalize_currency(s)
    except ValueError:
        return None


# Words shops use beyond schema.org's vocabulary (OpenGraph's old "oos").
_AVAIL_ALIASES = {"oos": Availability.OUT_OF_STOCK, "available for order": Availability.BACKORDER,
                  "pending": Availability.PREORDER, "in_stock": Availability.IN_STOCK,
                  "out_of_stock": Availability.OUT_OF_STOCK}


def _availability(v: Any) -> Availability | None:
    s = _text(v)
    if not s:
        return None
    alias = _AVAIL_ALIASES.get(s.strip().lower())
    if alias is not None:
        return alias
    try:
        return parse_availability(s)
    except ValueError:
        return None


def _gtin(p: Mapping[str, Any]) -> str | None:
    for k in ("gtin", "gtin13", "gtin14", "gtin12", "gtin8", "isbn"):
        s = _text(p.get(k))
        if s:
            return re.sub(r"[\s\-]", "", s)
    return None


def _as_list(v: Any) -> list:
    if v is None:
        return []
    return v if isinstance(v, list) else [v]


def _offers(p: Mapping[str, Any]) -> list[dict]:
    out: list[dict] = []
    for o in _as_list(p.get("offers"))[:200]:
        if not isinstance(o, dict):
            continue
        if "AggregateOffer" in _types(o) and o.get("offers"):
            out += [x for x in _as_list(o["offers"])[:200] if isinstance(x, dict)]
            if not out:
                out.append(o)
        else:
            out.append(o)
    return out


def _variant_param(url: str | None) -> str | None:
    if not url:
        return None
    vals = parse_qs(urlsplit(url).query).get("variant")
    return vals[0] if vals else None


def _norm_id(s: str | None) -> str | None:
    if not s:
        return None
    return re.sub(r"[\s\-]", "", s).lstrip("0").lower() or "0"


def _matches(node: Mapping[str, Any], want: set[str], variant: str | None) -> bool:
    ids = {_norm_id(_text(node.get(k))) for k in ("sku", "mpn", "productID")}
    g = _gtin(node)
    if g:
        ids.add(_norm_id(g))
    if want & {i for i in ids if i}:
        return True
    if variant:
        for k in ("url", "@id"):
            u = node.get(k)
            if isinstance(u, str) and (_variant_param(u) == variant or u.rstrip("/").endswith(
                    "/" + variant) or u.endswith("#" + variant)):
                return True
        if _norm_id(_text(node.get("sku"))) == _norm_id(variant):
            return True
    return False


def _pick_offer(offers: list[dict], want: set[str], variant: str | None) -> dict | None:
    if not offers:
        return None
    for o in offers:
        if (want or variant) and _matches(o, want, variant):
            return o
    return offers[0]


def _price_specs(offer: Mapping[str, Any]) -> tuple[Decimal | None, Decimal | None, str | None]:
    """(selling price, crossed-out list price, currency) from an offer's priceSpecification."""
    sell = strike = None
    cur = None
    for ps in _as_list(offer.get("priceSpecification"))[:20]:
        if not isinstance(ps, dict):
            continue
        amount = _decimal(ps.get("price"))
        cur = cur or _currency(ps.get("priceCurrency"))
        kind = (_text(ps.get("priceType")) or "").rsplit("/", 1)[-1].lower()
        if kind in ("strikethroughprice", "listprice", "msrp", "srp"):
            strike = strike or amount
        elif sell is None:
            sell = amount
    return sell, strike, cur


def _shown(amount: Decimal | None, currency: str | None) -> Decimal | None:
    """A price as the page shows it: markup that carries an unrounded net-times-VAT
    amount (210.852001) is shown rounded to the currency's minor unit (210.85)."""
    if amount is None:
        return None
    from auditor.model import CURRENCY_MINOR_UNITS

    places = CURRENCY_MINOR_UNITS.get(currency or "", 2)
    exponent = amount.as_tuple().exponent  # "n", "N" or "F" for NaN and infinity
    if isinstance(exponent, int) and exponent < -places:
        from decimal import ROUND_HALF_UP

        return amount.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)
    return amount


def _fields(p: Mapping[str, Any], base: str, want: set[str], variant: str | None,
            parent: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Listing values from one schema.org Product (or variant) node."""
    f: dict[str, Any] = {}
    def get(k: str) -> Any:
        return p.get(k) if p.get(k) not in (None, "", []) else (parent.get(k) if parent else None)
    f["title"] = _text(get("name"))
    f["description"] = _text(get("description"))
    f["sku"] = _text(p.get("sku"))
    f["gtin"] = _gtin(p)
    f["mpn"] = _text(p.get("mpn"))
    f["brand"] = _text(get("brand")) or _text(get("manufacturer"))
    f["images"] = _urls(get("image"), base)
    f["url"] = next(iter(_urls(p.get("url"), base)), None)
    attrs = {}
    for a in ATTRIBUTES:
        s = _text(p.get(a))
        if s:
            attrs[a] = s
    for prop in _as_list(p.get("additionalProperty"))[:50]:
        if isinstance(prop, dict):
            name = (_text(prop.get("name")) or "").lower()
            if name in ATTRIBUTES and name not in attrs and (value := _text(prop.get("value"))):
                attrs[name] = value
    f["attributes"] = attrs
    # Some themes put price and currency on the Product itself, with no Offer.
    offers = _offers(p) or ([dict(p)] if p.get("price") is not None else []) or (
        _offers(parent) if parent else [])
    offer = _pick_offer(offers, want, variant)
    if offer is not None:
        price = _decimal(offer.get("price"))
        if price is None:
            price = _decimal(offer.get("lowPrice"))
        sell, strike, spec_cur = _price_specs(offer)
        if price is None:
            price = sell
        cur = _currency(offer.get("priceCurrency")) or spec_cur
        price, strike = _shown(price, cur), _shown(strike, cur)
        if strike is not None and price is not None and strike > price:
            f["price"], f["sale_price"] = strike, price
        else:
            f["price"] = price
        f["currency"] = cur
        f["availability"] = _availability(offer.get("availability"))
        f["sku"] = f["sku"] or _text(offer.get("sku"))
        f["gtin"] = f["gtin"] or _gtin(offer)
    return {k: v for k, v in f.items() if v not in (None, "", [], {})}


def _interpret(products: list[dict], base: str, sku: str | None,
               page_url: str | None) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The chosen product's values and, for a group page without a chosen variant,
    every variant's values."""
    if not products:
        return {}, []
    want = {x for x in (_norm_id(sku),) if x}
    variant = _variant_param(page_url)
    groups: list[tuple[dict, list[dict]]] = []
    singles: list[dict] = []
    for p in products:
        vs = [v for v in _as_list(p.get("hasVariant"))[:500] if isinstance(v, dict)]
        if vs:
            groups.append((p, vs))
        else:
            singles.append(p)
    # 1. anything matching the SKU/GTIN or variant parameter
    if want or variant:
        for g, vs in groups:
            for v in vs:
                if _matches(v, want, variant) or any(_matches(o, want, variant)
                                                     for o in _offers(v)):
                    return _with_group(_fields(v, base, want, variant, g), g), []
        for p in singles:
            if _matches(p, want, variant) or any(_matches(o, want, variant) for o in _offers(p)):
                return _fields(p, base, want, variant), []
    # 2. a group page without a chosen variant: every variant
    if groups:
        g, vs = groups[0]
        variants = [_with_group(_fields(v, base, want, variant, g), g) for v in vs]
        if len(variants) == 1:
            return variants[0], []
        top = _fields({k: v for k, v in g.items() if k != "offers"}, base, set(), None)
        for k in ("price", "currency", "availability", "sale_price"):
            vals = {str(v.get(k)) for v in variants}
            if len(vals) == 1 and variants[0].get(k) is not None:
                top[k] = variants[0][k]  # unambiguous: every variant agrees
        return _with_group(top, g), variants
    # 3. the product whose url is this page, else the first with an offer
    def same_page(p: dict) -> bool:
        u = p.get("url")
        return isinstance(u, str) and page_url is not None and \
            urljoin(base, u).split("#")[0].rstrip("/") == page_url.split("#")[0].rstrip("/")

    for pick in (same_page, lambda p: bool(_offers(p)), lambda p: True):
        for p in singles:
            if pick(p):
                return _fields(p, base, want, variant), []
    return {}, []


def _with_group(f: dict[str, Any], group: Mapping[str, Any]) -> dict[str, Any]:
    gid = _text(group.get("productGroupID")) or _text(group.get("sku"))
    if gid:
        f["group_id"] = gid
    return f


# ============================================================================ DOM methods

_XML_DECL = re.compile(r"^\s*<\?xml[^>]{0,200}\?>", re.I)
_HTML_PARSER = None


def _lxml_doc(text: str):
    """The page's tree (lxml.etree, no per-element Python class lookup), or None."""
    global _HTML_PARSER
    from lxml import etree

    if _HTML_PARSER is None:
        # huge_tree lifts libxml2's nesting limit, which otherwise drops the rest
        # of a page after 256 unclosed tags; the page size is capped already.
        _HTML_PARSER = etree.HTMLParser(huge_tree=True, remove_comments=True,
                                        remove_pis=True)
    try:
        # an XHTML page's <?xml encoding=...?> declaration is refused in a str
        root = etree.fromstring(_XML_DECL.sub("", text, count=1) or "<html></html>",
                                _HTML_PARSER)
    except Exception:  # lxml refuses some hostile documents outright
        return None
    if root is None:
        return None
    return root.getroottree().getroot()


def text_content(el) -> str:
    """All text inside an element (lxml.html's ``text_content`` for plain etree elements)."""
    return "".join(el.itertext())


def _dom_value(el) -> str | None:
    for attr in ("content",):
        v = el.get(attr)
        if v is not None:
            return v
    tag = el.tag if isinstance(el.tag, str) else ""
    if tag in ("a", "link", "area"):
        return el.get("href")
    if tag == "img" and (el.get("src") or "data:").strip().startswith("data:"):
        # a lazy-loaded image's placeholder (a 1x1 GIF): the large image it links to or
        # names (zoom link, hi-res attribute); else none (OpenGraph or the page say more)
        from auditor.pagereader import _img_url

        url, hires = _img_url(el, "")
        return url if hires else None
    if tag in ("img", "audio", "video", "source", "embed", "iframe"):
        return el.get("src")
    if tag in ("data", "meter", "input"):
        return el.get("value")
    if tag == "time":
        return el.get("datetime") or text_content(el)
    return text_content(el)


def _schema_items(doc, scope_attr: str, type_attr: str, prop_attr: str) -> list[dict]:
    """Microdata (itemscope/itemtype/itemprop) or RDFa Lite (typeof/property) items
    as JSON-LD-shaped dicts, so one interpreter reads all three."""
    items: list[dict] = []
    budget = [MAX_NODES]

    def prop_names(el) -> list[str]:
        raw = el.get(prop_attr) or ""
        out = []
        for n in raw.split():
            n = n.rsplit("/", 1)[-1].rsplit(":", 1)[-1] if ("schema" in n or "/" in n or
                                                              n.startswith("s:")) else n
            if ":" not in n:
                out.append(n)
        return out

    def item(el, depth: int) -> dict:
        node: dict[str, Any] = {"@type": [t.rsplit("/", 1)[-1].rsplit(":", 1)[-1]
                                          for t in (el.get(type_attr) or "").split()]}
        if depth < MAX_DEPTH:
            collect(el, node, depth)
        return node

    def collect(el, node: dict, depth: int) -> None:
        for ch in el.iterchildren():
            budget[0] -= 1
            if budget[0] <= 0 or not isinstance(ch.tag, str):
                continue
            names = prop_names(ch)
            nested = ch.get(scope_attr) is not None
            if names:
                val = item(ch, depth + 1) if nested else _dom_value(ch)
                for n in names:
                    if n in node:
                        node[n] = _as_list(node[n]) + [val]
                    else:
                        node[n] = val
            if not nested:
                collect(ch, node, depth + 1)

    for el in doc.xpath(f"//*[@{scope_attr}]"):  # found in C, not by walking every element
        if budget[0] <= 0:
            break
        if not isinstance(el.tag, str) or prop_names(el):
            continue
        if scope_attr == "typeof" and not (el.get("typeof") or "").strip():
            continue
        items.append(item(el, 0))
    return items


_META_TAG = re.compile(r"<meta\b[^>]{0,2000}>", re.I)
_META_ATTR = re.compile(r"""\b(property|name|content)\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s>]+))""",
                        re.I)


def _opengraph_text(text: str, base: str) -> dict[str, Any]:
    """OpenGraph from the raw head (the ``<meta>`` tags before ``</head>``), no DOM."""
    end = text.find("</head")
    head = text[:end if 0 <= end < 1_000_000 else 1_000_000]
    meta: dict[str, list[str]] = {}
    pos = 0
    while True:
        i = head.find("<meta", pos)
        if i < 0:
            i = head.find("<META", pos)
            if i < 0:
                break
        m = _META_TAG.match(head, i)
        pos = i + 5
        if m is None:
            continue
        attrs = {a.group(1).lower(): htmllib.unescape(a.group(2) if a.group(2) is not None else
                                                      a.group(3) if a.group(3) is not None
                                                      else a.group(4))
                 for a in _META_ATTR.finditer(m.group(0))}
        k = (attrs.get("property") or attrs.get("name") or "").strip().lower()
        if k.startswith(("og:", "product:")) and attrs.get("content") is not None:
            meta.setdefault(k, []).append(attrs["content"].strip())
    return _opengraph_meta(meta, base)


def _opengraph(doc, base: str) -> dict[str, Any]:
    meta: dict[str, list[str]] = {}
    for el in doc.iter("meta"):
        k = (el.get("property") or el.get("name") or "").strip().lower()
        if k.startswith(("og:", "product:")) and el.get("content") is not None:
            meta.setdefault(k, []).append(el.get("content").strip())
    return _opengraph_meta(meta, base)


def _opengraph_meta(meta: Mapping[str, list[str]], base: str) -> dict[str, Any]:

    def one(*keys: str) -> str | None:
        for k in keys:
            if meta.get(k) and meta[k][0]:
                return meta[k][0]
        return None

    f: dict[str, Any] = {}
    price = one("product:price:amount", "og:price:amount")
    sale = one("product:sale_price:amount")
    original = one("product:original_price:amount")
    is_product = (one("og:type") or "").lower().startswith("product") or price is not None
    if not is_product:
        return {}
    f["title"] = _text(one("og:title"))
    f["description"] = _text(one("og:description"))
    if sale and _decimal(sale) is not None:
        f["price"] = _decimal(original or price)
        f["sale_price"] = _decimal(sale)
    else:
        f["price"] = _decimal(price)
    f["currency"] = _currency(one("product:price:currency", "og:price:currency",
                                  "product:sale_price:currency"))
    f["availability"] = _availability(one("product:availability", "og:availability"))
    f["sku"] = _text(one("product:retailer_item_id", "product:sku"))
    f["brand"] = _text(one("product:brand", "og:brand"))
    f["gtin"] = _text(one("product:upc", "product:ean", "product:gtin", "product:isbn"))
    f["url"] = next(iter(_urls(one("og:url"), base)), None)
    f["images"] = _urls(meta.get("og:image", []), base)
    f["attributes"] = {a: _text(one(f"product:{a}")) for a in ATTRIBUTES if one(f"product:{a}")}
    return {k: v for k, v in f.items() if v not in (None, "", [], {})}


SELECTOR_FIELDS = ("title", "price", "sale_price", "currency", "availability", "sku", "gtin",
                   "mpn", "brand", "images", "description")


def split_selector(spec: str) -> tuple[str, str]:
    """``"css@attr"`` -> (css, attr); a trailing ``[...]`` belongs to the selector."""
    if "@" in spec and not spec.endswith("]"):
        sel, _, attr = spec.rpartition("@")
        return sel.strip(), attr.strip()
    return spec.strip(), ""


def _soup_value(el) -> str | None:
    """What an element says: content/href/src/value/datetime attribute, else its text."""
    if el.get("content") is not None:
        return el.get("content")
    for tags, attr in ((("a", "link", "area"), "href"),
                       (("img", "audio", "video", "source", "embed", "iframe"), "src"),
                       (("data", "meter", "input"), "value"), (("time",), "datetime")):
        if el.name in tags and el.get(attr):
            return el.get(attr)
    return el.get_text(" ")


def _selected(text: str, selectors: Mapping[str, str], base: str) -> dict[str, Any]:
    """Values picked by per-site CSS selectors (beautifulsoup4); ``sel@attr`` reads an
    attribute. Selectors were validated when the config was loaded."""
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(text, "lxml")
    f: dict[str, Any] = {}
    for name, spec in selectors.items():
        sel, attr = split_selector(spec)
        try:
            els = soup.select(sel, limit=50)
        except Exception:  # validated at load; a parser quirk must not stop the page
            continue
        found = [(el.get(attr) if attr else _soup_value(el)) for el in els]
        vals = [re.sub(r"\s+", " ", v).strip() for v in found if isinstance(v, str) and v.strip()]
        if not vals:
            continue
        if name == "images":
            f["images"] = _urls(vals, base)
        elif name in ("price", "sale_price"):
            f.update(_money_fields(vals[0], name))
        elif name == "currency":
            f["currency"] = _currency(vals[0])
        elif name == "availability":
            f["availability"] = _availability(vals[0]) or _availability_words(vals[0])
        elif name == "gtin":
            f["gtin"] = re.sub(r"[\s\-]", "", vals[0])
        else:
            f[name] = vals[0]
    return {k: v for k, v in f.items() if v not in (None, "", [], {})}


def _money_fields(text: str, name: str = "price") -> dict[str, Any]:
    from price_parser import Price

    p = Price.fromstring(text)
    out: dict[str, Any] = {}
    if p.amount is not None:
        out[name] = Decimal(p.amount)
    if p.currency:
        c = _currency(p.currency)
        if c:
            out["currency"] = c
    return out


# ---------------------------------------------------------------------------- heuristics

_AVAIL_WORDS = (
    (re.compile(r"\b(out of stock|sold out|currently unavailable|ausverkauft|épuisé|agotado)\b",
                re.I), Availability.OUT_OF_STOCK),
    (re.compile(r"\b(pre-?order)\b", re.I), Availability.PREORDER),
    (re.compile(r"\b(back-?order(ed)?)\b", re.I), Availability.BACKORDER),
    (re.compile(r"\b(in stock|add to (cart|bag|basket)|auf lager|en stock|buy now)\b", re.I),
     Availability.IN_STOCK),
)
_SKU_TEXT = re.compile(r"\b(?:SKU|Art(?:icle|ikel)?\.?[\s\-]*(?:No|Nr)\.?|Item\s*(?:No|#))\s*[:#]?\s*"
                       r"([A-Za-z0-9][A-Za-z0-9\-_./]{1,40})", re.I)
_OLD_NEAR = re.compile(r"(compare|was|old|regular|original|list|strike|before|rrp|uvp)[-_ ]{0,2}$"
                       r"|^[-_ ]{0,2}(was|old|compare|regular|original|before|strike)")
# Plain substring tests: a regex over an 80 KB page (even case-sensitive) took 1-2 ms.
_OLD_TAGS = ("<del", "<s>", "<s ", "<strike", "line-through")


_AMOUNT = re.compile(r"\d[\d.,\s\u00a0']*")


def _may_show_old_price(text: str, price: Decimal) -> bool:
    """Whether a crossed-out price may sit near where the page shows ``price``.

    Looks only at windows around the current price's text, so most pages skip the
    DOM; scanning a whole 80 KB page for markers cost a millisecond or more.
    """
    forms = {f"{price:.2f}", f"{price:.2f}".replace(".", ","), f"{price:,.2f}", str(price)}
    for form in forms:
        i = text.find(form)
        hits = 0
        while i >= 0 and hits < 20:
            hits += 1
            window = text[max(0, i - 600):i + 600].lower()
            if any(t in window for t in _OLD_TAGS):
                return True
            j = window.find("price")
            while j >= 0:
                if _OLD_NEAR.search(window[max(0, j - 13):j]) or \
                        _OLD_NEAR.search(window[j + 5:j + 17]):
                    return True
                j = window.find("price", j + 5)
            i = text.find(form, i + len(form))
    return False


def _availability_words(text: str) -> Availability | None:
    for rx, av in _AVAIL_WORDS:
        if rx.search(text):
            return av
    return None














_STRIP_BLOCKS = re.compile(r"<(script|style|noscript|template)\b.*?</\1\s*>", re.I | re.S)
_TAG = re.compile(r"<[^>]{0,2000}>")
_TEXT_PRICE = re.compile(r"(?:[€$£¥₹]|\b(?:EUR|USD|GBP|CHF|JPY)\b)\s?\d[\d.,]*"
                         r"|\d[\d.,]*\s?(?:[€$£¥₹]|\b(?:EUR|USD|GBP|CHF|JPY)\b)")


def _text_heuristic(text: str) -> dict[str, Any]:
    """The heuristic on tag-stripped text, for markup too broken for the parser."""
    visible = htmllib.unescape(_TAG.sub(" ", _STRIP_BLOCKS.sub(" ", text[:2_000_000])))
    f: dict[str, Any] = {}
    m = _TEXT_PRICE.search(visible)
    if m:
        f.update(_money_fields(m.group(0)))
    f.update(_text_facts(visible))
    return f


def _text_facts(visible: str) -> dict[str, Any]:
    """Availability and SKU as the visible text states them ("In stock", "SKU: …")."""
    f: dict[str, Any] = {}
    av = _availability_words(visible)
    if av:
        f["availability"] = av
    m = _SKU_TEXT.search(visible)
    if m:
        f["sku"] = m.group(1).rstrip(".")
    return f


_OLD_OPEN = re.compile(
    r"<(del|s|strike)\b[^>]{0,300}>"
    r"|<([a-z][a-z0-9]*)\b[^>]{0,300}?(?:class|id)\s*=\s*[\"'][^\"'>]{0,200}?"
    r"(?:(?:compare|was|old|regular|original|list|strike|before|rrp|uvp)[-_ ]{0,2}price"
    r"|price[-_ ]{0,2}(?:was|old|compare|regular|original|before|strike)|\bstrike\b)"
    r"[^\"'>]{0,200}[\"'][^>]{0,300}>"
    r"|<([a-z][a-z0-9]*)\b[^>]{0,300}?style\s*=\s*[\"'][^\"'>]{0,200}?line-through[^>]{0,300}>",
    re.I)


_BOUNDARY = re.compile(r"</?(section|aside|nav|footer|header|li|article|ul|ol|table|tr)\b")
_CLOSE = re.compile(r"</(div|p|span|dd|td)\s*>")


def _crossed_out(text: str, current: Decimal) -> Decimal | None:
    """A crossed-out regular price shown next to the current one (a sale).

    Read from the raw text around each place the current amount is written (1,200
    characters): an element that is crossed out (``<del>``, ``<s>``, line-through) or
    marked as the old price ("was"/"compare-at"/"regular" price classes) whose text is
    one amount above the current one. No DOM is built, so a JSON-LD page showing a
    sale costs microseconds.
    """
    forms = {f"{current:.2f}", f"{current:.2f}".replace(".", ","), f"{current:,.2f}",
             str(current)}
    for form in forms:
        i = text.find(form)
        hits = 0
        while i >= 0 and hits < 20:
            hits += 1
            lo = max(0, i - 600)
            window = text[lo:i + 600]
            low = window.lower()
            for m in _OLD_OPEN.finditer(window):
                tag = (m.group(1) or m.group(2) or m.group(3) or "").lower()
                end = low.find("</" + tag, m.end())
                inner = window[m.end():end if end > 0 else m.end() + 200]
                if lo + m.start() <= i < lo + (end if end > 0 else m.end() + 200):
                    continue  # the current price itself sits inside this element
                a, b = sorted((i - lo, m.start()))
                between = low[a:b]
                if _BOUNDARY.search(between) or len(_CLOSE.findall(between)) > 2:
                    continue  # another block (a tile, a section): not beside the price
                shown = re.sub(r"\s+", " ", htmllib.unescape(_TAG.sub(" ", inner))).strip()
                if not shown or len(shown) >= 60 or len(_AMOUNT.findall(shown)) != 1:
                    continue
                old = _money_fields(shown).get("price")
                if old is not None and old > current:
                    return old
            i = text.find(form, i + len(form))
    return None


# ============================================================================ extract

# how sure the buy box's own "out of stock" must be to overrule markup saying "in stock"
STALE_STOCK_CONFIDENCE = 0.7


def extract(html: bytes | str, url: str, sku: str | None = None,
            selectors: Mapping[str, str] | None = None,
            content_type: str | None = None) -> Extraction:
    """What a product page says: values from the most trusted method that has each."""
    text = decode_html(html, content_type)[0] if isinstance(html, (bytes, bytearray)) else html
    if len(text) > MAX_TEXT:
        text = text[:MAX_TEXT]
    base = url
    layers: list[tuple[str, dict[str, Any]]] = []
    blocks, _problems = jsonld_blocks(text)
    ld, variants = _interpret(_products(blocks), base, sku, url)
    variants_from = JSON_LD
    layers.append((JSON_LD, ld))
    # Core fields JSON-LD leaves empty; on a group page a field every variant carries
    # is not missing (the page-wide value is empty because the variants differ).
    wanted = [k for k in CORE if k not in ld and not (variants and all(k in v for v in variants))]
    sel_fields = [k for k in (selectors or {}) if k not in ld]
    # a crossed-out regular price near the JSON-LD price: read from the text, no DOM
    old_price = _crossed_out(text, ld["price"]) if "price" in ld and "sale_price" not in ld \
        and _may_show_old_price(text, ld["price"]) else None
    # JSON-LD naming no image at all: the page is looked at for one (rare, so cheap).
    needs_images = not ld.get("images") and not any(v.get("images") for v in variants)
    doc = None
    if wanted and not sel_fields and "itemscope" not in text and "typeof" not in text and \
            ("og:" in text or "product:" in text):
        # No microdata or RDFa to outrank it: a complete OpenGraph product in the head
        # needs no DOM at all.
        og = _opengraph_text(text, base)
        if og and all(k in og or k in ld for k in CORE) and og.get("images") and \
                (og.get("sku") or ld.get("sku")):
            layers.append((OPENGRAPH, og))
            wanted, needs_images = [], False
    # JSON-LD saying "in stock" on a page that shows an out-of-stock phrase somewhere:
    # the buy box is read (stale markup is common); pages without such a phrase, most
    # of them, still build no tree.
    stale_stock = not wanted and not variants and \
        ld.get("availability") is Availability.IN_STOCK and says_out_of_stock(text, ld.get("title"))
    if wanted or sel_fields or needs_images or stale_stock:
        doc = _lxml_doc(text.replace("\x00", ""))
    if doc is not None:
        base_el = doc.find(".//base[@href]")
        if base_el is not None:
            base = urljoin(url, base_el.get("href"))
        if wanted or sel_fields:
            for method, (scope, typ, prop) in ((MICRODATA, ("itemscope", "itemtype", "itemprop")),
                                               (RDFA, ("typeof", "typeof", "property"))):
                if scope not in text:
                    continue  # no such attribute anywhere: no tree walk
                items = _schema_items(doc, scope, typ, prop)
                got, vs = _interpret(_products(items), base, sku, url)
                if got:
                    layers.append((method, got))
                    if vs and not variants:
                        variants, variants_from = vs, method
            og = _opengraph(doc, base)
            if og:
                layers.append((OPENGRAPH, og))
            if selectors:
                sel = _selected(text, selectors, base)
                if sel:
                    layers.append((SELECTOR, sel))
    reader = None
    if doc is not None:
        have = _merge(layers)
        missing = [k for k in ("title", "price", "availability", "sku", "images")
                   if not (have.images if k == "images" else getattr(have, k) is not None)]
        # markup saying "in stock" is checked against the buy box: a visible "out of stock"
        # there wins over stale markup (the tree is parsed already, the walk is bounded)
        recheck = have.availability is Availability.IN_STOCK and not variants
        if (missing and not (variants and set(missing) <= {"sku", "price", "availability"})) \
                or recheck:
            from auditor.pagereader import read_page

            reader = read_page(doc, base, title_hint=have.title,
                               want=missing + (["availability"] if recheck else []), text=text)
            if not have.is_product and (reader.blocked or reader.not_product):
                pass  # nothing to read: the reason is set below
            else:
                for method in (HEURISTIC, JS_STATE):
                    vals = {k: v for k, v in reader.values.items()
                            if reader.sources.get(k, HEURISTIC) == method}
                    if vals:
                        layers.append((method, vals))
                if "price" in missing and not reader.values and not variants and \
                        not have.is_product:
                    # markup too broken for the tree: the tag-stripped text, unsure
                    layers.append((HEURISTIC, _text_heuristic(text)))
                    for k in layers[-1][1]:
                        reader.confidence.setdefault(k, 0.4)
    elif not ld and wanted:
        layers.append((HEURISTIC, _text_heuristic(text)))
    out = _merge(layers)
    for k, method in out.sources.items():
        out.confidence[k] = CONFIDENCE.get(method, 0.5)
    if reader is not None and out.availability is Availability.IN_STOCK and \
            out.sources.get("availability") not in (HEURISTIC, JS_STATE, None) and \
            reader.values.get("availability") is Availability.OUT_OF_STOCK and \
            reader.sources.get("availability", HEURISTIC) == HEURISTIC and \
            reader.confidence.get("availability", 0) >= STALE_STOCK_CONFIDENCE:
        out.availability = Availability.OUT_OF_STOCK
        out.sources["availability"] = HEURISTIC
    if reader is not None:
        for k, method in list(out.sources.items()):
            if method in (HEURISTIC, JS_STATE) and k in reader.confidence:
                out.confidence[k] = reader.confidence[k]
                if k in reader.hints:
                    out.hints[k] = reader.hints[k]
        if out.sources.get("price") == HEURISTIC:
            out.region_prices = list(reader.region_prices)
        if not out.is_product and (reader.blocked or reader.not_product):
            out.blocked, out.reason = reader.blocked, reader.not_product
    if doc is not None and not out.images and (out.price is not None or out.sku):
        # Structured data without an image, and none found on the page either: what
        # the page shows (recorded, so the image check can say so).
        out.sources["images"] = HEURISTIC
        out.confidence["images"] = reader.absent.get("images", CONFIDENCE[HEURISTIC]) \
            if reader is not None else CONFIDENCE[HEURISTIC]
    if out.price is not None and out.sale_price is None and \
            out.sources.get("price") not in (HEURISTIC, JS_STATE):
        old = old_price if out.sources.get("price") == JSON_LD else (
            _crossed_out(text, out.price) if _may_show_old_price(text, out.price) else None)
        if old is not None:
            out.sale_price, out.price = out.price, old
            out.sources["sale_price"] = out.sources["price"]
            out.sources["price"] = HEURISTIC
            out.confidence["sale_price"] = out.confidence.get("price", 0.5)
            out.confidence["price"] = 0.8
    # Variants inherit page-wide facts, never another variant's price or identity.
    shared = [(m, {k: x for k, x in vals.items() if k in INHERITED}) for m, vals in layers]
    out.variants = [_merge([(variants_from, v)] + shared) for v in variants]
    for v in out.variants:
        v.confidence = {k: out.confidence.get(k, CONFIDENCE.get(m, 0.5))
                        if m != variants_from else CONFIDENCE.get(m, 0.5)
                        for k, m in v.sources.items()}
    if any(v.images for v in out.variants):
        # The structured data gives variants images of their own: one given none shows none.
        for v in out.variants:
            if not v.images:
                v.sources["images"] = variants_from
    elif out.sources.get("images") == HEURISTIC and not out.images:
        for v in out.variants:  # the page was looked at: no variant's image is shown either
            if not v.images:
                v.sources["images"] = HEURISTIC
    if not out.currency and (out.price is not None or
                             any(v.price is not None and not v.currency for v in out.variants)):
        # a price without its currency (microdata with no priceCurrency, a buy box whose
        # sign sits apart): what the page's own prices show, then weak hints
        from auditor.pagereader import page_currency

        cur, conf = page_currency(text, out.price, urlsplit(url).hostname or "")
        if cur:
            for e in [out] + [v for v in out.variants if not v.currency]:
                e.currency = cur
                e.sources["currency"] = HEURISTIC
                e.confidence["currency"] = conf
    out.url = out.url or url
    return out


def _merge(layers: list[tuple[str, dict[str, Any]]]) -> Extraction:
    out = Extraction()
    for method, vals in layers:
        for k in SCALARS:
            v = vals.get(k)
            if v is not None and getattr(out, k) is None:
                setattr(out, k, v)
                out.sources[k] = method
        if vals.get("images") and not out.images:
            out.images = list(vals["images"])
            out.sources["images"] = method
        for a, v in (vals.get("attributes") or {}).items():
            if a not in out.attributes:
                out.attributes[a] = v
                out.sources.setdefault(a, method)
        if vals.get("group_id") and not out.group_id:
            out.group_id = vals["group_id"]
    # A sale price only makes sense with the price from the same method.
    if out.sale_price is not None and out.sources.get("sale_price") != out.sources.get("price"):
        out.sale_price = None
        out.sources.pop("sale_price", None)
    return out


def iter_listing_extractions(ex: Extraction) -> Iterator[Extraction]:
    """The extraction itself, or each variant of a group page."""
    if ex.variants:
        yield from ex.variants
    else:
        yield ex
