"""The web shop under faults: multi-member gzip and truncated sitemaps, text sitemaps,
listing keys that do not depend on the discovery path, and the shop's own headers and
auth sent to the shop only (issue 21 items 4, 6, 11; issue 14 item 6)."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import pytest

from auditor.crawl import parse_sitemap
from auditor.model import MasterRecord, SourceStatus
from auditor.connectors.site import canonical_page
from tests._site_server import ShopServer, product_page
from tests.test_connectors_site import FIX, crawl, robots


@pytest.fixture
def shop():
    srv = ShopServer().start()
    yield srv
    srv.stop()


@pytest.fixture
def cdn():
    srv = ShopServer().start()
    yield srv
    srv.stop()


def _urlset(base: str, paths) -> bytes:
    items = "".join(f"<url><loc>{base}{p}</loc></url>" for p in paths)
    return (f'<?xml version="1.0" encoding="UTF-8"?><urlset '
            f'xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">{items}</urlset>').encode()


def _shop_of(shop, n: int) -> list[str]:
    robots(shop)
    paths = [f"/p/{i}" for i in range(n)]
    for i, p in enumerate(paths):
        shop.page(p, product_page(f"P{i}", f"S{i}", "10.00"))
    return paths


# ------------------------------------------------------------------ item 4: gzip members

def test_multi_member_gzip_sitemap_is_read_whole(shop):
    paths = _shop_of(shop, 188)
    xml = _urlset(shop.base, paths)
    cut = xml.index(b"<url>", len(xml) // 2)
    body = gzip.compress(xml[:cut]) + gzip.compress(xml[cut:])  # like `cat a.gz b.gz`
    shop.page("/sitemap.xml.gz", body, **{"Content-Type": "application/x-gzip"})
    got, ctx = crawl(shop.base + "/", sitemaps=[shop.base + "/sitemap.xml.gz"])
    assert ctx.result.status == SourceStatus.COMPLETE, ctx.result.message
    assert len(got) == 188


def test_parse_sitemap_reads_every_gzip_member():
    xml = _urlset("https://s.example", [f"/p/{i}" for i in range(10)])
    members = b"".join(gzip.compress(xml[i:i + 50]) for i in range(0, len(xml), 50))
    pages, _ = parse_sitemap(members)
    assert [p.loc for p in pages] == [f"https://s.example/p/{i}" for i in range(10)]


@pytest.mark.parametrize("cut", ["gzip", "xml"])
def test_truncated_sitemap_is_a_failed_read_not_a_short_one(shop, cut):
    """A sitemap cut short makes discovery partial: nothing is concluded missing."""
    paths = _shop_of(shop, 40)
    xml = _urlset(shop.base, paths)
    if cut == "gzip":
        data = gzip.compress(xml)
        body = data[: len(data) // 2]
    else:
        body = gzip.compress(xml[: len(xml) // 2])  # a whole gzip of half a document
    shop.page("/sitemap.xml.gz", body, **{"Content-Type": "application/x-gzip"})
    got, ctx = crawl(shop.base + "/", sitemaps=[shop.base + "/sitemap.xml.gz"])
    assert ctx.result.status == SourceStatus.PARTIAL
    assert "unreadable sitemap" in ctx.result.message


@pytest.mark.parametrize("tail", [b"", b"</url>", b"<url><loc>https://s.example/x</loc>"])
def test_xml_ending_early_raises(tail):
    xml = _urlset("https://s.example", ["/a", "/b"])
    body = xml[: xml.index(b"</urlset>")] + tail
    with pytest.raises(ValueError, match="ends before </urlset>"):
        parse_sitemap(body)


def test_complete_xml_with_trailing_comment_reads():
    xml = _urlset("https://s.example", ["/a"]) + b"\n<!-- generated -->\n"
    assert [p.loc for p in parse_sitemap(xml)[0]] == ["https://s.example/a"]


def _shop_store(tmp_path: Path, shop: ShopServer, skus: int) -> tuple[Any, Any]:
    """A config auditing the test shop as channel ``shop`` against ``skus`` masters
    (S0.., titles P0.., 10.00 EUR), and its store."""
    from auditor.config import load_config
    from auditor.storage import open_store

    (tmp_path / "master.csv").write_text("sku,title,price,currency,url\n" + "".join(
        f"S{i},P{i},10.00,EUR,\n" for i in range(skus)))
    (tmp_path / "config.toml").write_text(f"""
