"""The JSON API of `auditor serve` (FastAPI; OpenAPI at ``/openapi.json``).

Reads: runs, findings (filters, cursor pagination), one SKU's master record next to
every channel's listing, link suggestions. Writes (a bearer token from the environment):
acknowledge, snooze and resolve a finding, add a silence, confirm or reject a link.
Every handler opens the store for itself (a SQLite connection belongs to its thread)
and closes it before answering. Bad parameters answer 400 or 422 with what was wrong.

Errors answer ``{"detail": "..."}`` with the status of the error (``ERRORS`` below, and
``AuditorError.http_status``): 400/422 bad input, 401/403 the token, 404 not found, 409 a
conflict (a resolved finding, another run holding the lock), 503 only when the store
cannot be used now (docs/service.md, "Errors and status codes").
"""

from __future__ import annotations

import base64
import hmac
import json
import os
import re

from datetime import datetime, timezone
from enum import Enum
from typing import Any, Callable, ContextManager

from fastapi import APIRouter, Depends, HTTPException, Path, Query
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field

from auditor import codec
from auditor.config import SECRET_VALUES, Config, EnvRef

DEFAULT_TOKEN_ENV = "AUDITOR_API_TOKEN"
_bearer = HTTPBearer(auto_error=False, description="The token in [serve] token "
                     "(default: the AUDITOR_API_TOKEN environment variable).")
_NAME = r"^[a-z0-9][a-z0-9_-]{0,62}$"


_FP = ("The finding's fingerprint, or a unique prefix of it (hex, 4 characters or more), "
       "as `auditor findings` shows and accepts it: 404 when none starts so, 409 when "
       "several do.")
_HEX = re.compile(r"[0-9a-f]{4,40}")


def find_fingerprint(store: Any, given: str) -> str:
    """The one fingerprint ``given`` is, or is a prefix of (as the CLI accepts it): 404 for
    none (also for text that is no hex fingerprint: no finding has it), 409 for several."""
    if not _HEX.fullmatch(given.strip().lower()):
        raise HTTPException(404, f"no finding {given!r} (a fingerprint, or a unique prefix "
                            "of one: hex, 4 characters or more)")
    return str(store.find_fingerprint(given))


class State(str, Enum):
    open = "open"
    acknowledged = "acknowledged"
    snoozed = "snoozed"
    resolved = "resolved"


class SeverityName(str, Enum):
    critical = "critical"
    major = "major"
    minor = "minor"
    info = "info"


class OutcomeName(str, Enum):
    failed = "failed"
    warn = "warn"
    not_evaluated = "not_evaluated"


class Loose(BaseModel):
    model_config = ConfigDict(extra="allow")


class Finding(Loose):
    fingerprint: str
    check: str
    channel: str
    sku: str | None = None
    listing_key: str | None = None
    field: str
    outcome: str
    severity: str
    expected: str | None = None
    actual: str | None = None
    message: str | None = None
    state: str
    first_seen_at: str
    last_seen_at: str


class FindingsPage(BaseModel):
    items: list[Finding]
    next_cursor: str | None = Field(None, description="Pass as `cursor` for the next page; "
                                    "null on the last page.")


class Run(Loose):
    id: int
    started_at: str
    finished_at: str | None = None
    status: str | None = None
    sources: list[dict[str, Any]] = []


class RunsPage(BaseModel):
    items: list[Run]
    next_cursor: str | None = None


class ChannelListing(Loose):
    channel: str
    key: str
    data: dict[str, Any]
    link_method: str | None = None
    link_confidence: float | None = None
    fetched_at: str | None = None
    findings: list[Finding] = []


class SkuView(BaseModel):
    sku: str
    master: dict[str, Any] | None = Field(None, description="The master record in force "
                                          "(null when the SKU is no longer in the master).")
    channels: list[ChannelListing]


class Suggestion(Loose):
    channel: str
    key: str
    sku: str | None = None
    confidence: float | None = None
    candidates: list[Any] = []


