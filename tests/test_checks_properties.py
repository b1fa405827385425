"""Properties every check keeps: a listing identical to its master never fails."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given, settings, strategies as st

from auditor import plugins
from auditor.model import Money, Outcome
from tests.checks_factory import NOW, context, days, gtin13, listing, master

CHECKS = ("title", "price", "availability", "attributes", "presence", "identifiers")
_text = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), min_size=1,
                max_size=60)


@st.composite
def masters(draw):
    price = draw(st.decimals(min_value=Decimal("0.01"), max_value=Decimal("9999"), places=2))
    kw = dict(sku=draw(st.from_regex(r"[A-Z]{2}[0-9]{3,7}", fullmatch=True)),
              title=draw(_text), brand=draw(st.none() | _text),
              price=Money(price, draw(st.sampled_from(["EUR", "USD", "JPY", "KWD"]))),
              quantity=draw(st.none() | st.integers(0, 500)),
              gtin=draw(st.none() | st.from_regex(r"[0-9]{12}", fullmatch=True).map(
                  lambda b: gtin13(b).zfill(14))),
              attributes=draw(st.dictionaries(
                  st.sampled_from(["color", "size", "material", "weight", "width"]),
                  _text, max_size=4)))
    if draw(st.booleans()):
        start = NOW + days(draw(st.integers(-30, 30)))
        kw.update(sale_price=Money(price / 2, kw["price"].currency), sale_start=start,
                  sale_end=start + days(draw(st.integers(1, 20))))
    return master(**kw)


@settings(max_examples=150, deadline=None)
@given(masters())
def test_identical_listing_yields_no_failure(m):
    li = listing(m)
    for name in CHECKS:
        for f in plugins.checks()[name].fn(m, li, context(name)):
            assert f.outcome in (Outcome.PASSED, Outcome.NOT_EVALUATED), (name, f)


@settings(max_examples=300, deadline=None)
@given(masters(), st.data())
def test_price_fast_path_agrees_with_the_general_path(m, data):
    """The price check's exact-match shortcut gives what the full comparison gives."""
    import auditor.checks.price as price

    amounts = st.sampled_from([m.price.amount, m.price.amount / 2, m.price.amount * Decimal("1.2"),
                               Decimal("1.00")])
    cur = m.price.currency
    shows_sale = data.draw(st.booleans())
    start = data.draw(st.none() | st.integers(-5, 5).map(lambda d: NOW + days(d)))
    li = listing(m, price=Money(data.draw(amounts), cur),
                 sale_price=Money(data.draw(amounts), cur) if shows_sale else None,
                 sale_start=start if shows_sale else None,
                 sale_end=start + days(3) if shows_sale and start else None)
    opts = data.draw(st.sampled_from([{}, {"tax_inclusive": True, "vat_rate": "0.2"},
                                      {"rounding": "whole"}]))

    def outcomes(findings):
        return sorted((f.field, f.outcome.value, f.message) for f in findings)

    fast = outcomes(price.price_check(m, li, context("price", opts)))
    assert fast == outcomes(price.compare_price(m, li, context("price", opts)))


_attr_values = st.sampled_from(["Grey", "Gray", "Red", "", "M", "Medium", "30 cm", "11.81 in",
                                "1.2 kg", "Cotton, Elastane"])


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(["color", "colour", "size", "material", "length"]),
                       _attr_values, max_size=4),
       st.dictionaries(st.sampled_from(["color", "colour", "size", "material", "product_length",
                                        "condition"]), _attr_values, max_size=5))
def test_attributes_fast_path_agrees_with_the_general_path(mattrs, shown):
    """The attributes check's all-equal shortcut gives what the step-by-step loop gives."""
    import auditor.checks.attributes as attributes

    m = master(attributes=mattrs)
    li = listing(m, attributes=shown)

    def outcomes(findings):
        return sorted((f.field, f.outcome.value, f.message) for f in findings)

    fast = outcomes(attributes.attributes_check(m, li, context("attributes")))
    original = attributes._pair_plan
    try:
        attributes._pair_plan = lambda *a: (lambda _d: 1, lambda _d: 2, (), original(*a)[3])
        general = outcomes(attributes.attributes_check(m, li, context("attributes")))
    finally:
        attributes._pair_plan = original
    assert fast == general
