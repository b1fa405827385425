"""Price check: exact money, the right currency, tax and rounding of the channel, sale windows.

Amounts are Decimals end to end. The expected amount is the master price in
the listing's currency (``price_<CUR>`` columns), times ``1 + vat_rate`` on a
tax-inclusive channel, rounded by the channel's rule. A sale price is expected
only while its window is open at ``ctx.now``.
"""

from __future__ import annotations

from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from auditor.check import CheckContext, check
from auditor.model import CURRENCY_MINOR_UNITS, Listing, MasterRecord, Money, Outcome, Severity
from auditor.options import Opt
from auditor.values import parse_money
from auditor.checks._stale import stale_note, stale_until

ROUNDINGS = ("half_up", "none", "whole", "nearest_99")
_ONE = Decimal(1)
_CENT = Decimal("0.01")
_QUANTUM = {cur: _ONE.scaleb(-e) for cur, e in CURRENCY_MINOR_UNITS.items()}


def round_price(amount: Decimal, currency: str, rule: str) -> Decimal:
    """``amount`` rounded by a channel rule.

    half_up: to the currency's minor unit; whole: to whole units; nearest_99:
    to the nearest price ending in .99 (19.99, 24.99); none: unchanged.
    """
    if rule == "none":
        return amount
    if rule == "whole":
        return amount.quantize(_ONE, rounding=ROUND_HALF_UP)
    if rule == "nearest_99":
        return (amount + _CENT).quantize(_ONE, rounding=ROUND_HALF_UP) - _CENT
    return amount.quantize(_QUANTUM[currency], rounding=ROUND_HALF_UP)


