"""Linking: decide which master record a listing shows.

Exact keys are tried in the configured order (sku, gtin, mpn with brand, url).
A key that points at several masters makes the link ambiguous: reported, never
guessed. A listing whose keys are absent or match nothing falls back to fuzzy
title matching: candidates are found through a token index (model-number-like
tokens and rare words first, restricted to the listing's brand), scored with
rapidfuzz, and accepted only above ``fuzzy_threshold`` and ``fuzzy_margin``
points ahead of the runner-up.
"""

from __future__ import annotations

import functools
import re
from bisect import bisect_left
from collections import defaultdict
from typing import Any, Callable, Iterable, Mapping
from urllib.parse import urlsplit

from rapidfuzz import fuzz, process

from auditor.model import Link, LinkMethod, Listing, MasterRecord
from auditor.text import normalize_title
from auditor.values import gtin_valid, normalize_gtin

KEY_KINDS = ("sku", "gtin", "mpn", "url")
# Fuzzy blocking limit: candidates beyond MAX_CANDIDATES are not scored.
MAX_CANDIDATES = 2000
# A title whose rarest word is shared by more masters than this is not linked by title.
MAX_START = 20_000
# Intersecting stops once this few candidates are left.
SMALL_BLOCK = 50
_MODEL = re.compile(r"(?=.*\d)(?=.*[a-z])|^\d{3,}$")


def norm_sku(s: str | None) -> str | None:
    """SKUs compare without case and surrounding or inner whitespace."""
    if not s:
        return None
    return "".join(s.split()).upper() or None


def norm_gtin(s: str | None) -> str | None:
    """A GTIN-14 with a valid check digit, else None (a bad GTIN links nothing)."""
    try:
        g = normalize_gtin(s) if s else None
    except ValueError:
        return None
    return g if g and gtin_valid(g) else None


_MPN_SEPARATORS = re.compile(r"[\s\-_./]+")
_NON_WORD = re.compile(r"\W+")


@functools.lru_cache(maxsize=4096)
def _norm_brand(brand: str) -> str:
    return _NON_WORD.sub("", brand).upper()


def norm_mpn(brand: str | None, mpn: str | None) -> str | None:
    """Brand and MPN folded: an MPN alone is not unique across brands."""
    if not mpn:
        return None
    m = _MPN_SEPARATORS.sub("", mpn).upper()
    b = _norm_brand(brand or "")
    return f"{b}|{m}" if m and b else None


_VARIANT = re.compile(r"(?:^|&)variant=([^&]+)")


def norm_url(u: str | None) -> str | None:
    """Host and path, lowercase, no trailing slash, no query except a variant id."""
    if not u:
        return None
    u = u.strip()
    # Fast path for the plain http(s)://host[:port]/path?query#fragment of nearly every
    # URL; anything unusual (user info, IPv6, control characters) goes to urlsplit.
    scheme, sep, rest = u.partition("://")
    host = None
    # (ASCII and printable: no tab, CR or LF, which urlsplit would remove)
    if sep and scheme.isascii() and scheme.isalpha() and rest.isascii() and \
            rest.isprintable() and "@" not in rest:
        rest = rest.partition("#")[0]
        rest, _, query = rest.partition("?")
        netloc, slash, path = rest.partition("/")
        if "[" not in netloc:  # an IPv6 literal goes to urlsplit
            host, path = netloc.partition(":")[0].lower(), slash + path
    if host is None:
        p = urlsplit(u)
        host, path, query = (p.hostname or "").lower(), p.path, p.query or ""
    host = host.removeprefix("www.")
    path = path.rstrip("/").lower()
    variant = _VARIANT.search(query) if "variant=" in query else None
    return f"{host}{path}" + (f"?variant={variant.group(1)}" if variant else "")


def _contains(sorted_list: list[int], x: int) -> bool:
    i = bisect_left(sorted_list, x)
    return i < len(sorted_list) and sorted_list[i] == x


def _is_model(token: str) -> bool:
    return bool(_MODEL.search(token))


# The link method of each exact key kind (an enum looked up by value is slow on the hot path).
_METHODS = {m.value: m for m in LinkMethod}

