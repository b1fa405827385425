"""A whole channel's listings without keys, ranked and explained at once (``LinkSession.finish``).

The decisions are exactly those of ``listing_features``, ``MatchIndex.rank``, ``assign`` and
``MatchIndex.score`` applied listing by listing; this module only changes how that work is
done, for channels of hundreds of thousands of such listings:

* **features**: the part of a listing's features read from its title is read once per
  distinct title (``FeatureReader``); the brand, price, MPN and description are added per
  listing;
* **order**: listings are ranked in the order of their titles, so that listings showing one
  title follow each other and the index's per-title cache (blocking, title evidence) hits
  however many distinct titles the channel has;
* **processes**: a large channel is ranked in parts of about equal work (cut between
  titles, a distinct title weighing ``TITLE_WORK`` listings), each but one in a forked
  process that sees the index as it is (nothing is copied in; the rankings travel back as
  arrays) and then explains its part's links too (``_Helper``: one fork for both passes);
  the one-to-one assignment stays channel-wide, in this process;
* **arrays**: the rankings, the greedy pass of the assignment, the decisions and the links
  are made from arrays (``Ranks``, ``greedy``, ``decide_flat``, ``links_of``), without a
  tuple or object per listing until its Link;
* **evidence** of suggested links is read in the same order, its title part once per
  (title, master);
* the cyclic garbage collector is paused meanwhile: the objects made here all stay alive
  until the links are out, so collections would only rescan them (``collector_paused``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import gc
import logging
import multiprocessing as mp
import os
from operator import attrgetter
from array import array
from itertools import chain
from typing import Any, Callable, Iterable, Iterator, Mapping, MutableSequence, Sequence

import numpy as np

# forks as the run's other background steps do
from auditor.forking import _in_fork, _leave_fork, die_with_parent
from auditor.matching import (KEEP, TIE, W_PRICE_CLOSE, W_PRICE_FAR, W_PRICE_OFF, Decision, Features,
                              MatchIndex, codes, decide, listing_features, norm_brand,
                              shingles, text_key, twin_links)
from auditor.model import Link, LinkMethod, Listing
from auditor.text import normalize_title

CACHE = 2_000         # titles, brands, (title, master) evidence kept while reading listings in
                      # title order (a title's listings follow each other: few are needed);
                      # also the index's titles (``MatchIndex.cache_titles``) meanwhile
log = logging.getLogger("auditor.linking")

ROUND_MIN = 1_000     # pairs left from which the greedy pass settles them in rounds (``greedy``)
POOL_MIN = 20_000     # listings without keys from which a channel is ranked in several processes
TITLE_WORK = 20       # a distinct title's work in listings' (cutting a channel in parts: ``_parts``)

Ranked = tuple[tuple[float, int], ...]
_FIELDS = attrgetter(*(f.name for f in dataclasses.fields(Features)))


class FeatureReader:
    """``listing_features`` for many listings: what depends on the title alone is read once
    per distinct title (at most ``CACHE`` kept), then the listing's own brand, price, MPN and
    description are added (the result equals ``listing_features`` of the listing)."""

    def __init__(self) -> None:
        self._titles: dict[str, Features] = {}
        self._brands: dict[str, tuple[str, str]] = {}

    def __call__(self, title: str | None, description: str | None, brand: str | None,
                 price: float | None, mpn: str | None) -> Features:
        f = self.shown(title, description, mpn)
        f.price = price
        if brand:
            f.brand, f.brand_words = self.brand(brand)
        return f

    def shown(self, title: str | None, description: str | None, mpn: str | None,
              copy: bool = True) -> Features:
        """The features of a title, description and MPN (no brand, no price): a new object
        (without ``copy``, one the reader keeps for the title when there is no description
        and no MPN: its brand and price are the caller's to set)."""
        title = title or ""
        # an ASCII title is read alike in any case (words, codes and numbers are read from
        # it lowercased) unless it has HTML entities, which are unescaped before the case
        # folds: "BLACK" and "Black" share what is read
        key = title.lower() if title.isascii() and "&" not in title else title
        base = self._titles.get(key)
        if base is None:
            if len(self._titles) >= CACHE:
                self._titles.clear()
            base = self._titles[key] = listing_features(title, None, None, None, None)
        if not (copy or mpn or description):
            return base
        f = Features(*_FIELDS(base))  # shares the title's sets: nothing changes them in place
        f.brand, f.brand_words, f.price = "", "", None  # (``each`` sets them on ``base``)
        if mpn:
            f.codes = f.codes | codes(mpn.replace(" ", ""))[0]
        if description:
            f.description_codes = codes(description)[0] - f.codes
            f.shingles = shingles(description)
            f.text_key = text_key(description)
        return f

    def brand(self, brand: str | None) -> tuple[str, str]:
        """(the brand as ``norm_brand`` folds it, as a title is normalized)."""
        if not brand:
            return "", ""
        b = self._brands.get(brand)
        if b is None:
            if len(self._brands) >= CACHE:
                self._brands.clear()
            b = self._brands[brand] = (norm_brand(brand), normalize_title(brand[:200]))
        return b

    def each(self, listings: Sequence[Listing], positions: Sequence[int]
             ) -> Iterator[tuple[int, Listing, Features]]:
        """(position, listing, its features) for the listings at ``positions``. One
        Features object serves the listings showing the same title (in any case, when it
        is ASCII), description and MPN, their brand and price set in turn: use it before
        taking the next."""
        title: Any = self  # (no listing's)
        description = mpn = None
        f = Features("", [], set(), "", None)
        brands, brand = self._brands, self.brand
        for p in positions:
            li = listings[p]
            if li.title != title or li.description != description or li.mpn != mpn:
                title, description, mpn = li.title, li.description, li.mpn
                f = self.shown(title, description, mpn, copy=False)
            b = brands.get(li.brand) if li.brand else None  # (``brand``, inlined)
            f.brand, f.brand_words = b if b is not None else brand(li.brand)
            f.price = float(li.price.amount) if li.price is not None else None
            yield p, li, f


def title_order(listings: Sequence[Listing]) -> list[int]:
    """Positions of the listings in the order of their titles (case folded; stable)."""
    keys = _title_keys(listings)
    return sorted(range(len(listings)), key=keys.__getitem__)


def _title_keys(listings: Sequence[Listing]) -> list[str]:
    """Each listing's title, case folded (what ``title_order`` sorts by)."""
    return [(li.title or "").casefold() for li in listings]


def rank_part(idx: MatchIndex, listings: Sequence[Listing], positions: Sequence[int],
              rejected: Mapping[str, Any], explained: Explained | None = None
              ) -> tuple[dict[int, str], Flat]:
    """The rankings of the listings at ``positions``, in that order, as arrays (``Flat``),
    and why a listing cannot be matched (by its place in ``positions``; the others have
    none): ``MatchIndex.rank`` of each (``rejected``: listing key -> SKUs a person
    rejected), computed in two steps. Per title and brand (``_Groups``): the candidates,
    their title evidence and their brand evidence; then for all the listings at once,
    over arrays (``score_flat``): each candidate's price evidence, the score, and the
    candidates best first. ``explained``: filled with what explains the links of the
    listings ranked per title and brand (``Explained``)."""
    with _titles_kept(idx, CACHE):
        return _rank_part(idx, listings, positions, rejected, explained)


@contextlib.contextmanager
def _titles_kept(idx: MatchIndex, n: int) -> Iterator[None]:
    """At most ``n`` titles' blocking and title evidence kept by ``idx`` inside (listings
    in title order need the last few; a hundred thousand kept cost memory and their
    freeing), then as many as before."""
    was = idx.cache_titles
    idx.cache_titles = min(n, was)
    try:
        yield
    finally:
        idx.cache_titles = was


def _rank_part(idx: MatchIndex, listings: Sequence[Listing], positions: Sequence[int],
               rejected: Mapping[str, Any], explained: Explained | None = None
               ) -> tuple[dict[int, str], Flat]:
    """``rank_part`` (its title cache bounded by the caller)."""
    whys: dict[int, str] = {}
    groups = _Groups(idx, explained)
    mine: list[int] = []       # the places ranked over arrays
    group_of: list[int] = []   # and each one's group
    prices: list[float] = []   # and price (0.0: none)
    alone: list[int] = []      # the places ranked one by one
    ranked_alone: list[Ranked] = []
    k = -1
    for _p, li, f in FeatureReader().each(listings, positions):
        k += 1
        if f.reason:
            whys[k] = f.reason
            alone.append(k)
            ranked_alone.append(())
            continue
        exclude = rejected.get(li.key, ()) if rejected else ()
        if exclude:  # rare: alone
            alone.append(k)
            ranked_alone.append(idx.rank(f, exclude, groups.keys(f)))
            continue
        mine.append(k)
        group_of.append(groups(f))
        prices.append(f.price or 0.0)
    parts = [(np.array(alone, dtype=np.intp), _flat(ranked_alone))]
    if mine:
        parts.append((np.array(mine, dtype=np.intp), groups.ranked(group_of, prices)))
        if explained is not None:
            explained.group[np.array(positions, dtype=np.intp)[parts[1][0]]] = group_of
            explained.pack()
    return whys, _interleave(k + 1, parts)


# Rankings as arrays: per listing the number of candidates kept, then every listing's
# (score, master) pairs one after the other, best first
Flat = tuple[np.ndarray, np.ndarray, np.ndarray]


def _flat(ranked: Sequence[Ranked]) -> Flat:
    """``Flat`` of rankings given as tuples."""
    counts = np.fromiter(map(len, ranked), dtype=np.intp, count=len(ranked))
    total = int(counts.sum())
    pairs = np.fromiter(chain.from_iterable(chain.from_iterable(ranked)), dtype=np.float64,
                        count=2 * total).reshape(total, 2)
    return counts, pairs[:, 0].copy(), pairs[:, 1].astype(np.intp)


def _tuples(flat: Flat) -> list[Ranked]:
    """The rankings of ``Flat`` as tuples of (score, master)."""
    counts, scores, masters = flat
    pairs = list(zip(scores.tolist(), masters.tolist(), strict=True))
    out: list[Ranked] = []
    append = out.append
    k = 0
    for c in counts.tolist():
        append(tuple(pairs[k:k + c]))
        k += c
    return out


def _interleave(n: int, parts: Sequence[tuple[np.ndarray, Flat]]) -> Flat:
    """``Flat`` of ``n`` listings from parts that each hold the rankings of the listings at
    the given places (together: each place once)."""
    counts = np.zeros(n, dtype=np.intp)
    for rows, (c, _s, _m) in parts:
        counts[rows] = c
    starts = np.cumsum(counts) - counts
    total = int(counts.sum())
    scores = np.empty(total, dtype=np.float64)
    masters = np.empty(total, dtype=np.intp)
    for rows, (c, sc, ms) in parts:
        if len(sc):
            to = np.repeat(starts[rows] - (np.cumsum(c) - c), c) + np.arange(len(sc))
            scores[to] = sc
            masters[to] = ms
    return counts, scores, masters


class Explained:
    """What the ranking read that explains the link of a listing it ranked per title and
    brand (``_Groups``) to any of its candidates, without reading the listing again
    (``evidence_part``): per position, its group (-1: none); per group, its candidates
    (``masters[starts[g]:starts[g + 1]]``) with each one's title evidence
    (``MatchIndex.title_scored``: one dict per title and master, shared) and brand
    evidence (``MatchIndex.brand_scores``); the listing's price is weighed per listing."""

    def __init__(self, n: int):
        self.group = np.full(n, -1, dtype=np.int32)
        self.starts: MutableSequence[int] = [0]
        self.masters: MutableSequence[int] = []
        self.titles: list[dict[str, Any] | float] = []  # (a float: {"title": it})
        self.brands: list[str | None] = []

    def pack(self) -> None:
        """The groups' places and masters held as arrays (no int object each) once the
        ranking is done."""
        self.starts, self.masters = array("q", self.starts), array("q", self.masters)

    def evidence(self, idx: MatchIndex, li: Listing, p: int, i: int) -> dict[str, Any] | None:
        """``MatchIndex.score(f, i, explain=True)``'s evidence for listing ``li`` at
        position ``p`` and master ``i`` (None: not known here)."""
        g = int(self.group[p])
        if g < 0:
            return None
        s, e = self.starts[g], self.starts[g + 1]
        try:
            k = self.masters.index(i, s, e)
        except ValueError:
            return None
        t = self.titles[k]  # then what ``_listing_score`` adds:
        ev: dict[str, Any] = {"title": t} if isinstance(t, float) else t.copy()
        b = self.brands[k]
        if b is not None:
            ev["brand"] = b
        idx._price_score(float(li.price.amount) if li.price is not None else None,
                         idx.prices[i], ev)
        return ev


class _Groups:
    """What ``MatchIndex.rank`` computes per title and brand, for the listings that
    ``FeatureReader.each`` reads: per (features object, brand) a group with the candidates
    (``MatchIndex.title_scored``), their title evidence and their brand evidence
    (``MatchIndex._brand_score``), laid out flat; ``ranked`` then adds each listing's
    price."""

    def __init__(self, idx: MatchIndex, explained: Explained | None = None):
        self.idx = idx
        self.keys = _TitleKeys(idx)
        self.explained = explained  # (filled with the groups' evidence explained)
        self._f: Features | None = None
        self._of_f: dict[tuple[str, str], int] = {}
        self.starts: list[int] = [0]   # group g's candidates are at starts[g]:starts[g + 1]
        self.masters: list[int] = []
        if explained is not None:  # (its own: one per ranking)
            assert not explained.masters, "an Explained is filled by one ranking"
            explained.starts, explained.masters = self.starts, self.masters
        self.titles: list[float] = []
        self.brands: list[float] = []

    def __call__(self, f: Features) -> int:
        """The group of a listing whose features are ``f`` (its brand and price set)."""
        if f is not self._f:
            self._f = f
            self._of_f = {}
        bk = (f.brand, f.brand_words)
        g = self._of_f.get(bk)
        if g is None:
            idx, ex = self.idx, self.explained
            cands, titles = idx.title_scored(f, (), self.keys(f),
                                             ex.titles if ex is not None else None)
            self.masters.extend(cands)
            self.titles.extend(titles)
            self.brands.extend(idx.brand_scores(f, cands,
                                                ex.brands if ex is not None else None))
            g = self._of_f[bk] = len(self.starts) - 1
            self.starts.append(len(self.masters))
        return g

    def ranked(self, group_of: list[int], prices: list[float]) -> Flat:
        """The ranked candidates of listings in groups ``group_of`` showing ``prices``."""
        starts = np.array(self.starts, dtype=np.intp)
        gid = np.array(group_of, dtype=np.intp)
        return score_flat(starts[gid], starts[gid + 1] - starts[gid],
                           np.array(self.masters, dtype=np.intp),
                           np.array(self.titles, dtype=np.float64),
                           np.array(self.brands, dtype=np.float64),
                           np.array(prices, dtype=np.float64),
                           np.asarray(self.idx.prices, dtype=np.float64))


def price_scores(lp: np.ndarray, mp: np.ndarray) -> np.ndarray:
    """``MatchIndex._price_score`` of each pair (listing price, master price) over arrays
    (0.0 or less: no price): the same numbers."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        ratio = np.maximum(lp, mp) / np.minimum(lp, mp)
    priced = (lp > 0) & (mp > 0)
    return np.where(~priced, 0.0,
                    np.where(ratio >= 10, 0.0 + W_PRICE_FAR,
                             np.where(ratio >= 3, 0.0 + W_PRICE_OFF,
                                      np.where(ratio <= 1.3, 0.0 + W_PRICE_CLOSE, 0.0))))


def round4(x: np.ndarray) -> np.ndarray:
    """Python's ``round(v, 4)`` of each value (numpy's ``round`` scales, then rounds the
    scaled value, which can differ where that lands near a half: those few are rounded
    by Python)."""
    with np.errstate(invalid="ignore", over="ignore"):
        y = x * 10_000.0
        out = np.rint(y) / 10_000.0
        # (|y| < 1e9: the product is within 1.2e-7 of x * 10,000, so off the ties by 1e-6
        # it rounds to the integer the exact product rounds to)
        near = (np.abs(y - np.floor(y) - 0.5) < 1e-6) | ~(np.abs(y) < 1e9)
    for k in np.flatnonzero(near).tolist():
        out[k] = round(float(x[k]), 4)
    return out


def score_pairs(first: np.ndarray, count: np.ndarray, masters: np.ndarray,
                titles: np.ndarray, brands: np.ndarray, prices: np.ndarray,
                master_prices: np.ndarray) -> list[Ranked]:
    """Per listing, ``MatchIndex.rank``'s (score, master) pairs best first (ties: the
    smaller master first), at most ``KEEP``: listing ``n``'s candidates are
    ``masters[first[n]:first[n] + count[n]]`` with that title and brand evidence, its
    price ``prices[n]``. Each score is ``round(title + (brand + price), 4)`` as ``rank``
    adds them."""
    return _tuples(score_flat(first, count, masters, titles, brands, prices, master_prices))


def score_flat(first: np.ndarray, count: np.ndarray, masters: np.ndarray,
               titles: np.ndarray, brands: np.ndarray, prices: np.ndarray,
               master_prices: np.ndarray) -> Flat:
    """``score_pairs`` as arrays (``Flat``)."""
    n = len(first)
    total = int(count.sum())
    if not total:
        return np.zeros(n, dtype=np.intp), np.empty(0), np.empty(0, dtype=np.intp)
    listing = np.repeat(np.arange(n, dtype=np.intp), count)
    starts = np.cumsum(count) - count
    at = np.repeat(first - starts, count) + np.arange(total, dtype=np.intp)
    m = masters[at]
    scores = round4(titles[at] + (brands[at] + price_scores(prices[listing],
                                                             master_prices[m])))
    order = _pair_order(listing, scores, m)
    count = count.astype(np.intp)
    if int(count.max()) > KEEP:  # the best KEEP of each listing
        place = np.arange(total, dtype=np.intp) - np.repeat(starts, count)
        order = order[place < KEEP]
        count = np.minimum(count, KEEP)
    return count, scores[order], m[order]


def _pair_order(listing: np.ndarray, scores: np.ndarray, masters: np.ndarray) -> np.ndarray:
    """``np.lexsort((masters, -scores, listing))`` (per listing, best score first, ties by
    master; no pair twice): one sort of one integer key when every score is a multiple
    of 1/10,000 as ``round4`` leaves it (``_ten_thousandths``) and the key fits 63 bits;
    else ``lexsort``."""
    if not len(scores):
        return np.zeros(0, dtype=np.intp)
    k = _ten_thousandths(scores)
    if k is not None and int(masters.min()) >= 0:
        lo, hi = int(k.min()), int(k.max())
        n_m, n_l = int(masters.max()) + 1, int(listing.max()) + 1
        if n_l * (hi - lo + 1) * n_m < 1 << 62:
            key = listing.astype(np.int64)  # (in place: a channel has millions of pairs)
            key *= hi - lo + 1
            key += hi
            key -= k
            del k
            key *= n_m
            key += masters
            return np.argsort(key, kind="stable")
    return np.lexsort((masters, -scores, listing))


def _ten_thousandths(scores: np.ndarray) -> np.ndarray | None:
    """Each score as the integer ``k`` it is ``k / 10,000`` of (``round4``'s results are),
    or None when one is not: ``k / 10_000`` is then exactly the score, so the ``k`` order
    the scores as the scores do (equal for 0.0 and -0.0)."""
    with np.errstate(invalid="ignore", over="ignore"):
        y = scores * 10_000.0
        if not bool((np.abs(y) < 1e9).all()):
            return None
        np.rint(y, out=y)
        k = y.astype(np.int64)
        y /= 10_000.0
        return k if bool((y == scores).all()) else None


class _TitleKeys:
    """``MatchIndex._title_key`` of listings read by ``FeatureReader.each``: once per
    Features object (one serves the consecutive listings of a title) and brand."""

    def __init__(self, idx: MatchIndex):
        self.idx = idx
        self._f: Features | None = None
        self._keys: dict[tuple[str, str], tuple[Any, ...]] = {}
        self._shown: tuple[bool, tuple[Any, ...]] = (False, ())

    def __call__(self, f: Features) -> tuple[Any, ...]:
        if f is not self._f:
            self._f = f
            self._keys = {}
            self._shown = self.idx._title_shown(f)
        bk = (f.brand, f.brand_words)
        k = self._keys.get(bk)
        if k is None:
            k = self._keys[bk] = self.idx._title_key(f, self._shown)
        return k


def _spread(fn: Callable[[list[int]], Any], order: list[int], workers: int,
            keys: Sequence[str] | Mapping[int, str] | None = None
            ) -> list[tuple[list[int], Any]]:
    """``fn`` of consecutive parts of ``order``, each but the first in a forked process
    when ``workers`` > 1 and there are at least ``POOL_MIN`` positions: (part, result).
    ``keys``: the title key of each position (``order`` sorted by them): the parts then
    hold about as much work each, a distinct title weighing ``TITLE_WORK`` listings
    (most of the work is per title), and are cut between titles."""
    parts = [order]
    if workers > 1 and len(order) >= POOL_MIN and hasattr(os, "fork"):
        parts = _parts(order, workers, keys)
    waits: list[Callable[[], Any]] = []
    if len(parts) > 1:
        waits = [_in_fork(functools.partial(fn, part)) for part in parts[1:]]
    try:
        results = [fn(parts[0])] + [w() for w in waits]
    except BaseException:  # interrupted: the other parts are not wanted any more
        for w in waits:
            w.cancel()  # type: ignore[attr-defined]
        raise
    return list(zip(parts, results, strict=True))


def _parts(order: list[int], workers: int, keys: Sequence[str] | Mapping[int, str] | None
           ) -> list[list[int]]:
    """``order`` cut in ``workers`` consecutive parts of about equal work (``_spread``)."""
    if keys is None:
        size = -(-len(order) // workers)
        return [order[k:k + size] for k in range(0, len(order), size)]
    ks = [keys[p] for p in order]
    new = np.ones(len(ks), dtype=np.int64)  # where a title starts: the work of a title
    if len(ks) > 1:
        new[1:] += (TITLE_WORK * np.fromiter(map(str.__ne__, ks[1:], ks[:-1]), dtype=bool,
                                             count=len(ks) - 1))
    new[0] += TITLE_WORK
    work = np.cumsum(new)
    cuts = [0]
    for w in range(1, workers):
        c = max(int(np.searchsorted(work, work[-1] * w / workers)), cuts[-1])
        while 0 < c < len(ks) and ks[c] == ks[c - 1]:  # between two titles
            c += 1
        cuts.append(c)
    cuts.append(len(order))
    return [order[a:b] for a, b in zip(cuts[:-1], cuts[1:], strict=True) if b > a]


def rank_all(idx: MatchIndex, listings: Sequence[Listing], rejected: Mapping[str, Any],
             workers: int = 1) -> Ranks:
    """``rank_part`` of every listing, in the listings' order; with ``workers`` > 1 and at
    least ``POOL_MIN`` listings, ranked by that many processes (forked: the same results).
    Each forked process then waits to explain its part's links (``evidence_all`` given
    these Ranks): one fork for both passes, what it read of the masters still at hand."""
    whys: dict[int, str] = {}
    keys = _title_keys(listings)
    order = sorted(range(len(listings)), key=keys.__getitem__)
    parts = [order]
    if workers > 1 and len(order) >= POOL_MIN and hasattr(os, "fork"):
        parts = _parts(order, workers, keys)
    del keys  # (a string per listing: not kept while ranking)
    helpers = [_Helper(idx, listings, part, rejected) for part in parts[1:]]
    explained = Explained(len(listings))
    try:
        results = [rank_part(idx, listings, parts[0], rejected, explained)] + \
            [h.ranked() for h in helpers]
    except BaseException:  # interrupted: the other parts are not wanted any more
        for h in helpers:
            h.close(kill=True)
        raise
    flats = []
    for part, (why, flat) in zip(parts, results, strict=True):
        for k, w in why.items():
            whys[part[k]] = w
        flats.append((np.array(part, dtype=np.intp), flat))
    ranks = Ranks(whys, _interleave(len(listings), flats))
    ranks.helpers, ranks.first, ranks.explained = helpers, parts[0], explained
    return ranks


class _Helper:
    """A forked process that ranks one part of a channel (``rank_part``), sends the
    rankings back, then waits: asked, it explains the links of the same part
    (``evidence_part``) with what it read of the masters still at hand (no second fork);
    else it ends when this process closes the pipe (or ends). When it fails, the part is
    ranked (explained) in this process."""

    def __init__(self, idx: MatchIndex, listings: Sequence[Listing], part: list[int],
                 rejected: Mapping[str, Any]):
        self.idx, self.listings, self.part, self.rejected = idx, listings, part, rejected
        ctx = mp.get_context("fork")
        self._conn, theirs = ctx.Pipe()
        parent = os.getpid()
        mine = self._conn

        def child() -> None:
            die_with_parent(parent)
            mine.close()
            try:
                explained = Explained(len(listings))
                theirs.send((True, rank_part(idx, listings, part, rejected, explained)))
                wanted = theirs.recv()
                theirs.send((True, evidence_part(idx, listings,
                                                 [p for p in part if p in wanted], wanted,
                                                 explained)))
            except EOFError:  # no evidence wanted
                pass
            except BaseException as e:  # reported; the parent does it itself
                with contextlib.suppress(OSError):
                    theirs.send((False, f"{e.__class__.__name__}: {e}"))
            theirs.close()
            _leave_fork()

        self._proc = ctx.Process(target=child, daemon=True)
        self._proc.start()
        theirs.close()
        self.alive = True

    def _get(self, what: str) -> tuple[bool, Any]:
        try:
            ok, value = self._conn.recv()
        except (EOFError, OSError):
            ok, value = False, f"exited with code {self._proc.exitcode}"
        if not ok:
            log.warning("forked %s failed (%s); doing it in this process", what, value)
            self.close()
        return ok, value

    def ranked(self) -> tuple[dict[int, str], Flat]:
        """The part's rankings (``rank_part``)."""
        ok, value = self._get("ranking")
        return value if ok else rank_part(self.idx, self.listings, self.part, self.rejected)

    def ask(self, wanted: Mapping[int, int]) -> None:
        """Start explaining the links of the part's listings in ``wanted``."""
        if self.alive:
            try:
                self._conn.send(wanted)
            except OSError:
                self.close()

    def evidence(self, wanted: Mapping[int, int], order: Sequence[int]
                 ) -> dict[int, dict[str, Any]]:
        """``evidence_part`` of the part's listings in ``wanted`` (``ask`` first; ``order``:
        those positions in title order, for this process to explain them if needed)."""
        if self.alive:
            ok, value = self._get("evidence")
            self.close()
            if ok:
                return value  # type: ignore[no-any-return]
        return evidence_part(self.idx, self.listings, order, wanted)

    def close(self, kill: bool = False) -> None:
        """Let the process end (``kill``: end it now) and wait for it."""
        self.alive = False
        if kill and self._proc.is_alive():
            self._proc.terminate()
        self._conn.close()
        self._proc.join()


