"""Matching a listing that has no usable key to a master record, by what it shows.

Three steps, each bounded per listing:

1. **Features.** A title and description are read into words (case, punctuation and
   trademark signs folded; words of scripts written without spaces, such as CJK, become
   character bigrams), *model codes* (words mixing letters and digits, long digit runs,
   and neighbours that form one when joined: ``KTC-D320/1G``, ``ktc d320 1g`` and
   ``KTCD3201G`` are one code), *quantities* (numbers with a unit: 500 GB, 12 V,
   250 W, 4-pack), plain numbers (versions, years) and the brand. Only the first
   ``MAX_TEXT`` characters of a text are read.
2. **Candidates** (blocking): masters with the same normalized title, masters sharing a
   model code (exactly, or one code a prefix of the other), and masters sharing the
   listing's rarest words (at most ``BLOCK_TOKENS`` words, each shared by at most
   ``MAX_DF`` masters). At most ``MAX_CANDIDATES`` go on to scoring.
3. **Score** (0-1): TF-IDF cosine of the titles' words, then evidence for and against:
   a shared model code (strong for), model codes that differ (strong against), the same
   or another brand (also a brand named in the listing's title), quantities of one kind
   that differ (500 GB vs 1 TB), sizes that differ (60 x 60 vs 60 x 80), plain numbers
   that differ (2007 vs 2008), colours, platforms, editions or licences that differ
   (deluxe vs premium, an upgrade), specifications of one family that differ (cat5e vs
   cat6, male-to-male vs male-to-female), a bundle or an accessory on one side only,
   descriptions sharing a passage (for), a price ten times off (against) or close (for).
   Each piece of evidence is kept, so a person can see why.

The channel-wide one-to-one assignment and the link states are in ``assign``.
"""

from __future__ import annotations

import math
from hashlib import blake2b
from math import fsum
from zlib import crc32
from array import array
import re
from bisect import bisect_left
from collections import Counter
from operator import itemgetter
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Collection, Container, Iterable, Mapping, Sequence

from rapidfuzz import fuzz

from auditor.postings import PerMaster, Postings
from auditor.text import normalize_title

MAX_TEXT = 1000          # characters of a title (and of a description) that are read
MAX_TOKENS = 64          # words of a title that count
MAX_CODES = 16           # model codes read from one listing
BLOCK_TOKENS = 4         # rarest words used for blocking
MAX_DF = 1000            # a word shared by more masters than this does not block
BLOCK_BUDGET = 400      # postings counted per listing, at most
MAX_CANDIDATES = 12      # candidates compared by title words per listing
FULL_SCORES = 5          # of which the closest are scored on all the evidence
PREFIX_HITS = 8          # masters found through one code's prefix match
CODE_DF = 20             # masters sharing a code read from two words, at most, for it to find them
CODE_FOUND = 10          # what ``_found`` counts for a shared model code (or more: the title)
KEEP = 6                 # best candidates kept per listing for the assignment
TIED_KEEP = 64           # masters tied for the last candidate place kept for the brand
CACHE_TITLES = 100_000   # distinct titles whose blocking and title evidence are kept
CHAR_WEIGHT = 0.85
TIE = 0.01               # scores closer than this: the listing cannot tell the masters apart
MP_TOLERANCE = 0.025     # megapixels within 2.5% agree (14.2 MP is sold as 14 MP)

# Evidence weights (added to the title cosine, result clipped to 0-1).
W_CODE_AGREE = 0.35
W_CODE_DIFFER = -0.35
W_BRAND_AGREE = 0.05
W_BRAND_DIFFER = -0.25
W_QTY_DIFFER = -0.3
W_NUM_DIFFER = -0.2
W_ACCESSORY = -0.3       # one title names an accessory (case, cable, toner), the other none
W_VARIANT_DIFFER = -0.3  # the listing names colours (platforms), the master others
W_EDITION_DIFFER = -0.2  # editions (pro, deluxe) or licences (upgrade, academic) differ
W_BUNDLE = -0.2          # one title names a bundle (combo), the other none
W_PRICE_FAR = -0.3       # ten times apart
W_PRICE_OFF = -0.1       # three times apart
W_PRICE_CLOSE = 0.05     # within 30%
W_SPEC_DIFFER = -0.3     # a specification of one family differs (cat5e vs cat6, M-M vs M-F)
W_TEXT_AGREE = 0.15      # the descriptions share a passage (``text_agrees``)
TEXT_SHARED = 8          # word triples the descriptions must share at least
TEXT_SHARE = 0.5         # and that share of the shorter description's triples
TEXT_CACHE = 2_048       # masters whose description triples are kept (bounded memory)

_COUNT = itemgetter(1)
_FIRST = itemgetter(0)
_SECOND = itemgetter(1)
_WORD = re.compile(r"[0-9A-Za-z]+(?:[-/.][0-9A-Za-z]+)*")
_HAS_DIGIT = re.compile(r"\d")
_HAS_ALPHA = re.compile(r"[a-z]")
_DIGITS = re.compile(r"\d")
_NO_SPACE_SCRIPT = re.compile(r"[\u2e80-\u9fff\uac00-\ud7af\u3040-\u30ff\uf900-\ufaff\u0e00-\u0e7f]")
# Numbers with a unit, in normalized text ("500 gb", "500gb", "12 v", "4 pack").
_UNITS: dict[str, tuple[str, float]] = {
    "kb": ("bytes", 1e-6), "mb": ("bytes", 1e-3), "gb": ("bytes", 1.0), "tb": ("bytes", 1e3),
    "mhz": ("hz", 1e-3), "ghz": ("hz", 1.0),
    "w": ("watt", 1.0), "watt": ("watt", 1.0), "watts": ("watt", 1.0), "kw": ("watt", 1e3),
    "v": ("volt", 1.0), "volt": ("volt", 1.0), "volts": ("volt", 1.0),
    "mah": ("mah", 1.0), "a": ("amp", 1.0), "amp": ("amp", 1.0),
    "mm": ("len", 0.1), "cm": ("len", 1.0), "m": ("len", 100.0),
    "in": ("len", 2.54), "inch": ("len", 2.54), "inches": ("len", 2.54), "ft": ("len", 30.48),
    "g": ("mass", 1.0), "kg": ("mass", 1e3), "lb": ("mass", 453.6), "lbs": ("mass", 453.6),
    "oz": ("mass", 28.35), "ml": ("vol", 1.0), "l": ("vol", 1e3),
    "pk": ("count", 1.0), "pack": ("count", 1.0), "pcs": ("count", 1.0), "ct": ("count", 1.0),
    "count": ("count", 1.0), "piece": ("count", 1.0), "pieces": ("count", 1.0),
    "users": ("users", 1.0), "user": ("users", 1.0), "u": ("users", 1.0),
    "mp": ("mp", 1.0), "rpm": ("rpm", 1.0), "hours": ("hours", 1.0),
    "p": ("lines", 1.0), "hz": ("hz", 1e-9), "dpi": ("dpi", 1.0), "ppm": ("ppm", 1.0),
    "mbps": ("bps", 1.0), "gbps": ("bps", 1e3), "port": ("ports", 1.0), "ports": ("ports", 1.0),
    "sheet": ("sheets", 1.0), "sheets": ("sheets", 1.0), "feet": ("len", 30.48),
    "digit": ("digits", 1.0), "mpix": ("mp", 1.0), "bit": ("bits", 1.0), "way": ("ways", 1.0),
}
# Things counted (3-button, 240-pin, 6-outlet): each its own kind of quantity
_COUNT_NOUNS = (
    "pin pins channel channels disc discs disk disks outlet outlets button buttons "
    "speaker speakers subject subjects hole holes section sections handset handsets "
    "drawer drawers tier tiers shelf shelves slot slots bay bays player players layer "
    "layers pocket pockets compartment compartments tab tabs key keys").split()
_UNITS.update({w: ("shelf" if w == "shelves" else w.rstrip("s"), 1.0) for w in _COUNT_NOUNS})
_QTY = re.compile(r"(?<![\w.])(\d+(?:\.\d+)?)\s?(" + "|".join(
    sorted(map(re.escape, _UNITS), key=len, reverse=True)) + r")(?![\w])")
_MODEL_FIELD = re.compile(r"model\W+([\w\-/. ]+?)(?:;|$)", re.I)
_NUM = re.compile(r"(?<![\w.])\d+(?:\.\d+)?(?![\w.])")
_CODE_UNIT = re.compile(r"^\d+(?:\.\d+)?(?:" + "|".join(map(re.escape, _UNITS)) + r"|st|nd|rd|th|d|s)$")


