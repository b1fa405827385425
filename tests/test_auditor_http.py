"""The shared HTTP client against a local server: retries, limits, guard, conditional GET."""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import datetime, timezone

import pytest

from auditor.errors import FetchError
from auditor.http import (FetchPolicy, Fetcher, check_url, conditional_headers, download,
                          lane_scheme, retry_after_seconds)
from tests._site_server import (ShopServer, no_answer, redirect, slow_body, throttled_then,
                                truncated)


@pytest.fixture
def shop():
    srv = ShopServer().start()
    yield srv
    srv.stop()


def policy(**kw) -> FetchPolicy:
    base = dict(allow_private=True, timeout=0.3, deadline=0.6, retries=2, backoff=0.01)
    base.update(kw)
    return FetchPolicy(**base)


def fetch(url: str, p: FetchPolicy, **kw):
    async def go():
        async with Fetcher(p) as f:
            return await f.get(url, **kw)
    return asyncio.run(go())


def test_plain_get_and_user_agent(shop):
    shop.page("/a", b"<html>hello</html>")
    r = fetch(shop.base + "/a", policy(user_agent="auditor-test/1 (+ops@example.test)"))
    assert (r.status, r.body, r.content_type) == (200, b"<html>hello</html>", "text/html")
    assert shop.log[-1][1]["User-Agent"] == "auditor-test/1 (+ops@example.test)"


@pytest.mark.parametrize("route,reason,status", [
    ((500, {}, b"down"), "HTTP 500", 500),
    ((503, {"Retry-After": "0"}, b"busy"), "HTTP 503", 503),
    ((429, {"Retry-After": "0"}, b"slow"), "HTTP 429", 429),
    (truncated, "peer closed connection", None),
    (slow_body, "deadline", None),
    (no_answer, "timed out", None),
])
def test_failures_are_retried_then_raised_with_reason(shop, route, reason, status):
    shop.routes["/f"] = route
    with pytest.raises(FetchError) as e:
        fetch(shop.base + "/f", policy(retries=1))
    assert reason in e.value.reason and e.value.status == status
    assert shop.hits["/f"] == 2  # one try, one retry


def test_429_with_retry_after_then_success(shop):
    shop.routes["/t"] = throttled_then(b"ok", times=2, retry_after="0")
    r = fetch(shop.base + "/t", policy(retries=3))
    assert r.body == b"ok" and shop.hits["/t"] == 3


def test_retry_after_beyond_the_limit_gives_up_at_once(shop):
    """One request, no retry. The timeouts are generous: with the suite's 0.3 s a loaded
    machine's slow first answer timed out and was retried (another error, flaky), which
    is not what this test is about."""
    shop.routes["/t"] = throttled_then(b"ok", times=5, retry_after="3600")
    with pytest.raises(FetchError, match="exceeds max_retry_after") as e:
        fetch(shop.base + "/t", policy(max_retry_after=5, timeout=30, deadline=60))
    assert e.value.status == 429 and shop.hits["/t"] == 1


@pytest.mark.parametrize("value,expect", [
    ("120", 120.0), (" 3 ", 3.0), (None, None), ("soon", None),
    ("Wed, 21 Oct 2026 07:28:00 GMT", 60.0),
])
def test_retry_after_seconds(value, expect):
    now = datetime(2026, 10, 21, 7, 27, tzinfo=timezone.utc)
    assert retry_after_seconds(value, now) == expect


def test_body_cap(shop):
    shop.page("/big", b"x" * 5000)
    with pytest.raises(FetchError, match="max_body_bytes"):
        fetch(shop.base + "/big", policy(max_body_bytes=1000))


def test_content_type_check(shop):
    shop.page("/j", b"{}", **{"Content-Type": "application/json"})
    with pytest.raises(FetchError, match="content type 'application/json'"):
        fetch(shop.base + "/j", policy(), accept=("text/html",))
    assert fetch(shop.base + "/j", policy()).body == b"{}"


def test_redirects_followed_limited_and_loops_caught(shop):
    shop.routes["/r1"] = redirect("/r2")
    shop.routes["/r2"] = redirect("/final")
    shop.page("/final", b"done")
    r = fetch(shop.base + "/r1", policy())
    assert r.body == b"done" and r.url == shop.base + "/final"
    with pytest.raises(FetchError, match="more than 1 redirects"):
        fetch(shop.base + "/r1", policy(max_redirects=1))
    shop.routes["/loop"] = redirect("/loop")
    with pytest.raises(FetchError, match="redirect loop"):
        fetch(shop.base + "/loop", policy())


def test_guard_checks_every_redirect_hop(shop):
    shop.routes["/out"] = redirect("http://localhost:1/elsewhere")
    with pytest.raises(FetchError, match="host localhost.* is not one this source names"):
        fetch(shop.base + "/out", policy(allow_hosts={shop.base}))
    assert shop.hits["/out"] == 1


