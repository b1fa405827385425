"""Evidence of the title matcher for near variants (issue 15, linking quality): editions
and licences, the brand named in a title, sizes, counted specifications, bundles,
accessories of another kind, codes with a word glued in front, quantities and numbers."""

from __future__ import annotations

from auditor.matching import (MatchIndex, brand_span, codes, editions, listing_features,
                              number_text, quantities, sizes)
from auditor.model import Money
from tests.checks_factory import master


def m(sku, title, brand=None, price=None):
    return master(sku=sku, title=title, brand=brand, gtin=None, mpn=None, url=None,
                  price=Money.of(price, "USD") if price else None)


def index(*records):
    return MatchIndex({r.sku: r for r in records})


def best(idx, title, brand=None, price=None):
    """(SKU, score, evidence) of the listing's best candidate."""
    f = listing_features(title, None, brand, price)
    ranked = idx.rank(f)
    assert ranked, title
    sc, i = ranked[0]
    return idx.skus[i], sc, idx.score(f, i, explain=True)[1]


def evidence(idx, title, sku, brand=None, price=None):
    f = listing_features(title, None, brand, price)
    return idx.score(f, idx.position[sku], explain=True)


def test_editions_and_licences():
    assert editions("windows xp professional upgrade".split()) == ({"pro"}, {"upgrade"})
    assert editions("suite standard academic".split()) == ({"standard"}, {"academic"})
    idx = index(m("FULL", "Microsoft Word 2007", "Microsoft"),
                m("UPG", "Microsoft Word 2007 Version Upgrade", "Microsoft"),
                m("DLX", "The Print Shop 22 Deluxe", "Encore"),
                m("PRM", "The Print Shop 22 Premium", "Encore"))
    # a licence named on one side only
    sku, _sc, _ev = best(idx, "Microsoft Word 2007 Upgrade (PC)")
    assert sku == "UPG"
    sc_full, ev = evidence(idx, "Microsoft Word 2007 Upgrade (PC)", "FULL")
    assert ev["editions_differ"] == [["upgrade"], []]
    sku, _sc, _ev = best(idx, "Microsoft(R) Word 2007")
    assert sku == "FULL"
    # editions on both sides, each naming one the other lacks
    _sc, ev = evidence(idx, "Print Shop 22 Deluxe", "PRM")
    assert ev["editions_differ"] == [["deluxe"], ["premium"]]
    assert best(idx, "Print Shop 22 Deluxe")[0] == "DLX"
    # a listing that adds the usual "standard" licence to the master's edition is not another
    _sc, ev = evidence(idx, "The Print Shop 22 Deluxe - complete product - standard", "DLX")
    assert "editions_differ" not in ev


def test_refurbished_is_not_new():
    idx = index(m("NEW", "HP 29 Black Inkjet Cartridge 51629A", "HP"),
                m("REM", "Remanufactured HP 29 Black Inkjet Cartridge 51629A", "HP"))
    _sc, ev = evidence(idx, "HP 29 Black Inkjet Cartridge 51629A", "REM", "HP")
    assert ev["editions_differ"] == [[], ["refurbished"]]
    assert best(idx, "HP 29 Black Inkjet Cartridge 51629A", "HP")[0] == "NEW"


def test_brand_named_in_the_title():
    assert brand_span("fogware publishing esl learn english".split(),
                      "fogwarepublishing") == {"fogware", "publishing"}
    assert brand_span("learn english".split(), "fogwarepublishing") == frozenset()
    assert brand_span("hp 56 black".split(), "hp") == frozenset()  # too short to tell
    # (no brackets: titles compared without them are tested in test_link_evidence_more.py)
    idx = index(m("A", "Learn English - Win/Mac - Jewel Case", "Fogware Publishing", "9.99"),
                m("B", "Learn Spanish (Win/Mac) (Jewel Case)", "Fogware Publishing", "9.99"),
                m("C", "Learn English Deluxe Course", "Transparent Language", "49"))
    title = "fogware publishing esl - learn english"
    with_brand, ev = evidence(idx, title, "A", price=9.99)
    assert ev["brand"] == "in title"
    # compared without the brand words the master's title lacks: a higher title score
    plain = index(m("A", "Learn English - Win/Mac - Jewel Case", None, "9.99"))
    without, ev2 = evidence(plain, title, "A", price=9.99)
    assert ev["title"] > ev2["title"] and with_brand > without
    assert best(idx, title, price=9.99)[0] == "A"


