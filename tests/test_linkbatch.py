"""A channel's listings without keys linked in bulk (auditor.linkbatch) decide exactly what
listing-by-listing matching decides: features, rankings, the one-to-one assignment, states,
scores and evidence; in one process and in forked ones."""

from __future__ import annotations

import dataclasses
import random
from datetime import datetime, timezone

import numpy as np
import pytest

from auditor import linkbatch
from auditor.linking import Linker
from auditor.matching import MatchIndex, assign, listing_features, twin_links
from auditor.model import Link, LinkMethod, Listing, MasterRecord, Money
from auditor.world.catalog import iter_products

NOW = datetime(2026, 11, 1, tzinfo=timezone.utc)

ODD_TITLES = [
    "", "   ", "!!! --- ???", "x" * 10_000, "耐克运动鞋男款黑色四十二码" * 50, "ＡＣＭＥ ５００ＧＢ",
    "Kingston KTC-D320/1G memory 1 GB", "D-Link DCS 1100 Network Camera 12 V",
    "Seagate Barracuda 500GB Hard Drive", "Case for Seagate Barracuda 500GB",
    "Epson T060320 Ink Cartridge Magenta", "Widget² deluxe", "StarTech 20 DisplayPort Cable",
]


def world(n_masters: int, n_listings: int) -> tuple[dict[str, MasterRecord], list[Listing]]:
    """The generated catalog's first SKUs as a master, and a channel showing the catalog's
    first ``n_listings`` variants with no key (some upper-cased, some with the brand in
    front, a few with an MPN or a description, a few odd titles)."""
    master: dict[str, MasterRecord] = {}
    listings: list[Listing] = []
    rnd = random.Random(7)
    for p in iter_products(1, n_listings, NOW):
        for v in p.variants:
            n = len(listings)
            if len(master) < n_masters:
                master[v.sku] = MasterRecord(sku=v.sku, title=v.title, brand=p.brand,
                                             price=Money(v.price, "EUR"))
            title = v.title.upper() if n % 10 == 3 else \
                f"{p.brand} {v.title}" if n % 10 == 7 else v.title
            if n % 97 == 5:
                title = ODD_TITLES[n % len(ODD_TITLES)]
            listings.append(Listing(
                channel="c", key=f"L{n}", fetched_at=NOW, title=title,
                brand=p.brand if n % 13 else None,
                price=Money(v.price * (10 if n % 17 == 0 else 1), "EUR") if n % 11 else None,
                mpn=f"{p.brand[:2]}-{n % 50}X{n % 7}" if n % 23 == 0 else None,
                description=f"model: ZX{n % 40}00 for the {title}" if n % 19 == 0 else None))
            if rnd.random() < 0.02 and listings:  # a listing shown twice under two ids
                listings.append(Listing(channel="c", key=f"D{n}", fetched_at=NOW, title=title,
                                        brand=p.brand, price=Money(v.price, "EUR")))
    return master, listings


