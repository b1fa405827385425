"""The weekly consistency report, from a store that spans several weeks of real runs.

The fixture drives the real pipeline (`auditor run --now ...`) over four weeks with
a Google feed and a POS export whose drift is planted week by week, so every number
the report shows can be cross-checked against what was planted and against the store.
"""

from __future__ import annotations

import csv
import io
import os
import shutil
import subprocess
from datetime import datetime, timezone
from email import message_from_bytes, policy
from pathlib import Path

import pytest
from click.testing import CliRunner

from auditor.cli import main
from auditor.config import load_config
from auditor.reports import weekly
from tests import store_world
from tests.store_world import HOSTILE, PRICE, WEEKS  # noqa: F401

@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return store_world.build(tmp_path_factory.mktemp("weekly"))


def _store(d: Path):
    from auditor.cli import _store_for
    return _store_for(d / "config.toml")


def _ctx(d: Path, week: str, now: str = "2026-11-29T12:00:00+00:00"):
    store = _store(d)
    try:
        return weekly.build_weekly(store, load_config(d / "config.toml"), week,
                                   datetime.fromisoformat(now), "https://audit.example.com")
    finally:
        store.close()


def test_parse_week_and_grades():
    start, end = weekly.parse_week("2026-W47")
    assert start == datetime(2026, 11, 16, tzinfo=timezone.utc)
    assert (end - start).days == 7
    with pytest.raises(Exception, match="ISO week"):
        weekly.parse_week("2026-47")
    assert [weekly.grade(x) for x in (1.0, 0.9, 0.8999, 0.8, 0.75, 0.6, 0.59, None)] == \
        ["A", "A", "B", "B", "C", "D", "E", "-"]
    assert weekly.last_complete_week(datetime(2026, 11, 23, 7, tzinfo=timezone.utc)) == "2026-W47"


def test_headline_matches_what_was_planted(world):
    # Week 45: google shows 4 wrong prices (A-1..A-4): 6 of 10 consistent; the week
    # before (W44) only A-1: 9 of 10. POS lacks A-10: 9 live, all consistent.
    ctx = _ctx(world, "2026-W45")
    ch = {c.name: c for c in ctx["channels"]}
    g, p = ch["google"], ch["pos"]
    assert (g.live, g.consistent) == (10, 6)
    assert g.share == pytest.approx(0.6) and g.grade == "D"
    assert g.previous == pytest.approx(0.9) and g.change == pytest.approx(-0.3)
    assert (g.in_scope, g.ready) == (10, 6) and g.readiness == pytest.approx(0.6)
    assert (p.live, p.consistent) == (9, 9) and p.grade == "A"
    assert (p.in_scope, p.ready) == (10, 9)
    # Findings in W45: google opened prices; pos opened A-10 missing.
    assert (g.opened, g.resolved) == (3, 0)
    assert p.opened == 1 and p.resolved == 0


def test_numbers_cross_checked_against_the_store(world):
    ctx = _ctx(world, "2026-W46")
    store = _store(world)
    try:
        at = ctx["at"]
        open_now = [f for f in store.findings() if f.first_seen_at <= at
                    and (f.resolved_at is None or f.resolved_at > at)
                    and f.outcome in ("failed", "warn")]
        # Every open finding the report counts is one the store holds open then.
        assert {f.fingerprint for f in ctx["open_findings"]} == \
            {f.fingerprint for f in open_now}
        for c in ctx["channels"]:
            assert c.open_now == sum(1 for f in open_now if f.channel == c.name)
            mine = [f for f in open_now if f.channel == c.name and f.sku]
            missing = {f.sku for f in mine if f.check == "presence" and not f.listing_key}
            bad = {f.sku for f in mine if f.sku not in missing}
            live = {ls.sku for ls in store.listings(channel=c.name) if ls.sku} - missing
            assert c.live == len(live)
            assert c.consistent == len(live - bad)
        # Resolved in W46: google prices back to master.
        events = [e for fp in {f.fingerprint for f in store.findings()}
                  for e in store.finding_events(fp)
                  if "2026-11-09" <= e.at.isoformat()[:10] < "2026-11-16"]
        g = next(c for c in ctx["channels"] if c.name == "google")
        google_fps = {f.fingerprint for f in store.findings(channel="google")}
        assert g.resolved == sum(1 for e in events if e.event == "resolved"
                                 and e.fingerprint in google_fps)
        assert g.resolved == 3
        # A-1 opened in W44 (Oct 27) and resolved Nov 10: 14 days; 7 days.
        assert g.mttr_hours == pytest.approx((14 + 7 + 7) * 24 / 3)
    finally:
        store.close()


