"""Each channel's view of a product, with labelled drift and benign variation.

``plan(world, product)`` returns, per channel, the listings the channel shows
for the product's variants (``View``), the findings a correct auditor must
report (``Label``) and the harmless differences it must not report
(``Benign``). Every decision comes from an RNG seeded with (seed, SKU,
channel), so the generator and the shop server agree without sharing state.
"""

from __future__ import annotations

import html
import random
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from auditor.world.catalog import (COLOUR_SYNONYMS, COLOURS, GHOST_LINES, GHOST_NOUNS,
                                   SIZE_SYNONYMS, SIZES, Product, Variant, fx, make_gtin13,
                                   money, sale_price, similarity, slugify)

VAT = Decimal("0.20")


@dataclass(frozen=True)
class ChannelSpec:
    """What one channel can show, hence which drift it can carry."""

    name: str
    type: str  # connector type
    currency: str
    title_max: int | None = None
    attributes: tuple[str, ...] = ()
    gtin: bool = True
    images: bool = True
    currency_in_price: bool = True
    sale_dates: bool = False  # shows a sale price with its window
    vat: bool = False
    decimal_comma: bool = False


CHANNELS: dict[str, ChannelSpec] = {c.name: c for c in (
    ChannelSpec("site", "site", "EUR", None, ("color", "size", "material")),
    ChannelSpec("google", "google_merchant", "EUR", 150,
                ("color", "size", "material", "weight", "width", "height", "length"),
                sale_dates=True),
    ChannelSpec("meta", "meta_catalog", "GBP", 200, ("color", "size", "material"), sale_dates=True),
    ChannelSpec("amazon", "amazon_listings", "EUR", 200, (), currency_in_price=False),
    ChannelSpec("shopify", "shopify", "EUR", None, (), gtin=False, currency_in_price=False),
    ChannelSpec("pos-berlin", "tabular", "EUR", None, (), images=False, currency_in_price=False,
                vat=True, decimal_comma=True),
    ChannelSpec("pos-munich", "tabular", "EUR", None, (), images=False, currency_in_price=False,
                vat=True),
)}

# check -> the kinds of drift it must catch (the vocabulary of labels.csv).
KINDS: dict[str, tuple[str, ...]] = {
    "title": ("wrong_title", "old_title"),
    "price": ("price_typo", "old_price", "currency_wrong", "sale_outside_window", "missing_sale"),
    "availability": ("wrong_availability", "oversell_risk"),
    "attributes": ("wrong_attribute", "wrong_unit_value"),
    "image": ("swapped_colour_image", "outdated_image", "missing_image"),
    "presence": ("missing_listing", "orphan_listing", "discontinued_listed"),
    "identifiers": ("invalid_gtin",),
}
CHECK_OF = {k: c for c, ks in KINDS.items() for k in ks}
BENIGN_KINDS = ("title_truncated", "brand_prefix", "html_entities", "case_punctuation",
                "vat_inclusive", "unit_conversion", "colour_synonym", "size_synonym",
                "image_resized", "image_recompressed", "image_webp", "image_padded")
IMAGE_BENIGN = {"image_resized": "-w400.jpg", "image_recompressed": "-q40.jpg",
                "image_webp": ".webp", "image_padded": "-sq.png"}
STRUCTURED_PAGES = ("jsonld", "group", "microdata")


@dataclass
class View:
    """One listing as a channel shows it (values already in the channel's terms)."""

    channel: str
    key: str
    sku: str
    title: str
    price: Decimal
    currency: str
    sale_price: Decimal | None = None
    sale_start: datetime | None = None
    sale_end: datetime | None = None
    in_stock: bool = True
    quantity: int = 0
    gtin: str | None = None
    attributes: dict[str, str] = field(default_factory=dict)
    images: list[str] = field(default_factory=list)  # URL paths
    path: str = ""  # URL path of the page
    brand: str = ""
    description: str = ""
    mpn: str = ""
    group_id: str = ""
    colour: str = ""
    size: str | None = None
    ghost: bool = False

    @property
    def shown_price(self) -> Decimal:
        """The one price a channel without sale fields shows."""
        return self.sale_price if self.sale_price is not None else self.price