def vat_rate(value: Any) -> Decimal:
    """A VAT rate: a fraction between 0 and 1 (0.19) or a percentage string ("19%").

    ``19`` is refused: read as a fraction it would make prices twenty times too high."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"expected a fraction such as 0.19 or a string such as \"19%\", "
                         f"got {value!r}")
    text = str(value).strip()
    try:
        rate = Decimal(text[:-1].strip()) / 100 if text.endswith("%") else Decimal(text)
    except ArithmeticError:
        raise ValueError(f"expected a fraction such as 0.19 or a string such as \"19%\", "
                         f"got {value!r}") from None
    if not 0 < rate < 1:
        hint = f" (for {text}% write \"{text}%\" or {Decimal(text) / 100})" \
            if not text.endswith("%") and rate >= 1 else ""
        raise ValueError(f"expected a fraction between 0 and 1 or a percentage such as "
                         f"\"19%\", got {value!r}{hint}")
    return rate


def percent(rate: Decimal) -> str:
    """0.19 -> '19%', 0.077 -> '7.7%'."""
    return f"{format((rate * 100).normalize(), 'f')}%"


def _settings(ctx: CheckContext) -> dict[str, Any]:
    ch = ctx.channel_options
    tax = ctx.option("tax_inclusive") or bool(ch.get("tax_inclusive"))
    vat = ctx.option("vat_rate")
    if vat is None:
        vat = ch.get("vat_rate")
    vat = Decimal(str(vat or 0))
    return {"tol": ctx.option("tolerance"), "pct": ctx.option("tolerance_pct") / 100,
            "factor": (1 + vat) if tax else None, "vat": vat, "rounding": ctx.option("rounding"),
            "currency": ctx.option("currency") or ch.get("currency"),
            "regular_only": _regular_only(ctx),
            "plain": not tax and ctx.option("rounding") in ("half_up", "none"),
            # Expected amount by (master amount, currency): a catalog has few price points.
            "expected": {},
            # On a tax-inclusive channel: the gross amounts a net master amount may show
            # as, given it was itself rounded to the minor unit, by expected amount.
            "ranges": {},
            "ok": ctx.ok("price"),
            "ok_both": (ctx.passed(None, None, "price"), ctx.passed(None, None, "sale_price"))}


# Connector types whose one price is the regular price, sales living elsewhere: an Amazon
# listing report's `price` is the seller's standard price; a sale price set on Amazon is in
# no listing report (formats.md section 3).
REGULAR_PRICE_ONLY_TYPES = frozenset({"amazon_listings"})


def _regular_only(ctx: CheckContext) -> bool:
    v = ctx.option("regular_price_only")
    if v is None:
        return str(ctx.channel_options.get("type") or "") in REGULAR_PRICE_ONLY_TYPES
    return bool(v)


def _expect(m: Money | None, cfg: dict[str, Any]) -> Decimal | None:
    """The amount a channel should show for a master amount."""
    if m is None:
        return None
    key = (m.amount, m.currency)
    known = cfg["expected"]
    hit = known.get(key)
    if hit is None:
        factor = cfg["factor"]
        amount = m.amount if factor is None else m.amount * factor
        hit = round_price(amount, m.currency, cfg["rounding"])
        if len(known) >= 100_000:
            known.clear()
            cfg["ranges"].clear()
        known[key] = hit
        if factor is not None:
            # The net amount stands for anything within half a minor unit of it: the
            # gross a channel computed from the unrounded net lies in this range.
            half = _QUANTUM[m.currency] / 2
            lo = round_price((m.amount - half) * factor, m.currency, cfg["rounding"])
            hi = round_price((m.amount + half) * factor, m.currency, cfg["rounding"])
            was = cfg["ranges"].get((hit, m.currency))
            cfg["ranges"][(hit, m.currency)] = (lo, hi) if was is None else \
                (min(lo, was[0]), max(hi, was[1]))
    return hit


def _override(master: MasterRecord, channel: str, name: str, currency: str) -> Money | None:
    raw = master.override(channel, name)
    if not raw:
        return None
    try:
        m = parse_money(raw, currency)
    except ValueError:
        return None
    return m if m.currency == currency else None


def _expected(ctx: CheckContext):
    cfg = ctx.cache.get(_settings) or ctx.prepared(_settings)
    channel, now = ctx.channel, ctx.now

    def build(master: MasterRecord, currency: str) -> tuple[Any, ...]:
        ov = master.overrides
        reg = ov and _override(master, channel, "price", currency) or master.price_in(currency)
        sale = None
        if master.sale_active(now):
            sale = ov and _override(master, channel, "sale_price", currency) or \
                master.sale_price_in(currency)
        # The sale price out of its window, to recognise a channel still showing it.
        idle = None if sale is not None or master.sale_price is None else \
            master.sale_price_in(currency)
        return _expect(reg, cfg), _expect(sale, cfg), _expect(idle, cfg)

    return build


def _close(a: Decimal, b: Decimal, cfg: dict[str, Any], currency: str) -> bool:
    """Equal within tolerance; money compares in minor units (0.005 EUR shows as 0.01)."""
    if a == b:
        return True
    if abs(a - b) <= max(cfg["tol"], cfg["pct"] * abs(b)):
        return True
    if round_price(a, currency, "half_up") == round_price(b, currency, "half_up"):
        return True
    span = cfg["ranges"].get((b, currency)) if cfg["factor"] is not None else None
    return span is not None and span[0] <= a <= span[1]


def _shows_sale(li: Listing, now: datetime) -> bool:
    """The listing shows a sale price in force: without a window, or inside its window."""
    return li.sale_price is not None and (
        (li.sale_start is None or now >= li.sale_start) and
        (li.sale_end is None or now < li.sale_end))


def _window(master: MasterRecord) -> str:
    a = master.sale_start.date().isoformat() if master.sale_start else "open"
    b = master.sale_end.date().isoformat() if master.sale_end else "open"
    return f"{a} to {b}"


def _mismatch(ctx: CheckContext, master: MasterRecord, listing: Listing, field: str,
              shown: Money, expected: Decimal, cfg: dict[str, Any]):
    """A failed price comparison, saying whether the shown value is an earlier master value."""
    cur = shown.currency
    getter = (lambda r: r.price_in(cur)) if field == "price" else (lambda r: r.sale_price_in(cur))
    until = stale_until(ctx, master.sku, getter,
                        lambda old: (e := _expect(old, cfg)) is not None
                        and _close(shown.amount, e, cfg, cur))
    exp, act = str(Money(expected, cur)), str(shown)
    word = "price" if field == "price" else "sale price"
    said = exp
    if cfg["factor"] is not None:
        net = _net(ctx, master, field, cur)
        if net is not None:
            said = f"{net} net, {exp} with {percent(cfg['vat'])} VAT"
    if until is not None:
        note, details = stale_note(word, until)
        msg = f"{word} {act} differs from master {said}: {note}"
    else:
        details = {}
        msg = f"{word} {act} differs from master {said}"
    if cfg["factor"] is not None:
        details["vat_rate"] = str(cfg["vat"])
    sev = Severity.CRITICAL if field == "price" else Severity.MAJOR
    return ctx.finding(master, listing, field, Outcome.FAILED, sev, expected=exp, actual=act,
                       message=msg, **details)


def _net(ctx: CheckContext, master: MasterRecord, field: str, cur: str) -> Money | None:
    """The master's own (net) amount behind an expected gross amount."""
    ov = master.overrides and _override(master, ctx.channel, field, cur)
    if ov:
        return ov
    return master.price_in(cur) if field == "price" else master.sale_price_in(cur)


