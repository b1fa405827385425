"""More evidence of the title matcher (issue 15, linking quality, eighth pass): each rule
with a case where it must fire and one where it must not."""

from __future__ import annotations

from auditor.linkbatch import FeatureReader
from auditor.matching import (MatchIndex, brand_core, brand_span, core_title, listing_features,
                              shingles, spec_words, specs_differ, text_agrees, text_key)
from auditor.model import Money
from tests.checks_factory import master


def m(sku, title, brand=None, price=None, description=None):
    return master(sku=sku, title=title, brand=brand, gtin=None, mpn=None, url=None,
                  description=description, price=Money.of(str(price), "USD") if price else None)


def index(*records):
    return MatchIndex({r.sku: r for r in records})


def evidence(idx, title, sku, brand=None, price=None, description=None):
    f = listing_features(title, description, brand, price)
    return idx.score(f, idx.position[sku], explain=True)


MAKER_TEXT = ("from brain activity to muscular movement, circulatory functions and the "
              "senses, topics presents the human body takes you on a guided tour of the "
              "systems that keep you alive, with 3d models and narrated lessons")


def test_descriptions_sharing_a_passage_agree():
    a = shingles(MAKER_TEXT)
    assert len(a) == len(MAKER_TEXT.split()) - 2 and a >= shingles("The Human Body, takes")
    # the listing repeats most of the master's text, cut and with other punctuation
    b = shingles("From brain activity to muscular movement circulatory functions and the "
                 "senses - Topics Presents The Human Body takes you on a guided tour of the "
                 "systems that keep you alive!")
    assert text_agrees(a, b) and text_agrees(b, a)
    # a template shares a few triples only; short texts never agree
    t1 = shingles("dimensions: 10.0 x 5.0 x 1.1 inches; shipping weight: 0.2")
    t2 = shingles("dimensions: 7.6 x 5.1 x 0.4 inches; shipping weight: 0.9")
    assert t1 & t2 and not text_agrees(t1, t2)
    assert not text_agrees(shingles("the human body"), shingles("the human body"))
    # another text on the same subject
    assert not text_agrees(a, shingles(
        "explore the human body: organs, bones and muscles in 3d, for students of "
        "biology, with quizzes, printable worksheets and a teacher's guide to each lesson"))


def test_description_agreement_is_evidence_and_ranks_the_copied_one_first():
    idx = index(m("BODY", "The Human Body", "Topics Entertainment", 19.99, MAKER_TEXT),
                m("BODY2", "The Human Body 2", "Topics Entertainment", 19.99,
                  "a new edition of the anatomy series for the classroom, with a new atlas "
                  "of the skeleton and twenty new animations of the organs at work"))
    sc, ev = evidence(idx, "topics presents: human body", "BODY", price=15.9,
                      description=MAKER_TEXT.upper())
    assert ev["descriptions_agree"] is True
    sc0, ev0 = evidence(idx, "topics presents: human body", "BODY", price=15.9)
    assert "descriptions_agree" not in ev0 and sc > sc0
    _sc, ev2 = evidence(idx, "topics presents: human body", "BODY2", price=15.9,
                        description=MAKER_TEXT)
    assert "descriptions_agree" not in ev2
    f = listing_features("topics presents: human body", MAKER_TEXT, None, 15.9)
    assert idx.skus[idx.rank(f)[0][1]] == "BODY"


def test_feature_reader_reads_the_description_passage():
    f = FeatureReader()("The Human Body", MAKER_TEXT, "Topics", 10.0, None)
    g = listing_features("The Human Body", MAKER_TEXT, "Topics", 10.0)
    assert f.shingles == g.shingles and f.text_key == g.text_key == text_key(MAKER_TEXT)
    assert len(f.text_key) == 16 and text_key(MAKER_TEXT + "!") != f.text_key
    assert FeatureReader()("The Human Body", None, None, None, None).shingles == frozenset()


