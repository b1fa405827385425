"""Fourth operator pass: what a new user and an operator met. The API takes the fingerprint
prefixes the CLI shows, counted words read right, `runs --format csv` keeps held presence
in columns of its own. Each test is a defect met on the product."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

from auditor.cli import main
from auditor.config import load_config
from auditor.storage import open_store
from tests.service_helpers import build_world

HTML = {"accept": "text/html,application/xhtml+xml,*/*;q=0.8"}
TOKEN = "tok-polish4"


@contextlib.contextmanager
def _service(config: Path):
    from fastapi.testclient import TestClient

    from auditor.service.app import Service, create_app

    service = Service(config, load_config(config), schedule=False)
    with TestClient(create_app(service)) as client:
        yield client


def _cli(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    d = tmp_path_factory.mktemp("world")
    config = build_world(d)
    assert _cli("run", "-c", str(config)).exit_code == 1
    return config


def _open_fingerprints(config: Path) -> list[str]:
    store = open_store(config.parent / "auditor.db")
    try:
        return [f.fingerprint for f in store.findings(state="open")]
    finally:
        store.close()


def _unique_prefix(fp: str, others: list[str]) -> str:
    """The shortest prefix (4 characters or more) of ``fp`` no other fingerprint shares."""
    for n in range(4, len(fp) + 1):
        if not any(o.startswith(fp[:n]) for o in others if o != fp):
            return fp[:n]
    raise AssertionError(f"{fp} has no unique prefix")


# ------------------------------------------------------- the API takes unique prefixes

def test_the_api_takes_a_unique_fingerprint_prefix_as_the_cli_does(world, monkeypatch):
    """`auditor findings` shows fingerprints shortened and `findings ack 3f2a9c` takes a
    prefix; the API wanted the whole fingerprint and answered 404 for the same prefix."""
    monkeypatch.setenv("AUDITOR_API_TOKEN", TOKEN)
    auth = {"authorization": f"Bearer {TOKEN}"}
    fps = _open_fingerprints(world)
    fp = fps[0]
    prefix = _unique_prefix(fp, fps)
    assert len(prefix) < len(fp)
    with _service(world) as client:
        one = client.get(f"/api/findings/{prefix}")
        upper = client.get(f"/api/findings/{prefix.upper()}")
        acked = client.post(f"/api/findings/{prefix}/ack", json={"by": "ana"}, headers=auth)
        after = client.get(f"/api/findings/{fp}").json()
        page = client.get(f"/findings/{prefix}", headers=HTML, follow_redirects=False)
    assert one.status_code == 200 and one.json()["fingerprint"] == fp
    assert upper.status_code == 200 and upper.json()["fingerprint"] == fp
    # The answer names the whole fingerprint, so a client can keep it.
    assert acked.status_code == 200 and acked.json() == {"ok": True, "fingerprint": fp}
    assert after["state"] == "acknowledged" and after["ack_by"] == "ana"
    assert after["events"][-1]["event"] == "acknowledged"
    # The web UI's finding page opens it too, at its full address.
    assert page.status_code == 303 and page.headers["location"] == f"/findings/{fp}"


def test_no_finding_is_404_and_an_ambiguous_prefix_409_in_the_api(tmp_path, monkeypatch):
    world = build_world(tmp_path)  # its own store: two fingerprints are renamed below
    assert _cli("run", "-c", str(world)).exit_code == 1
    monkeypatch.setenv("AUDITOR_API_TOKEN", TOKEN)
    auth = {"authorization": f"Bearer {TOKEN}"}
    fps = _open_fingerprints(world)
    # Two findings whose fingerprints share a prefix (renamed in place: a store of a few
    # dozen findings rarely has two sharing four characters by chance).
    a, b = fps[-2], fps[-1]
    db = sqlite3.connect(world.parent / "auditor.db")
    with db:
        db.execute("UPDATE findings SET fingerprint = ? WHERE fingerprint = ?",
                   ("fedc01" + a[6:], a))
        db.execute("UPDATE findings SET fingerprint = ? WHERE fingerprint = ?",
                   ("fedc02" + b[6:], b))
    db.close()
    with _service(world) as client:
        ambiguous = client.get("/api/findings/fedc0")
        ambiguous_ack = client.post("/api/findings/fedc0/ack", json={}, headers=auth)
        unique = client.get("/api/findings/fedc01")
        none = client.get("/api/findings/0000000")
        not_hex = client.get("/api/findings/not-a-fingerprint")
        too_short = client.post("/api/findings/fed/resolve", json={}, headers=auth)
        ui_ambiguous = client.get("/findings/fedc0", headers=HTML)
        schema = client.get("/openapi.json").json()
    assert ambiguous.status_code == 409 and "ambiguous" in ambiguous.json()["detail"]
    assert ambiguous_ack.status_code == 409 and "ambiguous" in ambiguous_ack.json()["detail"]
    assert unique.status_code == 200 and unique.json()["fingerprint"] == "fedc01" + a[6:]
    assert none.status_code == 404 and "no finding" in none.json()["detail"]
    assert not_hex.status_code == 404 and "hex, 4 characters or more" in not_hex.json()["detail"]
    assert too_short.status_code == 404
    assert ui_ambiguous.status_code == 404 and "ambiguous" in ui_ambiguous.text
    # Documented where a client reads the API.
    get = schema["paths"]["/api/findings/{fingerprint}"]["get"]
    assert {"404", "409"} <= set(get["responses"])
    assert "unique prefix" in get["parameters"][0]["description"]


# ------------------------------------- robots.txt read by one crawl at a time per host

class _RobotsShop:
    """A loopback shop whose robots.txt asks for ``Crawl-delay: delay``, with a sitemap of
    ``pages`` pages; records every request's path."""

    def __init__(self, delay: float, pages: int):
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.paths: list[str] = []
        shop = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                shop.paths.append(self.path)
                if self.path == "/robots.txt":
                    body = (f"User-agent: *\nCrawl-delay: {delay}\n"
                            f"Sitemap: {shop.url}/sitemap.xml\n").encode()
                    ctype = "text/plain"
                elif self.path == "/sitemap.xml":
                    body = ('<?xml version="1.0" encoding="UTF-8"?><urlset xmlns='
                            '"http://www.sitemaps.org/schemas/sitemap/0.9">'
                            + "".join(f"<url><loc>{shop.url}/p/{i}</loc></url>"
                                      for i in range(pages)) + "</urlset>").encode()
                    ctype = "application/xml"
                else:
                    body = b"<html><body><h1>a page</h1></body></html>"
                    ctype = "text/html"
                self.send_response(200)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_two_crawls_of_one_host_in_one_worker_process_learn_its_crawl_delay_once(pg_server,
                                                                                monkeypatch):
    """Two crawls of one shop in one process with `auditor worker`'s shared pacer: the
    robots.txt lock is a PostgreSQL session lock, and the process has one session, so the
    second crawl was granted it too and both asked for robots.txt before either knew the
    Crawl-delay (their slots 0.00 s apart). Now the second waits for the first to publish
    it, and every slot the database hands out, both robots.txt requests included, is spaced
    by it. Asserted on the slots reserved, not on arrival times (a loaded machine may send
    a request late, never early)."""
    import asyncio

    from auditor import http
    from auditor.crawl import Crawl, CrawlSettings
    from auditor.distributed import ensure_queue
    from auditor.storage.jobs import HostPacer

    url = pg_server.new_database()
    ensure_queue(url)
    slots: list[float] = []

    class Recording(HostPacer):
        def reserve(self, host: str, interval: float,
                    crawl_delay: bool = False) -> tuple[float, float]:
            wait, slot = super().reserve(host, interval, crawl_delay)
            slots.append(slot)
            return wait, slot

    delay = 0.4
    shop = _RobotsShop(delay, pages=1)
    pacer = Recording(url)
    monkeypatch.setattr(http, "shared_pacer", pacer)

    async def crawl() -> None:
        c = Crawl(CrawlSettings(origin=shop.url, user_agent="polish4-test/1.0", concurrency=4),
                  http.FetchPolicy(allow_private=True), {})

        async def emit(res: object) -> None:
            pass

        await c.run(emit)

    async def both() -> None:
        await asyncio.gather(crawl(), crawl())

    try:
        asyncio.run(both())
    finally:
        shop.close()
        if pacer._conn is not None:
            pacer._conn.close()
    # Each crawl: robots.txt, the sitemap, one page; every request had a slot.
    assert sorted(shop.paths) == sorted(["/robots.txt", "/sitemap.xml", "/p/0"] * 2)
    assert len(slots) == 6
    slots.sort()
    gaps = [b - a for a, b in zip(slots, slots[1:], strict=False)]
    assert min(gaps) >= delay - 0.001, gaps  # 1 ms of timestamp rounding
    assert not http._learning  # the process's claim on the host was let go