def test_trend_covers_twelve_weeks_and_matches_each_week(world):
    ctx = _ctx(world, "2026-W47")
    g = next(c for c in ctx["channels"] if c.name == "google")
    assert len(g.trend) == 12
    assert [label for label, _ in g.trend][-4:] == WEEKS
    shares = dict(g.trend)
    assert shares["2026-W44"] == pytest.approx(0.9)
    assert shares["2026-W45"] == pytest.approx(0.6)
    assert shares["2026-W46"] == pytest.approx(0.8)  # A-2 price, A-5 title
    assert shares["2026-W47"] == pytest.approx(0.9)  # A-5 title
    assert shares["2026-W43"] is None  # no run yet
    assert g.svg.startswith("<svg") and "polyline" in g.svg


def test_incidents_products_and_attachments(world):
    ctx = _ctx(world, "2026-W45")
    inc = [i for i in ctx["incidents"] if i["channel"] == "google"]
    assert inc and inc[0]["skus"] == 4 and inc[0]["field"] == "price"
    assert inc[0]["examples"] == ["A-1", "A-2", "A-3", "A-4"]
    # POS gives units sold: products rank by price x units. A-10 (missing from the
    # till, 19.00 x 10 units) comes before A-4 (13.00 x 4), A-3, A-2 and A-1.
    assert ctx["products_by_sales"]
    ranked = [(p["sku"], p["revenue"]) for p in ctx["products"]]
    assert ranked == [("A-10", pytest.approx(190.0)), ("A-4", pytest.approx(52.0)),
                      ("A-3", pytest.approx(36.0)), ("A-2", pytest.approx(22.0)),
                      ("A-1", pytest.approx(10.0))]
    files = dict((n, data) for n, data, _ in weekly.attachments(ctx))
    assert set(files) == {"open-findings-2026-W45.csv", "fix-google-2026-W45.tsv"}
    rows = list(csv.DictReader(io.StringIO(files["open-findings-2026-W45.csv"].decode("utf-8-sig"))))
    assert len(rows) == ctx["totals"]["open_now"] == 5


def test_google_supplemental_feed_reads_back_with_our_connector(world, tmp_path):
    ctx = _ctx(world, "2026-W45")
    data = dict((n, d) for n, d, _ in weekly.attachments(ctx))["fix-google-2026-W45.tsv"]
    (tmp_path / "fix.tsv").write_bytes(data)
    from tests.connector_helpers import read
    listings, ctx2 = read("google_merchant", str(tmp_path / "fix.tsv"))
    assert not ctx2.errors
    got = {ls.key: ls.price for ls in listings}
    assert set(got) == {"A-1", "A-2", "A-3", "A-4"}
    for sku, price in got.items():
        assert str(price.amount) == PRICE[sku] and price.currency == "EUR"


def test_hostile_channel_text_is_escaped(world):
    ctx = _ctx(world, "2026-W47")
    html = weekly.render_html(ctx)
    assert "<script>" not in html
    assert "&lt;script&gt;" in html or "script" not in html.lower().replace("<style", "")
    data = dict((n, d) for n, d, _ in weekly.attachments(ctx))
    text = data["open-findings-2026-W47.csv"].decode("utf-8-sig")
    for row in csv.reader(io.StringIO(text)):
        for cell in row:
            assert not cell.startswith(("=", "+", "-", "@")), cell


def test_cli_writes_the_archive(world, tmp_path):
    out = tmp_path / "archive"
    for week in ("2026-W46", "2026-W47"):
        r = CliRunner().invoke(main, ["report", "weekly", "-c", str(world / "config.toml"),
                                      "--week", week, "--out", str(out),
                                      "--now", "2026-11-29T12:00:00+00:00"],
                               catch_exceptions=False)
        assert r.exit_code == 0, r.output
        assert (out / week / "index.html").exists() and (out / week / "report.txt").exists()
    index = (out / "index.html").read_text()
    assert index.index("2026-W47") < index.index("2026-W46")
    html = (out / "2026-W47" / "index.html").read_text()
    assert "http" not in html.replace("https://audit.example.com", "").replace(
        "http://www.w3.org/2000/svg", "").replace("http://evil", "")  # no external assets
    r = CliRunner().invoke(main, ["report", "weekly", "-c", str(world / "config.toml"),
                                  "--week", "2027-W99"])
    assert r.exit_code == 2 and "2027-W99" in r.output


