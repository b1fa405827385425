"""The data model: every other module passes these objects around.

Money is always a ``Decimal`` with an ISO 4217 currency, never a float. Records
are plain slotted dataclasses; the ones that describe facts (``Money``,
``MasterRecord``, ``Listing``, ``Link``, ``Finding``) are frozen.
"""

from __future__ import annotations

import enum
import hashlib
import dataclasses
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Mapping

# ISO 4217 active codes with their minor units (exponent). Codes not listed
# here are rejected as unknown currencies.
_CURRENCY_TABLE = """
AED2 AFN2 ALL2 AMD2 ANG2 AOA2 ARS2 AUD2 AWG2 AZN2 BAM2 BBD2 BDT2 BGN2 BHD3 BIF0
BMD2 BND2 BOB2 BRL2 BSD2 BTN2 BWP2 BYN2 BZD2 CAD2 CDF2 CHF2 CLP0 CNY2 COP2 CRC2
CUP2 CVE2 CZK2 DJF0 DKK2 DOP2 DZD2 EGP2 ERN2 ETB2 EUR2 FJD2 FKP2 GBP2 GEL2 GHS2
GIP2 GMD2 GNF0 GTQ2 GYD2 HKD2 HNL2 HTG2 HUF2 IDR2 ILS2 INR2 IQD3 IRR2 ISK0 JMD2
JOD3 JPY0 KES2 KGS2 KHR2 KMF0 KPW2 KRW0 KWD3 KYD2 KZT2 LAK2 LBP2 LKR2 LRD2 LSL2
LYD3 MAD2 MDL2 MGA2 MKD2 MMK2 MNT2 MOP2 MRU2 MUR2 MVR2 MWK2 MXN2 MYR2 MZN2 NAD2
NGN2 NIO2 NOK2 NPR2 NZD2 OMR3 PAB2 PEN2 PGK2 PHP2 PKR2 PLN2 PYG0 QAR2 RON2 RSD2
RUB2 RWF0 SAR2 SBD2 SCR2 SDG2 SEK2 SGD2 SHP2 SLE2 SOS2 SRD2 SSP2 STN2 SVC2 SYP2
SZL2 THB2 TJS2 TMT2 TND3 TOP2 TRY2 TTD2 TWD2 TZS2 UAH2 UGX0 USD2 UYU2 UZS2 VES2
VND0 VUV0 WST2 XAF0 XCD2 XOF0 XPF0 YER2 ZAR2 ZMW2 ZWL2
"""
CURRENCY_MINOR_UNITS: dict[str, int] = {
    tok[:3]: int(tok[3:]) for tok in _CURRENCY_TABLE.split()
}


class ModelError(ValueError):
    """A value cannot be represented in the model (unknown currency, bad amount)."""


@dataclass(frozen=True, slots=True)
class Money:
    """An exact amount of one currency."""

    amount: Decimal
    currency: str

    def __post_init__(self) -> None:
        if not isinstance(self.amount, Decimal):
            raise ModelError(f"Money amount must be a Decimal, got {type(self.amount).__name__}")
        if not self.amount.is_finite():
            raise ModelError(f"Money amount must be finite, got {self.amount}")
        if self.currency not in CURRENCY_MINOR_UNITS:
            raise ModelError(f"unknown ISO 4217 currency code {self.currency!r}")

    @classmethod
    def of(cls, amount: str | int | Decimal, currency: str) -> "Money":
        """Build from a string or int amount; floats are refused on purpose."""
        if isinstance(amount, float):
            raise ModelError("Money never takes a float; pass a string or Decimal")
        return cls(Decimal(amount), currency.strip().upper())

    @property
    def minor_units(self) -> int:
        """The amount in the currency's minor unit, rounded half-up (cents for EUR)."""
        exp = CURRENCY_MINOR_UNITS[self.currency]
        return int((self.amount * (10**exp)).to_integral_value(rounding="ROUND_HALF_UP"))

    def __str__(self) -> str:
        exp = CURRENCY_MINOR_UNITS[self.currency]
        q = Decimal(1).scaleb(-exp)
        return f"{self.amount.quantize(q, rounding='ROUND_HALF_UP')} {self.currency}"