@dataclass(frozen=True)
class Label:
    """One finding a correct audit reports."""

    channel: str
    sku: str
    listing_key: str
    check: str
    field: str
    kind: str


@dataclass(frozen=True)
class Benign:
    """One harmless difference a correct audit does not report."""

    channel: str
    sku: str
    listing_key: str
    field: str
    kind: str


@dataclass
class ChannelPlan:
    """One channel's listings for one product, with the truth about them."""

    views: list[View] = field(default_factory=list)
    labels: list[Label] = field(default_factory=list)
    benign: list[Benign] = field(default_factory=list)
    missing: set[str] = field(default_factory=set)  # SKUs left out on purpose


def fmt_number(d: Decimal) -> str:
    """A decimal without trailing zeros: 1.20 -> '1.2', 30 -> '30'."""
    s = format(d.normalize(), "f")
    return s


def master_attributes(p: Product, v: Variant) -> dict[str, str]:
    """The attribute columns of the master (with units)."""
    a = {"color": v.colour, "material": p.material, "weight": f"{fmt_number(p.weight_kg)} kg"}
    if v.size:
        a["size"] = v.size
    if p.dims_cm:
        a["width"], a["height"], a["length"] = (f"{d} cm" for d in p.dims_cm)
    return a


def listing_key(channel: str, p: Product, v: Variant) -> str:
    """The channel's own id for a variant's listing."""
    if channel == "shopify":
        return str(shopify_variant_id(p.index, v.index))
    return v.sku


def shopify_product_id(index: int) -> int:
    """Shopify-looking product id."""
    return 7_000_000_000_000 + index * 100


def shopify_variant_id(index: int, vi: int) -> int:
    """Shopify-looking variant id."""
    return 40_000_000_000_000 + index * 100 + vi


def truncate(title: str, limit: int | None) -> str:
    """Cut at the last word boundary within ``limit`` characters."""
    if limit is None or len(title) <= limit:
        return title
    cut = title[: limit + 1]
    cut = cut.rsplit(" ", 1)[0] if " " in cut else title[:limit]
    return cut.rstrip(" ,;-–")


def price_typo(p: Decimal, rng: random.Random) -> Decimal:
    """A mistyped price: digits swapped or a decimal point slipped; always clearly off."""
    digits = f"{p:.2f}".replace(".", "")
    for _ in range(5):
        choice = rng.randrange(3)
        if choice == 0 and len(digits) >= 3 and digits[0] != digits[1]:
            d = digits[1] + digits[0] + digits[2:]
            typo = Decimal(d[:-2] + "." + d[-2:])
        elif choice == 1:
            typo = p * 10
        else:
            typo = money(p / 10)
        if abs(typo - p) > p * Decimal("0.2"):
            return money(typo)
    return money(p * 10)


def ghost_view(seed: int, spec: ChannelSpec, p: Product, j: int, now: datetime) -> View:
    """An orphan: a listing for a product the master does not hold (titles never collide)."""
    r = random.Random(f"{seed}:{p.index}:{j}:{spec.name}:ghost")
    sku = f"X{p.brand_code}{p.index:07d}-{j}"
    title = f"{r.choice(GHOST_LINES)} {r.choice(GHOST_NOUNS)}"
    price = Decimal(r.randint(10, 90)) + Decimal("0.99")
    if spec.currency != "EUR":
        price = fx(price, spec.currency)
    if spec.vat:
        price = money(price * (1 + VAT))
    colour = r.choice(COLOURS)
    key = str(shopify_variant_id(p.index, 50 + j)) if spec.name == "shopify" else sku
    return View(channel=spec.name, key=key, sku=sku, title=title, price=price,
                currency=spec.currency, in_stock=True, quantity=r.randint(1, 30),
                gtin=make_gtin13("590", p.index * 16 + j) if spec.gtin else None,
                images=[f"/images/x{p.key}/{colour.lower()}-1.png"] if spec.images else [],
                path=f"/products/{slugify(title)}-{p.index}-x{j}?variant={sku}", brand=p.brand,
                description=f"{title}.", mpn=f"X-{p.index:06d}-{j}", group_id=f"X{p.group_id}",
                colour=colour, ghost=True, attributes={"color": colour})


