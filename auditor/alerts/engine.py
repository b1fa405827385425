"""Alert evaluation: the finding state in the store -> notifications in the outbox.

``evaluate`` is a relay from the finding state and events already written: it reads
the unresolved findings that changed since the previous evaluation (or every one: see
``evaluate``), works out their alert state (``policy``), groups firing ones by cause
(``incidents``), routes them (``routing``) and compares each receiver's groups with
what that receiver was last told. New alerts, resolutions and due
repeats become outbox rows, written in ONE transaction together with the group
states they change: a crash before the commit leaves nothing half-recorded and the
next evaluation does the same again; after it, the outbox holds the rows.

It is idempotent: evaluating twice at the same time records nothing the second time.
"""

from __future__ import annotations

import json
import logging
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any, Mapping

from auditor import plugins
from auditor.alerts import incidents as inc
from auditor.alerts import policy, routing
from auditor.alerts.incidents import Alert
from auditor.config import Config
from auditor.errors import ConfigError

log = logging.getLogger(__name__)


def rules_for(cfg: Config, channel: str, check: str) -> policy.Rules:
    """Confirmation of one check on one channel, and the channel's propagation grace."""
    ac = cfg.alerts
    try:
        ch = cfg.channel(channel)
    except ConfigError:
        ch = None
    opts = (ch.checks.get(check) if ch else None) or cfg.checks.get(check) or {}
    runs = opts.get("confirm_runs")
    dur = opts.get("confirm_for")
    return policy.Rules(ac.get("confirm_runs") if runs is None else runs,
                        ac.get("confirm_for") if dur is None else dur,
                        float(ch.opt("grace", 0.0)) if ch else 0.0)


def checks_by_field() -> dict[str, list[str]]:
    return policy.checks_by_master_field({n: s.fields for n, s in plugins.checks().items()})


def _finding_alert(r: Mapping[str, Any], titles: Mapping[str, Any],
                   listings: Mapping[tuple[str, str], dict], base_url: str | None) -> Alert:
    from auditor.alerts.messages import difference

    details = r.get("details") or {}
    stale = None
    until = details.get("valid_until") if details.get("stale") else details.get("replaced_at")
    if until:
        stale = f"shows the {r['field']} valid until {str(until)[:10]}"
    li = listings.get((r["channel"], r.get("listing_key") or ""), {})
    url = li.get("url") or (r.get("listing_key") if str(r.get("listing_key") or "")
                            .startswith(("http://", "https://")) else None)
    sku = r.get("sku") or r.get("listing_key")
    return Alert(
        id=r["fingerprint"], kind="finding",
        labels={"kind": "finding", "channel": r["channel"], "check": r["check"],
                "field": r["field"], "severity": r["severity"], "sku": r.get("sku") or ""},
        summary=f"{sku}: {_what(r['check'], r['field'])} on {r['channel']}"
                + (f": {r['message']}" if r.get("message") else ""),
        severity=r["severity"], since=str(r["since"]),
        info={"sku": sku, "product_title": titles.get(r.get("sku") or "") or li.get("title"),
              "channel": r["channel"], "check": r["check"], "field": r["field"],
              "expected": r.get("expected"), "actual": r.get("actual"),
              "difference": difference(r.get("expected"), r.get("actual")),
              "stale_note": stale, "message": r.get("message"), "runs": r.get("runs", 1),
              "reopened": r.get("episode_event") == "reopened",
              "listing_url": url, "fingerprint": r["fingerprint"],
              "finding_url": f"{base_url.rstrip('/')}/findings/{r['fingerprint']}"
              if base_url else None})


def _what(check: str, fld: str) -> str:
    return check if fld == check else f"{check} {fld}"


# More finding events than this since the previous evaluation (a first audit): every
# finding is read at once (one scan) rather than looked up by fingerprint.
INCREMENTAL_LIMIT = 50_000


