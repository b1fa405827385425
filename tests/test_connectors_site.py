"""The site connector against a local shop: discovery, politeness, classification, cache."""

from __future__ import annotations

import socket
import threading
import zlib
from datetime import datetime, timezone
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from auditor.config import parse_config
from auditor.connector import SourceContext
from auditor.crawl import agent_token, parse_robots, parse_sitemap
from auditor.errors import SourceError
from auditor.model import Availability, MasterRecord, Money, SourceStatus
from auditor.storage import open_store
from auditor.connectors.site import SiteConnector
from tests._site_server import ShopServer, product_page, redirect, slow_body, truncated

FIX = Path(__file__).parent / "fixtures" / "site"
NOW = datetime(2026, 11, 27, 12, 0, tzinfo=timezone.utc)


@pytest.fixture
def shop():
    srv = ShopServer().start()
    yield srv
    srv.stop()


def channel(source: str, **opts):
    base = dict(name="shop", type="site", source=source, timeout=0.3, deadline=0.6, retries=1,
                backoff=0.01, allow_private=True)
    base.update(opts)
    cfg = parse_config({"master": {"source": "m.csv"}, "channels": [base]}, Path("/tmp/c.toml"))
    return cfg.channels[0], cfg.http


def crawl(source: str, store=None, master=None, **opts):
    ch, http = channel(source, **opts)
    ctx = SourceContext(channel=ch, now=NOW, http_options=http, store=store,
                        master=master or {})
    listings = list(SiteConnector(ch).read(ctx))
    return {li.key: li for li in listings}, ctx


def robots(shop, text="User-agent: *\nDisallow: /private\n"):
    shop.page("/robots.txt", text.encode(), **{"Content-Type": "text/plain"})


def good_shop(shop):
    robots(shop)
    shop.sitemap("/sitemap.xml", [("/sm-products.xml.gz", None), ("/sm-more.xml", None)],
                 index=True)
    shop.sitemap("/sm-products.xml.gz", [("/p/1", "2026-01-01"), ("/p/2", "2026-01-01T10:00:00Z"),
                                         ("/p/tee", None)], gz=True)
    shop.sitemap("/sm-more.xml", [("/p/gone", None), ("/p/removed", None)])
    shop.page("/p/1", product_page("One", "S1", "10.00"))
    shop.page("/p/2", product_page("Two", "S2", "1299.50", availability="OutOfStock"),
              ETag='"two-v1"')
    shop.page("/p/tee", (FIX / "variants.html").read_bytes())
    shop.page("/p/removed", b"gone", status=410)


def test_complete_crawl_reads_products_and_variants(shop):
    good_shop(shop)
    got, ctx = crawl(shop.base + "/")
    assert ctx.result.status == SourceStatus.COMPLETE, ctx.errors
    one = got[shop.base + "/p/1"]
    assert (one.sku, one.title, one.price, one.brand) == ("S1", "One", Money.of("10.00", "EUR"),
                                                          "Acme")
    assert one.availability is Availability.IN_STOCK
    assert one.evidence == shop.base + "/p/1" and one.sources["price"] == "json-ld"
    assert one.images == (shop.base + "/img/S1.jpg",)
    two = got[shop.base + "/p/2"]
    assert two.price == Money.of("1299.50", "EUR")
    assert two.availability is Availability.OUT_OF_STOCK
    # a ProductGroup page without a chosen variant: one listing per variant
    tee = {k: v for k, v in got.items() if k.startswith(shop.base + "/p/tee#")}
    assert sorted(tee) == [shop.base + "/p/tee#MT-100-" + s for s in ("L-BLK", "M-BLK", "S-BLK")]
    m = tee[shop.base + "/p/tee#MT-100-M-BLK"]
    assert m.price == Money.of("64.00", "EUR") and m.attributes["size"] == "M"
    assert m.group_id == "MT-100"
    # 404 and 410 are evidence of absence: nothing yielded, nothing unknown
    assert not any("gone" in k or "removed" in k for k in got)
    assert not ctx.result.unknown_keys


def test_user_agent_from_config_and_robots_fetched_once(shop):
    good_shop(shop)
    crawl(shop.base + "/", user_agent="acme-audit/2.0 (+it@acme.test)")
    assert shop.hits["/robots.txt"] == 1
    assert {h["User-Agent"] for _p, h in shop.log} == {"acme-audit/2.0 (+it@acme.test)"}