def base_view(spec: ChannelSpec, p: Product, v: Variant, now: datetime,
              override: str | None) -> View:
    """The correct listing: master values in the channel's currency, tax and units."""
    cur = spec.currency
    price = fx(v.price, cur)
    sp = start = end = None
    if p.sale == "active" or (p.sale == "future" and spec.sale_dates):
        sp = fx(sale_price(v.price), cur)
        if spec.sale_dates:
            start, end = p.sale_start, p.sale_end
    if spec.vat:
        price = money(price * (1 + VAT))
        sp = money(sp * (1 + VAT)) if sp is not None else None
    attrs = {k: val for k, val in master_attributes(p, v).items() if k in spec.attributes}
    qty = v.quantity
    if spec.vat:  # each store holds its share of the stock (at least one when any)
        qty = (qty + 1) // 2 if spec.name == "pos-berlin" else qty // 2
    return View(channel=spec.name, key=listing_key(spec.name, p, v), sku=v.sku,
                title=override or v.title, price=price, currency=cur, sale_price=sp,
                sale_start=start, sale_end=end, in_stock=v.quantity > 0, quantity=qty,
                gtin=v.gtin if spec.gtin else None, attributes=attrs,
                images=list(v.images) if spec.images else [], path=p.variant_path(v),
                brand=p.brand, description=p.description, mpn=v.mpn, group_id=p.group_id,
                colour=v.colour, size=v.size)


def _applicable(kind: str, spec: ChannelSpec, p: Product, v: Variant) -> bool:
    structured = spec.name != "site" or p.page_kind in STRUCTURED_PAGES
    with_images = spec.images and (spec.name != "site" or p.page_kind != "plain")
    single = len(p.variants) == 1 or spec.name != "shopify"
    if kind == "wrong_title":
        return single
    if kind == "old_title":
        return single and v.prev_title != v.title
    if kind in ("price_typo", "currency_wrong", "old_price"):
        if p.sale is not None:
            return False
        if kind == "currency_wrong":
            return spec.currency_in_price
        return kind == "price_typo" or v.prev_price != v.price
    if kind == "sale_outside_window":
        return p.sale in ("future", "past")
    if kind == "missing_sale":
        return p.sale == "active"
    if kind == "wrong_availability":
        return v.quantity > 0
    if kind == "oversell_risk":
        return v.quantity == 0
    if kind == "wrong_attribute":
        return structured and any(a in spec.attributes for a in ("color", "material")) or \
            (structured and "size" in spec.attributes and v.size is not None)
    if kind == "wrong_unit_value":
        return "weight" in spec.attributes
    if kind == "swapped_colour_image":
        return with_images and len({x.colour for x in p.variants}) > 1
    if kind == "outdated_image":
        return with_images
    if kind == "missing_image":
        return with_images and spec.name != "shopify"
    if kind in ("missing_listing", "orphan_listing"):
        return True
    if kind == "invalid_gtin":
        return spec.gtin and structured
    return False


def choose_drift(rng: random.Random, spec: ChannelSpec, p: Product, v: Variant,
                 rate: float) -> str | None:
    """The drift kind planted on this listing, or None: pick a check, then one of its kinds."""
    if rng.random() >= rate:
        return None
    if v.status != "active":
        return "discontinued_listed"
    options = []
    for kinds in KINDS.values():
        ks = [k for k in kinds if _applicable(k, spec, p, v)]
        if ks:
            options.append(ks)
    ks = rng.choice(options)
    return rng.choice(ks)


def _other_title(world_seed: int, p: Product, v: Variant, rng: random.Random) -> str:
    for _ in range(10):
        title = f"{rng.choice(GHOST_LINES)} {rng.choice(GHOST_NOUNS)}, {rng.choice(COLOURS)}"
        if similarity(title, v.title) < 60:
            return title
    return f"Gift Card {p.index}"