# Words that name one variant among others: a listing naming only colours (or platforms)
# that the master does not name is another variant of it. Word -> (kind, canonical word).
_VARIANT_WORDS: dict[str, tuple[str, str]] = {
    **{w: ("colour", "grey" if w == "gray" else w) for w in (
        "black white grey gray silver red blue green yellow orange purple pink brown beige "
        "navy gold teal burgundy ivory cream tan olive maroon turquoise violet magenta cyan "
        "charcoal khaki lime aqua copper bronze mahogany walnut cherry oak espresso clear smoke "
        "graphite gunmetal champagne rose coral indigo lavender plum ruby emerald jade slate "
        "orchid fuchsia amber crimson scarlet sapphire cobalt pewter camo".split())},
    **{w: ("platform", "mac") for w in ("mac", "macintosh", "osx")},
    **{w: ("platform", "windows") for w in ("windows", "win", "pc")},
}


# Words naming an edition of a product line or the kind of licence it is sold under: "Print
# Shop 22" and "Print Shop 22 Deluxe", "Windows XP Professional" and "... Upgrade" are
# different products. Word -> canonical word.
_EDITION_WORDS: dict[str, str] = {
    **{w: w for w in "deluxe premium standard basic home ultimate enterprise platinum express "
       "lite plus elements xl essentials starter".split()},
    "pro": "pro", "professional": "pro", "prof": "pro", "std": "standard",
}
_LICENCE_WORDS: dict[str, str] = {
    "upgrade": "upgrade", "upg": "upgrade", "upsell": "upgrade", "academic": "academic",
    "student": "academic", "students": "academic", "teacher": "academic",
    "education": "academic", "educational": "academic", "edu": "academic", "oem": "oem",
    **{w: "refurbished" for w in "refurbished reconditioned renewed remanufactured reman "
       "recertified".split()},
}


_NO_EDITIONS: tuple[frozenset[str], frozenset[str]] = (frozenset(), frozenset())


def editions(tokens: Collection[str]) -> tuple[frozenset[str], frozenset[str]]:
    """(edition words, licence words) among normalized words, canonical."""
    if _EDITION_WORDS.keys().isdisjoint(tokens) and _LICENCE_WORDS.keys().isdisjoint(tokens):
        return _NO_EDITIONS  # (most titles: no set built)
    ed = {_EDITION_WORDS[t] for t in tokens if t in _EDITION_WORDS}
    lic = {_LICENCE_WORDS[t] for t in tokens if t in _LICENCE_WORDS}
    return frozenset(ed), frozenset(lic)


def variants(tokens: Collection[str]) -> dict[str, set[str]]:
    """The variant words among normalized words, by kind (colour, platform)."""
    out: dict[str, set[str]] = {}
    hits = _VARIANT_WORDS.keys() & tokens
    if not hits:
        return out
    if len(hits) == 1:  # (most titles naming one: no walk over the words)
        kind, word = _VARIANT_WORDS[hits.pop()]
        out[kind] = {word}
        return out
    for t in tokens:
        v = _VARIANT_WORDS.get(t)
        if v is not None:
            out.setdefault(v[0], set()).add(v[1])
    return out


def _bigrams(tok: str) -> list[str]:
    return [tok[i:i + 2] for i in range(len(tok) - 1)] or [tok]


def words(text: str) -> list[str]:
    """Normalized words of a text (words of scripts without spaces as character bigrams)."""
    toks = normalize_title(text[:MAX_TEXT]).split()
    if not text.isascii() and _NO_SPACE_SCRIPT.search(text[:MAX_TEXT]) is not None:
        out: list[str] = []
        for t in toks:
            out.extend(_bigrams(t) if _NO_SPACE_SCRIPT.search(t) else (t,))
        toks = out
    return toks[:MAX_TOKENS]


# Specifications written like codes: "3in1", "1000baset", "802.11n", "4x6", "2x2gb", "win32".
_SPEC = re.compile(r"^(?:\d+in\d+|\d+base[a-z]+\d*|802\d+[a-z]*|\d+x\d+[a-z]*|pc\d+|win\d+)$")
# A count of things written as one word ("3-button", "240-pin", "6-outlet", "1993-up"): a
# specification, not a model code (those of ``_COUNT_NOUNS`` are also quantities)
_COUNTED = re.compile(r"^\d+(?:" + "|".join(_COUNT_NOUNS + (
    "min mins minute minutes mile miles height dbi ohm ohms gauge month months meg optical "
    "digital foot item items station stations zone zones person year years yr day days "
    "cup cups page pages line lines up piece star stars speed speeds color colors colour "
    "colours plus ring rings sided side").split()) + r")$")


def _is_code(c: str) -> bool:
    digits = len(_DIGITS.findall(c))
    # "ddr5", "class6" are specs, not models; one digit in a long code is enough
    # ("dmsvgavga1")
    if len(c) < 4 or digits < 2 and (len(c) < 7 or digits == 0):
        return False
    if _HAS_ALPHA.search(c) is None:
        return len(c) >= 5  # part numbers, UPCs; not years, not small counts
    # "500gb", "12v", "1080p" are quantities, "3in1" or "1000baset" specifications
    return _CODE_UNIT.match(c) is None and _SPEC.match(c) is None and _COUNTED.match(c) is None


_GLUED = re.compile(r"([a-z]+)[-/.]\w")


def codes(text: str | None) -> tuple[set[str], set[str]]:
    """Model codes in a text, normalized (no case, hyphens, slashes, dots or spaces):
    (codes written as one word, codes written as two: "DCS 1100" is dcs1100)."""
    if not text:
        return set(), set()
    one: set[str] = set()
    two: set[str] = set()
    raw = _WORD.findall(text[:MAX_TEXT].lower())
    flat = ["".join(ch for ch in w if ch.isalnum()) for w in raw]
    for i, c in enumerate(flat):
        if _is_code(c):
            one.add(c)
            # a word glued in front ("New-101R00421", "SHR-EL1192BL"): the code after it
            # may be what another title names alone (it can agree, never differ)
            head = _GLUED.match(raw[i])
            if head is not None and _is_code(c[len(head.group(1)):]):
                two.add(c[len(head.group(1)):])
        if i + 1 < len(flat):
            n = flat[i + 1]
            # letters then a code or a number: "dcs 1100", "ex zs5"
            if 2 <= len(c) <= 5 and c.isalpha() and _HAS_DIGIT.search(n) is not None \
                    and _is_code(c + n) and n not in _UNITS and len(c + n) <= 16 \
                    and _COUNTED.match(n) is None:
                two.add(c + n)
        if len(one) + len(two) >= MAX_CODES:
            break
    return one, two - one


_NOT_NUMERIC = re.compile(r"[^\w.]+|_+|(?<!\d)\.|\.(?!\d)")


_NUMBER_WORDS = {w: str(n) for n, w in enumerate(
    "two three four five six seven eight nine ten eleven twelve".split(), 2)}


def number_text(text: str) -> str:
    """A title lowercased with punctuation as spaces, but decimal points kept ("2.5in"),
    and numbers written as words from two to twelve as digits ("six-tier" is "6 tier")."""
    return " ".join(_NUMBER_WORDS.get(w, w) for w in _NOT_NUMERIC.sub(
        " ", text[:MAX_TEXT].lower().replace(",", ".")).split())


def quantities(norm_text: str) -> dict[str, set[float]]:
    """Numbers with a unit, by kind, in base units of that kind."""
    out: dict[str, set[float]] = {}
    for num, unit in _QTY.findall(norm_text):
        kind, factor = _UNITS[unit]
        if kind == "bytes" and factor < 1.0 and float(num) % 1024 == 0:
            factor /= 1.024  # 1024 MB is the 1 GB of another title
        out.setdefault(kind, set()).add(round(float(num) * factor, 3))
    return out


# per kind of quantity, the factors of its units (``quantities``)
_FACTORS: dict[str, tuple[float, ...]] = {}
for _k, _f in _UNITS.values():
    _FACTORS[_k] = tuple(sorted({*_FACTORS.get(_k, ()), _f} | (
        {_f / 1.024} if _k == "bytes" and _f < 1.0 else set())))
_DIGIT_RUN = re.compile(r"\d+")


def _unexplained(extra: Collection[float], qty: Mapping[str, set[float]],
                 other_qty: Mapping[str, set[float]], *other_codes: Iterable[str] | None
                 ) -> set[float]:
    """Of the numbers ``extra`` one title names and the other does not, those it shows in
    no other form: not a number of a quantity of a kind both titles name (``qty``, theirs
    ``other_qty``: already compared), and not a digit run of one of the other's codes."""
    out = set(extra)
    for kind in qty.keys() & other_qty.keys():
        vals = qty[kind]
        out = {n for n in out if not any(abs(n * fac - v) <= 0.001 * max(1.0, v)
                                         for fac in _FACTORS[kind] for v in vals)}
    if out and any(other_codes):
        runs = {int(r) for cs in other_codes if cs for c in cs for r in _DIGIT_RUN.findall(c)
                if len(r) <= 9}
        out = {n for n in out if not (n.is_integer() and int(n) in runs)}
    return out


