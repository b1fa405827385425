"""Linking: decide which master record a listing shows.

A person's confirmation of a pair (``auditor links confirm``) comes first. Then
exact keys are tried in the configured order (sku, gtin, mpn with brand, url). A
key that points at several masters makes the link ambiguous: reported, never
guessed. A listing that carries a SKU or GTIN matching no master is an orphan:
it is not linked by title, but the masters its title fits are named as
suggestions. A listing with no key at all is matched by what it shows
(``auditor.matching``: model codes, brand, quantities, title, price); those
listings are decided together once the whole channel is read, so that a master
goes to one listing only (``LinkSession.finish``): ``linked`` when the score
clears ``link_score`` by ``link_margin`` over the runner-up, ``suggested`` from
``suggest_score`` on (no findings until a person confirms), else ``unlinked``
with the reason.
"""

from __future__ import annotations

import contextlib
import functools
import re
from array import array
from bisect import bisect_left
from typing import Any, Callable, Iterable, Iterator, Mapping
from urllib.parse import urlsplit

import numpy as np

from auditor.linkbatch import (LINKED, collector_paused, decide_flat, evidence_all, greedy,
                              links_of, rank_all, twins_flat)
from auditor.matching import Features, MatchIndex, listing_features
from auditor.model import Link, LinkMethod, Listing, MasterRecord
from auditor.values import gtin_valid, normalize_gtin

KEY_KINDS = ("sku", "gtin", "mpn", "url")
# Defaults of [linking] link_score, suggest_score and link_margin (see auditor.matching).
LINK_SCORE = 0.8
SUGGEST_SCORE = 0.5
LINK_MARGIN = 0.05
WORKERS = 1  # default of [linking] workers: processes ranking a large channel
# What ``LinkSession.used`` calls the title-matching index (beside the key kinds).
TITLE_INDEX = "title"
# ``Linker.exact``'s answer for a listing whose link needs a key index still to come.
LATER: Any = object()


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


# The link method of each exact key kind (an enum looked up by value is slow on the hot path).
_METHODS = {m.value: m for m in LinkMethod}

# A link by an exact key, made without the frozen dataclass's ``__init__`` (one
# ``object.__setattr__`` per field): the same object in a quarter of the time, and
# nearly every listing of a repeat audit gets one.
(_PUT_CHANNEL, _PUT_KEY, _PUT_SKU, _PUT_METHOD, _PUT_CONFIDENCE, _PUT_CANDIDATES,
 _PUT_REASON, _PUT_EVIDENCE) = (vars(Link)[n].__set__ for n in (
    "channel", "listing_key", "sku", "method", "confidence", "candidates", "reason",
    "evidence"))
_new = object.__new__


def _exact_link(channel: str, key: str, sku: str, method: LinkMethod) -> Link:
    """``Link(channel, key, sku, method, 1.0)``."""
    link = _new(Link)
    _PUT_CHANNEL(link, channel)
    _PUT_KEY(link, key)
    _PUT_SKU(link, sku)
    _PUT_METHOD(link, method)
    _PUT_CONFIDENCE(link, 1.0)
    _PUT_CANDIDATES(link, ())
    _PUT_REASON(link, None)
    _PUT_EVIDENCE(link, {})
    return link


# How each exact key is read off a listing.
_LISTING_KEYS = {
    "sku": lambda li: norm_sku(li.sku),
    "gtin": lambda li: norm_gtin(li.gtin),
    "mpn": lambda li: norm_mpn(li.brand, li.mpn),
    "url": lambda li: norm_url(li.url),
}


# How each exact key is read off a master record.
_MASTER_KEYS: dict[str, Callable[[str, MasterRecord], str | None]] = {
    "sku": lambda sku, rec: norm_sku(sku),
    "gtin": lambda sku, rec: norm_gtin(rec.gtin),
    "mpn": lambda sku, rec: norm_mpn(rec.brand, rec.mpn),
    "url": lambda sku, rec: norm_url(rec.url),
}


