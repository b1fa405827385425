"""Crawl + extract throughput: omni-auditor's site channel side by side with Scrapy.

    python bench/crawl.py --pages 3000 --concurrency 16
    python bench/crawl.py --base-url http://127.0.0.1:8000 --pages 5000   # an existing shop

Without ``--base-url`` it writes a directory of synthetic product pages (~80 KB
each, JSON-LD, a sitemap index with gzip sitemaps, robots.txt) and serves it on
loopback from a separate process. Each crawler runs in its own subprocess so
``peak_rss_mb`` is that crawler's own peak. Prints a table: our first crawl,
Scrapy's crawl (same concurrency, sitemap discovery, extruct reading JSON-LD,
microdata and OpenGraph), our
second crawl of the unchanged site, and the ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import unquote

ROOT = Path(__file__).resolve().parent.parent


# ============================================================================ synthetic shop

def _page(i: int, size_kb: int = 80) -> str:
    rnd = random.Random(i)
    sku = f"SKU-{i:06d}"
    price = f"{rnd.randint(5, 500)}.{rnd.choice(['00', '50', '95', '99'])}"
    ld = {"@context": "https://schema.org", "@type": "Product", "name": f"Product {i} Deluxe",
          "sku": sku, "gtin13": f"400{i:09d}0"[:13], "brand": {"@type": "Brand", "name": "Acme"},
          "image": [f"https://cdn.shop.test/{sku}-{k}.jpg" for k in range(4)],
          "description": "A fine product. " * 10,
          "offers": {"@type": "Offer", "price": price, "priceCurrency": "EUR",
                     "availability": "https://schema.org/" + rnd.choice(["InStock", "OutOfStock"]),
                     "url": f"/p/{i}.html"}}
    nav = "".join(f'<li><a href="/c/{k}.html">Category {k}</a></li>' for k in range(120))
    related = "".join(
        f'<div class="tile"><a href="/p/{(i + k) % 99991}.html"><img src="/img/{k}.jpg" '
        f'alt="Related {k}"><span class="price">€{rnd.randint(5, 500)},00</span></a></div>'
        for k in range(24))
    head = (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Product {i}'
            f'</title><meta property="og:type" content="product"><script type="application/ld+json">'
            f'{json.dumps(ld)}</script><link rel="stylesheet" href="/s.css"></head><body>'
            f'<header><nav><ul>{nav}</ul></nav></header><main><h1>Product {i} Deluxe</h1>'
            f'<div class="price">€{price.replace(".", ",")}</div><section class="desc">')
    tail = (f'</section><section class="related">{related}</section></main>'
            f'<script>window.__STATE__ = {json.dumps({"sku": sku, "n": i})};</script>'
            f'<footer>© Acme</footer></body></html>')
    filler_len = max(0, size_kb * 1024 - len(head) - len(tail))
    para = "<p>Crafted from durable materials, designed for everyday use and easy care. </p>"
    filler = (para * (filler_len // len(para) + 1))[:filler_len]
    return head + filler + tail


def make_site(directory: Path, pages: int, size_kb: int = 80) -> Path:
    """Write ``pages`` product pages, gzip sitemaps, a sitemap index and robots.txt."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "p").mkdir(exist_ok=True)
    for i in range(pages):
        f = directory / "p" / f"{i}.html"
        if not f.exists():
            f.write_text(_page(i, size_kb), encoding="utf-8")
    chunk = 10_000
    names = []
    for n, start in enumerate(range(0, pages, chunk)):
        urls = "".join(f"<url><loc>{{BASE}}/p/{i}.html</loc><lastmod>2026-01-01</lastmod></url>"
                       for i in range(start, min(pages, start + chunk)))
        xml = ('<?xml version="1.0" encoding="UTF-8"?><urlset xmlns="http://www.sitemaps.org/'
               f'schemas/sitemap/0.9">{urls}</urlset>')
        name = f"sitemap-{n}.xml.gz"
        (directory / name).write_bytes(gzip.compress(xml.encode(), 5))
        names.append(name)
    idx = "".join(f"<sitemap><loc>{{BASE}}/{n}</loc></sitemap>" for n in names)
    (directory / "sitemap.xml").write_text(
        '<?xml version="1.0" encoding="UTF-8"?><sitemapindex xmlns="http://www.sitemaps.org/'
        f'schemas/sitemap/0.9">{idx}</sitemapindex>')
    (directory / "robots.txt").write_text("User-agent: *\nDisallow: /checkout\n"
                                          "Sitemap: {BASE}/sitemap.xml\n")
    (directory / ".pages").write_text(str(pages))
    return directory