def _overlap(a: set[float], b: set[float], tol: float = 0.01) -> bool:
    """Whether two sets of quantities of one kind share a value, within ``tol`` (1%: a
    camera's 14.1 MP is the 14 MP of another title; megapixels are compared within
    ``MP_TOLERANCE``, as they are sold rounded down: 14.2 MP is "14 MP")."""
    return bool(a & b) or any(abs(x - y) <= tol * max(x, y) for x in a for y in b)


_ANY_NUM = re.compile(r"(?<![\w.])(\d{1,4}(?:\.\d+)?)(?=(?:\s?(?:" + "|".join(
    sorted(map(re.escape, _UNITS), key=len, reverse=True)) + r"))?(?![\w.]))")


def numbers(norm_text: str) -> set[float]:
    """The numbers a title shows, alone or with a unit (not inside a code, and not digit
    runs of five or more, which are part numbers): sizes, lengths, versions, years, counts;
    by value ("2" and "2.0" are one)."""
    return {float(n) for n in _ANY_NUM.findall(norm_text)}


# Two numbers joined by "x": a size or an area ("60 x 80", "8.5x11"), compared as a pair
_SIZE = re.compile(r"(?<![\w.])(\d+(?:\.\d+)?)\s?x\s?(\d+(?:\.\d+)?)(?![\w.])")


def sizes(norm_text: str) -> frozenset[tuple[float, float]]:
    """The sizes a title names ("60 x 80" is (60, 80), and so is "80x60"), as pairs."""
    out = set()
    for a, b in _SIZE.findall(norm_text):
        x, y = float(a), float(b)
        out.add((x, y) if x <= y else (y, x))
    return frozenset(out)


def _size_text(d: tuple[float, float]) -> str:
    return f"{d[0]:g} x {d[1]:g}"


# Words naming an accessory or a consumable: a title naming one (before any "for ...")
# is another product than a title naming none ("case for X" is not X).
_ACCESSORY = frozenset(
    "case cases cover sleeve bag pouch holster skin skins protector cable cord adapter "
    "adaptor charger battery batteries mount bracket stand holder cradle dock strap stylus "
    "remote lamp bulb cartridge cartridges toner ink drum refill refills tray filter "
    "replacement".split())
_NO_WORDS: frozenset[str] = frozenset()
_FOR = re.compile(r"\b(?:for|compatible with|fits|works with)\b")


def _for_search(text: str) -> re.Match[str] | None:
    """``_FOR.search(text)``, without the regex scan when none of its words can be there."""
    if "for" in text or "fits" in text or "with" in text:
        return _FOR.search(text)
    return None

_BUNDLE = frozenset("bundle bundled combo".split())
# Accessory words by kind: two titles naming accessories of no common kind name different
# products ("car charger" vs "usb cable"); "replacement" names no kind.
_ACCESSORY_KIND: dict[str, str] = {
    **{w: "case" for w in "case cases cover sleeve bag pouch holster skin skins".split()},
    **{w: "cable" for w in "cable cord".split()},
    **{w: "adapter" for w in "adapter adaptor".split()},
    **{w: "power" for w in "charger battery batteries".split()},
    **{w: "mount" for w in "mount bracket stand holder cradle dock".split()},
    **{w: "supply" for w in "cartridge cartridges toner ink drum refill refills".split()},
    **{w: "lamp" for w in "lamp bulb".split()},
    **{w: w for w in "protector strap stylus remote tray filter".split()},
}


@lru_cache(maxsize=1 << 14)  # a master's title is read again for every listing it is a candidate of
def accessory_words(norm_title: str) -> frozenset[str]:
    """The accessory words of a title's head (what comes before "for ...")."""
    m = _for_search(norm_title)
    head = norm_title[:m.start()] if m else norm_title
    if "jewel case" in head:  # how software is packed, not a case
        head = head.replace("jewel case", " ")
    return _ACCESSORY.intersection(head.split())


_FOR_WORDS = frozenset(("for", "fits", "compatible"))


def _before_for(tokens: Sequence[str]) -> Sequence[str]:
    """The words of a title before any "for ..." (what the product is, not what it fits)."""
    for k, t in enumerate(tokens):
        if t in _FOR_WORDS:
            return tokens[:k]
    return tokens


# Words a company's name ends with that are not its name ("Aspyr Media", "Topics
# Entertainment", "Smith Micro Software"): a title naming the rest names the brand
_COMPANY_WORDS = tuple(sorted(
    "software media inc incorporated corp corporation co company ltd llc gmbh plc "
    "entertainment publishing publisher publishers interactive technologies technology "
    "systems international intl games studios electronics products group labs usa "
    "america enterprises solutions industries brands worldwide computer computers "
    "consumables".split(), key=len, reverse=True))


@lru_cache(maxsize=1 << 12)
def brand_core(brand: str) -> str:
    """A brand folded as ``norm_brand`` folds it, without the company words it ends with
    ("aspyrmedia" -> "aspyr"), when at least four letters that are not such a word are
    left; else the brand."""
    core = brand
    while True:
        for w in _COMPANY_WORDS:
            if core.endswith(w) and len(core) - len(w) >= 4 and \
                    core[:-len(w)] not in _COMPANY_WORDS:
                core = core[:-len(w)]
                break
        else:
            return core


def _cores_agree(a: str, b: str) -> bool:
    """Whether two brands (folded) name one maker once the company words they end with are
    taken off (``brand_core``): "Sony Media" and "Sony Creative Software" ("sony" in
    "sonycreative"); at least four letters."""
    ca, cb = brand_core(a), brand_core(b)
    if (ca == a and cb == b) or len(ca) < 4 or len(cb) < 4:
        return False
    return ca in cb or cb in ca


def brand_span(tokens: Sequence[str], brand: str) -> frozenset[str]:
    """The words of a title that spell a brand (folded as ``norm_brand`` folds it:
    "fogware publishing" for "fogwarepublishing"), at most four words, else none. A
    title spelling the brand without the company words it ends with (``brand_core``:
    "aspyr" for "Aspyr Media") at its start names it too."""
    if len(brand) < 3:
        return frozenset()
    span = _spelled(tokens, brand)
    if not span and tokens:
        core = brand_core(brand)
        if core != brand and core.startswith(tokens[0]):
            # the rest of a name may be a word of the product ("Umbrella & Co"): it names
            # the brand only in front, where a channel puts the maker
            span = _spelled(tokens[:4], core)
            if span and tokens[0] not in span:
                span = frozenset()
    return span


def _spelled(tokens: Sequence[str], brand: str) -> frozenset[str]:
    """The words of a title that spell ``brand`` (at most four), else none."""
    if brand not in "".join(tokens):  # (consecutive words spelling it: it is in there)
        return frozenset()
    for j, t in enumerate(tokens):
        if not brand.startswith(t):
            continue
        joined = t
        k = j + 1
        while len(joined) < len(brand) and k < len(tokens) and k - j < 4:
            joined += tokens[k]
            k += 1
        if joined == brand:
            return frozenset(tokens[j:k])
    return frozenset()


def norm_brand(brand: str | None) -> str:
    """A brand folded to its words joined ("D-Link" -> "dlink")."""
    return "".join(normalize_title(brand[:200]).split()) if brand else ""


@dataclass(slots=True)
class Features:
    """What a listing (or a master) shows, read once."""

    title: str                       # normalized title
    tokens: list[str]
    codes: set[str]                  # written as one word
    brand: str
    price: float | None
    joined: set[str] = field(default_factory=set)             # written as two words
    description_codes: set[str] = field(default_factory=set)
    reason: str | None = None        # why nothing can be matched (no usable title)
    qty: dict[str, set[float]] = field(default_factory=dict)
    nums: set[float] = field(default_factory=set)
    tokenset: set[str] = field(default_factory=set)
    norm: float = 0.0                # of the title's TF-IDF vector (set by MatchIndex.rank)
    brand_words: str = ""            # the brand normalized as a title is
    variants: dict[str, set[str]] = field(default_factory=dict)
    accessory: frozenset[str] = frozenset()
    sizes: frozenset[tuple[float, float]] = frozenset()
    editions: tuple[frozenset[str], frozenset[str]] = (frozenset(), frozenset())
    bundle: frozenset[str] = frozenset()
    shingles: frozenset[int] = frozenset()   # of the description (``shingles``)
    text_key: bytes = b""            # a digest of the description (``shingles``)
    specs: Mapping[str, frozenset[str]] = field(default_factory=dict)  # ``spec_words``
    core: str = ""                   # the title without its bracketed parts (``core_title``)


