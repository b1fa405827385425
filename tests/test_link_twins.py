"""A master catalog that lists one product twice (two records with the same title, or the
same model codes): a listing that fits both cannot tell which record it is, so its link is
suggested, not confident (``matching.twin_links``), unless its price tells them apart."""

from __future__ import annotations

from auditor.linking import Linker
from auditor.matching import Decision, MatchIndex, twin_links
from auditor.model import LinkMethod, Money
from tests.checks_factory import listing, master

OPTS = {"order": ["sku", "gtin", "mpn", "url"], "fuzzy": True}


def m(sku, title, brand=None, price=None, description=None):
    return master(sku=sku, title=title, brand=brand, gtin=None, mpn=None, url=None,
                  price=Money.of(price, "USD") if price else None, description=description)


def bare(key, title, brand=None, price=None):
    return listing(master(sku="X"), sku=None, gtin=None, mpn=None, url=None, brand=brand,
                   title=title, key=key, price=Money.of(price, "USD") if price else None,
                   description=None)


def catalog(*records):
    return {r.sku: r for r in records}


def link_of(cat, li):
    return Linker(cat, OPTS).link_all([li])[0]


ROLLER = "Xerox 108R00579 Transfer Roller"
ROLLER_TOO = "Xerox 108R00579 transfer roller for Phaser 7750 laser printer"


def test_same_model_codes_twice_in_the_master_is_a_suggestion():
    # A fits the listing's words better (a clear lead by score), but B is the same product
    # (the same code, brand, and a price close to the listing's as well)
    cat = catalog(m("A", ROLLER, "Xerox", "12.00"), m("B", ROLLER_TOO, "Xerox", "13.00"),
                  m("C", "Xerox 108R00645 Imaging Unit", "Xerox"))
    link = link_of(cat, bare("L1", ROLLER, "Xerox", "12.00"))
    assert link.method is LinkMethod.SUGGESTED and link.sku is None
    assert link.candidates[:2] == ("A", "B")
    assert link.reason.startswith("B has the same model codes (score ")
    assert link.reason.endswith("the master may list this product twice")
    # with no price at all, the same
    cat = catalog(m("A", ROLLER, "Xerox"), m("B", ROLLER_TOO, "Xerox"))
    assert link_of(cat, bare("L1", ROLLER, "Xerox")).method is LinkMethod.SUGGESTED


def test_twin_rule_must_not_fire_when_something_tells_them_apart():
    # siblings: the same title words but another model code (not the same record twice)
    cat = catalog(m("A", ROLLER, "Xerox"), m("B", "Xerox 108R00580 Transfer Roller", "Xerox"))
    link = link_of(cat, bare("L1", ROLLER, "Xerox"))
    assert (link.method, link.sku) == (LinkMethod.FUZZY, "A")
    # the listing's price is A's (within 30%) and not B's: the price tells them apart
    cat = catalog(m("A", ROLLER, "Xerox", "12.00"), m("B", ROLLER_TOO, "Xerox", "20.00"))
    link = link_of(cat, bare("L1", ROLLER, "Xerox", "12.00"))
    assert (link.method, link.sku) == (LinkMethod.FUZZY, "A")
    # a record with the same title that the listing would not link on its own (its price
    # ten times off and another brand): the listing is sure enough of A
    cat = catalog(m("A", "Pressure Pop Puzzle Game", "Fogware", "12.00"),
                  m("B", "Pressure Pop Puzzle Game", "Northwind", "400.00"))
    link = link_of(cat, bare("L1", "Pressure Pop! Puzzle Game", "Fogware", "12.00"))
    assert (link.method, link.sku) == (LinkMethod.FUZZY, "A")


def test_what_makes_twins():
    cat = catalog(m("A", "JumpStart 4th-6th Grade"), m("B", "Adventure Workshop 4th-6th Grade"),
                  m("C", "Reader Rabbit 4th-6th Grade"), m("D", "Math Blaster 4th-6th Grade"),
                  m("E", ROLLER), m("F", "Xerox 108R00579 Roller for Phaser"),
                  m("G", "Ember Bamboo Jersey T-Shirt, Purple, S", "Northwind", "20.00"),
                  m("H", "Ember Bamboo Jersey T-Shirt, Purple, S", "Hollow Oak", "20.00"),
                  m("I", "Ember Bamboo Jersey T-Shirt, Purple, S", None, "25.00"),
                  m("J", "Ember Bamboo Jersey T-Shirt, Purple, S", "Northwind", "60.00"))
    idx = MatchIndex(cat)
    pos = idx.position
    assert idx.twins(pos["E"], pos["F"]) == "model codes"
    assert idx.twins(pos["G"], pos["I"]) == "title"  # a record with no brand may be either
    # "4th-6th" (a grade range read as a code) is in four titles of other products: two
    # masters naming only it are not one product twice
    assert idx.twins(pos["A"], pos["B"]) is None
    # one title, two brands: two products
    assert idx.twins(pos["G"], pos["H"]) is None
    # one title and brand at prices three times apart: two products (the generated world's
    # catalog has "Pioneer Cork Wallet" at 79.00 and at 249.50)
    assert idx.twins(pos["G"], pos["J"]) is None


def test_twin_links_on_decisions():
    cat = catalog(m("A", "Pressure Pop Puzzle Game", "Fogware", "12.00"),
                  m("B", "Pressure Pop Puzzle Game", "Fogware", "30.00"))
    idx = MatchIndex(cat)
    a, b = idx.position["A"], idx.position["B"]
    ranked = [[(1.1, a), (0.9, b)], [(1.1, a), (0.7, b)], [(1.1, a), (0.9, b)],
              [(1.1, a), (0.9, b)], [(1.1, a), (0.9, b)]]
    ds = [Decision("linked", a, 1.1, [b]), Decision("linked", a, 1.1, [b]),
          Decision("suggested", a, 1.1, [b], "a second candidate scores 1.05"),
          Decision("linked", a, 1.1, [b]), Decision("linked", a, 1.1, [b])]
    # listing prices: none; any (B below link_at); -; 12 (A's, not B's); 25 (B's, not A's)
    out = twin_links(idx, ranked, ds, 0.8, [None, 12.0, None, 12.0, 25.0])
    assert [d.state for d in out] == ["suggested", "linked", "suggested", "linked", "suggested"]
    assert out[2].reason == "a second candidate scores 1.05"  # not a link: left as it is
    assert out[0].reason == "B has the same title (score 0.90): the master may list this " \
        "product twice"
