"""The demo shop server: pages, sitemaps, robots, conditional GET, faults, request log."""

from __future__ import annotations

import csv
import gzip
import io
import json
import re
import time
from datetime import datetime, timezone
from pathlib import Path

import httpx
import pytest

from auditor.world.generate import World, generate_world
from auditor.world.shop import Faults, ShopServer

NOW = datetime(2026, 3, 10, 12, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("shopworld")
    generate_world(out, size=150, seed=4, now=NOW, drift_rate=0.3, sitemap_urls_per_file=40,
                   shopify_page_size=10)
    return out


@pytest.fixture()
def shop(world):
    with ShopServer(world, crawl_delay=2.5) as s:
        yield s


@pytest.fixture()
def client(shop):
    with httpx.Client(base_url=shop.base_url, timeout=5) as c:
        yield c


def _sitemap_urls(client) -> list[str]:
    index = client.get("/sitemap.xml").text
    urls = []
    for part in re.findall(r"<loc>(.*?)</loc>", index):
        r = client.get(part)
        assert r.headers["content-type"] == "application/gzip"
        urls += re.findall(r"<loc>(.*?)</loc>", gzip.decompress(r.content).decode())
    return urls


def test_robots_has_disallow_crawl_delay_and_sitemap(client, shop):
    text = client.get("/robots.txt").text
    assert "Disallow: /cart" in text
    assert "Crawl-delay: 2.5" in text
    assert f"Sitemap: {shop.base_url}/sitemap.xml" in text


def test_robots_without_crawl_delay(world):
    with ShopServer(world, crawl_delay=None) as s:
        assert "Crawl-delay" not in httpx.get(s.base_url + "/robots.txt").text


def test_sitemap_index_gzip_parts_point_at_this_server(client, shop):
    index = client.get("/sitemap.xml").text
    assert index.count("<sitemap>") > 1 and "<lastmod>" in index
    urls = _sitemap_urls(client)
    assert urls and all(u.startswith(shop.base_url + "/products/") for u in urls)
    assert len(urls) == len(set(urls))


def test_every_sitemap_page_serves_a_product_of_realistic_weight(client, shop):
    kinds = set()
    for u in _sitemap_urls(client):
        r = client.get(u)
        assert r.status_code == 200, u
        assert 50_000 <= len(r.content) <= 150_000
        html = r.text
        if '"@type": "ProductGroup"' in html:
            kinds.add("group")
        elif '"@type": "Product"' in html:
            kinds.add("jsonld")
        elif "itemtype=\"https://schema.org/Product\"" in html:
            kinds.add("microdata")
        elif 'property="og:type" content="product"' in html:
            kinds.add("opengraph")
        else:
            assert 'class="price' in html and "SKU:" in html
            kinds.add("plain")
    assert kinds == {"group", "jsonld", "microdata", "opengraph", "plain"}


def test_site_labels_are_visible_on_pages(client, world):
    w = World(world)
    labels = [r for r in csv.DictReader(open(world / "labels.csv", encoding="utf-8"))
              if r["channel"] == "site"]
    checked = 0
    for lab in labels:
        p = w.product_of_sku(lab["sku"])
        if lab["kind"] == "missing_listing":
            v = next(x for x in p.variants if x.sku == lab["sku"])
            r = client.get(p.variant_path(v))
            if p.page_kind == "group":  # the group page leaves the variant out
                assert r.status_code != 200 or lab["sku"] not in r.text
            else:
                assert r.status_code == 404
            checked += 1
        elif lab["kind"] == "orphan_listing":
            view = next(v for v in w.plan(w.product(int(lab["sku"][3:10])), "site").views
                        if v.sku == lab["sku"])
            r = client.get(view.path)
            assert r.status_code == 200 and view.title in r.text
            checked += 1
        elif lab["kind"] == "wrong_title":
            v = next(x for x in p.variants if x.sku == lab["sku"])
            r = client.get(p.variant_path(v))
            assert v.title not in r.text
            checked += 1
    assert checked >= 5


def test_conditional_get_answers_304(client):
    url = _sitemap_urls(client)[0]
    r = client.get(url)
    etag, lm = r.headers["etag"], r.headers["last-modified"]
    assert client.get(url, headers={"If-None-Match": etag}).status_code == 304
    assert client.get(url, headers={"If-Modified-Since": lm}).status_code == 304
    assert client.get(url, headers={"If-None-Match": '"other"'}).status_code == 200
    assert client.get(url, headers={"If-Modified-Since": "Mon, 01 Jan 2001 00:00:00 GMT"}
                      ).status_code == 200


def test_unknown_paths_and_variants_404(client):
    assert client.get("/nope").status_code == 404
    assert client.get("/products/does-not-exist-999999").status_code == 404
    assert client.get("/images/p0000000/red-1.gif").status_code == 404


@pytest.mark.parametrize("mod,ctype,size", [
    ("-1.png", "image/png", (800, 600)), ("-1-w400.jpg", "image/jpeg", (400, 300)),
    ("-1-q40.jpg", "image/jpeg", (800, 600)), ("-1.webp", "image/webp", (800, 600)),
    ("-1-sq.png", "image/png", (800, 800)), ("-1-old.png", "image/png", (800, 600)),
])
def test_images(client, mod, ctype, size):
    from PIL import Image

    r = client.get(f"/images/p0000000/red{mod}")
    assert r.status_code == 200 and r.headers["content-type"] == ctype
    assert Image.open(io.BytesIO(r.content)).size == size


def test_products_json_pages_cover_every_product(client, world):
    files = World(world).manifest.files["shopify_pages"].split(",")
    expected = sum(len(json.loads((world / f).read_text())["products"]) for f in files)
    seen, page = [], 1
    while True:
        products = client.get(f"/products.json?limit=7&page={page}").json()["products"]
        if not products:
            break
        seen += [p["id"] for p in products]
        page += 1
    assert len(seen) == len(set(seen)) == expected


def test_feeds_are_served_with_this_servers_urls(client, shop):
    r = client.get("/feeds/google.xml")
    assert r.status_code == 200 and shop.base_url in r.text and "shop.local" not in r.text
    r = client.get("/feeds/pos-berlin.csv")
    assert "windows-1252" in r.headers["content-type"]
    assert client.get("/feeds/../manifest.json").status_code == 404


def test_faults_burst_then_recover_and_log(client, shop):
    shop.set_faults(error_burst=3)
    codes = [client.get("/").status_code for _ in range(4)]
    assert codes[:3] == [500, 502, 503] or sorted(codes[:3]) == [500, 502, 503]
    assert codes[3] == 200
    log = shop.requests[-4:]
    assert [r.status for r in log] == codes and [r.fault for r in log][:3] == ["burst"] * 3


@pytest.mark.parametrize("faults,check", [
    (Faults(rate_limit_rate=1.0, retry_after=9),
     lambda r: r.status_code == 429 and r.headers["retry-after"] == "9"),
    (Faults(error_rate=1.0), lambda r: r.status_code == 503 and "retry-after" in r.headers),
    (Faults(captcha_rate=1.0), lambda r: r.status_code == 200 and "Robot Check" in r.text),
    (Faults(error_rate=1.0, paths="/products/"), lambda r: r.status_code == 200),
])
def test_faults(client, shop, faults, check):
    shop.set_faults(faults)
    assert check(client.get("/robots.txt"))


def test_truncated_body(client, shop):
    url = _sitemap_urls(client)[0]
    shop.set_faults(truncate_rate=1.0)
    with pytest.raises(httpx.HTTPError):
        client.get(url)


def test_slow_responses(world):
    with ShopServer(world, faults=Faults(delay=0.2)) as s:
        t0 = time.perf_counter()
        assert httpx.get(s.base_url + "/robots.txt").status_code == 200
        assert time.perf_counter() - t0 >= 0.2


def test_collections_link_to_products(client):
    r = client.get("/collections/all?page=1")
    links = re.findall(r'href="(/products/[^"]+)"', r.text)
    assert links and all(client.get(u).status_code == 200 for u in links[:5])
    assert client.get("/collections/apparel").status_code == 200
    assert client.get("/collections/all?page=999").status_code == 404


def test_request_log_file(world, tmp_path):
    log = tmp_path / "requests.jsonl"
    with ShopServer(world, log_file=log) as s:
        httpx.get(s.base_url + "/robots.txt")
    rec = json.loads(log.read_text().splitlines()[0])
    assert rec["path"] == "/robots.txt" and rec["status"] == 200


def test_large_feeds_are_streamed_with_urls_rewritten(world, monkeypatch):
    import auditor.world.shop as shop_mod

    monkeypatch.setattr(shop_mod, "STREAM_BYTES", 1000)  # every feed counts as large
    with ShopServer(world) as s:
        r = httpx.get(s.base_url + "/feeds/google.tsv")
        assert r.status_code == 200 and r.headers.get("transfer-encoding") == "chunked"
        expected = (world / "feeds/google.tsv").read_text().replace("http://shop.local",
                                                                    s.base_url)
        assert r.text == expected
        again = httpx.get(s.base_url + "/feeds/google.tsv",
                          headers={"If-None-Match": r.headers["etag"]})
        assert again.status_code == 304


def _structured_offer(html: str, url: str, sku: str) -> tuple[str | None, str | None]:
    """(sku, price) a structured-data reader finds on a page for ``sku``."""
    import extruct

    data = extruct.extract(html, base_url=url, syntaxes=["json-ld", "microdata", "opengraph"],
                           uniform=True)
    for block in data["json-ld"]:
        items = block.get("hasVariant", [block])
        for item in items:
            if item.get("sku") == sku:
                return item["sku"], item["offers"]["price"]
    for item in data["microdata"]:
        if item.get("sku") == sku:
            return item["sku"], item["offers"]["price"]
    for og in data["opengraph"]:
        if og.get("product:retailer_item_id") == sku:
            return sku, og["product:price:amount"]
    return None, None


def test_structured_data_carries_the_site_view(client, world):
    w = World(world)
    checked = 0
    for p in list(w.products())[:25]:
        for v in w.plan(p, "site").views:
            if v.ghost or p.page_kind == "plain":
                continue
            url = client.base_url.join(v.path)
            r = client.get(url)
            sku, price = _structured_offer(r.text, str(url), v.sku)
            assert (sku, price) == (v.sku, f"{v.shown_price:.2f}"), (p.page_kind, v.sku)
            checked += 1
    assert checked > 20


def test_start_without_a_world_fails_clearly(tmp_path):
    shop = ShopServer(tmp_path)
    with pytest.raises(FileNotFoundError, match="manifest.json"):
        shop.start()
