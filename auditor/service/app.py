"""The ASGI app of `auditor serve`: scheduler in the lifespan, /metrics, health, the API.

One uvicorn worker. The scheduler starts when the app starts and stops when it stops
(SIGTERM or Ctrl-C: no new audits, the running one gets ``[serve] stop_timeout``
seconds, then it is stopped and recorded as interrupted; then the shutdown hooks run,
e.g. flushing pending notifications). SIGHUP reloads the config: a broken one is
refused with the reason logged, and the old one stays in force.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import threading
from datetime import datetime
from pathlib import Path
from typing import Any, AsyncIterator, Callable, Iterable

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.metrics_core import GaugeMetricFamily, Metric

from auditor import __version__
from auditor.config import Config, load_config
from auditor.errors import AuditorError
from auditor.service.api import build_router
from auditor.service.launcher import Launcher, SubprocessLauncher
from auditor.service.metrics import StoreCollector, store_opener
from auditor.service.scheduler import AuditScheduler, utcnow

log = logging.getLogger(__name__)


class Service:
    """What the app holds: the config in force, the scheduler, the metrics registry."""

    def __init__(self, config_path: Path, cfg: Config, launcher: Launcher | None = None,
                 schedule: bool = True, clock: Callable[[], datetime] = utcnow):
        self.config_path = Path(config_path)
        self.cfg = cfg
        self.clock = clock
        self.schedule = schedule
        self.launcher = launcher or SubprocessLauncher(self.config_path)
        self.scheduler: AuditScheduler | None = None
        self.started_at = clock()
        self.reloads = 0
        self.last_reload_error: str | None = None
        # SIGHUPs reload in executor threads: one reload at a time, so a quick second
        # SIGHUP (a broken file saved right after a good one) cannot finish first and
        # have its refusal overwritten by the earlier reload's success.
        self._reload_lock = threading.Lock()
        self.shutdown_hooks: list[Callable[[], None]] = []
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(StoreCollector(self.open_store, extra=self._service_metrics,
                                              shown=self._shown))
        from auditor.storage import _postgres_url

        if _postgres_url(cfg.store_url):  # distributed runs' queue lives there
            from auditor.jobqueue import JobQueueCollector, connector

            self.registry.register(JobQueueCollector(connector(cfg.store_url),
                                                     shown=self._shown))

    def open_store(self):
        return store_opener(self.cfg.store_url)()

    def _shown(self, e: BaseException) -> str:
        """An error's text as it may be shown: without the store URL's password."""
        from auditor.storage import redact

        return redact(str(e), self.cfg.store_url)

    def _last_complete(self) -> dict[str, datetime]:
        with self.open_store() as store:
            return store.last_complete_reads()

    def _mark_interrupted(self, at: datetime) -> list[int]:
        # Only while no audit holds the lock: a run marked running then is not running.
        with self.open_store() as store, store.run_lock(10.0):
            return _interrupt_running(store, at, "stopped by `auditor serve` at shutdown: "
                                      "still running after [serve] stop_timeout")

    def _interrupt_leftovers(self) -> None:
        """Runs a killed service left ``running`` are recorded interrupted, when no audit
        holds the lock now (an audit still running keeps its run)."""
        from auditor.errors import LockedError

        try:
            with self.open_store() as store, store.run_lock(0):
                ids = _interrupt_running(store, self.clock(), "found still 'running' by "
                                         "`auditor serve` at its start (its process is gone)")
        except LockedError:
            return
        except Exception as e:  # an unusable store shows in /readyz
            log.warning("could not check for interrupted runs: %s", self._shown(e))
            return
        if ids:
            log.warning("runs left running by an earlier process recorded as interrupted: %s",
                        ", ".join(map(str, ids)))

    def start(self) -> None:
        self._interrupt_leftovers()
        if self.schedule:
            self.scheduler = AuditScheduler(self.cfg, self.launcher, self._last_complete,
                                            self._mark_interrupted, clock=self.clock)
            self.scheduler.start()
            if not self.scheduler.status():
                log.warning("no source has a schedule, so this service runs no audit: give "
                            "[master] and each [[channels]] a cron `schedule` (e.g. schedule "
                            "= \"0 */4 * * *\": every four hours; docs/service.md, Schedules), "
                            "or start it with --no-schedule to only serve the UI, API and "
                            "metrics")
            self._start_alerts()
            schedule = self.cfg.report.get("schedule")
            if schedule:
                self.scheduler.add_task("weekly-report", schedule, self.weekly_report)

    def weekly_report(self) -> int:
        """Write the last complete week's report into the archive (and email it when
        recipients and an SMTP server are configured), in a child process."""
        import subprocess
        import sys

        argv = [sys.executable, "-m", "auditor", "report", "weekly", "-c",
                str(self.config_path)]
        if self.cfg.report.get("email_to") and self.cfg.smtp.get("host"):
            argv.append("--email")
        code = subprocess.run(argv, stdin=subprocess.DEVNULL, check=False).returncode
        log.log(logging.INFO if code == 0 else logging.ERROR,
                "weekly report ended with exit code %s", code)
        return code

    def _start_alerts(self) -> None:
        """The alert relay's service loop (``auditor.alerts.outbox.loop``, when this build
        has alerts): evaluates and delivers notifications in a thread; stopping it
        delivers what is due once more (the SIGTERM flush)."""
        try:
            from auditor.alerts.outbox import loop  # type: ignore[import-not-found]
        except ImportError:
            return
        if not getattr(self.cfg, "alerts", None):
            return
        from auditor.alerts.config import unrouted_warnings

        for warning in unrouted_warnings(self.cfg.alerts):
            log.warning("%s", warning)
        stop = threading.Event()
        thread = threading.Thread(target=loop, args=(self.cfg.store_url, self.cfg, stop),
                                  name="alerts", daemon=True)
        thread.start()

        def flush() -> None:
            stop.set()
            thread.join(60)

        self._alerts_flush: Callable[[], None] | None = flush
        log.info("alert delivery loop started")

    def _stop_alerts(self) -> None:
        flush = getattr(self, "_alerts_flush", None)
        if flush is not None:
            self._alerts_flush = None
            flush()

    def stop(self) -> None:
        if self.scheduler is not None:
            ended = self.scheduler.stop()
            if ended:
                log.info("audits at shutdown: %s", ", ".join(f"{k} {v}" for k, v in ended.items()))
        self._stop_alerts()  # after the audits: their notifications are flushed too
        for hook in self.shutdown_hooks:
            try:
                hook()
            except Exception:
                log.exception("shutdown hook %r failed", hook)

    def reload(self) -> bool:
        """Read the config file again; keep the old config when the new one is broken.
        One reload at a time, in the order the signals came."""
        with self._reload_lock:
            return self._reload()

    def _reload(self) -> bool:
        try:
            cfg = load_config(self.config_path)
        except AuditorError as e:
            # logged before it is shown: whoever sees the refusal in /api/schedule or the
            # metrics finds its line in the log
            log.error("config reload refused, the previous config stays in force: %s", e)
            self.last_reload_error = str(e)
            return False
        if cfg.store_url != self.cfg.store_url:
            from auditor.storage import describe

            log.warning("config reload: the store changed; restart to use %s",
                        describe(cfg.store_url))
            cfg = _with_store(cfg, self.cfg)
        self.cfg = cfg
        if self.scheduler is not None:
            self.scheduler.reload(cfg)
            self._stop_alerts()  # the relay takes the new routes and receivers
            self._start_alerts()
        self.reloads += 1
        self.last_reload_error = None
        log.info("config reloaded from %s", self.config_path)
        return True

    def _service_metrics(self) -> Iterable[Metric]:
        up = GaugeMetricFamily("auditor_scheduler_running",
                               "1 while the scheduler takes jobs, else 0.")
        up.add_metric([], 1 if self.scheduler is not None and self.scheduler.running else 0)
        yield up
        running = GaugeMetricFamily("auditor_audit_running",
                                    "1 while an audit of the source runs.", labels=["source"])
        every = GaugeMetricFamily("auditor_source_interval_seconds",
                                  "The longest gap between two scheduled audits of the source.",
                                  labels=["source"])
        if self.scheduler is not None:
            for s in self.scheduler.status():
                running.add_metric([s["source"]], 1 if s["running"] else 0)
                every.add_metric([s["source"]], s["interval_seconds"])
        yield running
        yield every
        reload_ok = GaugeMetricFamily("auditor_config_reload_ok",
                                      "0 when the last SIGHUP reload was refused, else 1.")
        reload_ok.add_metric([], 0 if self.last_reload_error else 1)
        yield reload_ok

    def ready(self) -> tuple[bool, dict[str, Any]]:
        """Store reachable, scheduler running, no source stale beyond twice its interval."""
        problems: dict[str, Any] = {}
        try:
            with self.open_store() as store:
                _ = store.schema_version  # reads the database
        except Exception as e:
            problems["store"] = f"not reachable: {self._shown(e)}"
        if self.schedule:
            if self.scheduler is None or not self.scheduler.running:
                problems["scheduler"] = "not running"
            else:
                stale = self.scheduler.stale()
                if stale:
                    problems["stale"] = stale
        return not problems, problems


def _interrupt_running(store: Any, at: datetime, reason: str) -> list[int]:
    """Record the runs still marked running as interrupted at ``at`` for ``reason`` (the
    runs page and `auditor runs` show it); only under the run lock."""
    return [r.id for r in store.running_runs() if store.interrupt_run(r.id, at, reason)]


def _with_store(new: Config, old: Config) -> Config:
    import dataclasses

    return dataclasses.replace(new, store=old.store, path=new.path)


def create_app(service: Service) -> FastAPI:
    """The app for ``service``; its lifespan starts and stops the scheduler."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        loop = asyncio.get_running_loop()
        await asyncio.to_thread(service.start)
        if threading.current_thread() is threading.main_thread():
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(signal.SIGHUP, lambda: loop.run_in_executor(
                    None, service.reload))
        try:
            yield
        finally:
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.remove_signal_handler(signal.SIGHUP)
            await asyncio.to_thread(service.stop)

    app = FastAPI(title="omni-auditor", version=__version__, lifespan=lifespan,
                  docs_url=None, redoc_url=None,
                  description="Runs, findings, products across channels and link "
                              "suggestions of the auditor. Write calls need a bearer token. "
                              "Errors answer `{\"detail\": ...}`: 400/422 bad input, 401/403 "
                              "the token, 404 not found, 409 conflict, 503 the store "
                              "cannot be used now.")
    app.state.service = service
    _api_browser(app)

    @app.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        return Response(generate_latest(service.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/healthz", tags=["health"])
    def healthz() -> dict[str, str]:
        """The process is alive."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"])
    def readyz() -> JSONResponse:
        """Store reachable, scheduler running, no source stale beyond twice its interval."""
        ok, problems = service.ready()
        return JSONResponse({"ready": ok, "problems": problems}, status_code=200 if ok else 503)

    @app.get("/api/schedule", tags=["runs"])
    def schedule() -> dict[str, Any]:
        """Each scheduled source: its cron, interval, next run and the audit running."""
        sched = service.scheduler
        return {"running": bool(sched and sched.running), "reloads": service.reloads,
                "last_reload_error": service.last_reload_error,
                "sources": sched.status() if sched else []}

    app.include_router(build_router(lambda: service.cfg, service.open_store))
    # The web UI (server-rendered pages at /, /products/..., /runs, /reports).
    from auditor.web.routes import build_ui_router, wants_html
    ui = build_ui_router(lambda: service.cfg, service.open_store)
    app.include_router(ui)

    @app.exception_handler(StarletteHTTPException)
    async def not_found(request: Request, exc: StarletteHTTPException) -> Response:
        """A browser's mistyped address gets the UI's page; everything else the JSON."""
        if exc.status_code == 404 and exc.detail == "Not Found" and wants_html(request):
            return ui.not_found_page(request)  # type: ignore[attr-defined, no-any-return]
        return await http_exception_handler(request, exc)

    @app.exception_handler(AuditorError)
    async def auditor_error(request: Request, exc: AuditorError) -> JSONResponse:
        """Each error's own status (``AuditorError.http_status``): 404 not found, 400 bad
        input, 409 conflict, 503 only for a store that cannot be used now."""
        status = exc.http_status
        if status >= 500:
            log.warning("API %s %s: %s", request.method, request.url.path, service._shown(exc))
        return JSONResponse({"detail": service._shown(exc)}, status_code=status)

    @app.exception_handler(Exception)
    async def store_lost(request: Request, exc: Exception) -> Response:
        """The database gone mid-request (PostgreSQL stopped under a query): 503 JSON as
        when it cannot be opened; any other error stays a 500 (its traceback logged)."""
        from auditor.storage import unavailable

        if unavailable(exc):
            return JSONResponse({"detail": "the store could not be read: "
                                 + service._shown(exc).strip()}, status_code=503)
        return PlainTextResponse("Internal Server Error", status_code=500)

    return app


DOCS_ASSETS = "/docs/assets"


def _api_browser(app: FastAPI) -> None:
    """``/docs``: Swagger UI with its script, style and icon served by the app itself from
    the swagger-ui-bundle-v2 package, so it works on a machine without internet (FastAPI's
    default loads them from a CDN). No validator badge (it would call swagger.io)."""
    from fastapi.openapi.docs import get_swagger_ui_html, swagger_ui_default_parameters
    from starlette.staticfiles import StaticFiles
    from swagger_ui_bundle import swagger_ui_path  # type: ignore[import-untyped]

    app.mount(DOCS_ASSETS, StaticFiles(directory=str(swagger_ui_path)), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    def docs() -> Response:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json", title=f"{app.title} API",
            swagger_js_url=f"{DOCS_ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{DOCS_ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{DOCS_ASSETS}/favicon-32x32.png",
            swagger_ui_parameters={**swagger_ui_default_parameters, "validatorUrl": None})


def serve(config_path: Path, host: str | None = None, port: int | None = None,
          schedule: bool = True, log_level: str = "info",
          announce: Callable[[str], None] | None = None) -> int:
    """Run the service until SIGTERM or Ctrl-C; 0 after a clean stop. ``announce`` is
    told the base URL once the port is bound (the CLI prints it)."""
    import uvicorn

    cfg = load_config(config_path)
    service = Service(config_path, cfg, schedule=schedule)
    app = create_app(service)
    host = host or cfg.serve.get("host") or "127.0.0.1"
    port = port if port is not None else int(cfg.serve.get("port") or 8080)
    stopped: list[int] = []

    def note(sig: int, frame: Any) -> None:  # uvicorn re-raises the signal it stopped on
        stopped.append(sig)

    # Bound before anything starts: a taken port stops here, before the scheduler runs.
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        log.error("cannot listen on %s:%s: %s", host, port, e)
        raise AuditorError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    previous = {s: signal.signal(s, note) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        server = uvicorn.Server(uvicorn.Config(app, workers=1, log_level=log_level,
                                               lifespan="on", access_log=False))
        base = f"http://{host}:{sock.getsockname()[1]}"
        # the same words as the line `auditor serve` prints without -v (docs/service.md)
        log.info("auditor serve on %s: web UI %s/, metrics %s/metrics, API %s/docs; Ctrl-C "
                 "stops", base, base, base, base)
        if announce is not None:
            announce(base)
        server.run(sockets=[sock])
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
        sock.close()
    if not server.started:
        return 2
    return 0
