"""config.toml: read once, validated into typed objects, errors name file, table and key.

Secrets never live in the file: wherever a secret is taken (HTTP headers such as
``Authorization``, passwords, tokens), the value is a reference to an environment
variable written ``{ env = "NAME" }``, resolved only when it is used.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from auditor.errors import ConfigError
from auditor.options import Opt, did_you_mean, resolve
from auditor import plugins
from auditor.alerts.config import CHANNEL_ALERT_OPTIONS, AlertsConfig, parse_alerts
from auditor.configtypes import SECRET_VALUES as SECRET_VALUES, ChannelConfig as ChannelConfig, \
    EnvRef as EnvRef, secret_value as secret_value, str_list as _str_list

SENSITIVE_HEADER = re.compile(r"(authorization|cookie|token|secret|api[-_]?key|password|auth)", re.I)


def _headers(value: Any) -> dict[str, str | EnvRef]:
    if not isinstance(value, dict):
        raise ValueError(f"expected a table of header names to values, got {value!r}")
    out: dict[str, str | EnvRef] = {}
    for name, v in value.items():
        if isinstance(v, dict) and set(v) == {"env"} and isinstance(v["env"], str):
            out[name] = EnvRef(v["env"])
        elif isinstance(v, str):
            if SENSITIVE_HEADER.search(name):
                raise ValueError(f"header {name!r} carries a secret: write it as "
                                 f"{{ env = \"VARIABLE\" }}, not as a literal value")
            out[name] = v
        else:
            raise ValueError(f"header {name!r}: expected a string or {{ env = \"NAME\" }}")
    return out


def _auth(value: Any) -> dict[str, EnvRef]:
    if not isinstance(value, dict) or set(value) - {"username", "password"}:
        raise ValueError("expected { username = { env = \"NAME\" }, password = { env = \"NAME\" } }")
    out = {}
    for k, v in value.items():
        if isinstance(v, dict) and set(v) == {"env"}:
            out[k] = EnvRef(v["env"])
        else:
            raise ValueError(f"auth.{k} must be {{ env = \"NAME\" }}: secrets come from the environment")
    return out


def _secret(value: Any) -> str | EnvRef:
    """A secret: a plain string (discouraged) or ``{ env = "NAME" }``."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and set(value) == {"env"} and isinstance(value["env"], str):
        return EnvRef(value["env"])
    raise ValueError('expected a string or { env = "NAME" }')


def _source(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"expected a path, glob or http(s) URL, got {value!r}")
    if re.match(r"^[a-z][a-z0-9+.-]*://[^/@]+:[^/@]+@", value, re.I):
        raise ValueError("credentials inside a URL are not allowed; use headers or auth "
                         "with { env = \"NAME\" }")
    if re.match(r"^[a-z][a-z0-9+.-]*://", value, re.I) and not re.match(r"^https?://", value, re.I):
        raise ValueError(f"unsupported URL scheme in {value!r}: expected http(s), a path or a glob")
    return value


def _cron(value: Any) -> str:
    # cron as cron means it (Sunday = 0 or 7), not APScheduler's Monday = 0
    from auditor.service.cron import validate

    return validate(value)


def _scope(value: Any) -> dict[str, list[str]]:
    if not isinstance(value, dict):
        raise ValueError("expected a table of master field = [allowed values]")
    out = {}
    for k, v in value.items():
        if isinstance(v, str):
            v = [v]
        if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
            raise ValueError(f"scope.{k}: expected a string or an array of strings")
        out[k] = v
    return out