def reference(master: dict[str, MasterRecord], listings: list[Listing],
              rejected: dict[str, set[str]]) -> dict[str, tuple]:
    """Each listing's link decided listing by listing, as the linker did before
    ``auditor.linkbatch``: features, ``MatchIndex.rank``, ``assign``, ``twin_links``,
    ``MatchIndex.score``."""
    idx = MatchIndex(master)
    feats, ranks = [], []
    out: dict[str, tuple] = {}
    keep = []
    for li in listings:
        price = float(li.price.amount) if li.price is not None else None
        f = listing_features(li.title, li.description, li.brand, price, li.mpn)
        ranked = idx.rank(f, rejected.get(li.key, ()))
        if f.reason is not None or not ranked:
            reason = f.reason or "no master shares a word or a model code with the title"
            out[li.key] = ("none", None, 0.0, (), "no key and no title" if not li.title else reason,
                           {})
            continue
        keep.append(li)
        feats.append(f)
        ranks.append(ranked)
    decisions = twin_links(idx, ranks, assign(ranks, 0.8, 0.5, 0.05, (), [li.key for li in keep]),
                           0.8, [f.price for f in feats])
    for li, f, d in zip(keep, feats, decisions, strict=True):
        if d.index is None:
            out[li.key] = ("none", None, round(min(d.score, 1.0), 3),
                           tuple(idx.skus[i] for i in d.alternatives), d.reason, {})
            continue
        fresh = listing_features(li.title, li.description, li.brand, f.price, li.mpn)
        ev = {**(idx.score(fresh, d.index, explain=True)[1] or {}), "score": round(d.score, 3)}
        sku = idx.skus[d.index]
        if d.state == "linked":  # a confident link's evidence is not read again
            out[li.key] = ("fuzzy", sku, round(min(d.score, 1.0), 3), (), None,
                           {"score": round(d.score, 3)})
        else:
            out[li.key] = ("suggested", None, round(min(d.score, 1.0), 3),
                           (sku, *(idx.skus[i] for i in d.alternatives[:3])), d.reason, ev)
    return out


def as_tuple(link: Link) -> tuple:
    return (str(link.method), link.sku, link.confidence, tuple(link.candidates), link.reason,
            link.evidence)


@pytest.mark.parametrize("title", [*ODD_TITLES, "Acme Alpine Hoodie 2.5in 4-pack",
                                   "AT&amp;T Phone 5-PACK &NBSP; 2.5 In", "Straße ẞ 12V İstanbul"])
@pytest.mark.parametrize("extra", [
    dict(description=None, brand=None, price=None, mpn=None),
    dict(description="Model: KTC-D320/1G; fits all", brand="D-Link", price=12.5, mpn="AB 12-34"),
    dict(description="no code here", brand="  ", price=0.0, mpn="zz"),
    dict(description=None, brand="Maison Côté", price=99.0, mpn="T060320"),
])
def test_feature_reader_reads_what_listing_features_reads(title, extra):
    reader = linkbatch.FeatureReader()
    plain = dict(description=None, brand=None, price=None, mpn=None)
    assert reader(title, **plain) == listing_features(title, **plain)  # the title's part, cached
    got = reader(title, **extra)
    assert got == listing_features(title, **extra)
    assert reader(title, **plain) == listing_features(title, **plain)  # the cache kept intact
    for other in (title.upper(), title.lower(), title.title()):  # read once for all cases
        assert reader(other, **extra) == listing_features(other, **extra)
        assert reader.shown(other, None, None, copy=False) == listing_features(other, None,
                                                                                None, None)


@pytest.mark.parametrize("workers", [1, 3])
def test_bulk_linking_decides_what_listing_by_listing_decides(monkeypatch, workers):
    master, listings = world(1500, 4000)
    rejected = {li.key: {next(iter(master))} for li in listings[:200:7]}
    expected = reference(master, listings, rejected)
    assert {v[0] for v in expected.values()} == {"fuzzy", "suggested", "none"}
    monkeypatch.setattr(linkbatch, "POOL_MIN", 100)
    forks = []
    real_in_fork = linkbatch._in_fork
    monkeypatch.setattr(linkbatch, "_in_fork", lambda fn: forks.append(fn) or real_in_fork(fn))
    helpers: list = []
    explained: list = []

    class Helper(linkbatch._Helper):
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            helpers.append(self)

        def evidence(self, wanted, order):
            explained.append(self.alive)  # (alive: the forked process explains its part)
            return super().evidence(wanted, order)

    monkeypatch.setattr(linkbatch, "_Helper", Helper)
    linker = Linker(master, {"workers": workers})
    s = linker.session(rejected=rejected)
    got: dict[str, tuple] = {}
    for li in listings:
        link = s.link(li)
        assert link is None  # every one of them is decided with the rest of the channel
    for li, link in s.finish():
        got[li.key] = as_tuple(link)
    assert got == expected
    # other parts ranked and then explained by the same forked processes (no second fork)
    assert len(helpers) == workers - 1 and explained == [True] * (workers - 1)
    assert forks == [] and not any(h._proc.is_alive() for h in helpers)