# ---------------------------------------------------- SIGHUP reloads one at a time

def test_a_quick_second_sighup_is_not_overwritten_by_the_first_reload(tmp_path):
    """SIGHUP reloads run in executor threads. A broken config saved (and signalled) while
    the reload of the good one was still applying it was refused, then the good reload
    finished and cleared the refusal: /api/schedule and auditor_config_reload_ok said all
    was well with a broken file on disk (and the SIGHUP test flaked on a loaded machine).
    Reloads now run one at a time, in order."""
    import threading

    from auditor.service.app import Service

    config = build_world(tmp_path, n=3, serve={"catch_up": False})
    service = Service(config, load_config(config), schedule=False)
    entered, go = threading.Event(), threading.Event()

    class SlowScheduler:  # applying the good config takes a while (a loaded machine)
        def reload(self, cfg: object) -> None:
            entered.set()
            assert go.wait(30)

    service.scheduler = SlowScheduler()  # type: ignore[assignment]
    good = config.read_text().replace('schedule = "0 */4 * * *"', 'schedule = "15 3 * * 0"')
    config.write_text(good)
    first = threading.Thread(target=service.reload)
    first.start()
    assert entered.wait(30)
    config.write_text(good.replace('type = "google_merchant"', 'type = "googel"'))
    second = threading.Thread(target=service.reload)
    second.start()
    second.join(0.5)  # before: refused already, and about to be overwritten
    go.set()
    first.join(30)
    second.join(30)
    assert not first.is_alive() and not second.is_alive()
    assert service.last_reload_error and "unknown connector 'googel'" in service.last_reload_error
    assert service.cfg.channels[0].schedule == "15 3 * * 0"  # the good one stays in force
    assert service.reloads == 1