class _LazyIndex(dict):
    """kind -> that kind's index of the master (a ``SkuKeys`` or ``HashedKeys``), each
    kind built from the master when first read."""

    def __init__(self, master: Mapping[str, MasterRecord]):
        super().__init__()
        self.master = master
        self._skus: list[str] | None = None
        # Called once, before the first index missing here is built: it may install
        # indexes built elsewhere (a distributed worker's: those its run's coordinator
        # built, ``auditor.distributed``); one it does not install is built here. While
        # it is set, a channel's listings whose links need an index not here yet are
        # held until the channel is read (``LinkSession.finish``).
        self.supply: Callable[[], None] | None = None

    @property
    def skus(self) -> list[str]:
        """The master's SKUs by ordinal (what the hashed indexes hold), made once."""
        if self._skus is None:
            self._skus = list(self.master)
        return self._skus

    def __missing__(self, kind: str) -> "SkuKeys | HashedKeys":
        self.supplied()
        if kind not in self:
            self.build([kind])
        return self[kind]

    def supplied(self) -> None:
        """Call ``supply`` (once)."""
        supply, self.supply = self.supply, None
        if supply is not None:
            supply()

    def build(self, kinds: Iterable[str], background: bool = False) -> Callable[[], None]:
        """Index the given kinds (those not yet built) in one pass over the master.

        ``background``: the hashed kinds (all but the SKU) are computed in a forked
        process (``auditor.forking._in_fork``: it sees the master as this process holds
        it, and sends back only each kind's sorted entries, 8 bytes per master); the
        returned function installs them, waiting for that process if need be. Without
        it they are built here and the returned function does nothing."""
        kinds = [k for k in dict.fromkeys(kinds) if k not in self]
        if "sku" in kinds:  # the SKU alone: no record is decoded
            kinds.remove("sku")
            self["sku"] = SkuKeys(self.master)
        if not kinds:
            return lambda: None
        if background:
            from auditor.forking import _in_fork

            pending = _in_fork(lambda: self._entries(kinds))
            return lambda: self._install(kinds, pending())
        self._install(kinds, self._entries(kinds))
        return lambda: None

    def _entries(self, kinds: list[str]) -> list[bytes]:
        """The sorted entries of each kind's ``HashedKeys`` (``array('Q')`` bytes)."""
        keyofs = [_MASTER_KEYS[k] for k in kinds]
        found: list[list[int]] = [[] for _ in kinds]
        for i, (sku, rec) in enumerate(self.master.items()):  # each record read once
            for keyof, out in zip(keyofs, found, strict=True):
                key = keyof(sku, rec)
                if key:
                    out.append(_entry(key, i))
        for out in found:
            out.sort()
        return [array("Q", out).tobytes() for out in found]

    def _install(self, kinds: list[str], entries: list[bytes]) -> None:
        if len(self.skus) != len(self.master):  # SKUs added since: number them again
            self._skus = list(self.master)  # (indexes built before keep their own list)
        for kind, raw in zip(kinds, entries, strict=True):
            held = array("Q")
            held.frombytes(raw)
            self[kind] = HashedKeys(held, self.skus)


class SkuKeys:
    """Normalized SKU -> the masters that have it, without a copy of the SKUs: nearly
    every master's SKU is already normalized, so the master itself is the index; only
    the SKUs that normalize to something else are held (``other``)."""

    __slots__ = ("_get", "other")

    def __init__(self, master: Mapping[str, MasterRecord]):
        self._get = master.get  # a compact master's is the dict's own
        self.other: dict[str, list[str]] = {}
        for sku in master:
            k = norm_sku(sku)
            if k is not None and k != sku:
                self.other.setdefault(k, []).append(sku)

    def get(self, key: str) -> str | list[str] | None:
        """The SKU with this normalized key, or the SKUs when several have it."""
        more = self.other.get(key) if self.other else None
        if more is None:
            return key if self._get(key) is not None else None
        hits = ([key] if self._get(key) is not None else []) + more
        return hits[0] if len(hits) == 1 else hits


# A hashed key entry: the top 32 bits of the key's hash over the master's ordinal.
_LOW = 32
_ORD_MASK = (1 << _LOW) - 1
_HASH_MASK = (1 << 64) - 1


def _entry(key: str, ordinal: int) -> int:
    return ((hash(key) & _HASH_MASK) >> _LOW << _LOW) | ordinal


class HashedKeys:
    """Normalized key -> master ordinals, held as one sorted ``array('Q')`` of 8 bytes
    per master: the top 32 bits of the key's hash over the master's ordinal (issue 20: a
    dict of key strings, or of their hashes, costs about 90 bytes per master). A lookup
    is a binary search; masters whose hash merely collides are returned too, so the
    caller checks each hit against the master's own key."""

    __slots__ = ("_entries", "_skus")

    def __init__(self, entries: "list[int] | array[int]", skus: list[str]):
        """``entries``: a list (sorted here), or an ``array('Q')`` sorted already."""
        if isinstance(entries, array):
            self._entries = entries
        else:
            entries.sort()
            self._entries = array("Q", entries)
        self._skus = skus

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str) -> list[str]:
        """The SKUs of the masters whose key may be ``key`` (same hash), in master order."""
        e = self._entries
        lo = (hash(key) & _HASH_MASK) >> _LOW << _LOW
        i = bisect_left(e, lo)
        hi = lo | _ORD_MASK
        out = []
        n = len(e)
        while i < n and (v := e[i]) <= hi:
            out.append(self._skus[v & _ORD_MASK])
            i += 1
        return out


