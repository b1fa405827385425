"""Attributes check: colour, size, material, dimensions and weight tell the same truth.

Channel attribute names map onto master attribute names (``field_map``).
Values compare after folding case and spacing; numbers with units compare in
base units (pint), colours and sizes through synonym tables, and multi-valued
values ("Red/Blue", "cotton, elastane") as sets.
"""

from __future__ import annotations

import re
from operator import itemgetter
from typing import Any

from auditor.check import CheckContext, check
from auditor.model import Listing, MasterRecord, Outcome, Severity
from auditor.options import Opt
from auditor.synonyms import (COLOUR_SYNONYMS, SIZE_SYNONYMS, SynonymTable, fold,
                               synonym_groups, table)
from auditor.units import parse_quantity, same_quantity
from auditor.checks._stale import stale_note, stale_until

DEFAULT_FIELD_MAP = {"product_weight": "weight", "product_length": "length",
                     "product_width": "width", "product_height": "height",
                     "color": "color", "size": "size", "material": "material"}
# Attribute names that are one thing spelt two ways, tried when the mapped one is absent.
_ALIASES = {"color": "colour", "colour": "color"}
# Listing attributes that are bookkeeping of the connector, not product facts.
_SKIP = frozenset({"additional_gtins", "gtin_raw", "shipping", "variant_title"})
_MULTI = re.compile(r"\s*[|/,;]\s*")
_PLAIN = SynonymTable()


def _kind(name: str) -> str:
    n = name.lower()
    if n in ("color", "colour") or n.endswith(("_color", "_colour")):
        return "colour"
    if n == "size" or n.endswith("_size"):
        return "size"
    return "plain"


def _settings(ctx: CheckContext) -> dict[str, Any]:
    fmap = dict(DEFAULT_FIELD_MAP)
    fmap.update({str(k).lower(): str(v) for k, v in (ctx.option("field_map") or {}).items()})
    tables = {"colour": table(COLOUR_SYNONYMS, ctx.option("colour_synonyms")),
              "size": table(SIZE_SYNONYMS, ctx.option("size_synonyms")), "plain": _PLAIN}
    only = ctx.option("only")
    return {"map": fmap, "tables": tables, "tol": float(ctx.option("unit_tolerance")),
            "only": set(only) if only else None, "ignore": set(ctx.option("ignore") or ()),
            "caches": {k: {} for k in tables}, "plans": {}, "pairs": {}}


def _values(value: str, syn: SynonymTable) -> frozenset[str]:
    return frozenset(syn.canonical(v) for v in _MULTI.split(value.strip()) if v)


def _match(expected: str, actual: str, syn: SynonymTable, tol: float) -> bool:
    if fold(expected) == fold(actual):
        return True
    qa = parse_quantity(expected)
    if qa is not None:
        qb = parse_quantity(actual)
        if qb is not None:
            return same_quantity(qa, qb, tol)
    return _values(expected, syn) == _values(actual, syn)


def values_match(expected: str, actual: str, syn: SynonymTable, tol: float,
                 cache: dict | None = None) -> bool:
    """Whether a channel's attribute value says the same as the master's.

    ``cache`` (one per run and table) remembers pairs: catalogs repeat the
    same few spellings ("Grey"/"Gray") on thousands of listings.
    """
    if expected == actual:
        return True
    if cache is None:
        return _match(expected, actual, syn, tol)
    key = (expected, actual)
    hit = cache.get(key)
    if hit is None:
        if len(cache) > 200_000:
            cache.clear()
        hit = cache[key] = _match(expected, actual, syn, tol)
    return hit


def _master_name(master: MasterRecord, channel_name: str, fmap: dict[str, str]) -> str | None:
    name = fmap.get(channel_name, channel_name)
    if name in master.attributes:
        return name
    alt = _ALIASES.get(name)
    return alt if alt in master.attributes else None


def _plan(cfg: dict[str, Any], ctx: CheckContext, cname: str) -> tuple | None:
    """How a channel attribute is compared: master name and alias (each with its passed
    finding, None when excluded by only/ignore), synonym table and pair cache."""
    plan = None
    if cname not in _SKIP:
        name = cfg["map"].get(cname, cname)
        alt = _ALIASES.get(name)

        def usable(n: str | None) -> str | None:
            if n is None or n in cfg["ignore"] or (cfg["only"] and n not in cfg["only"]):
                return None
            return n

        name, alt = usable(name), usable(alt)
        if name or alt:
            kind = _kind(name or alt or "")
            plan = (name, ctx.passed(None, None, name) if name else None,
                    alt, ctx.passed(None, None, alt) if alt else None,
                    cfg["tables"][kind], cfg["caches"][kind])
    cfg["plans"][cname] = plan
    return plan