# --------------------------------------------------------- what a new user reads

def test_words_are_counted_right():
    from auditor import wording

    assert wording.counted(1, "finding") == "1 finding"
    assert wording.counted(0, "finding") == "0 findings"
    assert wording.counted(1200, "listing") == "1,200 listings"
    assert wording.counted(2, "match", "matches") == "2 matches"
    # "shopify: not evaluated on this channel, its source never carries them: gtin"
    assert wording.not_carried(["gtin"]) == ("not evaluated on this channel, its source "
                                            "never carries it: gtin")
    assert wording.not_carried(["image", "gtin", "gtin"]).endswith("carries them: gtin, image")


def test_a_first_run_report_says_it_is_the_first_not_since_the_last_run(tmp_path):
    """The demo's report (run 1) had a "Since the last run" table, and a "since the last
    run" column of dashes, with no last run to compare with."""
    config = build_world(tmp_path)
    assert _cli("run", "-c", str(config)).exit_code == 1
    out = tmp_path / "report.html"
    assert _cli("report", "-c", str(config), "--output", str(out)).exit_code == 0
    first = out.read_text()
    assert "What the first run found" in first and "Since the last run" not in first
    assert '<span class="muted">first run</span>' in first
    _cli("run", "-c", str(config))
    assert _cli("report", "-c", str(config), "--output", str(out)).exit_code == 0
    second = out.read_text()
    assert "Since the last run" in second and "What the first run found" not in second


def test_the_ui_does_not_say_the_check_twice_and_counts_its_words(world):
    """The inbox showed "availability" over "availability", the finding page
    "availability / availability on google", the product page "3 open finding(s)"."""
    import re

    store = open_store(world.parent / "auditor.db")
    try:
        f = next(x for x in store.findings(state="open") if x.field == x.check)
        g = next(x for x in store.findings(state="open") if x.field != x.check)
        n_open = len([x for x in store.findings(state="open") if x.sku == f.sku])
    finally:
        store.close()
    with _service(world) as client:
        page = client.get(f"/findings/{f.fingerprint}", headers=HTML).text
        other = client.get(f"/findings/{g.fingerprint}", headers=HTML).text
        product = client.get(f"/products/{f.sku}", headers=HTML).text
        inbox = client.get("/", headers=HTML).text
        reports = client.get("/reports", headers=HTML).text
    # Markdown backticks are no markup in a page: "(`auditor report weekly`)" showed them.
    assert "`" not in reports and "<code>auditor report weekly</code>" in reports
    assert f"{f.check} / {f.check}" not in page and f"{f.check} on {f.channel}" in page
    assert "(run 1)" in page and "runs 1–1" not in page  # seen in one run
    assert f"{g.check} / {g.field} on {g.channel}" in other  # a field of its own stays
    word = "finding" if n_open == 1 else "findings"
    assert f"{n_open} open {word}</span>" in product and "(s)" not in product
    assert re.search(r"\d+ match</span>", inbox) and "(s)" not in inbox
    assert f'<td>{f.check}<div class="muted">{f.check}</div>' not in inbox