class Ranks(Sequence[tuple[str | None, Ranked]]):
    """Per listing, (why it cannot be matched, or None; its ranked candidates as
    ``MatchIndex.rank`` gives them), made from the rankings held as arrays (``flat``)."""

    def __init__(self, whys: dict[int, str], flat: Flat):
        self.whys = whys
        self.flat = flat
        self.helpers: list[_Helper] = []  # (``rank_all``: forked, waiting to explain)
        self.first: list[int] = []  # (``rank_all``: the part ranked here, in title order)
        self.explained: Explained | None = None  # (``rank_all``: what explains its links)
        counts = flat[0]
        self.starts = np.cumsum(counts) - counts

    def __len__(self) -> int:
        return len(self.flat[0])

    def close(self) -> None:
        """End the forked processes still waiting to explain their parts (``rank_all``)."""
        helpers, self.helpers = self.helpers, []
        for h in helpers:
            h.close(kill=True)

    def ranked(self, p: int) -> Ranked:
        """Listing ``p``'s ranked candidates."""
        s, c = int(self.starts[p]), int(self.flat[0][p])
        return tuple(zip(self.flat[1][s:s + c].tolist(), self.flat[2][s:s + c].tolist(),
                         strict=True))

    def __getitem__(self, p: Any) -> Any:
        if isinstance(p, slice):
            return [self[k] for k in range(*p.indices(len(self)))]
        if p < 0:
            p += len(self)
        if not 0 <= p < len(self):
            raise IndexError(p)
        return self.whys.get(p), self.ranked(p)

    def __iter__(self) -> Iterator[tuple[str | None, Ranked]]:
        get = self.whys.get
        return ((get(p), r) for p, r in enumerate(_tuples(self.flat)))