@pytest.mark.parametrize("path,route,kind", [
    ("/p/captcha", (200, {}, (FIX / "captcha.html").read_bytes()), "blocked"),
    ("/p/forbidden", (403, {}, b"no"), "blocked"),
    ("/p/throttled", (429, {"Retry-After": "0"}, b"later"), "blocked"),
    ("/p/down", (500, {}, b"oops"), "error"),
    ("/p/slow", slow_body, "error"),
    ("/p/truncated", truncated, "error"),
    ("/p/loop", redirect("/p/loop"), "error"),
    ("/p/json", (200, {"Content-Type": "application/json"}, b"{}"), "error"),
    ("/p/huge", (200, {}, b"<html>" + b"x" * 300_000), "error"),
    ("/private/p", (200, {}, product_page("Secret", "X", "1.00")), "disallowed"),
])
def test_unreadable_pages_make_the_source_partial_never_missing(shop, path, route, kind):
    good_shop(shop)
    shop.routes[path] = route
    shop.sitemap("/sm-more.xml", [(path, None)])
    got, ctx = crawl(shop.base + "/", max_page_bytes=200_000)
    assert ctx.result.status == SourceStatus.PARTIAL
    assert ctx.result.unknown_keys == {shop.base + path}
    (loc, reason), = ctx.errors
    assert loc == shop.base + path and reason.startswith(kind + ":")
    assert shop.base + "/p/1" in got  # the rest of the shop was read


@pytest.mark.parametrize("robots_route,match", [
    ((503, {}, b"maintenance"), "HTTP 503"),
    ((500, {}, b"oops"), "HTTP 500"),
])
def test_robots_5xx_means_the_whole_source_fails(shop, robots_route, match):
    good_shop(shop)
    shop.routes["/robots.txt"] = robots_route
    with pytest.raises(SourceError, match=match):
        crawl(shop.base + "/")
    assert "/p/1" not in shop.hits


def test_site_down_is_a_source_error():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens: connection refused
    with pytest.raises(SourceError, match="robots.txt"):
        crawl(f"http://127.0.0.1:{port}/")


def test_robots_404_allows_everything(shop):
    good_shop(shop)
    del shop.routes["/robots.txt"]
    got, ctx = crawl(shop.base + "/")
    assert shop.base + "/p/1" in got and ctx.result.status == SourceStatus.COMPLETE


def test_master_urls_and_start_urls_are_read_and_patterns_filter_sitemaps(shop):
    good_shop(shop)
    shop.page("/p/only-in-master", product_page("M", "M1", "5.00"))
    shop.page("/p/start", product_page("St", "ST1", "6.00"))
    shop.page("/blog/post", b"<html><h1>News</h1></html>")
    shop.sitemap("/sm-more.xml", [("/blog/post", None)])
    master = {"M1": MasterRecord("M1", url=shop.base + "/p/only-in-master"),
              "X": MasterRecord("X", url="https://elsewhere.test/p/x")}  # other host: skipped
    got, ctx = crawl(shop.base + "/", master=master, start_urls=[shop.base + "/p/start"],
                     url_patterns=[r"/p/"])
    assert {shop.base + "/p/only-in-master", shop.base + "/p/start", shop.base + "/p/1"} <= set(got)
    assert "/blog/post" not in shop.hits
    assert ctx.result.status == SourceStatus.COMPLETE


def test_non_product_page_is_skipped_unless_expected(shop):
    good_shop(shop)
    shop.page("/about", b"<html><h1>About us</h1></html>")
    shop.sitemap("/sm-more.xml", [("/about", None)])
    _got, ctx = crawl(shop.base + "/")
    assert ctx.result.status == SourceStatus.COMPLETE  # a sitemap page that is no product
    master = {"A": MasterRecord("A", url=shop.base + "/about")}
    _got, ctx = crawl(shop.base + "/", master=master)
    assert ctx.result.unknown_keys == {shop.base + "/about"}  # a master URL without product


def test_max_pages_caps_the_run_and_makes_it_partial(shop):
    good_shop(shop)
    got, ctx = crawl(shop.base + "/", max_pages=2)
    assert ctx.result.status == SourceStatus.PARTIAL and "max_pages" in ctx.result.message
    assert sum(1 for p in shop.hits if p.startswith("/p/")) == 2


def test_unreadable_sitemap_makes_discovery_partial(shop):
    good_shop(shop)
    shop.routes["/sm-more.xml"] = (500, {}, b"oops")
    got, ctx = crawl(shop.base + "/")
    assert ctx.result.status == SourceStatus.PARTIAL and "sm-more.xml" in ctx.result.message
    assert shop.base + "/p/1" in got


