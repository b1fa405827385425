"""Compact postings of the title-matching index (auditor/postings.py) and when the index
is built (issue 20)."""

from __future__ import annotations

from array import array

import pytest

from auditor.compact import compact
from auditor.linking import Linker
from auditor.matching import MatchIndex, listing_features
from auditor.postings import PerMaster, Postings
from tests.conftest import make_listing, make_master


def test_postings_give_each_keys_masters_in_order_from_arrays():
    lists = {"b": [3, 1], "a": [0], "c": [2, 4, 5]}
    p = Postings(lists)
    assert lists == {}  # read and emptied
    assert p.keys_ == ["a", "b", "c"] and list(p) == ["a", "b", "c"] and len(p) == 3
    assert list(p["b"]) == [3, 1] and list(p.get("c")) == [2, 4, 5]
    assert isinstance(p["a"], array) and p["a"].typecode == "I"
    assert p.get("zz") == () and p.get("zz", None) is None and "a" in p and "zz" not in p
    assert 1 not in p  # not a key at all
    with pytest.raises(KeyError):
        p["zz"]
    assert p.number("c") == 2 and p.number("bb") == -1 and list(p.at(1)) == [3, 1]
    assert dict(p.items()) == {"a": array("I", [0]), "b": array("I", [3, 1]),
                               "c": array("I", [2, 4, 5])}


def test_per_master_keys_are_numbers_of_shared_names():
    names = ["x1", "y2", "z3"]
    per = [("y2",), None, ("z3", "x1"), ()]
    pm = PerMaster(names, per)
    assert per == [] and len(pm) == 4
    assert pm[0] == ("y2",) and pm[1] is None and pm[2] == ("z3", "x1") and pm[3] is None
    assert pm[-2] == ("z3", "x1") and pm[1:3] == [None, ("z3", "x1")]
    assert pm[0][0] is names[1]  # the shared string, not a copy
    with pytest.raises(IndexError):
        pm[4]


def test_match_index_ranks_the_same_with_compact_postings():
    recs = [make_master(f"S{i}", title=t, brand="Acme", mpn=m) for i, (t, m) in enumerate([
        ("Alpine Desk Organiser Black", "AC-100BK"), ("Alpine Desk Organiser Red", "AC-100RD"),
        ("Marlow Rain Jacket Pink S", "MR-200PS"), ("Marlow Rain Jacket Pink M", "MR-200PM"),
        ("Alpine Desk Organiser Black", "AC-101BK")])]
    idx = MatchIndex(compact({r.sku: r for r in recs}))
    assert isinstance(idx.exact, Postings) and isinstance(idx.code_post, Postings)
    assert list(idx.exact["alpine desk organiser black"]) == [0, 4]
    assert idx.titles[0] is idx.titles[4]  # one string per distinct title
    assert set(idx.codes[0] or ()) == {"ac100bk"} and idx.sorted_codes == sorted(idx.code_post)
    ranked = idx.rank(listing_features("Acme Marlow Rain Jacket Pink M MR-200PM", None, "Acme",
                                       None))
    assert ranked and ranked[0][1] == 3 and idx.skus[ranked[0][1]] == "S3"
    # a listing's code a prefix of a master's still finds it
    assert 0 in idx.candidates(listing_features("organiser ac100b", None, None, None))


def test_title_matching_index_is_built_only_when_a_listing_needs_it():
    m = compact({r.sku: r for r in (make_master("A-1", title="Alpha Widget", gtin=None),
                                    make_master("B-1", title="Beta Gadget", gtin=None))})
    lk = Linker(m, {})
    assert lk.link(make_listing(key="k1", sku="A-1")).sku == "A-1"
    assert lk._match_index is None  # every listing so far linked by a key
    link = lk.link(make_listing(key="k2", sku=None, gtin=None, title="Beta Gadget"))
    assert lk._match_index is not None and link.sku == "B-1"