def evidence_all(idx: MatchIndex, listings: Sequence[Listing], wanted: Mapping[int, int],
                 workers: int = 1, ranks: Ranks | None = None) -> dict[int, dict[str, Any]]:
    """position -> the evidence of the pair (listing, master ``wanted[position]``), as
    ``MatchIndex.score(..., explain=True)`` gives it (in parts as ``rank_all`` ranks;
    ``ranks``: what ``rank_all`` gave, whose forked processes explain their parts)."""
    out: dict[int, dict[str, Any]] = {}
    helpers = ranks.helpers if ranks is not None else []
    if ranks is not None and any(h.alive for h in helpers):
        ranks.helpers = []
        theirs = []
        try:
            for h in helpers:
                mine = {p: wanted[p] for p in h.part if p in wanted}
                h.ask(mine)
                theirs.append(mine)
            # this process's part (the parts are in title order already)
            out.update(evidence_part(idx, listings, [p for p in ranks.first if p in wanted],
                                     wanted, ranks.explained))
            for h, mine in zip(helpers, theirs, strict=True):
                out.update(h.evidence(mine, [p for p in h.part if p in mine]))
        except BaseException:
            for h in helpers:
                h.close(kill=True)
            raise
        return out
    for h in helpers:
        h.close()
    keys = {p: (listings[p].title or "").casefold() for p in wanted}
    order = sorted(keys, key=keys.__getitem__)
    explained = ranks.explained if ranks is not None else None
    for _part, res in _spread(lambda part: evidence_part(idx, listings, part, wanted,
                                                         explained),
                              order, workers, keys):
        out.update(res)
    return out


