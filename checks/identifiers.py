"""Identifiers check: the listing's GTIN is valid and is the master's.

GTINs compare as GTIN-14 (left-padded), so a UPC-A and its EAN-13 form agree.
"""

from __future__ import annotations

from typing import Any

from auditor.check import CheckContext, check
from auditor.model import Listing, MasterRecord, Outcome, Severity
from auditor.values import gtin_valid, normalize_gtin
from auditor.checks._stale import stale_note, stale_until


def _norm(g: str | None) -> str | None:
    try:
        return normalize_gtin(g) if g else None
    except ValueError:
        return None


@check("identifiers", fields=("gtin",))
def identifiers_check(master: MasterRecord | None, listing: Listing | None, ctx: CheckContext):
    """Invalid GTIN check digits on the listing; a GTIN differing from the master's."""
    if listing is None:
        return ()
    shown = listing.gtin
    if not shown:
        return ()
    if master is not None and shown == master.gtin:  # connectors and import both normalize
        return ctx.cache.get("ok:gtin") or ctx.ok("gtin")
    g = _norm(shown)
    if g is None or not gtin_valid(g):
        why = "is not 8, 12, 13 or 14 digits" if g is None else "has a wrong check digit"
        return [ctx.finding(master, listing, "gtin", Outcome.FAILED, Severity.MAJOR,
                            expected=master.gtin if master else None, actual=shown,
                            invalid=True, message=f"GTIN {shown} {why}")]
    if master is None:
        return []
    want = _norm(master.gtin)
    if want is None:
        return []
    if g == want:
        return [ctx.passed(master, listing, "gtin")]
    extra = listing.attributes.get("additional_gtins")
    if extra and want in extra.split("|"):
        return [ctx.passed(master, listing, "gtin")]
    until = stale_until(ctx, master.sku, lambda r: _norm(r.gtin), lambda old: old == g)
    msg = f"GTIN {shown} differs from master {master.gtin}"
    details: dict[str, Any] = {}
    if until is not None:
        note, details = stale_note("GTIN", until)
        msg += f": {note}"
    return [ctx.finding(master, listing, "gtin", Outcome.FAILED, Severity.MAJOR,
                        expected=master.gtin, actual=shown, message=msg, **details)]
