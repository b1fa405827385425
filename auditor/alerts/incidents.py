"""Root-cause grouping: many findings of one channel that share a cause become one
incident that names the cause, counts the SKUs and lists examples. Pure.

Causes, per channel:

* ``stale``      -- the same field showing the previous master values (a sync that did
  not run): findings marked ``stale`` by their check;
* ``attribute``  -- one attribute differing across many SKUs (mapped wrong): the most
  common master -> channel value pair is named;
* ``image_slot`` -- one image slot differing across many SKUs;
* ``field``      -- any other check and field failing across many SKUs;
* ``source``     -- the whole source failing (built from source results, not findings).

A group under ``min_skus`` SKUs stays as single finding alerts.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

SEVERITY_ORDER = {"critical": 0, "major": 1, "minor": 2, "info": 3}


@dataclass
class Alert:
    """One thing a receiver is told about: a finding, an incident or a failing source."""

    id: str
    kind: str                          # finding, incident or source
    labels: dict[str, str]
    summary: str                       # one line
    severity: str
    since: str                         # ISO 8601
    info: dict[str, Any] = field(default_factory=dict)   # what the message shows
    # an incident's: the field its findings share (its ``field`` label may name a slot)
    member_field: str | None = field(default=None, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "labels": dict(self.labels),
                "summary": self.summary, "severity": self.severity, "since": self.since,
                "info": dict(self.info)}


def _id(*parts: str) -> str:
    return hashlib.blake2b("\x1f".join(parts).encode(), digest_size=10).hexdigest()


def cause_of(row: Mapping[str, Any]) -> tuple[str, str, str]:
    """(cause, check, field) a finding would share with others of its channel."""
    check, fld = row["check"], row["field"]
    details = row.get("details") or {}
    if details.get("stale") or details.get("replaced_at"):  # (an image: a former asset)
        return ("stale", check, fld)
    if check == "attributes":
        return ("attribute", check, fld)
    if check == "image":
        slot = details.get("slot")
        return ("image_slot", check, fld if slot is None else f"{fld}[{slot}]")
    return ("field", check, fld)


def describe(cause: str, check: str, fld: str, channel: str, n: int,
             rows: list[Mapping[str, Any]]) -> str:
    """The incident's one-line summary, naming the cause."""
    if cause == "stale":
        return (f"{channel} shows the previous master {fld} for {n} SKUs: a sync that did "
                f"not run?")
    if cause == "attribute":
        pairs = Counter((r.get("expected"), r.get("actual")) for r in rows)
        (exp, act), k = pairs.most_common(1)[0]
        hint = f"; most often master {exp!r} shown as {act!r} ({k} SKUs)" if k > 1 else ""
        return f"attribute {fld} differs on {channel} for {n} SKUs: mapped wrong?{hint}"
    if cause == "image_slot":
        return f"image slot {fld} differs on {channel} for {n} SKUs"
    if check == "presence":
        kinds = Counter(str((r.get("details") or {}).get("kind") or "listing") for r in rows)
        what = ", ".join(f"{k} {kind}" for kind, k in sorted(kinds.items(), key=lambda x: -x[1]))
        return f"presence differs on {channel} for {n} SKUs: {what}"
    return f"{check if fld == check else f'{check} {fld}'} differs on {channel} for {n} SKUs"


def group(rows: Iterable[Mapping[str, Any]], min_skus: int, examples: int
          ) -> tuple[list[Alert], list[Mapping[str, Any]]]:
    """Split firing findings into incidents (groups of ``min_skus`` SKUs or more) and the
    findings left to alert on their own. ``rows`` are stored findings (dicts)."""
    buckets: dict[tuple[str, str, str, str], list[Mapping[str, Any]]] = {}
    for r in rows:
        buckets.setdefault((r["channel"], *cause_of(r)), []).append(r)
    incidents: list[Alert] = []
    single: list[Mapping[str, Any]] = []
    for (channel, cause, check, fld), members in sorted(buckets.items()):
        skus = sorted({r.get("sku") or r.get("listing_key") or "" for r in members})
        if min_skus <= 0 or len(skus) < min_skus:
            single.extend(members)
            continue
        members = sorted(members, key=lambda r: (r.get("sku") or "", r["fingerprint"]))
        severity = min((r["severity"] for r in members), key=lambda s: SEVERITY_ORDER.get(s, 9))
        shown = [{"sku": r.get("sku"), "expected": r.get("expected"),
                  "actual": r.get("actual"), "fingerprint": r["fingerprint"],
                  "message": r.get("message")} for r in members[:examples]]
        incidents.append(Alert(
            id="inc-" + _id(channel, cause, check, fld), kind="incident",
            labels={"kind": "incident", "channel": channel, "check": check, "field": fld,
                    "severity": severity, "cause": cause},
            summary=describe(cause, check, fld, channel, len(skus), members),
            severity=severity, since=min(str(r.get("since") or r["first_seen_at"])
                                         for r in members),
            info={"channel": channel, "check": check, "field": fld, "cause": cause,
                  "skus": len(skus), "findings": len(members), "examples": shown},
            member_field=members[0]["field"]))
    return incidents, single


def source_alerts(results: Mapping[str, Mapping[str, Any]], channels: Iterable[str],
                  min_runs: int = 1) -> list[Alert]:
    """A failing or partly read source, as an incident of its own, once it has not been
    read completely in ``min_runs`` runs in a row."""
    out = []
    for ch in sorted(set(channels)):
        r = results.get(ch)
        if not r or r.get("status") == "complete" or r.get("failing_runs", 0) < min_runs:
            continue
        sev = "critical" if r["status"] == "failed" else "major"
        out.append(Alert(
            id="src-" + _id(ch), kind="source",
            labels={"kind": "source", "channel": ch, "check": "source", "field": "source",
                    "severity": sev, "cause": "source"},
            summary=f"source {ch} {r['status']} in {r['failing_runs']} run(s) in a row: "
                    f"{r.get('message') or 'no reason recorded'}",
            severity=sev, since=str(r.get("started_at") or r.get("finished_at") or ""),
            info={"channel": ch, "status": r["status"], "message": r.get("message"),
                  "runs": r.get("failing_runs"), "run_id": r.get("run_id")}))
    return out
