from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

from auditor.model import Finding, Money, ModelError, Outcome, Severity, fingerprint
from tests.conftest import NOW, make_master


@pytest.mark.parametrize("amount,currency,text,minor", [
    ("12.5", "EUR", "12.50 EUR", 1250),
    ("1000", "JPY", "1000 JPY", 1000),
    ("1.2345", "KWD", "1.235 KWD", 1235),
    ("0.005", "USD", "0.01 USD", 1),
])
def test_money_formats_by_currency_exponent(amount, currency, text, minor):
    m = Money.of(amount, currency)
    assert str(m) == text
    assert m.minor_units == minor


@pytest.mark.parametrize("bad", [
    lambda: Money(1.5, "EUR"),                  # float refused
    lambda: Money.of(1.5, "EUR"),
    lambda: Money(Decimal("1"), "XXX"),         # unknown currency
    lambda: Money(Decimal("NaN"), "EUR"),
    lambda: Money(Decimal("Infinity"), "EUR"),
])
def test_money_rejects_floats_unknown_currencies_and_non_finite(bad):
    with pytest.raises(ModelError):
        bad()


def test_money_equality_is_exact_and_currency_aware():
    assert Money.of("10.00", "EUR") == Money.of("10", "EUR")
    assert Money.of("10", "EUR") != Money.of("10", "USD")
    assert Money.of("0.1", "EUR").amount + Money.of("0.2", "EUR").amount == Decimal("0.3")


def test_sale_window_is_half_open():
    m = make_master(sale_price=Money.of("9", "EUR"), sale_start=NOW, sale_end=NOW + timedelta(days=1))
    assert not m.sale_active(NOW - timedelta(seconds=1))
    assert m.sale_active(NOW)
    assert not m.sale_active(NOW + timedelta(days=1))
    assert make_master(sale_price=Money.of("9", "EUR")).sale_active(NOW)  # open-ended
    assert not make_master().sale_active(NOW)


def test_price_in_other_currency_and_overrides():
    m = make_master(prices={"USD": Money.of("64.00", "USD")},
                    overrides={"amazon": {"title": "Acme Shoe"}})
    assert m.price_in("EUR").amount == Decimal("59.90")
    assert m.price_in("USD").amount == Decimal("64.00")
    assert m.price_in("GBP") is None
    assert m.override("amazon", "title") == "Acme Shoe"
    assert m.override("google", "title") is None


def test_fingerprint_is_stable_and_ignores_values():
    a = Finding("price", "google", "S1", "price", Outcome.FAILED, Severity.CRITICAL,
                expected="1 EUR", actual="2 EUR", listing_key="S1")
    b = Finding("price", "google", "S1", "price", Outcome.FAILED, Severity.CRITICAL,
                expected="1 EUR", actual="3 EUR", listing_key="S1")
    assert a.fingerprint == b.fingerprint == fingerprint("price", "google", "S1", "price")
    c = Finding("price", "meta", "S1", "price", Outcome.FAILED, listing_key="S1")
    assert c.fingerprint != a.fingerprint


def _records():
    from types import MappingProxyType

    from auditor.model import Availability, Listing, MasterStatus

    eur = Money.of("19.90", "EUR")
    yield make_master("A")
    yield make_master("B", prices={"USD": Money.of("21.00", "USD")},
                      sale_prices={"USD": Money.of("18.00", "USD")}, sale_price=eur,
                      sale_start=NOW, sale_end=NOW + timedelta(days=3, microseconds=5),
                      overrides={"google": {"title": "G title"}}, quantity=0,
                      status=MasterStatus.DISCONTINUED, images=("a.jpg", "b.jpg"),
                      attributes=MappingProxyType({"color": "Red", "size": "M"}), title="")
    yield Listing("google", "k1", NOW, sku="A", price=eur, quantity=0,
                  availability=Availability.IN_STOCK, images=("x",), evidence="f.xml:3",
                  attributes={"z": "1", "a": "2"}, sources={"title": "json-ld"},
                  sale_end=datetime(2026, 12, 1, 9, 30, tzinfo=timezone(timedelta(hours=1))))
    yield Listing("pos", "k2", NOW, title="", description=None, location="Berlin")


def _reference_record_dict(obj):
    """The encoder stored bodies were written with before ``codec.body`` (the reference
    the fast one must match): fields in order, empty values left out, money as text."""
    import dataclasses

    def plain(v):
        if isinstance(v, Money):
            return f"{v.amount} {v.currency}"
        if isinstance(v, datetime):
            return v.isoformat()
        if isinstance(v, tuple):
            return list(v)
        if hasattr(v, "value"):  # enums
            return v.value
        if hasattr(v, "items"):
            return {k: plain(x) for k, x in v.items()}
        return v

    out = {}
    for f in dataclasses.fields(obj):
        v = getattr(obj, f.name)
        if v is None or (isinstance(v, tuple) or hasattr(v, "items")) and not v:
            continue
        out[f.name] = plain(v)
    return out


def test_stored_body_is_the_json_of_the_record():
    """The fast serializer writes exactly the dict encoding (stored hashes stay valid)
    and reads back to the same record."""
    import orjson

    from auditor import codec
    from auditor.model import Listing

    for rec in _records():
        d = _reference_record_dict(rec)
        if isinstance(rec, Listing):
            d.pop("fetched_at")
            d.pop("evidence", None)
            back = codec.listing_from_row(codec.body(rec), NOW.isoformat(), rec.evidence)
        else:
            back = codec.master_from_dict(orjson.loads(codec.body(rec)))
        assert codec.body(rec).decode() == codec.dumps(d)
        assert _reference_record_dict(back) == _reference_record_dict(rec)
