"""The web UI's routes: server-rendered pages (jinja2), forms for the write actions.

Mounted by `auditor serve` next to the JSON API. Pages: the findings inbox (``/``),
a finding (``/findings/{fp}``), a product on every channel (``/products/{sku}``),
link suggestions (``/links``), runs (``/runs``) and the weekly report archive
(``/reports``). Write actions (acknowledge, snooze, confirm or reject a link) need a
login and the session's CSRF token.
"""

from __future__ import annotations

import logging
import re
from importlib import resources
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, ContextManager, Mapping
from urllib.parse import urlencode

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.exceptions import HTTPException as StarletteHTTPException

from auditor import __version__, plugins, wording
from auditor.config import Config
from auditor.errors import AuditorError, BadRequest, Conflict, NotFound
from auditor.storage import redact, unavailable
from auditor.terminal import visible
from auditor.web import views
from auditor.web.auth import COOKIE, Auth, Session

log = logging.getLogger(__name__)
_WEEK = re.compile(r"^\d{4}-W\d{2}$")
_FILE = re.compile(r"^[A-Za-z0-9._-]{1,120}$")
StoreOpener = Callable[[], ContextManager[Any]]


def _env() -> Environment:
    env = Environment(loader=PackageLoader("auditor.web", "templates"),
                      autoescape=select_autoescape(default=True, default_for_string=True),
                      finalize=visible,
                      trim_blocks=True, lstrip_blocks=True)
    env.filters["ts"] = lambda d: d.strftime("%Y-%m-%d %H:%M") if d else "–"
    env.filters["qs"] = lambda pairs: urlencode(pairs)
    env.filters["safe_url"] = views.safe_url
    env.filters["shown_state"] = views.shown_state
    env.filters["counted"] = wording.counted  # 1 listing, 2 listings
    env.filters["check_field"] = wording.check_field
    env.filters["ticks"] = views.ticks  # `command` in a message as <code>
    env.globals["version"] = __version__
    return env