_TYPES = {".html": "text/html; charset=utf-8", ".xml": "application/xml",
          ".gz": "application/x-gzip", ".txt": "text/plain"}


def serve(directory: Path, port: int) -> None:
    """Serve ``directory`` on 127.0.0.1:port (HTTP/1.1 keep-alive, ETag + 304)."""
    root = directory.resolve()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        base = None
        try:
            while True:
                line = await reader.readline()
                if not line:
                    break
                headers = {}
                while True:
                    h = await reader.readline()
                    if h in (b"\r\n", b"\n", b""):
                        break
                    k, _, v = h.decode("latin-1").partition(":")
                    headers[k.strip().lower()] = v.strip()
                base = base or f"http://{headers.get('host', f'127.0.0.1:{port}')}"
                path = unquote(line.split()[1].decode().split("?")[0])
                f = (root / path.lstrip("/")).resolve()
                if not str(f).startswith(str(root)) or not f.is_file():
                    body, status, ctype, extra = b"not found", "404 Not Found", "text/plain", ""
                else:
                    st = f.stat()
                    etag = f'"{st.st_mtime_ns:x}-{st.st_size:x}"'
                    if headers.get("if-none-match") == etag:
                        writer.write(f"HTTP/1.1 304 Not Modified\r\nETag: {etag}\r\n"
                                     f"Content-Length: 0\r\n\r\n".encode())
                        await writer.drain()
                        continue
                    body = f.read_bytes()
                    if f.suffix in (".xml", ".txt") and b"{BASE}" in body:
                        body = body.replace(b"{BASE}", base.encode())
                    if f.name.endswith(".xml.gz"):
                        body = gzip.compress(gzip.decompress(body).replace(
                            b"{BASE}", base.encode()), 1)
                    status, ctype = "200 OK", _TYPES.get(f.suffix, "application/octet-stream")
                    extra = f"ETag: {etag}\r\n"
                writer.write(f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: "
                             f"{len(body)}\r\n{extra}\r\n".encode() + body)
                await writer.drain()
        except (ConnectionError, IndexError):
            pass
        finally:
            writer.close()

    async def main() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=1024)
        async with server:
            await server.serve_forever()

    asyncio.run(main())


# ============================================================================ crawlers

