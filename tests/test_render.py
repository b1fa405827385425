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