def evidence_part(idx: MatchIndex, listings: Sequence[Listing], positions: Sequence[int],
                  wanted: Mapping[int, int], explained: Explained | None = None
                  ) -> dict[int, dict[str, Any]]:
    """``evidence_all`` of the listings at ``positions`` (in title order): from what the
    ranking explained (``explained``) when it has the pair, its price weighed per listing;
    else the title's part of the evidence read once per (title, master), the listing's
    brand and price per listing."""
    out: dict[int, dict[str, Any]] = {}
    if explained is not None:
        rest = []
        for p in positions:
            ev = explained.evidence(idx, listings[p], p, wanted[p])
            if ev is None:
                rest.append(p)
            else:
                out[p] = ev
        positions = rest
    titles: dict[tuple[Any, int], dict[str, Any]] = {}
    keys = _TitleKeys(idx)
    for p, _li, f in FeatureReader().each(listings, positions):
        i = wanted[p]
        key = (keys(f), i)
        tev = titles.get(key)
        if tev is None:
            if len(titles) >= CACHE:
                titles.clear()
            tev = titles[key] = {}
            if f.norm == 0.0:
                idx.prepare(f)
            idx._title_score(f, i, tev)
        ev = tev.copy()  # then what ``_listing_score`` adds
        idx._listing_score(f, i, ev)
        out[p] = ev
    return out