def _child(args: list[str], timeout: float = 3600) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    # As a module from the project root: run as a script, bench/ would come first on
    # sys.path and bench/checks.py would shadow the `checks` package.
    out = subprocess.run([sys.executable, "-m", "bench.crawl", *args], cwd=ROOT,
                         env=env, capture_output=True, text=True, timeout=timeout)
    if out.returncode != 0:
        raise RuntimeError(f"bench child failed: {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def warm(base_url: str, max_pages: int, workers: int = 8) -> int:
    """Request every page the shop's sitemaps list once (untimed), so neither crawler
    pays the server's first render of a page (the crawler measured first would)."""
    import re
    import urllib.request
    from concurrent.futures import ThreadPoolExecutor

    def get(u: str) -> bytes:
        with urllib.request.urlopen(u, timeout=30) as r:
            return r.read()

    index = get(base_url.rstrip("/") + "/sitemap.xml")
    urls: list[str] = []
    for loc in re.findall(rb"<loc>(.*?)</loc>", index):
        data = get(loc.decode())
        if data[:2] == b"\x1f\x8b":
            data = gzip.decompress(data)
        urls += [u.decode() for u in re.findall(rb"<loc>(.*?)</loc>", data)]
        if len(urls) >= max_pages:
            break
    with ThreadPoolExecutor(workers) as ex:
        return sum(1 for _ in ex.map(get, urls[:max_pages]))


def crawl_bench(base_url: str, concurrency: int, max_pages: int,
                store_path: str | None = None) -> dict:
    """Our site channel: sitemap discovery, fetch, extract, cache write (one subprocess)."""
    own = store_path is None
    if own:
        fd, store_path = tempfile.mkstemp(suffix=".db", prefix="crawlbench-")
        os.close(fd)
        os.unlink(store_path)
    try:
        return _child(["_ours", base_url, str(concurrency), str(max_pages), store_path])
    finally:
        if own:
            from auditor.storage import remove_store

            remove_store(store_path)


def recrawl_bench(base_url: str, concurrency: int, max_pages: int) -> dict:
    """First and second crawl of an unchanged site with one store: the cache's effect."""
    d = tempfile.mkdtemp(prefix="crawlbench-")
    store = str(Path(d) / "store.db")
    try:
        first = crawl_bench(base_url, concurrency, max_pages, store)
        second = crawl_bench(base_url, concurrency, max_pages, store)
    finally:
        for f in Path(d).iterdir():
            f.unlink()
        os.rmdir(d)
    return {"first": first, "second": second,
            "speedup": first["seconds"] / max(second["seconds"], 1e-9)}


def scrapy_bench(base_url: str, concurrency: int, max_pages: int) -> dict:
    """Scrapy's SitemapSpider with extruct (JSON-LD, microdata, OpenGraph), one subprocess."""
    return _child(["_scrapy", base_url, str(concurrency), str(max_pages)])


def _reset_peak_rss() -> None:
    """Forget the peak RSS inherited from the process this child was forked from (Linux
    copies the high-water mark on fork), so the figure is the crawler's own."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def _peak_rss_mb() -> float:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _run_ours(base_url: str, concurrency: int, max_pages: int, store_path: str) -> dict:
    from datetime import datetime, timezone

    from auditor.config import parse_config
    from auditor.connector import SourceContext
    from auditor.storage import open_store
    from auditor.connectors.site import SiteConnector

    cfg = parse_config({"master": {"source": "m.csv"}, "channels": [{
        "name": "bench", "type": "site", "source": base_url.rstrip("/") + "/",
        "allow_private": True, "concurrency": concurrency, "per_host_concurrency": concurrency,
        "max_pages": max_pages, "retries": 1}]}, Path("bench.toml"))
    ch = cfg.channels[0]
    store = open_store(store_path)
    ctx = SourceContext(channel=ch, now=datetime.now(timezone.utc), http_options=cfg.http,
                        store=store)
    t0, c0 = time.perf_counter(), time.process_time()
    # Pages read (fetched or taken from the cache), as Scrapy counts parsed responses;
    # a variant group page yields several listings but is one page.
    conn = SiteConnector(ch)
    listings = sum(1 for _ in conn.read(ctx))
    n = sum(conn.counts.values())
    dt, cpu = time.perf_counter() - t0, time.process_time() - c0
    store.close()
    return {"crawler": "omni-auditor", "pages": n, "seconds": round(dt, 3),
            "pages_per_s": round(n / dt, 1), "cpu_s": round(cpu, 3),
            "pages_per_cpu_s": round(n / max(cpu, 1e-9), 1),
            "peak_rss_mb": round(_peak_rss_mb(), 1),
            "listings": listings, "status": ctx.result.status.value,
            "errors": ctx.result.errors}


def _run_scrapy(base_url: str, concurrency: int, max_pages: int) -> dict:
    import extruct
    import scrapy
    from scrapy.crawler import CrawlerProcess
    from scrapy.spiders import SitemapSpider

    count = {"n": 0}

    class BenchSpider(SitemapSpider):
        name = "bench"
        sitemap_urls = [base_url.rstrip("/") + "/robots.txt", base_url.rstrip("/") + "/sitemap.xml"]

        def parse(self, response):  # the same fields we read, by extruct
            count["n"] += 1  # pages parsed, as ours counts pages read
            # extruct reads JSON-LD, microdata and OpenGraph (the syntaxes our reader
            # covers besides the visible HTML), as a Scrapy project would
            data = extruct.extract(response.text, base_url=response.url,
                                   syntaxes=["json-ld", "microdata", "opengraph"],
                                   uniform=True)
            nodes = list(data.get("json-ld") or []) + list(data.get("microdata") or [])
            flat = []
            for node in nodes:
                if isinstance(node, dict):
                    flat += node.get("@graph", [node]) if "@graph" in node else [node]
            for node in flat:
                types = node.get("@type") if isinstance(node, dict) else None
                types = types if isinstance(types, list) else [types]
                if any(t in ("Product", "ProductGroup") for t in types):
                    offer = node.get("offers") or {}
                    if isinstance(offer, list):
                        offer = offer[0] if offer else {}
                    brand = node.get("brand")
                    yield {"url": response.url, "sku": node.get("sku"),
                           "title": node.get("name"), "price": offer.get("price"),
                           "currency": offer.get("priceCurrency"),
                           "availability": offer.get("availability"),
                           "brand": brand.get("name") if isinstance(brand, dict) else brand,
                           "images": node.get("image")}
                    return
            for og in data.get("opengraph") or []:
                if isinstance(og, dict) and og.get("og:type") == "product":
                    yield {"url": response.url, "title": og.get("og:title"),
                           "price": og.get("product:price:amount"),
                           "currency": og.get("product:price:currency"),
                           "availability": og.get("product:availability"),
                           "sku": og.get("product:retailer_item_id"),
                           "images": og.get("og:image")}
                    return

    process = CrawlerProcess(settings={
        "LOG_LEVEL": "ERROR", "TELNETCONSOLE_ENABLED": False, "ROBOTSTXT_OBEY": True,
        "CONCURRENT_REQUESTS": concurrency, "CONCURRENT_REQUESTS_PER_DOMAIN": concurrency,
        "DOWNLOAD_DELAY": 0, "RETRY_TIMES": 1, "COOKIES_ENABLED": False,
        # responses, robots.txt and sitemaps included: a little headroom for those
        "CLOSESPIDER_PAGECOUNT": max_pages + 20, "USER_AGENT": "scrapy-bench",
        "MEMUSAGE_ENABLED": False, "DOWNLOAD_MAXSIZE": 5_000_000,
        "REQUEST_FINGERPRINTER_IMPLEMENTATION": "2.7"})
    process.crawl(BenchSpider)
    t0, c0 = time.perf_counter(), time.process_time()
    process.start()
    dt, cpu = time.perf_counter() - t0, time.process_time() - c0
    n = count["n"]
    return {"crawler": f"scrapy {scrapy.__version__}", "pages": n, "seconds": round(dt, 3),
            "pages_per_s": round(n / dt, 1), "cpu_s": round(cpu, 3),
            "pages_per_cpu_s": round(n / max(cpu, 1e-9), 1),
            "peak_rss_mb": round(_peak_rss_mb(), 1)}


# ============================================================================ main

def _table(rows: list[dict]) -> str:
    cols = ["run", "pages", "seconds", "pages_per_s", "cpu_s", "pages_per_cpu_s", "peak_rss_mb"]
    lines = [" | ".join(f"{c:>12}" for c in cols)]
    for r in rows:
        lines.append(" | ".join(f"{str(r.get(c, '')):>12}" for c in cols))
    return "\n".join(lines)


def _median(rows: list[dict]) -> dict:
    return sorted(rows, key=lambda r: r["pages_per_s"])[len(rows) // 2]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pages", type=int, default=2000, help="pages to generate and crawl")
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--dir", type=Path, help="site directory (default: a temporary one)")
    ap.add_argument("--base-url", help="crawl this running shop instead of serving one")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--only", choices=["ours", "scrapy"], help="run one crawler only")
    ap.add_argument("--no-recrawl", action="store_true", help="skip the second-crawl run")
    ap.add_argument("--repeat", type=int, default=3,
                    help="alternate the crawlers this many times; the median run is reported")
    a = ap.parse_args(argv)
    server = None
    tmp = None
    base = a.base_url
    try:
        if not base:
            directory = a.dir
            if directory is None:
                tmp = tempfile.TemporaryDirectory(prefix="crawlbench-site-")
                directory = Path(tmp.name)
            t = time.perf_counter()
            make_site(directory, a.pages)
            print(f"site: {a.pages} pages in {directory} ({time.perf_counter() - t:.1f}s)")
            import socket

            port = a.port
            if not port:
                s = socket.socket()
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
                s.close()
            server = subprocess.Popen([sys.executable, "-m", "bench.crawl", "_serve",
                                       str(directory), str(port)], cwd=ROOT)
            base = f"http://127.0.0.1:{port}"
            import urllib.request

            for _ in range(100):
                try:
                    urllib.request.urlopen(base + "/robots.txt", timeout=1).read()
                    break
                except OSError:
                    time.sleep(0.1)
        runs: dict[str, list[dict]] = {"ours": [], "ours-2nd": [], "scrapy": []}
        for _ in range(max(1, a.repeat)):  # alternate, so load on the machine hits both
            if a.only in (None, "ours"):
                if a.no_recrawl:
                    runs["ours"].append(crawl_bench(base, a.concurrency, a.pages))
                else:
                    rc = recrawl_bench(base, a.concurrency, a.pages)
                    runs["ours"].append(rc["first"])
                    runs["ours-2nd"].append(rc["second"])
            if a.only in (None, "scrapy"):
                runs["scrapy"].append(scrapy_bench(base, a.concurrency, a.pages))
        med = {k: _median(v) for k, v in runs.items() if v}
        rows = [{"run": k, **v} for k, v in med.items()]
        print(f"base {base}, concurrency {a.concurrency}, max_pages {a.pages}, "
              f"cpus {os.cpu_count()}, median of {a.repeat} alternated runs")
        print(_table(rows))
        for k, v in runs.items():
            if v:
                print(f"  {k} pages/s per run: {[r['pages_per_s'] for r in v]}")
        if "ours" in med and "scrapy" in med:
            o, s_ = med["ours"], med["scrapy"]
            print(f"throughput ours/scrapy: {o['pages_per_s'] / s_['pages_per_s']:.2f}x wall, "
                  f"{o['pages_per_cpu_s'] / s_['pages_per_cpu_s']:.2f}x per CPU second")
        if "ours-2nd" in med:
            print(f"second crawl speedup: {med['ours']['seconds'] / med['ours-2nd']['seconds']:.1f}x")
        return 0
    finally:
        if server is not None:
            server.terminate()
            server.wait()
        if tmp is not None:
            tmp.cleanup()


if __name__ == "__main__":
    cmd = sys.argv[1] if len(sys.argv) > 1 else ""
    if cmd == "_serve":
        serve(Path(sys.argv[2]), int(sys.argv[3]))
    elif cmd == "_ours":
        _reset_peak_rss()
        print(json.dumps(_run_ours(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5])))
    elif cmd == "_scrapy":
        _reset_peak_rss()
        print(json.dumps(_run_scrapy(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))))
    else:
        sys.exit(main())
