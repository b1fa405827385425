"""The web UI in a real browser: Playwright drives Debian's headless Chromium against
the UI served by uvicorn on loopback, over the four-week store of tests/store_world.py.

Screenshots go to $AUDITOR_ARTIFACTS (default: the test's temporary folder).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import threading
import time
from pathlib import Path

import httpx
import pytest

from auditor.config import load_config
from auditor.storage import open_store
from tests import store_world

PASSWORD = "correct horse battery staple"
pytestmark = pytest.mark.skipif(os.environ.get("AUDITOR_SKIP_BROWSER") == "1",
                                reason="AUDITOR_SKIP_BROWSER=1: no Chromium on this machine")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def _serving(app):
    """``app`` served by uvicorn on a free loopback port; yields its base URL."""
    import uvicorn

    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    t = threading.Thread(target=server.run, daemon=True)
    t.start()
    for _ in range(200):
        if server.started:
            break
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        t.join(10)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def ui(tmp_path_factory, request):
    """(base URL, world folder) of the UI serving a fresh copy of the four-week store, in
    SQLite or in PostgreSQL (tests/pg_server.py)."""
    from fastapi import FastAPI

    from auditor.web.routes import build_ui_router

    url = request.getfixturevalue("pg_server").new_database() \
        if request.param == "postgresql" else None
    d = store_world.build(tmp_path_factory.mktemp("ui"), store_url=url)
    cfg = load_config(d / "config.toml")

    @contextlib.contextmanager
    def opener():
        store = open_store(cfg.store_url, create=False)
        try:
            yield store
        finally:
            store.close()

    app = FastAPI()
    app.include_router(build_ui_router(lambda: cfg, opener))
    old = os.environ.get("AUDITOR_UI_PASSWORD")
    os.environ["AUDITOR_UI_PASSWORD"] = PASSWORD
    try:
        with _serving(app) as base:
            yield base, d
    finally:
        if old is None:
            os.environ.pop("AUDITOR_UI_PASSWORD", None)
        else:
            os.environ["AUDITOR_UI_PASSWORD"] = old


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    assert exe, "chromium is not installed (scripts/test.sh installs it)"
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=exe, headless=True, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync"])
        yield b
        b.close()


@pytest.fixture
def page(browser):
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    pg = ctx.new_page()
    yield pg
    ctx.close()


def _shot(page, name: str) -> Path:
    folder = Path(os.environ.get("AUDITOR_ARTIFACTS") or "/tmp/auditor-artifacts")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"ui-{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def _login(page, base: str) -> None:
    page.goto(base + "/login")
    page.fill("#password", PASSWORD)
    page.click("#submit")
    page.wait_for_url(base + "/")
    assert page.locator("#logout").count() == 1


def test_inbox_filters(page, ui):
    base, _ = ui
    page.goto(base + "/")
    # Open at the end of the world: google A-5's title (the hostile one).
    rows = page.locator("#findings tr[data-fp]")
    assert rows.count() == 1
    page.select_option("select[name=state]", ["open", "resolved"])
    with page.expect_navigation():  # (count() does not wait for the new page)
        page.click("#apply")
    assert page.locator("#findings tr[data-fp]").count() == 6
    page.select_option("select[name=channel]", ["pos"])
    with page.expect_navigation():  # (count() does not wait for the new page)
        page.click("#apply")
    cells = page.locator("#findings tr[data-fp] td:nth-child(2)")
    assert cells.count() == 1 and cells.first.inner_text() == "pos"
    page.fill("input[name=q]", "A-3")
    page.select_option("select[name=channel]", [])
    with page.expect_navigation():  # (count() does not wait for the new page)
        page.click("#apply")
    assert page.locator("#findings tr[data-fp]").count() == 1
    _shot(page, "inbox")


def test_hostile_title_stays_text(page, ui):
    base, _ = ui
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.goto(base + "/products/A-5")
    cell = page.locator('td[data-field=title][data-channel=google]')
    assert "<script>" in cell.inner_text()
    assert page.locator("td[data-field=title] script").count() == 0
    page.goto(base + "/")
    assert dialogs == []
    html = httpx.get(base + "/products/A-5").text
    assert '<script>alert("x")</script>' not in html and "&lt;script&gt;" in html


def test_product_highlights_each_channels_differing_value(page, ui):
    base, _ = ui
    page.goto(base + "/products/A-5")
    marks = page.locator('td[data-field=title][data-channel=google] mark')
    assert marks.count() >= 1
    # POS shows the master's title: nothing marked there.
    assert page.locator('td[data-field=title][data-channel=pos] mark').count() == 0
    assert page.locator('td[data-field=price][data-channel=pos]').inner_text() == "14.00 EUR"
    _shot(page, "product")


def test_login_ack_and_logout(page, ui):
    base, _ = ui
    page.goto(base + "/")
    assert page.locator("#ack").count() == 0  # read-only until logged in
    page.goto(base + "/login")
    page.fill("#password", "wrong")
    page.click("#submit")
    assert "Wrong password" in page.locator("#error").inner_text()
    _login(page, base)
    fp = page.locator("#findings tr[data-fp]").first.get_attribute("data-fp")
    page.check(f'input[name=fp][value="{fp}"]')
    with page.expect_navigation() as nav:
        page.click("#ack")
    assert nav.value is None or nav.value.status == 200
    assert page.locator("#findings").count() == 1  # back on the inbox, not an error page
    # Acknowledged: it leaves the list of open findings.
    assert page.locator(f'#findings tr[data-fp="{fp}"]').count() == 0
    page.goto(base + "/?state=acknowledged")
    assert page.locator(f'#findings tr[data-fp="{fp}"]').count() == 1
    _shot(page, "acknowledged")
    page.click("#logout")
    page.wait_for_url(base + "/")
    assert page.locator("#login").count() == 1


def test_select_all_works_under_a_csp_without_inline_script(page, ui):
    """The "all on this page" box is driven by /static/ui.js: the pages' CSP allows no
    inline script, and the browser reports no violation."""
    base, _ = ui
    violations: list[str] = []
    page.on("console", lambda m: violations.append(m.text)
            if "Content Security Policy" in m.text else None)
    _login(page, base)
    page.goto(base + "/?state=open&state=acknowledged&state=resolved")
    boxes = page.locator("input[name=fp]")
    assert boxes.count() > 1
    page.click("#all")
    assert all(boxes.nth(i).is_checked() for i in range(boxes.count()))
    page.click("#all")
    assert not any(boxes.nth(i).is_checked() for i in range(boxes.count()))
    assert violations == []


def test_write_actions_need_login_and_csrf(ui):
    base, _ = ui
    with httpx.Client(base_url=base) as c:
        r = c.post("/actions/findings", data={"action": "ack", "fp": "x", "csrf": "x"})
        assert r.status_code == 401
        c.get("/login")
        token = c.get("/login").text.split('name="csrf" value="')[1].split('"')[0]
        r = c.post("/login", data={"password": PASSWORD, "csrf": token, "next": "/"})
        assert r.status_code == 303
        r = c.post("/actions/findings", data={"action": "ack", "fp": "x", "csrf": "forged"})
        assert r.status_code == 403
        r = c.post("/login", data={"password": PASSWORD, "csrf": "nope"})
        assert r.status_code == 403
        # No open redirect after login, no path escaping the report archive.
        assert c.get("/reports/2026-W47/..%2f..%2fconfig.toml").status_code == 404
        assert c.get("/reports/../config.toml").status_code == 404


def test_runs_and_reports_pages(page, ui):
    base, d = ui
    from click.testing import CliRunner

    from auditor.cli import main

    r = CliRunner().invoke(main, ["report", "weekly", "-c", str(d / "config.toml"), "--week",
                                  "2026-W46", "--now", "2026-11-29T12:00:00+00:00"])
    assert r.exit_code == 0, r.output
    page.goto(base + "/runs")
    assert page.locator("#runs tr").count() == 5  # header + 4 runs
    assert "complete" in page.locator("#runs").inner_text()
    page.goto(base + "/reports")
    with page.expect_navigation():
        page.click("text=2026-W46")
    assert "Product consistency, week 2026-W46" in page.content()
    _shot(page, "report")


def test_phone_width(browser, ui):
    base, _ = ui
    ctx = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
    pg = ctx.new_page()
    pg.goto(base + "/products/A-5")
    assert pg.locator("#product").count() == 1
    _shot(pg, "phone-product")
    ctx.close()


def test_serve_mounts_the_ui_and_schedules_the_weekly_report(tmp_path):
    from fastapi.testclient import TestClient

    from auditor.service.app import Service, create_app

    d = store_world.build(tmp_path)
    cfg = load_config(d / "config.toml")
    svc = Service(d / "config.toml", cfg, schedule=True)
    with TestClient(create_app(svc)) as client:
        r = client.get("/")
        assert r.status_code == 200 and "Findings" in r.text
        assert client.get("/products/A-5").status_code == 200
        assert client.get("/api/runs").status_code == 200  # the JSON API beside it
        job = svc.scheduler._aps.get_job("task:weekly-report")
        assert job is not None and job.next_run_time.weekday() == 0  # Mondays, 07:00
        assert (job.next_run_time.hour, job.next_run_time.minute) == (7, 0)
    # The job itself writes the last complete week into the archive, in a child process
    # (with recipients and an SMTP host it also emails it: here no SMTP server listens).
    import dataclasses
    svc.cfg = dataclasses.replace(cfg, smtp={})
    assert svc.weekly_report() == 0
    assert list((d / "weekly-reports").glob("*/index.html"))


def test_confirm_a_suggested_link(browser, tmp_path):
    """The linker suggests K2 (title fits two hoodie sizes); a person confirms it in the
    UI; the next run keeps the confirmed link."""
    import contextlib as _cl

    from fastapi import FastAPI

    from auditor.runner import run_audit
    from auditor.web.routes import build_ui_router
    from tests.conftest import NOW
    from tests.test_link_states import make_world

    world = make_world(tmp_path)
    cfg = load_config(world / "config.toml")
    store = open_store(cfg.store_url)
    run_audit(cfg, store, now=NOW)
    store.close()

    @_cl.contextmanager
    def opener():
        s = open_store(cfg.store_url, create=False)
        try:
            yield s
        finally:
            s.close()

    app = FastAPI()
    app.include_router(build_ui_router(lambda: cfg, opener))
    os.environ["AUDITOR_UI_PASSWORD"] = PASSWORD
    try:
        with _serving(app) as base:
            ctx = browser.new_context()
            page = ctx.new_page()
            page.goto(base + "/links")
            assert page.locator("table.suggestion").count() == 1
            assert page.locator('table.suggestion[data-key="K2"]').count() == 1
            _login(page, base)
            page.goto(base + "/links")
            _shot(page, "links")
            sku = page.locator('input[name=sku]').get_attribute("value")
            assert sku in ("C", "D")
            with page.expect_navigation():
                page.click("button[value=confirm]")
            assert page.locator("table.suggestion").count() == 0  # no longer waiting
            ctx.close()
    finally:
        os.environ.pop("AUDITOR_UI_PASSWORD", None)
    store = open_store(cfg.store_url)
    try:
        assert [(d.listing_key, d.sku, d.decision) for d in store.decided_links()] == \
            [("K2", sku, "confirmed")]
        run_audit(cfg, store, now=NOW)
        link = {r.listing_key: r.to_dict() for r in store.link_states()}["K2"]
        assert (link["state"], link["sku"], link["method"]) == ("linked", sku, "confirmed")
    finally:
        store.close()
