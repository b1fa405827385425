"""The weekly consistency report: one page a week a manager can trust.

Per channel, the headline is the share of live SKUs that are *fully consistent* (no
failed or warn finding open on that channel), graded A-E, with its change on the
week before and the channel's readiness (the share of the master's SKUs in the
channel's scope that are listed there and consistent). Below: a 12-week trend,
findings opened and resolved, mean time to resolve, propagation latency, the
week's top incidents (many SKUs, one cause), the 20 products with the most impact
and the worst attributes per channel.

Everything is computed here from the store at the week's end (or now, for the
week in progress); the templates only lay it out, with autoescaping on. The
state of a finding at a past moment is the state its last event before then gave
it, so a report for an earlier week reads what was true then.
"""

from __future__ import annotations

import csv
import io
import re
import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from jinja2 import Environment, PackageLoader, select_autoescape

from auditor import __version__
from auditor.csvout import neutralise
from auditor.errors import AuditorError
from auditor.storage.records import OpenFinding
from auditor.terminal import visible

GRADES = (("A", 0.90), ("B", 0.80), ("C", 0.70), ("D", 0.60), ("E", 0.0))
SEVERITY_WEIGHT = {"critical": 4, "major": 3, "minor": 2, "info": 1}
TREND_WEEKS = 12
TOP_PRODUCTS = 20
INCIDENT_MIN_SKUS = 3
# Attributes a POS export may carry with units sold (a column mapped to one of these).
SALES_ATTRIBUTES = ("units_sold", "sales_units", "sold")
# Google Merchant attribute for each of our fields in a supplemental feed.
GOOGLE_FIELDS = {"title": "title", "price": "price", "sale_price": "sale_price",
                 "availability": "availability", "image": "image_link", "images": "image_link",
                 "description": "description", "brand": "brand", "gtin": "gtin",
                 "mpn": "mpn", "link": "link", "url": "link"}
_WEEK = re.compile(r"^(\d{4})-W(\d{1,2})$")


def parse_week(text: str) -> tuple[datetime, datetime]:
    """``2026-W47`` -> (Monday 00:00 UTC, the next Monday 00:00 UTC)."""
    m = _WEEK.match(text.strip())
    if not m:
        raise AuditorError(f"--week {text!r}: expected an ISO week such as 2026-W47")
    try:
        monday = date.fromisocalendar(int(m[1]), int(m[2]), 1)
    except ValueError as e:
        raise AuditorError(f"--week {text!r}: {e}") from None
    start = datetime(monday.year, monday.month, monday.day, tzinfo=timezone.utc)
    return start, start + timedelta(days=7)


def week_label(start: datetime) -> str:
    y, w, _ = start.isocalendar()
    return f"{y}-W{w:02d}"


def last_complete_week(now: datetime) -> str:
    """The ISO week before the one ``now`` falls in (what a Monday-morning report covers)."""
    return week_label(now - timedelta(days=7))


def grade(share: float | None) -> str:
    """A-E as PIM data-quality dashboards grade: A 90-100%, B 80-89, ..., E below 60."""
    if share is None:
        return "-"
    for letter, floor in GRADES:
        if share >= floor - 1e-12:
            return letter
    return "E"


@dataclass
class ChannelWeek:
    """One channel's row of the report."""

    name: str
    live: int = 0
    consistent: int = 0
    share: float | None = None
    grade: str = "-"
    previous: float | None = None
    change: float | None = None
    in_scope: int = 0
    ready: int = 0
    readiness: float | None = None
    trend: list[tuple[str, float | None]] = field(default_factory=list)
    opened: int = 0
    reopened: int = 0
    resolved: int = 0
    open_now: int = 0
    mttr_hours: float | None = None
    latency_median_hours: float | None = None
    latency_p90_hours: float | None = None
    latency_count: int = 0
    worst_attributes: list[tuple[str, int]] = field(default_factory=list)
    svg: str = ""


def _share(live: int, ok: int) -> float | None:
    return ok / live if live else None


def _hours(seconds: Iterable[float]) -> tuple[float | None, float | None, int]:
    xs = sorted(seconds)
    if not xs:
        return None, None, 0
    p90 = xs[min(len(xs) - 1, max(0, int(round(0.9 * len(xs) + 0.5)) - 1))]
    return statistics.median(xs) / 3600, p90 / 3600, len(xs)


