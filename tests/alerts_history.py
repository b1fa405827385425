"""A scripted history of two channels over nine runs, for comparing alert evaluations.

``play(store, evaluate)`` feeds a store run by run (findings opening, persisting past their
confirmation by runs and by time, a master change in propagation grace, incidents forming
and splitting, a failed and a partial read, ack, snooze, silence, a resolve by hand,
resolutions, reopenings, repeat reminders falling due) and evaluates alerts after every
run and at chosen times in between, as ``auditor run`` and ``auditor serve`` do. It
returns what each evaluation left: its new outbox rows, the groups each receiver was told
about, every finding's alert state, and the counts. Only the store's public methods of
the time are used, so the same history can be played on an older auditor to record what
it did (tests/fixtures/alerts_history_main.json, recorded with the full evaluation of
main at 07442fb).
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any, Callable

from auditor.config import parse_config
from auditor.model import Finding, Money, Outcome, Severity, SourceResult, SourceStatus
from tests.conftest import make_master

T0 = datetime(2026, 11, 20, 12, 0, tzinfo=timezone.utc)
H = timedelta(hours=1)
CHECKS = ["price", "title", "attributes", "image"]
RECORDED = Path(__file__).parent / "fixtures" / "alerts_history_main.json"


def config():
    return parse_config({
        "master": {"source": "m.csv"},
        "channels": [
            {"name": "google", "type": "google_merchant", "source": "g.xml", "grace": "2h"},
            {"name": "meta", "type": "meta_catalog", "source": "m.csv",
             "checks": {"price": {"confirm_for": "3h"}}}],
        "checks": {"title": {"confirm_runs": 2}, "image": {"confirm_runs": 3}},
        "alerts": {
            "incident_min_skus": 3, "incident_examples": 2,
            "receivers": [
                {"name": "hook", "type": "webhook", "url": "http://127.0.0.1:9/x"},
                {"name": "quiet", "type": "webhook", "url": "http://127.0.0.1:9/y",
                 "send_resolved": False},
                {"name": "am", "type": "alertmanager", "url": "http://127.0.0.1:9",
                 "resend_interval": "30m"}],
            "routes": [
                {"match": {"severity": "critical"}, "receivers": ["am"],
                 "group_by": ["channel", "sku"], "continue": True},
                {"match": {"channel": "meta", "check": "price"}, "receivers": ["quiet"],
                 "group_by": ["channel"], "repeat_interval": "2h"},
                {"receivers": ["hook"], "group_by": ["channel", "check"],
                 "repeat_interval": "4h"}]}}, Path("/tmp/config.toml"))


def _f(channel: str, sku: str, check: str = "price", field: str | None = None,
       severity: Severity = Severity.CRITICAL, actual: str = "2.00 EUR", **details) -> Finding:
    return Finding(check, channel, sku, field or check, Outcome.FAILED, severity,
                   expected="1.00 EUR", actual=actual, listing_key=sku, details=details)


def _stale(sku: str) -> Finding:
    return _f("google", sku, valid_until="2026-11-03T00:00:00+00:00", stale=True)


def _attr(sku: str) -> Finding:
    return _f("meta", sku, "attributes", "color", Severity.MAJOR, actual="Rot")


def fp(f: Finding) -> str:
    return f.fingerprint


def _master(price_a: str = "59.90"):
    return [make_master(s, price=Money(Decimal(price_a if s == "A" else "59.90"), "EUR"))
            for s in "ABCDEFGS"]


def play(store: Any, evaluate: Callable[..., dict[str, Any]]) -> list[dict[str, Any]]:
    """Play the history on an empty store; one snapshot per evaluation."""
    cfg = config()
    out: list[dict[str, Any]] = []
    seen = [0]
    run = [0]

    def ev(at: datetime, label: str) -> None:
        res = evaluate(store, cfg, at)
        rows = store.outbox(None, limit=100000)
        new = [{k: v for k, v in r["payload"].items() if k != "idempotency_key"}
               for r in rows[seen[0]:]]
        seen[0] = len(rows)
        groups = sorted(
            ({"receiver": k[0], "group_key": k[1], "labels": g["labels"],
              "members": g["members"], "seq": g["seq"],
              "last_sent_at": _time(g["last_sent_at"])} for k, g in
             store.alert_groups().items()), key=lambda g: (g["receiver"], g["group_key"]))
        states = sorted([f.fingerprint, f.state, f.alert_state, f.alert_reason]
                        for f in store.findings())
        out.append(json.loads(json.dumps({
            "at": label, "new": new, "groups": groups, "states": states,
            "counts": {k: res.get(k) for k in ("firing", "pending", "suppressed",
                                               "incidents", "notifications")}},
            default=str)))

    def read(at: datetime, google: list[Finding] | None, meta: list[Finding] | None,
             statuses: dict[str, SourceStatus] | None = None) -> None:
        run[0] += 1
        for ch, found in (("google", google), ("meta", meta)):
            st = (statuses or {}).get(ch, SourceStatus.COMPLETE)
            if found is None:
                continue
            store.apply_findings(run[0], ch, found, st, None, CHECKS, at)
            store.save_source_result(run[0], SourceResult(
                ch, st, started_at=at, finished_at=at,
                message=None if st == SourceStatus.COMPLETE else f"{ch} {st.value}"))
        ev(at, f"run {run[0]}")

    store.save_master(_master(), "m.csv", None, T0 - 48 * H)
    attrs = [_attr(s) for s in "DEF"]
    title_c = _f("google", "C", "title", severity=Severity.MAJOR)
    image_g = _f("google", "G", "image", severity=Severity.MINOR, slot=1)
    g1 = [_f("google", "A"), _f("google", "B"), title_c, _stale("S1"), _stale("S2")]
    m1 = [_f("meta", "A"), *attrs]
    read(T0, g1, m1)                                    # price A on meta waits 3h; C 1 of 2
    g2 = g1 + [_stale("S3"), image_g]
    read(T0 + H, g2, m1)                                # S1-S3 become an incident; C fires
    store.ack_finding(fp(g1[1]), "ana", "on it", now=T0 + 1.5 * H)
    ev(T0 + 1.5 * H, "ack B")
    store.save_master(_master("64.90"), "m.csv", None, T0 + 2 * H)  # A's price changes
    g3 = [_f("google", "A", actual="3.00 EUR"), *g2[1:]]
    read(T0 + 2 * H, g3, [], {"meta": SourceStatus.FAILED})  # A in grace; meta failed
    store.snooze_finding(fp(attrs[0]), T0 + 5 * H, "ana", now=T0 + 2.5 * H)
    ev(T0 + 2.5 * H, "snooze D")
    g4 = [g3[0], title_c, *[_stale(s) for s in ("S1", "S2", "S3")], image_g]  # B resolves
    read(T0 + 3 * H, g4, [_f("meta", "A"), *attrs[:2]])  # F resolves: no incident now
    ev(T0 + 4 * H, "grace ends")
    g5 = [g3[0], g3[1], *[_stale(s) for s in ("S1", "S2", "S3")], image_g]  # B back, C gone
    read(T0 + 5 * H, g5, [_f("meta", "A"), *attrs])     # D's snooze ended, F reopens
    store.add_silence({"channel": "google", "check": "image"}, T0 + 5.5 * H, T0 + 7 * H,
                      "ana", "DAM migration", now=T0 + 5.5 * H)
    ev(T0 + 5.5 * H, "silence")
    read(T0 + 6 * H, g5, [_f("meta", "A")], {"meta": SourceStatus.PARTIAL})
    ev(T0 + 7 * H, "silence ends")
    ev(T0 + 8 * H, "repeats due")
    store.resolve_finding(fp(g3[0]), "ana", now=T0 + 8.5 * H, note="fixed by hand")
    ev(T0 + 8.5 * H, "resolve A")
    read(T0 + 9 * H, g5 + [_f("google", "E", "title", severity=Severity.MAJOR)], [])
    ev(T0 + 14 * H, "later")
    read(T0 + 15 * H, [], [])
    ev(T0 + 20 * H, "all resolved")
    return out


def _time(v: Any) -> str | None:
    if v is None:
        return None
    return (v if isinstance(v, datetime) else datetime.fromisoformat(str(v))).isoformat()


def record(path: Path = RECORDED) -> None:  # pragma: no cover  (run by hand on main)
    """Write the history as this auditor's SQLite store evaluates it (see the docstring)."""
    from auditor.alerts.engine import evaluate
    from auditor.storage.sqlite import SQLiteStore

    store = SQLiteStore(":memory:")
    path.write_text(json.dumps(play(store, lambda s, c, at: evaluate(s, c, at)), indent=1,
                               sort_keys=True) + "\n")
    store.close()