def test_bulk_linking_when_a_forked_part_fails_does_it_here(monkeypatch):
    """A forked process whose ranking or evidence fails: its part is done in this process,
    with the same links."""
    import os

    master, listings = world(600, 1500)
    expected = reference(master, listings, {})
    monkeypatch.setattr(linkbatch, "POOL_MIN", 100)
    here = os.getpid()
    for name in ("evidence_part", "rank_part"):
        real = getattr(linkbatch, name)

        def failing(*a, _real=real, **k):
            if os.getpid() != here:
                raise RuntimeError("forked part fails")
            return _real(*a, **k)

        monkeypatch.setattr(linkbatch, name, failing)
        s = Linker(master, {"workers": 2}).session()
        for li in listings:
            assert s.link(li) is None
        assert {li.key: as_tuple(link) for li, link in s.finish()} == expected


def test_bulk_linking_with_confirmed_and_keyed_listings_takes_their_masters():
    master, listings = world(300, 600)
    skus = list(master)
    keyed = Listing(channel="c", key="K", fetched_at=NOW, sku=skus[0], title="anything")
    linker = Linker(master, {})
    s = linker.session(confirmed={"L1": skus[1]})
    assert s.link(keyed).method == LinkMethod.SKU
    assert s.link(listings[1]).sku == skus[1]  # confirmed by a person
    for li in listings[2:]:
        assert s.link(li) is None
    links = dict((li.key, lk) for li, lk in s.finish())
    assert all(lk.sku not in (skus[0], skus[1]) for lk in links.values())
    assert any(lk.method == LinkMethod.FUZZY for lk in links.values())


