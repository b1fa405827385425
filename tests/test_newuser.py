"""What a new user meets first: the UI, the API and the messages over a small store audited
by the real CLI, with hostile channel text (``<script>``, quotes, ``{{ }}``) in it.

The store is built once per module by ``auditor run`` (no browser needed: the pages are
fetched with Starlette's test client and read as HTML text).
"""

from __future__ import annotations

import contextlib
import json
import socket
from pathlib import Path

import pytest
from click.testing import CliRunner

from auditor.cli import main
from auditor.config import load_config
from auditor.storage import open_store

HOSTILE = ['<script>alert("t")</script> Tee', "\"Quoted\" & 'apos' <b>bold</b>",
           "{{ 7*7 }} {% raw %} ${7*7}"]
ORPHAN = '<script>alert("sku")</script>'


def _closed_port() -> int:
    """A loopback port nothing listens on (connections are refused at once)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _world(d: Path) -> Path:
    port = _closed_port()
    skus = [f"TS-{i:02d}" for i in range(12)]
    lines = ["sku,title,price,currency,quantity,image_1"]
    lines += [f"{s},Acme Tee {s},19.99,EUR,5,http://127.0.0.1:{port}/m/{s}.png" for s in skus]
    (d / "master.csv").write_text("\n".join(lines) + "\n")
    rows = ["sku,title,price,quantity,image"]
    for i, s in enumerate(skus[:10]):  # TS-10 and TS-11 are missing on the channel
        title = HOSTILE[i] if i < len(HOSTILE) else f"Acme Tee {s}"
        q = '"' + title.replace('"', '""') + '"'
        rows.append(f"{s},{q},19.99,5,http://127.0.0.1:{port}/c/{s}.png")
    rows.append('"<script>alert(""sku"")</script>",Stray,5.00,1,')
    (d / "shop.csv").write_text("\n".join(rows) + "\n")
    (d / "config.toml").write_text("""
[store]
path = "auditor.db"
[http]
allow_private = true
retries = 0
[master]
type = "csv"
source = "master.csv"
[[channels]]
name = "shop"
type = "tabular"
source = "shop.csv"
currency = "EUR"
""")
    r = CliRunner().invoke(main, ["run", "-c", str(d / "config.toml"), "--format", "json"],
                           catch_exceptions=False)
    assert r.exit_code == 1, r.output
    return d


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return _world(tmp_path_factory.mktemp("newuser"))


@contextlib.contextmanager
def api_client(cfg, ui=True):
    """A test client of the JSON API (and the web UI) over ``cfg``'s store."""
    from fastapi import FastAPI
    from starlette.testclient import TestClient

    from auditor.service.api import build_router
    from auditor.web.routes import build_ui_router

    @contextlib.contextmanager
    def opener():
        store = open_store(cfg.store_url, create=False)
        try:
            yield store
        finally:
            store.close()

    app = FastAPI()
    app.include_router(build_router(lambda: cfg, opener))
    if ui:
        app.include_router(build_ui_router(lambda: cfg, opener))
    with TestClient(app) as c:
        yield c


@pytest.fixture(scope="module")
def client(world):
    with api_client(load_config(world / "config.toml")) as c:
        yield c


def test_inbox_incident_line_says_the_count_once_and_names_the_kinds(client):
    html = client.get("/").text
    # the presence incident: two SKUs missing and one orphan listing
    assert "presence differs on shop for 3 SKUs: 2 missing, 1 orphan" in html
    assert " SKUs on <strong>" not in html  # the count is not said twice
    assert "title differs on shop for 3 SKUs" in html
    assert "title title" not in html


def test_hostile_channel_text_is_escaped_in_every_page(client):
    pages = [client.get(p) for p in ("/", "/?channel=shop", "/links", "/runs",
                                     "/products/TS-00", "/products/TS-01", "/products/TS-02")]
    for resp in pages:
        assert resp.status_code == 200, resp.url
        assert "<script>alert" not in resp.text, resp.url
        assert "<b>bold</b>" not in resp.text, resp.url
        assert "49" not in resp.text.split("{{ 7*7 }}")[0][-5:]  # not rendered as a template
    assert "&lt;script&gt;alert(&#34;t&#34;)&lt;/script&gt; Tee" in pages[4].text
    assert "{{ 7*7 }} {% raw %} ${7*7}" in pages[6].text
    for item in client.get("/api/findings", params={"channel": "shop", "limit": 50}).json()[
            "items"]:
        page = client.get(f"/findings/{item['fingerprint']}")
        assert page.status_code == 200
        assert "<script>alert" not in page.text and "<b>bold</b>" not in page.text