# A specification of a family written as one short word ("cat5e", "ddr3", "ps2", "usb3"):
# the family's letters, then its number
_SPEC_WORD = re.compile(r"(?<![a-z0-9])([a-z]{2,4})(\d{1,2})[a-z]?(?![a-z0-9])")
_GENDER = {"male": "m", "female": "f", "males": "m", "females": "f"}
_NO_SPECS: Mapping[str, frozenset[str]] = {}
_NO_CODES: frozenset[str] = frozenset()


def spec_words(norm_title: str) -> Mapping[str, frozenset[str]]:
    """The specifications a normalized title names, by family: short words of letters and
    a number that are not model codes ("cat6": {"cat": {"6"}}), and the connector genders
    it names ("male to female": {"gender": {"fm"}})."""
    found = _SPEC_WORD.findall(norm_title) if _HAS_DIGIT.search(norm_title) else ()
    if not found and "male" not in norm_title:
        return _NO_SPECS
    out: dict[str, set[str]] = {}
    for fam, num in found:
        if not _is_code(fam + num):
            out.setdefault(fam, set()).add(num)
    if "male" in norm_title:
        g = "".join(sorted({_GENDER[w] for w in norm_title.split() if w in _GENDER}))
        if g:
            out["gender"] = {g}
    return {k: frozenset(v) for k, v in out.items()} if out else _NO_SPECS


def specs_differ(a: Mapping[str, frozenset[str]], b: Mapping[str, frozenset[str]]
                 ) -> str | None:
    """A family both name with no number in common (cat5e and cat6, ddr2 and ddr3; a
    male-to-male cable and a male-to-female one), else None."""
    for fam in sorted(a.keys() & b.keys()):
        if not a[fam] & b[fam]:
            return fam
    return None


_BRACKETED = re.compile(r"\([^()]*\)|\[[^\[\]]*\]")


def core_title(title: str | None) -> str:
    """A title without its bracketed parts ("(jewel case)", "(win 98 me 2000 xp)",
    "[mac]": packaging and platforms a shop adds in brackets), normalized; "" when it has
    none, or nothing else."""
    if not title or ("(" not in title and "[" not in title):
        return ""
    return normalize_title(_BRACKETED.sub(" ", title[:MAX_TEXT]))


def shingles(text: str | None) -> frozenset[int]:
    """The word triples of a text's first ``MAX_TEXT`` characters (normalized words), each
    as its CRC-32 (a few bytes, the same in every process): what two descriptions copied
    from one source share."""
    if not text:
        return frozenset()
    w = normalize_title(text[:MAX_TEXT]).split()
    return frozenset(crc32(" ".join(w[k:k + 3]).encode()) for k in range(len(w) - 2))


def text_key(text: str | None) -> bytes:
    """A 16-byte digest of what ``shingles`` reads of a text (b"" for none): what the
    title evidence cache is keyed by, in place of the triples themselves."""
    if not text:
        return b""
    return blake2b(text[:MAX_TEXT].encode("utf-8", "replace"), digest_size=16).digest()


def text_agrees(a: frozenset[int], b: frozenset[int]) -> bool:
    """Whether two descriptions' word triples (``shingles``) show a shared passage: at
    least ``TEXT_SHARED`` triples, and ``TEXT_SHARE`` of the shorter one's (a template
    such as "dimensions: ...; shipping weight: ..." shares a few triples, never enough)."""
    if len(a) < TEXT_SHARED or len(b) < TEXT_SHARED:
        return False
    n = len(a & b)
    return n >= TEXT_SHARED and n >= TEXT_SHARE * min(len(a), len(b))


def listing_features(title: str | None, description: str | None, brand: str | None,
                     price: float | None, mpn: str | None = None) -> Features:
    """Read a listing's title, description, brand and price (bounded work)."""
    title = title or ""
    toks = words(title)
    one, two = codes(title) if _HAS_DIGIT.search(title, 0, MAX_TEXT) else (set(), set())
    f = Features(" ".join(toks), toks, one, norm_brand(brand), price, two)
    if mpn:
        f.codes |= codes(mpn.replace(" ", ""))[0]
    if description:
        d1, _ = codes(description)
        f.description_codes = d1 - one
        f.shingles = shingles(description)
        f.text_key = text_key(description)
    if not toks:
        f.reason = "empty title" if not title.strip() else "title has no words"
    if one or two or _HAS_DIGIT.search(f.title) is not None \
            or not _NUMBER_WORDS.keys().isdisjoint(toks):  # "eight-tab" is "8 tab"
        nt = number_text(title)
        f.qty = quantities(nt)
        f.nums = numbers(nt)
        f.sizes = sizes(nt)
    if brand:
        f.brand_words = normalize_title(brand[:200])
    f.variants = variants(toks)
    # (none when no word of the title names one: the cache is for masters' titles)
    f.accessory = _NO_WORDS if _ACCESSORY.isdisjoint(toks) else accessory_words(f.title)
    f.editions = editions(toks)
    f.bundle = _BUNDLE.intersection(toks)
    f.specs = spec_words(f.title)
    f.core = core_title(title)
    return f