def test_serve_logs_the_same_line_it_prints(tmp_path):
    """Without -v `auditor serve` printed "web UI http://.../, metrics ..."; with -v it
    logged "(web UI at /, metrics at /metrics ...)", other words than docs/service.md."""
    from tests.service_helpers import serving

    config = build_world(tmp_path, n=3, serve={"catch_up": False})
    with serving(config, "--no-schedule") as s:
        base = s.url
        log = s.logtext()
        assert s.stop() == 0
    assert (f"auditor serve on {base}: web UI {base}/, metrics {base}/metrics, API "
            f"{base}/docs; Ctrl-C stops") in log


def test_the_findings_table_shows_the_short_fingerprint_the_commands_take(world):
    """`auditor findings` showed no fingerprint (only --wide, 250 columns of it), while its
    help's next step is `auditor findings ack 3f2a9c`: a new user had nothing to pass."""
    import json
    import re

    rows = json.loads(_cli("findings", "-c", str(world), "--open", "--format", "json").stdout)
    r = CliRunner(env={"COLUMNS": "140"}).invoke(main, ["findings", "-c", str(world), "--open"])
    assert r.exit_code == 0 and re.search(r"┃ fp\s+┃", r.output)
    shown = set(re.findall(r"│ ([0-9a-f]{8,}) │", r.output))
    assert len(shown) == len(rows)
    for fp in shown:  # each a prefix of exactly one fingerprint
        assert len([f for f in rows if f["fingerprint"].startswith(fp)]) == 1
    one = sorted(shown)[0]
    show = _cli("findings", "show", one, "-c", str(world))
    assert show.exit_code == 0 and f"fingerprint: {one}" in show.output
    none = _cli("findings", "-c", str(world), "--sku", "NOPE")
    assert none.exit_code == 0 and none.output.strip() == "0 findings match these filters"


def test_runs_reads_its_times_and_an_empty_list_is_one_line(world, tmp_path):
    """`auditor runs` printed "run 1 2026-11-30T00:21:49.539166+00:00 ->
    2026-11-30T00:21:51.451250+00:00"; `silence list` and `alerts outbox` printed "0
    silence(s)" over an empty table; `auditor report` "wrote report.html" (where?)."""
    import re

    r = _cli("runs", "-c", str(world))
    assert re.search(r"^run 1 \d{4}-\d\d-\d\d \d\d:\d\d:\d\d -> \d\d:\d\d:\d\d UTC "
                     r"\(\d+\.\d s\): complete$", r.output, re.M), r.output
    assert "+00:00" not in r.output
    for argv, line in ((["silence", "list"], "0 silences"),
                       (["alerts", "outbox"], "0 notifications")):
        out = _cli(*argv, "-c", str(world)).output
        assert out.strip() == line, out
    target = tmp_path / "r.html"
    out = _cli("report", "-c", str(world), "--output", str(target)).output
    assert out.strip() == f"wrote {target}: {target.resolve().as_uri()}"


def test_extract_of_a_loopback_url_says_how_once():
    """"127.0.0.1: 127.0.0.1 resolves to ... shared or reserved;; pass --allow-private"."""
    r = _cli("extract", "http://127.0.0.1:9/p/1")
    assert r.exit_code == 2
    assert ";;" not in r.output and r.output.count("(") == r.output.count(")")
    assert "error: http://127.0.0.1:9/p/1: 127.0.0.1 resolves to 127.0.0.1" in r.output
    assert "reserved); pass --allow-private" in r.output


def test_a_rejected_master_with_every_channel_read_says_so_at_exit(tmp_path):
    """Every channel complete, the master file gone: the run ended "exit 2: some sources
    could not be read completely", with each channel shown complete just above."""
    config = build_world(tmp_path)
    assert _cli("run", "-c", str(config)).exit_code == 1
    (tmp_path / "master.csv").unlink()
    r = _cli("run", "-c", str(config))
    assert r.exit_code == 2
    assert r.output.strip().splitlines()[-1] == (
        "exit 2: the master was rejected, the channels were audited against the previous "
        "snapshot: see `auditor runs --errors`")


