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