def _pair_plan(cfg: dict[str, Any], ctx: CheckContext,
               pair: tuple[tuple[str, ...], tuple[str, ...]]) -> tuple:
    """For a listing's and a master's attribute names: getters of the shown and the
    expected values compared, their passed outcomes, and the steps comparing them
    one by one (master name, alias, synonym table, pair cache per channel name)."""
    names, master_names = pair
    plans = cfg["plans"]
    steps = [(cname, *p) for cname in names
             if (p := plans[cname] if cname in plans else _plan(cfg, ctx, cname))
             and (p[0] in master_names or p[2] in master_names)]
    cnames, mnames, oks = [], [], []
    for cname, name, ok, alt, ok_alt, _syn, _cache in steps:
        if name in master_names:
            cnames.append(cname)
            mnames.append(name)
            oks.append(ok)
        else:
            cnames.append(cname)
            mnames.append(alt)
            oks.append(ok_alt)
    if not oks:
        return None, None, (), ()
    return itemgetter(*cnames), itemgetter(*mnames), tuple(oks), steps


@check("attributes", fields=("color", "size", "material", "weight", "length", "width",
                             "height"), options=(
    Opt("field_map", dict, {}, "Channel attribute = master attribute, added to the defaults "
        "(product_weight/length/width/height -> weight/length/width/height, color, size, "
        "material)."),
    Opt("unit_tolerance", float, 0.01, "Relative difference accepted between quantities with "
        "units after conversion (0.01 = 1%)."),
    Opt("colour_synonyms", synonym_groups, [], "Further colour synonym groups, e.g. "
        "[[\"grey\", \"charcoal\"]]; they join the built-in ones."),
    Opt("size_synonyms", synonym_groups, [], "Further size synonym groups, e.g. "
        "[[\"xl\", \"44\"]]."),
    Opt("only", list, [], "Compare only these master attributes (empty: every shared one)."),
    Opt("ignore", list, [], "Master attributes never compared."),
))
def attributes_check(master: MasterRecord | None, listing: Listing | None, ctx: CheckContext):
    """Compare each attribute the listing shows with the master's value."""
    if master is None or listing is None or not listing.attributes or not master.attributes:
        return []
    cfg = ctx.cache.get(_settings) or ctx.prepared(_settings)
    attrs, mattrs = listing.attributes, master.attributes
    # Rows of a feed share a few attribute-name patterns, and so do master records:
    # each pair of patterns is planned once. The values it compares are fetched at
    # once, and when all are equal (and not empty) the answer is the pair's shared
    # passed outcomes; otherwise its steps compare one by one.
    pair = (tuple(attrs), tuple(mattrs))
    plan = cfg["pairs"].get(pair)
    if plan is None:
        plan = _pair_plan(cfg, ctx, pair)
        if len(cfg["pairs"]) < 1000:  # a feed has a few column patterns, not thousands
            cfg["pairs"][pair] = plan
    shown_values, expected_values, oks, steps = plan
    if not steps:  # nothing the channel shows is a master attribute
        return ()
    got = shown_values(attrs)
    if got == expected_values(mattrs) and (got if len(oks) == 1 else all(got)):
        return oks
    tol = cfg["tol"]
    out: list[Any] = []
    append = out.append
    for cname, name, ok, alt, ok_alt, syn, cache in steps:
        shown = attrs[cname]
        expected = mattrs.get(name)
        if expected is None:
            if alt is None:
                continue
            name, ok, expected = alt, ok_alt, mattrs.get(alt)
            if expected is None:
                continue
        if expected == shown:
            if shown:
                append(ok)
        elif not shown or not expected:
            continue
        elif values_match(expected, shown, syn, tol, cache):
            append(ok)
        else:
            append(_mismatch(ctx, master, listing, name, cname, expected, shown, syn, tol))
    return out


def _mismatch(ctx: CheckContext, master: MasterRecord, listing: Listing, name: str, cname: str,
              expected: str, shown: str, syn: SynonymTable, tol: float):
    """A failed attribute, saying whether the channel shows an earlier master value."""
    until = stale_until(ctx, master.sku, lambda r: r.attributes.get(name),
                        lambda old: values_match(old, shown, syn, tol))
    details: dict[str, Any] = {"channel_attribute": cname}
    msg = f"{name} {shown!r} differs from master {expected!r}"
    qa, qb = parse_quantity(expected), parse_quantity(shown)
    if qa is not None and qb is not None and qa.dim and qb.dim:
        details["units"] = True
        if qa.dim != qb.dim:
            msg += " (different kinds of unit)"
    if until is not None:
        note, sd = stale_note(name, until)
        msg += f": {note}"
        details.update(sd)
    return ctx.finding(master, listing, name, Outcome.FAILED, Severity.MAJOR,
                       expected=expected, actual=shown, message=msg, **details)