class SuggestionsPage(BaseModel):
    items: list[Suggestion]
    next_cursor: str | None = None


class AckBody(BaseModel):
    by: str = Field("api", max_length=200, description="Who acknowledges.")
    note: str | None = Field(None, max_length=2000)


class SnoozeBody(BaseModel):
    until: datetime = Field(description="ISO 8601 time with a zone, in the future.")
    by: str = Field("api", max_length=200)


class ResolveBody(BaseModel):
    by: str = Field("api", max_length=200)


class SilenceBody(BaseModel):
    matchers: dict[str, str] = Field(description="channel, check, severity and/or sku "
                                     "(a glob pattern) to match.")
    until: datetime
    by: str = Field("api", max_length=200)
    comment: str | None = Field(None, max_length=2000)


class LinkDecision(BaseModel):
    sku: str | None = Field(None, description="For confirm: the master SKU (default: the "
                            "suggested one).")
    by: str = Field("api", max_length=200)


class Problem(BaseModel):
    detail: Any = Field(description="What was wrong (a list of field errors for 422).")


def _answer(text: str) -> dict[str, Any]:
    return {"model": Problem, "description": text}


# The error statuses of the API (every route may answer 503; the others as listed).
ERRORS: dict[int | str, dict[str, Any]] = {
    400: _answer("Bad input: a parameter or body value the API cannot use (named)."),
    401: _answer("No bearer token (write calls, or reads with [serve] protect_reads)."),
    403: _answer("A wrong bearer token, or none configured on the server."),
    404: _answer("No such thing: run, finding, SKU or listing."),
    409: _answer("Conflict: the thing is not in a state that allows this (a resolved "
                 "finding cannot be acknowledged or snoozed)."),
    503: _answer("The store cannot be used now (its server down, a file that is no "
                 "database, a schema newer than this auditor); retry later, see /readyz."),
}


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {c: ERRORS[c] for c in codes}


class Done(BaseModel):
    ok: bool
    fingerprint: str | None = None


# ---------------------------------------------------------------------------- helpers

def encode_cursor(*parts: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(parts).encode()).decode().rstrip("=")


def decode_cursor(text: str, shape: tuple[type, ...]) -> tuple[Any, ...]:
    """A cursor from a previous page; 400 when it is not one."""
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        parts = json.loads(raw)
        if (not isinstance(parts, list) or len(parts) != len(shape)
                or not all(isinstance(p, t) and not isinstance(p, bool)
                           for p, t in zip(parts, shape, strict=True))
                or any(isinstance(p, int) and not -2**63 <= p < 2**63 for p in parts)):
            raise ValueError
        return tuple(parts)
    except (ValueError, TypeError, UnicodeDecodeError):
        raise HTTPException(400, "bad cursor: pass the next_cursor of a previous page "
                                 "unchanged") from None


def token_ref(cfg: Config) -> EnvRef:
    return cfg.serve.get("token") or EnvRef(DEFAULT_TOKEN_ENV)


def check_token(cfg: Config, creds: HTTPAuthorizationCredentials | None) -> None:
    """401 without a bearer token, 403 with a wrong one (or none configured)."""
    if creds is None or creds.scheme.lower() != "bearer" or not creds.credentials:
        raise HTTPException(401, "a bearer token is required (Authorization: Bearer TOKEN)",
                            headers={"WWW-Authenticate": "Bearer"})
    ref = token_ref(cfg)
    expected = os.environ.get(ref.name)
    if not expected:
        raise HTTPException(403, f"write calls are disabled: no token is set (environment "
                                 f"variable {ref.name})")
    if len(expected) >= 4:
        SECRET_VALUES.add(expected)  # redacted from every log line
    if not hmac.compare_digest(creds.credentials.encode(), expected.encode()):
        raise HTTPException(403, "the bearer token is not valid")


def _now() -> datetime:
    return datetime.now(timezone.utc)


# ---------------------------------------------------------------------------- router

