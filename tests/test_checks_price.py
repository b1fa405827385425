"""Price check: typos, stale prices, currency, tax, rounding, sale windows."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, strategies as st

from auditor.model import Money, Outcome
from auditor.checks.price import round_price
from tests.checks_factory import NOW, days, eur, listing, master, problems, run

SALE = dict(sale_price=eur("39.99"), sale_start=NOW - days(2), sale_end=NOW + days(5))
PAST_SALE = dict(sale_price=eur("39.99"), sale_start=NOW - days(20), sale_end=NOW - days(10))


def summary(findings):
    return sorted((f.field, f.outcome.value, f.severity.value) for f in problems(findings))


@pytest.mark.parametrize("m, li, options, channel_options, expect", [
    # identical
    (master(), {}, {}, {}, []),
    # price typo
    (master(), {"price": eur("4.99")}, {}, {}, [("price", "failed", "critical")]),
    # within absolute tolerance
    (master(), {"price": eur("50.00")}, {"tolerance": "0.01"}, {}, []),
    # within relative tolerance
    (master(), {"price": eur("50.40")}, {"tolerance_pct": 1}, {}, []),
    (master(), {"price": eur("51.00")}, {"tolerance_pct": 1}, {}, [("price", "failed", "critical")]),
    # currency differs and the master has no price in it
    (master(), {"price": Money.of("49.99", "USD")}, {}, {}, [("price", "failed", "critical")]),
    # currency differs but the master holds a price in it
    (master(prices={"USD": Money.of("53.99", "USD")}), {"price": Money.of("53.99", "USD")},
     {}, {}, []),
    # the channel sells in EUR: a USD listing is wrong even if the master has USD
    (master(prices={"USD": Money.of("53.99", "USD")}), {"price": Money.of("53.99", "USD")},
     {}, {"currency": "EUR"}, [("price", "failed", "critical")]),
    # tax-inclusive channel: 49.99 x 1.2 = 59.988 -> 59.99
    (master(), {"price": eur("59.99")}, {"tax_inclusive": True, "vat_rate": "0.2"}, {}, []),
    (master(), {"price": eur("49.99")}, {"tax_inclusive": True, "vat_rate": "0.2"}, {},
     [("price", "failed", "critical")]),
    # tax settings given as channel options (a POS connector may declare them)
    (master(), {"price": eur("59.99")}, {}, {"tax_inclusive": True, "vat_rate": 0.2}, []),
    # rounding rules
    (master(price=eur("23.88")), {"price": eur("23.99")}, {"rounding": "nearest_99"}, {}, []),
    (master(price=eur("23.40")), {"price": eur("23.00")}, {"rounding": "whole"}, {}, []),
    # sale in force, shown with its own field
    (master(**SALE), {}, {}, {}, []),
    # sale in force, channel shows only the sale price
    (master(**SALE), {"price": eur("39.99"), "sale_price": None, "sale_start": None,
                      "sale_end": None}, {}, {}, []),
    # sale in force but missing on the channel
    (master(**SALE), {"sale_price": None, "sale_start": None, "sale_end": None}, {}, {},
     [("sale_price", "failed", "major")]),
    # ... on an Amazon listing report (its price is the standard price, sales are in no
    # report): not evaluated, never a missing sale (tests/fixtures/messy_retail)
    (master(**SALE), {"sale_price": None, "sale_start": None, "sale_end": None}, {},
     {"type": "amazon_listings"}, [("sale_price", "not_evaluated", "info")]),
    (master(**SALE), {"sale_price": None, "sale_start": None, "sale_end": None},
     {"regular_price_only": True}, {}, [("sale_price", "not_evaluated", "info")]),
    (master(**SALE), {"sale_price": None, "sale_start": None, "sale_end": None},
     {"regular_price_only": False}, {"type": "amazon_listings"},
     [("sale_price", "failed", "major")]),
    # ... but a report price that is neither the regular nor the sale price is wrong
    (master(**SALE), {"price": eur("29.99"), "sale_price": None, "sale_start": None,
                      "sale_end": None}, {}, {"type": "amazon_listings"},
     [("price", "failed", "critical")]),
    # sale in force, wrong sale amount
    (master(**SALE), {"sale_price": eur("29.99")}, {}, {}, [("sale_price", "failed", "major")]),
    # sale over, channel still shows it (no dates)
    (master(**PAST_SALE), {"sale_price": eur("39.99")}, {}, {}, [("sale_price", "failed", "major")]),
    # sale over, channel shows the sale price as its only price
    (master(**PAST_SALE), {"price": eur("39.99")}, {}, {}, [("sale_price", "failed", "major")]),
    (master(**PAST_SALE), {"price": eur("39.99"), "sale_price": None, "sale_start": None,
                           "sale_end": None}, {}, {"type": "amazon_listings"},
     [("sale_price", "failed", "major")]),
    # sale over, channel keeps the sale with its (closed) window: not shown, passes
    (master(**PAST_SALE), {"sale_price": eur("39.99"), "sale_start": NOW - days(20),
                           "sale_end": NOW - days(10)}, {}, {}, []),
    # no sale at all in master, channel shows one
    (master(), {"sale_price": eur("19.99")}, {}, {}, [("sale_price", "failed", "major")]),
    # sale on a tax-inclusive channel: 39.99 x 1.2 = 47.988 -> 47.99
    (master(**SALE), {"price": eur("59.99"), "sale_price": eur("47.99")},
     {"tax_inclusive": True, "vat_rate": "0.2"}, {}, []),
])
def test_price_table(m, li, options, channel_options, expect):
    out = run("price", m, listing(m, **li), options, channel_options=channel_options)
    assert summary(out) == expect
    assert all(f.check == "price" for f in out)


def test_channel_price_override():
    m = master(overrides={"google": {"price": "44.99 EUR"}})
    assert problems(run("price", m, listing(m, price=eur("44.99")))) == []
    assert summary(run("price", m, listing(m))) == [("price", "failed", "critical")]


def test_old_price_is_stale():
    old, now = master(price=eur("44.99")), master()
    until = NOW - days(3)
    out = problems(run("price", now, listing(now, price=eur("44.99")),
                       history={now.sku: [(until, old)]}))
    assert len(out) == 1 and out[0].field == "price"
    assert out[0].details["stale"] is True
    assert f"shows the price valid until {until.date().isoformat()}" in out[0].message


def test_typo_is_not_stale():
    old, now = master(price=eur("44.99")), master()
    out = problems(run("price", now, listing(now, price=eur("4.99")),
                       history={now.sku: [(NOW - days(3), old)]}))
    assert "stale" not in out[0].details


def test_missing_price_is_not_evaluated():
    out = run("price", master(), listing(price=None))
    assert [f.outcome for f in out] == [Outcome.NOT_EVALUATED]


def test_one_sided_calls_say_nothing():
    assert run("price", master(), None) == [] and run("price", None, listing()) == []


@pytest.mark.parametrize("amount, cur, rule, want", [
    ("59.988", "EUR", "half_up", "59.99"), ("0.125", "EUR", "half_up", "0.13"),
    ("1000.5", "JPY", "half_up", "1001"), ("1.2345", "KWD", "half_up", "1.235"),
    ("24.00", "EUR", "nearest_99", "23.99"), ("24.60", "EUR", "nearest_99", "24.99"),
    ("23.5", "EUR", "whole", "24"), ("1.234", "EUR", "none", "1.234"),
])
def test_round_price(amount, cur, rule, want):
    assert round_price(Decimal(amount), cur, rule) == Decimal(want)


@given(st.decimals(min_value=Decimal("0.01"), max_value=Decimal("99999"), places=2),
       st.sampled_from([None, "past", "active", "future"]))
def test_identical_listing_never_fails(amount, sale):
    kw = {}
    if sale:
        start = {"past": NOW - days(9), "active": NOW - days(1), "future": NOW + days(3)}[sale]
        kw = dict(sale_price=eur(str(amount / 2)), sale_start=start, sale_end=start + days(5))
    m = master(price=Money(amount, "EUR"), **kw)
    assert problems(run("price", m, listing(m))) == []
