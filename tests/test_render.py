"""Rendering a JavaScript shop with Playwright and Debian's chromium.

Skipped only when AUDITOR_SKIP_BROWSER=1 says so; a missing browser fails.
"""

from __future__ import annotations

import asyncio
import os

import pytest

from auditor.extract import extract
from auditor.http import FetchPolicy
from auditor.model import Money, SourceStatus
from auditor.render import Renderer
from tests._site_server import ShopServer
from tests.test_connectors_site import crawl, robots

pytestmark = pytest.mark.skipif(os.environ.get("AUDITOR_SKIP_BROWSER") == "1",
                                reason="AUDITOR_SKIP_BROWSER=1")

# The product JSON-LD exists only after the script runs.
JS_PAGE = b"""<!doctype html><html><head><title>JS shop</title></head><body>
<div id="app">Loading...</div>
<script>
  const data = {"@context": "https://schema.org", "@type": "Product", "name": "Rendered Mug",
    "sku": "JS-1", "offers": {"@type": "Offer", "price": "17.25", "priceCurrency": "EUR",
    "availability": "https://schema.org/InStock"}};
  const s = document.createElement("script");
  s.type = "application/ld+json";
  s.textContent = JSON.stringify(data);
  document.head.appendChild(s);
  document.getElementById("app").textContent = data.name;
</script></body></html>"""


@pytest.fixture
def shop():
    srv = ShopServer().start()
    robots(srv)
    srv.page("/p/js", JS_PAGE)
    srv.sitemap("/sitemap.xml", [("/p/js", None)])
    yield srv
    srv.stop()


def test_renderer_runs_the_pages_scripts(shop):
    assert not extract(JS_PAGE, shop.base + "/p/js").is_product  # nothing without JS

    async def go():
        p = FetchPolicy(allow_private=True, allow_hosts={shop.base}, timeout=10)
        async with Renderer(p, concurrency=1) as r:
            return await r.render(shop.base + "/p/js")

    html = asyncio.run(go())
    ex = extract(html, shop.base + "/p/js")
    assert (ex.title, ex.sku, str(ex.price)) == ("Rendered Mug", "JS-1", "17.25")


def test_renderer_keeps_the_outbound_guard(shop):
    async def go():
        p = FetchPolicy(allow_private=False, allow_hosts={shop.base}, timeout=10)
        async with Renderer(p, concurrency=1) as r:
            return await r.render(shop.base + "/p/js")

    from auditor.errors import FetchError
    with pytest.raises(FetchError, match="private"):
        asyncio.run(go())


@pytest.mark.parametrize("render,found", [(None, False), ("playwright", True)])
def test_site_channel_renders_only_when_configured(shop, render, found):
    opts = {"render": render, "timeout": 10.0, "deadline": 20.0} if render else {}
    got, ctx = crawl(shop.base + "/", start_urls=[shop.base + "/p/js"], **opts)
    key = shop.base + "/p/js"
    if found:
        assert got[key].price == Money.of("17.25", "EUR") and got[key].sku == "JS-1"
        assert ctx.result.status == SourceStatus.COMPLETE
    else:
        assert key not in got and ctx.result.unknown_keys == {key}


def test_missing_browser_fails_the_source_clearly(shop, monkeypatch):
    from auditor import render
    from auditor.errors import SourceError

    monkeypatch.setattr(render, "CHROMIUM", "/nonexistent/chromium")
    with pytest.raises(SourceError, match="browser did not start.*chromium"):
        crawl(shop.base + "/", start_urls=[shop.base + "/p/js"], render="playwright")


EVIL_PAGE = b"""<!doctype html><html><head><script type="application/ld+json">
{"@context": "https://schema.org", "@type": "Product", "name": "Inside", "sku": "EVIL",
 "offers": {"price": "0.01", "priceCurrency": "EUR"}}</script></head><body>inside</body></html>"""


def test_renderer_connects_to_the_address_it_checked(shop, monkeypatch):
    """DNS rebinding on the browser path. The auditor's resolver says `rebind.test` is the
    shop (127.0.0.1); Chromium's own resolver is told it is 127.0.0.2, where another
    server listens on the same port. A browser that resolved the name itself would render
    the other server's page; the renderer makes every request with the pinned client,
    so the page comes from the address that was checked and the other server sees
    nothing."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    import threading

    from auditor import http as auditor_http
    from auditor import render

    port = shop.server_address[1]
    evil_hits: list[str] = []

    class Evil(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            evil_hits.append(self.path)
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(EVIL_PAGE)))
            self.end_headers()
            self.wfile.write(EVIL_PAGE)

        def log_message(self, *a):
            pass

    evil = ThreadingHTTPServer(("127.0.0.2", port), Evil)
    threading.Thread(target=evil.serve_forever, daemon=True).start()
    resolved: list[str] = []

    async def fake_dns(host, p):
        resolved.append(host)
        if host == "rebind.test":
            return ["127.0.0.1"]
        raise OSError(f"unknown host {host}")

    monkeypatch.setattr(auditor_http, "_getaddrinfo", fake_dns)
    monkeypatch.setattr(render, "CHROMIUM_ARGS", render.CHROMIUM_ARGS + [
        "--host-resolver-rules=MAP rebind.test 127.0.0.2"])
    url = f"http://rebind.test:{port}/p/js"

    async def go():
        p = FetchPolicy(allow_private=True, allow_hosts={f"http://rebind.test:{port}"},
                        timeout=10)
        async with Renderer(p, concurrency=1) as r:
            return await r.render(url)

    try:
        html = asyncio.run(go())
    finally:
        evil.shutdown()
        evil.server_close()
    ex = extract(html, url)
    assert (ex.title, ex.sku) == ("Rendered Mug", "JS-1"), html[:300]
    assert evil_hits == []
    assert "rebind.test" in resolved
    assert any(path == "/p/js" for path, _ in shop.log)
