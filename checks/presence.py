"""Presence check: every active master in a channel's scope is on it, and nothing else is.

Three kinds of finding, all on field ``listing``: a missing listing (an active
master in scope the channel does not show), an orphan (a listing that links to
no master; when it carries a SKU or GTIN that matches nothing, the masters its
title fits are in the details as ``suggestions``) and a zombie (a listing of a
discontinued master). A listing only *suggested* for a master produces nothing
until a person confirms or rejects the pair. The runner asks
about missing listings only when the channel's source was read completely, so
a failed or partly read source never produces them.
"""

from __future__ import annotations

from typing import Any, Mapping

from auditor.check import CheckContext, check
from auditor.model import LinkMethod, Listing, MasterRecord, MasterStatus, Outcome, Severity


_ACTIVE = MasterStatus.ACTIVE


def _value(master: MasterRecord, name: str) -> Any:
    if name in ("sku", "brand", "status", "group_id", "mpn", "gtin"):
        v = getattr(master, name)
        return str(v) if v is not None else None
    return master.attributes.get(name)


def in_scope(master: MasterRecord, scope: Mapping[str, list[str]]) -> bool:
    """Whether ``master`` matches every filter of a channel scope (case-insensitive)."""
    for name, allowed in scope.items():
        v = _value(master, name)
        if v is None:
            return False
        want = {a.casefold() for a in allowed}
        # Multi-valued attributes ("shoes|sale") are in scope when one value is.
        if not any(part.strip().casefold() in want for part in str(v).split("|")):
            return False
    return True


@check("presence", fields=("listing",))
def presence_check(master: MasterRecord | None, listing: Listing | None, ctx: CheckContext):
    """Missing listings of active masters in scope, orphan listings, discontinued ones listed."""
    if listing is not None and master is not None and master.status is _ACTIVE:
        return ctx.cache.get("ok:listing") or ctx.ok("listing")
    if listing is None:
        if master is None or master.status is not MasterStatus.ACTIVE:
            return []
        scope = ctx.channel_options.get("scope") or {}
        if scope and not in_scope(master, scope):
            return []
        return [ctx.finding(master, None, "listing", Outcome.FAILED, Severity.MAJOR,
                            expected=master.sku, actual=None, kind="missing",
                            message=f"active SKU {master.sku} is not on {ctx.channel}")]
    if master is None:
        link = ctx.link
        if link is not None and link.method is LinkMethod.SUGGESTED:
            return []  # a person confirms or rejects it first (`auditor links`)
        if link is not None and link.method is LinkMethod.AMBIGUOUS:
            return [ctx.finding(None, listing, "listing", Outcome.NOT_EVALUATED, Severity.INFO,
                                actual=listing.key, kind="ambiguous",
                                candidates=list(link.candidates),
                                message="listing could be any of "
                                        + ", ".join(link.candidates) + "; not guessed")]
        extra: dict = {}
        if link is not None and link.reason:
            extra["reason"] = link.reason
        if link is not None and link.evidence.get("suggestions"):
            extra["suggestions"] = link.evidence["suggestions"]  # masters its title fits
        hint = (" (by its title perhaps " + ", ".join(s["sku"] for s in extra["suggestions"])
                + ")") if "suggestions" in extra else ""
        return [ctx.finding(None, listing, "listing", Outcome.FAILED, Severity.MAJOR,
                            expected=None, actual=listing.sku or listing.key, kind="orphan",
                            message=f"listing {listing.key!r} (SKU {listing.sku or '-'}) "
                                    f"matches no master record{hint}", **extra)]
    if master.status is MasterStatus.DISCONTINUED:
        return [ctx.finding(master, listing, "listing", Outcome.FAILED, Severity.MAJOR,
                            expected="not listed", actual=listing.key, kind="zombie",
                            message=f"SKU {master.sku} is discontinued but still listed")]
    if master.status is MasterStatus.DRAFT:
        return [ctx.finding(master, listing, "listing", Outcome.WARN, Severity.MINOR,
                            expected="not listed", actual=listing.key, kind="draft",
                            message=f"SKU {master.sku} is a draft in the master but listed")]
    return [ctx.passed(master, listing, "listing")]