def assign_all(ranked: Sequence[Ranked], link_at: float, suggest_at: float, margin: float,
               taken: Iterable[int] = (), order: Sequence[Any] | None = None,
               flat: Flat | None = None) -> list[Decision]:
    """``matching.assign`` for a whole channel: the same greedy pass (``greedy``), then
    ``matching.decide``. Each listing's candidates come best first, as
    ``MatchIndex.rank`` gives them (``flat``: the same rankings as arrays, when the
    caller has them)."""
    got = greedy(flat if flat is not None else _flat(ranked), suggest_at, taken, order)
    chosen = {p: k for p, k in enumerate(got.tolist()) if k >= 0}
    return decide(ranked, chosen, (), link_at, suggest_at, margin)


def greedy(flat: Flat, suggest_at: float, taken: Iterable[int] = (),
           order: Sequence[Any] | None = None) -> np.ndarray:
    """The greedy pass of ``matching.assign`` over rankings held as arrays: per listing,
    the place of the candidate it gets, or -1. The same pairs in the same order
    (strongest first; of pairs scoring the same, the listing whose next candidate is
    further below, then the listing first in ``order``, then the candidate's place),
    laid out and sorted as arrays (numpy ``lexsort``) instead of a list of tuples."""
    lens, scores, pair_master = flat
    n = len(lens)
    got = np.full(n, -1, dtype=np.intp)
    total = int(lens.sum())
    if not total:
        return got
    used = set(taken)
    starts = np.cumsum(lens) - lens
    listing = np.repeat(np.arange(n, dtype=np.intp), lens)
    place = np.arange(total, dtype=np.intp) - np.repeat(starts, lens)
    best = scores[np.repeat(starts, lens)]  # the listing's best score, per pair
    # how far the listing's other candidates are below it (negated): for its best
    # pair the second's score minus the best (minus the best alone if there is no
    # second), for the others the best minus theirs
    second = np.where(lens > 1, scores[np.minimum(starts + 1, total - 1)], 0.0)
    first_gap = np.where(lens > 1, second - scores[np.minimum(starts, total - 1)],
                         -scores[np.minimum(starts, total - 1)])
    gap = np.where(place == 0, np.repeat(first_gap, lens), best - scores)
    rank = np.arange(n, dtype=np.intp)
    if order is not None:  # the listing's place in ``order`` (Python's sort: exact)
        rank[np.array(sorted(range(n), key=order.__getitem__), dtype=np.intp)] = \
            np.arange(n, dtype=np.intp)
    keep = np.flatnonzero(scores >= suggest_at)
    sort = np.lexsort((place[keep], rank[listing[keep]], gap[keep], -scores[keep]))
    keep = keep[sort]
    lst, mst, plc = listing[keep], pair_master[keep], place[keep]
    if used:
        free = ~np.isin(mst, np.fromiter(used, dtype=np.intp, count=len(used)))
        lst, mst, plc = lst[free], mst[free], plc[free]
    # In rounds: a pair that comes first (in that order) among the pairs left of its
    # listing and among those of its master is settled as the pass settles it (nothing
    # before it can take either side); the pairs of the listings and masters it settles
    # are then dropped. While a round settles a good share of what is left; the rest
    # one pair at a time, in order, as the pass goes.
    n_masters = int(pair_master.max()) + 1
    while len(lst) > ROUND_MIN:
        at = np.arange(len(lst), dtype=np.intp)
        first_l = np.full(n, len(lst), dtype=np.intp)
        np.minimum.at(first_l, lst, at)
        first_m = np.full(n_masters, len(lst), dtype=np.intp)
        np.minimum.at(first_m, mst, at)
        ok = (first_l[lst] == at) & (first_m[mst] == at)
        settled = int(ok.sum())
        got[lst[ok]] = plc[ok]
        gone_l = np.zeros(n, dtype=bool)
        gone_l[lst[ok]] = True
        gone_m = np.zeros(n_masters, dtype=bool)
        gone_m[mst[ok]] = True
        left = ~(gone_l[lst] | gone_m[mst])
        lst, mst, plc = lst[left], mst[left], plc[left]
        if settled < len(lst) // 20:
            break
    done = set(np.flatnonzero(got >= 0).tolist())
    used.update(pair_master[starts[got >= 0] + got[got >= 0]].tolist())
    chosen: dict[int, int] = {}
    for p, k, i in zip(lst.tolist(), plc.tolist(), mst.tolist(), strict=True):
        if p in chosen or p in done or i in used:
            continue
        chosen[p] = k
        used.add(i)
    if chosen:
        got[np.fromiter(chosen.keys(), dtype=np.intp, count=len(chosen))] = \
            np.fromiter(chosen.values(), dtype=np.intp, count=len(chosen))
    return got