def evaluate(store: Any, cfg: Config, now: datetime | None = None,
             full: bool = False) -> dict[str, Any]:
    """Evaluate alerts at ``now`` and record due notifications in the outbox.

    Incremental by default: only the findings that changed since the previous evaluation
    (and those pending or snoozed, whose state moves with the runs and the clock) are
    evaluated, and only the groups (channel, check, field) they belong to are grouped
    again; the rest is what the previous evaluation recorded. ``full``: evaluate every
    finding (what a config or silence change does by itself; the reference the tests
    compare the incremental evaluation with)."""
    now = now or datetime.now(timezone.utc)
    ac = cfg.alerts
    result = {"firing": 0, "pending": 0, "suppressed": 0, "incidents": 0, "notifications": 0}
    try:  # recorded whether or not alerts are enabled
        result["propagation"] = store.sync_propagation(checks_by_field())
    except Exception:  # latency bookkeeping must never stop alerts
        log.exception("propagation latency could not be recorded")
    if not ac.get("enabled"):
        return result
    max_grace = max([float(c.opt("grace", 0.0)) for c in cfg.channels] + [0.0])
    base_url = ac.get("base_url")
    for _attempt in range(5):
        done = _evaluate_once(store, cfg, now, result, max_grace, base_url, full)
        if done:
            return result
        log.info("another alert evaluation was recorded meanwhile; evaluating again")
    raise RuntimeError("alert evaluation kept conflicting with another one; try again")


def _triple_key(channel: str, check: str, fld: str) -> str:
    return f"{channel}\x1f{check}\x1f{fld}"


def _order(a: Alert, fingerprint_bucket: Mapping[str, tuple[str, ...]]) -> tuple:
    """Where an alert stands in the list a full evaluation builds: incidents by cause,
    then single findings by cause and fingerprint, then sources by channel."""
    if a.kind == "incident":
        i = a.info
        return (0, (i["channel"], i["cause"], i["check"], i["field"]))
    if a.kind == "finding":
        return (1, fingerprint_bucket[a.id], a.id)
    return (2, (a.labels.get("channel") or "",))


def _from_dict(m: Mapping[str, Any]) -> Alert:
    return Alert(id=m["id"], kind=m["kind"], labels=dict(m["labels"]), summary=m["summary"],
                 severity=m["severity"], since=m["since"], info=dict(m.get("info") or {}))


