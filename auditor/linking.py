"""Linking: decide which master record a listing shows.

Exact keys are tried in the configured order (sku, gtin, mpn with brand, url).
A key that points at several masters makes the link ambiguous: reported, never
guessed.
"""

from __future__ import annotations

import re
from typing import Any, Iterable, Mapping
from urllib.parse import urlsplit

from auditor.model import Link, LinkMethod, Listing, MasterRecord
from auditor.values import normalize_gtin


def norm_sku(s: str | None) -> str | None:
    """SKUs compare without case and surrounding or inner whitespace."""
    if not s:
        return None
    return re.sub(r"\s+", "", s).upper() or None


def norm_gtin(s: str | None) -> str | None:
    try:
        return normalize_gtin(s) if s else None
    except ValueError:
        return None


def norm_mpn(brand: str | None, mpn: str | None) -> str | None:
    if not mpn:
        return None
    m = re.sub(r"[\s\-_./]+", "", mpn).upper()
    b = re.sub(r"\W+", "", (brand or "")).upper()
    return f"{b}|{m}" if m else None


def norm_url(u: str | None) -> str | None:
    """Host and path, lowercase, no trailing slash, no query except a variant id."""
    if not u:
        return None
    p = urlsplit(u.strip())
    host = (p.hostname or "").lower().removeprefix("www.")
    path = p.path.rstrip("/").lower()
    variant = re.search(r"(?:^|&)variant=([^&]+)", p.query or "")
    return f"{host}{path}" + (f"?variant={variant.group(1)}" if variant else "")


class Linker:
    """Indexes the master once per run; ``link(listing)`` is then a few dict lookups."""

    def __init__(self, master: Mapping[str, MasterRecord], options: Mapping[str, Any]):
        self.master = master
        self.order = list(options.get("order") or ["sku", "gtin", "mpn", "url"])
        self.index: dict[str, dict[str, list[str]]] = {k: {} for k in ("sku", "gtin", "mpn", "url")}
        for sku, rec in master.items():
            self._add("sku", norm_sku(sku), sku)
            self._add("gtin", norm_gtin(rec.gtin), sku)
            self._add("mpn", norm_mpn(rec.brand, rec.mpn), sku)
            self._add("url", norm_url(rec.url), sku)

    def _add(self, kind: str, key: str | None, sku: str) -> None:
        if key:
            self.index[kind].setdefault(key, []).append(sku)

    def keys(self, li: Listing) -> Iterable[tuple[str, str | None]]:
        for kind in self.order:
            if kind == "sku":
                yield kind, norm_sku(li.sku)
            elif kind == "gtin":
                yield kind, norm_gtin(li.gtin)
            elif kind == "mpn":
                yield kind, norm_mpn(li.brand, li.mpn)
            elif kind == "url":
                yield kind, norm_url(li.url)

    def link(self, li: Listing) -> Link:
        """The link of one listing: exact keys in order, else unlinked (or ambiguous)."""
        for kind, key in self.keys(li):
            if not key:
                continue
            hits = self.index[kind].get(key)
            if not hits:
                continue
            if len(hits) == 1:
                return Link(li.channel, li.key, hits[0], LinkMethod(kind), 1.0)
            return Link(li.channel, li.key, None, LinkMethod.AMBIGUOUS, 0.0, tuple(hits[:10]))
        return Link(li.channel, li.key, None, LinkMethod.NONE, 0.0)
