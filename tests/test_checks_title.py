"""Title check: drift kinds fail, benign channel adaptations pass."""

from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from auditor.model import Outcome, Severity
from auditor.text import normalize_title, token_diff
from tests.checks_factory import NOW, days, listing, master, problems, run

LONG = ("Acme Alpine Hoodie, Grey, M, designed for everyday comfort and built to last through "
        "years of regular use with reinforced seams, a relaxed fit and a soft brushed finish "
        "on the inside")


@pytest.mark.parametrize("shown", [
    "Acme Alpine Hoodie, Grey, M",            # identical
    "ACME ALPINE HOODIE - GREY - M",          # case and punctuation
    "Acme Alpine Hoodie,  Grey,   M ",        # whitespace
    "Acme&trade; Alpine Hoodie, Grey, M",     # HTML entity of a trademark sign
    "Acme™ Alpine Hoodie, Grey, M",           # trademark sign
    "Acme Alpine Hoodie &amp; Grey, M",       # entity for punctuation
    "Ａｃｍｅ Alpine Hoodie, Grey, M",          # full-width letters (NFKC)
])
def test_benign_normalization_passes(shown):
    assert problems(run("title", master(), listing(title=shown))) == []


def test_brand_prefix_passes():
    m = master(title="Alpine Hoodie, Grey, M")
    assert problems(run("title", m, listing(m, title="Acme Alpine Hoodie, Grey, M"))) == []


def test_brand_prefix_can_be_switched_off():
    m = master(title="Alpine Hoodie, Grey, M")
    out = problems(run("title", m, listing(m, title="Acme Alpine Hoodie, Grey, M"),
                       {"brand_prefix": False, "warn_below": 99}))
    assert [f.field for f in out] == ["title"]


@pytest.mark.parametrize("max_length, cut, ok", [
    (150, 150, True),     # cut at a word boundary within 150
    (150, 120, True),
    (100, 120, False),    # the shown title is longer than the channel allows: not a truncation
    (0, 120, False),      # no limit known: truncation is not expected
])
def test_truncation_at_word_boundary(max_length, cut, ok):
    m = master(title=LONG)
    shown = LONG[:cut].rsplit(" ", 1)[0].rstrip(",")
    assert len(shown) <= cut
    out = problems(run("title", m, listing(m, title=shown), {"max_length": max_length},
                       channel_options={"type": "test"}))
    assert (out == []) is ok


def test_truncation_default_by_connector_type():
    m = master(title=LONG)
    shown = LONG[:150].rsplit(" ", 1)[0]
    assert problems(run("title", m, listing(m, title=shown),
                        channel_options={"type": "google_merchant"})) == []


def test_truncation_mid_word_fails():
    m = master(title=LONG)
    shown = LONG[:60]  # ends inside a word
    assert not shown.endswith(" ") and LONG[60] != " "
    out = problems(run("title", m, listing(m, title=shown), {"max_length": 150}))
    assert [f.outcome for f in out] == [Outcome.FAILED]


def test_channel_override_wins():
    m = master(overrides={"google": {"title": "Acme Hoodie Alpine Edition Grey M"}})
    assert problems(run("title", m, listing(m, title="Acme Hoodie Alpine Edition Grey M"))) == []
    out = problems(run("title", m, listing(m, title="Acme Alpine Hoodie, Grey, M")))
    assert out and out[0].expected == "Acme Hoodie Alpine Edition Grey M"


@pytest.mark.parametrize("shown, outcome, severity", [
    ("Acme Alpine Hoodie, Navy, M", Outcome.WARN, Severity.MINOR),
    ("Northwind Coastal Rain Jacket, Red, XL", Outcome.FAILED, Severity.MAJOR),
    ("", Outcome.FAILED, Severity.MAJOR),
])
def test_wrong_title(shown, outcome, severity):
    out = problems(run("title", master(), listing(title=shown or None)))
    assert [(f.check, f.field, f.outcome, f.severity) for f in out] == \
        [("title", "title", outcome, severity)]


def test_numbers_must_match():
    m = master(title="Acme Water Bottle Stainless Steel 750 ml Black")
    out = problems(run("title", m, listing(m, title="Acme Water Bottle Stainless Steel 500 ml Black")))
    assert out and out[0].outcome is Outcome.WARN
    assert out[0].details["missing_tokens"] == ["750"]
    assert out[0].details["extra_tokens"] == ["500"]
    assert problems(run("title", m, listing(m, title="Acme Water Bottle Stainless Steel 500 ml Black"),
                        {"numbers_must_match": False, "warn_below": 90})) == []


def test_token_diff_in_details():
    out = problems(run("title", master(), listing(title="Acme Alpine Hoodie, Navy, M")))
    assert out[0].details["missing_tokens"] == ["grey"]
    assert out[0].details["extra_tokens"] == ["navy"]
    assert "-grey" in out[0].message and "+navy" in out[0].message


def test_old_title_is_stale():
    old = master(title="Heritage Kestrel Kite, Grey, M")
    now = master()
    until = NOW - days(7)
    out = problems(run("title", now, listing(now, title="Heritage Kestrel Kite, Grey, M"),
                       history={now.sku: [(until, old)]}))
    assert len(out) == 1
    f = out[0]
    assert (f.check, f.field, f.outcome) == ("title", "title", Outcome.FAILED)
    assert f.details["stale"] is True and f.details["valid_until"] == until.isoformat()
    assert f"valid until {until.date().isoformat()}" in f.message


def test_one_sided_calls_say_nothing():
    assert run("title", master(), None) == []
    assert run("title", None, listing()) == []


@pytest.mark.parametrize("raw, norm", [
    ("Acme™ Tee", "acme tee"), ("A&amp;B", "a b"), ("Crème  Brûlée", "crème brûlée"),
    ("T_Shirt (R)", "t shirt"), ("ﬁne", "fine"), ("Straße", "strasse"),
])
def test_normalize_examples(raw, norm):
    assert normalize_title(raw) == norm


@given(st.text(max_size=80))
def test_normalize_is_idempotent(s):
    n = normalize_title(s)
    assert normalize_title(n) == n


@given(st.text(alphabet=st.characters(max_codepoint=127), max_size=80))
def test_ascii_fast_path_agrees_with_the_unicode_path(s):
    import re
    import unicodedata

    from auditor import text

    # What the general (non-ASCII) branch does, applied to ASCII text.
    slow = text._MARKS.sub(" ", s) if "&" not in s else None
    if slow is not None:
        slow = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", slow).casefold())
        assert normalize_title.__wrapped__(s) == " ".join(text._PUNCT.sub(" ", slow).split())
    assert re.fullmatch(r"[a-z0-9 ]*", normalize_title(s))


@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=80))
def test_identical_title_never_fails(s):
    m = master(title=s)
    assert problems(run("title", m, listing(m, title=s))) == []


def test_token_diff_multiset():
    assert token_diff("a a b", "a c") == (["a", "b"], ["c"])


@pytest.mark.parametrize("title, variant, ok", [
    ("Acme Alpine Hoodie", "Grey / M", True),
    ("Acme Alpine Hoodie, Grey, M", "Default Title", True),
    ("Acme Alpine Hoodie", "Navy / M", False),
])
def test_shopify_variant_title_joins_the_product_title(title, variant, ok):
    out = problems(run("title", master(), listing(title=title,
                                                  attributes={"variant_title": variant})))
    assert (out == []) is ok