class Linker:
    """Indexes the master once per run; a channel's listings are then linked through a
    ``LinkSession`` (``session()``), or one at a time with ``link()``."""

    def __init__(self, master: Mapping[str, MasterRecord], options: Mapping[str, Any]):
        self.master = master
        self.order = list(options.get("order") or KEY_KINDS)
        self.fuzzy = bool(options.get("fuzzy", True))
        self.link_score = float(options.get("link_score", LINK_SCORE))
        self.suggest_score = float(options.get("suggest_score", SUGGEST_SCORE))
        self.margin = float(options.get("link_margin", LINK_MARGIN))
        self.workers = max(1, int(options.get("workers", WORKERS)))
        self._match_index: MatchIndex | None = None
        # The stored master snapshot this master is, when known unchanged (set by the
        # run): links decided against it may be carried over (auditor.linkreuse).
        self.master_version: Any = None
        # Each key kind is indexed on first use: when every listing links by SKU,
        # the GTIN, MPN and URL indexes of a large master are never built.
        self.index = _LazyIndex(master)
        if self.order:
            self.index[self.order[0]]  # nearly every listing needs it: build it up front

    def prepare(self, needed: Iterable[str] | None = None, background: bool = False) -> None:
        """Build the indexes now (each is otherwise built on first use): done once before
        forking workers, so they share the indexes instead of each building its own.

        ``needed``: only these (key kinds, and ``TITLE_INDEX`` for the title-matching
        index), as the channels' previous runs used them (``LinkSession.indexes``); None:
        all of them. An index left out here is still built where a listing needs it
        (in that worker), so the links are the same either way. ``background``: the
        hashed key indexes are computed in a forked process while this one builds the
        title-matching index (the two cores busy, not one: ``_LazyIndex.build``)."""
        want = None if needed is None else set(needed)
        install = self.index.build((k for k in self.order if want is None or k in want),
                                   background and self.fuzzy and
                                   (want is None or TITLE_INDEX in want))
        if self.fuzzy and (want is None or TITLE_INDEX in want):
            _ = self.match_index
        install()

    def keys(self, li: Listing) -> Iterable[tuple[str, str | None]]:
        """The listing's normalized keys in the configured order."""
        for kind in self.order:
            yield kind, _LISTING_KEYS[kind](li)

    @property
    def match_index(self) -> MatchIndex:
        """Built on first use: runs where every listing links exactly never pay for it."""
        if self._match_index is None:
            self.index.supplied()
        if self._match_index is None:
            self._match_index = MatchIndex(self.master)
        return self._match_index

    def exact(self, li: Listing, used: dict[str, int] | None = None) -> Link | None:
        """The link by the first key of the listing that is on record, else None (or
        ``LATER`` when it needs a key index that is still to come: ``_LazyIndex.supply``).
        ``used`` counts the lookups in each key kind's index."""
        if not (li.sku or li.gtin or li.mpn or li.url):  # no key at all (the channel's own id)
            return None
        index = self.index
        coming = index.supply is not None
        for kind in self.order:
            key = _LISTING_KEYS[kind](li)
            if not key:
                continue
            if coming and kind not in index:
                if used is not None:  # (counted when it is decided)
                    for k in self.order[:self.order.index(kind)]:
                        if _LISTING_KEYS[k](li):
                            used[k] -= 1
                return LATER
            if used is not None:
                used[kind] = used.get(kind, 0) + 1
            if kind == "sku":
                hits = index["sku"].get(key)
            else:  # held by the key's hash: keep the masters whose key it really is
                hits = index[kind].get(key)
                if hits:
                    keyof, master = _MASTER_KEYS[kind], self.master
                    hits = [s for s in hits if keyof(s, master[s]) == key]
                    hits = hits[0] if len(hits) == 1 else hits
            if not hits:
                continue
            if isinstance(hits, str):
                return _exact_link(li.channel, li.key, hits, _METHODS[kind])
            return Link(li.channel, li.key, None, LinkMethod.AMBIGUOUS, 0.0, tuple(hits[:10]),
                        f"{kind} {key!r} is shared by {len(hits)} masters")
        return None

    def session(self, confirmed: Mapping[str, str] | None = None,
                rejected: Mapping[str, Iterable[str]] | None = None,
                explain_links: bool = False, earlier: Any = None) -> "LinkSession":
        """Link one channel: ``confirmed`` listing key -> SKU a person confirmed,
        ``rejected`` listing key -> SKUs a person rejected. Suggested links always carry
        their evidence; linked ones only with ``explain_links`` (it costs a second look).
        ``earlier``: links of the last run that may be carried over
        (``auditor.linkreuse.EarlierLinks``)."""
        return LinkSession(self, confirmed or {}, rejected or {}, explain_links, earlier)

    def link(self, li: Listing) -> Link:
        """One listing's link, decided alone (a run decides a channel's together)."""
        s = self.session(explain_links=True)
        link = s.link(li)
        return link if link is not None else next(iter(s.finish()))[1]

    def link_all(self, listings: Iterable[Listing]) -> list[Link]:
        """Every listing of one channel linked together (in the listings' order)."""
        s = self.session()
        links: list[Any] = []
        held: dict[int, list[int]] = {}  # the places of the listings ``finish`` links
        keys: list[str] = []
        for li in listings:
            keys.append(li.key)
            link = s.link(li)
            if link is None:
                held.setdefault(id(li), []).append(len(links))
            links.append(link)
        decided: list[int] = []  # those places, in the order ``finish`` decides them
        for li, link in s.finish():
            p = held[id(li)].pop(0)
            links[p] = link
            decided.append(p)
        if len(set(keys)) < len(keys):  # a key shown twice: each of its listings gets the
            out: dict[str, Link] = {}   # key's link decided last
            later = set(decided)
            for p, k in enumerate(keys):
                if p not in later:
                    out[k] = links[p]
            for p in decided:
                out[keys[p]] = links[p]
            links = [out[k] for k in keys]
        return links


