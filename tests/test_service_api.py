"""The JSON API over real HTTP: pagination, filters, auth failures, bad parameters."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from urllib.parse import quote

import pytest

from service_helpers import build_world, cli, get, post, serving

TOKEN = "s3cret-token-for-tests"


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    d = tmp_path_factory.mktemp("api")
    config = build_world(d, n=40)
    r = cli("run", "--config", config)
    assert r.returncode == 1, r.stderr
    findings = json.loads(cli("findings", "--config", config, "--format", "json").stdout)
    with serving(config, "--no-schedule", env={"AUDITOR_API_TOKEN": TOKEN}) as s:
        s.findings = findings
        s.config = config
        yield s


def walk(url: str, limit: int) -> list[dict]:
    items, cursor, pages = [], None, 0
    while True:
        status, body = get(f"{url}&limit={limit}" + (f"&cursor={cursor}" if cursor else ""))
        assert status == 200, body
        assert len(body["items"]) <= limit
        items += body["items"]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            return items
        assert pages < 100


def test_findings_pages_cover_everything_once_most_severe_first(api):
    items = walk(api.url + "/api/findings?state=open", 7)
    fps = [f["fingerprint"] for f in items]
    assert len(fps) == len(set(fps)) == len([f for f in api.findings if f["state"] == "open"])
    assert len(fps) > 14  # more than two pages
    ranks = [f["severity_rank"] for f in items]
    assert ranks == sorted(ranks)


@pytest.mark.parametrize("query, field, value", [
    ("severity=critical", "severity", "critical"), ("check=title", "check", "title"),
    ("channel=google", "channel", "google"), ("sku=SKU-003", "sku", "SKU-003"),
    ("outcome=failed", "outcome", "failed"),
])
def test_findings_filters(api, query, field, value):
    status, body = get(f"{api.url}/api/findings?{query}&limit=500")
    assert status == 200
    expected = [f for f in api.findings if f[field] == value]
    assert expected and len(body["items"]) == len(expected)
    assert all(f[field] == value for f in body["items"])


@pytest.mark.parametrize("path, code, words", [
    ("/api/findings?limit=0", 422, "limit"),
    ("/api/findings?limit=abc", 422, "limit"),
    ("/api/findings?limit=100000", 422, "limit"),
    ("/api/findings?severity=bogus", 422, "severity"),
    ("/api/findings?state=closed", 422, "state"),
    ("/api/findings?check=nope", 400, "unknown check"),
    ("/api/findings?cursor=%%%garbage", 400, "bad cursor"),
    ("/api/findings?cursor=WyJhIl0", 400, "bad cursor"),
    ("/api/findings?channel=Not%20A%20Name", 422, "channel"),
    ("/api/runs?cursor=xyz", 400, "bad cursor"),
    ("/api/runs/0", 422, "run_id"),
    ("/api/runs/abc", 422, "run_id"),
    ("/api/runs/9999", 404, "no run 9999"),
    ("/api/skus/NOPE-1", 404, "no SKU"),
    ("/api/findings/deadbeef", 404, "no finding"),
    ("/api/link-suggestions?cursor=WzFd", 400, "bad cursor"),
    ("/api/runs/99999999999999999999999", 422, "run_id"),
    ("/api/runs?cursor=WzEwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwXQ", 400, "bad cursor"),  # [10**25]
    ("/api/findings?cursor=WzAsIDFd", 400, "bad cursor"),                       # [0, 1]
])
def test_bad_parameters_get_a_clear_4xx(api, path, code, words):
    status, body = get(api.url + path)
    assert status == code, body
    assert words in json.dumps(body)


@pytest.mark.parametrize("path", [
    "/api/findings?sku=%00%ff%fe", "/api/findings?sku=" + "x" * 400,
    "/api/skus/%E2%80%AE%F0%9F%98%80", "/api/findings/%00", "/api/findings?channel=",
    "/api/link-suggestions?channel=google&limit=500",
])
def test_odd_but_valid_input_never_errors(api, path):
    status, _ = get(api.url + path)
    assert status in (200, 404, 422), (path, status)


def test_runs_with_sources_and_cursor(api):
    cli("run", "--config", api.config)
    status, body = get(api.url + "/api/runs?limit=1")
    assert status == 200 and len(body["items"]) == 1 and body["next_cursor"]
    newest = body["items"][0]
    assert [s["source"] for s in newest["sources"]] == ["google"]
    status, older = get(api.url + f"/api/runs?limit=1&cursor={body['next_cursor']}")
    assert older["items"][0]["id"] < newest["id"]
    status, one = get(api.url + f"/api/runs/{newest['id']}")
    assert status == 200 and one["errors"]  # the duplicate and the bad price
    assert any("bad price" in e["reason"] for e in one["errors"])


def test_one_sku_master_next_to_each_channel(api):
    status, body = get(api.url + "/api/skus/SKU-003")
    assert status == 200
    assert body["master"]["price"] == "23.00 USD"
    [g] = body["channels"]
    assert g["channel"] == "google" and g["data"]["price"] == "26.00 USD"
    assert {f["check"] for f in g["findings"]} == {"price"}


def test_link_suggestions_empty_until_the_linker_suggests(api):
    status, body = get(api.url + "/api/link-suggestions?channel=google")
    assert status == 200 and body == {"items": [], "next_cursor": None}


def test_writes_need_the_bearer_token(api):
    fp = next(f["fingerprint"] for f in api.findings if f["state"] == "open")
    url = f"{api.url}/api/findings/{fp}/ack"
    status, body = post(url, {"by": "ops"})
    assert status == 401 and "bearer token is required" in body["detail"]
    status, body = post(url, {"by": "ops"}, headers={"Authorization": "Basic Zm9vOmJhcg=="})
    assert status == 401
    status, body = post(url, {"by": "ops"}, token="wrong")
    assert status == 403 and "not valid" in body["detail"]
    status, body = post(url, {"by": "ops", "note": "on it"}, token=TOKEN)
    assert status == 200 and body == {"ok": True, "fingerprint": fp}
    status, f = get(f"{api.url}/api/findings/{fp}")
    assert f["state"] == "acknowledged" and f["events"][-1]["event"] == "acknowledged"


def test_snooze_and_resolve(api):
    open_fps = [f["fingerprint"] for f in api.findings if f["state"] == "open"]
    fp1, fp2 = open_fps[1], open_fps[2]
    past = (datetime.now(timezone.utc) - timedelta(hours=1)).isoformat()
    status, body = post(f"{api.url}/api/findings/{fp1}/snooze", {"until": past}, token=TOKEN)
    assert status == 400 and "not in the future" in body["detail"]
    status, body = post(f"{api.url}/api/findings/{fp1}/snooze", {"until": "tomorrow"},
                        token=TOKEN)
    assert status == 422
    status, body = post(f"{api.url}/api/findings/{fp1}/snooze", {"until": "2026-12-01T09:00"},
                        token=TOKEN)
    assert status == 400 and "time zone" in body["detail"]
    until = (datetime.now(timezone.utc) + timedelta(days=1)).isoformat()
    assert post(f"{api.url}/api/findings/{fp1}/snooze", {"until": until}, token=TOKEN)[0] == 200
    assert post(f"{api.url}/api/findings/{fp2}/resolve", {}, token=TOKEN)[0] == 200
    assert get(f"{api.url}/api/findings/{fp1}")[1]["state"] == "snoozed"
    assert get(f"{api.url}/api/findings/{fp2}")[1]["state"] == "resolved"
    status, body = get(f"{api.url}/api/findings?state=snoozed")
    assert [f["fingerprint"] for f in body["items"]] == [fp1]
    assert post(f"{api.url}/api/findings/nope/resolve", {}, token=TOKEN)[0] == 404
    status, body = post(f"{api.url}/api/findings/{fp2}/ack", {}, token=TOKEN)
    assert status == 409 and "is resolved" in body["detail"]


def test_silences_and_link_decisions_validate_then_call_the_store(api):
    from auditor.storage.sqlite import SQLiteStore as Store

    status, body = post(f"{api.url}/api/silences", {"matchers": {"colour": "x"},
                                                    "until": "2099-01-01T00:00:00Z"}, token=TOKEN)
    assert status == 400 and "unknown: colour" in body["detail"]
    assert post(f"{api.url}/api/silences", {"matchers": {"channel": "google"},
                                            "until": "2099-01-01T00:00:00Z"})[0] == 401
    status, body = post(f"{api.url}/api/silences", {"matchers": {"channel": "google"},
                                                    "until": "2099-01-01T00:00:00Z"}, token=TOKEN)
    # the store's silences come with the alerts work; until then a clear 501
    assert status == (201 if hasattr(Store, "add_silence") else 501), body
    status, body = post(f"{api.url}/api/links/google/{quote('SKU-001')}/reject", {},
                        token=TOKEN)
    assert status == (200 if hasattr(Store, "decide_link") else 501), body
    status, body = post(f"{api.url}/api/links/google/NOPE/confirm", {}, token=TOKEN)
    assert status == 404 and "no listing" in body["detail"]
    status, body = post(f"{api.url}/api/links/google/SKU-002/confirm", {"sku": "ZZZ"},
                        token=TOKEN)
    assert status == 400 and "no SKU 'ZZZ'" in body["detail"]


def test_openapi_describes_the_api(api):
    status, spec = get(api.url + "/openapi.json")
    assert status == 200 and spec["openapi"].startswith("3.")
    for path in ("/api/runs", "/api/findings", "/api/skus/{sku}", "/api/link-suggestions",
                 "/api/findings/{fingerprint}/ack", "/api/findings/{fingerprint}/snooze",
                 "/api/findings/{fingerprint}/resolve", "/api/silences",
                 "/api/links/{channel}/{key}/confirm", "/api/links/{channel}/{key}/reject",
                 "/healthz", "/readyz"):
        assert path in spec["paths"], path
    assert "HTTPBearer" in spec["components"]["securitySchemes"]
    params = {p["name"] for p in spec["paths"]["/api/findings"]["get"]["parameters"]}
    assert {"state", "channel", "check", "severity", "sku", "limit", "cursor"} <= params


def test_metrics_route_is_plain_not_a_redirect(api):
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", api.port, timeout=10)
    conn.request("GET", "/metrics")  # http.client follows no redirect
    r = conn.getresponse()
    body = r.read().decode()
    assert r.status == 200 and r.getheader("content-type").startswith("text/plain")
    assert "auditor_build_info" in body
    conn.close()


def test_protected_reads_and_no_token_configured(tmp_path):
    config = build_world(tmp_path, n=5, serve={"protect_reads": True})
    cli("run", "--config", config)
    with serving(config, "--no-schedule", env={"AUDITOR_API_TOKEN": TOKEN}) as s:
        assert get(s.url + "/api/findings")[0] == 401
        assert get(s.url + "/api/findings", token="nope")[0] == 403
        assert get(s.url + "/api/findings", token=TOKEN)[0] == 200
        assert get(s.url + "/metrics")[0] == 200 and get(s.url + "/healthz")[0] == 200
    with serving(config, "--no-schedule", env={"AUDITOR_API_TOKEN": ""}) as s:
        status, body = post(s.url + "/api/findings/x/resolve", {}, token="anything")
        assert status == 403 and "no token is set" in body["detail"]


def test_link_suggestions_and_decisions_over_http(tmp_path):
    from test_link_states import make_world

    world = make_world(tmp_path)
    assert cli("run", "--config", world / "config.toml").returncode in (0, 1)
    with serving(world / "config.toml", "--no-schedule", env={"AUDITOR_API_TOKEN": TOKEN}) as s:
        status, body = get(s.url + "/api/link-suggestions?channel=shop")
        assert status == 200 and [r["key"] for r in body["items"]] == ["K2"]
        k2 = body["items"][0]
        assert set(k2["candidates"]) == {"C", "D"} and k2["sku"] == k2["candidates"][0]
        assert k2["reason"] and k2["evidence"]["title"] > 0.5 and k2["data"]["title"]
        assert post(s.url + "/api/links/shop/K2/confirm", {"sku": "D"})[0] == 401
        status, body = post(s.url + "/api/links/shop/K2/confirm", {"sku": "D", "by": "ana"},
                            token=TOKEN)
        assert status == 200, body
        assert get(s.url + "/api/link-suggestions")[1]["items"] == []
        status, view = get(s.url + "/api/skus/D")
        assert [(c["key"], c["link_method"]) for c in view["channels"]] == [("K2", "confirmed")]
        status, body = post(s.url + "/api/links/shop/K1/reject", {}, token=TOKEN)
        assert status == 200, body
        assert get(s.url + "/api/skus/A")[0] == 200
        assert get(s.url + "/api/skus/A")[1]["channels"] == []