class MatchIndex:
    """The master catalog indexed for blocking and scoring.

    Per master: its normalized title, brand, price, model codes and the norm of its
    TF-IDF vector; postings of words and of codes as lists of master numbers.
    """

    # distinct titles whose blocking and title evidence ``title_scored`` keeps (fewer
    # while listings come in title order: ``linkbatch.rank_part``)
    cache_titles: int = CACHE_TITLES
    # the last title ``_same_title`` looked up, and its masters (a title's key and its
    # blocking ask in turn)
    _last_same: tuple[str | None, Sequence[int]] = (None, ())

    def __init__(self, master: Mapping[str, Any]):
        self.skus: list[str] = []
        self.titles: list[str] = []
        self.brands: list[str] = []
        self.prices: list[float | None] = []
        # model codes of each master (tuples while building, then a PerMaster)
        codes_of: list[tuple[str, ...] | None] = []
        joined_of: list[tuple[str, ...] | None] = []
        postings: dict[str, list[int]] = {}
        code_post: dict[str, list[int]] = {}
        exact: dict[str, list[int]] = {}
        titles: dict[str, str] = {}  # one string per distinct title
        brands: dict[str, str] = {}
        # masters numbered in SKU order: every tie between candidates is then settled by
        # SKU, whatever order the master was read in
        for sku in sorted(master):
            rec = master[sku]
            if not rec.title:
                continue
            i = len(self.skus)
            toks = words(rec.title)
            title = " ".join(toks)
            title = titles.setdefault(title, title)
            self.skus.append(sku)
            self.titles.append(title)
            b = norm_brand(rec.brand)
            self.brands.append(brands.setdefault(b, b))
            self.prices.append(float(rec.price.amount) if rec.price is not None else None)
            cs, two = codes(rec.title)
            if rec.mpn:
                cs |= codes(rec.mpn.replace(" ", ""))[0]
            if rec.description and "model" in rec.description[:200].lower():
                # "model: KTC-D320/1G" in a description is the master's own code
                m = _MODEL_FIELD.search(rec.description[:200])
                if m:
                    cs |= codes(m.group(1).replace(" ", ""))[0]
            two -= cs
            codes_of.append(tuple(cs) if cs else None)
            joined_of.append(tuple(two) if two else None)
            exact.setdefault(title, []).append(i)
            for t in set(toks):
                postings.setdefault(t, []).append(i)
            for c in cs | two:
                code_post.setdefault(c, []).append(i)
        del titles
        # Held compactly (issue 20; auditor.postings): exact titles and codes as sorted
        # keys over one array of master numbers, each master's codes as numbers of
        # those keys, word postings as int arrays; the prices and norms as float arrays
        # (a missing price is 0.0, which never compares).
        self.exact: Postings = Postings(exact)
        self.code_post: Postings = Postings(code_post)
        self.sorted_codes = self.code_post.keys_
        place = {k: j for j, k in enumerate(self.sorted_codes)}
        self.codes: PerMaster = PerMaster(self.sorted_codes, codes_of, place)
        self.joined: PerMaster = PerMaster(self.sorted_codes, joined_of, place)
        del place
        for k, v in postings.items():  # in place: each list is freed as it is packed
            postings[k] = array("I", v)  # type: ignore[assignment]  # packed in place
        self.postings = postings
        self.prices = array("d", (p or 0.0 for p in self.prices))  # type: ignore[assignment]
        self._position: dict[str, int] | None = None
        # distinct title -> (candidates found, title evidence and word score by master, norm,
        # the candidates scored in full by listing brand, the brands of the masters found
        # when more than ``MAX_CANDIDATES``: ``_pick`` weighs those; the title evidence
        # explained by master, when asked for: ``title_scored``)
        self._cache: dict[tuple[Any, ...], tuple[list[tuple[float, int]], dict[int, float],
                                                 dict[int, float], float,
                                                 dict[str, list[int]], frozenset[str],
                                                 dict[int, dict[str, Any] | float]]] = {}
        self._master = master
        # per master, what ``_title_score`` reads from its title (``_master_words``,
        # ``_master_numbers``): filled in as masters become candidates
        self._mwords: list[tuple[Any, ...] | None] = [None] * len(self.skus)
        self._mnums: list[tuple[Any, ...] | None] = [None] * len(self.skus)
        # ``shingles`` of the last masters' descriptions read (at most TEXT_CACHE: listings
        # come in title order, their candidates repeat)
        self._mtext: dict[int, frozenset[int]] = {}
        # (``brand_scores``) whether two brands agree by their names alone, and each
        # master's title head (``_head``) without spaces, as they are needed
        self._brand_pairs: dict[tuple[str, str], bool] = {}
        self._heads: list[str | None] = [None] * len(self.skus)
        n = max(len(self.skus), 1)
        self.n = n
        self._idf: dict[str, float] = {}
        # idf squared of every word a master has (a listing's other words are absent)
        self.idf2 = {t: (math.log((n + 1) / (len(post) + 1)) + 1.0) ** 2
                     for t, post in postings.items()}
        self.norms = array("d", bytes(8 * len(self.skus)))
        idf = self.idf
        for i, title in enumerate(self.titles):
            self.norms[i] = math.sqrt(fsum([idf(t) ** 2 for t in set(title.split())])) or 1.0

    def number_text(self, i: int) -> str:
        """Master ``i``'s title as ``number_text`` reads it (from the record: normalized
        titles have lost their decimal points)."""
        return number_text(self._master[self.skus[i]].title or "")

    def twins(self, i: int, j: int) -> str | None:
        """Why masters ``i`` and ``j`` look like two records of one product to a listing
        ("title": the same normalized title; "model codes": the same model codes), else
        None. Records of two brands, or priced three times apart or more, are two
        products, whatever their titles."""
        bi, bj = self.brands[i], self.brands[j]
        if bi and bj and bi != bj:
            return None
        pi, pj = self.prices[i] or 0.0, self.prices[j] or 0.0  # 0.0: no price
        if pi > 0 and pj > 0 and max(pi, pj) >= 3 * min(pi, pj):
            return None
        if self.titles[i] == self.titles[j]:
            return "title"
        ci = self.codes[i]
        # codes a series shares ("4th-6th" grade software) tell two products apart no more
        # than a title does: one code at most three masters have is needed
        if ci and frozenset(ci) == frozenset(self.codes[j] or ()) and \
                min(len(self.code_post.get(c, ())) for c in ci) <= 3:
            return "model codes"
        return None

    @property
    def position(self) -> dict[str, int]:
        """SKU -> master number (built on first use)."""
        if self._position is None:
            self._position = {s: i for i, s in enumerate(self.skus)}
        return self._position

    def idf(self, tok: str) -> float:
        """Inverse document frequency of a word (a word no master has counts as rare)."""
        v = self._idf.get(tok)
        if v is None:
            df = len(self.postings.get(tok, ()))
            v = math.log((self.n + 1) / (df + 1)) + 1.0
            if df:
                self._idf[tok] = v
        return v

    def _code_hits(self, code: str) -> list[int]:
        hits = list(self.code_post.get(code, ()))
        if len(code) >= 5:  # the listing's code a prefix of a master's (c4890 -> c4890a)
            j = bisect_left(self.sorted_codes, code)
            n = 0
            while j < len(self.sorted_codes) and n < PREFIX_HITS and \
                    self.sorted_codes[j].startswith(code):
                if self.sorted_codes[j] != code:
                    hits.extend(self.code_post.at(j)[:PREFIX_HITS])
                    n += 1
                j += 1
            for k in range(max(5, len(code) - 3), len(code)):  # a master's code a prefix
                hits.extend(self.code_post.get(code[:k], ())[:PREFIX_HITS])
        return hits

    def candidates(self, f: Features) -> list[int]:
        """Masters worth scoring for a listing: same title, shared codes, rare words."""
        if f.norm == 0.0:
            self.prepare(f)
        return self._pick(self._found(f), f.brand)

    def _pick(self, found: list[tuple[float, int]], brand: str) -> list[int]:
        """At most ``MAX_CANDIDATES`` of the masters ``_found`` gave, the listing's brand
        first among masters sharing as much."""
        if len(found) <= MAX_CANDIDATES:
            return [i for _c, i in found]
        if brand:
            brands = self.brands
            found = sorted(((c + 0.5 if brands[i] == brand else c, i) for c, i in found),
                           key=_FIRST, reverse=True)
        return [i for _c, i in found[:MAX_CANDIDATES]]

    def _found(self, f: Features) -> list[tuple[float, int]]:
        """(how much is shared, master) of the masters a listing's title and codes find,
        most first (ties in the order found; the masters tied with the last one that
        ``_pick`` could take are kept for its brand tie-break)."""
        found: Counter[int] = Counter()
        same = self._same_title(f.title)
        if not same and f.brand:  # the channel put the brand in front
            for b in (f.brand_words, f.brand):
                if b and f.title.startswith(b + " "):
                    same = self.exact.get(f.title[len(b) + 1:], ())
                    break
        if len(same) == 1 and not f.codes:
            # the same title as one master, nothing else to go by: scoring others
            # could only find a weaker one (the usual case on a brand's own channels)
            return [(100.0, same[0])]
        for i in same:
            found[i] += 100
        # codes in sorted order: masters tied on how much they share keep the order they
        # were found in, which must not depend on the hash seed (set order)
        for c in sorted(f.codes):
            for i in self._code_hits(c)[:MAX_DF]:
                found[i] += 10
        for c in sorted(f.joined):
            hits = self.code_post.get(c, ())
            # two words read as one code that many masters show ("usb 2.0") are a
            # specification, not a model: they find nothing in particular
            if len(hits) <= CODE_DF:
                for i in hits:
                    found[i] += 10
        for c in sorted(f.description_codes)[:4]:
            for i in self.code_post.get(c, ())[:PREFIX_HITS]:
                found[i] += 5
        postings = self.postings
        toks = sorted((len(post), t) for t in f.tokenset if (post := postings.get(t)))
        # each of the rarest words counts once per master that has it (counted in C);
        # a word more than MAX_DF masters share does not block (a title of common words
        # only is matched by its exact form, its codes or not at all: bounded work)
        budget = BLOCK_BUDGET
        for df, t in toks[:BLOCK_TOKENS]:
            if df > min(MAX_DF, budget):
                break
            found.update(postings[t])
            budget -= df
        ranked = sorted(found.items(), key=_COUNT, reverse=True)  # in C; stable
        if len(ranked) > MAX_CANDIDATES:
            last = ranked[MAX_CANDIDATES - 1][1]
            n = MAX_CANDIDATES
            while n < len(ranked) and n < TIED_KEEP and ranked[n][1] == last:
                n += 1
            ranked = ranked[:n]
        return [(float(c), i) for i, c in ranked]

    def score(self, f: Features, i: int, explain: bool = False
              ) -> tuple[float, dict[str, Any] | None]:
        """How likely master ``i`` is what the listing shows; with ``explain``, why."""
        ev: dict[str, Any] | None = {} if explain else None
        if f.norm == 0.0:
            self.prepare(f)
        s = self._title_score(f, i, ev) + self._listing_score(f, i, ev)
        return round(s, 4), ev

    def _title_score(self, f: Features, i: int, ev: dict[str, Any] | None) -> float:
        """The evidence that depends on the listing's title (and codes) only: the same for
        every listing with that title, so ``rank`` computes it once per distinct title."""
        mt = self.titles[i]
        mw = self._mwords[i]
        if mw is None:
            mw = self._master_words(i)
        mtoks, mv, (med, mlic), mbundle, ma, mspecs, mcore, mcodes, mjoined = mw
        idf2 = self.idf2
        # fsum: exactly rounded, so the same whatever order the set is walked in
        shared = fsum([idf2[t] for t in f.tokenset & mtoks])
        cos = shared / (f.norm * self.norms[i])
        title = f.title
        if cos < 0.9 and f.tokens:
            # the master's brand named in the listing's title and not in its own (a
            # channel that writes "fogware publishing esl - learn english" for "learn
            # english" by fogware publishing): the titles compared without it
            span = brand_span(f.tokens, self.brands[i])
            if span and not span & mtoks:
                rest = f.tokenset - span
                norm = math.sqrt(fsum([self.idf(t) ** 2 for t in rest]))
                if norm:
                    cos = max(cos, fsum([idf2[t] for t in rest & mtoks]) / (norm * self.norms[i]))
                    title = " ".join(t for t in f.tokens if t not in span)
        # character-level similarity catches joined or split words ("studiodvd")
        if cos < 0.9:
            char = fuzz.token_set_ratio(title, mt) / 100.0
            if char < 1.0 and (mcore or f.core):
                # the titles without what they add in brackets ("(jewel case)", "(pc/mac)")
                char = max(char, fuzz.token_set_ratio(f.core or title, mcore or mt) / 100.0)
            sim = max(cos, CHAR_WEIGHT * char) if cos < char else cos
        else:
            sim = cos
        s = sim
        if ev is not None:
            ev["title"] = round(sim, 3)
        if mcodes or f.codes:
            agree = (f.codes & mcodes) | (f.joined & mcodes) | (f.codes & mjoined) \
                | (f.description_codes & mcodes)
            prefix = False
            if not agree:
                agree = {c for c in f.codes for m in mcodes
                         if min(len(c), len(m)) >= 5 and (c.startswith(m) or m.startswith(c))}
                # one code the start of the other (S1500 and S1500M): less than the same
                # code, so that a master naming the listing's code exactly ranks first
                prefix = bool(agree)
            if agree:
                # a code many masters share (a series, a connector) tells less
                df = min(len(self.code_post.get(c, ())) for c in agree)
                s += W_CODE_AGREE if df <= 3 and not prefix else W_CODE_AGREE / 2
                if ev is not None:
                    ev["codes_agree"] = sorted(agree)[:4]
                    if prefix:
                        ev["codes_prefix"] = True
            else:
                lc = {c for c in f.codes if _HAS_ALPHA.search(c)}
                mc = {c for c in mcodes if _HAS_ALPHA.search(c)}
                if not (lc and mc):  # part numbers of one length that differ (16898, 16899)
                    ln = {len(c) for c in f.codes if c.isdigit() and len(c) <= 8}
                    mn_ = {len(c) for c in mcodes if c.isdigit() and len(c) <= 8}
                    if ln & mn_:
                        lc = {c for c in f.codes if len(c) in ln & mn_}
                        mc = {c for c in mcodes if len(c) in ln & mn_}
                if lc and mc:  # both name their model, and not the same one
                    s += W_CODE_DIFFER
                    if ev is not None:
                        ev["codes_differ"] = [sorted(lc)[:3], sorted(mc)[:3]]
        if f.variants:
            for kind, words_ in f.variants.items():
                if kind in mv and not words_ & mv[kind]:
                    s += W_VARIANT_DIFFER
                    if ev is not None:
                        ev[f"{kind}s_differ"] = [sorted(words_), sorted(mv[kind])]
                    break
        led, llic = f.editions
        if llic != mlic or (led - med and med - led):
            # a licence named on one side only (upgrade, academic, OEM), or each side
            # naming an edition the other lacks (deluxe vs premium)
            s += W_EDITION_DIFFER
            if ev is not None:
                ev["editions_differ"] = [sorted(led | llic), sorted(med | mlic)]
        qty_differ = False
        mnums = self._mnums[i] if f.qty or f.nums or f.sizes else None
        if mnums is None and (f.qty or f.nums or f.sizes):
            mnums = self._master_numbers(i)
        if f.qty:
            mq = mnums[0]  # type: ignore[index]
            for kind in sorted(f.qty.keys() & mq.keys()):
                if not _overlap(f.qty[kind], mq[kind], MP_TOLERANCE if kind == "mp" else 0.01):
                    s += W_QTY_DIFFER
                    qty_differ = True
                    if ev is not None:
                        ev["quantities_differ"] = kind
                    break
        if f.nums and not qty_differ:
            mn = mnums[1]  # type: ignore[index]
            if f.nums - mn and mn - f.nums and \
                    self._numbers_differ(f, i, mnums):  # type: ignore[arg-type]
                # each names a number the other lacks (and does not show otherwise)
                s += W_NUM_DIFFER
                if ev is not None:
                    ev["numbers_differ"] = [[f"{n:g}" for n in sorted(f.nums)[:3]],
                                           [f"{n:g}" for n in sorted(mn)[:3]]]
        if f.sizes and not qty_differ:
            md = mnums[2]  # type: ignore[index]
            if md and not f.sizes & md:  # 60 x 60 vs 60 x 80: the numbers overlap
                s += W_QTY_DIFFER
                if ev is not None:
                    ev["sizes_differ"] = [[_size_text(d) for d in sorted(f.sizes)[:2]],
                                          [_size_text(d) for d in sorted(md)[:2]]]
        if f.shingles:
            mt_ = self._mtext.get(i)
            if mt_ is None:
                if len(self._mtext) >= TEXT_CACHE:
                    self._mtext.clear()
                mt_ = self._mtext[i] = shingles(self._master[self.skus[i]].description)
            if text_agrees(f.shingles, mt_):
                # the listing's description repeats the master's (both copied from the
                # maker's text): the same product, whatever the titles leave out
                s += W_TEXT_AGREE
                if ev is not None:
                    ev["descriptions_agree"] = True
        if f.specs and mspecs:
            fam = specs_differ(f.specs, mspecs)
            if fam is not None:
                s += W_SPEC_DIFFER
                if ev is not None:
                    ev["specs_differ"] = [sorted(f.specs[fam]), sorted(mspecs[fam])]
        if bool(f.bundle) != bool(mbundle):
            # a bundle or a combo is not its one part ("keyboard and mouse combo")
            s += W_BUNDLE
            if ev is not None:
                ev["bundle"] = sorted(f.bundle or mbundle)
        # one names an accessory, the other none, and is not itself for something ("Smart
        # Feather for iPad 2" is the "Smart Feather Case for iPad 2")
        if bool(ma) != bool(f.accessory) and _for_search(title if ma else mt) is None:
            s += W_ACCESSORY
            if ev is not None:
                ev["accessory"] = sorted(ma or f.accessory)[:3]
        elif ma and f.accessory:
            lk = {_ACCESSORY_KIND[w] for w in f.accessory if w in _ACCESSORY_KIND}
            mk = {_ACCESSORY_KIND[w] for w in ma if w in _ACCESSORY_KIND}
            if lk and mk and not lk & mk:  # a charger and a cable
                s += W_ACCESSORY
                if ev is not None:
                    ev["accessories_differ"] = [sorted(f.accessory)[:3], sorted(ma)[:3]]
        return s

    def _numbers_differ(self, f: Features, i: int, mnums: tuple[Any, ...]) -> bool:
        """Whether the listing and master ``i`` each name a number the other does not show
        in another form: a number of a quantity both name alike ("1024MB" and "1 GB",
        "14.1MP" and "14 MP": ``quantities`` compared them), or one inside the other's
        model code ("GT 520" and "GT520") is shown by both."""
        mq, mn = mnums[0], mnums[1]
        mine = _unexplained(f.nums - mn, f.qty, mq, self.codes[i], self.joined[i])
        if not mine:
            return False
        return bool(_unexplained(mn - f.nums, mq, f.qty, f.codes, f.joined))

    def _master_words(self, i: int) -> tuple[Any, ...]:
        """What ``_title_score`` reads from master ``i``'s words (its word set, variants,
        editions, bundle and accessory words) and codes (those written as one word, and
        as two), read on first use and kept: a master is a candidate of many titles."""
        mt = self.titles[i]
        mtoks = set(mt.split())
        cs, two = self.codes[i], self.joined[i]
        mw = self._mwords[i] = (mtoks, variants(mtoks), editions(mtoks),
                                _BUNDLE.intersection(mtoks), accessory_words(mt),
                                spec_words(mt),
                                core_title(self._master[self.skus[i]].title),
                                frozenset(cs) if cs else _NO_CODES,
                                frozenset(two) if two else _NO_CODES)
        return mw

    def _master_numbers(self, i: int) -> tuple[Any, ...]:
        """Master ``i``'s quantities, numbers and sizes (from ``number_text``), read on first
        use and kept."""
        nt = self.number_text(i)
        mn = self._mnums[i] = (quantities(nt), numbers(nt), sizes(nt))
        return mn

    def _head_joined(self, i: int) -> str:
        """``_head`` of master ``i`` without spaces (kept: read per brand comparison)."""
        h = self._heads[i]
        if h is None:
            h = self._heads[i] = self._head(i).replace(" ", "")
        return h

    def _head(self, i: int) -> str:
        """Master ``i``'s title before any "for ..." (a brand named after it is the
        brand of the product the master fits, not its own)."""
        t = self.titles[i]
        m = _for_search(t)
        return t[:m.start()] if m else t

    def _listing_score(self, f: Features, i: int, ev: dict[str, Any] | None) -> float:
        """The evidence from the listing's brand and price."""
        return self._brand_score(f, i, ev) + self._price_score(f.price, self.prices[i], ev)

    def _brand_score(self, f: Features, i: int, ev: dict[str, Any] | None) -> float:
        """The evidence from the listing's brand (and the brand its title names): the
        same for every listing with that title and brand."""
        s = 0.0
        lb, mb = f.brand, self.brands[i]
        if lb and mb:
            if lb == mb or (len(lb) >= 3 and len(mb) >= 3 and (lb in mb or mb in lb)) \
                    or _cores_agree(lb, mb) \
                    or len(lb) >= 4 and lb in self._head_joined(i):
                s += W_BRAND_AGREE
                if ev is not None:
                    ev["brand"] = "same"
            elif brand_span(_before_for(f.tokens), mb):
                # the listing's brand field names another (a seller, a distributor), its
                # title the master's ("Just Mobile Slide Stand" sold by Macsense)
                s += W_BRAND_AGREE
                if ev is not None:
                    ev["brand"] = "in title"
            else:
                s += W_BRAND_DIFFER
                if ev is not None:
                    ev["brand"] = "differs"
        elif mb and not lb and brand_span(f.tokens, mb):
            # no brand given, but the title names the master's
            s += W_BRAND_AGREE
            if ev is not None:
                ev["brand"] = "in title"
        return s

    def brand_scores(self, f: Features, cands: Sequence[int],
                     labels: list[str | None] | None = None) -> list[float]:
        """``_brand_score`` of each master in ``cands`` (``labels``: the "brand" evidence it
        explains for each is appended, None for none): the same numbers, with what
        depends on the two brands alone kept per pair of brands, the master's title head
        per master, and the listing title's spelling of a brand per brand."""
        lb, brands = f.brand, self.brands
        agree, differ = 0.0 + W_BRAND_AGREE, 0.0 + W_BRAND_DIFFER
        spans: dict[str, bool] = {}
        out: list[float] = []
        append = out.append
        label = labels.append if labels is not None else None
        if not lb:  # agrees when the title names the master's brand
            for i in cands:
                mb = brands[i]
                v = spans.get(mb)
                if v is None:
                    v = spans[mb] = bool(mb) and bool(brand_span(f.tokens, mb))
                append(agree if v else 0.0)
                if label is not None:
                    label("in title" if v else None)
            return out
        pairs, heads = self._brand_pairs, self._heads
        before: Sequence[str] | None = None
        for i in cands:
            mb = brands[i]
            if not mb:
                append(0.0)
                if label is not None:
                    label(None)
                continue
            if mb == lb:
                append(agree)
                if label is not None:
                    label("same")
                continue
            v = pairs.get((lb, mb))
            if v is None:
                v = pairs[(lb, mb)] = len(lb) >= 3 and len(mb) >= 3 and (
                    lb in mb or mb in lb) or _cores_agree(lb, mb)
            if not v and len(lb) >= 4:
                h = heads[i]
                v = lb in (h if h is not None else self._head_joined(i))
            if v:
                append(agree)
                if label is not None:
                    label("same")
                continue
            v = spans.get(mb)
            if v is None:
                if before is None:
                    before = _before_for(f.tokens)
                v = spans[mb] = bool(brand_span(before, mb))
            append(agree if v else differ)
            if label is not None:
                label("in title" if v else "differs")
        return out

    @staticmethod
    def _price_score(lp: float | None, mp: float | None, ev: dict[str, Any] | None) -> float:
        """The evidence from the listing's price ``lp`` against the master's ``mp``
        (``linkbatch.price_scores`` is the same rule over arrays: keep them in step;
        tests/test_linkbatch.py compares them)."""
        s = 0.0
        if lp and mp and lp > 0 and mp > 0:
            ratio = max(lp, mp) / min(lp, mp)
            if ratio >= 10:
                s += W_PRICE_FAR
            elif ratio >= 3:
                s += W_PRICE_OFF
            elif ratio <= 1.3:
                s += W_PRICE_CLOSE
            if ev is not None and (ratio >= 3 or ratio <= 1.3):
                ev["price"] = "close" if ratio <= 1.3 else f"{ratio:.1f}x apart"
        return s

    def prepare(self, f: Features) -> None:
        """Set the listing's word set and the norm of its TF-IDF vector."""
        f.tokenset = set(f.tokens)
        # idf squared read from idf2 (the same numbers as self.idf(t) ** 2; a word no master
        # has counts as rare)
        idf2, rare = self.idf2, (math.log(self.n + 1) + 1.0) ** 2
        f.norm = math.sqrt(fsum([idf2.get(t, rare) for t in f.tokenset])) or 1.0

    def _title_key(self, f: Features, shown: tuple[bool, tuple[Any, ...]] | None = None
                   ) -> tuple[Any, ...]:
        """What the title-dependent work of ``rank`` depends on (``shown``: the listing's
        ``_title_shown``, when the caller knows it)."""
        exact, rest = shown if shown is not None else self._title_shown(f)
        alt = None
        if f.brand and not exact:
            for b in (f.brand_words, f.brand):
                if b and f.title.startswith(b + " "):
                    alt = b
                    break
        return (f.title, alt, *rest)

    def _same_title(self, title: str) -> Sequence[int]:
        """The masters whose title is ``title`` (``exact``; the last answer kept)."""
        last = self._last_same
        if last[0] == title:
            return last[1]
        same = self.exact.get(title, ())
        self._last_same = (title, same)
        return same

    def _title_shown(self, f: Features) -> tuple[bool, tuple[Any, ...]]:
        """The part of ``_title_key`` that does not depend on the listing's brand: whether
        a master has the title, and the codes and numbers read from it."""
        return (bool(self._same_title(f.title)),
                (frozenset(f.codes) if f.codes else None,
                 frozenset(f.joined) if f.joined else None,
                 frozenset(f.description_codes) if f.description_codes else None,
                 f.text_key or None, f.core or None,
                 frozenset((k, v) for k, vs in f.qty.items() for v in vs) if f.qty else None,
                 frozenset(f.nums) if f.nums else None))

    def rank(self, f: Features, exclude: Iterable[str] = (), key: tuple[Any, ...] | None = None
             ) -> tuple[tuple[float, int], ...]:
        """(score, master) of the candidates, best first, at most ``KEEP``
        (``exclude``: SKUs a person rejected for this listing; ``key``: its ``_title_key``
        when the caller knows it).

        The work that depends on the title only (blocking, the title's similarity, codes,
        quantities, variants) is done once per distinct title and kept (at most
        ``CACHE_TITLES`` titles); the brand and price are weighed per listing."""
        if f.reason:
            return ()
        cands, titles = self.title_scored(f, exclude, key)
        out = [(round(t + self._listing_score(f, i, None), 4), i)
               for i, t in zip(cands, titles, strict=True)]
        out.sort(key=_SECOND)  # by master, then (stable) by score, highest first
        out.sort(key=_FIRST, reverse=True)
        return tuple(out[:KEEP])  # a tuple of numbers: the collector stops tracking it

    def title_scored(self, f: Features, exclude: Iterable[str] = (),
                     key: tuple[Any, ...] | None = None,
                     explained: list[dict[str, Any] | float] | None = None
                     ) -> tuple[list[int], list[float]]:
        """The masters ``rank`` scores for a listing (in no particular order) and the
        evidence of each from the listing's title (``_title_score``); what ``rank`` adds
        is ``_listing_score`` (brand and price). The same for every listing showing the
        title with the same brand and ``exclude``. ``explained``: each master's title
        evidence as ``_title_score`` explains it is appended to it: its "title" value
        alone when it has nothing else (most), else the dict (one per title and master,
        shared: not to be changed)."""
        if key is None:
            key = self._title_key(f)
        entry = self._cache.get(key)
        if entry is None:
            if len(self._cache) >= self.cache_titles:
                self._cache.clear()
            if f.norm == 0.0:
                self.prepare(f)
            found = self._found(f)
            brands = self.brands
            entry = self._cache[key] = (found, {}, {}, f.norm, {},
                                        frozenset(brands[i] for _c, i in found)
                                        if len(found) > MAX_CANDIDATES else frozenset(), {})
        elif f.norm == 0.0:  # the title's norm is known; its word set is made if needed
            f.norm = entry[3]
        found, title_scores, pre_scores, _norm, picked, found_brands, title_evs = entry
        brand = f.brand
        cands = None if exclude else picked.get(brand)
        if cands is None and brand and not exclude:
            # a brand that no master found has (or few found: all are picked) picks what
            # no brand picks (``_pick``): chosen once for all such brands
            if brand not in found_brands:
                brand = ""
                cands = picked.get("")
                if cands is not None:
                    picked[f.brand] = cands
        if cands is None:  # (else chosen before for this title and brand)
            cands = self._pick(found, brand)
            if exclude:
                banned = set(exclude)
                cands = [i for i in cands if self.skus[i] not in banned]
            if len(cands) > FULL_SCORES:
                # the title's words first (cheap); all the evidence for the closest few only.
                # A master found by a model code it shares with the listing (or by its exact
                # title) counts the code's weight too: its words may share little with the
                # listing's ("Sony MDRXB40EX High Sensitive Bass Headphones" vs "Sony
                # MDR-XB40EX ... Extra Bass EX Earbuds") while the code decides the score
                coded: set[int] | None = None
                pre = []
                for i in cands:
                    c = pre_scores.get(i)
                    if c is None:
                        if not f.tokenset:
                            f.tokenset = set(f.tokens)
                        if coded is None:
                            coded = {j for n, j in found if n >= CODE_FOUND}
                        mw = self._mwords[i]  # (the master's word set, when read before)
                        c = pre_scores[i] = fsum([self.idf2[t] for t in f.tokenset.intersection(
                            mw[0] if mw is not None else self.titles[i].split())]) \
                            / self.norms[i] + \
                            (W_CODE_AGREE * f.norm if i in coded else 0.0)  # (cosine x norm)
                    pre.append((c, i))
                pre.sort(reverse=True)
                cands = [i for _c, i in pre[:FULL_SCORES]]
            if not exclude:
                picked[brand] = picked[f.brand] = cands
        titles = []
        for i in cands:
            t = title_scores.get(i)
            if t is None or explained is not None and i not in title_evs:
                if not f.tokenset:
                    f.tokenset = set(f.tokens)
                ev: dict[str, Any] | None = None if explained is None else {}
                t = title_scores[i] = self._title_score(f, i, ev)
                if ev is not None:
                    title_evs[i] = ev if len(ev) > 1 else ev["title"]
            titles.append(t)
            if explained is not None:
                explained.append(title_evs[i])
        return cands, titles


