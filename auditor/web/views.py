"""What each page of the web UI shows, prepared from the store (no HTML here).

The templates only lay these contexts out, with autoescaping on; channel text never
reaches the page unescaped, and a URL becomes a link only when it is http(s).
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Iterable, Mapping, Sequence
from urllib.parse import urlsplit

from auditor.model import Listing, MasterRecord
from auditor.storage.records import FindingRecord, ProductListing

SEVERITIES = ("critical", "major", "minor", "info")
STATES = ("open", "acknowledged", "snoozed", "resolved")
SORTS = ("impact", "age", "newest", "sku")
PAGE_SIZE = 50
_TOKEN = re.compile(r"\S+")


def safe_url(url: str | None) -> str | None:
    """``url`` when it may be a link or image source (http or https), else None: a
    channel's ``javascript:`` or ``data:`` value is shown as text, never followed."""
    if not url or not isinstance(url, str):
        return None
    try:
        scheme = urlsplit(url.strip()).scheme.lower()
    except ValueError:
        return None
    return url.strip() if scheme in ("http", "https") else None


def word_diff(master: str | None, shown: str | None) -> list[tuple[str, bool]]:
    """``shown`` as (word, differs) pairs against ``master``: the words a channel
    changed or added are marked (case-insensitively compared)."""
    if not shown:
        return []
    a = _TOKEN.findall(master or "")
    b = _TOKEN.findall(shown)
    sm = difflib.SequenceMatcher(a=[_norm(w) for w in a], b=[_norm(w) for w in b],
                                 autojunk=False)
    out: list[tuple[str, bool]] = []
    for op, _, _, j1, j2 in sm.get_opcodes():
        out += [(w, op != "equal") for w in b[j1:j2]]
    return out


def missing_words(master: str | None, shown: str | None) -> list[str]:
    """Master words the channel's title leaves out."""
    a = _TOKEN.findall(master or "")
    b = {_norm(w) for w in _TOKEN.findall(shown or "")}
    return [w for w in a if _norm(w) not in b]


def _norm(word: str) -> str:
    """A word as compared: case and surrounding punctuation ("Grey," = "grey") ignored."""
    return word.strip(",.;:!?()[]{}\"'").casefold()


@dataclass
class Filters:
    """The inbox's filters, from the query string (unknown values dropped, and named in
    ``ignored`` so the page can say so: a bookmark with a renamed channel must not look
    like a filtered list)."""

    channels: list[str] = field(default_factory=list)
    checks: list[str] = field(default_factory=list)
    severities: list[str] = field(default_factory=list)
    states: list[str] = field(default_factory=lambda: ["open"])
    text: str = ""
    sort: str = "impact"
    page: int = 1
    ignored: list[str] = field(default_factory=list)  # "channel 'old-shop'", ...

    @classmethod
    def parse(cls, q: Mapping[str, Sequence[str]], channels: Iterable[str],
              checks: Iterable[str]) -> "Filters":
        known_ch, known_ck = set(channels), set(checks)
        ignored: list[str] = []

        def pick(name: str, allowed: Iterable[str]) -> list[str]:
            allowed = set(allowed)
            ignored.extend(f"{name} {v[:80]!r}" for v in q.get(name, []) if v not in allowed)
            return [v for v in q.get(name, []) if v in allowed]

        states = pick("state", STATES) if "state" in q else ["open"]
        text = (q.get("q") or [""])[0].strip()[:200]
        sort = (q.get("sort") or ["impact"])[0]
        if sort not in SORTS:
            ignored.append(f"sort {sort[:80]!r}")
        raw_page = (q.get("page") or ["1"])[0]
        try:
            page = max(1, min(10_000, int(raw_page)))
        except ValueError:
            ignored.append(f"page {raw_page[:80]!r}")
            page = 1
        return cls(pick("channel", known_ch), pick("check", known_ck),
                   pick("severity", SEVERITIES), states, text,
                   sort if sort in SORTS else "impact", page, ignored)

    def query(self, **change: Any) -> list[tuple[str, str]]:
        """The query string pairs of these filters, with ``change`` applied."""
        d = {"channel": self.channels, "check": self.checks, "severity": self.severities,
             "state": self.states, "q": [self.text] if self.text else [],
             "sort": [self.sort], "page": [str(self.page)]}
        for k, v in change.items():
            d[k] = v if isinstance(v, list) else [str(v)]
        return [(k, v) for k, vs in d.items() for v in vs]