def _evaluate_once(store: Any, cfg: Config, now: datetime, result: dict[str, Any],
                   max_grace: float, base_url: str | None, full: bool = False) -> bool:
    """Read and compute in a snapshot, then record in a short write transaction; False
    when another evaluation was recorded in between (nothing written)."""
    ac = cfg.alerts
    with store.alert_snapshot():
        generation = store.alert_cursor("generation") or "0"
        # Nothing read has changed and no timed transition is due: nothing to do.
        config_token = _config_token(cfg)
        token = f"{store.alert_inputs()}|{config_token}"
        next_due = store.alert_cursor("next_due")
        if token == store.alert_cursor("inputs") and next_due and \
                now < datetime.fromisoformat(next_due):
            result["unchanged"] = True
            return True
        dues: list[datetime] = []
        changed: dict[tuple[str, str], datetime] = {}
        if max_grace > 0:
            by_field = checks_by_field()
            for sku, fld, at in store.recent_master_changes(now - timedelta(seconds=max_grace)):
                t = datetime.fromisoformat(at)
                for check in by_field.get(fld, ()):
                    if t > changed.get((sku, check), datetime.min.replace(tzinfo=timezone.utc)):
                        changed[(sku, check)] = t
        silences = [policy.Silence.from_row(s) for s in store.silences(active_at=now)]
        dues += [datetime.fromisoformat(s["starts_at"]) for s in store.silences()
                 if datetime.fromisoformat(s["starts_at"]) > now]
        silence_token = ",".join(f"{s.id}@{s.ends_at.isoformat()}" for s in silences)
        # What the previous evaluation left (None: evaluate every finding).
        prev = _previous(store.alert_cursor("evaluated"))
        positions = store.alert_positions(prev["positions"] if prev else None)
        touched = None
        if prev and not full and prev["config"] == config_token and \
                prev["silences"] == silence_token and \
                now >= datetime.fromisoformat(prev["now"]):
            touched = store.alert_touched(int(prev["positions"]["events"]),
                                          int(prev["positions"]["master"]),
                                          datetime.fromisoformat(prev["now"]),
                                          INCREMENTAL_LIMIT)
        counts: dict[str | None, int] = {}
        if touched is None:
            candidates = store.alert_candidates()
        else:
            candidates = store.alert_rows(fp for fp, t in touched.items() if t[4])
            counts = store.alert_state_counts()
        rules_cache: dict[tuple[str, str], policy.Rules] = {}
        firing_rows, states = [], []
        reasons: dict[str, str] = {}
        silenced = {int(i) for i in prev.get("silenced", ())} if touched is not None and prev \
            else set()
        for r in candidates:
            ck = (r["channel"], r["check"])
            rules = rules_cache.get(ck) or rules_cache.setdefault(ck, rules_for(cfg, *ck))
            view = policy.view_from_row(r, changed.get((r.get("sku") or "", r["check"])))
            st = policy.alert_status(view, rules, silences, now)
            if touched is not None:  # the stored counts, as this evaluation changes them
                counts[r.get("alert_state")] = counts.get(r.get("alert_state"), 0) - 1
            counts[st.state] = counts.get(st.state, 0) + 1
            reasons[r["fingerprint"]] = st.reason
            if st.reason.startswith(policy.SILENCED_BY):  # (its end is due below)
                silenced.add(int(st.reason[len(policy.SILENCED_BY):]))
            if st.until is not None:
                dues.append(st.until)
            if (r.get("alert_state"), r.get("alert_reason")) != (st.state, st.reason):
                states.append((st.state, st.reason, r["fingerprint"]))
            if st.state == policy.FIRING:
                firing_rows.append(r)
        for k in (policy.FIRING, policy.PENDING, policy.SUPPRESSED):
            result[k] = counts.get(k, 0)
        dues += [s.ends_at for s in silences if s.id in silenced]
        result["evaluated"] = len(candidates)
        result["full"] = touched is None
        prev_incidents: dict[str, list[str]] = prev.get("incidents", {}) if prev else {}
        if touched is None:
            dirty = None
        else:
            # The groups (channel, check, field) whose firing set may have changed: those
            # of the findings evaluated that fired before or fire now. Their other firing
            # findings are unchanged since the previous evaluation and join them again.
            now_firing = {r["fingerprint"] for r in firing_rows}
            dirty = {t[:3] for fp, t in touched.items()
                     if t[3] == policy.FIRING or fp in now_firing}
            rest = store.alert_rows(fp for fp in store.alert_firing(sorted(dirty))
                                    if fp not in touched)
            reasons.update((r["fingerprint"], "confirmed") for r in rest)
            firing_rows = sorted(firing_rows + rest, key=lambda r: r["fingerprint"])
        incidents, singles = inc.group(firing_rows, ac.get("incident_min_skus"),
                                       ac.get("incident_examples"))
        incident_map = {} if dirty is None else {
            k: v for k, v in prev_incidents.items()
            if tuple(k.split("\x1f")) not in dirty}
        for a in incidents:
            incident_map.setdefault(_triple_key(a.labels["channel"], a.labels["check"],
                                                a.member_field or ""), []).append(a.id)
        result["incidents"] = sum(len(v) for v in incident_map.values())
        titles = store.master_titles(r.get("sku") for r in singles)
        listings = store.listing_context((r["channel"], r["listing_key"]) for r in singles
                                         if r.get("listing_key"))
        alerts: list[Alert] = incidents + [_finding_alert(r, titles, listings, base_url)
                                           for r in singles]
        stored = store.alert_groups()
        if dirty is not None:
            # What the receivers were told of the other groups stands (their findings did
            # not change), but for each finding's run count, read now.
            owner = {i: tuple(k.split("\x1f")) for k, ids in prev_incidents.items()
                     for i in ids}
            carried: dict[str, dict[str, Any]] = {}
            for g in stored.values():
                for mid, m in g["members"].items():
                    trip: tuple[str, ...] | None
                    if m.get("kind") == "finding":
                        lab = m.get("labels", {})
                        trip = (lab.get("channel"), lab.get("check"), lab.get("field"))
                    elif m.get("kind") == "incident":
                        trip = owner.get(mid)
                    else:
                        continue
                    if trip is not None and trip not in dirty:
                        carried.setdefault(mid, m)
            fresh = {r["fingerprint"]: r for r in store.alert_rows(
                mid for mid, m in carried.items() if m.get("kind") == "finding")}
            bucket = {r["fingerprint"]: (r["channel"], *inc.cause_of(r))
                      for r in [*fresh.values(), *singles]}
            for mid, m in carried.items():
                if m.get("kind") == "finding":
                    fr = fresh.get(mid)
                    if fr is None:  # (not firing any more: cannot be, its group is clean)
                        continue
                    m = {**m, "info": {**m.get("info", {}), "runs": fr.get("runs", 1)}}
                alerts.append(_from_dict(m))
            alerts.sort(key=lambda a: _order(a, bucket))
        alerts += inc.source_alerts(store.source_failure_streaks(),
                                    [c.name for c in cfg.channels if c.enabled])
        alerts = [a for a in alerts if a.kind == "finding"
                  or not any(s.matches(a.labels) for s in silences)]
        groups = routing.assign(alerts, ac.routes)
        firing_ids = {a.id for a in alerts}
        gone_findings = store.findings_by_fingerprint(
            fid for g in stored.values() for fid, m in g["members"].items()
            if m.get("kind") == "finding" and fid not in firing_ids)
        keep: list[dict[str, Any]] = []
        drop: list[tuple[str, str]] = []
        rows: list[dict[str, Any]] = []
        for gk in sorted(set(groups) | set(stored)):
            receiver_name, key = gk
            recv = ac.receivers.get(receiver_name)
            g = groups.get(gk)
            old = stored.get(gk)
            if recv is None:
                if old:
                    drop.append(gk)
                continue
            cur = {} if g is None else {i: a.to_dict() for i, a in g["alerts"].items()}
            members = old["members"] if old else {}
            new_ids = [i for i in cur if i not in members]
            is_am = recv.type == "alertmanager"
            told = []
            for gid, m in members.items():
                if gid in cur:
                    continue
                resolution, ends = _resolution(m, gone_findings, reasons, alerts, firing_ids,
                                               now)
                if (resolution == "resolved" and recv.send_resolved) or is_am:
                    told.append({**m, "status": "resolved", "ends_at": ends,
                                 "resolution": resolution})
            route = g["route"] if g else None
            repeat = route.repeat_interval if route else 0.0
            if is_am:
                repeat = min(repeat, float(recv.options.get("resend_interval") or 60.0))
            last = datetime.fromisoformat(old["last_sent_at"]) if old and old["last_sent_at"] \
                else None
            due = bool(cur) and (last is None or (now - last).total_seconds() >= repeat)
            seq = old["seq"] if old else 0
            sent_at = old["last_sent_at"] if old else None
            if new_ids or told or due:
                seq += 1
                sent_at = now.isoformat()
                idem = f"oa-{uuid.uuid4().hex}"
                payload = {
                    "version": 1, "idempotency_key": idem, "receiver": receiver_name,
                    "receiver_type": recv.type, "group_key": key,
                    "group_labels": (g or old)["labels"],
                    "status": "firing" if cur else "resolved", "created_at": now.isoformat(),
                    "repeat": not new_ids and not told, "new": new_ids,
                    "alerts": [{**a, "status": "firing", "starts_at": a["since"]}
                               for a in cur.values()] + told,
                    "resend_interval": recv.options.get("resend_interval"),
                    "base_url": base_url}
                rows.append({"receiver": receiver_name, "group_key": key,
                             "idempotency_key": idem, "payload": payload})
            if cur:
                dues.append(datetime.fromisoformat(sent_at or now.isoformat())
                            + timedelta(seconds=repeat))
                keep.append({"receiver": receiver_name, "group_key": key,
                             "labels": (g or old)["labels"], "members": cur, "seq": seq,
                             "last_sent_at": sent_at})
            elif old:
                drop.append(gk)
    n = store.record_alerts(keep, drop, rows, states, now, generation, {
        "inputs": token,
        "next_due": min(dues, default=now + timedelta(days=3650)).isoformat(),
        "evaluated": json.dumps({
            "config": config_token, "silences": silence_token, "now": now.isoformat(),
            "positions": positions, "incidents": incident_map,
            "silenced": sorted(silenced)}, sort_keys=True)})
    if n is None:
        for k in ("firing", "pending", "suppressed"):
            result[k] = 0
        return False
    result["notifications"] = n
    return True