def _carried_key(li: Listing) -> tuple[str, str] | None:
    """The SKU or GTIN a listing carries (kind, value as shown), if any."""
    if li.sku and li.sku.strip():
        return "SKU", li.sku.strip()
    if li.gtin and li.gtin.strip():
        return "GTIN", li.gtin.strip()
    return None


def features_of(li: Listing) -> Features:
    """What a listing shows, for matching."""
    price = float(li.price.amount) if li.price is not None else None
    return listing_features(li.title, li.description, li.brand, price, li.mpn)


class LinkSession:
    """The links of one channel's listings.

    ``link(listing)`` settles at once what needs no comparison with the rest of the
    channel (a confirmation, an exact key, an orphan key, a listing that cannot be
    matched) and returns None for a listing to be matched by what it shows; those
    come out of ``finish()``, decided together (one listing per master).
    """

    def __init__(self, linker: Linker, confirmed: Mapping[str, str],
                 rejected: Mapping[str, Iterable[str]], explain_links: bool = False,
                 earlier: Any = None):
        self.linker = linker
        self.earlier = earlier
        self.explain_links = explain_links
        self.confirmed = confirmed
        self.rejected = rejected
        self.pending: list[Listing] = []  # to be matched by what they show
        # whose links need an index still to come (``_LazyIndex.supply``): decided once the
        # channel is read, before ``pending``
        self.later: list[Listing] = []
        self.taken: set[str] = set()  # masters linked in this channel by key or confirmation
        # The indexes this channel consulted (key kinds, TITLE_INDEX), what the next run
        # builds before forking its workers (``Linker.prepare``): lookups per index for
        # listings whose links cannot be carried over to the next run (``used``), and the
        # indexes of those whose links may be (an orphan's: ``carriable``), needed then
        # only if what the links depend on changes (``auditor.linkreuse``).
        self.used: dict[str, int] = {}
        self.carriable: set[str] = set()
        self.carried_over = 0  # links taken from ``earlier``

    def link(self, li: Listing) -> Link | None:
        lk = self.linker
        sku = self.confirmed.get(li.key)
        if sku is not None and sku in lk.master:
            self.taken.add(sku)
            return Link(li.channel, li.key, sku, LinkMethod.CONFIRMED, 1.0)
        if not (li.sku or li.gtin or li.mpn or li.url) and lk.fuzzy:
            # no key at all (what ``exact`` and ``_carried_key`` find then: nothing):
            # matched by what it shows, with the rest of the channel
            self.pending.append(li)
            return None
        earlier = self.earlier
        if earlier and li.key in earlier and _carried_key(li) is not None:
            # decided for this listing alone, from inputs unchanged since: the same link
            prev = earlier.unchanged(li)
            if prev is not None:
                self.carried_over += 1
                return prev
        link = lk.exact(li, self.used)
        if link is LATER:
            self.later.append(li)
            return None
        rejected = self.rejected.get(li.key, ())
        if link is not None and link.sku is not None and link.sku in rejected:
            # a person said this listing is not that master, whatever its key says
            return Link(li.channel, li.key, None, LinkMethod.NONE, 0.0, (),
                        f"its key links {link.sku}, rejected by hand")
        if link is not None:
            if link.sku is not None:
                self.taken.add(link.sku)
            return link
        carried = _carried_key(li)
        if carried is not None and lk.fuzzy and lk._match_index is None and \
                lk.index.supply is not None:  # its suggestions need the title index
            self._uncount(li)
            self.later.append(li)
            return None
        if carried is not None:  # decided alone: the next run may carry it over
            self._carriable(li)
        if not lk.fuzzy:
            return Link(li.channel, li.key, None, LinkMethod.NONE, 0.0, (),
                        f"{carried[0]} {carried[1]!r} matches no master" if carried
                        else "no key, and title matching is off")
        if carried is None:  # matched by what it shows, with the rest of the channel
            self.pending.append(li)
            return None
        self.carriable.add(TITLE_INDEX)
        idx = lk.match_index
        f = features_of(li)
        ranked = idx.rank(f, rejected)
        # a key that matches nothing is an orphan: its title only suggests
        sugg = [(sc, idx.skus[i]) for sc, i in ranked[:3] if sc >= lk.suggest_score]
        return Link(li.channel, li.key, None, LinkMethod.NONE, 0.0,
                    tuple(s for _sc, s in sugg),
                    f"{carried[0]} {carried[1]!r} matches no master",
                    {"suggestions": [{"sku": s, "score": round(min(sc, 1.0), 3)}
                                     for sc, s in sugg]} if sugg else {})

    def _uncount(self, li: Listing) -> None:
        """Take back the key lookups ``exact`` counted for a listing held (``later``): they
        are counted again when it is decided."""
        for kind in self.linker.order:
            if _LISTING_KEYS[kind](li):
                self.used[kind] -= 1

    def _carriable(self, li: Listing) -> None:
        """Count the key lookups of a listing no key linked (``exact`` looked up every
        key it has) as a carriable link's, not as ``used``."""
        used, carriable = self.used, self.carriable
        for kind in self.linker.order:
            if _LISTING_KEYS[kind](li):
                used[kind] -= 1
                carriable.add(kind)

    def indexes(self) -> tuple[list[str], list[str]]:
        """The indexes consulted for links that cannot be carried over, and for those that
        may be (see ``used``)."""
        return (sorted(k for k, n in self.used.items() if n > 0), sorted(self.carriable))

    def finish(self) -> Iterator[tuple[Listing, Link]]:
        """The listings held back by ``link``, each with its link, after the channel-wide
        one-to-one assignment (ranked and explained in bulk: ``auditor.linkbatch``).
        Listings held for an index still to come (``later``) are decided first, with it."""
        if self.later:
            self.linker.index.supplied()  # (what it does not install is built here)
            later, self.later = self.later, []
            now = [(li, self.link(li)) for li in later]
            yield from ((li, link) for li, link in now if link is not None)
        if not self.pending:
            return
        lk = self.linker
        self.used[TITLE_INDEX] = self.used.get(TITLE_INDEX, 0) + 1
        idx = lk.match_index
        pos = idx.position
        taken = [pos[s] for s in self.taken if s in pos]
        pending, self.pending = self.pending, []
        with collector_paused(), contextlib.ExitStack() as done:
            ranks = rank_all(idx, pending, self.rejected, lk.workers)
            done.callback(ranks.close)  # (its forked processes, if a step below fails)
            got = greedy(ranks.flat, lk.suggest_score, taken, [li.key for li in pending])
            dec = decide_flat(ranks.flat, got, lk.link_score, lk.suggest_score, lk.margin)
            twins_flat(idx, ranks, dec, lk.link_score, pending)
            explain = dec.index.copy()
            if not self.explain_links:
                explain[dec.state == LINKED] = -1
            wanted = np.flatnonzero(explain >= 0)
            evidence = evidence_all(idx, pending, dict(zip(wanted.tolist(),
                                                           explain[wanted].tolist(),
                                                           strict=True)),
                                    lk.workers, ranks)
            links = links_of(pending, ranks, dec, evidence, idx.skus)
        yield from zip(pending, links, strict=True)