def test_second_crawl_uses_lastmod_etag_and_cached_extraction(shop):
    good_shop(shop)
    store = open_store(":memory:")
    first, _ = crawl(shop.base + "/", store=store)
    before = dict(shop.hits)
    second, ctx = crawl(shop.base + "/", store=store)
    assert ctx.result.status == SourceStatus.COMPLETE
    assert {k: (v.price, v.sku, v.title) for k, v in second.items()} == \
        {k: (v.price, v.sku, v.title) for k, v in first.items()}
    hits = {p: shop.hits.get(p, 0) - before.get(p, 0) for p in shop.hits}
    assert hits["/p/1"] == 0 and hits["/p/2"] == 0      # sitemap lastmod unchanged: no request
    assert hits["/p/tee"] == 1                          # no lastmod: revalidated
    statuses = [h.get("If-None-Match") for p, h in shop.log if p == "/p/2"]
    assert statuses == [None]


def test_changed_lastmod_is_refetched_first_and_304_reuses_extraction(shop):
    good_shop(shop)
    store = open_store(":memory:")
    crawl(shop.base + "/", store=store)
    shop.sitemap("/sm-products.xml.gz", [("/p/1", "2026-01-01"), ("/p/2", None),
                                         ("/p/tee", "2099-01-01")], gz=True)
    shop.page("/p/tee", product_page("Tee now single", "TEE", "9.00"))
    shop.log.clear()
    # one page in flight at a time: the order requests arrive in is the plan's order
    # (with several in flight a loaded machine may deliver the second first)
    got, ctx = crawl(shop.base + "/", store=store, concurrency=1)
    pages = [p for p, _h in shop.log if p.startswith("/p/")]
    assert pages[0] == "/p/tee"                         # changed pages first
    assert got[shop.base + "/p/tee"].price == Money.of("9.00", "EUR")
    cond = [h.get("If-None-Match") for p, h in shop.log if p == "/p/2"]
    assert cond == ['"two-v1"']                         # conditional GET, answered 304
    assert got[shop.base + "/p/2"].price == Money.of("1299.50", "EUR")
    assert ctx.result.status == SourceStatus.COMPLETE


def test_wrong_charset_page_reads_right(shop):
    good_shop(shop)
    shop.page("/p/cafe", (FIX / "wrong_charset_cp1252.html").read_bytes())
    shop.sitemap("/sm-more.xml", [("/p/cafe", None)])
    got, _ = crawl(shop.base + "/")
    assert got[shop.base + "/p/cafe"].title == "Café Crème Tasse"


def test_price_without_currency_uses_channel_currency_or_is_reported(shop):
    good_shop(shop)
    shop.page("/p/nocur", b'<script type="application/ld+json">{"@type":"Product","name":"N",'
                          b'"sku":"N1","offers":{"price":"3.50"}}</script>')
    shop.sitemap("/sm-more.xml", [("/p/nocur", None)])
    got, ctx = crawl(shop.base + "/", currency="CHF")
    assert got[shop.base + "/p/nocur"].price == Money.of("3.50", "CHF")
    got, ctx = crawl(shop.base + "/")
    assert got[shop.base + "/p/nocur"].price is None
    assert any("no currency" in r for _l, r in ctx.errors)


def test_closing_the_reader_early_stops_the_crawl(shop):
    good_shop(shop)
    ch, http = channel(shop.base + "/", concurrency=1)
    ctx = SourceContext(channel=ch, now=NOW, http_options=http)
    it = SiteConnector(ch).read(ctx)
    first = next(it)
    assert first.price is not None
    assert any(t.name == "site-crawl" for t in threading.enumerate())
    it.close()  # must return, not hang on the worker thread
    assert not any(t.name == "site-crawl" for t in threading.enumerate())


@pytest.mark.parametrize("text,url,allowed,delay", [
    ("User-agent: *\nDisallow: /private\nCrawl-delay: 2", "/private/x", False, 2.0),
    ("User-agent: *\nDisallow: /private\n", "/p/1", True, 0.0),
    ("User-agent: omni-auditor\nDisallow: /\n\nUser-agent: *\nAllow: /", "/p/1", False, 0.0),
    ("User-agent: *\nDisallow: /p/\nAllow: /p/1", "/p/1", True, 0.0),  # longest match wins
])
def test_robots_rules(text, url, allowed, delay):
    r = parse_robots("https://s.test", 200, text.encode())
    ua = "omni-auditor/0.1 (+https://example.test)"
    assert r.allowed("https://s.test" + url, ua) is allowed
    assert r.delay(agent_token(ua)) == delay


