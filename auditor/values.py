"""Parsing of the values channels write: money, numbers, availability, GTINs, dates.

Every parser raises ``ValueError`` with a message fit for a user; connectors
turn that into a bad-row record naming the file, line and field.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone, tzinfo
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from zoneinfo import ZoneInfo

from auditor.model import CURRENCY_MINOR_UNITS, Availability, Money

# ----------------------------------------------------------------------------- numbers

_SYMBOLS = {"€": "EUR", "$": "USD", "£": "GBP", "¥": "JPY", "₹": "INR", "₩": "KRW",
            "zł": "PLN", "kr": "SEK", "CHF": "CHF", "US$": "USD", "C$": "CAD", "A$": "AUD",
            "R$": "BRL", "₺": "TRY", "₽": "RUB", "Kč": "CZK", "Ft": "HUF", "Fr.": "CHF",
            "CA$": "CAD", "AU$": "AUD", "NZ$": "NZD", "HK$": "HKD", "S$": "SGD", "₪": "ILS",
            "₫": "VND", "฿": "THB", "₱": "PHP", "R": "ZAR", "Rs": "INR", "lei": "RON"}
_PLAIN_DECIMAL = re.compile(r"^-?\d+(\.\d+)?$")
_NUMBER_CHARS = re.compile(r"^[-+]?[\d.,]+$")
# Grouping characters people put between thousands: spaces of every width and apostrophes.
_GROUPING = str.maketrans("", "", " \u00a0\u202f\u2009'\u2019")


def parse_decimal(text: str, decimal_separator: str | None = None) -> Decimal:
    """A number as written by people: '1.299,00', '1,299.00', '12,5', ' 12.50 '.

    ``decimal_separator`` ('.' or ',') removes the ambiguity of '1,299' or
    '1.299'; without it the last separator followed by one or two digits (or
    three with another separator before) decides.
    """
    s = str(text).strip()
    if _PLAIN_DECIMAL.match(s) and (decimal_separator != "," or "." not in s):
        return Decimal(s)
    s = s.translate(_GROUPING)
    if not s or not _NUMBER_CHARS.match(s) or not any(c.isdigit() for c in s):
        raise ValueError(f"not a number: {text!r}")
    if decimal_separator not in (".", ","):
        if decimal_separator:
            raise ValueError(f"decimal_separator must be '.' or ',', got {decimal_separator!r}")
        decimal_separator = _guess_decimal_separator(s)
    thousands = "," if decimal_separator == "." else "."
    if thousands in s:
        int_part = s.split(decimal_separator, 1)[0].lstrip("+-")
        groups = int_part.split(thousands)
        # Thousands groups are three digits (two in the middle for Indian lakh
        # grouping, 1,00,000); anything else is a misread number.
        if not groups[0] or len(groups[-1]) != 3 or any(len(g) not in (2, 3)
                                                         for g in groups[1:-1]):
            raise ValueError(f"not a number: {text!r} (with {decimal_separator!r} as the "
                             f"decimal separator)")
        s = s.replace(thousands, "")
    if s.count(decimal_separator) > 1:
        raise ValueError(f"not a number: {text!r}")
    s = s.replace(decimal_separator, ".")
    try:
        return Decimal(s)
    except InvalidOperation:
        raise ValueError(f"not a number: {text!r}") from None


def _guess_decimal_separator(s: str) -> str:
    last_dot, last_comma = s.rfind("."), s.rfind(",")
    if last_dot >= 0 and last_comma >= 0:
        return "." if last_dot > last_comma else ","
    sep = "." if last_dot >= 0 else ","
    tail = len(s) - max(last_dot, last_comma) - 1
    if s.count(sep) > 1:
        return "," if sep == "." else "."  # repeated: thousands
    return sep if tail != 3 else ("," if sep == "." else ".")


def normalize_currency(code: str) -> str:
    """An ISO 4217 code from a code or a symbol; ValueError for an unknown one."""
    c = code.strip()
    if c in _SYMBOLS:
        return _SYMBOLS[c]
    c = c.upper()
    if c not in CURRENCY_MINOR_UNITS:
        raise ValueError(f"unknown currency {code!r} (expected an ISO 4217 code such as EUR)")
    return c


# An amount with a code or symbol before or after it: "15.00 USD", "USD 15.00",
# "€1.299,00", "12,50 €", "CHF 1'299.50".
_MONEY_RE = re.compile(
    r"^\s*([A-Za-z]{3}|[^\d\s.,+\-']{1,4})?\s*([-+]?\d[\d.,\s\u00a0\u202f'\u2019]*?)\s*"
    r"([A-Za-z]{3}|[^\d\s.,+\-']{1,4})?\s*$")


def parse_money(text: str, default_currency: str | None = None,
                decimal_separator: str | None = None) -> Money:
    """'15.00 USD', 'USD 15.00', '€1.299,00', '12,50' (with a default currency)."""
    if text is None:
        raise ValueError("empty price")
    return _parse_money_cached(str(text), default_currency, decimal_separator)


@lru_cache(maxsize=8192)
def _parse_money_cached(text: str, default_currency: str | None,
                        decimal_separator: str | None) -> Money:
    # Feeds repeat a few hundred distinct prices over millions of rows, and Money
    # is immutable: the cache makes the common case a dictionary lookup.
    code: str | None
    amount, _, code = text.strip().partition(" ")
    if code in CURRENCY_MINOR_UNITS and _PLAIN_DECIMAL.match(amount) and \
            (decimal_separator != "," or "." not in amount):
        return Money(Decimal(amount), code)  # the Google/Meta form "12.34 EUR"
    if not text.strip():
        raise ValueError("empty price")
    m = _MONEY_RE.match(text)
    if m:
        sym = m.group(1) or m.group(3)
        code = None
        if sym:
            try:
                code = normalize_currency(sym)
            except ValueError:
                code = None
        elif default_currency:
            code = normalize_currency(default_currency)
        if code:
            return Money(parse_decimal(m.group(2), decimal_separator), code)
    return _parse_money_fuzzy(text, default_currency, decimal_separator)


def _parse_money_fuzzy(text: str, default_currency: str | None,
                       decimal_separator: str | None) -> Money:
    from price_parser import Price

    p = Price.fromstring(text, decimal_separator=decimal_separator)
    if p.amount is None:
        raise ValueError(f"no amount in price {text!r}")
    cur = p.currency
    code = None
    if cur:
        try:
            code = normalize_currency(cur)
        except ValueError:
            code = None
    code = code or default_currency
    if not code:
        raise ValueError(f"price {text!r} has no currency and the source sets no default "
                         f"(set currency = \"EUR\" or the like on the channel)")
    return Money(Decimal(p.amount), normalize_currency(code))


def money_from_minor(units: int | str, currency: str, exponent: int | None = None) -> Money:
    """Money from integer minor units; ``exponent`` overrides the currency's (Shopify: 2)."""
    try:
        n = int(units)
    except (TypeError, ValueError):
        raise ValueError(f"not a whole number of minor units: {units!r}") from None
    cur = normalize_currency(currency)
    exp = CURRENCY_MINOR_UNITS[cur] if exponent is None else exponent
    return Money(Decimal(n).scaleb(-exp) if exp else Decimal(n), cur)