def build_ui_router(get_cfg: Callable[[], Config], open_store: StoreOpener,
                    clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc)
                    ) -> APIRouter:
    """The UI's routes, reading the store through ``open_store`` (a context manager)."""
    env = _env()
    auth_holder: dict[str, Auth] = {}

    class PageRoute(APIRoute):
        """A UI route whose errors are HTML pages, not the JSON the API answers: the
        store down, a file that is no database, a schema newer than this auditor (503),
        or the store refusing an action (409: the finding was resolved meanwhile). The
        message names the store, never its password."""

        def get_route_handler(self) -> Callable[[Request], Any]:
            handler = super().get_route_handler()

            async def handle(request: Request) -> Response:
                try:
                    return await handler(request)
                except StarletteHTTPException as e:
                    # A route's own refusal (no such report file, log in first, a bad
                    # form): a browser gets a page, other clients the JSON.
                    if not wants_html(request):
                        raise
                    if e.status_code == 404:
                        return page(request, "missing.html", 404, message=str(e.detail),
                                    headers=e.headers)
                    return page(request, "error.html", e.status_code, message=str(e.detail),
                                down=False, login=e.status_code == 401, headers=e.headers)
                except Exception as e:
                    down = unavailable(e)
                    if not down and not isinstance(e, AuditorError):
                        raise
                    message = redact(str(e).strip(), get_cfg().store_url)
                    if down:
                        log.warning("web UI %s: %s", request.url.path, message)
                    status = 503 if down else e.http_status  # type: ignore[attr-defined]
                    if status == 404:
                        return page(request, "missing.html", 404, message=message)
                    return page(request, "error.html", status, message=message, down=down)

            return handle

    router = APIRouter(include_in_schema=False, route_class=PageRoute)

    def auth() -> Auth:
        ui = get_cfg().ui
        a = auth_holder.get("auth")
        if a is None or a.ui is not ui:
            a = auth_holder["auth"] = Auth(ui)
        return a

    def session(request: Request) -> Session:
        return auth().session(request.cookies.get(COOKIE))

    def page(request: Request, name: str, status: int = 200,
             headers: Mapping[str, str] | None = None, **ctx: Any) -> HTMLResponse:
        s = session(request)
        if get_cfg().ui.get("protect_reads") and not s.logged_in and name != "login.html":
            return RedirectResponse("/login?" + urlencode({"next": str(request.url.path)}),
                                    status_code=303)  # type: ignore[return-value]
        html = env.get_template(name).render(session=s, can_write=auth().enabled,
                                             path=request.url.path, **ctx)
        resp = HTMLResponse(html, status_code=status, headers=headers)
        resp.set_cookie(value=auth().cookie(s), **auth().cookie_args())
        # The UI loads nothing from elsewhere except channel images (https thumbnails).
        resp.headers["Content-Security-Policy"] = (
            "default-src 'self'; img-src 'self' https: http:; style-src 'self' 'unsafe-inline'; "
            "script-src 'self'; frame-ancestors 'none'; form-action 'self'")
        resp.headers["X-Content-Type-Options"] = "nosniff"
        resp.headers["Referrer-Policy"] = "same-origin"
        return resp

    async def writer(request: Request) -> tuple[Session, dict[str, Any]]:
        """The logged-in session and the posted form, CSRF token checked; else 401/403."""
        s = session(request)
        form = dict((await request.form()).multi_items())
        if not s.logged_in:
            raise HTTPException(401, "log in first")
        if not Auth.csrf_ok(s, form.get("csrf")):
            raise HTTPException(403, "the form's CSRF token does not match this session")
        return s, form

    def back(request: Request, fallback: str = "/") -> RedirectResponse:
        ref = request.headers.get("referer") or ""
        host = request.headers.get("host") or ""
        same = re.match(rf"^https?://{re.escape(host)}(/[^\s]*)$", ref) if host else None
        return RedirectResponse(same.group(1) if same else fallback, status_code=303)

    # ------------------------------------------------------------------ pages
    script = (resources.files("auditor.web") / "static" / "ui.js").read_bytes()

    @router.get("/static/ui.js")
    def ui_script() -> Response:
        return Response(script, media_type="text/javascript",
                        headers={"Cache-Control": "max-age=3600",
                                 "X-Content-Type-Options": "nosniff"})

    @router.get("/", response_class=HTMLResponse)
    def inbox(request: Request) -> Response:
        cfg = get_cfg()
        q: dict[str, list[str]] = {}
        for k, v in request.query_params.multi_items():
            q.setdefault(k, []).append(v)
        with open_store() as store:
            channels = sorted({c.name for c in cfg.channels} | set(store.finding_channels()))
            checks = sorted(plugins.checks())
            f = views.Filters.parse(q, channels, checks)
            ctx = views.inbox(store, f)
        return page(request, "inbox.html", channels=channels, checks=checks,
                    severities=views.SEVERITIES, states=views.STATES, sorts=views.SORTS,
                    **ctx)

    @router.get("/findings/{fingerprint}", response_class=HTMLResponse)
    def finding(request: Request, fingerprint: str) -> Response:
        with open_store() as store:
            x = store.finding_record(fingerprint)
            if x is None:  # a unique prefix (as the CLI shows and takes it) opens its finding
                try:
                    full = store.find_fingerprint(fingerprint)
                except (NotFound, BadRequest, Conflict) as e:
                    return page(request, "missing.html", 404, message=str(e))
                return RedirectResponse(f"/findings/{full}", 303)
            events = store.finding_events(fingerprint)
            master = store.master_for(x.sku) if x.sku else None
        return page(request, "finding.html", f=x, events=events, master=master)

    @router.get("/products/{sku:path}", response_class=HTMLResponse)
    def product(request: Request, sku: str) -> Response:
        with open_store() as store:
            off = [c.name for c in get_cfg().channels
                   if not c.checks.get("image", {}).get("enabled", True)]
            ctx = views.product(store, sku, off)
        if ctx is None:
            return page(request, "missing.html", 404,
                        what=f"product {sku}" if sku else
                        "SKU in this address: /products/SKU shows one product (search the "
                        "findings by SKU on the inbox)")
        return page(request, "product.html", **ctx)

    @router.get("/links", response_class=HTMLResponse)
    def links(request: Request) -> Response:
        with open_store() as store:
            rows = views.suggestions(store)
        return page(request, "links.html", rows=rows)

    @router.get("/runs", response_class=HTMLResponse)
    def runs(request: Request) -> Response:
        with open_store() as store:
            rows = views.runs(store)
        return page(request, "runs.html", rows=rows)

    def archive() -> Path:
        cfg = get_cfg()
        return cfg.resolve_path(cfg.report.get("out_dir") or "weekly-reports")

    @router.get("/reports", response_class=HTMLResponse)
    def reports(request: Request) -> Response:
        from auditor.reports.weekly import archived_weeks

        report = get_cfg().report  # an empty archive names its folder as configured, not
        # the server's path
        return page(request, "reports.html", weeks=archived_weeks(archive()),
                    folder=report.get("out_dir") or "weekly-reports",
                    schedule=report.get("schedule"))

    @router.get("/reports/{week}/{name}")
    def report_file(request: Request, week: str, name: str) -> Response:
        if get_cfg().ui.get("protect_reads") and not session(request).logged_in:
            raise HTTPException(401, "log in first")
        if not _WEEK.match(week) or not _FILE.match(name) or name.startswith("."):
            raise HTTPException(404, "no such report file")
        base = archive().resolve()
        path = (base / week / name).resolve()
        if base not in path.parents or not path.is_file():
            raise HTTPException(404, "no such report file")
        return FileResponse(path)

    # ------------------------------------------------------------------ login
    @router.get("/login", response_class=HTMLResponse)
    def login_form(request: Request, next: str = "/") -> Response:  # noqa: A002
        return page(request, "login.html", next=_local(next), error=None)

    @router.post("/login")
    async def login(request: Request) -> Response:
        form = dict((await request.form()).multi_items())
        s = session(request)
        nxt = _local(str(form.get("next") or "/"))
        if not Auth.csrf_ok(s, form.get("csrf")):
            raise HTTPException(403, "the form's CSRF token does not match this session")
        if not auth().check_password(str(form.get("password") or "")):
            log.warning("UI login refused from %s", request.client.host if request.client
                        else "?")
            return page(request, "login.html", 401, next=nxt,
                        error="Wrong password." if auth().enabled else
                        "No password is configured (AUDITOR_UI_PASSWORD): the UI is read-only.")
        # the name given (one shared password: whoever logs in says who they are) is what
        # the finding's history shows as who acknowledged, snoozed or resolved it
        who = " ".join(str(visible(str(form.get("name") or ""))).split())[:40] or "ops"
        new = Session(who, views_token())  # a new CSRF token with the login
        resp = RedirectResponse(nxt, status_code=303)
        resp.set_cookie(value=auth().cookie(new), **auth().cookie_args())
        return resp

    @router.post("/logout")
    async def logout(request: Request) -> Response:
        s, _ = await writer(request)
        resp = RedirectResponse("/", status_code=303)
        resp.delete_cookie(COOKIE, path="/")
        return resp

    # ------------------------------------------------------------------ actions
    @router.post("/actions/findings")
    async def finding_action(request: Request) -> Response:
        s, form = await writer(request)
        raw = await request.form()
        fps = [str(v) for v in raw.getlist("fp")][:1000]
        action = form.get("action")
        if not fps:
            return back(request)
        with open_store() as store:
            for fp in fps:
                if action == "ack":
                    _call(store, "ack_finding", fp, s.user or "ui", form.get("note") or None)
                elif action == "snooze":
                    hours = _hours(form.get("hours"))
                    _call(store, "snooze_finding", fp, clock() + timedelta(hours=hours),
                          s.user or "ui")
                elif action == "resolve":
                    _call(store, "resolve_finding", fp, s.user or "ui")
                else:
                    raise HTTPException(400, f"unknown action {action!r}")
        return back(request)

    @router.post("/actions/links")
    async def link_action(request: Request) -> Response:
        s, form = await writer(request)
        action, channel = form.get("action"), str(form.get("channel") or "")
        key, sku = str(form.get("key") or ""), str(form.get("sku") or "")
        if action not in ("confirm", "reject") or not (channel and key and sku):
            raise HTTPException(400, "expected action confirm or reject, channel, key, sku")
        with open_store() as store:
            store.decide_link(channel, key, sku, "confirmed" if action == "confirm"
                              else "rejected", clock(), note=f"{s.user or 'ui'} in the web UI")
        return back(request, "/links")

    def not_found(request: Request) -> Response:
        """A path no route has, asked for by a browser: the UI's own "Not found" page."""
        return page(request, "missing.html", 404, what=f"page {request.url.path}")

    router.not_found_page = not_found  # type: ignore[attr-defined]  # for the app's 404s
    return router


def wants_html(request: Request) -> bool:
    """A browser asking for a page: HTML accepted, and not a path of the API, the
    metrics or the health checks (whose clients get JSON or text)."""
    machine = ("/api/", "/metrics", "/healthz", "/readyz", "/openapi.json", "/docs", "/static/")
    return "text/html" in request.headers.get("accept", "") and \
        not request.url.path.startswith(machine)


def views_token() -> str:
    import secrets

    return secrets.token_urlsafe(24)


def _local(url: str) -> str:
    """Only a path on this site is a place to go after login (no open redirect)."""
    return url if url.startswith("/") and not url.startswith("//") and "\\" not in url else "/"


def _hours(v: Any) -> float:
    try:
        h = float(v)
    except (TypeError, ValueError):
        raise HTTPException(400, "hours: expected a number") from None
    if not 0 < h <= 24 * 90:
        raise HTTPException(400, "hours: expected more than 0 and at most 2160 (90 days)")
    return h


def _call(store: Any, method: str, *args: Any) -> Any:
    fn = getattr(store, method, None)
    if fn is None:
        raise HTTPException(501, f"this store does not support {method.replace('_', ' ')}")
    return fn(*args)
