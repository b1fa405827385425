"""Price check: exact money, same currency, sale prices only inside their window."""

from __future__ import annotations

from decimal import Decimal

from auditor.check import CheckContext, check
from auditor.model import Listing, MasterRecord, Money, Outcome, Severity
from auditor.options import Opt


def _expected_price(master: MasterRecord, listing: Listing, ctx: CheckContext) -> Money | None:
    cur = listing.price.currency if listing.price else None
    if cur is None:
        return master.price
    if master.sale_active(ctx.now):
        sale = master.sale_price_in(cur)
        if sale is not None and listing.sale_price is None:
            return sale  # a channel showing only one price should show the sale price
    return master.price_in(cur)


@check("price", fields=("price", "sale_price"), options=(
    Opt("tolerance", Decimal, Decimal("0"), "Absolute difference accepted, in currency units."),
))
def price_check(master: MasterRecord | None, listing: Listing | None, ctx: CheckContext):
    """Compare the listing's price (and sale price) with the master's."""
    if master is None or listing is None or master.price is None:
        return []
    if listing.price is None:
        return [ctx.finding(master, listing, "price", Outcome.NOT_EVALUATED, Severity.INFO,
                            expected=master.price, message="listing shows no price")]
    expected = _expected_price(master, listing, ctx)
    if expected is None:
        return [ctx.finding(master, listing, "price", Outcome.FAILED, Severity.CRITICAL,
                            expected=master.price, actual=listing.price,
                            message=f"listing is priced in {listing.price.currency}, master in "
                                    f"{master.price.currency} and no {listing.price.currency} "
                                    f"price is on record")]
    tol = ctx.options["tolerance"]
    if abs(listing.price.amount - expected.amount) <= tol:
        return [ctx.passed(master, listing, "price")]
    return [ctx.finding(master, listing, "price", Outcome.FAILED, Severity.CRITICAL,
                        expected=expected, actual=listing.price,
                        message=f"price {listing.price} differs from master {expected}")]