# ----------------------------------------------------------------------------- availability

_AVAIL = {
    "instock": Availability.IN_STOCK, "in stock": Availability.IN_STOCK,
    "available": Availability.IN_STOCK, "true": Availability.IN_STOCK, "yes": Availability.IN_STOCK,
    "limitedavailability": Availability.IN_STOCK, "onlineonly": Availability.IN_STOCK,
    "instoreonly": Availability.IN_STOCK, "active": Availability.IN_STOCK,
    "outofstock": Availability.OUT_OF_STOCK, "soldout": Availability.OUT_OF_STOCK,
    "false": Availability.OUT_OF_STOCK, "no": Availability.OUT_OF_STOCK,
    "discontinued": Availability.OUT_OF_STOCK, "inactive": Availability.OUT_OF_STOCK,
    "unavailable": Availability.OUT_OF_STOCK, "incomplete": Availability.OUT_OF_STOCK,
    "preorder": Availability.PREORDER, "presale": Availability.PREORDER,
    "backorder": Availability.BACKORDER, "availablefororder": Availability.BACKORDER,
    "madetoorder": Availability.BACKORDER,
}


def parse_availability(text: str | bool | None) -> Availability:
    """Any channel's stock word (or schema.org URL) as the one internal enum."""
    if text is None:
        return Availability.UNKNOWN
    if isinstance(text, bool):
        return Availability.IN_STOCK if text else Availability.OUT_OF_STOCK
    hit = _AVAIL_SEEN.get(text)
    if hit is not None:
        return hit
    s = str(text).strip().lower()
    s = re.sub(r"^https?://schema\.org/", "", s)
    s = re.sub(r"[\s_\-]+", "", s)
    if not s:
        return Availability.UNKNOWN
    try:
        found = _AVAIL[s]
    except KeyError:
        raise ValueError(f"unknown availability {text!r}") from None
    if len(_AVAIL_SEEN) < 1000:
        _AVAIL_SEEN[text] = found
    return found