class Availability(enum.StrEnum):
    """One vocabulary for stock state, whatever the channel calls it."""

    IN_STOCK = "in_stock"
    OUT_OF_STOCK = "out_of_stock"
    PREORDER = "preorder"
    BACKORDER = "backorder"
    UNKNOWN = "unknown"


class Outcome(enum.StrEnum):
    """The result of one comparison."""

    PASSED = "passed"
    FAILED = "failed"
    WARN = "warn"
    NOT_EVALUATED = "not_evaluated"


class Severity(enum.StrEnum):
    """How urgently a finding needs a person."""

    CRITICAL = "critical"
    MAJOR = "major"
    MINOR = "minor"
    INFO = "info"


class MasterStatus(enum.StrEnum):
    """Lifecycle of a master record: only active products are expected on channels."""

    ACTIVE = "active"
    DISCONTINUED = "discontinued"
    DRAFT = "draft"


class SourceStatus(enum.StrEnum):
    """How completely a source was read in one run.

    Only a *complete* source is evidence that something is absent.
    """

    COMPLETE = "complete"
    PARTIAL = "partial"
    FAILED = "failed"


class LinkMethod(enum.StrEnum):
    """How a listing was matched to its master record."""

    SKU = "sku"
    GTIN = "gtin"
    MPN = "mpn"
    URL = "url"
    FUZZY = "fuzzy"          # by title and what it shows, confidently (checks run)
    CONFIRMED = "confirmed"  # a person confirmed the pair (`auditor links confirm`)
    SUGGESTED = "suggested"  # plausible by title: no findings until a person confirms
    NONE = "none"
    AMBIGUOUS = "ambiguous"


@dataclass(frozen=True, slots=True)
class MasterRecord:
    """The approved truth for one SKU, as held in the PIM/DAM."""

    sku: str
    title: str | None = None
    description: str | None = None
    brand: str | None = None
    gtin: str | None = None
    mpn: str | None = None
    price: Money | None = None
    sale_price: Money | None = None
    sale_start: datetime | None = None
    sale_end: datetime | None = None
    # Prices in further currencies, by ISO code (for channels selling in them).
    prices: Mapping[str, Money] = field(default_factory=dict)
    sale_prices: Mapping[str, Money] = field(default_factory=dict)
    quantity: int | None = None
    availability: Availability | None = None
    status: MasterStatus = MasterStatus.ACTIVE
    url: str | None = None
    images: tuple[str, ...] = ()
    attributes: Mapping[str, str] = field(default_factory=dict)
    # channel name -> field -> approved value (strings as imported).
    overrides: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    group_id: str | None = None

    def override(self, channel: str, name: str) -> str | None:
        """The value approved for ``channel`` only, if any."""
        per = self.overrides.get(channel)
        return per.get(name) if per else None

    def price_in(self, currency: str) -> Money | None:
        """The master price in ``currency``, when the master holds one."""
        if self.price is not None and self.price.currency == currency:
            return self.price
        return self.prices.get(currency)

    def sale_price_in(self, currency: str) -> Money | None:
        """The master sale price in ``currency``, when the master holds one."""
        if self.sale_price is not None and self.sale_price.currency == currency:
            return self.sale_price
        return self.sale_prices.get(currency)

    def sale_active(self, now: datetime) -> bool:
        """Whether the sale price is in force at ``now`` (open ends are unbounded)."""
        if self.sale_price is None:
            return False
        if self.sale_start is not None and now < self.sale_start:
            return False
        if self.sale_end is not None and now >= self.sale_end:
            return False
        return True


