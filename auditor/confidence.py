"""Uncertain reads: what a listing's per-field confidence does to findings and links.

A channel that reads web pages (the ``site`` connector) records, per field, how
sure its read is (``Listing.confidence``) and which CSS selector would make it
certain (``Listing.hints``). Two rules follow, applied here once for every check:

* ``uncertain()``: a comparison that would fail on a field read with confidence
  below ``LOW_CONFIDENCE`` becomes ``not_evaluated``, saying the read was uncertain
  and which selector would make it certain. A guess never raises an alarm.
* ``prefer_master()``: when the page shows several prices inside the product's own
  region (the regular and the sale price in one buy box) and the reader was unsure
  which is which, a linked master's value picks among them. Nothing outside that
  region is ever considered, so a wrong price in the buy box is still reported.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from auditor.model import Listing, MasterRecord, Money, Outcome, Severity
from auditor.pagereader import LOW_CONFIDENCE

# a read this sure is what the page shows: the master does not second-guess it
SURE = 0.8
# check field -> the listing field whose read it compares
READ_FIELD = {"price": "price", "sale_price": "price", "availability": "availability",
              "image": "images", "additional_images": "images", "gtin": "gtin", "sku": "sku",
              "title": "title", "brand": "brand", "mpn": "mpn"}


def uncertain(listing: Listing | None, field_name: str, outcome: Outcome
              ) -> tuple[Outcome, Severity, str] | None:
    """(not_evaluated, info, why) when ``outcome`` would rest on an uncertain read."""
    if listing is None or outcome not in (Outcome.FAILED, Outcome.WARN):
        return None
    conf = listing.confidence
    if not conf:
        return None
    read = READ_FIELD.get(field_name, field_name)
    c = conf.get(read)
    if c is None or c >= LOW_CONFIDENCE:
        return None
    source = listing.sources.get(read, "the page")
    hint = listing.hints.get(read)
    quoted = f"'{hint}'" if hint and "'" not in hint else f'"{hint}"'  # a TOML string
    how = (f"; set selectors = {{ {read} = {quoted} }} on the channel to make it certain"
           if hint else f"; configure a `{read}` selector on the channel to make it certain")
    return (Outcome.NOT_EVALUATED, Severity.INFO,
            f"not evaluated: the page's {read} was read with low confidence "
            f"({c:.2f}, {source}){how}")


def _dec(s: Any) -> Decimal | None:
    try:
        return Decimal(str(s))
    except (InvalidOperation, ValueError):
        return None


def prefer_master(listing: Listing, master: MasterRecord | None, now: datetime) -> Listing:
    """The listing with its price chosen among its region's prices by the master's values.

    Only for prices the candidate reader took from the page (never structured data or
    selectors), and only among the prices shown in the product's own region.
    """
    alts = listing.alternatives.get("price") if listing.alternatives else None
    if master is None or not alts or listing.price is None or \
            listing.sources.get("price") not in ("heuristic", "js-state") or \
            listing.confidence.get("price", 0.0) >= SURE:
        return listing
    cur = listing.price.currency
    shown = {d for d in map(_dec, alts) if d is not None}
    reg_m = master.price_in(cur)
    sale_m = master.sale_price_in(cur) if master.sale_active(now) else None
    reg = reg_m.amount if reg_m is not None else None
    sale = sale_m.amount if sale_m is not None else None
    price, sale_price = listing.price, listing.sale_price
    new: tuple[Money | None, Money | None]
    if sale is not None and sale in shown:
        new = (Money(reg, cur) if reg is not None and reg in shown else price, Money(sale, cur))
    elif reg is not None and reg in shown:
        new = (Money(reg, cur), None)
    else:
        return listing  # the master's value is not in the buy box: compare what was read
    if new == (price, sale_price):
        return listing
    conf = dict(listing.confidence)
    conf["price"] = max(conf.get("price", 0.0), LOW_CONFIDENCE)
    return dataclasses.replace(listing, price=new[0], sale_price=new[1], confidence=conf)