def _apply_drift(kind: str, view: View, spec: ChannelSpec, p: Product, v: Variant,
                 rng: random.Random, seed: int) -> str:
    """Change ``view`` so it shows ``kind``; return the field the finding is about."""
    vat = (1 + VAT) if spec.vat else Decimal(1)
    if kind == "wrong_title":
        view.title = _other_title(seed, p, v, rng)
        return "title"
    if kind == "old_title":
        view.title = v.prev_title
        return "title"
    if kind == "price_typo":
        view.price = price_typo(view.price, rng)
        return "price"
    if kind == "old_price":
        view.price = money(fx(v.prev_price, spec.currency) * vat)
        return "price"
    if kind == "currency_wrong":
        view.currency = "USD" if spec.currency == "EUR" else "EUR"
        return "price"
    if kind == "sale_outside_window":
        view.sale_price = money(fx(sale_price(v.price), spec.currency) * vat)
        view.sale_start = view.sale_end = None
        return "sale_price"
    if kind == "missing_sale":
        view.sale_price = view.sale_start = view.sale_end = None
        return "sale_price"
    if kind == "wrong_availability":
        view.in_stock, view.quantity = False, 0
        return "availability"
    if kind == "oversell_risk":
        view.in_stock, view.quantity = True, rng.randint(3, 25)
        return "availability"
    if kind == "wrong_attribute":
        names: list[str] = [a for a in ("color", "size", "material") if a in view.attributes]
        name = rng.choice(names)
        if name == "color":
            bad = [c for c in COLOURS if c != v.colour and COLOUR_SYNONYMS.get(c) != v.colour]
            view.attributes[name] = rng.choice(bad)
        elif name == "size":
            view.attributes[name] = rng.choice([s for s in SIZES if s != v.size])
        else:
            view.attributes[name] = rng.choice([m for m in ("Polyester", "Plastic", "Acrylic",
                                                            "Aluminium") if m != p.material])
        return name
    if kind == "wrong_unit_value":
        names = [a for a in ("weight", "width", "height", "length") if a in view.attributes]
        name = rng.choice(names)
        number, unit = view.attributes[name].split()
        if rng.random() < 0.5:  # the unit changed but the number was not converted
            view.attributes[name] = f"{number} {'lb' if unit == 'kg' else 'in'}"
        else:  # the number typed in the wrong unit (grams as kilograms, mm as cm)
            view.attributes[name] = f"{fmt_number(Decimal(number) * 10)} {unit}"
        return name
    if kind == "swapped_colour_image":
        other = rng.choice(sorted({x.colour for x in p.variants} - {v.colour}))
        view.images = [u.replace(f"/{v.colour.lower()}-", f"/{other.lower()}-") for u in view.images]
        return "image"
    if kind == "outdated_image":
        view.images[0] = view.images[0].replace(".png", "-old.png")
        return "image"
    if kind == "missing_image":
        view.images = []
        return "image"
    if kind == "discontinued_listed":
        view.in_stock, view.quantity = False, 0
        return "listing"
    if kind == "invalid_gtin":
        g = view.gtin or v.gtin
        view.gtin = g[:-1] + str((int(g[-1]) + 1 + rng.randrange(8)) % 10)
        return "gtin"
    raise ValueError(f"unknown drift kind {kind!r}")


def _benign_options(spec: ChannelSpec, p: Product, view: View) -> list[str]:
    out = []
    if spec.name != "shopify":
        out.append("case_punctuation")
        if spec.name not in ("pos-berlin", "pos-munich"):
            if not view.title.startswith(p.brand):
                out.append("brand_prefix")
            if "&" in view.title or not view.title.isascii():
                out.append("html_entities")
    if "weight" in view.attributes:
        out.append("unit_conversion")
    if view.attributes.get("color") in COLOUR_SYNONYMS:
        out.append("colour_synonym")
    if view.attributes.get("size") in SIZE_SYNONYMS:
        out.append("size_synonym")
    if view.images and (spec.name != "site" or p.page_kind != "plain"):
        out += list(IMAGE_BENIGN)
    return out