def _store_url(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {value!r}")
    if value:
        from auditor.errors import StoreError
        from auditor.storage import check_url

        try:
            check_url(value)
        except StoreError as e:
            raise ValueError(str(e)) from None
    return value


STORE_OPTIONS = (
    Opt("path", str, "auditor.db", "SQLite database file (relative to the config file)."),
    Opt("url", _store_url, "",
        "The store as a URL, instead of `path`: sqlite:///auditor.db (relative to the config "
        "file), sqlite:////var/lib/auditor/auditor.db (absolute), sqlite:///:memory:, or "
        "postgresql://USER@HOST:5432/DBNAME for the PostgreSQL store (pip install "
        "'omni-auditor[postgres]'; give the password by PGPASSWORD or ~/.pgpass rather than "
        "in the URL; see docs/scaling.md). When set, `path` is not used. `store = \"URL\"` "
        "at the top of the file is short for this key."),
)

RUN_OPTIONS = (
    Opt("workers", int, 0,
        "Channels audited at the same time, each in its own process (forked after the "
        "master is loaded, so it is shared, not copied). 0 = one per CPU core, at most one "
        "per channel; 1 = every channel in the auditor's own process, one after another. "
        "Workers take the longest channels first (last run's duration, else file size)."),
    Opt("shard_size", int, 150_000,
        "`auditor run --distributed`: listings per shard job (1 or more); a channel of N "
        "listings is checked and written by ceil(N / shard_size) jobs (docs/scaling.md)."),
    Opt("job_attempts", int, 3,
        "`auditor run --distributed`: attempts of a job whose worker died (SIGKILL, a lost "
        "machine) before it fails and its channel is recorded partial (1 or more)."),
    Opt("stalled_after", float, 30.0,
        "`auditor run --distributed`: seconds without a heartbeat after which a worker is "
        "taken for dead and its job queued again (above 0, and above `auditor worker "
        "--heartbeat`)."),
    Opt("distributed", bool, False,
        "Every run of this config is distributed, as with `auditor run --distributed`: "
        "`auditor run` and the scheduled audits of `auditor serve` hand the channels to "
        "`auditor worker` processes (needs the PostgreSQL store; docs/scaling.md)."),
    Opt("job_retention_hours", int, 168,
        "`auditor worker`: jobs that ended (failed, cancelled, aborted; a succeeded job is "
        "deleted at once) are deleted from the queue this many hours after they ended, at "
        "the worker's start and then hourly; 0 = keep them (`auditor worker --prune-after` "
        "overrides it)."),
)

HTTP_OPTIONS = (
    Opt("user_agent", str, "omni-auditor/0.1 (+https://github.com/omni-auditor/omni-auditor)",
        "User-Agent sent with every request; name your organisation and a contact."),
    Opt("timeout", float, 30.0, "Seconds before one request times out (connect, read, write)."),
    Opt("retries", int, 3, "Retries of a failed request (timeouts, 5xx, 429) with exponential backoff."),
    Opt("backoff", float, 0.5, "First backoff delay in seconds; doubles each retry, with jitter."),
    Opt("max_retry_after", float, 120.0, "Longest Retry-After honoured, in seconds."),
    Opt("max_body_bytes", int, 200_000_000, "Largest response body read, in bytes (feeds)."),
    Opt("max_redirects", int, 5, "Redirects followed per request."),
    Opt("concurrency", int, 16, "Requests in flight at once, all hosts together."),
    Opt("per_host_concurrency", int, 4, "Requests in flight at once to one host."),
    Opt("allow_private", bool, False,
        "Allow requests to addresses that are not globally routable: private, loopback, "
        "link-local, shared (100.64.0.0/10) and reserved ranges (tests and demos)."),
    Opt("source_deadline", float, 1800.0,
        "Seconds one source's download (a feed, an export) may take in all, retries "
        "included; past it the source fails. A channel may set its own."),
)

# Bounds on reading one source file, shared by [master] and every channel.
SOURCE_LIMIT_OPTIONS = (
    Opt("max_source_bytes", int, 5_000_000_000,
        "Largest file read, in bytes after gzip/zip are undone; past it the source fails "
        "(a compression bomb is stopped here)."),
    Opt("max_line_length", int, 1_048_576,
        "Longest physical line of a delimited (CSV/TSV) file, in characters; a longer one "
        "fails the source."),
    Opt("max_field_length", int, 131_072,
        "Longest cell of a delimited file, in characters; a longer one fails the source."),
    Opt("max_compression_ratio", int, 100,
        "A gzip or zip whose content grows past 16 MiB and more than this many times its "
        "compressed size fails the source (a compression bomb; real feeds: 5-20x). 0 = off."),
)

MASTER_OPTIONS = (
    Opt("type", str, "csv", "Master export format.", choices=("csv", "jsonl")),
    Opt("source", _source, None, "Path, glob (newest match) or http(s) URL of the PIM export."),
    Opt("encoding", str, "auto", "Text encoding, or auto to detect (UTF-8, BOM, Windows-1252)."),
    Opt("delimiter", str, "auto", "CSV delimiter, or auto to sniff."),
    Opt("columns", dict, {}, "Column remap: our field = \"their column\" (e.g. sku = \"Article No\")."),
    Opt("default_currency", str, None, "Currency for prices with no currency column or symbol."),
    Opt("skip_bad_rows", bool, False,
        "Import the good rows and report the bad ones, instead of rejecting the whole file."),
    Opt("date_format", str, None, "strptime format of sale dates, when not ISO 8601."),
    Opt("timezone", str, "UTC", "Time zone for dates without one."),
    Opt("headers", _headers, {}, "HTTP headers for a URL source; secrets as { env = \"NAME\" }."),
    Opt("auth", _auth, None, "HTTP basic auth for a URL source, from environment variables."),
    Opt("schedule", _cron, None,
        "Cron expression for `auditor serve`: when the master alone is imported again "
        "(each channel's own schedule also imports it first)."),
) + SOURCE_LIMIT_OPTIONS

LINKING_OPTIONS = (
    Opt("order", _str_list, ["sku", "gtin", "mpn", "url"],
        "Exact keys tried in this order: sku, gtin, mpn (with brand), url."),
    Opt("fuzzy", bool, True, "Match listings with no key by what they show (model codes, brand, "
        "quantities, title, price); a listing whose SKU or GTIN matches nothing gets title "
        "suggestions but stays an orphan."),
    Opt("link_score", float, 0.8, "Lowest match score (title similarity 0-1 plus evidence for "
        "and against) linked without a person; checks run on the link."),
    Opt("suggest_score", float, 0.5, "Lowest match score shown as a suggested link "
        "(`auditor links --state suggested`): no findings until a person confirms it."),
    Opt("link_margin", float, 0.05, "A link needs this lead over the listing's next candidate, "
        "else it is only suggested."),
    Opt("workers", int, 1, "Processes that rank a channel's listings without keys once it has "
        "20,000 or more of them (forked, sharing the master's index; the decisions are the "
        "same whatever the number). 1 = all in the channel's process; 2 shortens the link "
        "phase only where a core is idle (channels run in parallel use the cores already)."),
)

CHANNEL_OPTIONS = (
    Opt("name", str, None, "Channel name, unique; used in findings, metrics and overrides."),
    Opt("type", str, None, "Connector type (see `auditor connectors`)."),
    Opt("source", _source, None, "Path, glob or http(s) URL the connector reads."),
    Opt("schedule", _cron, None, "Cron expression for `auditor serve`."),
    Opt("enabled", bool, True, "Read this channel in runs."),
    Opt("currency", str, None, "Currency of prices the source writes without one."),
    Opt("scope", _scope, {}, "Assortment filter: master field = [values]; only matching "
        "active masters are expected on the channel."),
    Opt("allow_empty", bool, False,
        "Accept an empty source as real (otherwise it is a source problem on its first read "
        "and when the last complete read had listings: nothing is concluded missing)."),
    Opt("min_ratio", float, 0.5,
        "A source yielding fewer than this share of the last complete read's listings is a "
        "sharp drop: presence is held, as with max_drop."),
    Opt("max_drop", float, 0.1,
        "Largest share of the last complete read's listings that may vanish at once (2 or "
        "more) before presence is held: no missing listing concluded, none resolved, until "
        "the next run confirms the drop or `auditor runs accept RUN CHANNEL`. 1 = never hold."),
    Opt("headers", _headers, {}, "HTTP headers for URL sources; secrets as { env = \"NAME\" }."),
    Opt("auth", _auth, None, "HTTP basic auth for URL sources, from environment variables."),
    Opt("allow_hosts", _str_list, [], "Further origins this channel may fetch from (an image "
        "CDN): https://cdn.example:8443, cdn.example:8443 (that port) or cdn.example (ports "
        "80 and 443)."),
    Opt("allow_private", bool, None, "Override [http].allow_private for this channel."),
    Opt("all_files", bool, False, "With a glob source: read every matching file, not only the newest."),
    Opt("encoding", str, "auto", "Text encoding of file sources, or auto to detect."),
    Opt("source_deadline", float, None,
        "Seconds this channel's download may take in all (default [http].source_deadline)."),
) + SOURCE_LIMIT_OPTIONS + CHANNEL_ALERT_OPTIONS


SMTP_OPTIONS = (
    Opt("host", str, None, "SMTP server of the weekly report's email (an email alert "
        "receiver names its own: [[alerts.receivers]] host, port, starttls/ssl, from)."),
    Opt("port", int, 587, "SMTP port: 587 with STARTTLS, 465 with implicit TLS, 25 plain."),
    Opt("security", str, "starttls", "Transport security: starttls (upgrade a plain "
        "connection, port 587), tls (TLS from the start, port 465) or none (a local relay "
        "on a trusted network).", choices=("starttls", "tls", "none")),
    Opt("username", _secret, None, "SMTP login, as { env = \"NAME\" } or a plain string."),
    Opt("password", _secret, None, "SMTP password, from the environment: { env = \"NAME\" }."),
    Opt("sender", str, None, "From address, e.g. \"Product audit <audit@example.com>\"."),
    Opt("timeout", float, 30.0, "Seconds before an SMTP connection or command times out."),
)

REPORT_OPTIONS = (
    Opt("out_dir", str, "weekly-reports",
        "Archive folder of weekly reports (relative to the config file): one folder per ISO week."),
    Opt("email_to", _str_list, [], "Recipients of the weekly report (`auditor report weekly --email`)."),
    Opt("schedule", _cron, "0 7 * * 1",
        "Cron expression on which `auditor serve` writes (and emails) the last week's report."),
    Opt("ui_base_url", str, None,
        "Base URL of the web UI (e.g. https://audit.example.com): products in reports link there."),
)

UI_OPTIONS = (
    Opt("password", _secret, None,
        "Password of the web UI's write actions (acknowledge, snooze, confirm links), as "
        "{ env = \"NAME\" }; unset: the AUDITOR_UI_PASSWORD variable. With none set, the "
        "UI is read-only."),
    Opt("secret", _secret, None,
        "Key that signs the UI's session cookies, as { env = \"NAME\" }; unset: the "
        "AUDITOR_UI_SECRET variable, else a random key per process (logins end on restart)."),
    Opt("session_hours", float, 12.0, "Hours a UI login lasts."),
    Opt("protect_reads", bool, False, "The UI's pages need a login too, not only its actions."),
    Opt("secure_cookies", bool, False,
        "Mark the session cookie Secure (set this when the UI is served over HTTPS)."),
)


def _env_ref(value: Any) -> "EnvRef":
    if isinstance(value, dict) and set(value) == {"env"} and isinstance(value["env"], str):
        return EnvRef(value["env"])
    raise ValueError("expected { env = \"NAME\" }: secrets come from the environment")


SERVE_OPTIONS = (
    Opt("host", str, "127.0.0.1", "Address `auditor serve` listens on (--host overrides)."),
    Opt("port", int, 8080, "Port `auditor serve` listens on (--port overrides)."),
    Opt("token", _env_ref, None,
        "Bearer token for the API's write calls, as { env = \"NAME\" }; unset: the "
        "AUDITOR_API_TOKEN variable. With no token set, write calls are refused."),
    Opt("protect_reads", bool, False,
        "Reads (the JSON API) need the bearer token too; /metrics, /healthz and /readyz stay open."),
    Opt("timezone", str, "UTC", "Time zone the cron schedules are read in (e.g. Europe/Berlin)."),
    Opt("jitter", float, 30.0,
        "Up to this many seconds of random delay per scheduled audit (at most a tenth of "
        "its interval), so channels on one schedule do not start in the same second."),
    Opt("catch_up", bool, True,
        "At start-up, audit once every source whose last complete read is older than its interval."),
    Opt("stop_timeout", float, 60.0,
        "On SIGTERM, seconds a running audit gets to finish before it is stopped and "
        "recorded as interrupted."),
)

_CHANNEL_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


@dataclass(frozen=True)
class Config:
    """The whole validated configuration."""

    path: Path
    store: Mapping[str, Any]
    http: Mapping[str, Any]
    master: Mapping[str, Any]
    linking: Mapping[str, Any]
    channels: tuple[ChannelConfig, ...]
    checks: Mapping[str, Mapping[str, Any]]
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False)
    run: Mapping[str, Any] = field(default_factory=lambda: {"workers": 0})
    alerts: AlertsConfig = field(default_factory=AlertsConfig)
    smtp: Mapping[str, Any] = field(default_factory=dict)
    report: Mapping[str, Any] = field(default_factory=dict)
    ui: Mapping[str, Any] = field(default_factory=dict)
    serve: Mapping[str, Any] = field(default_factory=lambda: {o.name: o.default
                                                              for o in SERVE_OPTIONS})

    @property
    def base_dir(self) -> Path:
        return self.path.parent

    @property
    def store_url(self) -> str:
        """What ``auditor.storage.open_store`` opens: ``[store] url``, else ``path``; a
        relative SQLite file is relative to the config file's folder."""
        url = self.store.get("url") or ""
        if not url:
            return str(self.resolve_path(self.store["path"]))
        head, sep, rest = url.partition(":///")
        if head.lower() == "sqlite" and sep and rest and not rest.startswith("/") \
                and rest != ":memory:":
            return "sqlite:///" + str(self.resolve_path(rest))
        return url

    def resolve_path(self, p: str) -> Path:
        """A path from the config, relative to the config file's folder."""
        path = Path(p).expanduser()
        return path if path.is_absolute() else self.base_dir / path

    def channel(self, name: str) -> ChannelConfig:
        for ch in self.channels:
            if ch.name == name:
                return ch
        raise ConfigError(str(self.path), [f"no channel named {name!r}; configured: "
                                           + ", ".join(c.name for c in self.channels)])