def _previous(raw: str | None) -> dict[str, Any] | None:
    """The previous evaluation's bookkeeping (None: none recorded, or unreadable)."""
    if not raw:
        return None
    try:
        got = json.loads(raw)
    except ValueError:
        return None
    return got if isinstance(got, dict) and {"config", "silences", "now", "positions",
                                              "incidents"} <= got.keys() else None


def _config_token(cfg: Config) -> str:
    """What of the config an evaluation depends on (secrets are named, never read)."""
    import hashlib

    ac = cfg.alerts
    parts = [sorted(ac.settings.items()),
             sorted((n, r.type, r.send_resolved, repr(sorted(r.options.items())))
                    for n, r in ac.receivers.items()),
             [repr(r) for r in ac.routes],
             [(c.name, c.enabled, c.opt("grace", 0.0),
               sorted((k, v.get("confirm_runs"), v.get("confirm_for"))
                      for k, v in c.checks.items())) for c in cfg.channels],
             sorted((k, v.get("confirm_runs"), v.get("confirm_for"))
                    for k, v in cfg.checks.items())]
    return hashlib.blake2b(repr(parts).encode(), digest_size=8).hexdigest()


def _resolution(m: Mapping[str, Any], gone_findings: Mapping[str, Mapping[str, Any]],
                reasons: Mapping[str, str], alerts: list[Alert], firing_ids: set[str],
                now: datetime) -> tuple[str, str]:
    """Why an alert a receiver was told about is no longer firing: ``resolved`` (with the
    resolution time) or ``withdrawn`` (acknowledged, snoozed, silenced, back in grace,
    or an incident split into fewer findings)."""
    if m["id"] in firing_ids:
        return "withdrawn: moved to another group", now.isoformat()
    if m.get("kind") == "finding":
        if reasons.get(m["id"]) == "confirmed":
            return "withdrawn: now part of an incident", now.isoformat()
        f = gone_findings.get(m["id"])
        if f is None or f.get("state") == "resolved":
            return "resolved", (f or {}).get("resolved_at") or now.isoformat()
        return f"withdrawn: {reasons.get(m['id']) or 'not firing'}", now.isoformat()
    if m.get("kind") == "incident":
        lab = m.get("labels", {})
        if any(a.kind == "finding" and a.labels.get("channel") == lab.get("channel")
               and a.labels.get("check") == lab.get("check") for a in alerts):
            return "withdrawn: fewer SKUs than an incident needs", now.isoformat()
    return "resolved", now.isoformat()