# Values as written ("in_stock", "In Stock") -> enum: feeds repeat a handful of them.
_AVAIL_SEEN: dict = {}


def availability_from_quantity(qty: int, safety_stock: int = 0) -> Availability:
    """In stock when more than ``safety_stock`` units are on hand."""
    return Availability.IN_STOCK if qty > safety_stock else Availability.OUT_OF_STOCK


# ----------------------------------------------------------------------------- GTIN

def gtin_check_digit(body: str) -> int:
    """GS1 check digit for the digits before it (weights 3,1,3... from the right)."""
    if not (body.isascii() and (body.isdigit() or not body)):
        raise ValueError(f"GTIN digits expected, got {body!r}")
    b = body.encode("ascii")
    threes, ones = b[-1::-2], b[-2::-2]  # ASCII digits: subtract 48 ("0") from each
    total = 3 * (sum(threes) - 48 * len(threes)) + sum(ones) - 48 * len(ones)
    return (10 - total % 10) % 10


def gtin_valid(gtin: str) -> bool:
    """Whether a normalized GTIN's check digit is right."""
    return gtin.isascii() and gtin.isdigit() and len(gtin) in (8, 12, 13, 14) and \
        gtin_check_digit(gtin[:-1]) == int(gtin[-1])


_KIND_LENGTH = {"upc": 12, "ean": 13, "isbn": 10}


class LostDigits(ValueError):
    """A GTIN a spreadsheet wrote in scientific notation (``7.61234E+12``): its digits are
    gone, so it says nothing about the channel's GTIN (an unreadable cell, not a wrong one)."""