def incidents(findings: Sequence[OpenFinding], min_skus: int = INCIDENT_MIN_SKUS,
              limit: int = 10) -> list[dict[str, Any]]:
    """Open findings that share a channel and a cause, as the alerts' root-cause
    incidents (``auditor.alerts.incidents.group``) of at least ``min_skus`` SKUs,
    biggest first, with up to five example SKUs."""
    from auditor.alerts.incidents import group

    found, _ = group((f.to_dict() for f in findings), min_skus, 5)
    out = [{"channel": i.info["channel"], "check": i.info["check"], "field": i.info["field"],
            "cause": i.summary, "skus": i.info["skus"], "severity": i.severity,
            "examples": [e["sku"] for e in i.info["examples"] if e["sku"]],
            "since": i.since[:10]} for i in found]
    out.sort(key=lambda i: (-i["skus"], -SEVERITY_WEIGHT.get(i["severity"], 0), i["channel"]))
    return out[:limit]


def _svg(points: Sequence[tuple[str, float | None]], width: int = 240, height: int = 60) -> str:
    """A 12-week line of consistency (0-100%) with the 90% grade-A line, as inline SVG.
    Only numbers go into it, so it needs no escaping."""
    pad = 4
    n = max(1, len(points) - 1)
    xy = []
    for i, (_, v) in enumerate(points):
        if v is None:
            continue
        x = pad + (width - 2 * pad) * i / n
        y = pad + (height - 2 * pad) * (1 - v)
        xy.append((x, y))
    a_line = pad + (height - 2 * pad) * 0.1
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" role="img">',
             f'<rect x="0" y="0" width="{width}" height="{height}" fill="#f6f8fa"/>',
             f'<line x1="{pad}" y1="{a_line:.1f}" x2="{width - pad}" y2="{a_line:.1f}" '
             f'stroke="#2da44e" stroke-dasharray="3,3" stroke-width="1"/>']
    if len(xy) > 1:
        pts = " ".join(f"{x:.1f},{y:.1f}" for x, y in xy)
        parts.append(f'<polyline points="{pts}" fill="none" stroke="#0969da" stroke-width="2"/>')
    for x, y in xy:
        parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2.5" fill="#0969da"/>')
    parts.append("</svg>")
    return "".join(parts)