# How each exact key is read off a listing.
_LISTING_KEYS = {
    "sku": lambda li: norm_sku(li.sku),
    "gtin": lambda li: norm_gtin(li.gtin),
    "mpn": lambda li: norm_mpn(li.brand, li.mpn),
    "url": lambda li: norm_url(li.url),
}


class FuzzyIndex:
    """Normalized master titles with a token index for blocking."""

    def __init__(self, master: Mapping[str, MasterRecord]):
        self.skus: list[str] = []
        self.titles: list[str] = []
        self.brands: list[str] = []
        self.postings: dict[str, list[int]] = {}
        self.exact: dict[str, list[int]] = {}  # normalized title -> masters with it
        self.pos: dict[str, int] = {}
        postings: defaultdict[str, list[int]] = defaultdict(list)
        for sku, rec in master.items():
            if not rec.title:
                continue
            i = len(self.skus)
            self.pos[sku] = i
            title = normalize_title(rec.title)
            self.skus.append(sku)
            self.titles.append(title)
            self.brands.append(normalize_title(rec.brand) if rec.brand else "")
            self.exact.setdefault(title, []).append(i)
            for tok in set(title.split()):
                postings[tok].append(i)
        self.postings = dict(postings)  # lookups of unknown tokens must not add them

    def candidates(self, title: str, brand: str) -> list[int]:
        """Masters sharing the listing's most telling tokens (model numbers, rare words).

        Postings are intersected from the most telling token on, until few
        candidates are left; a token that would leave none (a typo, a changed
        word) is skipped rather than trusted.
        """
        postings = self.postings
        toks = [t for t in set(title.split()) if t in postings]
        toks.sort(key=lambda t: (not _is_model(t), len(postings[t]), t))
        if not toks or len(postings[toks[0]]) > MAX_START:
            return []  # no telling word: scoring would be slow and could only be ambiguous
        found = set(postings[toks[0]])
        for t in toks[1:]:
            if len(found) <= SMALL_BLOCK:
                break
            post = postings[t]
            if len(found) * 16 < len(post):  # postings are sorted: look the few up
                narrower = {i for i in found if _contains(post, i)}
            else:
                narrower = found.intersection(post)
            if narrower:
                found = narrower
        if brand:
            same = {i for i in found if self.brands[i] == brand}
            if same:
                found = same
        return sorted(found)[:MAX_CANDIDATES]

    def title_of(self, sku: str) -> str:
        """The normalized title of a master in the index."""
        return self.titles[self.pos[sku]]

    def best(self, title: str, brand: str, limit: int = 5) -> list[tuple[str, float]]:
        """The closest masters as (sku, score 0-100), best first."""
        query = title
        if brand:  # a channel may put the brand in front; the master title may not have it
            query = title.removeprefix(brand + " ")
        # The same normalized title: the usual case, and then nothing else comes close.
        cands = self.exact.get(title, []) + (self.exact.get(query, []) if query != title else [])
        if cands and brand:
            cands = [i for i in cands if self.brands[i] == brand] or cands
        if not cands:
            cands = self.candidates(title, brand)
        if not cands:
            return []
        choices = {i: self.titles[i] for i in cands}
        scored = process.extract(query, choices, scorer=fuzz.token_sort_ratio, limit=limit)
        if query != title:
            scored += process.extract(title, choices, scorer=fuzz.token_sort_ratio, limit=limit)
        best: dict[int, float] = {}
        for _title, score, i in scored:
            best[i] = max(score, best.get(i, 0.0))
        return sorted(((self.skus[i], s) for i, s in best.items()), key=lambda x: (-x[1], x[0]))


# How each exact key is read off a master record.
_MASTER_KEYS: dict[str, Callable[[str, MasterRecord], str | None]] = {
    "sku": lambda sku, rec: norm_sku(sku),
    "gtin": lambda sku, rec: norm_gtin(rec.gtin),
    "mpn": lambda sku, rec: norm_mpn(rec.brand, rec.mpn),
    "url": lambda sku, rec: norm_url(rec.url),
}