def test_brand_named_without_its_company_words_in_front():
    assert brand_core("aspyrmedia") == "aspyr"
    assert brand_core("smithmicrosoftware") == "smithmicro"
    assert brand_core("acme") == "acme" and brand_core("mediasoftware") == "mediasoftware"
    assert brand_span("aspyr call of duty deluxe".split(), "aspyrmedia") == {"aspyr"}
    # the rest of a name elsewhere in the title is a word of the product, not the brand
    assert brand_span("aurora fibreglass umbrella".split(), "umbrellaco") == frozenset()
    assert brand_span("umbrella co aurora umbrella".split(), "umbrellaco") == {"umbrella", "co"}
    idx = index(m("COD", "Call of Duty Deluxe (Mac) (DVD)", "Aspyr Media", 39.99),
                m("COD2", "Call of Duty 2 (Mac)", "Aspyr Media", 39.99))
    sc, ev = evidence(idx, "aspyr call of duty deluxe", "COD")
    assert ev["brand"] == "in title" and sc >= 0.8
    # not in front: no brand evidence, and the title keeps the word
    _sc, ev = evidence(idx, "call of duty deluxe by aspyr", "COD")
    assert "brand" not in ev


def test_numbers_shown_in_another_form_do_not_differ():
    idx = index(m("PNY", "PNY nVidia GeForce GT520 1 GB DDR3 PCI-Express Video Card", "PNY"),
                m("CAM", "Casio Exilim EX-ZS5 14 MP Digital Camera Silver", "Casio"),
                m("BOX", "Smead Folders Letter Manila 25 Box", "Smead"))
    # 1024MB is the master's 1 GB; 520 is inside its GT520
    _sc, ev = evidence(idx, "PNY GeForce GT 520 1024MB PCIe Graphics Card", "PNY")
    assert "numbers_differ" not in ev
    # 14.1MP is sold as 14 MP (the quantities agree); 2.7 is the listing's alone
    _sc, ev = evidence(idx, "Casio Exilim EX-ZS5 14.1MP Digital Camera Silver 2.7 LCD", "CAM")
    assert "numbers_differ" not in ev
    # but 50 and 25 per box are two products
    _sc, ev = evidence(idx, "Smead Folders Letter Manila 50 Box", "BOX")
    assert ev["numbers_differ"] == [["50"], ["25"]]
    # and a number the other's code does not hold still differs
    idx = index(m("GT", "PNY GeForce GT520 2 GB Video Card 1 Slot", "PNY"))
    _sc, ev = evidence(idx, "PNY GeForce GT 430 2048MB Graphics Card", "GT")
    assert ev["numbers_differ"] == [["430", "2048"], ["1", "2"]]
    _sc, ev = evidence(idx, "PNY GeForce GT 520 2048MB Graphics Card", "GT")
    assert "numbers_differ" not in ev


def test_specifications_of_one_family_differ():
    assert spec_words("v7 cat6 snagless patch cable") == {"cat": {"6"}}
    assert spec_words("cat5e patch cable male to female") == {"cat": {"5"}, "gender": {"fm"}}
    assert spec_words("plain title") == {}
    # a model code is not a specification; a letter after the number is not compared
    assert "dmc" not in spec_words("panasonic dmc ts3s") and \
        specs_differ(spec_words("dmc ts3s"), spec_words("dmc ts3")) is None
    idx = index(m("C5", "V7 CAT5e Snagless Patch Cable Red 5 Feet", "V7"),
                m("C6", "V7 CAT6 Snagless Patch Cable Red 5 Feet", "V7"),
                m("MF", "V7 DVI Extension Cable Male to Female 10 Feet", "V7"),
                m("MM", "V7 DVI-D Cable Male to Male 10 Feet Black", "V7"))
    _sc, ev = evidence(idx, "V7 CAT6 Snagless Cable Red 5 ft", "C5")
    assert ev["specs_differ"] == [["6"], ["5"]]
    _sc, ev = evidence(idx, "V7 CAT6 Snagless Cable Red 5 ft", "C6")
    assert "specs_differ" not in ev
    _sc, ev = evidence(idx, "V7 10 DVI Male to Male Cable", "MF")
    assert ev["specs_differ"] == [["m"], ["fm"]]
    f = listing_features("V7 10 DVI Male to Male Cable", None, "V7", None)
    assert idx.skus[idx.rank(f)[0][1]] == "MM"
    # one side naming no gender (or no family) is not evidence
    _sc, ev = evidence(idx, "V7 DVI Extension Cable 10 Feet", "MF")
    assert "specs_differ" not in ev