def test_api_keeps_hostile_text_as_data(client):
    items = client.get("/api/findings", params={"channel": "shop", "check": "title"}).json()
    shown = {i["actual"] for i in items["items"]}
    assert set(HOSTILE) <= shown

def test_pages_allow_no_inline_script(client):
    resp = client.get("/")
    csp = resp.headers["Content-Security-Policy"]
    script_src = next(p for p in csp.split(";") if p.strip().startswith("script-src"))
    assert "'unsafe-inline'" not in script_src
    assert " onclick=" not in resp.text and "<script>" not in resp.text
    js = client.get("/static/ui.js")
    assert js.status_code == 200 and "javascript" in js.headers["content-type"]
    assert "querySelectorAll" in js.text

def test_product_page_of_an_image_not_fetched_says_so_not_differs(client):
    html = client.get("/products/TS-05").text
    assert "differs" not in html
    assert "not checked" in html


def test_product_page_of_an_orphan_listing(client):
    from urllib.parse import quote

    resp = client.get("/products/" + quote(ORPHAN, safe=""))
    assert resp.status_code == 200
    assert "&lt;script&gt;alert(&#34;sku&#34;)&lt;/script&gt;" in resp.text
    assert "matches no master record" in resp.text
    assert "<script>alert" not in resp.text

def test_api_findings_unknown_channel_is_an_error_not_an_empty_list(client):
    ok = client.get("/api/findings", params={"channel": "shop"})
    assert ok.status_code == 200 and ok.json()["items"]
    bad = client.get("/api/findings", params={"channel": "shpo"})
    assert bad.status_code == 400
    assert "unknown channel 'shpo'" in bad.json()["detail"] and "shop" in bad.json()["detail"]

    bad = client.get("/api/link-suggestions", params={"channel": "shpo"})
    assert bad.status_code == 400 and "unknown channel 'shpo'" in bad.json()["detail"]


@pytest.mark.parametrize("name, body", [
    ("empty.xml", ""),                                                  # a 0-byte feed
    ("empty.xml", '<?xml version="1.0"?><rss version="2.0"><channel></channel></rss>'),
    ("empty.csv", ""),                                                  # a 0-byte export
    ("empty.csv", "sku,title,price\n"),                                 # a header only
])
def test_an_empty_source_on_its_first_read_concludes_nothing_missing(tmp_path, name, body):
    (tmp_path / "master.csv").write_text("sku,title,price,currency\nA,Tee,10.00,EUR\n"
                                         "B,Cap,5.00,EUR\n")
    (tmp_path / name).write_text(body)
    ctype = "google_merchant" if name.endswith(".xml") else "tabular"
    cfg = tmp_path / "config.toml"
    cfg.write_text(f'[store]\npath = "a.db"\n[master]\ntype = "csv"\nsource = "master.csv"\n'
                   f'[[channels]]\nname = "ch"\ntype = "{ctype}"\nsource = "{name}"\n'
                   f'currency = "EUR"\n')
    r = CliRunner().invoke(main, ["run", "-c", str(cfg)], catch_exceptions=False)
    assert r.exit_code == 2, r.output
    out = CliRunner().invoke(main, ["findings", "-c", str(cfg), "--format", "json"])
    assert out.exit_code == 0 and out.output.strip() == "[]"
    runs = CliRunner().invoke(main, ["runs", "-c", str(cfg)])
    assert "ch: failed" in runs.output
    assert f"source {name} yielded no listings on its first read" in runs.output
    # A channel that is empty for real says so, and then its SKUs are missing.
    cfg.write_text(cfg.read_text() + "allow_empty = true\n")
    r = CliRunner().invoke(main, ["run", "-c", str(cfg)], catch_exceptions=False)
    assert r.exit_code == 1, r.output
    out = CliRunner().invoke(main, ["findings", "-c", str(cfg), "--format", "json"])
    assert {f["sku"] for f in json.loads(out.output)} == {"A", "B"}