@check("price", fields=("price", "sale_price"), options=(
    Opt("tolerance", Decimal, Decimal("0"), "Absolute difference accepted, in currency units."),
    Opt("tolerance_pct", Decimal, Decimal("0"), "Relative difference accepted, in percent of "
        "the expected price (the larger of both tolerances applies)."),
    Opt("tax_inclusive", bool, False, "The channel shows prices with VAT: expected = master x "
        "(1 + vat_rate), then rounded."),
    Opt("vat_rate", vat_rate, None, "VAT rate of a tax-inclusive channel: a fraction (0.19) "
        "or a percentage string (\"19%\"); 19 is refused. A gross price within the rounding "
        "of net x (1 + vat_rate) passes."),
    Opt("rounding", str, "half_up", "How the channel rounds computed prices: half_up (minor unit),"
        " none, whole (whole units), nearest_99 (nearest .99 ending).", choices=ROUNDINGS),
    Opt("currency", str, None, "Currency the channel must sell in (default: the channel's "
        "currency option; unset: any currency the master has a price for)."),
    Opt("regular_price_only", bool, None, "The channel's one price is its regular price and "
        "its source never shows a sale price (an Amazon listing report's standard price): a "
        "sale in force it does not show is not evaluated. Unset: true for amazon_listings."),
))
def price_check(master: MasterRecord | None, listing: Listing | None, ctx: CheckContext):
    """Compare the listing's price (and sale price) with the master's."""
    if master is None or listing is None or master.price is None:
        return []
    shown = listing.price
    cfg = ctx.cache.get(_settings) or ctx.prepared(_settings)
    # Fast path, without overrides: the listing shows exactly what is expected, with no
    # sale in force and none shown (or one shown outside its window), or with the sale
    # in force shown as the only price or beside the regular one. Everything else,
    # these cases included, is settled by compare_price (property-tested to agree).
    if shown is not None and not master.overrides and cfg["currency"] in (None, shown.currency):
        cur = shown.currency
        mp = master.price_in(cur)
        if mp is not None:
            reg = mp.amount if cfg["plain"] else _expect(mp, cfg)
            ls = listing.sale_price
            shows_sale = _shows_sale(listing, ctx.now)
            if master.sale_price is None or not master.sale_active(ctx.now):
                if not shows_sale and shown.amount == reg:
                    return cfg["ok"]
            else:
                sp = master.sale_price_in(cur)
                if sp is not None:
                    sale = sp.amount if cfg["plain"] else _expect(sp, cfg)
                    if (ls is None and shown.amount == sale) or \
                            (shows_sale and ls is not None and ls.amount == sale
                             and shown.amount == reg):
                        return cfg["ok_both"]
    return compare_price(master, listing, ctx)