def build_weekly(store: Any, cfg: Any, week: str | None = None, now: datetime | None = None,
                 ui_base: str | None = None) -> dict[str, Any]:
    """The whole report's context for ISO ``week`` (default: the last complete week)."""
    now = now or datetime.now(timezone.utc)
    week = week or last_complete_week(now)
    start, end = parse_week(week)
    if start > now:
        raise AuditorError(f"--week {week}: that week has not begun yet")
    at = min(end, now)  # the state at the week's end, or now for the week in progress
    in_progress = end > now
    if store.run_at(at) is None:
        current = week_label(now)
        hint = "" if in_progress or store.run_at(now) is None else (
            f"; the first run is later: `--week {current}` reports the week in progress")
        raise AuditorError(f"no run had started by the end of {week}: nothing to report{hint}")

    # Headline and trend: SKU-level consistency at the end of each of the last 12 weeks.
    trend_points: list[tuple[str, dict[str, tuple[int, int]]]] = []
    for k in range(TREND_WEEKS - 1, -1, -1):
        ws = start - timedelta(days=7 * k)
        t = min(ws + timedelta(days=7), now)
        trend_points.append((week_label(ws), store.channel_health(t)))
    health = trend_points[-1][1]
    prev = trend_points[-2][1] if len(trend_points) > 1 else {}

    configured = [c.name for c in cfg.channels if c.enabled] if cfg is not None else []
    names = list(dict.fromkeys(configured + sorted(health)))
    rows: dict[str, ChannelWeek] = {n: ChannelWeek(n) for n in names}
    for n, row in rows.items():
        live, ok = health.get(n, (0, 0))
        row.live, row.consistent = live, ok
        row.share = _share(live, ok)
        row.grade = grade(row.share)
        if n in prev:
            row.previous = _share(*prev[n])
            if row.share is not None and row.previous is not None:
                row.change = row.share - row.previous
        row.trend = [(label, _share(*h[n]) if n in h else None) for label, h in trend_points]
        row.svg = _svg(row.trend)

    # Readiness: the master's active SKUs in the channel's scope, listed and consistent.
    master = store.current_master()
    skus = store.channel_skus(at)
    from auditor.model import MasterStatus  # noqa: PLC0415 - kept beside its one use
    from auditor.checks.presence import in_scope
    active = [m for m in master.values() if m.status is MasterStatus.ACTIVE]
    scopes = {c.name: (c.options.get("scope") or {}) for c in cfg.channels} if cfg else {}
    for n, row in rows.items():
        scope = scopes.get(n) or {}
        expected = {m.sku for m in active if not scope or in_scope(m, scope)}
        live, bad = skus.get(n, (set(), set()))
        row.in_scope = len(expected)
        row.ready = len((live - bad) & expected)
        row.readiness = row.ready / row.in_scope if row.in_scope else None

    # Activity in the week: opened, reopened, resolved; time to resolve.
    ttr: dict[str, list[float]] = defaultdict(list)
    for e in store.finding_activity(start, end):
        row = rows.setdefault(e.channel, ChannelWeek(e.channel))
        if e.event == "opened":
            row.opened += 1
        elif e.event == "reopened":
            row.reopened += 1
        elif e.event == "resolved":
            row.resolved += 1
            if e.opened_at:
                ttr[e.channel].append((e.at - e.opened_at).total_seconds())
    for n, xs in ttr.items():
        rows[n].mttr_hours = sum(xs) / len(xs) / 3600

    # Propagation latency of the week's master changes, where the store records it.
    latencies: dict[str, list[float]] = defaultdict(list)
    # The latency of every master change since the week began, to the first complete
    # read that shows it (changes not shown anywhere yet have no latency).
    has_latency = hasattr(store, "propagation")
    if has_latency:
        for channel, seconds in store.propagation(start):
            if seconds is not None and seconds >= 0:
                latencies[channel].append(seconds)
    for n, xs in latencies.items():
        row = rows.setdefault(n, ChannelWeek(n))
        row.latency_median_hours, row.latency_p90_hours, row.latency_count = _hours(xs)

    # Open findings at the week's end: incidents, products, attributes, attachments.
    open_findings = store.findings_at(at)
    for f in open_findings:
        row = rows.setdefault(f.channel, ChannelWeek(f.channel))
        row.open_now += 1
    attr_counts: dict[str, Counter[str]] = defaultdict(Counter)
    for f in open_findings:
        if f.check == "attributes":
            attr_counts[f.channel][f.field] += 1
    for n, c in attr_counts.items():
        rows[n].worst_attributes = c.most_common(5)

    sales = store.sales_units(SALES_ATTRIBUTES)
    by_sku: dict[str, list[OpenFinding]] = defaultdict(list)
    for f in open_findings:
        if f.sku:
            by_sku[f.sku].append(f)
    products = []
    for sku, fs in by_sku.items():
        m = master.get(sku)
        channels = sorted({f.channel for f in fs})
        weight = max(SEVERITY_WEIGHT.get(f.severity, 1) for f in fs)
        worst = max((f.severity for f in fs), key=lambda s: SEVERITY_WEIGHT.get(s, 0))
        units = sales.get(sku)
        revenue = None
        if units is not None and m is not None and m.price is not None:
            revenue = float(m.price.amount) * units
        products.append({
            "sku": sku, "title": (m.title if m else None) or "", "channels": channels,
            "severity": worst, "findings": len(fs), "score": weight * len(channels),
            "units": units, "revenue": revenue,
            "currency": m.price.currency if m is not None and m.price is not None else "",
            "checks": sorted({f.check for f in fs}),
        })
    # Price x sales velocity where a POS source gives sales, else severity x channels.
    products.sort(key=lambda p: (p["revenue"] is None, -(p["revenue"] or 0), -p["score"],
                                 -p["findings"], p["sku"]))
    with_sales = any(p["revenue"] is not None for p in products)

    channel_rows = [rows[n] for n in sorted(rows, key=lambda n: (n not in names, names.index(n)
                                                                  if n in names else 0, n))]
    totals: dict[str, Any] = {
        "live": sum(r.live for r in channel_rows),
        "consistent": sum(r.consistent for r in channel_rows),
        "opened": sum(r.opened for r in channel_rows),
        "reopened": sum(r.reopened for r in channel_rows),
        "resolved": sum(r.resolved for r in channel_rows),
        "open_now": len(open_findings),
    }
    all_ttr = [x for xs in ttr.values() for x in xs]
    totals["mttr_hours"] = sum(all_ttr) / len(all_ttr) / 3600 if all_ttr else None
    totals["share"] = _share(totals["live"], totals["consistent"])
    totals["grade"] = grade(totals["share"])
    runs = store.runs_between(start, end)
    return {
        "week": week, "start": start, "end": end, "last_day": end - timedelta(days=1), "at": at, "in_progress": in_progress,
        "generated_at": now, "version": __version__,
        "channels": channel_rows, "totals": totals,
        "runs": {"count": len(runs),
                 "statuses": dict(Counter(r.status or "running" for r in runs))},
        "incidents": incidents(open_findings),
        "products": products[:TOP_PRODUCTS], "products_by_sales": with_sales,
        "has_latency": has_latency,
        "open_findings": open_findings,
        "ui_base": ui_base.rstrip("/") if ui_base else None,
        "channel_types": {c.name: c.type for c in cfg.channels} if cfg else {},
    }


