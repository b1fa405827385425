"""Factories for check tests: a master record, its faithful listing, a context."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

from auditor import plugins
from auditor.check import CheckContext
from auditor.model import Availability, Finding, Listing, MasterRecord, Money, Outcome
from auditor.options import resolve
from auditor.values import gtin_check_digit

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=timezone.utc)


def gtin13(body12: str) -> str:
    """A GTIN-13 with a valid check digit."""
    return body12 + str(gtin_check_digit(body12))


GTIN = gtin13("400638133393")
OTHER_GTIN = gtin13("400638133394")


def master(**kw: Any) -> MasterRecord:
    """A typical master record; keyword arguments replace fields."""
    base = dict(sku="AC0000001-GRE-M", title="Acme Alpine Hoodie, Grey, M", brand="Acme",
                gtin=GTIN.zfill(14), mpn="AH-100", price=Money.of("49.99", "EUR"), quantity=10,
                availability=Availability.IN_STOCK, url="https://shop.example/products/alpine?variant=1",
                attributes={"color": "Grey", "size": "M", "material": "Merino Wool",
                            "weight": "1.2 kg", "length": "30 cm"})
    base.update(kw)
    return MasterRecord(**base)


def listing(m: MasterRecord | None = None, **kw: Any) -> Listing:
    """The listing a faithful channel shows for ``m``; keyword arguments replace fields."""
    m = m or master()
    base = dict(channel="google", key=m.sku, fetched_at=NOW, url=m.url, sku=m.sku,
                title=m.title, brand=m.brand, gtin=m.gtin, mpn=m.mpn, price=m.price,
                sale_price=m.sale_price if m.sale_active(NOW) else None,
                sale_start=m.sale_start if m.sale_active(NOW) else None,
                sale_end=m.sale_end if m.sale_active(NOW) else None,
                availability=(Availability.IN_STOCK if (m.quantity or 0) > 0
                              else Availability.OUT_OF_STOCK) if m.quantity is not None
                else m.availability,
                attributes=dict(m.attributes))
    base.update(kw)
    return Listing(**base)


def context(check: str, options: dict | None = None, *, channel: str = "google",
            channel_options: dict | None = None, history: dict | None = None,
            now: datetime = NOW) -> CheckContext:
    """A context with the check's options validated and defaults filled, as config does."""
    spec = plugins.checks()[check]
    problems: list[str] = []
    opts = resolve(spec.all_options, options or {}, f"[checks.{check}]", problems)
    assert not problems, problems
    return CheckContext(check, channel, opts, now, history or {}, channel_options or {})


def run(check: str, m: MasterRecord | None, li: Listing | None, options: dict | None = None,
        **kw: Any) -> list[Finding]:
    """Call one check the way the runner does."""
    return list(plugins.checks()[check].fn(m, li, context(check, options, **kw)))


def problems(findings: list[Finding]) -> list[Finding]:
    """The findings that are not passed."""
    return [f for f in findings if f.outcome is not Outcome.PASSED]


def eur(x: str) -> Money:
    """An amount in euros."""
    return Money(Decimal(x), "EUR")


def days(n: float) -> timedelta:
    """A duration of ``n`` days."""
    return timedelta(days=n)


__all__ = ["NOW", "GTIN", "OTHER_GTIN", "master", "listing", "context", "run", "problems",
           "eur", "days", "replace", "gtin13"]
