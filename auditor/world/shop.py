"""The demo shop: serves a generated world on loopback, with switchable faults.

    with ShopServer(world_dir) as shop:
        httpx.get(shop.base_url + "/sitemap.xml")

Pages and images are rendered on demand from the world's seed; sitemaps, feeds
and ``products.json`` pages come from the generated files, with the world's
base URL rewritten to the server's own. Faults (slow answers, 5xx bursts, 429
with Retry-After, captcha pages, truncated bodies) are set at construction or
later with ``set_faults``; every request is logged in ``requests``.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import random
import re
import threading
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from email.utils import format_datetime, parsedate_to_datetime
from functools import lru_cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Sequence
from urllib.parse import parse_qs, urlsplit

from auditor.world import pages
from auditor.world.feeds import robots_txt
from auditor.world.generate import World
from auditor.world.images import draw_product

# Files larger than this are streamed from disk (a 1M-SKU Google feed is over 1 GB).
STREAM_BYTES = 20_000_000
IMAGE_RE = re.compile(r"^/images/(x?p\d{7})/([a-z]+)-(\d)(-w400|-q40|-sq|-old)?\.(png|jpg|webp)$")


@dataclass
class Faults:
    """Misbehaviour to switch on; rates are shares of requests (0-1), chosen by a seeded RNG."""

    delay: float = 0.0  # seconds added before every answer
    error_rate: float = 0.0  # answered 503
    error_burst: int = 0  # the next N requests answered 500/502/503 in turn
    rate_limit_rate: float = 0.0  # answered 429 with Retry-After
    retry_after: int = 1  # seconds, in 429 and 503 answers
    captcha_rate: float = 0.0  # answered 200 with a robot-check page
    truncate_rate: float = 0.0  # body cut in half (Content-Length promises all of it)
    paths: str = ""  # only requests whose path starts with this prefix
    seed: int = 0


@dataclass
class RequestRecord:
    """One request as the server saw it."""

    time: float
    method: str
    path: str
    status: int
    bytes: int
    seconds: float
    fault: str = ""
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Response:
    """What a route returns."""

    status: int = 200
    body: bytes = b""
    content_type: str = "text/html; charset=utf-8"
    last_modified: datetime | None = None
    headers: dict[str, str] = field(default_factory=dict)
    etag: bool = True
    stream: Path | None = None  # a large file sent in chunks instead of ``body``


def not_found() -> Response:
    """A 404 page."""
    return Response(404, b"<html><body><h1>Not found</h1></body></html>", etag=False)


def _image_bytes(key: str, colour: str, n: int, mod: str | None, ext: str) -> bytes:
    from PIL import Image

    name = key if n == 1 else f"{key}#{n}"
    if mod == "-old":
        name += ":old"
    img = draw_product(name, colour).crop((0, 100, 800, 700))  # a landscape product shot
    if mod == "-w400":
        img = img.resize((400, 300), Image.Resampling.LANCZOS)
    elif mod == "-sq":
        sq = Image.new("RGB", (800, 800), (255, 255, 255))
        sq.paste(img, (0, 100))
        img = sq
    buf = io.BytesIO()
    if ext == "jpg":
        img.save(buf, "JPEG", quality=40 if mod == "-q40" else 88)
    elif ext == "webp":
        img.save(buf, "WEBP", quality=80, method=0)
    else:
        img.save(buf, "PNG", compress_level=1)
    return buf.getvalue()


image_bytes = lru_cache(maxsize=2048)(_image_bytes)


class ShopServer:
    """The demo shop on ``host``:``port`` (0 picks a free port), in a background thread.

    The socket is bound at construction, so ``base_url`` is known before the
    world is generated; the world is read when the server starts.
    """

    def __init__(self, world_dir: Path, host: str = "127.0.0.1", port: int = 0,
                 faults: Faults | None = None, crawl_delay: float | None = 1.0,
                 log_file: Path | None = None, page_kind: str | None = None):
        self.world_dir = Path(world_dir)
        # Serve every product page as this kind (jsonld, microdata, opengraph, plain).
        self.page_kind = page_kind
        self.faults = faults or Faults()
        self.crawl_delay = crawl_delay
        self.requests: list[RequestRecord] = []
        self.log_file = Path(log_file) if log_file else None
        self._lock = threading.Lock()
        self._rng = random.Random(self.faults.seed)
        self._burst_left = self.faults.error_burst
        self.world: World  # read by start()
        self._thread: threading.Thread | None = None
        self._files: dict[str, tuple[bytes, float]] = {}
        self._collections: dict[str, list[int]] = {}
        self._parsed: dict[str, list] = {}
        handler = type("Handler", (_Handler,), {"shop": self})
        self.httpd = ThreadingHTTPServer((host, port), handler)
        self.httpd.daemon_threads = True
        address = self.httpd.server_address
        self.host, self.port = str(address[0]), int(address[1])

    @property
    def base_url(self) -> str:
        """http://host:port of the running shop."""
        return f"http://{self.host}:{self.port}"

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> "ShopServer":
        """Load the world and serve in a background thread."""
        try:
            self.world = World(self.world_dir)
        except BaseException:
            self.httpd.server_close()  # no world, no server: free the port
            raise
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="shop",
                                        kwargs={"poll_interval": 0.1}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        if self._thread is not None:
            self.httpd.shutdown()
            self._thread.join(5)
            self._thread = None
        self.httpd.server_close()

    def __enter__(self) -> "ShopServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def set_faults(self, faults: Faults | None = None, **changes) -> None:
        """Switch faults at run time: a new Faults, or changes to the current one."""
        with self._lock:
            self.faults = faults or replace(self.faults, **changes)
            self._rng = random.Random(self.faults.seed)
            self._burst_left = self.faults.error_burst

    # ------------------------------------------------------------------ faults
    def pick_fault(self, path: str) -> str:
        """Which fault (if any) this request gets."""
        f = self.faults
        if f.paths and not path.startswith(f.paths):
            return ""
        with self._lock:
            if self._burst_left > 0:
                self._burst_left -= 1
                return "burst"
            r = self._rng.random
            if f.rate_limit_rate and r() < f.rate_limit_rate:
                return "429"
            if f.error_rate and r() < f.error_rate:
                return "503"
            if f.captcha_rate and r() < f.captcha_rate:
                return "captcha"
            if f.truncate_rate and r() < f.truncate_rate:
                return "truncate"
        return ""

    def record(self, rec: RequestRecord) -> None:
        """Append to the request log (and the log file, when set)."""
        with self._lock:
            self.requests.append(rec)
            if self.log_file:
                with open(self.log_file, "a", encoding="utf-8") as f:
                    f.write(json.dumps({k: v for k, v in rec.__dict__.items() if k != "headers"})
                            + "\n")

    # ------------------------------------------------------------------ content
    def _rewrite(self, data: bytes) -> bytes:
        old = self.world.manifest.base_url.encode()
        return data.replace(old, self.base_url.encode()) if old != self.base_url.encode() else data

    def _safe_path(self, rel: str) -> Path | None:
        path = (self.world_dir / rel).resolve()
        if not path.is_relative_to(self.world_dir.resolve()) or not path.is_file():
            return None
        return path

    def big_file(self, rel: str) -> Path | None:
        """The path of a generated file too large to hold in memory, else None."""
        path = self._safe_path(rel)
        return path if path is not None and path.stat().st_size > STREAM_BYTES else None

    def stream_chunks(self, path: Path):
        """A large text file in chunks, the base URL rewritten line by line."""
        old = self.world.manifest.base_url.encode()
        new = self.base_url.encode()
        rest = b""
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                buf = rest + chunk
                cut = buf.rfind(b"\n") + 1  # URLs never span lines: rewrite whole lines only
                rest = buf[cut:]
                if cut:
                    yield buf[:cut].replace(old, new)
        if rest:
            yield rest.replace(old, new)

    def file(self, rel: str) -> bytes | None:
        """A generated file with the base URL rewritten (gzip files re-gzipped)."""
        path = self._safe_path(rel)
        if path is None:
            return None
        mtime = path.stat().st_mtime
        cached = self._files.get(rel)
        if cached and cached[1] == mtime:
            return cached[0]
        data = path.read_bytes()
        if rel.endswith(".gz"):
            data = gzip.compress(self._rewrite(gzip.decompress(data)), compresslevel=5, mtime=0)
        else:
            data = self._rewrite(data)
        if len(data) < STREAM_BYTES:
            self._files[rel] = (data, mtime)
        return data

    def handle_of(self, index: int) -> str | None:
        """The handle of product ``index``."""
        p = self.world.product(index)
        return p.handle if p else None

    def route(self, path: str, query: dict[str, list[str]]) -> Response:
        """The answer to one GET, before faults and conditional requests."""
        w = self.world
        now = w.now
        if path == "/robots.txt":
            return Response(body=robots_txt(self.base_url, self.crawl_delay).encode(),
                            content_type="text/plain; charset=utf-8", last_modified=now)
        if path == "/sitemap.xml" or (path.startswith("/sitemaps/") and path.endswith(".xml.gz")):
            data = self.file("site" + path)
            if data is None:
                return not_found()
            ctype = "application/xml" if path.endswith(".xml") else "application/gzip"
            return Response(body=data, content_type=ctype, last_modified=now)
        if path.startswith("/feeds/"):
            big = self.big_file(path[1:])
            data = None if big else self.file(path[1:])
            if (data is None and big is None) or path.startswith("/feeds/shopify"):
                return not_found()
            ctype = {"xml": "application/xml", "tsv": "text/tab-separated-values",
                     "csv": "text/csv"}.get(path.rsplit(".", 1)[-1], "application/octet-stream")
            if path.startswith("/feeds/pos-"):
                ctype += "; charset=windows-1252"
            return Response(body=data or b"", content_type=ctype, last_modified=now, stream=big)
        if path == "/products.json":
            return self.products_json(query)
        if path.startswith("/images/"):
            m = IMAGE_RE.match(path)
            if not m:
                return not_found()
            key, colour, n, mod, ext = m.groups()
            ctype = {"png": "image/png", "jpg": "image/jpeg", "webp": "image/webp"}[ext]
            return Response(body=image_bytes(key, colour, int(n), mod, ext), content_type=ctype,
                            last_modified=now)
        if path.startswith("/products/"):
            return self.product(path[len("/products/"):], query)
        if path.startswith("/collections/"):
            return self.collection(path[len("/collections/"):], query)
        if path == "/":
            return Response(body=pages.layout("Home", "<h1>Welcome to the demo shop</h1>"
                                              ).encode(), last_modified=now)
        if path in ("/cart", "/checkout", "/search") or path.startswith("/pages/"):
            return Response(body=pages.layout("Page", "<h1>Nothing to see</h1>").encode(),
                            last_modified=now)
        return not_found()

    def product(self, handle: str, query: dict[str, list[str]]) -> Response:
        """A product page (or an orphan's), for ``?variant=SKU`` when given."""
        parsed = pages.parse_handle(handle)
        if parsed is None:
            return not_found()
        index, ghost = parsed
        p = self.world.product(index)
        if p is None or (ghost is None and p.handle != handle):
            return not_found()
        views = self.world.plan(p, "site").views
        want = next(iter(query.get("variant") or []), None)
        if ghost is not None:
            views = [v for v in views if v.ghost and v.path.split("?")[0] == f"/products/{handle}"]
            real = views
        else:
            real = [v for v in views if not v.ghost]
        if not real:
            return not_found()
        if want:
            sel = next((v for v in real if v.sku == want), None)
            if sel is None and p.page_kind != "group":
                return not_found()
            sel = sel or real[0]
        else:
            sel = real[0]
        html = pages.product_page(p, real, sel, self.base_url, self.world.manifest.products,
                                  self.handle_of, self.page_kind)
        return Response(body=html.encode(), last_modified=p.lastmod)

    def collection(self, name: str, query: dict[str, list[str]]) -> Response:
        """/collections/all (by index) or /collections/<category> (scanned once, cached)."""
        try:
            page = max(1, int((query.get("page") or ["1"])[0]))
        except ValueError:
            return not_found()
        total = self.world.manifest.products
        if name == "all":
            indices: Sequence[int] = range((page - 1) * pages.PER_PAGE, min(total, page * pages.PER_PAGE))
            count = total
        elif name in pages.CATEGORIES:
            with self._lock:
                if not self._collections:
                    for prod in self.world.products():
                        self._collections.setdefault(prod.category, []).append(prod.index)
            allidx = self._collections.get(name, [])
            count = len(allidx)
            indices = allidx[(page - 1) * pages.PER_PAGE: page * pages.PER_PAGE]
        else:
            return not_found()
        npages = max(1, -(-count // pages.PER_PAGE))
        if page > npages:
            return not_found()
        items = []
        for i in indices:
            p = self.world.product(i)
            if p is None:
                continue
            real = [v for v in self.world.plan(p, "site").views if not v.ghost]
            if real:
                items.append((p.path if p.page_kind == "group" else real[0].path, p.base_title))
        return Response(body=pages.collection_page(name, items, page, npages).encode(),
                        last_modified=self.world.now)

    def products_json(self, query: dict[str, list[str]]) -> Response:
        """Shopify's /products.json?limit=&page= over the generated pages."""
        try:
            limit = min(250, max(1, int((query.get("limit") or ["30"])[0])))
            page = max(1, int((query.get("page") or ["1"])[0]))
        except ValueError:
            return Response(400, b'{"errors":"bad limit or page"}', "application/json")
        names = [n for n in self.world.manifest.files.get("shopify_pages", "").split(",") if n]
        per_file = self.world.manifest.shopify_page_size
        start = (page - 1) * limit
        out: list = []
        k = start // per_file  # every generated page but the last holds per_file products
        lo = start - k * per_file
        while k < len(names) and len(out) < limit:
            data = self._shopify_page(names[k])
            out += data[lo: lo + limit - len(out)]
            k, lo = k + 1, 0
        body = json.dumps({"products": out}, ensure_ascii=False).encode()
        return Response(body=body, content_type="application/json; charset=utf-8",
                        last_modified=self.world.now)

    def _shopify_page(self, rel: str) -> list:
        with self._lock:
            hit = self._parsed.get(rel)
        if hit is None:
            data = self.file(rel)
            hit = json.loads(data)["products"] if data else []
            with self._lock:
                if len(self._parsed) > 64:
                    self._parsed.clear()
                self._parsed[rel] = hit
        return hit


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    shop: ShopServer  # set on the subclass
    server_version = "DemoShop/1.0"

    def log_message(self, fmt: str, *args) -> None:  # the request log replaces stderr noise
        pass

    def do_HEAD(self) -> None:
        self.do_GET(head=True)

    def do_GET(self, head: bool = False) -> None:
        t0 = time.perf_counter()
        shop = self.shop
        url = urlsplit(self.path)
        path = url.path
        fault = shop.pick_fault(path)
        if shop.faults.delay:
            time.sleep(shop.faults.delay)
        resp: Response
        if fault == "burst":
            codes = (500, 502, 503)
            resp = Response(codes[len(shop.requests) % 3], b"<h1>Server error</h1>", etag=False,
                            headers={"Retry-After": str(shop.faults.retry_after)})
        elif fault == "503":
            resp = Response(503, b"<h1>Service unavailable</h1>", etag=False,
                            headers={"Retry-After": str(shop.faults.retry_after)})
        elif fault == "429":
            resp = Response(429, b"<h1>Too many requests</h1>", etag=False,
                            headers={"Retry-After": str(shop.faults.retry_after)})
        elif fault == "captcha":
            resp = Response(200, pages.captcha_page().encode(), etag=False)
        else:
            try:
                resp = shop.route(path, parse_qs(url.query))
            except Exception as e:  # a generator bug is a 500, never a dead server
                resp = Response(500, f"<h1>Internal error</h1><p>{type(e).__name__}</p>".encode(),
                                etag=False)
        status, body = resp.status, resp.body
        headers = dict(resp.headers)
        headers["Content-Type"] = resp.content_type
        if resp.etag and status == 200:
            if resp.stream is not None:
                st = resp.stream.stat()
                etag = f'"{st.st_size:x}-{int(st.st_mtime):x}"'
            else:
                etag = '"' + hashlib.blake2b(body, digest_size=10).hexdigest() + '"'
            headers["ETag"] = etag
            lm = resp.last_modified
            if lm is not None:
                headers["Last-Modified"] = format_datetime(lm.astimezone(timezone.utc),
                                                           usegmt=True)
            if _not_modified(self.headers, etag, lm):
                status, body = 304, b""
        streaming = resp.stream is not None and status == 200
        stream = resp.stream if streaming else None
        planned = 0 if head else (stream.stat().st_size if stream is not None else
                                  len(body) // 2 if fault == "truncate" else len(body))
        # Logged before the body goes out, so a client that has its answer finds it logged.
        shop.record(RequestRecord(time.time(), self.command, self.path, status, planned,
                                  time.perf_counter() - t0, fault,
                                  {k.lower(): v for k, v in self.headers.items()}))
        if streaming:
            headers["Transfer-Encoding"] = "chunked"  # rewriting URLs changes the length
        else:
            headers["Content-Length"] = str(len(body))
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        if stream is not None and not head:
            for chunk in shop.stream_chunks(stream):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            self.wfile.write(b"0\r\n\r\n")
        elif not head and body:
            if fault == "truncate":
                self.wfile.write(body[: len(body) // 2])
                self.close_connection = True
            else:
                self.wfile.write(body)


def _not_modified(h, etag: str, lm: datetime | None) -> bool:
    inm = h.get("If-None-Match")
    if inm:
        return etag in [t.strip() for t in inm.split(",")] or inm.strip() == "*"
    ims = h.get("If-Modified-Since")
    if ims and lm is not None:
        try:
            since = parsedate_to_datetime(ims)
        except (TypeError, ValueError):
            return False
        if since.tzinfo is None:
            since = since.replace(tzinfo=timezone.utc)
        return lm.replace(microsecond=0) <= since
    return False
