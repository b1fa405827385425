"""A master catalog that lists one product twice (two records with the same title, or the
same model codes): a listing that fits both cannot tell which record it is, so its link is
suggested, not confident (``matching.twin_links``)."""

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


def test_same_title_twice_in_the_master_is_a_suggestion():
    # the listing's price picks A (close) over B (3.3 times the listing's): a clear lead by
    # score, but the master holds the product twice (A and B are not three times apart)
    # and either record could be the one sold
    cat = catalog(m("A", "Xantech CPL10 RF IR Coupler", "Xantech", "13.00"),
                  m("B", "Xantech CPL10 RF IR Coupler", "Xantech", "33.00"),
                  m("C", "Xantech 283TPD Designer Twin Plug Blink Emitter", "Xantech"))
    link = link_of(cat, bare("L1", "Xantech Cpl10 Rf Ir Coupler", "Xantech", "10.00"))
    assert link.method is LinkMethod.SUGGESTED and link.sku is None
    assert link.candidates[:2] == ("A", "B")
    assert "B has the same title" in link.reason


def test_same_model_codes_twice_in_the_master_is_a_suggestion():
    cat = catalog(m("A", "Xerox 108R00579 Transfer Roller", "Xerox"),
                  m("B", "Xerox 108R00579 transfer roller for Phaser 7750 laser printer", "Xerox"),
                  m("C", "Xerox 108R00645 Imaging Unit", "Xerox"))
    link = link_of(cat, bare("L1", "Xerox 108R00579 Transfer Roller", "Xerox"))
    assert link.method is LinkMethod.SUGGESTED
    assert link.candidates[0] == "A" and "B has the same model codes" in link.reason


def test_twin_rule_must_not_fire_on_siblings_or_weak_twins():
    # siblings: the same title words but another model code (not the same record twice)
    cat = catalog(m("A", "Xerox 108R00579 Transfer Roller", "Xerox"),
                  m("B", "Xerox 108R00580 Transfer Roller", "Xerox"))
    link = link_of(cat, bare("L1", "Xerox 108R00579 Transfer Roller", "Xerox"))
    assert (link.method, link.sku) == (LinkMethod.FUZZY, "A")
    # a record with the same title that the listing would not link on its own (its price
    # ten times off and another brand): the listing is sure enough of A
    cat = catalog(m("A", "Pressure Pop Puzzle Game", "Fogware", "12.00"),
                  m("B", "Pressure Pop Puzzle Game", "Northwind", "400.00"))
    link = link_of(cat, bare("L1", "Pressure Pop! Puzzle Game", "Fogware", "12.00"))
    assert (link.method, link.sku) == (LinkMethod.FUZZY, "A")
    # records priced three times apart or more are two products (the generated world's
    # catalog has such: "Pioneer Cork Wallet" at 79 and at 249.50)
    cat = catalog(m("A", "Xantech CPL10 RF IR Coupler", "Xantech", "13.00"),
                  m("B", "Xantech CPL10 RF IR Coupler", "Xantech", "40.00"))
    link = link_of(cat, bare("L1", "Xantech Cpl10 Rf Ir Coupler", "Xantech", "10.00"))
    assert (link.method, link.sku) == (LinkMethod.FUZZY, "A")
    # ... whereas with B's price close as well, the two are one product twice
    cat = catalog(m("A", "Pressure Pop Puzzle Game", "Fogware", "13.00"),
                  m("B", "Pressure Pop Puzzle Game", "Fogware", "33.00"))
    link = link_of(cat, bare("L1", "Pressure Pop! Puzzle Game", "Fogware", "10.00"))
    assert link.method is LinkMethod.SUGGESTED and link.candidates[:2] == ("A", "B")


def test_twins_need_a_code_few_masters_share():
    # "4th-6th" (a grade range read as a code) is in three titles of other products: two
    # masters naming only it are not one product twice
    cat = catalog(m("A", "JumpStart 4th-6th Grade"), m("B", "Adventure Workshop 4th-6th Grade"),
                  m("C", "Reader Rabbit 4th-6th Grade"), m("D", "Math Blaster 4th-6th Grade"),
                  m("E", "Xerox 108R00579 Transfer Roller"),
                  m("F", "Xerox 108R00579 Roller for Phaser"),
                  m("G", "Ember Bamboo Jersey T-Shirt, Purple, S", "Northwind"),
                  m("H", "Ember Bamboo Jersey T-Shirt, Purple, S", "Hollow Oak"),
                  m("I", "Ember Bamboo Jersey T-Shirt, Purple, S"))
    idx = MatchIndex(cat)
    pos = idx.position
    assert idx.twins(pos["A"], pos["B"]) is None
    # one title, two brands: two products (a record with no brand may be either)
    assert idx.twins(pos["G"], pos["H"]) is None
    assert idx.twins(pos["G"], pos["I"]) == "title"
    assert idx.twins(pos["E"], pos["F"]) == "model codes"
    # on decisions: only links change, and only for a twin that scores at least link_at
    ranked = [[(1.2, pos["E"]), (0.9, pos["F"])], [(1.2, pos["E"]), (0.7, pos["F"])],
              [(1.2, pos["A"]), (1.0, pos["B"])]]
    ds = [Decision("linked", pos["E"], 1.2, [pos["F"]]), Decision("linked", pos["E"], 1.2, []),
          Decision("linked", pos["A"], 1.2, [])]
    out = twin_links(idx, ranked, ds, 0.8)
    assert [d.state for d in out] == ["suggested", "linked", "linked"]