def inbox(store: Any, f: Filters) -> dict[str, Any]:
    """The findings inbox: incidents on top, then one page of findings."""
    from auditor.reports.weekly import incidents

    page = store.search_findings(f.channels, f.checks, f.severities, f.states, f.text or None,
                                 f.sort, PAGE_SIZE, (f.page - 1) * PAGE_SIZE)
    # Incidents (one cause, many SKUs) over the open findings of the filters in view.
    scope = store.search_findings(f.channels, f.checks, f.severities, ["open"], None,
                                  "impact", 5000, 0).findings
    groups = incidents([_as_open(x) for x in scope], limit=5)
    titles = _titles(store, {x.sku for x in page.findings if x.sku})
    rows = [{"f": x, "title": titles.get(x.sku or "", "")} for x in page.findings]
    pages = max(1, -(-page.total // PAGE_SIZE))
    # an empty list says why when the store has no run, or its latest did not complete
    # (a first `auditor serve` before any audit: not "no finding matches these filters")
    latest = store.runs(1) if not page.total else []
    return {"rows": rows, "total": page.total, "page": f.page, "pages": pages,
            "incidents": groups, "filters": f, "no_run": not page.total and not latest,
            "latest_run": latest[0] if latest else None}


def shown_state(f: FindingRecord, now: datetime | None = None) -> str:
    """The state people see, as the inbox's state filter (and `auditor findings`) names it:
    resolved, not_evaluated, acknowledged, snoozed or open (the store keeps "open" for all
    but resolved, with the acknowledgement and snooze beside it)."""
    if f.state == "resolved":
        return "resolved"
    if f.outcome == "not_evaluated":
        return "not_evaluated"
    if f.ack_at is not None:
        return "acknowledged"
    if f.snoozed_until is not None and f.snoozed_until > (now or datetime.now(timezone.utc)):
        return "snoozed"
    return f.state


def _as_open(x: FindingRecord) -> Any:
    from auditor.storage.records import OpenFinding

    return OpenFinding(x.fingerprint, x.check, x.channel, x.sku, x.listing_key, x.field,
                       x.outcome, x.severity, x.expected, x.actual, x.message, x.details,
                       x.first_seen_at)


def _titles(store: Any, skus: Iterable[str]) -> dict[str, str]:
    out = {}
    for sku in skus:
        m = store.master_for(sku)
        if m is not None and m.title:
            out[sku] = m.title
    return out


def _money(m: Any) -> str | None:
    return None if m is None else f"{m.amount} {m.currency}"


def _field_rows(master: MasterRecord | None, listing: Listing | None) -> dict[str, Any]:
    src: Any = listing if listing is not None else master
    if src is None:
        return {}
    return {
        "price": _money(src.price), "sale_price": _money(src.sale_price),
        "sale_window": (f"{src.sale_start:%Y-%m-%d %H:%M} – {src.sale_end:%Y-%m-%d %H:%M}"
                        if src.sale_start and src.sale_end else
                        f"from {src.sale_start:%Y-%m-%d %H:%M}" if src.sale_start else
                        f"until {src.sale_end:%Y-%m-%d %H:%M}" if src.sale_end else None),
        "availability": _master_stock(src) if listing is None else
                        (str(src.availability) if src.availability else None),
        "quantity": src.quantity,
        "gtin": src.gtin, "mpn": src.mpn, "brand": src.brand,
    }


def _master_stock(master: MasterRecord) -> str | None:
    """The master's stock state as the availability check reads it: from its quantity when
    it has one (safety stock 0), else its availability."""
    from auditor.checks.availability import master_state

    state = master_state(master, 0)
    if state is None:
        return None
    derived = master.quantity is not None and state != master.availability
    return f"{state} (from quantity)" if derived else str(state)


def product(store: Any, sku: str, image_check_off: Iterable[str] = ()) -> dict[str, Any] | None:
    """The master record next to every channel's listing of ``sku``. ``image_check_off``:
    the channels whose image check is disabled (their images are shown, never judged)."""
    master = store.master_for(sku)
    listings: list[ProductListing] = store.product_listings(sku)
    findings = store.findings(sku=sku)
    if master is None and not listings:
        # An SKU no master record has: the listings that show it, unlinked (orphans),
        # as their findings name them (the inbox links them here).
        for key in dict.fromkeys((x.channel, x.listing_key) for x in findings
                                 if x.listing_key):
            ls = store.listing(*key)
            if ls is not None:
                listings.append(ProductListing(key[0], key[1], ls, None, None, False,
                                               None, None))
        if not listings:
            return None
    # Unresolved findings by (channel, listing, field): a difference found (open_by) or a
    # comparison that could not be made (unchecked: an image not fetched, a cell unread).
    open_by: dict[tuple[str, str, str], FindingRecord] = {}
    unchecked: dict[tuple[str, str, str], FindingRecord] = {}
    for x in findings:
        if x.state != "resolved":
            into = unchecked if x.outcome == "not_evaluated" else open_by
            into[(x.channel, x.listing_key or "", x.field)] = x
    off = set(image_check_off)
    attr_names = sorted(set(master.attributes if master else ())
                        | {k for pl in listings for k in pl.listing.attributes})
    cols = []
    for pl in listings:
        ls = pl.listing

        def differs(fld: str, _pl: ProductListing = pl) -> FindingRecord | None:
            return open_by.get((_pl.channel, _pl.key, fld))

        images = []
        img_finding = differs("image") or differs("images")
        img_unchecked = (None if img_finding is not None else
                         unchecked.get((pl.channel, pl.key, "image"))
                         or unchecked.get((pl.channel, pl.key, "images")))
        why_not = (f"not checked: {img_unchecked.message}" if img_unchecked is not None else
                   "not checked: the image check is off for this channel"
                   if pl.channel in off and img_finding is None else
                   "not checked: the master has no image"
                   if not (master and master.images) and img_finding is None else None)
        for i, url in enumerate(ls.images[:6]):
            first = i == 0
            images.append({"url": safe_url(url), "text": url, "primary": first,
                           "matched": (None if not first or why_not is not None
                                       else img_finding is None),
                           "note": why_not if first else None,
                           "distance": (img_finding.details.get("distance")
                                        if img_finding is not None and first else None)})
        cols.append({
            "channel": pl.channel, "key": pl.key, "url": safe_url(ls.url), "url_text": ls.url,
            "title": word_diff(master.title if master else None, ls.title),
            "title_text": ls.title,
            "missing": missing_words(master.title if master else None, ls.title),
            "fields": _field_rows(None, ls),
            "attributes": {k: ls.attributes.get(k) for k in attr_names},
            "images": images,
            "link": pl.link_method, "confidence": pl.link_confidence, "removed": pl.removed,
            "first_seen": pl.first_seen_at, "changed": pl.last_changed_at,
            "fetched": ls.fetched_at,
            "bad": {fld for (ch, key, fld) in open_by if ch == pl.channel and key == pl.key},
        })
    history = []
    for x in findings:
        for e in store.finding_events(x.fingerprint):
            history.append({"at": e.at, "event": e.event, "actor": e.actor, "channel": x.channel,
                            "check": x.check, "field": x.field, "expected": e.expected,
                            "actual": e.actual, "fingerprint": x.fingerprint})
    history.sort(key=lambda h: h["at"], reverse=True)
    return {
        "sku": sku, "master": master,
        "master_fields": _field_rows(master, None),
        "master_images": list(master.images) if master else [],
        "attr_names": attr_names, "columns": cols,
        "findings": [x for x in findings if x.state != "resolved"],
        "history": history[:200],
    }


def runs(store: Any, limit: int = 30) -> list[dict[str, Any]]:
    """Recent runs with their sources, durations and errors; why a run was interrupted,
    and the presence each source held (``auditor.holds``) or could not conclude."""
    out = []
    for r in store.runs(limit):
        held = {h.channel: h for h in store.presence_holds(r.id)}
        sources = [{"source": s.source, "status": s.status, "listings": s.listings,
                    "errors": s.errors, "message": s.message, "hold": held.get(s.source),
                    "unconcluded": s.status in ("partial", "failed")}
                   for s in store.run_sources(r.id)]
        errors = store.run_errors(r.id, limit=50)
        counts = {"opened": 0, "resolved": 0, "failed": 0}
        for ch in r.summary.get("channels", []) if r.summary else []:
            counts["opened"] += ch.get("opened") or 0
            counts["resolved"] += ch.get("resolved") or 0
            counts["failed"] += ch.get("failed") or 0
        out.append({
            "run": r, "sources": sources, "errors": errors, "counts": counts,
            "seconds": (r.finished_at - r.started_at).total_seconds()
            if r.finished_at else None,
            "master_error": (r.summary or {}).get("master_error"),
            "interrupted": (r.summary or {}).get("interrupted") or {}
            if r.status == "interrupted" else None,
        })
    return out


def suggestions(store: Any, limit: int = 200) -> list[dict[str, Any]]:
    """Listings the linker could only suggest a master for (``auditor links --state
    suggested``), each next to its first candidate master with the linker's evidence,
    for a person to confirm or reject."""
    out = []
    for r in store.link_states(state="suggested")[:limit]:
        sku = r.candidates[0] if r.candidates else None
        listing = store.listing(r.channel, r.listing_key)
        master = store.master_for(sku) if sku else None
        evidence = r.evidence or {}
        out.append({
            "channel": r.channel, "key": r.listing_key, "sku": sku,
            "candidates": list(r.candidates), "score": r.confidence,
            "reason": r.reason,
            "evidence": [f"{k}: {v}" for k, v in evidence.items()]
            if isinstance(evidence, dict) else [str(e) for e in evidence],
            "master": master, "listing": listing,
            "title": word_diff(master.title if master else None,
                               listing.title if listing else None),
            "master_fields": _field_rows(master, None),
            "fields": _field_rows(None, listing) if listing else {}})
    return out


_TICKS = re.compile(r"`([^`\n]+)`")


def ticks(v: Any) -> Any:
    """A message written for the terminal ("... or `auditor runs accept 2 google`") for a
    page: escaped (without control characters), its backticked commands as ``<code>``."""
    from markupsafe import Markup, escape

    from auditor.terminal import visible

    if v is None:
        return ""
    return Markup(_TICKS.sub(r"<code>\1</code>", str(escape(visible(str(v))))))