@pytest.mark.parametrize("status,allowed", [(404, True), (401, True), (500, False), (None, False)])
def test_robots_by_status(status, allowed):
    assert parse_robots("https://s.test", status, b"").allowed("https://s.test/p", "x") is allowed


def test_sitemap_parsing_index_lastmod_and_hostile_xml():
    idx = (b'<?xml version="1.0"?><sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
           b"<sitemap><loc>https://s.test/a.xml</loc></sitemap></sitemapindex>")
    assert parse_sitemap(idx) == ([], ["https://s.test/a.xml"])
    bomb = (b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;">]>'
            b'<urlset><url><loc>https://s.test/p&b;</loc><lastmod>2026-02-03</lastmod></url>'
            b"<url><loc>https://s.test/q</loc><lastmod>garbage</lastmod></url></urlset>")
    pages, children = parse_sitemap(bomb)
    assert [p.loc for p in pages][1:] == ["https://s.test/q"]
    assert "aaaaaaaaaa" not in pages[0].loc  # entities are not expanded
    assert pages[1].lastmod is None


@pytest.mark.parametrize("broken,status,listings", [
    (False, SourceStatus.COMPLETE, 2),
    (True, SourceStatus.PARTIAL, 1),   # one page 500s: partial, so nothing is "missing"
])
def test_full_run_with_a_site_channel(shop, tmp_path, broken, status, listings):
    from auditor.config import load_config
    from auditor.runner import run_audit

    robots(shop)
    shop.sitemap("/sitemap.xml", [])
    shop.page("/p/a", product_page("Alpha", "A-1", "10.00"))
    shop.page("/p/b", product_page("Beta", "B-1", "20.00") if not broken else b"oops",
              status=500 if broken else 200)
    (tmp_path / "master.csv").write_text(
        "sku,title,price,currency,url\n"
        f"A-1,Alpha,10.00,EUR,{shop.base}/p/a\nB-1,Beta,20.00,EUR,{shop.base}/p/b\n")
    (tmp_path / "config.toml").write_text(f"""
[store]
path = "audit.db"
[master]
source = "master.csv"
[[channels]]
name = "web"
type = "site"
source = "{shop.base}/"
allow_private = true
retries = 0
timeout = 0.5
""")
    cfg = load_config(tmp_path / "config.toml")
    store = open_store(cfg.store_url)
    report = run_audit(cfg, store, now=NOW)
    web, = report.channels
    assert (web.status, web.listings, web.linked) == (status, listings, listings)
    assert report.exit_code == (2 if broken else 0)


def test_no_sitemap_at_all_is_fine_with_master_urls(shop):
    robots(shop)  # no Sitemap line, and /sitemap.xml is 404
    shop.page("/p/a", product_page("A", "A1", "1.00"))
    master = {"A1": MasterRecord("A1", url=shop.base + "/p/a")}
    got, ctx = crawl(shop.base + "/", master=master)
    assert list(got) == [shop.base + "/p/a"] and ctx.result.status == SourceStatus.COMPLETE


def test_configured_sitemap_missing_is_partial(shop):
    robots(shop)
    shop.page("/p/a", product_page("A", "A1", "1.00"))
    got, ctx = crawl(shop.base + "/", sitemaps=[shop.base + "/products.xml"],
                     start_urls=[shop.base + "/p/a"])
    assert ctx.result.status == SourceStatus.PARTIAL and "products.xml: HTTP 404" in \
        ctx.result.message


def test_variant_reached_by_group_page_and_variant_url_is_one_listing(shop):
    robots(shop)
    shop.page("/p/tee", (FIX / "variants.html").read_bytes())
    shop.sitemap("/sitemap.xml", [("/p/tee", None), ("/p/tee?variant=4002", None)])
    got, ctx = crawl(shop.base + "/")
    skus = sorted(li.sku for li in got.values())
    assert skus == ["MT-100-L-BLK", "MT-100-M-BLK", "MT-100-S-BLK"]


