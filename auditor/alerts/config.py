"""The ``[alerts]`` table: settings, ``[[alerts.receivers]]`` and ``[[alerts.routes]]``.

Every key is declared once as an ``Opt`` (validation, ``auditor config options`` and
docs/reference.md read the declarations). Secrets (Apprise URLs, webhook signing
keys, SMTP passwords) are ``{ env = "NAME" }`` references, resolved when sending.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Mapping

from auditor.options import Opt, did_you_mean, resolve

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)?\s*$", re.I)
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(value: Any) -> float:
    """Seconds from ``90``, ``"90s"``, ``"15m"``, ``"24h"``, ``"2d"`` or ``"1w"``."""
    if isinstance(value, bool):
        raise ValueError(f"expected a duration such as \"24h\", got {value!r}")
    if isinstance(value, (int, float)):
        if value < 0:
            raise ValueError(f"expected a duration of 0 or more, got {value!r}")
        return float(value)
    if isinstance(value, str):
        m = _DURATION.match(value)
        if m:
            return float(m.group(1)) * _UNITS[(m.group(2) or "s").lower()]
    raise ValueError(f"expected a duration such as \"90s\", \"15m\", \"24h\" or \"2d\", "
                     f"got {value!r}")


def parse_until(value: str, now: datetime) -> datetime:
    """A point in time: an ISO 8601 time (UTC when no zone is given) or a duration from now."""
    try:
        return now + timedelta(seconds=parse_duration(value))
    except ValueError:
        pass
    try:
        dt = datetime.fromisoformat(value.strip())
    except ValueError:
        raise ValueError(f"expected an ISO 8601 time or a duration such as \"2d\", "
                         f"got {value!r}") from None
    return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)


def _env_or_list(value: Any) -> list[Any]:
    """Apprise URLs: { env = "NAME" } or an array of them (never a literal URL: it holds
    the service's token)."""
    from auditor.configtypes import EnvRef

    items = value if isinstance(value, list) else [value]
    out = []
    for v in items:
        if isinstance(v, dict) and set(v) == {"env"} and isinstance(v["env"], str):
            out.append(EnvRef(v["env"]))
        else:
            raise ValueError("Apprise URLs carry tokens: write { env = \"NAME\" } (or an "
                             "array of them), not a literal URL")
    return out


def _secret(value: Any) -> Any:
    from auditor.configtypes import EnvRef

    if isinstance(value, dict) and set(value) == {"env"} and isinstance(value["env"], str):
        return EnvRef(value["env"])
    raise ValueError("a secret: write { env = \"NAME\" }, not a literal value")


def _http_url(value: Any) -> Any:
    """An http(s) URL, or { env = "NAME" } for one that carries a token."""
    from auditor.configtypes import EnvRef

    if isinstance(value, dict) and set(value) == {"env"} and isinstance(value["env"], str):
        return EnvRef(value["env"])
    if not isinstance(value, str) or not re.match(r"^https?://[^/\s]+", value, re.I):
        raise ValueError(f"expected an http(s) URL, got {value!r}")
    if re.match(r"^https?://[^/@]+:[^/@]+@", value, re.I):
        raise ValueError("credentials inside a URL are not allowed; use "
                         "url = { env = \"NAME\" }")
    return value.rstrip("/")


def _str_list(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
        raise ValueError(f"expected a string or an array of strings, got {value!r}")
    return value


def _match(value: Any) -> dict[str, list[str]]:
    """Route matchers: label = "glob" or ["glob", ...]."""
    if not isinstance(value, dict):
        raise ValueError("expected a table of label = \"pattern\" or [\"pattern\", ...]")
    return {str(k): _str_list(v) for k, v in value.items()}


ALERTS_OPTIONS = (
    Opt("enabled", bool, True,
        "Evaluate alerts after each run and in `auditor alerts send` (findings are stored "
        "either way)."),
    Opt("deliver_after_run", bool, True,
        "`auditor run` delivers pending notifications once it has recorded them."),
    Opt("base_url", str, None,
        "Web UI address; messages link each finding as <base_url>/findings/<fingerprint>."),
    Opt("confirm_runs", int, 1,
        "Default for every check: a finding alerts once seen in this many consecutive runs "
        "(per check and channel: `confirm_runs` in [checks.NAME] or [channels.checks.NAME])."),
    Opt("confirm_for", parse_duration, 0.0,
        "Default: a finding alerts once open this long (\"6h\"); with confirm_runs above 1, "
        "either one confirms."),
    Opt("incident_min_skus", int, 10,
        "Findings of one channel sharing a cause become one incident from this many SKUs."),
    Opt("incident_examples", int, 5, "Example SKUs an incident message lists."),
    Opt("max_attempts", int, 20,
        "Delivery attempts of one notification before it is marked failed."),
    Opt("backoff", parse_duration, 30.0,
        "First retry delay after a failed delivery; doubles each attempt (with jitter)."),
    Opt("max_backoff", parse_duration, 3600.0, "Longest retry delay."),
    Opt("timeout", parse_duration, 10.0,
        "Seconds one delivery may take before it counts as failed."),
    Opt("send_interval", parse_duration, 60.0,
        "How often the service loop (`auditor serve`, `auditor alerts send --loop`) evaluates "
        "and delivers."),
)

RECEIVER_OPTIONS = (
    Opt("name", str, None, "Receiver name, used by routes."),
    Opt("type", str, None, "apprise, webhook, alertmanager, email, or a type a plugin "
        "registers (register_receivers)."),
    Opt("send_resolved", bool, True, "Also notify when alerts resolve."),
    Opt("urls", _env_or_list, [],
        "apprise: Apprise URLs (slack://, discord://, ntfy://, pagerduty://, workflows:// ...) "
        "from environment variables, { env = \"NAME\" } or an array of them."),
    Opt("url", _http_url, None,
        "webhook: the URL JSON is POSTed to; alertmanager: Alertmanager's base URL "
        "(POST <url>/api/v2/alerts). A URL that carries a token: { env = \"NAME\" }."),
    Opt("secret", _secret, None,
        "webhook: HMAC-SHA256 signing key, { env = \"NAME\" } (header X-Auditor-Signature)."),
    Opt("headers", dict, {}, "webhook/alertmanager: extra HTTP headers; secrets as "
        "{ env = \"NAME\" }."),
    Opt("resend_interval", parse_duration, 60.0,
        "alertmanager: active alerts are posted again this often; endsAt is 4 intervals ahead "
        "(keep it well under Alertmanager's resolve_timeout)."),
    Opt("host", str, None, "email: SMTP server host (this receiver's own; [smtp] is the "
        "weekly report's)."),
    Opt("port", int, 25, "email: SMTP port (587 with starttls, 465 with ssl)."),
    Opt("starttls", bool, False, "email: upgrade the connection with STARTTLS ([smtp] "
        "security = \"starttls\")."),
    Opt("ssl", bool, False, "email: connect over TLS (SMTPS; [smtp] security = \"tls\")."),
    Opt("username", _secret, None, "email: SMTP user, { env = \"NAME\" }."),
    Opt("password", _secret, None, "email: SMTP password, { env = \"NAME\" }."),
    Opt("from", str, None, "email: sender address ([smtp] calls it sender)."),
    Opt("to", _str_list, [], "email: recipient addresses."),
)

ROUTE_OPTIONS = (
    Opt("match", _match, {},
        "Labels this route takes: channel, check, severity, field, sku, cause, kind "
        "(finding/incident); each a glob or an array of globs. Empty: every alert."),
    Opt("receivers", _str_list, [], "Receiver names the matching alerts are sent to."),
    Opt("group_by", _str_list, ["channel", "check"],
        "Alerts with equal values of these labels go out as one notification."),
    Opt("repeat_interval", parse_duration, 14400.0,
        "A group still firing is notified again after this long (\"4h\")."),
    Opt("continue", bool, False, "Also try the routes after this one (else the first match wins)."),
)

# Per check (in [checks.NAME] or [channels.checks.NAME]): see auditor.check.COMMON_OPTIONS.
CHECK_ALERT_OPTIONS = (
    Opt("confirm_runs", int, None,
        "Alert after this many consecutive runs show the finding "
        "(default: [alerts].confirm_runs)."),
    Opt("confirm_for", parse_duration, None,
        "Alert once the finding has been open this long (default: [alerts].confirm_for)."),
)

# Per channel (in [[channels]]).
CHANNEL_ALERT_OPTIONS = (
    Opt("grace", parse_duration, 0.0,
        "Propagation grace: after a master value changes, findings on it stay pending this "
        "long (\"24h\" for a marketplace feed) before they alert."),
)


@dataclass(frozen=True)
class Receiver:
    name: str
    type: str
    options: Mapping[str, Any]
    send_resolved: bool = True


@dataclass(frozen=True)
class Route:
    match: Mapping[str, list[str]]
    receivers: tuple[str, ...]
    group_by: tuple[str, ...]
    repeat_interval: float
    cont: bool = False


@dataclass(frozen=True)
class AlertsConfig:
    """The validated ``[alerts]`` table."""

    settings: Mapping[str, Any] = field(default_factory=lambda: {o.name: o.default
                                                                   for o in ALERTS_OPTIONS})
    receivers: Mapping[str, Receiver] = field(default_factory=dict)
    routes: tuple[Route, ...] = ()

    def get(self, key: str) -> Any:
        return self.settings[key]


def parse_alerts(raw: Any, problems: list[str]) -> AlertsConfig:
    """Validate ``[alerts]``; append every problem (naming table and key) to ``problems``."""
    if raw is None:
        return AlertsConfig()
    if not isinstance(raw, dict):
        problems.append("[alerts] must be a table")
        return AlertsConfig()
    given = {k: v for k, v in raw.items() if k not in ("receivers", "routes")}
    settings = resolve(ALERTS_OPTIONS, given, "[alerts]", problems)
    receivers: dict[str, Receiver] = {}
    raw_recv = raw.get("receivers", [])
    if not isinstance(raw_recv, list):
        problems.append("alerts.receivers must be an array of tables: write [[alerts.receivers]]")
        raw_recv = []
    for i, r in enumerate(raw_recv):
        where = f"[[alerts.receivers]] #{i + 1}"
        if not isinstance(r, dict):
            problems.append(f"{where} must be a table")
            continue
        if isinstance(r.get("name"), str):
            where = f"[[alerts.receivers]] {r['name']!r}"
        opts = resolve(RECEIVER_OPTIONS, r, where, problems)
        name, rtype = opts.get("name"), opts.get("type")
        if not name:
            problems.append(f"{where}.name: missing (expected a string)")
            continue
        if name in receivers:
            problems.append(f"{where}.name: duplicate receiver name")
        if not rtype:
            problems.append(f"{where}.type: missing (expected apprise, webhook, alertmanager "
                            f"or email)")
            continue
        if rtype not in known_receiver_types():
            problems.append(f"{where}.type: unknown receiver type {rtype!r}"
                            f"{did_you_mean(rtype, known_receiver_types())}")
            continue
        need = {"apprise": ("urls",), "webhook": ("url",), "alertmanager": ("url",),
                "email": ("host", "from", "to")}.get(rtype, ())
        for key in need:
            if not opts.get(key):
                problems.append(f"{where}.{key}: missing (type = \"{rtype}\" needs it)")
        receivers[name] = Receiver(name, rtype, opts, opts.get("send_resolved", True))
    routes: list[Route] = []
    raw_routes = raw.get("routes", [])
    if not isinstance(raw_routes, list):
        problems.append("alerts.routes must be an array of tables: write [[alerts.routes]]")
        raw_routes = []
    for i, r in enumerate(raw_routes):
        where = f"[[alerts.routes]] #{i + 1}"
        if not isinstance(r, dict):
            problems.append(f"{where} must be a table")
            continue
        opts = resolve(ROUTE_OPTIONS, r, where, problems)
        if not opts.get("receivers"):
            problems.append(f"{where}.receivers: missing (expected receiver names)")
        for name in opts.get("receivers") or []:
            if name not in receivers:
                problems.append(f"{where}.receivers: unknown receiver {name!r}"
                                f"{did_you_mean(name, receivers)}")
        routes.append(Route(opts.get("match") or {}, tuple(opts.get("receivers") or ()),
                            tuple(opts.get("group_by") or ()), opts["repeat_interval"],
                            opts.get("continue", False)))
    return AlertsConfig(settings, receivers, tuple(routes))


def unrouted_warnings(alerts: AlertsConfig) -> list[str]:
    """Receivers no ``[[alerts.routes]]`` names: nothing is ever sent to them (not an
    error: a receiver may be kept for later; `auditor config check` and `auditor serve`
    say so)."""
    routed = {name for r in alerts.routes for name in r.receivers}
    idle = [name for name in alerts.receivers if name not in routed]
    if not idle:
        return []
    names = ", ".join(repr(n) for n in idle)
    if not alerts.routes:
        return [f"[[alerts.receivers]] {names}: no [[alerts.routes]] in the config, so no "
                f"alert is sent to any receiver; add one, e.g. [[alerts.routes]] with "
                f"receivers = {list(idle)!r} (a route without match takes every alert)"]
    return [f"[[alerts.receivers]] {n!r}: no [[alerts.routes]] names it, so nothing is sent "
            f"to it; add {n!r} to a route's receivers" for n in idle]


BUILTIN_RECEIVERS = ("apprise", "webhook", "alertmanager", "email")


def known_receiver_types() -> list[str]:
    """Receiver types: the built-in ones (``auditor.alerts.receivers``) and those plugins
    register."""
    from auditor import plugins

    return list(BUILTIN_RECEIVERS) + sorted(n for n in plugins.receivers()
                                            if n not in BUILTIN_RECEIVERS)