UNLINKED, SUGGESTED, LINKED = 0, 1, 2


@dataclasses.dataclass
class Decided:
    """``matching.decide`` of a channel as arrays, per listing: its state (``UNLINKED``,
    ``SUGGESTED``, ``LINKED``), master (-1: none), score, the place in its ranking that
    its alternatives leave out (-1: none; the alternatives are its first four candidates
    but that one, or its first three), and the reason (None: none)."""

    state: np.ndarray
    index: np.ndarray
    score: np.ndarray
    main: np.ndarray
    reason: list[str | None]

    def decision(self, p: int, flat: Flat, starts: np.ndarray) -> Decision:
        """Listing ``p``'s ``Decision``."""
        s, c, main = int(starts[p]), int(flat[0][p]), int(self.main[p])
        ms = flat[2][s:s + min(c, 4 if main >= 0 else 3)].tolist()
        alts = [j for n, j in enumerate(ms) if n != main]
        i = int(self.index[p])
        return Decision(("unlinked", "suggested", "linked")[int(self.state[p])],
                        i if i >= 0 else None, float(self.score[p]), alts, self.reason[p])

    def decisions(self, ps: Sequence[int], ranked: Sequence[Ranked]) -> list[Decision]:
        """``decision`` of each listing in ``ps`` (``ranked``: their rankings, in order)."""
        rows = np.array(ps, dtype=np.intp)
        names = ("unlinked", "suggested", "linked")
        out = []
        for p, r, st, i, sc, main in zip(ps, ranked, self.state[rows].tolist(),
                                         self.index[rows].tolist(), self.score[rows].tolist(),
                                         self.main[rows].tolist(), strict=True):
            ms = [j for _s, j in r[:4 if main >= 0 else 3]]
            out.append(Decision(names[st], i if i >= 0 else None, sc,
                                [j for n, j in enumerate(ms) if n != main], self.reason[p]))
        return out


