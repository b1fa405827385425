"""What a notification says: subject, text, HTML and a JSON body. Pure.

A message carries what a person needs to act without opening anything else: SKU and
title, channel, the master value, the channel's value, the difference (and "shows the
price valid until ..." for stale values), since when, how many runs, a link to the
listing and one to the finding in the web UI. Untrusted text (titles, values from
channels) is escaped in HTML.
"""

from __future__ import annotations

import html
import re
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Mapping


def difference(expected: str | None, actual: str | None) -> str | None:
    """``+5.00 USD (+25.0%)`` for two amounts of one currency, else a short note."""
    if expected is None or actual is None:
        return None if expected == actual else ("missing on the channel" if actual is None
                                                else "not in the master")
    try:
        ea, ec = expected.rsplit(" ", 1)
        aa, acur = actual.rsplit(" ", 1)
        e, a = Decimal(ea), Decimal(aa)
    except (ValueError, InvalidOperation):
        return "differs"
    if ec != acur or len(ec) != 3:
        return "differs" if ec != acur else None
    d = a - e
    pct = f" ({d / e * 100:+.1f}%)" if e else ""
    return f"{d:+} {ec}{pct}"


def _day(iso: str | None) -> str:
    if not iso:
        return ""
    try:
        return datetime.fromisoformat(iso).strftime("%Y-%m-%d %H:%M %Z").strip()
    except ValueError:
        return iso


def alert_lines(a: Mapping[str, Any]) -> list[str]:
    """Plain-text lines describing one alert (a dict of incidents.Alert)."""
    info = a.get("info", {})
    state = a.get("status", "firing").upper()
    if a["kind"] == "finding":
        head = f"[{state}] {info.get('sku') or '?'}"
        if info.get("product_title"):
            head += f" \"{info['product_title']}\""
        what = info.get("check") if info.get("check") == info.get("field") else \
            f"{info.get('check')} {info.get('field')}"
        head += f" on {info.get('channel')}: {what} ({a['severity']}" + \
            (", reopened)" if info.get("reopened") else ")")
        lines = [head]
        vals = f"  master: {info.get('expected')} | channel: {info.get('actual')}"
        if info.get("difference"):
            vals += f" | difference: {info['difference']}"
        lines.append(vals)
        msg, stale = info.get("message") or "", info.get("stale_note")
        if stale and stale not in msg:
            lines.append(f"  {stale}")
        if msg:
            lines.append(f"  {msg}")
        lines.append(f"  since {_day(a.get('since'))}, seen in {info.get('runs', 1)} run(s)")
    else:
        lines = [f"[{state}] {a['summary']} ({a['severity']})"]
        for ex in info.get("examples", []):
            lines.append(f"  - {ex.get('sku')}: master {ex.get('expected')} | channel "
                         f"{ex.get('actual')}")
        more = info.get("skus", 0) - len(info.get("examples", []))
        if more > 0:
            lines.append(f"  ... and {more} more SKU(s)")
        lines.append(f"  since {_day(a.get('since'))}")
    if a.get("status") == "resolved" and a.get("ends_at"):
        lines.append(f"  resolved {_day(a['ends_at'])}")
    if info.get("listing_url"):
        lines.append(f"  listing: {info['listing_url']}")
    if info.get("finding_url"):
        lines.append(f"  finding: {info['finding_url']}")
    return lines


_LINE_BREAKS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")


def subject(payload: Mapping[str, Any]) -> str:
    alerts = payload["alerts"]
    firing = [a for a in alerts if a.get("status") == "firing"]
    resolved = len(alerts) - len(firing)
    labels = ", ".join(f"{k}={v}" for k, v in payload.get("group_labels", {}).items() if v)
    parts = []
    if firing:
        parts.append(f"{len(firing)} firing")
    if resolved:
        parts.append(f"{resolved} resolved")
    prefix = "[RESOLVED]" if not firing else "[FIRING]"
    first = (firing or alerts)[0]["summary"] if alerts else ""
    # One line: channel text (an SKU) may carry CR/LF, which an email header refuses.
    return _LINE_BREAKS.sub(" ", f"{prefix} omni-auditor {' '.join(parts)} ({labels}): "
                                 f"{first}")[:250]


def text(payload: Mapping[str, Any]) -> str:
    out = [subject(payload), ""]
    for a in payload["alerts"]:
        out += alert_lines(a) + [""]
    out.append(f"notification {payload.get('idempotency_key')}")
    return "\n".join(out)


def html_body(payload: Mapping[str, Any]) -> str:
    e = html.escape
    parts = [f"<h2>{e(subject(payload))}</h2>"]
    for a in payload["alerts"]:
        lines = alert_lines(a)
        info = a.get("info", {})
        links = []
        if info.get("listing_url"):
            links.append(f'<a href="{e(info["listing_url"], quote=True)}">listing</a>')
        if info.get("finding_url"):
            links.append(f'<a href="{e(info["finding_url"], quote=True)}">finding</a>')
        body = "<br>".join(e(x.strip()) for x in lines[1:]
                           if not x.strip().startswith(("listing:", "finding:")))
        parts.append(f"<p><b>{e(lines[0])}</b><br>{body}"
                     + (f"<br>{' | '.join(links)}" if links else "") + "</p>")
    parts.append(f"<p><small>notification {e(str(payload.get('idempotency_key')))}</small></p>")
    return "<html><body>" + "\n".join(parts) + "</body></html>"