@dataclass(frozen=True, slots=True)
class Listing:
    """One product as a channel shows it, observed at ``fetched_at``."""

    channel: str
    key: str  # the channel's own id for the listing (feed id, URL, row key)
    fetched_at: datetime
    url: str | None = None
    sku: str | None = None
    title: str | None = None
    description: str | None = None
    brand: str | None = None
    gtin: str | None = None
    mpn: str | None = None
    price: Money | None = None
    sale_price: Money | None = None
    sale_start: datetime | None = None
    sale_end: datetime | None = None
    quantity: int | None = None
    availability: Availability | None = None
    images: tuple[str, ...] = ()
    attributes: Mapping[str, str] = field(default_factory=dict)
    group_id: str | None = None
    location: str | None = None  # store / warehouse for POS listings
    # Where the raw evidence is: "path/to/feed.xml:123", a URL, or a store ref.
    evidence: str | None = None
    # Where each value came from, for extraction debugging (field -> source).
    sources: Mapping[str, str] = field(default_factory=dict)
    # How sure the read of each field is (0..1), for channels that read pages; a field
    # below LOW_CONFIDENCE never raises a failed finding (auditor/confidence.py).
    confidence: Mapping[str, float] = field(default_factory=dict)
    # field -> a CSS selector (site channel `selectors` syntax) that would read it for certain
    hints: Mapping[str, str] = field(default_factory=dict)
    # field -> other values the page shows in the product's own region (decimal strings
    # for prices), among which a linked master may choose
    alternatives: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    # Cells of this listing that could not be read (listing field -> "file:line: reason"):
    # the field is None, and every comparison of it is not_evaluated with this reason.
    unread: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Link:
    """A listing matched to its master record."""

    channel: str
    listing_key: str
    sku: str | None
    method: LinkMethod
    confidence: float
    candidates: tuple[str, ...] = ()  # ambiguous: the SKUs it could be; suggested: best first
    reason: str | None = None  # why a listing is not linked (or only suggested)
    evidence: Mapping[str, Any] = field(default_factory=dict)  # for and against the match

    @property
    def state(self) -> str:
        """``linked`` (checks run), ``suggested`` (a person decides) or ``unlinked``."""
        if self.sku is not None:
            return "linked"
        return "suggested" if self.method is LinkMethod.SUGGESTED else "unlinked"


def fingerprint(check: str, channel: str, key: str, field_name: str) -> str:
    """A stable id for "this check on this field of this listing".

    It ignores the values, so the same drift seen in many runs is one finding.
    """
    raw = f"{check}\x1f{channel}\x1f{key}\x1f{field_name}".encode()
    return hashlib.blake2b(raw, digest_size=10).hexdigest()


@dataclass(frozen=True, slots=True)
class Finding:
    """The outcome of one comparison of a listing with its master."""

    check: str
    channel: str
    sku: str | None
    field: str
    outcome: Outcome
    severity: Severity = Severity.INFO
    expected: str | None = None
    actual: str | None = None
    score: float | None = None
    message: str = ""
    listing_key: str | None = None
    details: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # `field` is a field here

    @property
    def fingerprint(self) -> str:
        """Stable across runs: check, channel, listing (or SKU) and field."""
        return fingerprint(self.check, self.channel, self.listing_key or self.sku or "", self.field)


@dataclass(slots=True)
class SourceResult:
    """What one source yielded in one run: status, counts and recorded errors."""

    name: str
    status: SourceStatus = SourceStatus.COMPLETE
    listings: int = 0
    errors: int = 0
    message: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    # Keys of listings whose state is unknown this run (blocked/error pages).
    unknown_keys: set[str] = field(default_factory=set)
    # Why presence is held for this run (no listing concluded missing or removed, no
    # presence finding resolved), though the rest of the read is complete: a row whose
    # key could not be read, a sharp drop in items. None: presence is evaluated.
    presence_held: str | None = None
    # SKUs whose listing could not be seen this run (its page behind a captcha or consent
    # wall, an error), with the reason: presence is not_evaluated for them, never missing.
    unknown_skus: dict[str, str] = field(default_factory=dict)


# The listing fields a check's finding field depends on (a finding field not named
# here depends on the listing field of the same name). A finding on a field none of
# whose listing fields the channel's source carries is not evaluated (see
# auditor.check.not_carried), and an unread cell of one makes it not_evaluated.
FINDING_FIELD_SOURCES: dict[str, tuple[str, ...]] = {
    "image": ("images",),
    "additional_images": ("images",),
    "availability": ("availability", "quantity"),
    # A channel with one price column shows the sale price in force there.
    "sale_price": ("sale_price", "price", "sale_start", "sale_end"),
    "listing": (),  # presence: every source carries its listings
}


def listing_fields_of(finding_field: str) -> tuple[str, ...]:
    """The listing fields a finding on ``finding_field`` compares."""
    return FINDING_FIELD_SOURCES.get(finding_field, (finding_field,))


@dataclass(slots=True)
class Run:
    """One audit run over the master and the configured channels."""

    id: int | None
    started_at: datetime
    finished_at: datetime | None = None
    status: SourceStatus = SourceStatus.COMPLETE
    sources: dict[str, SourceResult] = field(default_factory=dict)