def normalize_gtin(text: str | int | None, kind: str | None = None) -> str | None:
    """Digits only, left-padded to GTIN-14; ISBN-10 converted. None when empty.

    Raises ValueError when what is left is not 8, 12, 13 or 14 digits (after
    allowing for spreadsheet-lost leading zeros, i.e. any length up to 14).
    ``kind`` ("upc", "ean", "isbn") says what the number is, so leading zeros a
    spreadsheet dropped are restored even below 8 digits.
    """
    if text is None:
        return None
    if type(text) is str and len(text) in (8, 12, 13, 14) and text.isdigit():
        return text.zfill(14)  # the common, clean case
    s = str(text).strip().lstrip("'")  # a leading apostrophe forces text in spreadsheets
    if re.match(r"^\d+([.,]\d+)?[eE]\+?\d+$", s):  # 4.00638E+12, or 4,00638E+12 in German
        raise LostDigits(f"GTIN {text!r} was turned into a rounded number by a spreadsheet; "
                         f"its digits are lost")
    if re.match(r"^\d+\.0+$", s):  # a number cell written as float
        s = s.split(".", 1)[0]
    s = re.sub(r"[\s\-.]", "", s)
    if not s:
        return None
    want = _KIND_LENGTH.get((kind or "").lower())
    if want and s.isdigit() and len(s) < want:
        s = s.zfill(want)
    elif want == 10 and len(s) < 10 and s[-1:] in "Xx" and s[:-1].isdigit():
        s = s.zfill(10)
    isbn10 = len(s) == 10 and re.match(r"^\d{9}[\dXx]$", s) is not None and _isbn10_ok(s)
    # A ten-digit number is an ISBN-10 when its ISBN check holds and it is not
    # a UPC that lost two leading zeros (unless the source says it is an ISBN).
    if isbn10 and (want == 10 or not s.isdigit() or not gtin_valid(s.zfill(12))):
        body = "978" + s[:9]
        s = body + str(gtin_check_digit(body))
    if not s.isdigit():
        raise ValueError(f"GTIN {text!r} has characters other than digits")
    if len(s) > 14 or len(s) < 8:
        raise ValueError(f"GTIN {text!r} has {len(s)} digits (expected 8, 12, 13 or 14)")
    return s.zfill(14)


def _isbn10_ok(s: str) -> bool:
    total = sum((10 - i) * (10 if c in "Xx" else int(c)) for i, c in enumerate(s))
    return total % 11 == 0


# ----------------------------------------------------------------------------- dates

@lru_cache(maxsize=64)
def _zone(name: str) -> tzinfo:
    return timezone.utc if name.upper() == "UTC" else ZoneInfo(name)


def parse_datetime(text: str, tz: str = "UTC", fmt: str | None = None) -> datetime:
    """ISO 8601 (date or date-time, with or without zone) or a strptime format.

    A value without a zone is taken in ``tz``; the result is always aware.
    """
    s = text.strip()
    if not s:
        raise ValueError("empty date")
    if fmt:
        try:
            dt = datetime.strptime(s, fmt)
        except ValueError:
            raise ValueError(f"date {text!r} does not match format {fmt!r}") from None
    else:
        # Python 3.11 reads most ISO forms; normalise "-0800" offsets and "Z".
        iso = re.sub(r"([+-]\d{2})(\d{2})$", r"\1:\2", s.replace("Z", "+00:00"))
        try:
            dt = datetime.fromisoformat(iso)
        except ValueError:
            raise ValueError(f"not an ISO 8601 date: {text!r}") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=_zone(tz))
    return dt


def parse_interval(text: str, tz: str = "UTC") -> tuple[datetime | None, datetime | None]:
    """An ISO 8601 interval 'start/end' (Google's sale_price_effective_date)."""
    if not text or not text.strip():
        return None, None
    parts = text.strip().split("/")
    if len(parts) != 2:
        raise ValueError(f"expected an interval 'start/end', got {text!r}")
    start = parse_datetime(parts[0], tz) if parts[0].strip() else None
    end = parse_datetime(parts[1], tz) if parts[1].strip() else None
    if start and end and end < start:
        raise ValueError(f"interval {text!r} ends before it starts")
    return start, end


def parse_int(text: str, decimal_separator: str | None = None) -> int:
    """A whole number, tolerating '1.000', '12.0', '12,0' and spaces."""
    s = str(text).strip()
    if s.isdigit():
        return int(s)
    s = s.translate(_GROUPING)
    if _INT.match(s):
        return int(s)
    if decimal_separator is None and _NUMBER_CHARS.match(s):
        decimal_separator = _guess_decimal_separator(s)  # "1.000" is a thousand here
    d = parse_decimal(s, decimal_separator)
    if d != d.to_integral_value():
        raise ValueError(f"not a whole number: {text!r}")
    return int(d)


_INT = re.compile(r"^[-+]?\d+$")