def test_a_missing_config_is_not_called_invalid(tmp_path, monkeypatch):
    """`auditor run` in a folder without config.toml said "invalid config config.toml:
    file not found": there is nothing to be invalid."""
    monkeypatch.chdir(tmp_path)
    r = _cli("run")
    assert r.exit_code == 2
    assert r.output.startswith("error: cannot read config config.toml:")
    assert "invalid" not in r.output and f"file not found: {tmp_path / 'config.toml'}" in r.output


def test_ack_and_snooze_say_what_they_did_plainly(tmp_path):
    """`findings ack` said "(amazon SKU availability availability)", `findings snooze`
    "until 2026-12-02T00:44:44.382586+00:00"."""
    import json
    import re

    from auditor import wording

    assert wording.check_field("availability", "availability") == "availability"
    assert wording.check_field("price", "sale_price") == "price / sale_price"
    config = build_world(tmp_path)
    assert _cli("run", "-c", str(config)).exit_code == 1
    rows = json.loads(_cli("findings", "-c", str(config), "--open", "--format", "json").stdout)
    same = next(f for f in rows if f["field"] == f["check"])
    ack = _cli("findings", "ack", same["fingerprint"][:10], "-c", str(config)).output
    assert f"{same['check']} {same['check']})" not in ack
    assert f"{same['sku']} {same['check']}) by " in ack
    other = next(f for f in rows if f["fingerprint"] != same["fingerprint"])
    snooze = _cli("findings", "snooze", other["fingerprint"][:10], "--until", "2d",
                  "-c", str(config)).output
    assert re.fullmatch(rf"snoozed {other['fingerprint']} until \d{{4}}-\d\d-\d\d "
                        r"\d\d:\d\d:\d\d UTC\n", snooze), snooze


def test_a_silence_for_a_mistyped_channel_is_refused(tmp_path):
    """`silence add --channel amazn` made a silence that muted nothing, and said nothing."""
    config = build_world(tmp_path)
    assert _cli("run", "-c", str(config)).exit_code == 1
    typo = _cli("silence", "add", "-c", str(config), "--channel", "gogle", "--expires", "1d")
    assert typo.exit_code == 2
    assert "unknown channel 'gogle' (did you mean 'google'?)" in typo.output
    check = _cli("silence", "add", "-c", str(config), "--check", "prise", "--expires", "1d")
    assert check.exit_code == 2 and "did you mean 'price'?" in check.output
    none = _cli("silence", "list", "-c", str(config))
    assert none.output.strip() == "0 silences"
    glob = _cli("silence", "add", "-c", str(config), "--channel", "shop-*", "--expires", "1d")
    assert glob.exit_code == 0 and "matches no channel yet" in glob.output
    ok = _cli("silence", "add", "-c", str(config), "--channel", "goo*", "--check", "title",
              "--expires", "1d")
    assert ok.exit_code == 0 and "warning" not in ok.output
    assert ok.output.startswith("silence 2 until ") and " UTC: channel=goo*" in ok.output


def test_the_api_refuses_a_silence_for_a_mistyped_channel_too(world, monkeypatch):
    monkeypatch.setenv("AUDITOR_API_TOKEN", TOKEN)
    auth = {"authorization": f"Bearer {TOKEN}"}
    until = "2099-01-01T00:00:00Z"
    with _service(world) as client:
        typo = client.post("/api/silences", headers=auth,
                           json={"matchers": {"channel": "gogle"}, "until": until})
        check = client.post("/api/silences", headers=auth,
                            json={"matchers": {"check": "prise"}, "until": until})
        glob = client.post("/api/silences", headers=auth,
                           json={"matchers": {"channel": "goo*"}, "until": until})
    assert typo.status_code == 400 and "unknown channel 'gogle'" in typo.json()["detail"]
    assert check.status_code == 400 and "unknown check 'prise'" in check.json()["detail"]
    assert glob.status_code == 201 and glob.json()["ok"] is True


def test_backticked_commands_in_a_message_are_code_on_a_page_and_still_escaped():
    from auditor.web.views import ticks

    shown = str(ticks("<b>held</b>: run `auditor runs accept 2 <i>`\u202e now"))
    assert shown == ("&lt;b&gt;held&lt;/b&gt;: run <code>auditor runs accept 2 &lt;i&gt;"
                     "</code> now")
    assert str(ticks(None)) == "" and str(ticks("a ` b")) == "a ` b"