def test_a_code_many_masters_show_finds_nothing_in_particular():
    from auditor import matching

    # 30 masters say "USB 2.0" (read as the code usb20 from two words); the listing's
    # product shares only its rare words with the right one
    fillers = [m(f"F{k:02d}", f"Generic USB 2.0 Hub Model {k} Port Black", "Acme")
               for k in range(matching.CODE_DF + 10)]
    right = m("MODEM", "USRobotics USR5637 56K USB FaxModem", "USRobotics")
    idx = index(*fillers, right)
    f = listing_features("USRobotics 56K USB 2.0 External Modem", None, "USRobotics", None)
    idx.prepare(f)
    assert "usb20" in f.joined and len(idx.code_post.get("usb20", ())) > matching.CODE_DF
    found = [i for _c, i in idx._found(f)]
    assert idx.position["MODEM"] == found[0]
    # a code a few masters share still finds them first
    few = index(*fillers[:3], right)
    f = listing_features("Generic USB 2.0 Adapter", None, None, None)
    few.prepare(f)
    assert {few.skus[i] for c, i in few._found(f) if c >= matching.CODE_FOUND} == \
        {"F00", "F01", "F02"}


def test_titles_compared_without_their_bracketed_parts():
    assert core_title("Typing Instructor Deluxe (Jewel Case)") == "typing instructor deluxe"
    assert core_title("the universe (win/mac) [older version]") == "the universe"
    assert core_title("no brackets here") == "" and core_title(None) == ""
    idx = index(m("TID", "Typing Instructor Deluxe (Jewel Case)", "Individual Software"),
                m("UNI", "The Universe (Win/Mac) (Jewel Case)", "Fogware Publishing"))
    sc, ev = evidence(idx, "individual software inc typing instructor deluxe j/c", "TID")
    sc0 = MatchIndex({"TID": m("TID", "Typing Instructor Deluxe Jewel Case",
                               "Individual Software")}).score(listing_features(
        "individual software inc typing instructor deluxe j/c", None, None, None), 0)[0]
    assert ev["title"] == 0.85 and sc > sc0
    _sc, ev = evidence(idx, "elementary school space - the universe (pc/mac) fogware", "UNI")
    assert ev["title"] == 0.85
    # what is left must still be in the other title: another product is not lifted
    _sc, ev = evidence(idx, "elementary school space - the solar system (pc/mac)", "UNI")
    assert ev["title"] < 0.7
    f = FeatureReader()("the universe (pc/mac)", None, None, None, None)
    assert f.core == "the universe"


def test_brands_agree_without_their_company_words():
    idx = index(m("VEG", "Vegas Movie Studio+DVD 8 Platinum", "Sony Media", 129.95),
                m("OTH", "Vegas Movie Studio+DVD 8 Platinum", "Sonic Foundry", 129.95))
    _sc, ev = evidence(idx, "vegas movie studio+dvd 8 platinum", "VEG",
                       brand="Sony Creative Software")
    assert ev["brand"] == "same"
    _sc, ev = evidence(idx, "vegas movie studio+dvd 8 platinum", "OTH",
                       brand="Sony Creative Software")
    assert ev["brand"] == "differs"
    # the batch path (a memo per pair of brands) agrees
    f = listing_features("vegas movie studio+dvd 8 platinum", None, "Sony Creative Software",
                         None)
    idx.prepare(f)
    assert idx.brand_scores(f, [idx.position["VEG"], idx.position["OTH"]]) == [0.05, -0.25]
