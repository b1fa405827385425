"""Which of a listing's candidates are scored on all the evidence: a master found by a model
code it shares with the listing is, however few words their titles share
(``MatchIndex.rank``'s pre-score counts the code's weight)."""

from __future__ import annotations

from auditor.linking import Linker, features_of
from auditor.matching import FULL_SCORES, MatchIndex
from auditor.model import LinkMethod
from tests.checks_factory import listing, master


def m(sku, title, brand="Sony"):
    return master(sku=sku, title=title, brand=brand, gtin=None, mpn=None, url=None, price=None,
                  description=None)


LISTING = "Sony MDRXB40EX High Sensitive Bass Headphones"
# the listing's product: its code, and few of its words
TRUE = m("T", "Sony MDR-XB40EX 13.5mm Driver Extra Bass EX Earbuds")
# others of the line: more of the listing's words, other codes
DECOYS = [m(f"D{n}", f"Sony MDR-Q{n}8{n}LP High Sensitive Bass Headphones Clip") for n in range(1, 8)]


def catalog():
    return {r.sku: r for r in (TRUE, *DECOYS)}


def test_a_master_sharing_the_listing_model_code_is_scored_in_full():
    assert len(DECOYS) > FULL_SCORES  # more candidates than are scored in full
    idx = MatchIndex(catalog())
    li = listing(master(sku="X"), sku=None, gtin=None, mpn=None, url=None, brand="Sony",
                 title=LISTING, key="L1", price=None, description=None)
    ranked = idx.rank(features_of(li))
    assert idx.skus[ranked[0][1]] == "T"
    assert ranked[0][0] >= 0.8 and all(s < ranked[0][0] - 0.3 for s, _i in ranked[1:])
    link = Linker(catalog(), {"fuzzy": True}).link_all([li])[0]
    assert (link.method, link.sku) == (LinkMethod.FUZZY, "T")


def test_must_not_fire_without_a_shared_code():
    # the same listing without its code: the decoys' words decide, the true one is not
    # preferred for a code it does not show
    idx = MatchIndex(catalog())
    li = listing(master(sku="X"), sku=None, gtin=None, mpn=None, url=None, brand="Sony",
                 title="Sony High Sensitive Bass Headphones", key="L1", price=None,
                 description=None)
    ranked = idx.rank(features_of(li))
    assert "T" not in {idx.skus[i] for _s, i in ranked}