@pytest.mark.parametrize("rounds_from", [None, 0])
@pytest.mark.parametrize("seed", range(6))
def test_assign_all_decides_what_assign_decides(seed, rounds_from, monkeypatch):
    """The array-sorted greedy pass of ``linkbatch.assign_all`` settles the same pairs in
    the same order as ``matching.assign``: ties of score (many, on a coarse grid), masters
    taken before, listings without candidates, scores below the suggestion line; with the
    pairs settled in rounds down to the last (``rounds_from`` 0) or as many as usual."""
    if rounds_from is not None:
        monkeypatch.setattr(linkbatch, "ROUND_MIN", rounds_from)
    rnd = random.Random(seed)
    n_masters = rnd.choice([5, 40, 400])
    ranked = []
    for _ in range(rnd.choice([0, 1, 50, 2000])):
        cands = sorted({(round(rnd.choice([0.3, 0.5, 0.8, 0.85, 0.9, 1.0, rnd.random() * 1.3]),
                               4 if rnd.random() < 0.5 else 1), rnd.randrange(n_masters))
                        for _ in range(rnd.randrange(0, 7))}, key=lambda c: (-c[0], c[1]))
        ranked.append(tuple(cands[:6]))
    taken = set(rnd.sample(range(n_masters), rnd.randrange(0, 3)))
    expected = assign(ranked, 0.8, 0.5, 0.05, taken)
    assert linkbatch.assign_all(ranked, 0.8, 0.5, 0.05, taken) == expected
    keys = [f"L{rnd.randrange(10 ** 6)}" for _ in ranked]  # ties settled by listing key
    assert linkbatch.assign_all(ranked, 0.8, 0.5, 0.05, taken, keys) == \
        assign(ranked, 0.8, 0.5, 0.05, taken, keys)
    # the rankings handed over as arrays too (as ``rank_all`` keeps them), in pieces
    flat = linkbatch._interleave(len(ranked), [
        (np.arange(k, len(ranked), 3, dtype=np.intp), linkbatch._flat(ranked[k::3]))
        for k in range(3)])
    assert linkbatch.assign_all(ranked, 0.8, 0.5, 0.05, taken, keys, flat) == \
        assign(ranked, 0.8, 0.5, 0.05, taken, keys)
    # the states decided over arrays (``decide_flat``) are ``decide``'s
    flat = linkbatch._flat(ranked)
    dec = linkbatch.decide_flat(flat, linkbatch.greedy(flat, 0.5, taken), 0.8, 0.5, 0.05)
    starts = np.cumsum(flat[0]) - flat[0]
    assert [dec.decision(p, flat, starts) for p in range(len(ranked))] == expected
    # and in bulk (``Decided.decisions``, the twin check's), for any listings in any order
    ps = rnd.sample(range(len(ranked)), len(ranked) // 2)
    rows = linkbatch._rows(flat, starts, np.array(ps, dtype=np.intp))
    assert dec.decisions(ps, linkbatch._tuples(rows)) == [expected[p] for p in ps]
    if ranked:
        assert {d.state for d in expected} <= {"linked", "suggested", "unlinked"}


def test_price_scores_over_arrays_are_match_index_price_scores():
    """``linkbatch.price_scores`` is ``MatchIndex._price_score`` of each pair: at the edges
    of its bands (10x, 3x, 1.3x), without a price (None is 0.0), with odd prices."""
    import numpy as np

    rnd = random.Random(3)
    edge = [0.0, -1.0, 1.0, 1.3, 3.0, 10.0, 13.0, 30.0, 100.0, 0.1, 0.3, 1e-300, 1e300,
            float("inf"), float("nan"), 7.69, 2.999999999, 3.0000001, 9.99999999]
    pairs = [(a, b) for a in edge for b in edge]
    pairs += [(round(rnd.uniform(0.01, 500), 2), round(rnd.uniform(0.01, 500), 2))
              for _ in range(5000)]
    pairs += [(p, p * r) for p in (1.0, 19.99, 249.5) for r in (1.3, 3, 10, 1 / 1.3, 1 / 3, 0.1)]
    lp = np.array([a for a, _ in pairs])
    mp = np.array([b for _, b in pairs])
    got = linkbatch.price_scores(lp, mp).tolist()
    want = [MatchIndex._price_score(a, b, None) for a, b in pairs]
    assert got == want
    assert set(want) == {0.0, -0.3, -0.1, 0.05}  # every band is exercised


def test_round4_over_arrays_is_pythons_round():
    """``linkbatch.round4`` gives Python's ``round(v, 4)`` (correctly rounded), also for
    values whose fourth decimal is a tie or next to one, where scaling and rounding in
    binary (numpy's ``round``) can differ."""
    import numpy as np

    rnd = random.Random(5)
    vals = [rnd.uniform(-2, 2) for _ in range(20000)]
    vals += [(k + 0.5) / 10_000 for k in range(-3000, 3000)]  # ties, as near as binary gets
    vals += [0.05 + 0.8123, 0.35 + 0.6 - 0.25, 1.00005, 0.12345, -0.00005, 0.0, -0.0,
             float("nan"), float("inf"), -float("inf"), 1e15 + 0.3]
    got = linkbatch.round4(np.array(vals)).tolist()
    want = [round(v, 4) for v in vals]
    assert [repr(x) for x in got] == [repr(x) for x in want]
    assert np.round(np.array(vals[20000:26000]), 4).tolist() != want[20000:26000]  # (numpy's differ)


def test_score_pairs_orders_as_rank_does():
    """Per listing the best score first, ties by the smaller master, at most KEEP."""
    import numpy as np

    from auditor.matching import KEEP

    rnd = random.Random(11)
    counts = [rnd.randint(0, KEEP + 3) for _ in range(300)]
    first, masters, titles, brands = [], [], [], []
    for c in counts:
        first.append(len(masters))
        ms = rnd.sample(range(40), c)
        masters += ms
        titles += [rnd.choice([0.5, 0.7, 0.9, 0.7000049]) for _ in ms]
        brands += [rnd.choice([0.0, 0.05, -0.25]) for _ in ms]
    prices = [rnd.choice([0.0, 10.0, 25.0, 200.0]) for _ in counts]
    mprices = [rnd.choice([0.0, 10.0, 11.0, 40.0]) for _ in range(40)]
    got = linkbatch.score_pairs(np.array(first), np.array(counts), np.array(masters),
                                np.array(titles), np.array(brands), np.array(prices),
                                np.array(mprices))
    for n, c in enumerate(counts):
        ks = range(first[n], first[n] + c)
        want = sorted(((round(titles[k] + (brands[k] + MatchIndex._price_score(
            prices[n], mprices[masters[k]], None)), 4), masters[k]) for k in ks),
            key=lambda p: (-p[0], p[1]))[:KEEP]
        assert got[n] == tuple(want)


def test_pair_order_is_lexsort_of_listing_score_master():
    """``_pair_order`` (one integer key) orders pairs as ``np.lexsort((master, -score,
    listing))`` does: scores as ``round4`` leaves them (0.0 and -0.0 alike, negatives,
    near ties), and by ``lexsort`` itself when a score is not a multiple of 1/10,000."""
    rnd = random.Random(3)
    n = 2000
    counts = np.array([rnd.randint(0, 7) for _ in range(n)])
    listing = np.repeat(np.arange(n), counts)
    masters = np.concatenate([np.array(rnd.sample(range(5000), int(c)), dtype=np.intp)
                              for c in counts])
    raw = np.array([rnd.choice([0.0, -0.0, 0.35, -0.25, 0.7000049, 1.05, -1.2])
                    + rnd.choice([0.0, rnd.uniform(-1, 1)]) for _ in masters])
    scores = linkbatch.round4(raw)
    want = np.lexsort((masters, -scores, listing))
    assert linkbatch._pair_order(listing, scores, masters).tolist() == want.tolist()
    odd = scores.copy()
    odd[::7] += 1e-7  # not multiples of 1/10,000: lexsort
    assert linkbatch._pair_order(listing, odd, masters).tolist() == \
        np.lexsort((masters, -odd, listing)).tolist()
    assert linkbatch._pair_order(listing[:0], scores[:0], masters[:0]).tolist() == []


def test_parts_hold_about_equal_work_and_are_cut_between_titles():
    """``_parts`` cuts the title order where the work (a distinct title weighing
    ``TITLE_WORK`` listings) is halved, never inside a title, each position once."""
    rnd = random.Random(9)
    keys = sorted(rnd.choice(["a", "b", "c"]) + str(rnd.randint(0, 400)) for _ in range(5000))
    keys = ["many"] * 5000 + keys  # one title shown 5,000 times, then many titles
    keys.sort()
    order = list(range(len(keys)))
    parts = linkbatch._parts(order, 2, keys)
    assert [p for part in parts for p in part] == order
    assert len(parts) == 2 and keys[parts[0][-1]] != keys[parts[1][0]]

    def work(part: list[int]) -> int:
        return len(part) + linkbatch.TITLE_WORK * len({keys[p] for p in part})

    assert abs(work(parts[0]) - work(parts[1])) <= 5000 + 2 * linkbatch.TITLE_WORK
    assert len(parts[0]) != len(parts[1])  # not cut by count
    assert linkbatch._parts(order[:3], 2, keys) != []
    assert linkbatch._parts(list(range(4)), 2, ["x"] * 4) == [[0, 1, 2, 3]]


def test_ranks_close_ends_the_forked_processes_waiting_to_explain(monkeypatch):
    """Rankings whose evidence is never asked for (a later step failed): ``Ranks.close``
    ends the forked processes waiting for it; the rankings are those of one process."""
    master, listings = world(300, 800)
    idx = MatchIndex(master)
    monkeypatch.setattr(linkbatch, "POOL_MIN", 100)
    ranks = linkbatch.rank_all(idx, listings, {}, 2)
    helpers = list(ranks.helpers)
    assert helpers and all(h._proc.is_alive() for h in helpers)
    ranks.close()
    assert ranks.helpers == [] and not any(h._proc.is_alive() for h in helpers)
    one = linkbatch.rank_all(idx, listings, {}, 1)
    assert [r for r in ranks] == [r for r in one] and one.helpers == []


def test_new_link_makes_the_link_link_makes():
    a = linkbatch.new_link("c", "k", "S1", LinkMethod.FUZZY, 0.9, ("S2",), None, {"title": 1.0})
    b = Link("c", "k", "S1", LinkMethod.FUZZY, 0.9, ("S2",), None, {"title": 1.0})
    assert a == b and type(a) is Link and repr(a) == repr(b) and a.state == "linked"
    with pytest.raises(AttributeError):  # still frozen
        a.sku = "S3"  # type: ignore[misc]


def test_link_all_with_a_key_shown_twice_gives_the_key_its_last_decided_link():
    """``Linker.link_all`` lists a link per listing; listings sharing a key all get the
    key's link decided last (those matched by what they show are decided after the
    others), as a dict of links by key gives."""
    master, listings = world(30, 40)
    keyed = dataclasses.replace(listings[5], key="L9", sku=next(iter(master)))
    odd = [listings[9], keyed, listings[3], dataclasses.replace(listings[12], key="L3")]
    got = Linker(master, {}).link_all(odd)
    s = Linker(master, {}).session()
    ref: dict[str, Link] = {}
    for li in odd:
        link = s.link(li)
        if link is not None:
            ref[li.key] = link
    for li, link in s.finish():
        ref[li.key] = link
    assert got == [ref[li.key] for li in odd]
    # L9: linked by its SKU at once, then by its title: the title's link for both
    assert got[0] == got[1] and got[1].method is not LinkMethod.SKU
    assert got[2] == got[3]


def test_brand_scores_are_brand_score_of_each_candidate():
    """``MatchIndex.brand_scores`` (brands compared per pair, heads per master, the
    title's spelling of a brand per brand) gives ``_brand_score`` of each candidate: the
    same brand, one brand inside the other, the brand in the master's title head, the
    master's brand named in the listing's title (before "for" or after), no brand."""
    brands = ["Acme", "Acme Corp", "Fogware Publishing", "HP", "D-Link", "", "Sony",
              "Just Mobile", "Macsense", "Ac"]
    titles = ["Acme widget 500 GB", "Fogware Publishing ESL learn english",
              "Slide stand by Just Mobile", "Case for Sony MDR headphones", "HP 61 ink",
              "DLink router for Acme", "plain title words", "Macsense just mobile slide"]
    master = {f"S{k:03d}": MasterRecord(sku=f"S{k:03d}", title=titles[k % len(titles)],
                                        brand=brands[k % len(brands)] or None)
              for k in range(80)}
    idx = MatchIndex(master)
    cands = list(range(len(idx.skus)))
    for title in titles + ["Just Mobile Slide Stand", "fogware publishing esl"]:
        for brand in brands + ["Acme Corporation", "Sonyx"]:
            f = listing_features(title, None, brand or None, None)
            idx.prepare(f)
            expected = [idx._brand_score(f, i, None) for i in cands]
            assert idx.brand_scores(f, cands) == expected
            assert idx.brand_scores(f, cands[::-1]) == expected[::-1]  # (kept per pair)
            # and the brand evidence each explains, as ``_brand_score`` explains it
            evs: list[dict] = [{} for _ in cands]
            for i, ev in zip(cands, evs, strict=True):
                idx._brand_score(f, i, ev)
            labels: list = []
            assert idx.brand_scores(f, cands, labels) == expected
            assert labels == [ev.get("brand") for ev in evs]
            assert {"same", "in title", "differs", None} >= set(labels)


def test_rank_part_keeps_few_titles_and_ranks_as_with_many(monkeypatch):
    """While ranking in title order the index keeps at most ``CACHE`` titles' work (then
    its bound is as before), and the rankings are those of a cache of any size."""
    master, listings = world(400, 1200)
    order = linkbatch.title_order(listings)
    big = MatchIndex(master)
    expected = linkbatch.rank_part(big, listings, order, {})
    monkeypatch.setattr(linkbatch, "CACHE", 3)
    idx = MatchIndex(master)
    seen: list[int] = []
    real = MatchIndex.title_scored

    def title_scored(self, *a, **k):
        seen.append(len(self._cache))
        return real(self, *a, **k)

    monkeypatch.setattr(MatchIndex, "title_scored", title_scored)
    whys, flat = linkbatch.rank_part(idx, listings, order, {})
    assert max(seen) <= 3 and len(seen) > 100
    assert idx.cache_titles == MatchIndex.cache_titles > 3
    assert whys == expected[0]
    for a, b in zip(flat, expected[1], strict=True):
        assert np.array_equal(a, b)


def test_decisions_over_arrays_print_zero_and_minus_zero_apart():
    """``decide_flat`` formats each score once, but 0.0 and -0.0 (one dict key) print as
    ``decide`` prints them."""
    ranked = [((0.0, 1),), ((-0.0, 2),), ((0.0, 3), (-0.0, 4)), ((0.9, 5), (0.0, 6))]
    flat = linkbatch._flat(ranked)
    dec = linkbatch.decide_flat(flat, linkbatch.greedy(flat, -1.0), 0.8, -1.0, 0.05)
    starts = np.cumsum(flat[0]) - flat[0]
    got = [dec.decision(p, flat, starts) for p in range(len(ranked))]
    assert got == assign(ranked, 0.8, -1.0, 0.05)
    assert [d.reason for d in got][:2] == ["score 0.00 below 0.80", "score -0.00 below 0.80"]


def test_evidence_explained_by_the_ranking_is_the_evidence_read_again():
    """The evidence the ranking keeps (``Explained``: title evidence per title and master,
    brand evidence per title and brand, the price weighed per listing) is what reading
    each listing again gives, for every listing and each of its candidates; listings
    ranked alone (rejected masters, no usable title) are read again."""
    master, listings = world(300, 900)
    rejected = {li.key: {next(iter(master))} for li in listings[:100:9]}
    order = linkbatch.title_order(listings)
    idx = MatchIndex(master)
    explained = linkbatch.Explained(len(listings))
    whys, flat = linkbatch.rank_part(idx, listings, order, rejected, explained)
    ranks = linkbatch.Ranks({}, linkbatch._interleave(
        len(listings), [(np.array(order, dtype=np.intp), flat)]))
    for k in range(int(flat[0].max())):  # each listing's k-th candidate
        wanted = {p: ranks.ranked(p)[k][1] for p in order if len(ranks.ranked(p)) > k}
        positions = [p for p in order if p in wanted]
        again = linkbatch.evidence_part(MatchIndex(master), listings, positions, wanted)
        got = linkbatch.evidence_part(idx, listings, positions, wanted, explained)
        assert got == again
        assert all(list(got[p]) == list(again[p]) for p in again)  # (in the same key order)
    ranked_here = int((explained.group >= 0).sum())
    alone = [p for p in order if listings[p].key in rejected]
    assert alone and all(explained.group[p] < 0 for p in alone)
    assert ranked_here >= len(listings) - len(alone) - len(whys) - 30
    with pytest.raises(AssertionError):  # filled by one ranking
        linkbatch.rank_part(idx, listings, order, rejected, explained)