# ----------------------------------------------------------------------- rendering

def _env() -> Environment:
    env = Environment(loader=PackageLoader("auditor.reports", "templates"),
                      autoescape=select_autoescape(["html", "j2"], default=True),
                      trim_blocks=True, lstrip_blocks=True, finalize=visible)
    env.filters["pct"] = lambda v: "-" if v is None else f"{100 * v:.1f}%"
    env.filters["pp"] = lambda v: "-" if v is None else f"{100 * v:+.1f} pp"
    env.filters["hours"] = _fmt_hours
    env.filters["day"] = lambda d: d.strftime("%Y-%m-%d") if d else ""
    env.filters["ui"] = _ui_link
    return env


def _fmt_hours(h: float | None) -> str:
    if h is None:
        return "-"
    if h < 1:
        return f"{h * 60:.0f} min"
    if h < 48:
        return f"{h:.1f} h"
    return f"{h / 24:.1f} d"


def _ui_link(sku: str, base: str | None) -> str | None:
    """The product's page in the web UI, when a base URL is configured (never a
    ``javascript:`` or other non-http link: the base comes from the config)."""
    if not base or not base.startswith(("http://", "https://")):
        return None
    from urllib.parse import quote
    return f"{base}/products/{quote(sku, safe='')}"


def render_html(ctx: Mapping[str, Any]) -> str:
    """The self-contained HTML page (inline CSS and SVG, no external assets)."""
    return _env().get_template("weekly.html.j2").render(**ctx)


def render_text(ctx: Mapping[str, Any]) -> str:
    """The plain-text part of the email."""
    env = _env()
    env.autoescape = False
    return env.get_template("weekly.txt.j2").render(**ctx)


# ----------------------------------------------------------------------- attachments

def csv_cell(v: Any) -> str:
    """A value made safe for spreadsheets (OWASP CSV injection, ``auditor.csvout``)."""
    return "" if v is None else str(neutralise(str(v)))


