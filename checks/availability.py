"""Availability check: the channel sells what the master has, and nothing it lacks.

The master's stock state comes from its quantity (in stock above the safety
stock) or, without a quantity, from its availability. Selling on a channel
what the master does not have is an oversell risk (critical); showing out of
stock what the master has is lost sales (major).
"""

from __future__ import annotations

from auditor.check import CheckContext, check
from auditor.model import Availability, Listing, MasterRecord, Outcome, Severity
from auditor.options import Opt

IN, OUT = Availability.IN_STOCK, Availability.OUT_OF_STOCK
# States a channel may show without promising stock on hand.
_ORDERABLE = (Availability.PREORDER, Availability.BACKORDER)


def master_state(master: MasterRecord, safety_stock: int) -> Availability | None:
    """The stock state a channel should show for ``master``."""
    q = master.quantity
    if q is not None:
        if q > safety_stock:
            return IN
        # A master on preorder/backorder with no stock keeps that state.
        return master.availability if master.availability in _ORDERABLE else OUT
    if master.availability is None or master.availability is Availability.UNKNOWN:
        return None
    return master.availability


@check("availability", fields=("availability",), options=(
    Opt("safety_stock", int, 0, "Units kept back: the master counts as in stock only above this."),
    Opt("compare_quantity", bool, True, "When the channel shows a quantity, more than the "
        "master's quantity above the safety stock is an oversell risk."),
))
def availability_check(master: MasterRecord | None, listing: Listing | None, ctx: CheckContext):
    """Compare the channel's stock state (and quantity) with the master's."""
    if master is None or listing is None:
        return ()
    shown = listing.availability
    q = master.quantity
    # Fast path: the usual agreement (no safety stock; a channel quantity within the master's).
    if q is not None and not ctx.options.get("safety_stock"):
        lq = listing.quantity
        if (shown is IN and q > 0 and (lq is None or 0 < lq <= q)) or \
                (shown is OUT and q <= 0 and not lq and master.availability not in _ORDERABLE):
            return ctx.cache.get("ok:availability") or ctx.ok("availability")
    if shown is None or shown is Availability.UNKNOWN:
        if listing.quantity is None:
            return []  # the channel does not say: nothing to compare
        shown = IN if listing.quantity > 0 else OUT
    safety = ctx.options.get("safety_stock") or 0
    want = master_state(master, safety)
    if want is None:
        return []
    if shown is want:
        if shown is IN and listing.quantity is not None and master.quantity is not None and \
                ctx.option("compare_quantity"):
            sellable = max(master.quantity - safety, 0)
            if listing.quantity > sellable:
                return [ctx.finding(master, listing, "availability", Outcome.FAILED,
                                    Severity.CRITICAL, expected=sellable, actual=listing.quantity,
                                    message=f"oversell risk: channel offers {listing.quantity},"
                                            f" master has {sellable} to sell "
                                            f"(quantity {master.quantity}, safety stock {safety})",
                                    oversell=True)]
        return [ctx.passed(master, listing, "availability")]
    stock = f"master quantity {master.quantity}" if master.quantity is not None else \
        f"master availability {master.availability}"
    if shown is IN:
        return [ctx.finding(master, listing, "availability", Outcome.FAILED, Severity.CRITICAL,
                            expected=want, actual=shown, oversell=True,
                            message=f"oversell risk: in stock on the channel, {want} in master "
                                    f"({stock}, safety stock {safety})")]
    if want is IN and shown is OUT:
        return [ctx.finding(master, listing, "availability", Outcome.FAILED, Severity.MAJOR,
                            expected=want, actual=shown, lost_sales=True,
                            message=f"lost sales: out of stock on the channel, in stock in master "
                                    f"({stock})")]
    if shown in _ORDERABLE and want is OUT:
        return [ctx.passed(master, listing, "availability")]
    return [ctx.finding(master, listing, "availability", Outcome.WARN, Severity.MINOR,
                        expected=want, actual=shown,
                        message=f"channel shows {shown}, master is {want} ({stock})")]