def _rows(flat: Flat, starts: np.ndarray, rows: np.ndarray) -> Flat:
    """``Flat`` of the listings at ``rows`` of ``flat`` (``starts``: where each listing's
    pairs start), in that order."""
    counts, scores, masters = flat
    c = counts[rows]
    at = np.repeat(starts[rows] - (np.cumsum(c) - c), c) + np.arange(int(c.sum()))
    return c, scores[at], masters[at]


def decide_flat(flat: Flat, got: np.ndarray, link_at: float, suggest_at: float,
                margin: float) -> Decided:
    """``matching.decide`` over rankings held as arrays (``got``: per listing the place of
    the candidate the greedy pass gave it, or -1): the same states, masters, scores,
    alternatives and reasons, the arithmetic done over arrays."""
    counts, scores, masters = flat
    n = len(counts)
    starts = np.cumsum(counts) - counts
    total = len(scores)
    has = counts > 0
    first = np.minimum(starts, max(total - 1, 0))
    best = np.where(has, scores[first] if total else 0.0, 0.0)
    state = np.zeros(n, dtype=np.int8)
    index = np.full(n, -1, dtype=np.intp)
    score = best.copy()
    main = np.full(n, -1, dtype=np.intp)
    reason: list[str | None] = [None] * n
    chosen = got >= 0
    # not given a master: a strong best match is a second listing of it (suggested)
    strong = ~chosen & has & (best >= link_at)
    state[strong] = SUGGESTED
    index[strong] = masters[first[strong]]
    main[strong] = 0
    runner = np.zeros(n)
    if chosen.any():
        at = starts + np.maximum(got, 0)
        sc = scores[np.minimum(at, max(total - 1, 0))]
        listing = np.repeat(np.arange(n, dtype=np.intp), counts)
        other = (np.arange(total, dtype=np.intp) - starts[listing]) != got[listing]
        other &= chosen[listing]
        # the runner-up among the listing's other candidates, taken or not (0.0: none)
        many = chosen & (counts > 1)
        if many.any():  # (segments of the listings with candidates cover every pair)
            top = np.full(n, -np.inf)
            top[has] = np.maximum.reduceat(np.where(other, scores, -np.inf), starts[has])
            runner[many] = top[many]
        # another candidate scoring within TIE: the listing cannot tell them apart
        tied = other & (np.abs(scores - sc[listing]) < TIE)
        tie = np.zeros(n, dtype=bool)
        tie[listing[tied]] = True
        runner = np.where(tie, sc, runner)
        index[chosen] = masters[at[chosen]]
        score[chosen] = sc[chosen]
        main[chosen] = got[chosen]
        high = chosen & (sc >= link_at)
        linked = high & (sc - runner >= margin)
        state[chosen] = SUGGESTED
        state[linked] = LINKED
        fmt = _Fmt()
        rs = runner.tolist()
        for p in np.flatnonzero(high & ~linked).tolist():
            reason[p] = f"a second candidate scores {fmt(rs[p])}"
        below = f" below {link_at:.2f}"
        scs = sc.tolist()
        for p in np.flatnonzero(chosen & ~high).tolist():
            reason[p] = f"score {fmt(scs[p])}{below}"
    fmt = _Fmt()
    bs = best.tolist()
    for p in np.flatnonzero(strong).tolist():
        reason[p] = "its best match is linked to another listing"
    for p in np.flatnonzero(~chosen & ~has).tolist():
        reason[p] = "no candidate"
    low = ~chosen & has & (best < suggest_at)
    below = f" below {suggest_at:.2f}"
    for p in np.flatnonzero(low).tolist():
        reason[p] = f"best score {fmt(bs[p])}{below}"
    for p in np.flatnonzero(~chosen & has & ~low & ~strong).tolist():
        reason[p] = f"its best match (score {fmt(bs[p])}) is linked to another listing"
    return Decided(state, index, score, main, reason)


