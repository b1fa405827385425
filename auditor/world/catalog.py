"""The generated master catalog: products, their colour/size variants, prices and stock.

Every product is a pure function of ``(seed, index)``: the generator streams
products one by one and the shop server regenerates any product on demand from
its index, so a world of a million SKUs never has to sit in memory.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from functools import lru_cache
from typing import Iterator

from auditor.values import gtin_check_digit

CENT = Decimal("0.01")
FX = {"USD": Decimal("1.08"), "GBP": Decimal("0.86")}  # EUR -> other currencies

BRANDS = [("Acme", "AC"), ("Northwind", "NW"), ("Fjällräv", "FJ"), ("Maison Côté", "MC"),
          ("Globex", "GX"), ("Umbrella & Co", "UC"), ("Initech", "IT"), ("Hooli", "HO")]
# GS1 company prefixes per brand (7 digits), so GTINs look like real EAN-13s.
BRAND_PREFIX = ["4006381", "5012345", "7311234", "3760123", "8712345", "5060123", "4251234",
                "8437012"]

LINES = ["Alpine", "Coastal", "Meridian", "Harbor", "Summit", "Prairie", "Aurora", "Cascade",
         "Tundra", "Sierra", "Willow", "Ember", "Lumen", "Orchard", "Granite", "Breeze",
         "Canyon", "Fjord", "Juniper", "Marlow", "Nimbus", "Oakridge", "Pioneer", "Quarry",
         "Redwood", "Solstice", "Thistle", "Vantage", "Wren", "Zenith", "Crème", "Café"]
# Names a product line carried before a rename: "old title" drift shows these.
OLD_LINES = ["Classic", "Heritage", "Original", "Legacy Series", "Edition One", "Standard",
             "Basic Range", "First Generation"]
APPAREL = [("Hoodie", ["Merino Wool", "Organic Cotton", "Fleece", "Recycled Polyester"]),
           ("T-Shirt", ["Organic Cotton", "Linen", "Bamboo Jersey"]),
           ("Rain Jacket", ["Recycled Nylon", "Waxed Cotton", "Gore-Tex"]),
           ("Chinos", ["Cotton Twill", "Stretch Cotton"]),
           ("Sweater", ["Merino Wool", "Cashmere Blend", "Lambswool"]),
           ("Running Shorts", ["Recycled Polyester", "Nylon"]),
           ("Parka", ["Down & Feather", "Recycled Nylon"]),
           ("Polo Shirt", ["Piqué Cotton", "Organic Cotton"])]
HOME = [("Table Lamp", ["Brass", "Ceramic", "Oak"]), ("Cushion Cover", ["Linen", "Velvet"]),
        ("Storage Basket", ["Seagrass", "Cotton Rope"]), ("Serving Bowl", ["Stoneware", "Acacia"]),
        ("Throw Blanket", ["Wool", "Cotton"]), ("Salt & Pepper Mill", ["Beech", "Steel"]),
        ("Vase", ["Glass", "Stoneware"]), ("Desk Organiser", ["Bamboo", "Felt"])]
ACCESSORIES = [("Backpack", ["Canvas", "Recycled Nylon"]), ("Water Bottle", ["Stainless Steel"]),
               ("Wallet", ["Full-Grain Leather", "Cork"]), ("Beanie", ["Merino Wool"]),
               ("Umbrella", ["Fibreglass"]), ("Sunglasses Case", ["Leather"])]
# Words orphan listings are made of: none of them occur in the master catalog,
# so an orphan can never be linked to a master by title.
GHOST_LINES = ["Zephyr", "Quokka", "Xylo", "Yonder", "Kestrel", "Mistral", "Pampas", "Sirocco"]
GHOST_NOUNS = ["Hammock", "Fondue Set", "Snorkel Mask", "Kite", "Telescope", "Ukulele",
               "Bird Feeder", "Chess Board"]

COLOURS = ["Black", "White", "Grey", "Navy", "Burgundy", "Beige", "Olive", "Red", "Blue",
           "Green", "Teal", "Orange", "Pink", "Brown", "Yellow", "Purple"]
COLOUR_CODE = {c: ("GRY" if c == "Grey" else c[:3].upper()) for c in COLOURS}
SIZES = ["S", "M", "L", "XL"]
# Accepted spellings a channel may use instead of the master's (benign variation).
COLOUR_SYNONYMS = {"Grey": "Gray", "Navy": "Navy Blue", "Burgundy": "Bordeaux", "Beige": "Sand"}
SIZE_SYNONYMS = {"S": "Small", "M": "Medium", "L": "Large", "XL": "Extra Large"}
LONG_PHRASES = ["designed for everyday comfort and built to last through years of regular use",
                "with reinforced seams, a relaxed fit and a soft brushed finish on the inside",
                "made in small batches by a family-run workshop using traditional techniques",
                "ideal for travel, commuting and weekend adventures in changing weather",
                "certified to strict environmental standards and packed without plastic"]


def _rng(seed: int, *parts: object) -> random.Random:
    return random.Random(":".join(str(p) for p in (seed,) + parts))


def money(x: Decimal | float | str) -> Decimal:
    """Round half-up to cents."""
    return Decimal(str(x)).quantize(CENT, rounding=ROUND_HALF_UP)


def slugify(text: str) -> str:
    """Lowercase ASCII words joined by dashes, for handles."""
    import unicodedata

    s = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", s.lower()).strip("-")


def make_gtin13(prefix: str, number: int) -> str:
    """A GTIN-13 with a valid check digit: a 3-digit GS1 prefix + a unique 9-digit number."""
    body = f"{prefix[:3]}{number % 10**9:09d}"
    return body + str(gtin_check_digit(body))


@dataclass
class Variant:
    """One SKU: a colour/size of a product, with its own price, stock and images."""

    sku: str
    index: int  # position within the product
    colour: str
    size: str | None
    title: str
    gtin: str
    mpn: str
    price: Decimal  # EUR
    quantity: int
    status: str  # active | discontinued
    images: list[str]  # URL paths under /images/
    prev_title: str  # the master title a week before `now`
    prev_price: Decimal


@dataclass
class Product:
    """One product (an item group) with its variants."""

    index: int
    key: str  # image key: colour variants share the shape drawn for it
    group_id: str
    handle: str
    brand: str
    brand_code: str
    category: str  # apparel | home | accessories
    base_title: str
    description: str
    material: str
    weight_kg: Decimal
    dims_cm: tuple[int, int, int] | None  # width, height, length
    sale: str | None  # None | active | future | past
    sale_start: datetime | None
    sale_end: datetime | None
    page_kind: str  # jsonld | group | microdata | opengraph | plain
    lastmod: datetime
    line: str = ""
    noun: str = ""
    variants: list[Variant] = field(default_factory=list)

    @property
    def path(self) -> str:
        """URL path of the product page."""
        return f"/products/{self.handle}"

    def variant_path(self, v: Variant) -> str:
        """URL path of one variant (the master URL)."""
        return f"{self.path}?variant={v.sku}"


def fx(eur: Decimal, currency: str) -> Decimal:
    """The EUR amount in another currency (rounded to cents)."""
    return eur if currency == "EUR" else money(eur * FX[currency])


def sale_price(p: Decimal) -> Decimal:
    """The sale price of a regular price: 20% off, rounded to cents."""
    return money(p * Decimal("0.8"))


def _nice_price(rng: random.Random) -> Decimal:
    base = rng.choice([9, 14, 19, 24, 29, 39, 49, 59, 79, 99, 129, 149, 199, 249])
    return Decimal(base) + rng.choice([Decimal("0.99"), Decimal("0.95"), Decimal("0.00"),
                                       Decimal("0.50")])


def _title(base: str, colour: str | None, size: str | None) -> str:
    return ", ".join(x for x in (base, colour, size) if x)


def old_base_title(seed: int, product_index: int, base: str) -> str:
    """The name a product line had before its rename: clearly different from ``base``."""
    rng = _rng(seed, product_index, "oldtitle")
    for _ in range(20):
        cand = f"{rng.choice(OLD_LINES)} {rng.choice(GHOST_LINES)} {rng.choice(GHOST_NOUNS)}"
        if similarity(cand, base) < 60:
            return cand
    return f"Discontinued Model {product_index}"


def normalize(s: str) -> str:
    """Casefolded words, as the title check compares them."""
    import html
    import unicodedata

    s = unicodedata.normalize("NFKC", html.unescape(html.unescape(s))).casefold()
    return " ".join(re.sub(r"[^\w\s]+|[™®©]", " ", s).split())


def similarity(a: str, b: str) -> float:
    """rapidfuzz ratio (0-100) of two normalized titles."""
    from rapidfuzz import fuzz

    return fuzz.ratio(normalize(a), normalize(b))


def make_product(seed: int, index: int, now: datetime, max_variants: int | None = None) -> Product:
    """Product ``index`` of the world with ``seed``; at most ``max_variants`` variants."""
    rng = _rng(seed, index, "product")
    bi = rng.randrange(len(BRANDS))
    brand, bcode = BRANDS[bi]
    r = rng.random()
    category = "apparel" if r < 0.45 else ("home" if r < 0.8 else "accessories")
    pool = {"apparel": APPAREL, "home": HOME, "accessories": ACCESSORIES}[category]
    noun, materials = rng.choice(pool)
    material = rng.choice(materials)
    line = rng.choice(LINES)
    base = f"{line} {material} {noun}"
    if rng.random() < 0.07:  # long catalogue titles that channels must truncate
        base = f"{base} {rng.choice(LONG_PHRASES)}, {rng.choice(LONG_PHRASES)}"
        if rng.random() < 0.5:
            base += f", {rng.choice(LONG_PHRASES)}"
    if category == "apparel":
        colours = rng.sample(COLOURS, rng.randint(1, 3))
        sizes: list[str | None] = list(SIZES[: rng.randint(2, 4)]) if rng.random() < 0.8 else list(SIZES)
        weight = money(Decimal(rng.randint(2, 15)) / 10)
        dims = None
    elif category == "home":
        colours = rng.sample(COLOURS, rng.randint(1, 4))
        sizes = [None]
        weight = money(Decimal(rng.randint(5, 120)) / 10)
        dims = (rng.randint(10, 60), rng.randint(10, 80), rng.randint(10, 60))
    else:
        colours = [rng.choice(COLOURS)]
        sizes = [None]
        weight = money(Decimal(rng.randint(1, 20)) / 10)
        dims = (rng.randint(5, 40), rng.randint(5, 50), rng.randint(2, 20))
    r = rng.random()
    sale = None
    start = end = None
    if r < 0.27:
        sale = ("active", "future", "past")[int(r / 0.09)]
        d = timedelta(days=rng.randint(2, 10), hours=rng.randint(0, 23))
        if sale == "active":
            start, end = now - d, now + timedelta(days=rng.randint(2, 14))
        elif sale == "future":
            start = now + d
            end = start + timedelta(days=rng.randint(3, 14))
        else:
            end = now - d
            start = end - timedelta(days=rng.randint(3, 14))
        start, end = start.replace(minute=0, second=0, microsecond=0), \
            end.replace(minute=0, second=0, microsecond=0)
    multi = len(colours) * len(sizes) > 1
    pr = rng.random()
    if multi and pr < 0.3:
        page_kind = "group"
    else:
        page_kind = ("jsonld", "jsonld", "jsonld", "microdata", "opengraph", "plain")[rng.randrange(6)]
    handle = f"{slugify(f'{line} {material} {noun}')}-{index}"
    p = Product(index=index, key=f"p{index:07d}", group_id=f"{bcode}{index:07d}", handle=handle,
                brand=brand, brand_code=bcode, category=category, base_title=base,
                description=(f"The {base} by {brand}: {material.lower()}, "
                             f"{rng.choice(LONG_PHRASES)}."),
                material=material, weight_kg=weight, dims_cm=dims, sale=sale, sale_start=start,
                sale_end=end, page_kind=page_kind,
                lastmod=(now - timedelta(days=rng.randint(1, 90), minutes=rng.randint(0, 1439))
                         ).replace(second=0, microsecond=0), line=line, noun=noun)
    price0 = _nice_price(rng)
    n_images = rng.randint(1, 4)
    old_base = old_base_title(seed, index, base)
    vi = 0
    for colour in colours:
        for size in sizes:
            if max_variants is not None and vi >= max_variants:
                break
            vr = _rng(seed, index, vi, "variant")
            sku = f"{bcode}{index:07d}-{COLOUR_CODE[colour]}" + (f"-{size}" if size else "")
            price = price0 + (Decimal(5) if size == "XL" else Decimal(0))
            status = "discontinued" if vr.random() < 0.05 else "active"
            qty = 0 if status == "discontinued" or vr.random() < 0.12 else vr.randint(2, 150)
            title_colour = colour if multi else None
            prev_price = price
            if vr.random() < 0.2:
                prev_price = price + (vr.choice([Decimal(5), Decimal(10), Decimal(-5)])
                                      if price > 10 else Decimal(5))
            t = _title(base, title_colour, size if multi else None)
            prev_t = _title(old_base, title_colour, size if multi else None) \
                if vr.random() < 0.2 else t
            ck = COLOUR_CODE[colour]
            p.variants.append(Variant(
                sku=sku, index=vi, colour=colour, size=size, title=t,
                gtin=make_gtin13(BRAND_PREFIX[bi], index * 16 + vi),
                mpn=f"{bcode}-{index:06d}{ck}{size or ''}", price=price, quantity=qty,
                status=status,
                images=[f"/images/{p.key}/{colour.lower()}-{n}.png" for n in range(1, n_images + 1)],
                prev_title=prev_t, prev_price=prev_price))
            vi += 1
    return p


def iter_products(seed: int, size: int, now: datetime) -> Iterator[Product]:
    """Products in order until their variants add up to ``size`` SKUs (the last one cut)."""
    done = 0
    i = 0
    while done < size:
        p = make_product(seed, i, now, max_variants=size - done)
        done += len(p.variants)
        yield p
        i += 1


@lru_cache(maxsize=4096)
def cached_product(seed: int, index: int, now: datetime, max_variants: int | None) -> Product:
    """make_product, remembered (the shop server renders the same products repeatedly)."""
    return make_product(seed, index, now, max_variants)


SKU_RE = re.compile(r"^([A-Z]{2})(\d{7})-")


def product_index_of(sku: str) -> int | None:
    """The product index a generated SKU belongs to (None for a foreign SKU)."""
    m = SKU_RE.match(sku)
    return int(m.group(2)) if m else None