@pytest.mark.parametrize("url,allow_private,match", [
    ("http://127.0.0.1/x", False, "not a globally routable address"),
    ("http://169.254.169.254/latest/meta-data", False, "not a globally routable address"),
    ("http://10.0.0.5/", False, "not a globally routable address"),
    ("http://[::1]/", False, "not a globally routable address"),
    ("file:///etc/passwd", True, "scheme 'file' not allowed"),
    ("http://evil.test/", True, "not one this source names"),
])
def test_outbound_guard_refuses(url, allow_private, match):
    p = FetchPolicy(allow_private=allow_private,
                    allow_hosts={"127.0.0.1", "169.254.169.254", "10.0.0.5", "::1"})
    with pytest.raises(FetchError, match=match):
        asyncio.run(check_url(url, p))


def test_private_loopback_refused_unless_allowed(shop):
    shop.page("/a", b"x")
    with pytest.raises(FetchError, match="private"):
        fetch(shop.base + "/a", policy(allow_private=False))
    with pytest.raises(FetchError, match="private"):
        fetch(shop.base.replace("127.0.0.1", "localhost") + "/a", policy(allow_private=False))
    assert "/a" not in shop.hits


def test_conditional_get_gives_304(shop):
    shop.page("/c", b"page", ETag='"v1"')
    first = fetch(shop.base + "/c", policy())
    assert first.headers["etag"] == '"v1"'
    again = fetch(shop.base + "/c", policy(), headers=conditional_headers('"v1"', None))
    assert again.not_modified and again.status == 304 and again.body is None
    assert conditional_headers(None, "Tue, 01 Sep 2026 00:00:00 GMT") == {
        "If-Modified-Since": "Tue, 01 Sep 2026 00:00:00 GMT"}


def test_per_host_concurrency_limit(shop):
    state = {"now": 0, "max": 0}
    lock = threading.Lock()

    def route(h):
        with lock:
            state["now"] += 1
            state["max"] = max(state["max"], state["now"])
        time.sleep(0.05)
        with lock:
            state["now"] -= 1
        h.send(200, {}, b"ok")

    for i in range(8):
        shop.routes[f"/c{i}"] = route

    async def go():
        async with Fetcher(policy(concurrency=8, per_host_concurrency=2)) as f:
            await asyncio.gather(*(f.get(f"{shop.base}/c{i}") for i in range(8)))
    asyncio.run(go())
    assert state["max"] == 2


@pytest.mark.parametrize("kw,delay,min_gap", [
    ({"rate": 20.0}, 0.0, 0.05),       # 20 requests/s
    ({}, 0.08, 0.08),                  # robots.txt Crawl-delay
])
def test_requests_to_one_host_are_paced(shop, kw, delay, min_gap):
    shop.page("/p", b"ok")

    async def go():
        async with Fetcher(policy(**kw)) as f:
            if delay:
                f.set_host_delay(shop.base + "/", delay)
            t = time.monotonic()
            await asyncio.gather(*(f.get(shop.base + "/p") for _ in range(4)))
            return time.monotonic() - t
    # four requests booked one gap apart: the last cannot start before three gaps
    assert asyncio.run(go()) >= 3 * min_gap
    assert shop.hits["/p"] == 4


def test_download_to_file_still_works_for_feed_connectors(shop):
    shop.page("/feed.xml", b"<rss/>" * 100, **{"Content-Type": "application/xml"})
    r = download(shop.base + "/feed.xml", policy())
    try:
        assert r.path.read_bytes() == b"<rss/>" * 100
    finally:
        r.path.unlink()


def test_injected_transport_serves_concurrent_requests():
    import httpx

    seen = []

    def handler(request):
        seen.append(request.headers["user-agent"])
        return httpx.Response(200, text="hi", headers={"content-type": "text/html"})

    async def go():
        async with Fetcher(policy(user_agent="ua-test"),
                           transport=httpx.MockTransport(handler)) as f:
            return await asyncio.gather(*(f.get("http://example.test/x") for _ in range(20)))
    assert {r.body for r in asyncio.run(go())} == {b"hi"} and seen == ["ua-test"] * 20


@pytest.mark.parametrize("url,scheme,trusts_cas", [
    ("https://shop.example/p", "https", True),
    ("HTTPS://shop.example/p", "https", True),
    ("http://shop.example/p", "http", False),
    ("ftp://shop.example/p", "https", True),  # anything not plain http gets verification
])
def test_https_requests_go_to_verifying_lanes_only(url, scheme, trusts_cas):
    import ssl

    async def go():
        async with Fetcher(FetchPolicy()) as f:
            chosen = lane_scheme(url)
            client = await f._lane(chosen)
            return chosen, client._transport._pool._ssl_context
    chosen, ctx = asyncio.run(go())
    assert chosen == scheme
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    assert (ctx.cert_store_stats()["x509_ca"] > 0) is trusts_cas


def test_cookie_set_on_a_redirect_comes_back_on_the_next_hop(shop):
    def route(h):
        if "seen=1" in (h.headers.get("Cookie") or ""):
            h.send(200, {}, b"welcome")
        else:
            h.send(302, {"Location": "/gate", "Set-Cookie": "seen=1; Path=/"}, b"")

    shop.routes["/gate"] = route
    r = fetch(shop.base + "/gate", policy(concurrency=8))
    assert r.body == b"welcome" and shop.hits["/gate"] == 2


def test_lanes_share_one_cookie_jar():
    async def go():
        async with Fetcher(FetchPolicy()) as f:
            return f._new_lane("http").cookies.jar is f._new_lane("https").cookies.jar
    assert asyncio.run(go())