class _Fmt(dict):
    """``f"{x:.2f}"`` of scores, each value formatted once (zero each time: 0.0 and -0.0
    are one key but print apart)."""

    def __call__(self, x: float) -> str:
        if not x:
            return f"{x:.2f}"
        v = self.get(x)
        if v is None:
            v = self[x] = f"{x:.2f}"
        return v


def twins_flat(idx: MatchIndex, ranks: Ranks, dec: Decided, link_at: float,
               listings: Sequence[Listing]) -> None:
    """``matching.twin_links`` of the decisions held as arrays (changed in place): only the
    linked listings with another candidate scoring at least ``link_at`` are looked at."""
    counts, scores, masters = ranks.flat
    listing = np.repeat(np.arange(len(counts), dtype=np.intp), counts)
    look = (dec.state[listing] == LINKED) & (masters != dec.index[listing]) & \
        (scores >= link_at)
    ps = np.unique(listing[look]).tolist()
    if not ps:
        return
    ranked = _tuples(_rows(ranks.flat, ranks.starts, np.array(ps, dtype=np.intp)))
    ds = dec.decisions(ps, ranked)
    twin_links(idx, ranked, ds, link_at,
               [float(pr.amount) if (pr := listings[p].price) is not None else None
                for p in ps])
    for p, d in zip(ps, ds, strict=True):
        if d.state != "linked":
            dec.state[p] = SUGGESTED
            dec.reason[p] = d.reason


def links_of(listings: Sequence[Listing], ranks: Ranks, dec: Decided,
             evidence: Mapping[int, dict[str, Any]], skus: Sequence[str]) -> list[Link]:
    """The link of each listing matched by what it shows, from its ranking and decision
    (``evidence``: by position, that of its master when it has one; ``skus``: the match
    index's)."""
    counts, _scores, masters = ranks.flat
    ml, starts, cl = masters.tolist(), ranks.starts.tolist(), counts.tolist()
    states, index, scores = dec.state.tolist(), dec.index.tolist(), dec.score.tolist()
    mains, reasons, whys = dec.main.tolist(), dec.reason, ranks.whys
    conf: dict[float, float] = {}   # round(min(score, 1.0), 3), once per score
    shown: dict[float, float] = {}  # round(score, 3)
    none, fuzzy, suggested = LinkMethod.NONE, LinkMethod.FUZZY, LinkMethod.SUGGESTED
    sku_of = skus.__getitem__
    out: list[Link] = []
    append = out.append
    for p, li in enumerate(listings):
        c = cl[p]
        if not c or p in whys:
            reason = whys.get(p) or "no master shares a word or a model code with the title"
            if not li.title:
                reason = "no key and no title"
            append(new_link(li.channel, li.key, None, none, 0.0, (), reason, {}))
            continue
        sc = scores[p]
        cf = conf.get(sc) if sc else None  # (0.0 and -0.0: one key, two values)
        if cf is None:
            cf = conf[sc] = round(min(sc, 1.0), 3)
        st, s = states[p], starts[p]
        if st == UNLINKED:
            append(new_link(li.channel, li.key, None, none, cf,
                            tuple(map(sku_of, ml[s:s + min(c, 3)])), reasons[p], {}))
            continue
        ev = evidence.get(p)
        if ev is None:
            ev = {}  # made for this link alone
        r = shown.get(sc) if sc else None
        if r is None:
            r = shown[sc] = round(sc, 3)
        ev["score"] = r
        sku = skus[index[p]]
        if st == LINKED:
            append(new_link(li.channel, li.key, sku, fuzzy, cf, (), None, ev))
            continue
        main = mains[p]
        alts = ml[s:s + min(c, 4)]  # (a new list) its first four but the master's place
        if 0 <= main < len(alts):
            del alts[main]
        append(new_link(li.channel, li.key, None, suggested, cf,
                        (sku, *map(sku_of, alts[:3])), reasons[p], ev))
    return out


_LINK_FIELDS = ("channel", "listing_key", "sku", "method", "confidence", "candidates", "reason",
                "evidence")


def _link_maker() -> Callable[[str, str, str | None, LinkMethod, float, tuple[str, ...],
                               str | None, Mapping[str, Any]], Link]:
    """``Link(...)`` with every field given, the same object, made without the frozen
    dataclass's ``object.__setattr__`` per field (a channel makes a million of them; this
    takes about 40% less time): the slots are set through their descriptors. ``Link``
    itself if its fields are not the ones expected here."""
    if tuple(f.name for f in dataclasses.fields(Link)) != _LINK_FIELDS \
            or "__post_init__" in vars(Link) or "__slots__" not in vars(Link):
        return Link
    new = object.__new__
    s0, s1, s2, s3, s4, s5, s6, s7 = (getattr(Link, n).__set__ for n in _LINK_FIELDS)

    def make(channel: str, listing_key: str, sku: str | None, method: LinkMethod,
             confidence: float, candidates: tuple[str, ...], reason: str | None,
             evidence: Mapping[str, Any]) -> Link:
        lk = new(Link)
        s0(lk, channel)
        s1(lk, listing_key)
        s2(lk, sku)
        s3(lk, method)
        s4(lk, confidence)
        s5(lk, candidates)
        s6(lk, reason)
        s7(lk, evidence)
        return lk

    return make


new_link = _link_maker()


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """No cyclic garbage collection inside (restored as it was). When the caller keeps its
    long-lived objects frozen out of the collector's reach (``runner.streaming_gc``, the
    benchmarks: ``gc.freeze()`` was called), what was made inside is frozen with them on
    the way out: the links of a whole channel, alive until the channel is stored, would
    otherwise be rescanned by every full collection (the run unfreezes it all at its end)."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if gc.get_freeze_count():
            gc.freeze()
        if was:
            gc.enable()