@dataclass(slots=True)
class Decision:
    """The outcome of the assignment for one listing."""

    state: str                      # "linked", "suggested" or "unlinked"
    index: int | None               # the master (linked or suggested)
    score: float
    alternatives: list[int]
    reason: str | None = None


def assign(ranked: Sequence[Sequence[tuple[float, int]]], link_at: float, suggest_at: float,
           margin: float, taken: Iterable[int] = (), order: Sequence[Any] | None = None
           ) -> list[Decision]:
    """One master per listing and one listing per master, across the whole channel.

    ``ranked``: per listing, its candidates as (score, master), best first. Greedy by
    score over the candidate graph: the strongest pair is settled first, then the next
    pair whose listing and master are both free. ``taken``: masters already linked in
    this channel (by a key or a confirmation). Of pairs scoring the same, the listing whose
    next candidate is further below goes first (it has no other), then the one first
    in ``order``: per listing, the smaller first (the listing's key, so that the
    channel's row order does not matter; else its position). A listing is *linked* when its pair
    scores at least ``link_at`` and ``margin`` above the listing's next candidate (free
    or another listing's: a close second makes it a guess either way);
    *suggested* when it scores at least ``suggest_at``, or when the master it fits
    best, at least ``link_at``, went to another listing; else *unlinked*.
    """
    used = set(taken)
    # listings in the order that settles ties: perm[r] is the listing of rank r
    perm: Sequence[int] = range(len(ranked)) if order is None else \
        sorted(range(len(ranked)), key=order.__getitem__)
    # (-score, how far the listing's other candidates are below it (negated), listing's
    # rank, candidate): sorted as they are, strongest first (no key function). Of pairs
    # scoring the same, the listing surer of it goes first: one whose next candidate is
    # far below keeps its master, one that fits others as well takes its next.
    edges: list[tuple[float, float, int, int]] = []
    for r, p in enumerate(perm):
        cands = ranked[p]
        if not cands or cands[0][0] < suggest_at:
            continue
        s0 = cands[0][0]
        edges.append((-s0, cands[1][0] - s0 if len(cands) > 1 else -s0, r, 0))
        for k in range(1, len(cands)):
            sc = cands[k][0]
            if sc < suggest_at:
                break
            edges.append((-sc, s0 - sc, r, k))
    edges.sort()
    chosen: dict[int, int] = {}
    for _sc, _g, r, k in edges:
        p = perm[r]
        if p in chosen:
            continue
        i = ranked[p][k][1]
        if i in used:
            continue
        chosen[p] = k
        used.add(i)
    return decide(ranked, chosen, used, link_at, suggest_at, margin)