def _apply_benign(kind: str, view: View, p: Product, rng: random.Random) -> list[str]:
    """Change ``view`` harmlessly; return the fields touched."""
    if kind == "case_punctuation":
        t = view.title
        view.title = rng.choice([x for x in (t.upper(), t.replace(", ", " - "),
                                             t.replace(",", ""), t.lower() + "!") if x != t])
        return ["title"]
    if kind == "brand_prefix":
        view.title = f"{p.brand} {view.title}"
        return ["title"]
    if kind == "html_entities":
        view.title = html.escape(view.title, quote=False).encode("ascii", "xmlcharrefreplace") \
            .decode()
        return ["title"]
    if kind == "unit_conversion":
        touched: list[str] = []
        for name in ("weight", "width", "height", "length"):
            if name in view.attributes:
                number, unit = view.attributes[name].split()
                d = Decimal(number)
                view.attributes[name] = (f"{money(d * Decimal('2.20462'))} lb" if unit == "kg"
                                         else f"{money(d / Decimal('2.54'))} in")
                touched.append(name)
        return touched
    if kind == "colour_synonym":
        view.attributes["color"] = COLOUR_SYNONYMS[view.attributes["color"]]
        return ["color"]
    if kind == "size_synonym":
        view.attributes["size"] = SIZE_SYNONYMS[view.attributes["size"]]
        return ["size"]
    if kind in IMAGE_BENIGN:
        view.images = [u.replace(".png", IMAGE_BENIGN[kind]) for u in view.images]
        return ["image"]
    raise ValueError(f"unknown benign kind {kind!r}")


def plan_channel(seed: int, spec: ChannelSpec, p: Product, now: datetime, drift_rate: float,
                 benign_rate: float, overrides: dict[str, dict[str, str]]) -> ChannelPlan:
    """One channel's listings of product ``p`` with their labels."""
    out = ChannelPlan()
    for v in p.variants:
        rng = random.Random(f"{seed}:{v.sku}:{spec.name}")
        kind = choose_drift(rng, spec, p, v, drift_rate)
        if v.status != "active" and kind is None:
            continue  # a discontinued product correctly off the channel
        view = base_view(spec, p, v, now, overrides.get(v.sku, {}).get(spec.name))
        if kind == "missing_listing":
            out.missing.add(v.sku)
            out.labels.append(Label(spec.name, v.sku, view.key, "presence", "listing", kind))
            continue
        if kind == "orphan_listing":
            g = ghost_view(seed, spec, p, v.index, now)
            out.labels.append(Label(spec.name, g.sku, g.key, "presence", "listing", kind))
            kind_for_view = None
        else:
            kind_for_view = kind
        if kind_for_view:
            fld = _apply_drift(kind_for_view, view, spec, p, v, rng, seed)
            out.labels.append(Label(spec.name, v.sku, view.key, CHECK_OF[kind_for_view], fld,
                                    kind_for_view))
        elif rng.random() < benign_rate and v.status == "active":
            opts = _benign_options(spec, p, view)
            if opts:
                b = rng.choice(opts)
                for fld in _apply_benign(b, view, p, rng):
                    out.benign.append(Benign(spec.name, v.sku, view.key, fld, b))
        if spec.vat:
            out.benign.append(Benign(spec.name, v.sku, view.key, "price", "vat_inclusive"))
        short = truncate(view.title, spec.title_max)
        if short != view.title:
            view.title = short
            if not (kind_for_view and CHECK_OF[kind_for_view] == "title"):
                out.benign.append(Benign(spec.name, v.sku, view.key, "title", "title_truncated"))
        out.views.append(view)
        if kind == "orphan_listing":
            out.views.append(g)
    return out


def overrides_for(p: Product) -> dict[str, dict[str, str]]:
    """Approved per-channel titles (``title@google``, ``title@amazon``) for a few SKUs."""
    out: dict[str, dict[str, str]] = {}
    r = random.Random(f"override:{p.index}")
    if r.random() < 0.04:
        for v in p.variants:
            parts = [p.brand, p.line, p.noun, "-", p.material, "-", v.colour]
            if v.size:
                parts += ["- size", v.size]
            out[v.sku] = {"google": " ".join(parts),
                          "amazon": f"{p.brand} {p.noun} {p.line} ({v.colour}{', ' + v.size if v.size else ''})"}
    return out


def plan(seed: int, p: Product, now: datetime, drift_rate: float, benign_rate: float,
         channels: list[str] | None = None) -> dict[str, ChannelPlan]:
    """Every channel's plan for product ``p``."""
    ov = overrides_for(p)
    return {name: plan_channel(seed, spec, p, now, drift_rate, benign_rate, ov)
            for name, spec in CHANNELS.items() if channels is None or name in channels}
