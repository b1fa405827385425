"""Parsing of channel values: money, numbers, GTINs, availability, dates."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings, strategies as st

from auditor.model import Availability, Money
from auditor.values import (gtin_check_digit, gtin_valid, money_from_minor, normalize_gtin,
                            parse_availability, parse_datetime, parse_decimal, parse_int,
                            parse_interval, parse_money)


@pytest.mark.parametrize("text,default,sep,expected", [
    ("15.00 USD", None, None, ("15.00", "USD")),
    ("USD 15.00", None, None, ("15.00", "USD")),
    ("15 usd", None, None, ("15", "USD")),
    ("€1.299,00", None, None, ("1299.00", "EUR")),
    ("1.299,00 €", None, None, ("1299.00", "EUR")),
    ("12,50", "EUR", None, ("12.50", "EUR")),
    ("$1,299.99", None, None, ("1299.99", "USD")),
    ("£ 7.5", None, None, ("7.5", "GBP")),
    ("CHF 1'299.50", None, None, ("1299.50", "CHF")),
    ("1 299,50 zł", None, ",", ("1299.50", "PLN")),
    ("1.299", "EUR", ",", ("1299", "EUR")),
    ("1.299", "EUR", ".", ("1.299", "EUR")),
    ("1,299", "USD", ".", ("1299", "USD")),
    ("0.5 KWD", None, None, ("0.5", "KWD")),
    ("1000 JPY", None, None, ("1000", "JPY")),
    ("-3.00 EUR", None, None, ("-3.00", "EUR")),
])
def test_parse_money(text, default, sep, expected):
    assert parse_money(text, default, sep) == Money(Decimal(expected[0]), expected[1])


@pytest.mark.parametrize("text,default,message", [
    ("", "EUR", "empty"),
    ("12.50", None, "no currency"),
    ("twelve EUR", None, "amount"),
    ("12.50 XYZ", None, "no currency"),
])
def test_parse_money_errors(text, default, message):
    with pytest.raises(ValueError, match=message):
        parse_money(text, default)


@pytest.mark.parametrize("text,sep,expected", [
    ("12.50", None, "12.50"), ("12,5", None, "12.5"), ("1.299,00", None, "1299.00"),
    ("1,299.00", None, "1299.00"), ("1.234.567", None, "1234567"), (" 7 ", None, "7"),
    ("1,00,000.50", None, "100000.50"), ("1\u00a0234,5", ",", "1234.5"),
    ("1\u202f234,5", None, "1234.5"), (".5", None, "0.5"),
])
def test_parse_decimal(text, sep, expected):
    assert parse_decimal(text, sep) == Decimal(expected)


@pytest.mark.parametrize("text,sep", [("abc", None), ("1,2,3.4.5", None), ("1,2", "."),
                                      ("", None), ("1.2.3", ".")])
def test_parse_decimal_errors(text, sep):
    with pytest.raises(ValueError):
        parse_decimal(text, sep)


@pytest.mark.parametrize("text,expected", [("7", 7), ("1.000", 1000), ("1,000", 1000),
                                           ("12.0", 12), ("12,0", 12), (" -3 ", -3)])
def test_parse_int(text, expected):
    assert parse_int(text) == expected


def test_parse_int_refuses_fractions():
    with pytest.raises(ValueError, match="whole number"):
        parse_int("12.5")


def _format(d: Decimal, decimal: str, grouped: bool) -> str:
    sign = "-" if d < 0 else ""
    whole, _, frac = f"{abs(d):f}".partition(".")
    if grouped:
        groups = []
        while len(whole) > 3:
            groups.insert(0, whole[-3:])
            whole = whole[:-3]
        whole = (("," if decimal == "." else ".")).join([whole] + groups)
    return sign + whole + (decimal + frac if frac else "")


amounts = st.decimals(min_value=Decimal("-1e9"), max_value=Decimal("1e9"), places=2,
                      allow_nan=False, allow_infinity=False)


@settings(max_examples=300, deadline=None)
@given(amounts, st.sampled_from([".", ","]), st.booleans())
def test_property_decimal_round_trips_in_either_locale(d, sep, grouped):
    assert parse_decimal(_format(d, sep, grouped), sep) == d


@settings(max_examples=300, deadline=None)
@given(amounts, st.sampled_from([".", ","]), st.booleans())
def test_property_two_decimals_round_trip_without_a_hint(d, sep, grouped):
    text = _format(d.quantize(Decimal("0.01")), sep, grouped)
    assert parse_decimal(text) == d


@settings(max_examples=200, deadline=None)
@given(amounts, st.sampled_from(["EUR", "USD", "GBP", "CHF"]), st.sampled_from([".", ","]),
       st.sampled_from(["{n} {c}", "{c} {n}", "{n}"]))
def test_property_money_round_trips(d, cur, sep, layout):
    text = layout.format(n=_format(d, sep, True), c=cur)
    assert parse_money(text, cur, sep) == Money(d, cur)


SYMBOLS = {"EUR": "€", "USD": "$", "GBP": "£"}


@settings(max_examples=200, deadline=None)
@given(amounts.filter(lambda d: d >= 0), st.sampled_from(sorted(SYMBOLS)),
       st.sampled_from([".", ","]), st.sampled_from(["{s}{n}", "{n} {s}", "{s} {n}", "{n}{s}"]))
def test_property_money_with_symbols_round_trips(d, cur, sep, layout):
    text = layout.format(n=_format(d, sep, True), s=SYMBOLS[cur])
    assert parse_money(text, None, sep) == Money(d, cur)


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=-10**9, max_value=10**9), st.sampled_from([".", ","]))
def test_property_int_round_trips(n, sep):
    assert parse_int(_format(Decimal(n), sep, True), sep) == n


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=0, max_value=10**11 - 1))
def test_property_gtin_survives_lost_leading_zeros(body):
    digits = f"{body:011d}"
    upc = digits + str(gtin_check_digit(digits))
    assert normalize_gtin(upc.lstrip("0") or "0", "upc") == upc.zfill(14)
    assert gtin_valid(normalize_gtin(upc))


@pytest.mark.parametrize("text,kind,expected", [
    ("036282818705", None, "00036282818705"),
    ("0 36282 81870 5", None, "00036282818705"),
    ("4006381333931", None, "04006381333931"),
    ("4006381333931.0", None, "04006381333931"),
    ("'036282818705", None, "00036282818705"),
    ("36282818705", "upc", "00036282818705"),
    ("123457", "upc", "00000000123457"),
    ("123457", "ean", "00000000123457"),
    ("0306406152", None, "09780306406157"),
    ("306406152", "isbn", "09780306406157"),
    ("080442957X", None, "09780804429573"),
    ("", None, None),
])
def test_normalize_gtin(text, kind, expected):
    assert normalize_gtin(text, kind) == expected


@pytest.mark.parametrize("text,message", [("4.00638E+12", "spreadsheet"), ("12AB", "digits"),
                                          ("123", "3 digits")])
def test_normalize_gtin_errors(text, message):
    with pytest.raises(ValueError, match=message):
        normalize_gtin(text)


def test_gtin_check_digit_gs1_example():
    assert gtin_check_digit("629104150021") == 3


@pytest.mark.parametrize("text,expected", [
    ("in stock", Availability.IN_STOCK), ("in_stock", Availability.IN_STOCK),
    ("IN STOCK", Availability.IN_STOCK), ("https://schema.org/InStock", Availability.IN_STOCK),
    ("http://schema.org/OutOfStock", Availability.OUT_OF_STOCK),
    ("out of stock", Availability.OUT_OF_STOCK), ("pre-order", Availability.PREORDER),
    ("available for order", Availability.BACKORDER), ("discontinued", Availability.OUT_OF_STOCK),
    (True, Availability.IN_STOCK), (False, Availability.OUT_OF_STOCK), ("", Availability.UNKNOWN),
    (None, Availability.UNKNOWN),
])
def test_parse_availability(text, expected):
    assert parse_availability(text) is expected
    assert parse_availability(text) is expected  # second time from the cache


def test_parse_availability_unknown_word():
    with pytest.raises(ValueError, match="unknown availability"):
        parse_availability("perhaps")


@pytest.mark.parametrize("units,cur,exp,expected", [
    (150000, "JPY", 2, "1500"), (1999, "EUR", None, "19.99"), (1000, "JPY", None, "1000"),
    ("12345", "KWD", None, "12.345"),
])
def test_money_from_minor(units, cur, exp, expected):
    assert money_from_minor(units, cur, exp) == Money(Decimal(expected), cur)


def test_interval_and_formats():
    start, end = parse_interval("2025-03-01T00:00-0800/2025-03-08T23:59-0800")
    assert (end - start).days == 7
    assert parse_datetime("05.03.2025", "Europe/Berlin", "%d.%m.%Y").utcoffset().seconds == 3600
    with pytest.raises(ValueError, match="does not match format"):
        parse_datetime("2025-03-05", fmt="%d.%m.%Y")
