"""The alert commands: ``auditor findings ack|snooze|resolve|show``, ``auditor silence
add|list|expire`` and ``auditor alerts outbox|send|propagation``. Registered on the
``auditor`` command by ``auditor.cli`` (which imports this module at its end)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from auditor.cli import (EXIT_FINDINGS, EXIT_OK, _cell, _known, _load, _rows_out, _store_for,
                         config_option, err, findings, format_option, main, out, safe)
from auditor.errors import AuditorError
from auditor.wording import check_field, counted


def _actor(by: str | None) -> str:
    import getpass

    if by:
        return by
    try:
        return getpass.getuser()
    except Exception:
        return "unknown"


_by_option = click.option("--by", help="Who does it (default: the login name).")


@findings.command("ack")
@config_option
@click.argument("fingerprint")
@click.option("--note", help="Why, or what is being done.")
@_by_option
def findings_ack(config_path: Path, fingerprint: str, note: str | None, by: str | None) -> None:
    """Acknowledge a finding: it stops alerting until it resolves and comes back.

    FINGERPRINT may be shortened to its first characters.

    \b
    Example:
      auditor findings ack 3f2a9c --note "Amazon feed fixed in tonight's upload"
    """
    store = _store_for(config_path)
    try:
        f = store.ack_finding(store.find_fingerprint(fingerprint), _actor(by), note)
    finally:
        store.close()
    out.print(f"acknowledged {f['fingerprint']} ({safe(f['channel'])} {safe(f['sku'])} "
              f"{safe(check_field(f['check'], f['field'], ' '))}) by {safe(f['ack_by'])}")


@findings.command("snooze")
@config_option
@click.argument("fingerprint")
@click.option("--until", "until_text", required=True, metavar="TIME|DURATION",
              help="An ISO 8601 time or a duration from now (\"2d\", \"12h\").")
@_by_option
def findings_snooze(config_path: Path, fingerprint: str, until_text: str, by: str | None) -> None:
    """Mute a finding until a time; it alerts again after, if still open.

    \b
    Examples:
      auditor findings snooze 3f2a9c --until 2d
      auditor findings snooze 3f2a9c --until 2026-12-01T09:00+01:00
    """
    from datetime import datetime, timezone

    from auditor.alerts.config import parse_until

    try:
        until = parse_until(until_text, datetime.now(timezone.utc))
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--until") from None
    store = _store_for(config_path)
    try:
        f = store.snooze_finding(store.find_fingerprint(fingerprint), until, _actor(by))
    finally:
        store.close()
    out.print(f"snoozed {f['fingerprint']} until "
              f"{until.astimezone(timezone.utc):%Y-%m-%d %H:%M:%S} UTC")


@findings.command("resolve")
@config_option
@click.argument("fingerprint")
@click.option("--note", help="Why it is resolved.")
@_by_option
def findings_resolve(config_path: Path, fingerprint: str, note: str | None, by: str | None) -> None:
    """Resolve a finding by hand; the next complete read that still shows it reopens it.

    \b
    Example:
      auditor findings resolve 3f2a9c --note "listing deleted on purpose"
    """
    store = _store_for(config_path)
    try:
        f = store.resolve_finding(store.find_fingerprint(fingerprint), _actor(by), note=note)
    finally:
        store.close()
    out.print(f"resolved {f['fingerprint']}")


@findings.command("show")
@config_option
@click.argument("fingerprint")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text",
              show_default=True, help="Output: text for people, JSON for programs.")
def findings_show(config_path: Path, fingerprint: str, fmt: str) -> None:
    """One finding in full: values, lifecycle state, alert state and its history.

    \b
    Example:
      auditor findings show 3f2a9c
    """
    from datetime import datetime, timezone

    from auditor.alerts.policy import display_state

    store = _store_for(config_path)
    try:
        fp = store.find_fingerprint(fingerprint)
        f = store.finding(fp) or {}
        f["events"] = [e.to_dict() for e in store.finding_events(fp)]
        ep = store.finding_episodes([fp]).get(fp)
    finally:
        store.close()
    f["runs"] = ep[3] if ep else None
    f["state"] = display_state({**f, "episode_event": ep and ep[0], "since": ep and ep[1]},
                               datetime.now(timezone.utc))
    if fmt == "json":
        click.echo(json.dumps(f, indent=2, default=str, ensure_ascii=False))
        return
    for key in ("fingerprint", "channel", "sku", "listing_key", "check", "field", "severity",
                "outcome", "expected", "actual", "message", "state", "alert_state",
                "alert_reason", "first_seen_at", "last_seen_at", "runs", "ack_by", "ack_at",
                "ack_note", "snoozed_until", "resolved_at"):
        if f.get(key) not in (None, ""):
            out.print(f"[bold]{key}[/]: {safe(_cell(f[key]), 200)}")
    if f.get("details"):
        out.print(f"[bold]details[/]: {safe(json.dumps(f['details'], default=str), 300)}")
    out.print("[bold]history[/]:")
    for e in f["events"]:
        who = f" by {safe(e.get('actor'))}" if e.get("actor") else ""
        note = f" ({safe(e.get('note'))})" if e.get("note") else ""
        out.print(f"  {_cell(e['at'])} {e['event']}{who}{note}"
                  + (f" run {e['run_id']}" if e.get("run_id") else ""))


# ---------------------------------------------------------------------------- silences

@main.group("silence")
def silence_group() -> None:
    """Mute alerts matching channel, check, severity and SKU patterns until an expiry.

    \b
    Examples:
      auditor silence add --channel amazon --check image --expires 3d --comment "DAM migration"
      auditor silence list --all
      auditor silence expire 3
    """


@silence_group.command("add")
@config_option
@click.option("--channel", help="Channel name or glob.")
@click.option("--check", "check_name", help="Check name or glob.")
@click.option("--severity", help="critical, major, minor, info (or a glob).")
@click.option("--sku", help="SKU glob, e.g. 'TS-*'.")
@click.option("--field", "field_name", help="Field name or glob.")
@click.option("--expires", required=True, metavar="TIME|DURATION",
              help="When the silence ends: an ISO 8601 time or a duration (\"8h\", \"3d\").")
@click.option("--comment", help="Why.")
@_by_option
def silence_add(config_path: Path, channel: str | None, check_name: str | None,
                severity: str | None, sku: str | None, field_name: str | None, expires: str,
                comment: str | None, by: str | None) -> None:
    """Add a silence: matching findings and incidents do not alert until it expires.

    \b
    Example:
      auditor silence add --channel amazon --check image --expires 3d --comment "DAM migration"
    """
    from datetime import datetime, timezone

    from auditor.alerts.config import parse_until

    matchers = {k: v for k, v in (("channel", channel), ("check", check_name),
                                  ("severity", severity), ("sku", sku),
                                  ("field", field_name)) if v}
    if not matchers:
        raise click.UsageError("give at least one matcher: --channel, --check, --severity, "
                               "--sku or --field")
    now = datetime.now(timezone.utc)
    try:
        ends = parse_until(expires, now)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--expires") from None
    if ends <= now:
        raise click.BadParameter("the expiry is in the past", param_hint="--expires")
    store = _store_for(config_path)
    try:
        _known_matchers(config_path, store, matchers)
        sid = store.add_silence(matchers, now, ends, _actor(by), comment, now)
    finally:
        store.close()
    out.print(f"silence {sid} until {ends.astimezone(timezone.utc):%Y-%m-%d %H:%M:%S} UTC: "
              + ", ".join(f"{k}={safe(v)}" for k, v in matchers.items()))


def _known_matchers(config_path: Path, store: Any, matchers: dict[str, str]) -> None:
    """A channel, check or severity named outright must exist (`--channel amazn` made a
    silence that muted nothing, silently): a usage error with "did you mean"; a glob that
    matches none of them now is kept (it may name a channel still to come), with a warning."""
    import fnmatch

    from auditor import plugins
    from auditor.model import Severity

    known = {"channel": lambda: [c.name for c in _load(config_path).channels]
             + list(store.finding_values("channel")),
             "check": lambda: list(plugins.checks()) + list(store.finding_values("check_name")),
             "severity": lambda: [v.value for v in Severity]}
    for kind, names in known.items():
        value = matchers.get(kind)
        if value is None:
            continue
        if any(c in value for c in "*?["):
            if not fnmatch.filter(names(), value):
                err.print(f"[yellow]warning:[/] --{kind} {safe(value)} matches no {kind} "
                          f"yet: the silence mutes nothing until one does")
        else:
            _known(kind, [value], names())


@silence_group.command("list")
@config_option
@click.option("--all", "show_all", is_flag=True, help="Also expired silences.")
@format_option
def silence_list(config_path: Path, show_all: bool, fmt: str) -> None:
    """Silences in force (or all of them).

    \b
    Example:
      auditor silence list --all
    """
    from datetime import datetime, timezone

    store = _store_for(config_path)
    try:
        rows = store.silences(None if show_all else datetime.now(timezone.utc))
    finally:
        store.close()
    for r in rows:
        r["matchers"] = ", ".join(f"{k}={v}" for k, v in r["matchers"].items())
    _rows_out(rows, ["id", "matchers", "starts_at", "ends_at", "created_by", "comment"],
              fmt, counted(len(rows), "silence"))


@silence_group.command("expire")
@config_option
@click.argument("silence_id", type=int)
def silence_expire(config_path: Path, silence_id: int) -> None:
    """End a silence now.

    \b
    Example:
      auditor silence expire 3
    """
    store = _store_for(config_path)
    try:
        ok = store.expire_silence(silence_id)
    finally:
        store.close()
    if not ok:
        raise AuditorError(f"no silence {silence_id} in force")
    out.print(f"silence {silence_id} expired")


# ---------------------------------------------------------------------------- alerts

@main.group("alerts")
def alerts_group() -> None:
    """Notifications: what waits in the outbox, delivering it, propagation latency.

    \b
    Examples:
      auditor alerts outbox                # what waits, and why
      auditor alerts send                  # evaluate and deliver now
      auditor alerts propagation --channel amazon
    """


@alerts_group.command("outbox")
@config_option
@click.option("--all", "show_all", is_flag=True, help="Also notifications already sent.")
@click.option("--limit", type=click.IntRange(min=1), default=100, show_default=True,
              help="At most this many notifications (1 or more).")
@format_option
def alerts_outbox(config_path: Path, show_all: bool, limit: int, fmt: str) -> None:
    """Notifications not yet delivered, and why: attempts, last error, next attempt.

    \b
    Example:
      auditor alerts outbox
    """
    from auditor.alerts import messages

    store = _store_for(config_path)
    try:
        rows = store.outbox(None if show_all else ("pending", "failed"), limit)
    finally:
        store.close()
    heads: dict[str, dict] = {}
    for r in rows:
        r["subject"] = messages.subject(r["payload"])
        if fmt != "json":
            r.pop("payload")
        head = heads.setdefault(r["receiver"], r) if r["status"] == "pending" else None
        if r["last_error"]:
            r["why"] = (f"given up after {r['attempts']} attempts: " if r["status"] == "failed"
                        else f"attempt {r['attempts']} failed: ") + r["last_error"]
        elif r["status"] == "pending" and head is not r and head and head["last_error"]:
            r["why"] = (f"waits behind notification {head['id']} to the same receiver, "
                        f"which is failing")
        else:
            r["why"] = "not attempted yet" if r["status"] == "pending" else ""
    _rows_out(rows, ["id", "receiver", "status", "attempts", "next_attempt_at", "why",
                     "subject", "idempotency_key"], fmt, counted(len(rows), "notification"),
              {"subject": 60, "why": 60})


@alerts_group.command("send")
@config_option
@click.option("--loop", "loop_forever", is_flag=True,
              help="Keep evaluating and delivering every [alerts] send_interval (Ctrl-C stops).")
@click.option("--retry-failed", is_flag=True, help="Try notifications given up on again.")
def alerts_send(config_path: Path, loop_forever: bool, retry_failed: bool) -> None:
    """Evaluate alerts and deliver every due notification (what a run does at its end).

    \b
    Examples:
      auditor alerts send
      auditor alerts send --loop          # next to a scheduler that only runs audits
    Exit codes: 0 nothing left failing, 1 some notifications wait for a retry, 2 error.
    """
    import threading
    from datetime import datetime, timezone

    from auditor.alerts import outbox

    from auditor.storage import open_store, store_exists

    cfg = _load(config_path)
    if not store_exists(cfg.store_url):
        raise AuditorError(f"no store at {cfg.store_url} yet: run `auditor run` first")
    from auditor.alerts.config import unrouted_warnings

    for warning in unrouted_warnings(cfg.alerts):  # why "0 new notifications"
        err.print(f"[yellow]warning:[/] {safe(warning)}")
    if loop_forever:
        stop = threading.Event()
        try:
            outbox.loop(cfg.store_url, cfg, stop)
        except KeyboardInterrupt:
            stop.set()
        return
    store = open_store(cfg.store_url, create=False)
    try:
        if retry_failed:
            store.outbox_retry_failed(datetime.now(timezone.utc))
        res = outbox.cycle(store, cfg)
    finally:
        store.close()
    d, e = res["delivered"], res["evaluated"]
    out.print(f"{e.get('firing', 0)} firing, {e.get('pending', 0)} pending, "
              f"{e.get('suppressed', 0)} suppressed, {counted(e.get('incidents', 0), 'incident')}; "
              f"{counted(e.get('notifications', 0), 'new notification')}; delivered {d['sent']}, "
              f"failed {d['failed']}, given up {d['gave_up']}"
              + (" (another process is delivering)" if d["busy"] else ""))
    sys.exit(EXIT_FINDINGS if d["failed"] or d["gave_up"] else EXIT_OK)


@alerts_group.command("propagation")
@config_option
@click.option("--channel", help="Only this channel.")
@click.option("--pending", is_flag=True, help="Only changes a channel has not shown yet.")
@click.option("--limit", type=click.IntRange(min=1), default=200, show_default=True,
              help="At most this many changes (1 or more).")
@format_option
def alerts_propagation(config_path: Path, channel: str | None, pending: bool, limit: int,
                       fmt: str) -> None:
    """How long each master change took to show on each channel (latency in seconds).

    \b
    Example:
      auditor alerts propagation --channel amazon --format csv
    """
    store = _store_for(config_path)
    try:
        if channel is not None:  # a typo must not read as "0 change(s)"
            _known("channel", [channel], [c.name for c in _load(config_path).channels] +
                   store.finding_channels())
        rows = store.propagation_rows(channel, True if pending else None, limit)
    finally:
        store.close()
    _rows_out(rows, ["channel", "sku", "field", "check_name", "changed_at", "caught_up_at",
                     "latency_seconds"], fmt, counted(len(rows), "change"))