def test_sizes_compared_as_pairs():
    assert sizes(number_text("Screen - 60 x 80 Video Format")) == {(60.0, 80.0)}
    assert sizes(number_text("8.5x11 paper, 11 X 8.5")) == {(8.5, 11.0)}
    idx = index(m("S", "Da-Lite Da-Plex Rear Projection Screen - 60 x 60 AV Format", "Da-Lite"),
                m("W", "Da-Lite Da-Plex Rear Projection Screen - 60 x 80 Video Format",
                  "Da-Lite"))
    _sc, ev = evidence(idx, "Da-Lite Da-Plex Rear Projection Screen - 60 x 60", "W", "Da-Lite")
    assert ev["sizes_differ"] == [["60 x 60"], ["60 x 80"]]
    assert best(idx, "Da-Lite Da-Plex Rear Projection Screen - 60 x 60", "Da-Lite")[0] == "S"


def test_counted_specifications_are_not_model_codes():
    one, two = codes("V7 3-Button Optical Mouse 240-pin 6-Outlet 1993-Up Win32")
    assert not one and not two
    assert quantities(number_text("Belkin 8-Outlet Surge Protector")) == {"outlet": {8.0}}
    idx = index(m("M", "V7 3 Button USB Optical Mouse M30P107N", "V7"),
                m("E", "Belkin 12-Outlet Home Office Surge Protector", "Belkin"))
    # "3-button" is no code, so it does not differ from the master's M30P107N
    sc, ev = evidence(idx, "V7 3-Button Optical Mouse USB", "M", "V7")
    assert "codes_differ" not in ev and sc >= 0.8
    _sc, ev = evidence(idx, "Belkin 8-Outlet Surge Protector", "E", "Belkin")
    assert ev["quantities_differ"] == "outlet"


def test_numbers_as_words_and_quantities_within_one_percent():
    assert number_text("Rubbermaid Six-Tier Sorter") == "rubbermaid 6 tier sorter"
    assert quantities(number_text("Casio 14.1MP camera"))["mp"] == {14.1}
    idx = index(m("C", "Casio Exilim EX-ZS10 Black 14 MP Digital Camera", "Casio"))
    _sc, ev = evidence(idx, "Casio Exilim EX-ZS10 14.1MP Digital Camera Black", "C", "Casio")
    assert "quantities_differ" not in ev
    idx = index(m("R", "Rubbermaid Six-Tier Jumbo Incline Sorter Plastic Clear", "Rubbermaid"))
    _sc, ev = evidence(idx, "Rubbermaid 6-Tier Jumbo Incline Sorter Plastic Clear", "R",
                       "Rubbermaid")
    assert "numbers_differ" not in ev and "quantities_differ" not in ev


def test_bundle_and_accessories_of_another_kind():
    idx = index(m("K", "Inland Pro USB Keyboard", "Inland"),
                m("C", "Scosche sleekSYNC Retractable USB cable for iPod Black", "Scosche"))
    _sc, ev = evidence(idx, "Inland Pro USB Keyboard and Mouse Combo Set Black", "K", "Inland")
    assert ev["bundle"] == ["combo"]
    sc, ev = evidence(idx, "Scosche Retractable Car Charger for iPod", "C", "Scosche")
    assert ev["accessories_differ"] == [["charger"], ["cable"]] and sc < 0.8
    # accessories of one kind (case, sleeve) are not evidence against
    idx = index(m("S", "Case Logic 10-Inch Tablet Sleeve Black", "Case Logic"))
    _sc, ev = evidence(idx, "Case Logic 10 Tablet Case Black", "S", "Case Logic")
    assert "accessories_differ" not in ev and "accessory" not in ev


def test_code_with_a_word_glued_in_front_agrees_with_the_code():
    one, two = codes("New-101R00421 Transfer Unit")
    assert "new101r00421" in one and "101r00421" in two
    idx = index(m("X", "New-101R00421 Transfer Unit Case Pack 1", "Xerox"),
                m("Y", "016200001 Transfer Belt Unit", "Xerox"))
    sku, _sc, ev = best(idx, "Xerox 101R00421 Transfer Unit", "XEROX")
    assert sku == "X" and ev["codes_agree"] == ["101r00421"]
    assert "codes_differ" not in ev


def test_more_colours():
    idx = index(m("B", "iFrogz iPad 2 BackBone Case - Clear", "iFrogz"),
                m("K", "iFrogz iPad 2 BackBone Case - Black", "iFrogz"))
    _sc, ev = evidence(idx, "iFrogz Backbone Case for iPad 2 Black", "B", "iFrogz")
    assert ev["colours_differ"] == [["black"], ["clear"]]
    assert best(idx, "iFrogz Backbone Case for iPad 2 Black", "iFrogz")[0] == "K"
