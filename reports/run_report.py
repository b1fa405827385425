"""The HTML report of one run: source status, consistency scores, open findings.

The context is prepared here; the template only lays it out (autoescaping on, so
titles and messages from channels are always escaped).
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jinja2 import Environment, PackageLoader, select_autoescape

from auditor import wording
from auditor.errors import AuditorError
from auditor.terminal import visible

if TYPE_CHECKING:
    from auditor.storage import Store

SEVERITY_ORDER = {"critical": 0, "major": 1, "minor": 2, "info": 3}
_UNRESOLVED = ("open", "acknowledged", "snoozed")  # as people see them; not not_evaluated


def build_context(store: Store, run_id: int | None = None, limit: int = 2000) -> dict[str, Any]:
    """Everything the template shows, computed once."""
    runs = store.runs(50)
    if not runs:
        raise AuditorError("the store holds no run yet: run `auditor run` first")
    run = next((r for r in runs if r.id == run_id), None) if run_id else runs[0]
    if run is None:
        raise AuditorError(f"no run {run_id} in the store")
    summary = run.summary
    sources = store.run_sources(run.id)
    by_name = {c.get("channel"): c for c in summary.get("channels", [])}
    source_notes: dict[str, list[str]] = {}
    for src in sources:  # held presence and fields the channel never carries, said once
        c = by_name.get(src.source) or {}
        notes = [f"presence held: {c['presence_held']}"] if c.get("presence_held") else []
        notes += c.get("notes") or []
        gone = sorted({f for fs in (c.get("not_carried") or {}).values() for f in fs})
        if gone:
            notes.append(wording.not_carried(gone))
        source_notes[src.source] = notes
    scores = store.scores(run.id)
    checks = sorted({s.check for s in scores})
    matrix: dict[str, dict[str, Any]] = defaultdict(dict)
    for s in scores:
        evaluated = (s.passed or 0) + (s.failed or 0) + (s.warn or 0)
        matrix[s.channel][s.check] = {
            "score": None if s.score is None else round(100 * s.score, 1),
            "evaluated": evaluated, "failed": s.failed, "warn": s.warn,
            "level": _level(s.score),
        }
    findings = store.findings(state="open", limit=limit)
    # a comparison that could not be made is kept to say why: no open finding (the inbox,
    # `findings --state open` and the alerts leave it out too), listed on its own
    failing = [f for f in findings if f.outcome != "not_evaluated"]
    not_evaluated = [{"channel": f.channel, "sku": f.sku, "check": f.check, "field": f.field,
                      "message": f.message} for f in findings if f.outcome == "not_evaluated"]
    by_channel: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for f in failing:
        d = f.details
        by_channel[f.channel].append({
            "sku": f.sku, "check": f.check, "field": f.field,
            "outcome": f.outcome, "severity": f.severity,
            "expected": f.expected, "actual": f.actual, "message": f.message,
            "since": f"{f.first_seen_at:%Y-%m-%d %H:%M}",
            "fingerprint": f.fingerprint,
            "missing": d.get("missing_tokens"), "extra": d.get("extra_tokens"),
        })
    counts: dict[str, int] = defaultdict(int)
    truncated = len(findings) >= limit
    if truncated:  # the cards count every open finding, not the first ``limit`` listed
        for sev in SEVERITY_ORDER:
            counts[sev] = store.search_findings(severities=[sev], states=_UNRESOLVED,
                                                limit=0).total
    else:
        for f in failing:
            counts[f.severity] += 1
    headline, since_last = _honest_headline(store, run, runs)
    return {
        "headline": headline,
        "since_last": since_last,
        "first_run": not any(r.id < run.id for r in runs),  # nothing to compare with
        "run": {"id": run.id, "started": f"{run.started_at:%Y-%m-%d %H:%M:%S}",
                "finished": f"{run.finished_at:%Y-%m-%d %H:%M:%S}" if run.finished_at else "",
                "status": run.status},
        "master": summary.get("master", {}),
        "master_error": summary.get("master_error"),
        "sources": sources,
        "source_notes": source_notes,
        "checks": checks,
        "matrix": dict(matrix),
        "channels": sorted(matrix) or [s.source for s in sources],
        "findings": dict(sorted(by_channel.items())),
        "severity_counts": [(k, counts[k]) for k in sorted(counts, key=lambda s: SEVERITY_ORDER.get(s, 99))
                            if counts[k]],
        "total_open": sum(counts.values()),
        "shown": len(failing),
        "not_evaluated": not_evaluated,
        "truncated": truncated,
        "errors": store.run_errors(run.id, limit=200),
    }


def _run_time(run: Any) -> datetime:
    """A run's audit clock (what --now set), else when it started."""
    at = run.summary.get("at") if run.summary else None
    return datetime.fromisoformat(at) if at else run.started_at


def _honest_headline(store: Store, run: Any, runs: list[Any]
                     ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Per channel the share of live SKUs with no failed or warn finding open (not the
    share of comparisons, which reads 99% with dozens of real problems), with its grade
    and change since the previous run; and what this run opened, reopened, resolved."""
    from auditor.reports.weekly import grade

    now = store.channel_health(_run_time(run))
    older = [r for r in runs if r.id < run.id]
    before = store.channel_health(_run_time(older[0])) if older else {}
    headline = []
    for ch, (live, ok) in sorted(now.items()):
        share = ok / live if live else None
        pl, pok = before.get(ch, (0, 0))
        prev_share = pok / pl if pl else None
        headline.append({
            "channel": ch, "live": live, "consistent": ok,
            "share": None if share is None else round(100 * share, 1), "grade": grade(share),
            "change": None if share is None or prev_share is None
            else round(100 * (share - prev_share), 1)})
    since: dict[str, dict[str, list[Any]]] = defaultdict(lambda: defaultdict(list))
    for e in store.run_finding_changes(run.id):
        since[e.channel][e.event].append(e)
    return headline, {ch: dict(ev) for ch, ev in sorted(since.items())}


def _level(score: float | None) -> str:
    if score is None:
        return "none"
    if score >= 0.99:
        return "good"
    if score >= 0.95:
        return "fair"
    return "poor"


def render(context: dict[str, Any]) -> str:
    env = Environment(loader=PackageLoader("auditor.reports", "templates"),
                      autoescape=select_autoescape(default=True, default_for_string=True),
                      finalize=visible)
    return env.get_template("run_report.html").render(**context)


def write_report(store: Store, path: Path, run_id: int | None = None) -> Path:
    """Render the report of ``run_id`` (default: the latest run) to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(build_context(store, run_id)), encoding="utf-8")
    return path
