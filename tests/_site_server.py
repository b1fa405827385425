"""A local shop for crawler tests: product pages, robots.txt, sitemaps and faults."""

from __future__ import annotations

import gzip
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable

Route = tuple[int, dict, bytes] | Callable[["Handler"], None]


def product_page(name: str, sku: str, price: str, currency: str = "EUR",
                 availability: str = "InStock", extra: str = "") -> bytes:
    """A small product page with one JSON-LD Product."""
    return (f"""<!doctype html><html><head><title>{name}</title>
<script type="application/ld+json">{{"@context":"https://schema.org","@type":"Product",
"name":"{name}","sku":"{sku}","brand":{{"@type":"Brand","name":"Acme"}},
"image":"/img/{sku}.jpg","offers":{{"@type":"Offer","price":"{price}",
"priceCurrency":"{currency}","availability":"https://schema.org/{availability}"}}}}</script>
</head><body><h1>{name}</h1>{extra}</body></html>""").encode()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: "ShopServer"

    def log_message(self, *a) -> None:  # quiet tests
        pass

    def send(self, status: int, headers: dict, body: bytes) -> None:
        self.send_response(status)
        h = {"Content-Type": "text/html; charset=utf-8", **headers}
        if "Content-Length" not in h:
            h["Content-Length"] = str(len(body))
        for k, v in h.items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802
        srv = self.server
        path = self.path
        with srv.lock:
            srv.hits[path] = srv.hits.get(path, 0) + 1
            srv.log.append((path, dict(self.headers)))
        route = srv.routes.get(path) or srv.routes.get(path.split("?")[0])
        if route is None:
            self.send(404, {}, b"<html><body>Not found</body></html>")
            return
        if callable(route):
            route(self)
            return
        status, headers, body = route
        etag = headers.get("ETag")
        if etag and self.headers.get("If-None-Match") == etag:
            self.send_response(304)
            self.send_header("ETag", etag)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send(status, headers, body)


class ShopServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.routes: dict[str, Route] = {}
        self.hits: dict[str, int] = {}
        self.log: list[tuple[str, dict]] = []
        self.lock = threading.Lock()
        self._thread = threading.Thread(target=self.serve_forever, args=(0.02,), daemon=True)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def start(self) -> "ShopServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()

    def page(self, path: str, body: bytes, status: int = 200, **headers: str) -> None:
        self.routes[path] = (status, headers, body)

    def sitemap(self, path: str, urls: list[tuple[str, str | None]], gz: bool = False,
                index: bool = False) -> None:
        tag = "sitemap" if index else "url"
        root = "sitemapindex" if index else "urlset"
        items = "".join(f"<{tag}><loc>{self.base}{u}</loc>"
                        + (f"<lastmod>{lm}</lastmod>" if lm else "") + f"</{tag}>"
                        for u, lm in urls)
        xml = (f'<?xml version="1.0" encoding="UTF-8"?><{root} '
               f'xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">{items}</{root}>').encode()
        if gz:
            self.page(path, gzip.compress(xml), **{"Content-Type": "application/x-gzip"})
        else:
            self.page(path, xml, **{"Content-Type": "application/xml"})


# ---------------------------------------------------------------- fault routes

def slow_body(h: Handler) -> None:
    """Headers at once, then a byte every 50 ms for up to 3 s: beats read timeouts."""
    h.send_response(200)
    h.send_header("Content-Type", "text/html")
    h.send_header("Content-Length", "100000")
    h.end_headers()
    end = time.monotonic() + 3
    try:
        while time.monotonic() < end:
            h.wfile.write(b" ")
            h.wfile.flush()
            time.sleep(0.05)
    except OSError:
        pass


def no_answer(h: Handler) -> None:
    """Says nothing for 2 s (a read timeout)."""
    time.sleep(2)
    try:
        h.send(200, {}, b"late")
    except OSError:
        pass


def truncated(h: Handler) -> None:
    """Promises 5000 bytes, sends 100, closes."""
    h.send_response(200)
    h.send_header("Content-Type", "text/html")
    h.send_header("Content-Length", "5000")
    h.end_headers()
    h.wfile.write(b"<html>" + b"x" * 94)
    h.wfile.flush()
    h.close_connection = True


def redirect(to: str) -> Route:
    return (302, {"Location": to}, b"")


def throttled_then(ok: bytes, times: int, retry_after: str = "0") -> Callable[[Handler], None]:
    """429 with Retry-After for the first ``times`` requests, then ``ok``."""
    state = {"n": 0}

    def route(h: Handler) -> None:
        state["n"] += 1
        if state["n"] <= times:
            h.send(429, {"Retry-After": retry_after}, b"slow down")
        else:
            h.send(200, {}, ok)
    return route