def findings_csv(findings: Sequence[OpenFinding], ui_base: str | None = None) -> bytes:
    """Every open finding, one row each."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n")
    cols = ["channel", "sku", "listing_key", "check", "field", "severity", "outcome",
            "expected", "actual", "message", "since"]
    w.writerow(cols + (["ui_url"] if ui_base else []))
    for f in findings:
        row = [csv_cell(getattr(f, c)) for c in cols]
        if ui_base:
            row.append((_ui_link(f.sku, ui_base) or "") if f.sku else "")
        w.writerow(row)
    return buf.getvalue().encode("utf-8-sig")


# A fix can only set a value the master holds; presence and identifier findings are
# fixed on the channel by other means.
_FIXABLE = ("title", "price", "availability", "attributes", "image", "description")


def fix_rows(findings: Sequence[OpenFinding], channel: str) -> dict[str, dict[str, str]]:
    """Listing key -> {field: the value the master says the channel should show}."""
    rows: dict[str, dict[str, str]] = defaultdict(dict)
    for f in findings:
        if f.channel != channel or f.check not in _FIXABLE:
            continue
        if not f.listing_key or f.expected in (None, ""):
            continue
        if f.outcome not in ("failed", "warn"):
            continue
        rows[f.listing_key][f.field] = str(f.expected)
    return dict(rows)


def google_supplemental(rows: Mapping[str, Mapping[str, str]]) -> bytes:
    """A Merchant Center supplemental feed (TSV): ``id`` plus one column per drifting
    attribute, Google's attribute names, the master's values. Only the listings and
    fields that drift are in it; Merchant Center matches rows to the primary feed by id."""
    fields = sorted({f for r in rows.values() for f in r})
    cols = [(f, GOOGLE_FIELDS.get(f, f)) for f in fields]
    buf = io.StringIO()
    w = csv.writer(buf, delimiter="\t", lineterminator="\n", quoting=csv.QUOTE_MINIMAL)
    w.writerow(["id"] + [g for _, g in cols])
    for key in sorted(rows):
        r = rows[key]
        w.writerow([key] + [_tsv(_google_value(f, r.get(f, ""))) for f, _ in cols])
    return buf.getvalue().encode("utf-8")


def _google_value(fld: str, v: str) -> str:
    if fld == "availability":
        return v.replace(" ", "_").lower()
    return v


def _tsv(v: str) -> str:
    # Merchant Center TSV has no quoting: tabs and newlines inside a value become spaces.
    return re.sub(r"[\t\r\n]+", " ", csv_cell(v))


def generic_fix_csv(rows: Mapping[str, Mapping[str, str]], channel: str) -> bytes:
    """One row per listing and drifting field, with the master's value."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n")
    w.writerow(["channel", "listing_key", "field", "master_value"])
    for key in sorted(rows):
        for fld, v in sorted(rows[key].items()):
            w.writerow([csv_cell(channel), csv_cell(key), csv_cell(fld), csv_cell(v)])
    return buf.getvalue().encode("utf-8-sig")


def attachments(ctx: Mapping[str, Any]) -> list[tuple[str, bytes, str]]:
    """(file name, content, MIME type) of every attachment: the open findings and
    a fix file per channel that has drifting fields."""
    out = [(f"open-findings-{ctx['week']}.csv",
            findings_csv(ctx["open_findings"], ctx.get("ui_base")), "text/csv")]
    for row in ctx["channels"]:
        rows = fix_rows(ctx["open_findings"], row.name)
        if not rows:
            continue
        if ctx["channel_types"].get(row.name) == "google_merchant":
            out.append((f"fix-{row.name}-{ctx['week']}.tsv", google_supplemental(rows),
                        "text/tab-separated-values"))
        else:
            out.append((f"fix-{row.name}-{ctx['week']}.csv", generic_fix_csv(rows, row.name),
                        "text/csv"))
    return out


@dataclass
class WeeklyReport:
    """A rendered report: subject, both parts and the attachments."""

    week: str
    subject: str
    html: str
    text: str
    attachments: list[tuple[str, bytes, str]]


def make_report(store: Any, cfg: Any, week: str | None = None, now: datetime | None = None,
                ui_base: str | None = None) -> WeeklyReport:
    """Build and render the report of ``week``."""
    ctx = build_weekly(store, cfg, week, now, ui_base)
    t = ctx["totals"]
    subject = (f"Product consistency {ctx['week']}: {_pct(t['share'])} of live SKUs consistent"
               f" (grade {t['grade']}), {t['open_now']} open findings")
    return WeeklyReport(ctx["week"], subject, render_html(ctx), render_text(ctx),
                        attachments(ctx))


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.1f}%"


def write_archive(report: WeeklyReport, out_dir: Path) -> Path:
    """Write the report into ``out_dir/<week>/`` (index.html, report.txt and the
    attachments) and refresh ``out_dir/index.html``, the archive of every week."""
    folder = out_dir / report.week
    folder.mkdir(parents=True, exist_ok=True)
    _atomic(folder / "index.html", report.html.encode("utf-8"))
    _atomic(folder / "report.txt", report.text.encode("utf-8"))
    for name, data, _ in report.attachments:
        _atomic(folder / name, data)
    weeks = sorted((p.name for p in out_dir.iterdir()
                    if p.is_dir() and _WEEK.match(p.name) and (p / "index.html").exists()),
                   reverse=True)
    index = _env().get_template("weekly_archive.html.j2").render(weeks=weeks)
    _atomic(out_dir / "index.html", index.encode("utf-8"))
    return folder


def _atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


def archived_weeks(out_dir: Path) -> list[str]:
    """The weeks in an archive folder, newest first."""
    if not out_dir.is_dir():
        return []
    return sorted((p.name for p in out_dir.iterdir() if p.is_dir() and _WEEK.match(p.name)),
                  reverse=True)