def decide(ranked: Sequence[Sequence[tuple[float, int]]], chosen: Mapping[int, int],
           used: Container[int], link_at: float, suggest_at: float, margin: float
           ) -> list[Decision]:
    """Each listing's state once the greedy pass of ``assign`` is done: ``chosen`` listing
    -> the place of the candidate it got, ``used`` the masters taken (by it or before)."""
    out: list[Decision] = []
    for p, cands in enumerate(ranked):
        got = chosen.get(p)
        if got is None:
            if cands and cands[0][0] >= link_at:  # a strong match: a second listing of it?
                out.append(Decision("suggested", cands[0][1], cands[0][0],
                                    [i for _s, i in cands[1:4]],
                                    "its best match is linked to another listing"))
            else:
                reason = "no candidate" if not cands else \
                    f"best score {cands[0][0]:.2f} below {suggest_at:.2f}" \
                    if cands[0][0] < suggest_at else \
                    f"its best match (score {cands[0][0]:.2f}) is linked to another listing"
                out.append(Decision("unlinked", None, cands[0][0] if cands else 0.0,
                                    [i for _s, i in cands[:3]], reason))
            continue
        k = got
        sc, i = cands[k]
        # the runner-up among all the listing's other candidates, taken or not: a listing
        # whose best master went to another listing, or whose close second did, is a
        # guess by elimination (measured: such links were right 42% (Amazon-Google) and
        # 38% (Walmart-Amazon) of the time against 75% and 65% for the others)
        runner = max((o for n, (o, _j) in enumerate(cands) if n != k), default=0.0)
        alts = [j for n, (_o, j) in enumerate(cands[:4]) if n != k]
        # a listing that fits another master just as well (a title cut before the colour
        # and size) cannot tell them apart, whoever took the other: a guess, not a link
        if any(abs(sc - o) < TIE for n, (o, _j) in enumerate(cands) if n != k):
            runner = sc
        if sc >= link_at and sc - runner >= margin:
            out.append(Decision("linked", i, sc, alts))
        elif sc >= link_at:
            out.append(Decision("suggested", i, sc, alts,
                                f"a second candidate scores {runner:.2f}"))
        else:
            out.append(Decision("suggested", i, sc, alts,
                                f"score {sc:.2f} below {link_at:.2f}"))
    return out


