"""Shared test helpers for connectors: a channel context and a local HTTP server."""

from __future__ import annotations

import http.server
import threading
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator

from auditor import plugins
from auditor.config import CHANNEL_OPTIONS, ChannelConfig
from auditor.connector import SourceContext
from auditor.options import resolve

FIXTURES = Path(__file__).parent / "fixtures"
NOW = datetime(2025, 3, 5, 12, 0, tzinfo=timezone.utc)


def channel(ctype: str, source: str, base_dir: Path | None = None, **options: Any
            ) -> ChannelConfig:
    """A validated channel config, as config.toml would give it."""
    conn = plugins.connectors()[ctype]
    problems: list[str] = []
    given = {"name": "test", "type": ctype, "source": source, **options}
    opts = resolve(CHANNEL_OPTIONS + tuple(conn.options), given, "[[channels]] 'test'", problems)
    assert not problems, problems
    return ChannelConfig(name="test", type=ctype, source=source, schedule=None, enabled=True,
                         options=opts, checks={}, base_dir=base_dir or FIXTURES)


def read(ctype: str, source: str, http_options: dict | None = None, **options: Any):
    """(listings, ctx) from reading ``source`` with connector ``ctype``."""
    ch = channel(ctype, source, **options)
    ctx = SourceContext(channel=ch, now=NOW, http_options=http_options or {})
    listings = list(plugins.connectors()[ctype](ch).read(ctx))
    return listings, ctx


def by_key(listings) -> dict:
    """Listings by key, in read order."""
    return {li.key: li for li in listings}


Route = Callable[[http.server.BaseHTTPRequestHandler], tuple[int, dict[str, str], bytes]]


@contextmanager
def serve(routes: dict[str, Any]) -> Iterator[tuple[str, list[dict[str, str]]]]:
    """A local HTTP server on 127.0.0.1: path (with query) -> (status, headers, body) or a
    callable taking the request handler. Yields (base URL, list of request headers seen)."""
    seen: list[dict[str, str]] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            seen.append({"path": self.path, **{k.lower(): v for k, v in self.headers.items()}})
            route = routes.get(self.path, routes.get(self.path.split("?")[0]))
            if route is None:
                status, headers, body = 404, {"Content-Type": "text/plain"}, b"not found"
            elif callable(route):
                status, headers, body = route(self)
            else:
                status, headers, body = route
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


HTTP_LOCAL = {"allow_private": True, "retries": 0, "timeout": 5.0}