def test_email_received_by_a_real_smtp_server(world, tmp_path):
    from aiosmtpd.controller import Controller
    from aiosmtpd.handlers import Message

    got: list[bytes] = []

    class Keep(Message):
        def handle_message(self, message):
            got.append(message.as_bytes())

    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctl = Controller(Keep(), hostname="127.0.0.1", port=port)
    ctl.start()
    try:
        (tmp_path / "config.toml").write_text(
            (world / "config.toml").read_text().replace("port = 2525", f"port = {port}")
            .replace('path = "auditor.db"', f'path = "{world / "auditor.db"}"')
            .replace('source = "master.csv"', f'source = "{world / "master.csv"}"')
            .replace('source = "google.tsv"', f'source = "{world / "google.tsv"}"')
            .replace('source = "pos.csv"', f'source = "{world / "pos.csv"}"'))
        r = CliRunner().invoke(main, ["report", "weekly", "-c", str(tmp_path / "config.toml"),
                                      "--week", "2026-W45", "--out", str(tmp_path / "out"),
                                      "--email", "--now", "2026-11-29T12:00:00+00:00"],
                               catch_exceptions=False)
        assert r.exit_code == 0, r.output
    finally:
        ctl.stop()
    assert len(got) == 1
    msg = message_from_bytes(got[0], policy=policy.default)
    assert msg["To"] == "ops@example.com" and "2026-W45" in msg["Subject"]
    body_types = {p.get_content_type() for p in msg.walk() if not p.is_attachment()}
    assert {"text/plain", "text/html"} <= body_types
    names = {p.get_filename() for p in msg.iter_attachments()}
    assert names == {"open-findings-2026-W45.csv", "fix-google-2026-W45.tsv"}
    text = msg.get_body(("plain",)).get_content()
    assert "google: 60.0% consistent" in text


@pytest.mark.skipif(os.environ.get("AUDITOR_SKIP_BROWSER") == "1",
                    reason="AUDITOR_SKIP_BROWSER=1: no Chromium on this machine")
def test_screenshot_in_headless_chromium(world, tmp_path):
    out = tmp_path / "archive"
    r = CliRunner().invoke(main, ["report", "weekly", "-c", str(world / "config.toml"),
                                  "--week", "2026-W46", "--out", str(out),
                                  "--now", "2026-11-29T12:00:00+00:00"], catch_exceptions=False)
    assert r.exit_code == 0
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "chromium is not installed (scripts/test.sh installs it)"
    shot = Path(os.environ.get("AUDITOR_ARTIFACTS", tmp_path)) / "weekly-report.png"
    shot.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1100,1600",
                    f"--screenshot={shot}", (out / "2026-W46" / "index.html").as_uri()],
                   check=True, capture_output=True, timeout=120)
    assert shot.stat().st_size > 10_000
    from PIL import Image
    with Image.open(shot) as im:
        assert im.size == (1100, 1600)
        # Not a blank page: the headline and tables put many colours on it.
        assert len(im.convert("RGB").getcolors(1_000_000) or []) > 20


def test_run_report_has_the_honest_headline_and_since_last_run(world):
    from auditor.reports.run_report import build_context, render
    store = _store(world)
    try:
        runs = store.runs(10)
        second = sorted(r.id for r in runs)[1]
        ctx = build_context(store, second)
    finally:
        store.close()
    head = {h["channel"]: h for h in ctx["headline"]}
    # Run 2 (W45): google 6 of 10 (was 9 of 10), pos 9 of 9.
    assert (head["google"]["consistent"], head["google"]["live"]) == (6, 10)
    assert head["google"]["grade"] == "D" and head["google"]["change"] == -30.0
    assert head["pos"]["grade"] == "A"
    since = ctx["since_last"]
    assert sorted(e.sku for e in since["google"]["opened"]) == ["A-2", "A-3", "A-4"]
    assert [e.sku for e in since["pos"]["opened"]] == ["A-10"]
    html = render(ctx)
    assert "Since the last run" in html and "Live SKUs fully consistent" in html
