"""Evidence that decides which of a listing's scored candidates ranks first (issue 15,
linking quality, fifth pass): a code named exactly beats a code that only starts
another, binary and rounded quantities, numbers written as words, accessories of
titles that are themselves for something, and a brand named in the title over the
brand field. Each rule with a case where it must not fire."""

from __future__ import annotations

from auditor.matching import MatchIndex, listing_features, quantities, number_text
from auditor.model import Money
from tests.checks_factory import master


def m(sku, title, brand=None, price=None):
    return master(sku=sku, title=title, brand=brand, gtin=None, mpn=None, url=None,
                  price=Money.of(price, "USD") if price else None)


def index(*records):
    return MatchIndex({r.sku: r for r in records})


def evidence(idx, title, sku, brand=None, price=None):
    f = listing_features(title, None, brand, price)
    return idx.score(f, idx.position[sku], explain=True)


def first(idx, title, brand=None, price=None):
    f = listing_features(title, None, brand, price)
    ranked = idx.rank(f)
    assert ranked, title
    return idx.skus[ranked[0][1]]


def test_a_code_named_exactly_ranks_above_a_code_it_only_starts():
    idx = index(m("MAC", "Fujitsu ScanSnap S1500M Instant PDF Sheet-Fed Scanner", "Fujitsu"),
                m("PC", "Fujitsu ScanSnap S1500 Deluxe Sheet-Fed Scanner", "Fujitsu"))
    title = "Fujitsu ScanSnap S1500 Compact Color Duplex Scanner"
    sc_pc, ev_pc = evidence(idx, title, "PC", "Fujitsu")
    sc_mac, ev_mac = evidence(idx, title, "MAC", "Fujitsu")
    assert ev_pc["codes_agree"] == ["s1500"] and "codes_prefix" not in ev_pc
    assert ev_mac["codes_agree"] == ["s1500"] and ev_mac["codes_prefix"] is True
    assert first(idx, title, "Fujitsu") == "PC"
    # must NOT fire: the only master naming the code by its start still agrees with it
    only = index(m("MAC", "Fujitsu ScanSnap S1500M Instant PDF Sheet-Fed Scanner", "Fujitsu"),
                 m("OTHER", "Fujitsu ScanSnap S1300 Mobile Scanner", "Fujitsu"))
    assert first(only, title, "Fujitsu") == "MAC"
    sc_alone, ev = evidence(only, "Fujitsu S1500M scanner", "MAC", "Fujitsu")
    assert "codes_prefix" not in ev  # the same code: full weight


def test_1024_megabytes_are_one_gigabyte():
    assert quantities(number_text("1024MB DDR3")) == quantities(number_text("1 GB DDR3"))
    assert quantities(number_text("2048 MB")) == {"bytes": {2.0}}
    idx = index(m("GT430", "Evga GeForce GT 430 1 GB DDR3 PCI-Express 2.0 Graphics Card", "EVGA"))
    _sc, ev = evidence(idx, "EVGA Nvidia GeForce GT 430 Graphics Card with 1024MB DDR3 Memory",
                       "GT430", "EVGA")
    assert "quantities_differ" not in ev
    # must NOT fire: 500 MB is not a round binary size, 512 MB is not 1 GB
    assert quantities(number_text("500 MB")) == {"bytes": {0.5}}
    _sc, ev = evidence(idx, "EVGA GeForce GT 430 512MB DDR3", "GT430", "EVGA")
    assert ev["quantities_differ"] == "bytes"


def test_megapixels_sold_rounded_agree():
    idx = index(m("ST65", "Samsung EC-ST65 Digital Camera with 14 MP and 5x Optical Zoom", "Samsung"))
    _sc, ev = evidence(idx, "Samsung EC-ST65 Indigo Blue 14.2MP Digital Camera", "ST65", "Samsung")
    assert "quantities_differ" not in ev
    # must NOT fire: 12 MP is another camera; other kinds stay within 1% (2 TB vs 2.04 TB)
    _sc, ev = evidence(idx, "Samsung EC-ST65 12MP Digital Camera", "ST65", "Samsung")
    assert ev["quantities_differ"] == "mp"
    disk = index(m("D", "Acme Disk 2 TB", "Acme"))
    _sc, ev = evidence(disk, "Acme Disk 2.04 TB", "D", "Acme")
    assert ev["quantities_differ"] == "bytes"


def test_counts_written_as_words_in_a_title_without_digits():
    f = listing_features("Avery Worksaver Big Tab Dividers Two Slash Pockets Eight-Tab", None,
                         "Avery", None)
    assert f.qty == {"tab": {8.0}}
    idx = index(m("5", "Avery 11906 - WorkSaver Big Tab Dividers Two Slash Pockets 5-Tab", "Avery"),
                m("8", "Avery 11907 - WorkSaver Big Tab Dividers Two Slash Pockets 8-Tab", "Avery"))
    title = "Avery Worksaver Big Tab Dividers Two Slash Pockets Eight-Tab"
    _sc, ev = evidence(idx, title, "5", "Avery")
    assert ev["quantities_differ"] == "tab"
    assert first(idx, title, "Avery") == "8"
    # must NOT fire: a title with no number at all reads none
    assert listing_features("Avery Big Tab Dividers", None, None, None).qty == {}


def test_no_accessory_penalty_when_the_other_title_is_for_something_too():
    idx = index(m("FEATHER", "Incipio Smart Feather Case for Apple iPad 2 - Light Blue", "Incipio"),
                m("ZIERRA", "Targus Zierra Leather Portfolio for BlackBerry PlayBook", "Targus"))
    _sc, ev = evidence(idx, "Incipio Smart Feather for Apple iPad 2 Light Blue", "FEATHER",
                       "Incipio")
    assert "accessory" not in ev  # the listing is itself for an iPad: a case by another word
    _sc, ev = evidence(idx, "Targus Zierra Case for BlackBerry Playbook Tablet", "ZIERRA",
                       "Targus")
    assert "accessory" not in ev
    # must NOT fire: the product itself against a case for it
    prod = index(m("DRIVE", "Seagate Barracuda 500GB Hard Drive", "Seagate"),
                 m("CASE", "Acme Case for Seagate Barracuda 500GB", "Acme"))
    _sc, ev = evidence(prod, "Seagate Barracuda 500GB Hard Drive Case", "DRIVE", "Seagate")
    assert ev["accessory"] == ["case"]
    _sc, ev = evidence(prod, "Seagate Barracuda 500GB", "CASE")
    assert ev["accessory"] == ["case"]


def test_the_masters_brand_in_the_title_outweighs_another_brand_field():
    idx = index(m("JM", "Just Mobile Slide Stand for iPad Silver", "Just Mobile"))
    _sc, ev = evidence(idx, "Just Mobile Aluminum Slide Stand for iPad Silver", "JM", "Macsense")
    assert ev["brand"] == "in title"
    # must NOT fire: a brand named after "for" is what the product fits, not its maker
    apple = index(m("PAD", "Apple iPad 2 16GB Wi-Fi", "Apple"))
    _sc, ev = evidence(apple, "Smart Cover for Apple iPad 2", "PAD", "Incipio")
    assert ev["brand"] == "differs"
    _sc, ev = evidence(idx, "Aluminum Slide Stand for iPad Silver", "JM", "Macsense")
    assert ev["brand"] == "differs"