class _LazyIndex(dict):
    """kind -> normalized key -> SKUs, each kind built from the master when first read."""

    def __init__(self, master: Mapping[str, MasterRecord]):
        super().__init__()
        self.master = master

    def __missing__(self, kind: str) -> dict[str, list[str]]:
        keyof = _MASTER_KEYS[kind]
        idx: dict[str, list[str]] = {}
        for sku, rec in self.master.items():
            key = keyof(sku, rec)
            if key:
                idx.setdefault(key, []).append(sku)
        self[kind] = idx
        return idx


class Linker:
    """Indexes the master once per run; ``link(listing)`` is then a few dict lookups."""

    def __init__(self, master: Mapping[str, MasterRecord], options: Mapping[str, Any]):
        self.master = master
        self.order = list(options.get("order") or KEY_KINDS)
        self.fuzzy = bool(options.get("fuzzy", True))
        self.threshold = float(options.get("fuzzy_threshold", 88.0))
        self.margin = float(options.get("fuzzy_margin", 3.0))
        self._fuzzy_index: FuzzyIndex | None = None
        # Each key kind is indexed on first use: when every listing links by SKU,
        # the GTIN, MPN and URL indexes of a large master are never built.
        self.index = _LazyIndex(master)
        if self.order:
            self.index[self.order[0]]  # nearly every listing needs it: build it up front

    def prepare(self) -> None:
        """Build every index now (each is otherwise built on first use): done once before
        forking workers, so they share the indexes instead of each building its own."""
        for kind in self.order:
            self.index[kind]
        if self.fuzzy:
            self.fuzzy_index

    def keys(self, li: Listing) -> Iterable[tuple[str, str | None]]:
        """The listing's normalized keys in the configured order."""
        for kind in self.order:
            yield kind, _LISTING_KEYS[kind](li)

    @property
    def fuzzy_index(self) -> FuzzyIndex:
        """Built on first use: runs where every listing links exactly never pay for it."""
        if self._fuzzy_index is None:
            self._fuzzy_index = FuzzyIndex(self.master)
        return self._fuzzy_index

    def link(self, li: Listing) -> Link:
        """The link of one listing: exact keys in order, then fuzzy, else unlinked or ambiguous."""
        index = self.index
        for kind in self.order:
            key = _LISTING_KEYS[kind](li)
            if not key:
                continue
            hits = index[kind].get(key)
            if not hits:
                continue
            if len(hits) == 1:
                return Link(li.channel, li.key, hits[0], _METHODS[kind], 1.0)
            return Link(li.channel, li.key, None, LinkMethod.AMBIGUOUS, 0.0, tuple(hits[:10]))
        if self.fuzzy and li.title:
            return self.link_fuzzy(li)
        return Link(li.channel, li.key, None, LinkMethod.NONE, 0.0)

    def link_fuzzy(self, li: Listing) -> Link:
        """Link by title similarity: the best match must clear the threshold and the margin."""
        title = normalize_title(li.title or "")
        brand = normalize_title(li.brand) if li.brand else ""
        ranked = self.fuzzy_index.best(title, brand)
        if not ranked or ranked[0][1] < self.threshold:
            conf = ranked[0][1] / 100 if ranked else 0.0
            return Link(li.channel, li.key, None, LinkMethod.NONE, round(conf, 3))
        top = ranked[0][1]
        close = [sku for sku, s in ranked if top - s < self.margin]
        # A title that lacks what tells the best candidate from others (a colour,
        # a size) fits all of them: ambiguous, however the lengths score.
        toks = set(title.split()) - {brand}
        best_toks = set(self.fuzzy_index.title_of(ranked[0][0]).split())
        if toks < best_toks:
            close += [sku for sku, s in ranked[1:] if sku not in close and s >= self.threshold
                      and toks <= set(self.fuzzy_index.title_of(sku).split())]
        if len(close) > 1:
            return Link(li.channel, li.key, None, LinkMethod.AMBIGUOUS, round(top / 100, 3),
                        tuple(close[:10]))
        return Link(li.channel, li.key, ranked[0][0], LinkMethod.FUZZY, round(top / 100, 3))