def _commands(group, path=()):
    import click

    for name, cmd in sorted(group.commands.items()):
        yield (*path, name), cmd
        if isinstance(cmd, click.Group):
            yield from _commands(cmd, (*path, name))


def test_every_command_has_an_example_and_every_format_option_takes_csv():
    """README: every command has --help with an example; every command that prints
    records takes --format table|json|csv."""
    import auditor.alerts.commands  # noqa: F401  (registers alerts, silence)

    no_example, no_csv = [], []
    for path, cmd in _commands(main):
        r = CliRunner().invoke(main, [*path, "--help"])
        assert r.exit_code == 0, (path, r.output)
        if "Example" not in r.output:
            no_example.append(" ".join(path))
        fmt = next((p for p in cmd.params if p.name == "fmt"), None)
        choices = getattr(getattr(fmt, "type", None), "choices", ())
        if "table" in choices and "csv" not in choices:  # (findings show: one record, text)
            no_csv.append(" ".join(path))
    assert no_example == [] and no_csv == []


def test_silence_list_and_outbox_print_csv(tmp_path):
    import re

    cfg = tmp_path / "config.toml"
    (tmp_path / "m.csv").write_text("sku,title\nA,Tee\n")
    cfg.write_text('[store]\npath = "a.db"\n[master]\ntype = "csv"\nsource = "m.csv"\n'
                   '[[channels]]\nname = "amazon"\ntype = "tabular"\nsource = "m.csv"\n')
    assert CliRunner().invoke(main, ["run", "-c", str(cfg), "--master-only"]).exit_code == 0
    r = CliRunner().invoke(main, ["silence", "add", "-c", str(cfg), "--channel", "amazon",
                                  "--expires", "3d", "--comment", 'say "hi", =1+1'])
    assert r.exit_code == 0, r.output
    added_line = r.output
    r = CliRunner().invoke(main, ["silence", "list", "-c", str(cfg), "--format", "csv"])
    assert r.exit_code == 0, r.output
    import csv

    head, row = list(csv.reader(r.output.lstrip("\ufeff").splitlines()))[:2]
    assert head == ["id", "matchers", "starts_at", "ends_at", "created_by", "comment"]
    assert row[1] == "channel=amazon" and row[5] == 'say "hi", =1+1'
    assert "T" in row[3] and row[3].endswith("+00:00")  # CSV keeps ISO 8601 for programs
    # the table for people says the time as the `silence add` line did, to the second
    added = re.search(r"until (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC)", added_line).group(1)
    table = CliRunner().invoke(main, ["silence", "list", "-c", str(cfg)], env={"COLUMNS": "150"})
    assert table.exit_code == 0 and added in table.output, (added, table.output)
    assert row[3] not in table.output and "+00:00" not in table.output
    r = CliRunner().invoke(main, ["alerts", "outbox", "-c", str(cfg), "--format", "csv"])
    assert r.exit_code == 0
    assert next(csv.reader([r.output.lstrip("\ufeff").splitlines()[0]]))[:3] == [
        "id", "receiver", "status"]