[store]
path = "a.db"
[master]
source = "master.csv"
[[channels]]
name = "shop"
type = "site"
source = "{shop.base}/"
allow_private = true
master_urls = false
""")
    cfg = load_config(tmp_path / "config.toml")
    return cfg, open_store(cfg.store_url)


def test_a_truncated_sitemap_in_a_run_opens_no_missing_findings(shop, tmp_path):
    from auditor.runner import run_audit
    from datetime import datetime, timezone

    paths = _shop_of(shop, 30)
    full = _urlset(shop.base, paths)
    shop.page("/sitemap.xml", full, **{"Content-Type": "application/xml"})
    cfg, store = _shop_store(tmp_path, shop, 30)
    now = datetime(2026, 11, 27, 12, tzinfo=timezone.utc)
    first = run_audit(cfg, store, now=now)
    assert first.channels[0].status is SourceStatus.COMPLETE and first.channels[0].listings == 30
    shop.page("/sitemap.xml", full[: full.index(b"/p/15<")] , **{"Content-Type": "application/xml"})
    second = run_audit(cfg, store, now=now)
    assert second.channels[0].status is SourceStatus.PARTIAL
    assert not [f for f in store.findings(state="open") if f.check == "presence"]
    store.close()


def test_a_partial_crawl_opens_and_resolves_what_it_read_only(shop, tmp_path):
    """One page of the shop behind a captcha makes the crawl partial: a price finding
    still opens on a page that was read, one whose page was read again and agrees
    resolves, and nothing about the blocked page changes (nor is anything missing)."""
    from auditor.runner import run_audit
    from datetime import datetime, timedelta, timezone

    paths = _shop_of(shop, 10)
    shop.page("/sitemap.xml", _urlset(shop.base, paths), **{"Content-Type": "application/xml"})
    shop.page("/p/5", product_page("P5", "S5", "12.00"))
    shop.page("/p/7", product_page("P7", "S7", "12.00"))
    cfg, store = _shop_store(tmp_path, shop, 10)
    now = datetime(2026, 11, 27, 12, tzinfo=timezone.utc)
    first = run_audit(cfg, store, now=now)
    assert first.channels[0].status is SourceStatus.COMPLETE
    price = {f.listing_key: f for f in store.findings() if f.check == "price"}
    assert set(price) == {shop.base + "/p/5", shop.base + "/p/7"}
    blocked = price[shop.base + "/p/7"]
    # Run 2: /p/7 shows a captcha, /p/5 agrees again, /p/2's price drifted.
    shop.page("/p/7", (FIX / "captcha.html").read_bytes())
    shop.page("/p/5", product_page("P5", "S5", "10.00"))
    shop.page("/p/2", product_page("P2", "S2", "15.00"))
    second = run_audit(cfg, store, now=now + timedelta(days=1))
    ch = second.channels[0]
    assert ch.status is SourceStatus.PARTIAL and ch.listings == 9
    state = {f.listing_key: (f.state, f.actual, f.last_run)
             for f in store.findings() if f.check == "price"}
    assert state[shop.base + "/p/2"][0] == "open" and "15" in state[shop.base + "/p/2"][1]
    assert state[shop.base + "/p/5"][0] == "resolved"
    assert state[shop.base + "/p/7"] == ("open", blocked.actual, blocked.last_run)
    assert [e.event for e in store.finding_events(blocked.fingerprint)] == ["opened"]
    assert not [f for f in store.findings() if f.check == "presence"]
    store.close()


# ------------------------------------------------------------------ issue 14 item 6: text

def test_text_sitemap_is_read_like_an_xml_one(shop):
    paths = _shop_of(shop, 5)
    text = "\n".join(shop.base + p for p in paths) + "\n\n"
    shop.page("/sitemap.txt", text.encode(), **{"Content-Type": "text/plain"})
    got, ctx = crawl(shop.base + "/sitemap.txt")
    assert ctx.result.status == SourceStatus.COMPLETE, ctx.result.message
    assert set(got) == {shop.base + p for p in paths}


def test_gzipped_text_sitemap_and_robots_named_text_sitemap(shop):
    paths = _shop_of(shop, 3)
    shop.page("/robots.txt", f"User-agent: *\nSitemap: {shop.base}/urls.txt.gz\n".encode(),
              **{"Content-Type": "text/plain"})
    shop.page("/urls.txt.gz", gzip.compress("\r\n".join(shop.base + p for p in paths).encode()),
              **{"Content-Type": "application/gzip"})
    got, ctx = crawl(shop.base + "/")
    assert ctx.result.status == SourceStatus.COMPLETE and len(got) == 3


def test_text_sitemap_with_a_line_that_is_no_url_is_unreadable():
    with pytest.raises(ValueError, match="line 2 is not an http"):
        parse_sitemap(b"https://s.example/a\nnot a url\n")
    assert [p.loc for p in parse_sitemap(b"\xef\xbb\xbfhttps://s.example/a\n")[0]] == [
        "https://s.example/a"]


# ------------------------------------------------------------------ item 6: stable keys

def test_keys_do_not_depend_on_the_discovery_path(shop):
    """With the sitemap down, the products come back through master ?variant= URLs under
    the same keys as through the sitemap."""
    robots(shop)
    shop.page("/p/tee", (FIX / "variants.html").read_bytes())
    shop.page("/p/mug", product_page("Mug", "MUG-1", "9.00"))
    shop.sitemap("/sitemap.xml", [("/p/tee", None), ("/p/mug", None)])
    via_sitemap, ctx = crawl(shop.base + "/")
    assert ctx.result.status == SourceStatus.COMPLETE
    shop.page("/sitemap.xml", b"down", status=404)
    master = {"MT-100-M-BLK": MasterRecord("MT-100-M-BLK", url=shop.base + "/p/tee?variant=4002"),
              "MUG-1": MasterRecord("MUG-1", url=shop.base + "/p/mug?utm_source=pim&gclid=x")}
    via_master, _ = crawl(shop.base + "/", master=master)
    assert set(via_master) <= set(via_sitemap)
    assert set(via_master) == {shop.base + "/p/tee#MT-100-M-BLK", shop.base + "/p/mug"}
    assert via_sitemap[shop.base + "/p/tee#MT-100-M-BLK"].sku == "MT-100-M-BLK"


@pytest.mark.parametrize("url,expect", [
    ("https://s.example/p/tee?variant=4002", "https://s.example/p/tee"),
    ("https://s.example/p/tee?utm_source=x&color=red&gclid=1#top", "https://s.example/p/tee?color=red"),
    ("https://s.example/item.php?id=5&b=2", "https://s.example/item.php?b=2&id=5"),
    ("https://s.example", "https://s.example/"),
])
def test_canonical_page(url, expect):
    assert canonical_page(url) == expect


# ------------------------------------------------------------------ item 11: headers, auth

def test_site_headers_and_auth_go_to_the_shop_only(shop, cdn, monkeypatch):
    monkeypatch.setenv("SHOP_TOKEN", "t0ken-value")
    monkeypatch.setenv("SHOP_USER", "auditor")
    monkeypatch.setenv("SHOP_PASS", "pa55word")
    robots(shop)
    shop.page("/p/1", product_page("One", "S1", "10.00"))
    shop.routes["/p/2"] = (302, {"Location": cdn.base + "/p/2"}, b"")
    cdn.page("/p/2", product_page("Two", "S2", "11.00"))
    shop.sitemap("/sitemap.xml", [("/p/1", None), ("/p/2", None)])
    got, ctx = crawl(shop.base + "/", headers={"X-Shop-Token": {"env": "SHOP_TOKEN"}},
                     auth={"username": {"env": "SHOP_USER"}, "password": {"env": "SHOP_PASS"}},
                     allow_hosts=[cdn.base])
    assert len(got) == 2, ctx.errors
    for path, h in shop.log:
        assert h.get("X-Shop-Token") == "t0ken-value", path
        assert h.get("Authorization", "").startswith("Basic "), path
    for path, h in cdn.log:
        assert "X-Shop-Token" not in h and "Authorization" not in h, path


# ------------------------------------------------------------------ item 10: crawl deadline

def test_a_crawl_past_its_source_deadline_fails_the_source(shop):
    import time as _time
    from auditor.errors import SourceError
    from tests._site_server import slow_body
    paths = _shop_of(shop, 3)
    shop.routes["/p/slow"] = slow_body
    shop.sitemap("/sitemap.xml", [(p, None) for p in paths] + [("/p/slow", None)])
    t0 = _time.monotonic()
    with pytest.raises(SourceError, match=r"source_deadline \(1 s\)"):
        crawl(shop.base + "/", source_deadline=1.0, deadline=10.0, timeout=5.0)
    assert _time.monotonic() - t0 < 3


def test_shopify_store_read_past_its_source_deadline_fails():
    import time as _time
    from auditor.errors import SourceError
    from tests.connector_helpers import read, serve
    from tests.test_connectors_shopify import HTTP_LOCAL, _store

    def slow(handler):
        _time.sleep(0.6)
        return (200, {"Content-Type": "application/json"}, b'{"products": []}')

    routes = _store(**{"/products.json?limit=250&page=2": slow})
    with serve(routes) as (base, _):
        t0 = _time.monotonic()
        with pytest.raises(SourceError, match=r"source_deadline \(0.3 s\)"):
            read("shopify", base, http_options={**HTTP_LOCAL, "source_deadline": 0.3},
                 currency="EUR")
        assert _time.monotonic() - t0 < 2


def test_variant_pages_of_one_product_keep_distinct_keys(shop):
    """A shop whose sitemap lists one ?variant= URL per variant (each page one Product):
    each variant is its own listing, under the same key a master URL would give."""
    robots(shop)
    pages = {"A-S": "10.00", "A-M": "11.00"}

    def route(h):
        sku = h.path.split("variant=")[1].split("&")[0]
        h.send(200, {}, product_page("Tee " + sku, sku, pages[sku]))
    shop.routes["/p/tee"] = route
    shop.sitemap("/sitemap.xml", [(f"/p/tee?variant={s}", None) for s in pages])
    got, ctx = crawl(shop.base + "/")
    assert ctx.result.errors == 0, ctx.errors
    assert set(got) == {shop.base + "/p/tee#A-S", shop.base + "/p/tee#A-M"}
    shop.page("/sitemap.xml", b"down", status=404)
    master = {"A-M": MasterRecord("A-M", url=shop.base + "/p/tee?variant=A-M&utm_source=pim")}
    again, _ = crawl(shop.base + "/", master=master)
    assert set(again) == {shop.base + "/p/tee#A-M"}
