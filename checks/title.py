"""Title check: the channel's title says what the master title says.

Benign channel adaptations pass: case, Unicode forms, HTML entities,
punctuation, spacing and trademark signs (normalization); truncation at a word
boundary within the channel's maximum length; the brand put in front. What is
left is scored with rapidfuzz and explained by a token-level diff.
"""

from __future__ import annotations

import re
from typing import Any

from rapidfuzz import fuzz

from auditor.check import CheckContext, check
from auditor.model import Listing, MasterRecord, Outcome, Severity
from auditor.options import Opt
from auditor.synonyms import COLOUR_WORDS, SIZE_WORDS
from auditor.text import normalize_title, token_diff
from auditor.checks._stale import stale_note, stale_until

_DIGIT = re.compile(r"\d")

# Title length limits of channels whose connector type is known (formats.md).
MAX_LENGTH_BY_TYPE = {"google_merchant": 150, "meta_catalog": 200, "amazon_listings": 200,
                      "ebay": 80}


def _settings(ctx: CheckContext) -> dict[str, Any]:
    max_len = ctx.option("max_length") or MAX_LENGTH_BY_TYPE.get(
        str(ctx.channel_options.get("type") or ""), 0)
    return {"warn": float(ctx.option("warn_below")), "fail": float(ctx.option("fail_below")),
            "max_length": int(max_len), "brand_prefix": bool(ctx.option("brand_prefix")),
            "numbers": bool(ctx.option("numbers_must_match"))}


def _benign(a: str, b: str, raw_len: int, brand: str | None, cfg: dict[str, Any],
            master_len: int) -> str | None:
    """None when ``b`` is ``a`` up to allowed adaptations, else ``b`` as compared.

    ``brand`` is the master's brand as given; it is normalized only when needed.
    ``master_len`` is the length of the master title as given.
    """
    if b == a or _truncated(a, b, raw_len, master_len, cfg):
        return None
    if cfg["brand_prefix"] and brand and (brand := normalize_title(brand)) and \
            b.startswith(brand + " "):
        rest = b[len(brand) + 1:]
        if rest == a or _truncated(a, rest, raw_len, master_len, cfg):
            return None
        if not a.startswith(brand + " "):
            return rest  # compare without the brand the channel put in front
    return b


def _truncated(a: str, b: str, raw_len: int, master_len: int, cfg: dict[str, Any]) -> bool:
    """``b`` is ``a`` cut at a word boundary because the master title does not fit the
    channel's length limit (and the cut one does). A prefix of a master title that
    fits is not a truncation: the words it drops are a title difference."""
    limit = cfg["max_length"]
    return bool(limit) and master_len > limit >= raw_len and bool(b) and \
        a.startswith(b + " ")


def _variant_words(missing: list[str], master: MasterRecord) -> list[str]:
    """The dropped words that tell a variant apart: colours and sizes (the master's own
    colour and size values included)."""
    own: set[str] = set()
    for name in ("color", "colour", "size"):
        v = master.attributes.get(name) if master.attributes else None
        if v:
            own.update(normalize_title(v).split())
    return [t for t in missing if t in COLOUR_WORDS or t in SIZE_WORDS or t in own]


@check("title", fields=("title",), options=(
    Opt("warn_below", float, 95.0, "Similarity (0-100) under which a title is a warning."),
    Opt("fail_below", float, 85.0, "Similarity (0-100) under which a title is a failure."),
    Opt("max_length", int, 0, "Longest title the channel accepts. A master title longer than "
        "this may be cut at a word boundary to fit; a prefix of a master title that fits is "
        "a title difference (dropped colour or size words at least a warning naming them). "
        "0: by connector type (Google 150, Meta/Amazon 200, eBay 80), else no truncation "
        "allowed."),
    Opt("brand_prefix", bool, True, "Accept the brand put in front of the master title."),
    Opt("numbers_must_match", bool, True, "A differing number (size, capacity, model) is at "
        "least a warning, however similar the rest."),
))
def title_check(master: MasterRecord | None, listing: Listing | None, ctx: CheckContext):
    """Compare the listing title with the master title (or the title approved for the channel)."""
    if master is None or listing is None:
        return ()
    actual = listing.title
    if actual is not None and actual == (master.overrides and master.override(ctx.channel, "title")
                                         or master.title):
        return ctx.cache.get("ok:title") or ctx.ok("title")
    raw = master.overrides and master.override(ctx.channel, "title") or master.title
    if not raw:
        return ()
    a = normalize_title(raw)  # cached: every channel compares with the same master titles
    variant = listing.attributes.get("variant_title") if listing.attributes and actual else None
    if variant and variant != "Default Title":
        # Shopify shows the product title and the variant's options apart
        # ("Chinos" + "Orange / XL"); together they are the variant's title.
        actual = f"{actual} {variant}"
    if not actual:
        return [ctx.finding(master, listing, "title", Outcome.FAILED, Severity.MAJOR,
                            expected=raw, actual=None, message="listing has no title")]
    cfg = ctx.cache.get(_settings) or ctx.prepared(_settings)
    b = _benign(a, normalize_title(actual), len(actual.strip()), master.brand, cfg, len(raw.strip()))
    if b is None:
        return [ctx.passed(master, listing, "title")]
    missing, extra = token_diff(a, b)
    score = round(fuzz.ratio(a, b), 1)
    until = stale_until(ctx, master.sku, lambda r: r.override(ctx.channel, "title") or r.title,
                        lambda old: _benign(normalize_title(old), b, len(actual.strip()),
                                            "", cfg, len(old.strip())) is None)
    if until is not None:
        note, details = stale_note("title", until)
        return [ctx.finding(master, listing, "title", Outcome.FAILED, Severity.MAJOR,
                            expected=raw, actual=actual, score=score, message=note,
                            missing_tokens=missing, extra_tokens=extra, **details)]
    numbers_differ = cfg["numbers"] and _DIGIT.search(" ".join(missing + extra)) is not None
    dropped = _variant_words(missing, master)
    if score >= cfg["warn"] and not numbers_differ and not dropped:
        return [ctx.passed(master, listing, "title")]
    if score < cfg["fail"]:
        outcome, sev = Outcome.FAILED, Severity.MAJOR
    else:
        outcome, sev = Outcome.WARN, Severity.MINOR
    diff = ", ".join([f"-{t}" for t in missing] + [f"+{t}" for t in extra])
    why = f"title differs from master (similarity {score:.0f}%"
    why += f"; numbers differ: {diff})" if numbers_differ else f"; {diff})"
    details = {}
    if dropped:
        why += f"; drops colour/size words: {', '.join(dropped)}"
        details["dropped_variant_words"] = dropped
    return [ctx.finding(master, listing, "title", outcome, sev, expected=raw, actual=actual,
                        score=score, message=why, missing_tokens=missing, extra_tokens=extra,
                        **details)]