def compare_price(master: MasterRecord, listing: Listing, ctx: CheckContext) -> list:
    """The price check's general path: every case, each outcome explained."""
    shown = listing.price
    if shown is None:
        return [ctx.finding(master, listing, "price", Outcome.NOT_EVALUATED, Severity.INFO,
                            expected=master.price, message="listing shows no price")]
    cfg = ctx.cache.get(_settings) or ctx.prepared(_settings)
    cur = shown.currency
    want_cur = cfg["currency"]
    reg, sale, idle = ctx.prepared(_expected)(master, cur) if cur == want_cur or \
        not want_cur else (None, None, None)
    if reg is None:
        why = (f"listing is priced in {cur}, the channel sells in {want_cur}" if want_cur and
               cur != want_cur else f"listing is priced in {cur}, master in "
               f"{master.price.currency if master.price else '(none)'} and no {cur} price is "
               "on record")
        return [ctx.finding(master, listing, "price", Outcome.FAILED, Severity.CRITICAL,
                            expected=master.price, actual=shown, message=why,
                            currency_mismatch=True)]
    amount = shown.amount
    ls = listing.sale_price
    shows_sale = _shows_sale(listing, ctx.now)
    if sale is None and not shows_sale:
        if amount == reg or _close(amount, reg, cfg, cur):
            return [ctx.passed(master, listing, "price")]
        if idle is not None and _close(amount, idle, cfg, cur):
            return [ctx.finding(master, listing, "sale_price", Outcome.FAILED, Severity.MAJOR,
                                expected=Money(reg, cur), actual=shown,
                                message=f"shows the sale price {shown} outside its window "
                                        f"({_window(master)})")]
        return [_mismatch(ctx, master, listing, "price", shown, reg, cfg)]
    out = []
    if sale is None:  # the channel shows a sale the master does not have now
        out.append(ctx.finding(master, listing, "sale_price", Outcome.FAILED, Severity.MAJOR,
                               expected=None, actual=ls,
                               message=f"shows sale price {ls} while no sale is in force" +
                                       (f" (window {_window(master)})"
                                        if master.sale_price is not None else "")))
    elif shows_sale and ls is not None:
        out.append(ctx.passed(master, listing, "sale_price") if _close(ls.amount, sale, cfg, cur)
                   else _mismatch(ctx, master, listing, "sale_price", ls, sale, cfg))
    elif _close(amount, sale, cfg, cur):  # one price shown, and it is the sale price
        return [ctx.passed(master, listing, "price"), ctx.passed(master, listing, "sale_price")]
    elif _close(amount, reg, cfg, cur) and cfg["regular_only"]:
        return [ctx.passed(master, listing, "price"),
                ctx.finding(master, listing, "sale_price", Outcome.NOT_EVALUATED, Severity.INFO,
                            expected=Money(sale, cur), actual=None,
                            message=f"sale price {Money(sale, cur)} in force ({_window(master)}) "
                                    f"not compared: this channel's source shows only the "
                                    f"regular price (regular_price_only)")]
    elif _close(amount, reg, cfg, cur):
        return [ctx.passed(master, listing, "price"),
                ctx.finding(master, listing, "sale_price", Outcome.FAILED, Severity.MAJOR,
                            expected=Money(sale, cur), actual=None,
                            message=f"sale price {Money(sale, cur)} in force ({_window(master)}) "
                                    f"is missing; the channel shows the regular price")]
    out.append(ctx.passed(master, listing, "price") if _close(amount, reg, cfg, cur)
               else _mismatch(ctx, master, listing, "price", shown, reg, cfg))
    return out
