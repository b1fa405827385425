"""A loopback image server for tests: fixed routes, ETags and 304s, broken bodies, a request log."""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Iterator

import pytest


@dataclass
class Route:
    """What one path answers: a body with a content type, or a broken response."""

    body: bytes
    content_type: str = "image/jpeg"
    status: int = 200
    etag: bool = True
    # Declare this many more bytes than are sent, then close: a truncated body.
    short_by: int = 0


@dataclass
class ImageServer:
    """Routes by path, and every request seen as (path, status answered)."""

    port: int = 0
    routes: dict[str, Route] = field(default_factory=dict)
    log: list[tuple[str, int]] = field(default_factory=list)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def count(self, path: str, status: int | None = None) -> int:
        """Requests for ``path`` (answered with ``status``)."""
        return sum(1 for p, s in self.log if p == path and (status is None or s == status))


def _handler(server: ImageServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:  # keep test output clean
            pass

        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            route = server.routes.get(self.path)
            if route is None:
                server.log.append((self.path, 404))
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            tag = '"' + hashlib.sha256(route.body).hexdigest()[:16] + '"'
            if route.etag and self.headers.get("If-None-Match") == tag:
                server.log.append((self.path, 304))
                self.send_response(304)
                self.send_header("ETag", tag)
                self.end_headers()
                return
            server.log.append((self.path, route.status))
            self.send_response(route.status)
            self.send_header("Content-Type", route.content_type)
            self.send_header("Content-Length", str(len(route.body) + route.short_by))
            if route.etag:
                self.send_header("ETag", tag)
            if route.short_by:
                self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(route.body)
            if route.short_by:
                self.close_connection = True

    return Handler


@pytest.fixture
def image_server() -> Iterator[ImageServer]:
    """An image server on 127.0.0.1, stopped after the test."""
    state = ImageServer()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    httpd.daemon_threads = True
    state.port = httpd.server_address[1]
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
        t.join(timeout=5)