def build_router(get_cfg: Callable[[], Config],
                 open_store: Callable[[], ContextManager[Any]]) -> APIRouter:
    """The API's routes; ``get_cfg`` returns the config in force (it changes on SIGHUP)."""

    def writer(creds: HTTPAuthorizationCredentials | None = Depends(_bearer)) -> str:
        check_token(get_cfg(), creds)
        return "token"

    def reader(creds: HTTPAuthorizationCredentials | None = Depends(_bearer)) -> None:
        if get_cfg().serve.get("protect_reads"):
            check_token(get_cfg(), creds)

    router = APIRouter(prefix="/api", responses=_errors(503))
    read = [Depends(reader)]

    def known_check(name: str | None) -> None:
        from auditor import plugins

        if name is not None and name not in plugins.checks():
            raise HTTPException(400, f"unknown check {name!r}; known: "
                                     + ", ".join(sorted(plugins.checks())))

    def known_channel(store: Any, name: str | None) -> None:
        """An unknown channel is an error (as in `auditor findings`), never an empty list:
        known are the config's channels and those the store holds findings of."""
        if name is None:
            return
        known = {c.name for c in get_cfg().channels}
        if name not in known:
            known |= store.finding_values("channel")
        if name not in known:
            raise HTTPException(400, f"unknown channel {name!r}; known: "
                                     + ", ".join(sorted(known)))

    @router.get("/runs", response_model=RunsPage, dependencies=read, tags=["runs"],
                responses=_errors(400))
    def list_runs(limit: int = Query(20, ge=1, le=200),
                  cursor: str | None = Query(None, description="next_cursor of the previous page")
                  ) -> dict[str, Any]:
        """Runs, newest first, each with its sources' status."""
        before = decode_cursor(cursor, (int,))[0] if cursor else None
        with open_store() as store:
            rows = store.runs_page(before, limit + 1)
        more = len(rows) > limit
        rows = rows[:limit]
        return {"items": rows, "next_cursor": encode_cursor(rows[-1]["id"]) if more else None}

    @router.get("/runs/{run_id}", response_model=Run, dependencies=read, tags=["runs"],
                responses=_errors(404))
    def get_run(run_id: int = Path(ge=1, lt=2**63 - 1),
                errors: int = Query(100, ge=0, le=5000, description="bad rows to include")
                ) -> dict[str, Any]:
        """One run with its sources and (up to ``errors``) recorded bad rows and pages."""
        with open_store() as store:
            rows = store.runs_page(run_id + 1, 1)
            if not rows or rows[0]["id"] != run_id:
                raise HTTPException(404, f"no run {run_id}")
            run = rows[0]
            run["errors"] = [e.to_dict() for e in store.run_errors(run_id, limit=errors)] \
                if errors else []
        return run

    @router.get("/findings", response_model=FindingsPage, dependencies=read,
                tags=["findings"], responses=_errors(400))
    def list_findings(
            state: State | None = Query(None), channel: str | None = Query(None, pattern=_NAME),
            check: str | None = Query(None, max_length=64),
            severity: SeverityName | None = Query(None),
            outcome: OutcomeName | None = Query(None),
            sku: str | None = Query(None, max_length=500),
            limit: int = Query(50, ge=1, le=500),
            cursor: str | None = Query(None, description="next_cursor of the previous page")
    ) -> dict[str, Any]:
        """Findings, most severe first; filters combine with AND."""
        known_check(check)
        after = decode_cursor(cursor, (int, str)) if cursor else None
        filters = {"state": state.value if state else None, "channel": channel, "check": check,
                   "severity": severity.value if severity else None,
                   "outcome": outcome.value if outcome else None, "sku": sku}
        with open_store() as store:
            known_channel(store, channel)
            rows = store.findings_page(filters, after, limit + 1)
        more = len(rows) > limit
        rows = rows[:limit]
        nxt = encode_cursor(rows[-1]["severity_rank"], rows[-1]["fingerprint"]) if more else None
        return {"items": rows, "next_cursor": nxt}

    @router.get("/findings/{fingerprint}", dependencies=read, tags=["findings"],
                responses=_errors(404, 409))
    def get_finding(fingerprint: str = Path(max_length=200, description=_FP)) -> dict[str, Any]:
        """One finding with its history of events."""
        with open_store() as store:
            fp = find_fingerprint(store, fingerprint)
            row = store.finding(fp)
            if row is None:
                raise HTTPException(404, f"no finding {fingerprint!r}")
            row["events"] = [e.to_dict() for e in store.finding_events(fp)]
        return row

    @router.get("/skus/{sku:path}", response_model=SkuView, dependencies=read,
                tags=["products"], responses=_errors(404))
    def get_sku(sku: str = Path(max_length=500)) -> dict[str, Any]:
        """One SKU (it may hold a "/"): its master record next to every channel's listing and
        open findings. An SKU no master record has: the listings that show it (orphans)."""
        with open_store() as store:
            master = store.master_record(sku)
            listings = store.sku_listings(sku)
            findings = store.findings_page({"sku": sku}, None, 1000)
            if master is None and not listings:
                for ch, key in dict.fromkeys((f["channel"], f["listing_key"]) for f in findings
                                             if f["listing_key"]):
                    ls = store.listing(ch, key)
                    if ls is not None:
                        listings.append({"channel": ch, "key": key, "link_method": None,
                                         "data": json.loads(codec.body(ls))})
        if master is None and not listings:
            raise HTTPException(404, f"no SKU {sku!r} in the master or on any channel")
        by_key: dict[tuple[str, str | None], list[dict[str, Any]]] = {}
        for f in findings:
            if f["state"] != "resolved":
                by_key.setdefault((f["channel"], f["listing_key"]), []).append(f)
        channels = [{**li, "findings": by_key.get((li["channel"], li["key"]), [])}
                    for li in listings]
        return {"sku": sku, "master": master, "channels": channels}

    @router.get("/link-suggestions", response_model=SuggestionsPage, dependencies=read,
                tags=["links"], responses=_errors(400))
    def list_suggestions(channel: str | None = Query(None, pattern=_NAME),
                         limit: int = Query(50, ge=1, le=500),
                         cursor: str | None = Query(None)) -> dict[str, Any]:
        """Listings the linker could only suggest a master for, to confirm or reject."""
        after = decode_cursor(cursor, (str, str)) if cursor else None
        with open_store() as store:
            known_channel(store, channel)
            rows = store.link_suggestions(channel, after, limit + 1)
        more = len(rows) > limit
        rows = rows[:limit]
        return {"items": rows,
                "next_cursor": encode_cursor(rows[-1]["channel"], rows[-1]["key"]) if more
                else None}

    # ------------------------------------------------------------------ writes

    def _finding_write(fingerprint: str, call: Callable[[Any, str], Any]) -> dict[str, Any]:
        # An unknown fingerprint raises NotFound (404), an ambiguous prefix or a resolved
        # finding Conflict (409): the app answers each error's http_status. The answer
        # names the full fingerprint.
        with open_store() as store:
            fp = find_fingerprint(store, fingerprint)
            call(store, fp)
        return {"ok": True, "fingerprint": fp}

    @router.post("/findings/{fingerprint}/ack", response_model=Done, tags=["findings"],
                 responses=_errors(401, 403, 404, 409))
    def ack(body: AckBody, fingerprint: str = Path(max_length=200, description=_FP),
            _: str = Depends(writer)) -> dict[str, Any]:
        """Acknowledge a finding: a person is on it."""
        return _finding_write(fingerprint,
                              lambda s, fp: s.ack_finding(fp, body.by, body.note))

    @router.post("/findings/{fingerprint}/snooze", response_model=Done, tags=["findings"],
                 responses=_errors(400, 401, 403, 404, 409))
    def snooze(body: SnoozeBody, fingerprint: str = Path(max_length=200, description=_FP),
               _: str = Depends(writer)) -> dict[str, Any]:
        """Mute a finding until a time."""
        until = body.until
        if until.tzinfo is None:
            raise HTTPException(400, "until needs a time zone, e.g. 2026-12-01T09:00:00Z")
        if until <= _now():
            raise HTTPException(400, f"until {until.isoformat()} is not in the future")
        return _finding_write(fingerprint,
                              lambda s, fp: s.snooze_finding(fp, until, body.by))

    @router.post("/findings/{fingerprint}/resolve", response_model=Done, tags=["findings"],
                 responses=_errors(401, 403, 404, 409))
    def resolve(body: ResolveBody, fingerprint: str = Path(max_length=200, description=_FP),
                _: str = Depends(writer)) -> dict[str, Any]:
        """Mark a finding resolved (a later run seeing it again reopens it)."""
        return _finding_write(fingerprint, lambda s, fp: s.resolve_finding(fp, body.by))

    def _needs(store: Any, method: str, what: str) -> Callable[..., Any]:
        fn = getattr(store, method, None)
        if fn is None:
            raise HTTPException(501, f"{what} is not supported by this store yet")
        return fn

    @router.post("/silences", status_code=201, tags=["findings"],
                 responses=_errors(400, 401, 403))
    def add_silence(body: SilenceBody, _: str = Depends(writer)) -> dict[str, Any]:
        """Silence matching findings until a time."""
        bad = set(body.matchers) - {"channel", "check", "severity", "sku"}
        if bad or not body.matchers:
            raise HTTPException(400, "matchers: expected one or more of channel, check, "
                                     "severity, sku" + (f" (unknown: {', '.join(sorted(bad))})"
                                                        if bad else ""))
        if body.until.tzinfo is None or body.until <= _now():
            raise HTTPException(400, "until must be a future time with a time zone")
        with open_store() as store:
            # a channel or check named outright must exist, as in `auditor silence add`
            # (a typo would mute nothing); globs are kept
            literal = {k: v for k, v in body.matchers.items() if not any(c in v for c in "*?[")}
            known_channel(store, literal.get("channel"))
            known_check(literal.get("check"))
            fn = _needs(store, "add_silence", "silences")
            sid = fn(dict(body.matchers), _now(), body.until, body.by, body.comment)
        return {"ok": True, "id": sid}

    def _decide(channel: str, key: str, body: LinkDecision, decision: str) -> dict[str, Any]:
        with open_store() as store:
            link = store.listing_link(channel, key)
            if link is None:
                raise HTTPException(404, f"no listing {key!r} on channel {channel!r}")
            sku = body.sku or link["sku"] or (link["candidates"][0] if link["candidates"]
                                              else None)
            if sku is None:
                raise HTTPException(400, "the listing has no suggested SKU: give sku")
            if decision == "confirmed" and store.master_record(sku) is None:
                raise HTTPException(400, f"no SKU {sku!r} in the master")
            fn = _needs(store, "decide_link", "deciding links")
            fn(channel, key, sku, decision, _now(), note=f"by {body.by} (API)")
        return {"ok": True}

    @router.post("/links/{channel}/{key:path}/confirm", response_model=Done, tags=["links"],
                 responses=_errors(400, 401, 403, 404))
    def confirm_link(body: LinkDecision, channel: str = Path(pattern=_NAME),
                     key: str = Path(max_length=1000), _: str = Depends(writer)
                     ) -> dict[str, Any]:
        """Confirm a suggested link (to ``sku``, default the suggested one): the listing
        is linked and checked from the next run on. ``key`` may hold "/" (a page URL)."""
        return _decide(channel, key, body, "confirmed")

    @router.post("/links/{channel}/{key:path}/reject", response_model=Done, tags=["links"],
                 responses=_errors(400, 401, 403, 404))
    def reject_link(body: LinkDecision, channel: str = Path(pattern=_NAME),
                    key: str = Path(max_length=1000), _: str = Depends(writer)
                    ) -> dict[str, Any]:
        """Reject a link (to ``sku``, default the current or suggested one): the listing is
        never linked to it again."""
        return _decide(channel, key, body, "rejected")

    return router