def test_cache_rows_survive_revalidation_in_mixed_batches(shop):
    robots(shop)
    shop.sitemap("/sitemap.xml", [("/p/e", None), ("/p/new", None)])
    shop.page("/p/e", product_page("E", "E1", "3.00"), ETag='"e1"')
    store = open_store(":memory:")
    crawl(shop.base + "/", store=store)
    for run in range(2):  # a 304 and a fresh page written in the same batch, twice
        shop.page("/p/new", product_page("N", f"N{run}", "4.00"))
        got, ctx = crawl(shop.base + "/", store=store)
        assert got[shop.base + "/p/e"].price == Money.of("3.00", "EUR")
        row = store.http_cache_get(shop.base + "/p/e")
        assert row["extraction"] and row["sha256"] and row["etag"] == '"e1"'
    assert [h.get("If-None-Match") for p, h in shop.log if p == "/p/e"] == [None, '"e1"', '"e1"']


def test_crawl_delay_spaces_page_requests(shop):
    import time

    robots(shop, "User-agent: *\nCrawl-delay: 0.15\n")
    shop.sitemap("/sitemap.xml", [(f"/p/{i}", None) for i in range(4)])
    for i in range(4):
        shop.page(f"/p/{i}", product_page(f"P{i}", f"S{i}", "1.00"))
    t = time.monotonic()
    got, ctx = crawl(shop.base + "/", concurrency=4, per_host_concurrency=4)
    # robots.txt and the sitemap come first; four pages then take three delays at least
    assert len(got) == 4 and time.monotonic() - t >= 3 * 0.15


@settings(max_examples=80, deadline=None)
@given(st.binary(max_size=400) | st.text(max_size=400).map(
    lambda t: f"<urlset><url><loc>{t}</loc></url></urlset>".encode()))
def test_parse_sitemap_never_crashes(data):
    try:
        pages, children = parse_sitemap(data)
    except (ValueError, OSError, EOFError, zlib.error):
        return
    assert isinstance(pages, list) and isinstance(children, list)


@pytest.mark.parametrize("body", [b"", b"\x1f\x8bnot gzip", b"<html>oops</html>"])
def test_unreadable_sitemap_bodies_are_recorded_not_fatal(shop, body):
    good_shop(shop)
    shop.page("/sm-more.xml", body, **{"Content-Type": "application/xml"})
    got, ctx = crawl(shop.base + "/")
    assert shop.base + "/p/1" in got
    # an HTML page served as the sitemap is no empty sitemap: the products it listed are unknown
    assert ctx.result.status == SourceStatus.PARTIAL and "sm-more.xml" in ctx.result.message


def test_invalid_css_selector_is_a_config_error(tmp_path):
    from auditor.config import parse_config
    from auditor.errors import ConfigError

    raw = {"master": {"source": "m.csv"},
           "channels": [{"name": "shop", "type": "site", "source": "https://shop.example/sitemap.xml",
                         "selectors": {"price": "div..price >"}}]}
    with pytest.raises(ConfigError, match=r"selectors: price: invalid CSS selector 'div\.\.price >'"):
        parse_config(raw, tmp_path / "config.toml")
    raw["channels"][0]["selectors"] = {"price": "span.price", "images": "img.hero@data-src"}
    assert parse_config(raw, tmp_path / "config.toml").channels[0].opt("selectors")["images"]


def test_crawl_delay_option_overrides_robots(monkeypatch):
    """A shop's own crawl may override robots.txt's Crawl-delay; by default it is obeyed."""
    import asyncio
    import contextlib

    from auditor.crawl import Crawl, CrawlSettings
    from auditor.http import FetchPolicy

    class FakeRobots:
        def delay(self, agent):
            return 2.5

    class FakeFetcher:
        def __init__(self):
            self.delays = {}

        def set_host_delay(self, origin, seconds):
            self.delays[origin] = seconds

        def discovering(self, origin):
            return contextlib.nullcontext()

        async def share_host_delay(self, origin, seconds):
            if seconds:
                self.set_host_delay(origin, seconds)

    async def fake_fetch_robots(fetcher, origin):
        return FakeRobots()

    monkeypatch.setattr("auditor.crawl.fetch_robots", fake_fetch_robots)
    for override, expected in ((None, 2.5), (0.0, None), (0.5, 0.5)):
        crawl = Crawl(CrawlSettings(origin="https://shop.example", user_agent="t",
                                    crawl_delay=override), FetchPolicy(), {})
        fetcher = FakeFetcher()
        asyncio.run(crawl._robots_for(fetcher, "https://shop.example/p/1"))
        assert fetcher.delays.get("https://shop.example/") == expected