def test_config_check_names_every_unset_environment_variable(tmp_path, monkeypatch):
    """Not only a source's headers: alert receivers, [smtp], ... (README: `config check`
    makes sure the environment variables are set)."""
    for name in ("NU_HOOK_SECRET", "NU_SMTP_PW", "NU_CHAT_A", "NU_FEED_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "m.csv").write_text("sku,title\nA,Tee\n")
    (tmp_path / "config.toml").write_text('''
[store]
path = "a.db"
[master]
type = "csv"
source = "m.csv"
[smtp]
host = "127.0.0.1"
password = { env = "NU_SMTP_PW" }
[[channels]]
name = "google"
type = "google_merchant"
source = "https://feeds.example/g.xml"
headers = { Authorization = { env = "NU_FEED_TOKEN" } }
[[alerts.receivers]]
name = "hook"
type = "webhook"
url = "http://127.0.0.1:9/hook"
secret = { env = "NU_HOOK_SECRET" }
[[alerts.receivers]]
name = "chat"
type = "apprise"
urls = [{ env = "NU_CHAT_A" }]
''')
    r = CliRunner().invoke(main, ["config", "check", "-c", str(tmp_path / "config.toml")])
    assert r.exit_code == 2
    out = " ".join(r.output.split())
    for where, name in [("[[channels]] 'google'", "NU_FEED_TOKEN"),
                        ("[[alerts.receivers]] 'hook'.secret", "NU_HOOK_SECRET"),
                        ("[[alerts.receivers]] 'chat'.urls[0]", "NU_CHAT_A"),
                        ("[smtp].password", "NU_SMTP_PW")]:
        assert f"{where}: environment variable {name} is not set" in out, out
    assert out.count("NU_FEED_TOKEN is not set") == 1
    monkeypatch.setenv("NU_HOOK_SECRET", "x" * 8)
    monkeypatch.setenv("NU_SMTP_PW", "y" * 8)
    monkeypatch.setenv("NU_CHAT_A", "json://127.0.0.1:9/")
    r = CliRunner().invoke(main, ["config", "check", "-c", str(tmp_path / "config.toml")])
    out = " ".join(r.output.split())
    assert "NU_HOOK_SECRET" not in out and "NU_SMTP_PW" not in out and "NU_FEED_TOKEN" in out


def test_init_does_not_call_master_fields_attributes(tmp_path):
    """group_id, sale windows, price_<CUR>, image_<n> and <field>@<channel> are master
    fields, read by name: `auditor init` must not say they are kept as attributes."""
    (tmp_path / "pim.csv").write_text(
        "sku,title,price,currency,group_id,sale_price,sale_start,sale_end,price_usd,"
        "image_1,image_2,title@amazon,material\n"
        "A,Tee,10.00,EUR,G1,8.00,2026-12-01,2026-12-08,11.00,https://x/a.png,,Tee A,cotton\n")
    r = CliRunner().invoke(main, ["init", str(tmp_path / "pim.csv"), "-o",
                                  str(tmp_path / "config.toml")])
    assert r.exit_code == 0, r.output
    line = next(x for x in r.output.splitlines() if "kept as attributes" in x)
    assert line.split("kept as attributes: ")[1].strip() == "material"


def test_product_page_does_not_claim_a_match_the_image_check_never_made(tmp_path):
    """A channel whose image check is off shows its images, but never 'matches the master'."""
    from auditor.web import views

    (tmp_path / "m.csv").write_text("sku,title,price,currency,image_1\n"
                                    "A,Tee,10.00,EUR,https://cdn.example/a.png\n")
    (tmp_path / "c.csv").write_text("sku,title,price,image\nA,Tee,10.00,https://cdn.example/b.png\n")
    (tmp_path / "config.toml").write_text(
        '[store]\npath = "a.db"\n[master]\ntype = "csv"\nsource = "m.csv"\n'
        '[[channels]]\nname = "pos"\ntype = "tabular"\nsource = "c.csv"\ncurrency = "EUR"\n'
        '[channels.checks.image]\nenabled = false\n')
    r = CliRunner().invoke(main, ["run", "-c", str(tmp_path / "config.toml")],
                           catch_exceptions=False)
    assert r.exit_code == 0, r.output
    store = open_store(load_config(tmp_path / "config.toml").store_url, create=False)
    try:
        (img,) = views.product(store, "A", ["pos"])["columns"][0]["images"]
        assert img["matched"] is None and "image check is off" in img["note"]
        (img,) = views.product(store, "A")["columns"][0]["images"]
        assert img["matched"] is True  # (as the store has no image finding, if it were on)
    finally:
        store.close()


def test_ui_shows_the_state_people_see_not_the_stored_one(tmp_path):
    """An acknowledged finding is stored 'open' with ack_at set; the inbox filter already
    called it acknowledged but the pill said 'open' (and not_evaluated ones 'open' too)."""
    import re

    d = _world(tmp_path)
    cfg = load_config(d / "config.toml")
    with contextlib.closing(open_store(cfg.store_url, create=False)) as store:
        title = next(f for f in store.findings(channel="shop", check="title"))
        store.ack_finding(title.fingerprint, "ana", "on it")
        image = next(f for f in store.findings(channel="shop", check="image")
                     if f.outcome == "not_evaluated")
    with api_client(cfg) as c:
        def pill(html: str) -> str:
            return re.search(r'<span class="pill state-([a-z_]+)">\1</span>', html).group(1)

        assert pill(c.get(f"/findings/{title.fingerprint}").text) == "acknowledged"
        assert pill(c.get(f"/findings/{image.fingerprint}").text) == "not_evaluated"
        row = re.search(rf'<tr data-fp="{title.fingerprint}">.*?</tr>',
                        c.get("/?state=acknowledged").text, re.S).group(0)
        assert pill(row) == "acknowledged"


def test_serve_says_where_it_listens_without_v(tmp_path):
    """`auditor serve` printed nothing at all unless -v: a new user saw a silent terminal."""
    import os
    import re
    import signal
    import subprocess
    import sys
    import time

    import httpx

    (tmp_path / "m.csv").write_text("sku,title\nA,Tee\n")
    cfg = tmp_path / "config.toml"
    cfg.write_text('[store]\npath = "a.db"\n[master]\ntype = "csv"\nsource = "m.csv"\n')
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    p = subprocess.Popen([sys.executable, "-m", "auditor", "serve", "-c", str(cfg), "--port",
                          "0", "--no-schedule"], stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + 60
        line = ""
        while time.monotonic() < deadline and "auditor serve on" not in line:
            line = p.stderr.readline() if p.stderr else ""
            if not line and p.poll() is not None:
                break
        m = re.search(r"auditor serve on (http://127\.0\.0\.1:\d+): web UI \1/, metrics "
                      r"\1/metrics, API \1/docs", line)
        assert m, line
        for _ in range(100):
            try:
                if httpx.get(m.group(1) + "/healthz").status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        assert httpx.get(m.group(1) + "/").status_code == 200
    finally:
        p.send_signal(signal.SIGTERM)
        assert p.wait(30) == 0


def test_links_table_shows_empty_candidates_and_evidence_blank(world):
    r = CliRunner().invoke(main, ["links", "-c", str(world / "config.toml")],
                           env={"COLUMNS": "250"})
    assert r.exit_code == 0, r.output
    rows = [x for x in r.output.splitlines() if "│ shop" in x]
    assert rows and not any("[]" in x or "{}" in x for x in rows)


def test_links_channel_repeats_like_findings_channel(world):
    cfg = str(world / "config.toml")
    one = CliRunner().invoke(main, ["links", "-c", cfg, "--channel", "shop", "--format", "json"])
    two = CliRunner().invoke(main, ["links", "-c", cfg, "--channel", "shop", "--channel", "shop",
                                    "--format", "json"])
    assert one.exit_code == two.exit_code == 0
    assert json.loads(one.output) == json.loads(two.output) and json.loads(one.output)
    bad = CliRunner().invoke(main, ["links", "-c", cfg, "--channel", "shop", "--channel", "nope"])
    assert bad.exit_code == 2 and "unknown channel 'nope'" in bad.output


def test_product_page_shows_the_masters_stock_state_from_its_quantity(world):
    from auditor.web import views

    store = open_store(load_config(world / "config.toml").store_url, create=False)
    try:
        ctx = views.product(store, "TS-03")
    finally:
        store.close()
    assert ctx["master_fields"]["quantity"] == 5
    assert ctx["master_fields"]["availability"] == "in_stock (from quantity)"


def test_pages_drop_bidi_overrides_and_control_characters(tmp_path):
    """A title with U+202E (shown reversed) or control characters is shown without them in
    the UI and the reports; the terminal drops them too."""
    from auditor.reports import run_report, weekly
    from auditor.terminal import safe, visible
    from auditor.web.routes import _env

    title = "Tee \u202egnp.exe\u202c \x1b]8;;http://evil\x07x\x1b]8;;\x07 <b>"
    html = _env().from_string("<p>{{ t }}</p>").render(t=title)
    assert html == "<p>Tee gnp.exe ]8;;http://evilx]8;; &lt;b&gt;</p>"
    assert visible(title) == "Tee gnp.exe ]8;;http://evilx]8;; <b>"
    assert weekly._env().finalize is visible
    # the run report of a channel showing that title
    (tmp_path / "m.csv").write_text("sku,title,price,currency\nA,Tee,10.00,EUR\n")
    (tmp_path / "c.csv").write_text(f"sku,title,price\nA,{title},10.00\n", encoding="utf-8")
    (tmp_path / "config.toml").write_text(
        '[store]\npath = "a.db"\n[master]\ntype = "csv"\nsource = "m.csv"\n'
        '[[channels]]\nname = "pos"\ntype = "tabular"\nsource = "c.csv"\ncurrency = "EUR"\n')
    r = CliRunner().invoke(main, ["run", "-c", str(tmp_path / "config.toml")])
    assert r.exit_code == 1, r.output
    store = open_store(load_config(tmp_path / "config.toml").store_url, create=False)
    try:
        page = run_report.write_report(store, tmp_path / "r.html").read_text()
    finally:
        store.close()
    assert "gnp.exe" in page and "\u202e" not in page and "\x1b" not in page
    assert "\u202e" not in safe(title) and "\x1b" not in safe(title)
    from markupsafe import Markup

    assert visible(Markup("<svg>\u202e</svg>")) == Markup("<svg>\u202e</svg>")  # kept as is


def test_api_sku_of_an_orphan_listing(client):
    from urllib.parse import quote

    r = client.get("/api/skus/" + quote(ORPHAN, safe=""))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["master"] is None and [c["key"] for c in body["channels"]] == [ORPHAN]
    assert body["channels"][0]["findings"][0]["check"] == "presence"
    assert client.get("/api/skus/NOPE-1").status_code == 404


def test_an_sku_with_a_slash_has_its_page_and_api(tmp_path):
    """`/api/skus/{sku}` did not route an SKU holding "/" (`TS/RED/M`): 404 Not Found."""
    (tmp_path / "m.csv").write_text("sku,title,price,currency\nTS/RED/M,Tee,10.00,EUR\n")
    (tmp_path / "c.csv").write_text("sku,title,price\nTS/RED/M,Tee,12.00\n")
    (tmp_path / "config.toml").write_text(
        '[store]\npath = "a.db"\n[master]\ntype = "csv"\nsource = "m.csv"\n'
        '[[channels]]\nname = "pos"\ntype = "tabular"\nsource = "c.csv"\ncurrency = "EUR"\n')
    assert CliRunner().invoke(main, ["run", "-c", str(tmp_path / "config.toml")]).exit_code == 1
    cfg = load_config(tmp_path / "config.toml")

    with api_client(cfg) as c:
        r = c.get("/api/skus/TS%2FRED%2FM")
        assert r.status_code == 200, r.text
        assert r.json()["sku"] == "TS/RED/M" and r.json()["channels"][0]["findings"]
        assert c.get("/api/skus/TS/RED/M").json()["sku"] == "TS/RED/M"
        assert c.get("/products/TS%2FRED%2FM").status_code == 200


def test_api_link_decisions_reach_listing_keys_holding_slashes(tmp_path, monkeypatch):
    """A site listing's key is its page URL: POST /api/links/site/<URL>/confirm answered the
    router's 404 "Not Found" for every one of them."""
    monkeypatch.setenv("AUDITOR_API_TOKEN", "t0ken-for-tests")
    (tmp_path / "m.csv").write_text("sku,title,price,currency\nTS/RED/M,Tee,10.00,EUR\n")
    (tmp_path / "c.csv").write_text("sku,title,price\nTS/RED/M,Tee,12.00\n")
    (tmp_path / "config.toml").write_text(
        '[store]\npath = "a.db"\n[master]\ntype = "csv"\nsource = "m.csv"\n'
        '[[channels]]\nname = "pos"\ntype = "tabular"\nsource = "c.csv"\ncurrency = "EUR"\n')
    assert CliRunner().invoke(main, ["run", "-c", str(tmp_path / "config.toml")]).exit_code == 1
    cfg = load_config(tmp_path / "config.toml")

    auth = {"Authorization": "Bearer t0ken-for-tests"}
    with api_client(cfg, ui=False) as c:
        r = c.post("/api/links/pos/TS%2FRED%2FM/confirm", json={"sku": "TS/RED/M"}, headers=auth)
        assert r.status_code == 200, r.text
        from urllib.parse import quote

        key = quote("https://shop.example/p/1#A", safe="")
        r = c.post(f"/api/links/pos/{key}/reject", json={"sku": "TS/RED/M"}, headers=auth)
        assert r.status_code == 404 and "no listing 'https://shop.example/p/1" in r.text


def test_links_table_keeps_a_long_listing_key_whole_in_a_terminal(tmp_path):
    """`auditor links` in a 100-column terminal: a long key (a page URL on a `site`
    channel) folds over lines instead of squeezing channel, state and SKU to nothing,
    and is never cut (it is what `links confirm|reject` take)."""
    key = "https://shop.example/products/granite-organic-cotton-polo-shirt-42#GX0000025-PUR-L"
    (tmp_path / "master.csv").write_text("sku,title,price,currency\nTS-1,Tee,9.99,EUR\n")
    (tmp_path / "shop.csv").write_text(f"sku,title,price\nTS-1,Tee,9.99\n{key},Polo,5.00\n")
    cfg = tmp_path / "config.toml"
    cfg.write_text('[store]\npath = "a.db"\n[master]\ntype = "csv"\nsource = "master.csv"\n'
                   '[[channels]]\nname = "shop"\ntype = "tabular"\nsource = "shop.csv"\n'
                   'currency = "EUR"\n')
    assert CliRunner().invoke(main, ["run", "-c", str(cfg)]).exit_code == 1
    r = CliRunner().invoke(main, ["links", "-c", str(cfg)], env={"COLUMNS": "100"})
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    assert all(len(x) <= 100 for x in lines) and "…" not in r.output, r.output
    body = [x.split("│") for x in lines if x.startswith("│")]
    assert [c.strip() for c in body[0][1:5]] == ["shop", "TS-1", "linked", "TS-1"], r.output
    rest = body[1:]
    assert rest[0][3].strip() == "unlinked", r.output
    assert "".join(c[2].strip() for c in rest) == key, r.output
    assert "candidates" not in lines[1] and "evidence" not in lines[1]  # blank in every row


def test_reports_page_without_a_report_says_where_and_when_one_comes(client):
    import re

    page = client.get("/reports", headers={"Accept": "text/html"})
    assert page.status_code == 200
    text = re.sub(r"<[^>]+>", "", page.text)
    assert "No weekly report yet in [report] out_dir (weekly-reports, beside the config file)" \
        in text, text
    assert "on [report] schedule (0 7 * * 1)" in text and "auditor report weekly writes one now" \
        in text
    assert "<li" not in page.text.split("<h1>Weekly reports</h1>")[1]  # a sentence, not a list


def test_findings_show_says_its_times_in_utc_to_the_second(world):
    import re

    cfg = str(world / "config.toml")
    rows = json.loads(CliRunner().invoke(main, ["findings", "-c", cfg, "--open", "--format",
                                                "json"]).output)
    r = CliRunner().invoke(main, ["findings", "show", rows[0]["fingerprint"], "-c", cfg])
    assert r.exit_code == 0, r.output
    assert re.search(r"^first_seen_at: \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC$", r.output, re.M)
    assert re.search(r"^  \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC opened run 1$", r.output, re.M)
    assert "+00:00" not in r.output, r.output


def test_empty_inbox_says_no_audit_ran_or_the_latest_run_failed(tmp_path):
    """A first `auditor serve` showed "0 match ... No finding matches these filters" over a
    store no audit had run on, and over one whose only run had failed."""
    cfg_path = tmp_path / "config.toml"
    cfg_path.write_text('[store]\npath = "a.db"\n[master]\ntype = "csv"\nsource = "m.csv"\n')
    cfg = load_config(cfg_path)
    open_store(cfg.store_url).close()
    with api_client(cfg) as c:
        page = c.get("/", headers={"Accept": "text/html"}).text
    assert "No audit has run on this store yet" in page and "No finding matches" not in page
    r = CliRunner().invoke(main, ["run", "-c", str(cfg_path)])  # m.csv does not exist
    assert r.exit_code == 2, r.output
    with api_client(cfg) as c:
        page = c.get("/", headers={"Accept": "text/html"}).text
    assert "No finding matches these filters. The latest run, 1, is failed" in page, page
    assert '<a href="/runs">Runs</a> for why' in page


def test_finding_page_history_says_who_acknowledged_and_why(tmp_path):
    """The finding page's history read "acknowledged | open": who did it and the note given
    (`findings ack --note`, the API's "note") were stored but shown nowhere in the UI."""
    d = _world(tmp_path)
    cfg = str(d / "config.toml")
    rows = json.loads(CliRunner().invoke(main, ["findings", "-c", cfg, "--open", "--format",
                                                "json"]).output)
    f = next(r for r in rows if r["sku"])
    r = CliRunner().invoke(main, ["findings", "ack", f["fingerprint"], "-c", cfg, "--by", "ana",
                                  "--note", "supplier fixes the feed tonight"])
    assert r.exit_code == 0, r.output
    with api_client(load_config(d / "config.toml")) as c:
        page = c.get(f"/findings/{f['fingerprint']}", headers={"Accept": "text/html"}).text
        product = c.get(f"/products/{f['sku']}", headers={"Accept": "text/html"}).text
    history = page.split('id="history"')[1]
    assert "acknowledged by ana" in history and "supplier fixes the feed tonight" in history
    assert "opened" in history and "run 1" in history
    assert "acknowledged</a> by ana" in product.split('id="history"')[1]


def test_a_receiver_missing_a_key_names_its_type_in_plain_words(tmp_path):
    """"missing (a email receiver needs it)": the article came from the type's name."""
    cfg = tmp_path / "config.toml"
    cfg.write_text('[store]\npath = "a.db"\n[master]\ntype = "csv"\nsource = "m.csv"\n'
                   '[[alerts.receivers]]\nname = "mail"\ntype = "email"\nhost = "smtp.example"\n'
                   'to = ["ops@example.com"]\n')
    r = CliRunner().invoke(main, ["config", "check", "--offline", "-c", str(cfg)])
    assert r.exit_code == 2
    assert """[[alerts.receivers]] 'mail'.from: missing (type = "email" needs it)""" in r.output


def test_ui_login_takes_a_name_that_the_history_shows(tmp_path, monkeypatch):
    """The UI recorded every action as by "ops": with one shared password, nobody could
    tell who acknowledged what. The login form asks for a name (optional)."""
    monkeypatch.setenv("AUDITOR_UI_PASSWORD", "pw-for-the-ui")
    d = _world(tmp_path)
    cfg = load_config(d / "config.toml")
    rows = json.loads(CliRunner().invoke(main, ["findings", "-c", str(d / "config.toml"),
                                                "--open", "--format", "json"]).output)
    one, two = rows[0]["fingerprint"], rows[1]["fingerprint"]

    def act(c, fp, name):
        token = c.get("/login").text.split('name="csrf" value="')[1].split('"')[0]
        r = c.post("/login", data={"password": "pw-for-the-ui", "csrf": token, "next": "/",
                                   "name": name}, follow_redirects=False)
        assert r.status_code == 303
        inbox = c.get("/", headers={"Accept": "text/html"}).text
        token = inbox.split('name="csrf" value="')[1].split('"')[0]
        r = c.post("/actions/findings", data={"action": "ack", "fp": fp, "csrf": token},
                   follow_redirects=False)
        assert r.status_code == 303
        return inbox, c.get(f"/findings/{fp}", headers={"Accept": "text/html"}).text

    with api_client(cfg) as c:
        inbox, page = act(c, one, "  Ana\u202e  Lopez ")
    assert 'id="who"' in inbox and "Ana Lopez</span>" in inbox
    assert "acknowledged by Ana Lopez" in page.split('id="history"')[1]
    with api_client(cfg) as c:
        _, page = act(c, two, "")
    assert "acknowledged by ops" in page.split('id="history"')[1]