def _check_options(given: Any, prefix: str, suffix: str, problems: list[str],
                   base: Mapping[str, Mapping[str, Any]] | None = None
                   ) -> dict[str, dict[str, Any]]:
    """Every check's options from a ``checks`` table: defaults (or ``base``, the global
    tables a channel overrides) with the keys given there, validated."""
    specs = plugins.checks()
    if not isinstance(given, dict):
        problems.append(f"{prefix}{suffix} must be a table")
        given = {}
    for name in given:
        if name not in specs:
            problems.append(f"{prefix}.{name}{suffix}: unknown check{did_you_mean(name, specs)}")
    out: dict[str, dict[str, Any]] = {}
    for name, spec in specs.items():
        table = given.get(name, {})
        where = f"{prefix}.{name}{suffix}"
        if not isinstance(table, dict):
            problems.append(f"{where} must be a table")
            table = {}
        resolved = resolve(spec.all_options, table, where, problems)
        if base is None:
            out[name] = resolved
        else:
            out[name] = {**base.get(name, {}), **{k: resolved[k] for k in table if k in resolved}}
    return out


TOP_LEVEL = ("store", "run", "http", "master", "linking", "channels", "checks", "serve",
             "smtp", "report", "ui", "alerts")


def load_config(path: str | Path) -> Config:
    """Read and validate a config file; raise ConfigError listing every problem."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(str(path), [
            f"file not found: {path.absolute()} (write one with `auditor init [FILES]`, a "
            "commented template without FILES; or name another with --config FILE or "
            "AUDITOR_CONFIG)"], "cannot read config") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(str(path), [f"cannot read: {e}"], "cannot read config") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(str(path), [f"TOML syntax error: {e}"]) from None
    return parse_config(raw, path)


def parse_config(raw: Mapping[str, Any], path: Path) -> Config:
    """Validate an already-parsed TOML document."""
    plugins.load()
    problems: list[str] = []
    for key in raw:
        if key not in TOP_LEVEL:
            problems.append(f"unknown table [{key}]{did_you_mean(key, TOP_LEVEL)}")

    def table(name: str) -> dict:
        v = raw.get(name, {})
        if not isinstance(v, dict):
            problems.append(f"[{name}] must be a table")
            return {}
        return v

    # `store = "postgresql://..."` (a URL at the top) is short for [store] url = "..."
    told = len(problems)
    store = resolve(STORE_OPTIONS, {"url": raw["store"]} if isinstance(raw.get("store"), str)
                    else table("store"), "[store]", problems)
    if isinstance(raw.get("store"), str):  # name the key as the file has it
        problems[told:] = [p.replace("[store].url", "store", 1) for p in problems[told:]]
    run = resolve(RUN_OPTIONS, table("run"), "[run]", problems)
    if run.get("workers", 0) < 0:
        problems.append("[run].workers: expected 0 (one per CPU core) or a positive number")
    for key, least in (("shard_size", 1), ("job_attempts", 1), ("job_retention_hours", 0)):
        if key in run and run[key] < least:
            problems.append(f"[run].{key}: expected {least} or more, got {run[key]}")
    if "stalled_after" in run and run["stalled_after"] <= 0:
        problems.append(f"[run].stalled_after: expected seconds above 0 (above the workers' "
                        f"--heartbeat), got {run['stalled_after']:g}")
    if run.get("distributed") and not re.match(r"(?i)postgres(ql)?(\+psycopg)?://",
                                               str(store.get("url") or "")):
        problems.append("[run].distributed: distributed runs need the PostgreSQL store "
                        "([store] url = \"postgresql://...\"); this config's store is SQLite")
    http = resolve(HTTP_OPTIONS, table("http"), "[http]", problems)
    master = resolve(MASTER_OPTIONS, table("master"), "[master]", problems)
    if "master" not in raw:
        problems.append("[master] is missing: expected type and source of the PIM export")
    elif not master.get("source"):
        problems.append("[master].source is missing: expected a path, glob or URL")
    linking = resolve(LINKING_OPTIONS, table("linking"), "[linking]", problems)
    for key in linking.get("order") or []:
        if key not in ("sku", "gtin", "mpn", "url"):
            problems.append(f"[linking].order: unknown key {key!r} (expected sku, gtin, mpn, url)")

    smtp = resolve(SMTP_OPTIONS, table("smtp"), "[smtp]", problems)
    report = resolve(REPORT_OPTIONS, table("report"), "[report]", problems)
    ui = resolve(UI_OPTIONS, table("ui"), "[ui]", problems)
    global_checks = _check_options(raw.get("checks", {}), "[checks", "]", problems)

    channels: list[ChannelConfig] = []
    raw_channels = raw.get("channels", [])
    if not isinstance(raw_channels, list):
        problems.append("channels must be an array of tables: write [[channels]]")
        raw_channels = []
    seen: set[str] = set()
    connectors = plugins.connectors()
    for i, ch in enumerate(raw_channels):
        where = f"[[channels]] #{i + 1}"
        if not isinstance(ch, dict):
            problems.append(f"{where} must be a table")
            continue
        name = ch.get("name")
        if isinstance(name, str):
            where = f"[[channels]] {name!r}"
            if not _CHANNEL_NAME.match(name):
                problems.append(f"{where}.name: expected lowercase letters, digits, - and _ "
                                f"(it appears in metrics and overrides)")
            if name in seen:
                problems.append(f"{where}.name: duplicate channel name")
            if name == "master":
                problems.append(f"{where}.name: 'master' is reserved (the master's own "
                                f"schedule, metrics and runs use it)")
            seen.add(name)
        else:
            problems.append(f"{where}.name: missing (expected a string)")
        ctype = ch.get("type")
        conn = connectors.get(ctype) if isinstance(ctype, str) else None
        if ctype is None:
            problems.append(f"{where}.type: missing (expected one of: "
                            f"{', '.join(sorted(connectors))})")
        elif conn is None:
            problems.append(f"{where}.type: unknown connector {ctype!r}"
                            f"{did_you_mean(str(ctype), connectors)}")
        given = {k: v for k, v in ch.items() if k != "checks"}
        opts = CHANNEL_OPTIONS + (tuple(conn.options) if conn else ())
        resolved = resolve(opts, given, where, problems)
        if conn is not None and getattr(conn, "needs_source", True) and not resolved.get("source"):
            problems.append(f"{where}.source: missing (expected a path, glob or http(s) URL)")
        merged = _check_options(ch.get("checks", {}), f"{where}.checks", "", problems,
                                base=global_checks)
        if isinstance(name, str) and isinstance(ctype, str) and conn is not None:
            channels.append(ChannelConfig(
                name=name, type=ctype, source=resolved.get("source"),
                schedule=resolved.get("schedule"), enabled=resolved.get("enabled", True),
                options=resolved, checks=merged, base_dir=path.parent))
    alerts = parse_alerts(raw.get("alerts"), problems)
    serve = resolve(SERVE_OPTIONS, table("serve"), "[serve]", problems)
    if not 0 < serve.get("port", 1) < 65536:
        problems.append(f"[serve].port: expected 1-65535, got {serve['port']}")
    try:
        import zoneinfo

        zoneinfo.ZoneInfo(serve.get("timezone") or "UTC")
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        problems.append(f"[serve].timezone: unknown time zone {serve.get('timezone')!r}")
    if problems:
        raise ConfigError(str(path), problems)
    return Config(path=path, store=store, http=http, master=master, linking=linking,
                  channels=tuple(channels), checks=global_checks, raw=raw, run=run,
                  smtp=smtp, report=report, ui=ui, serve=serve, alerts=alerts)
