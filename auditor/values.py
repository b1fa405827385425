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
            "R$": "BRL", "₺": "TRY", "₽": "RUB", "Kč": "CZK", "Ft": "HUF"}
_PLAIN_DECIMAL = re.compile(r"^-?\d+(\.\d+)?$")


def parse_decimal(text: str, decimal_separator: str | None = None) -> Decimal:
    """A number as written by people: '1.299,00', '1,299.00', '12,5', ' 12.50 '.

    ``decimal_separator`` ('.' or ',') removes the ambiguity of '1,299' or
    '1.299'; without it the last separator followed by one or two digits (or
    three with another separator before) decides.
    """
    s = text.strip().replace("\u00a0", "").replace(" ", "").replace("'", "")
    if _PLAIN_DECIMAL.match(s):
        return Decimal(s)
    if not s or not re.match(r"^[-+]?[\d.,]+$", s):
        raise ValueError(f"not a number: {text!r}")
    if decimal_separator is None:
        last_dot, last_comma = s.rfind("."), s.rfind(",")
        if last_dot >= 0 and last_comma >= 0:
            decimal_separator = "." if last_dot > last_comma else ","
        else:
            sep = "." if last_dot >= 0 else ","
            tail = len(s) - max(last_dot, last_comma) - 1
            if s.count(sep) > 1:
                decimal_separator = "," if sep == "." else "."  # repeated: thousands
            else:
                decimal_separator = sep if tail != 3 else ("," if sep == "." else ".")
    thousands = "," if decimal_separator == "." else "."
    s = s.replace(thousands, "")
    if s.count(decimal_separator) > 1:
        raise ValueError(f"not a number: {text!r}")
    s = s.replace(decimal_separator, ".")
    try:
        return Decimal(s)
    except InvalidOperation:
        raise ValueError(f"not a number: {text!r}") from None


def normalize_currency(code: str) -> str:
    """An ISO 4217 code from a code or a symbol; ValueError for an unknown one."""
    c = code.strip()
    if c in _SYMBOLS:
        return _SYMBOLS[c]
    c = c.upper()
    if c not in CURRENCY_MINOR_UNITS:
        raise ValueError(f"unknown currency {code!r} (expected an ISO 4217 code such as EUR)")
    return c


_MONEY_RE = re.compile(r"^\s*([A-Za-z]{3})?\s*([-+]?[\d.,\s\u00a0']+?)\s*([A-Za-z]{3})?\s*$")


def parse_money(text: str, default_currency: str | None = None,
                decimal_separator: str | None = None) -> Money:
    """'15.00 USD', 'USD 15.00', '€1.299,00', '12,50' (with a default currency)."""
    if text is None or not str(text).strip():
        raise ValueError("empty price")
    text = str(text)
    m = _MONEY_RE.match(text)
    if m and (m.group(1) or m.group(3) or default_currency):
        code = m.group(3) or m.group(1) or default_currency
        amount = parse_decimal(m.group(2), decimal_separator)
        return Money(amount, normalize_currency(code))
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
        raise ValueError(f"price {text!r} has no currency and the source sets no default")
    return Money(Decimal(p.amount), normalize_currency(code))


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
    s = str(text).strip().lower()
    s = re.sub(r"^https?://schema\.org/", "", s)
    s = re.sub(r"[\s_\-]+", "", s)
    if not s:
        return Availability.UNKNOWN
    try:
        return _AVAIL[s]
    except KeyError:
        raise ValueError(f"unknown availability {text!r}") from None


def availability_from_quantity(qty: int, safety_stock: int = 0) -> Availability:
    return Availability.IN_STOCK if qty > safety_stock else Availability.OUT_OF_STOCK


# ----------------------------------------------------------------------------- GTIN

def gtin_check_digit(body: str) -> int:
    """GS1 check digit for the digits before it (weights 3,1,3... from the right)."""
    total = 0
    for i, ch in enumerate(reversed(body)):
        total += int(ch) * (3 if i % 2 == 0 else 1)
    return (10 - total % 10) % 10


def gtin_valid(gtin: str) -> bool:
    """Whether a normalized GTIN's check digit is right."""
    return gtin.isdigit() and len(gtin) in (8, 12, 13, 14) and \
        gtin_check_digit(gtin[:-1]) == int(gtin[-1])


def normalize_gtin(text: str | int | None) -> str | None:
    """Digits only, left-padded to GTIN-14; ISBN-10 converted. None when empty.

    Raises ValueError when what is left is not 8, 12, 13 or 14 digits (after
    allowing for spreadsheet-lost leading zeros, i.e. any length up to 14).
    """
    if text is None:
        return None
    s = re.sub(r"[\s\-.]", "", str(text))
    if s.endswith(".0"):
        s = s[:-2]
    if not s:
        return None
    if len(s) == 10 and re.match(r"^\d{9}[\dXx]$", s) and not s.isdigit() or (
            len(s) == 10 and s.isdigit() and _isbn10_ok(s)):
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


def parse_int(text: str) -> int:
    """A whole number, tolerating '1.000', '12.0' and spaces."""
    s = str(text).strip().replace("\u00a0", "").replace(" ", "")
    if re.match(r"^-?\d+$", s):
        return int(s)
    d = parse_decimal(s)
    if d != d.to_integral_value():
        raise ValueError(f"not a whole number: {text!r}")
    return int(d)
