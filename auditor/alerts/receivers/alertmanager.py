"""Alertmanager API v2: ``POST <url>/api/v2/alerts``.

Each alert becomes ``{labels, annotations, startsAt, endsAt, generatorURL}``. Labels
are the alert's own (``alertname`` AuditorFinding, AuditorIncident or
AuditorSourceFailing, plus channel, check, field, severity, sku or cause and
``auditor_id``), so a re-post of the same alert updates the one Alertmanager holds.
A firing alert's ``endsAt`` is 4 resend intervals ahead: the auditor posts it again
every interval while it fires, and Alertmanager resolves it by itself if the
auditor stops. A resolved alert is posted with ``endsAt`` = its resolution time.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Mapping

import httpx

from auditor.alerts import messages
from auditor.alerts.config import Receiver
from auditor.alerts.receivers import DeliveryError, headers, url_of

NAMES = {"finding": "AuditorFinding", "incident": "AuditorIncident",
         "source": "AuditorSourceFailing"}


def _ts(iso: str | None, fallback: datetime) -> str:
    try:
        dt = datetime.fromisoformat(iso) if iso else fallback
    except ValueError:
        dt = fallback
    return dt.isoformat()


def alerts_body(payload: Mapping[str, Any], now: datetime) -> list[dict[str, Any]]:
    interval = float(payload.get("resend_interval") or 60.0)
    out = []
    for a in payload["alerts"]:
        labels = {"alertname": NAMES.get(a["kind"], "AuditorAlert"), "auditor_id": a["id"]}
        labels.update({k: str(v) for k, v in a.get("labels", {}).items() if v not in (None, "")})
        info = a.get("info", {})
        ann = {"summary": a["summary"], "description": "\n".join(messages.alert_lines(a)),
               "idempotency_key": str(payload["idempotency_key"])}
        for k in ("listing_url", "finding_url"):
            if info.get(k):
                ann[k] = str(info[k])
        ends = a.get("ends_at") if a.get("status") == "resolved" else None
        item = {"labels": labels, "annotations": ann,
                "startsAt": _ts(a.get("starts_at") or a.get("since"), now),
                "endsAt": _ts(ends, now) if ends else (now + timedelta(seconds=4 * interval))
                .isoformat()}
        url = info.get("finding_url") or payload.get("base_url")
        if url:
            item["generatorURL"] = str(url)
        out.append(item)
    return out


def send(receiver: Receiver, payload: Mapping[str, Any], timeout: float, now: datetime) -> None:
    base, shown = url_of(receiver)
    url, shown = base + "/api/v2/alerts", shown + "/api/v2/alerts"
    try:
        r = httpx.post(url, json=alerts_body(payload, now), timeout=timeout,
                       headers={"Idempotency-Key": str(payload["idempotency_key"]),
                                **headers(receiver)})
    except httpx.HTTPError as e:
        raise DeliveryError(f"{shown}: {e.__class__.__name__}: "
                            f"{str(e).replace(url, shown)}") from None
    if not 200 <= r.status_code < 300:
        raise DeliveryError(f"{shown}: HTTP {r.status_code}: {r.text[:200]}")