def twin_links(idx: MatchIndex, ranked: Sequence[Sequence[tuple[float, int]]],
               decisions: list[Decision], link_at: float,
               prices: Sequence[float | None] | None = None) -> list[Decision]:
    """``decisions`` (of ``assign``) with each link made a suggestion when another of the
    listing's candidates that scores at least ``link_at`` is a twin of its master
    (``MatchIndex.twins``: the same title, or the same model codes): the master catalog
    holds the product twice, and which record the listing is cannot be told from what it
    shows, unless its price does (``prices``: per listing, its price or None; a twin
    whose price is not within 30% of the listing's, when its master's is, is another
    product). Changed in place, and returned."""
    for p, d in enumerate(decisions):
        if d.state != "linked" or d.index is None:
            continue
        i = d.index
        lp = prices[p] if prices is not None else None
        for sc, j in ranked[p]:
            if j == i or sc < link_at:
                continue
            why = idx.twins(i, j)
            if why is not None and not price_tells_apart(lp, idx.prices[i], idx.prices[j]):
                decisions[p] = Decision("suggested", i, d.score, d.alternatives,
                                        f"{idx.skus[j]} has the same {why} (score {sc:.2f}): "
                                        "the master may list this product twice")
                break
    return decisions


def price_tells_apart(price: float | None, mine: float | None, other: float | None) -> bool:
    """Whether a listing's ``price`` is within 30% of its master's (``mine``) and not of
    the other master's (a missing price, None or 0.0, tells nothing)."""
    return bool(price) and _close(price, mine) and not _close(price, other)  # type: ignore[arg-type]


def _close(a: float, b: float | None) -> bool:
    """Whether two prices are within 30% (as ``W_PRICE_CLOSE`` weighs them; a master's
    missing price, 0.0, is close to none)."""
    if not b or a <= 0:
        return False
    return max(a, b) / min(a, b) <= 1.3
