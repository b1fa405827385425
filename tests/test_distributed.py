"""Distributed runs (auditor.distributed): `auditor run --distributed` with real
`auditor worker` processes on a real PostgreSQL (tests/pg_server.py) gives the same
answers as one `auditor run` on SQLite, and a worker killed with SIGKILL mid-job has
its job retried without duplicates or lost listings. The generated world's shop is
served on loopback. Skipped only with AUDITOR_SKIP_POSTGRES=1 (the pg_server fixture).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg

from auditor.demo import config_text
from auditor.world.generate import generate_world
from auditor.world.shop import ShopServer

if TYPE_CHECKING:
    from http.server import BaseHTTPRequestHandler

ROOT = Path(__file__).resolve().parent.parent
NOW = datetime.fromisoformat("2026-11-20T12:00:00+00:00")


def _cli(*args: str | Path, timeout: float = 150) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "auditor", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


def _worker(cfg: Path, log: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "auditor", "-v", "worker", "--config",
                             str(cfg), "--heartbeat", "1"], cwd=ROOT,
                            stdout=log.open("ab"), stderr=subprocess.STDOUT)


def _config(world: Path, work: Path, base_url: str, store_line: str, run: str) -> Path:
    work.mkdir()
    text = config_text(base_url).replace('"world/', f'"{world}/')
    text, n = re.subn(r'(?m)^path = "auditor\.db".*$', store_line, text)
    assert n == 1
    text = text.replace("[master]\n", f"[run]\n{run}\n\n[master]\n", 1)
    (work / "config.toml").write_text(text)
    return work / "config.toml"


def _with_master(cfg: Path, source: Path) -> None:
    text = cfg.read_text()
    text = re.sub(r'(?m)^source = "(.*/master(_previous)?\.csv)"', f'source = "{source}"',
                  text, count=1)
    cfg.write_text(text)


def _answers(cfg: Path) -> dict:
    from auditor.config import load_config
    from auditor.storage import open_store

    findings = json.loads(_cli("findings", "--format", "json", "--config", cfg).stdout)
    store = open_store(load_config(cfg).store_url, create=False)
    try:
        runs = store.runs(10)
        return {
            "findings": sorted(findings, key=lambda f: f["fingerprint"]),
            "events": {f["fingerprint"]: [(e.event, e.state, e.run_id, e.at, e.outcome,
                                           e.actual)
                                          for e in store.finding_events(f["fingerprint"])]
                       for f in findings},
            "scores": {r.id: [s.to_dict() for s in store.scores(r.id)] for r in runs},
            "runs": sorted((r.id, r.status, sorted(
                (c["channel"], c["status"], c["listings"], c["opened"], c["resolved"],
                 c["failed"], c["warn"]) for c in r.summary.get("channels", [])))
                for r in runs),
            "listings": sorted((li.channel, li.key) for li in store.listings()),
            "links": sorted(repr(sorted(r.to_dict().items())) for r in store.links()),
        }
    finally:
        store.close()


def _world(tmp_path: Path, size: int) -> tuple[Path, ShopServer]:
    world = tmp_path / "world"
    shop = ShopServer(world, crawl_delay=None)
    generate_world(world, size=size, seed=11, now=NOW, base_url=shop.base_url)
    return world, shop


def _two_runs(cfg: Path, world: Path, *extra: str) -> list[subprocess.CompletedProcess]:
    out = []
    for source, at in ((world / "master_previous.csv", NOW - timedelta(days=7)),
                       (world / "master.csv", NOW)):
        _with_master(cfg, source)
        r = _cli("run", "--config", cfg, "--now", at.isoformat(), *extra)
        assert r.returncode in (0, 1), r.stdout[-2000:] + r.stderr[-3000:]
        out.append(r)
    return out


def _stop(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(20)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def test_a_distributed_run_finds_what_one_process_on_sqlite_finds(tmp_path, pg_server):
    world, shop = _world(tmp_path, 40)
    url = pg_server.new_database()
    with shop:
        lite = _config(world, tmp_path / "sqlite", shop.base_url, 'path = "auditor.db"',
                       "workers = 1")
        _two_runs(lite, world)
        dist = _config(world, tmp_path / "dist", shop.base_url, f'url = "{url}"',
                       "shard_size = 15\nstalled_after = 5")
        workers = [_worker(dist, tmp_path / f"worker{i}.log") for i in range(2)]
        try:
            runs = _two_runs(dist, world, "--distributed")
        finally:
            _stop(workers)
    a, b = _answers(lite), _answers(dist)
    assert len(a["findings"]) > 20 and {f["state"] for f in a["findings"]} == \
        {"open", "resolved"}
    assert len(a["listings"]) > 100
    for part in ("findings", "events", "scores", "runs", "listings", "links"):
        assert b[part] == a[part], part
    # The jobs really were spread: several shards per channel, taken by both workers.
    with psycopg.connect(url) as conn:
        shards = dict(conn.execute("SELECT channel, max(shards) FROM dist_channels"
                                   " GROUP BY channel").fetchall())
        assert max(shards.values()) >= 3, shards
        assert conn.execute("SELECT count(*) FROM dist_staged").fetchone()[0] == 0
    logs = [(tmp_path / f"worker{i}.log").read_text() for i in range(2)]
    assert all("ended with status: Success" in text for text in logs), logs
    # Exit code and summary as `auditor run`'s.
    assert [r.returncode for r in runs] == [1, 1]


def _doing_shard_job(url: str) -> int | None:
    with psycopg.connect(url, autocommit=True) as conn:
        if conn.execute("SELECT to_regclass('procrastinate_jobs')").fetchone()[0] is None:
            return None
        row = conn.execute("SELECT id FROM procrastinate_jobs WHERE status = 'doing'"
                           " AND task_name = 'auditor.shard' LIMIT 1").fetchone()
        return row[0] if row else None


def _last_week_on_two_workers(world: Path, shop: ShopServer, tmp_path: Path,
                              url: str) -> tuple[Path, Path]:
    """The kill tests' common start: the single-process SQLite reference (two runs), and
    the distributed store's first run (last week's master) on two healthy workers, with
    this week's master put in place for the run under test."""
    lite = _config(world, tmp_path / "sqlite", shop.base_url, 'path = "auditor.db"',
                   "workers = 1")
    _two_runs(lite, world)
    dist = _config(world, tmp_path / "dist", shop.base_url, f'url = "{url}"',
                   "shard_size = 15\nstalled_after = 3")
    workers = [_worker(dist, tmp_path / f"w{i}.log") for i in range(2)]
    try:
        _with_master(dist, world / "master_previous.csv")
        r = _cli("run", "--config", dist, "--now", (NOW - timedelta(days=7)).isoformat(),
                 "--distributed")
        assert r.returncode in (0, 1), r.stderr[-3000:]
    finally:
        _stop(workers)
    _with_master(dist, world / "master.csv")
    return lite, dist


def test_a_worker_killed_mid_job_is_retried_without_duplicates_or_losses(tmp_path,
                                                                         pg_server):
    world, shop = _world(tmp_path, 40)
    url = pg_server.new_database()
    with shop:
        lite, dist = _last_week_on_two_workers(world, shop, tmp_path, url)
        # The second run: one worker, SIGKILL-ed while it holds a shard job.
        victim = _worker(dist, tmp_path / "victim.log")
        result: dict = {}

        def coordinator() -> None:
            result["r"] = _cli("-v", "run", "--config", dist, "--now", NOW.isoformat(),
                               "--distributed")

        t = threading.Thread(target=coordinator)
        t.start()
        killed = None
        deadline = time.monotonic() + 120
        while killed is None and time.monotonic() < deadline and t.is_alive():
            job = _doing_shard_job(url)
            if job is not None:
                os.kill(victim.pid, signal.SIGKILL)
                killed = job
            else:
                time.sleep(0.005)
        victim.wait()
        assert killed is not None, "no shard job was caught running"
        rescuers = [_worker(dist, tmp_path / f"r{i}.log") for i in range(2)]
        try:
            t.join(300)
            assert not t.is_alive()
        finally:
            _stop(rescuers)
    r = result["r"]
    assert r.returncode in (0, 1), r.stderr[-3000:]
    assert f"job {killed} (auditor.shard): its worker is gone; queued again" in r.stderr
    a, b = _answers(lite), _answers(dist)
    for part in ("findings", "events", "scores", "runs", "listings", "links"):
        assert b[part] == a[part], part
    # No listing twice, no event twice.
    assert len(set(b["listings"])) == len(b["listings"])
    for fp, events in b["events"].items():
        assert len(set(events)) == len(events), fp


def test_a_rejected_master_is_recorded_as_one_process_records_it(tmp_path, pg_server):
    """The master job's import rejected: with no earlier master the run fails with nothing
    audited; with one, the channels are audited against it and the run is partial, with
    the master's errors recorded, exactly as one process on SQLite does."""
    world, shop = _world(tmp_path, 40)
    broken = tmp_path / "broken" / "master.csv"  # (named so that _with_master finds it)
    broken.parent.mkdir()
    broken.write_text("colour,size\nred,XL\n")
    url = pg_server.new_database()
    steps = ((broken, NOW - timedelta(days=14)), (world / "master_previous.csv",
                                                 NOW - timedelta(days=7)), (broken, NOW))

    def runs(cfg: Path, *extra: str) -> list[tuple]:
        out = []
        for source, at in steps:
            _with_master(cfg, source)
            r = _cli("run", "--config", cfg, "--now", at.isoformat(), "--format", "json",
                     *extra)
            assert r.returncode in (0, 1, 2), r.stderr[-3000:]
            got = json.loads(r.stdout)
            out.append((r.returncode, got["status"], got["master_error"] is not None,
                        [(c["channel"], c["status"], c["listings"]) for c in
                         got["channels"]]))
        return out

    with shop:
        lite = _config(world, tmp_path / "sqlite", shop.base_url, 'path = "auditor.db"',
                       "workers = 1")
        want = runs(lite)
        dist = _config(world, tmp_path / "dist", shop.base_url, f'url = "{url}"',
                       "shard_size = 15\nstalled_after = 5")
        workers = [_worker(dist, tmp_path / f"worker{i}.log") for i in range(2)]
        try:
            got = runs(dist, "--distributed")
        finally:
            _stop(workers)
    assert got == want
    assert want[0][:3] == (2, "failed", True) and want[0][3] == []
    assert want[1][:3] == (1, "complete", False), want
    # rejected again: audited against last week's master, the run partial
    assert want[2][1:3] == ("partial", True) and len(want[2][3]) == 7, want
    a, b = _answers(lite), _answers(dist)
    for part in ("findings", "events", "scores", "runs", "listings", "links"):
        assert b[part] == a[part], part


def _doing_master_job(url: str) -> tuple[int, int | None] | None:
    """The run's master job while a worker holds it and before the master is ready:
    (job id, the holding worker's procrastinate id)."""
    with psycopg.connect(url, autocommit=True) as conn:
        if conn.execute("SELECT to_regclass('dist_runs')").fetchone()[0] is None:
            return None
        row = conn.execute("SELECT j.id, j.worker_id FROM procrastinate_jobs j JOIN dist_runs"
                           " r ON r.master_job = j.id WHERE j.status = 'doing' AND r.status ="
                           " 'running' AND r.master_key IS NULL LIMIT 1").fetchone()
        return (row[0], row[1]) if row else None


def _new_worker_id(url: str, known: set[int], proc: subprocess.Popen) -> int:
    """The procrastinate id the worker ``proc`` registered (one not in ``known``)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        with psycopg.connect(url, autocommit=True) as conn:
            ids = {r[0] for r in conn.execute("SELECT id FROM procrastinate_workers")}
        if ids - known:
            return min(ids - known)
        time.sleep(0.05)
    raise AssertionError("the worker never registered with the job queue")


def _worker_ids(url: str) -> set[int]:
    with psycopg.connect(url, autocommit=True) as conn:
        return {r[0] for r in conn.execute("SELECT id FROM procrastinate_workers")}


def test_a_worker_killed_in_the_master_job_is_replaced_by_a_waiting_one(tmp_path,
                                                                       pg_server):
    """The master job (master import, the workers' pack, the snapshot) runs on a worker
    too. Killed before the master is ready, it is handed back to the queue; the other
    worker, whose read job waits for that master, gives way (its read job is queued
    again) and takes the master job itself: the run ends with the answers of one
    process, nothing twice, and no third worker."""
    world, shop = _world(tmp_path, 40)
    url = pg_server.new_database()
    with shop:
        lite, dist = _last_week_on_two_workers(world, shop, tmp_path, url)
        # Both workers poll when the run starts, so either may take the master job: the
        # one holding it is killed (the victim), the other is the waiter.
        known = _worker_ids(url)
        first = _worker(dist, tmp_path / "w-a.log")
        first_id = _new_worker_id(url, known, first)
        second = _worker(dist, tmp_path / "w-b.log")
        _new_worker_id(url, known | {first_id}, second)
        victim, waiter, waiter_log = first, second, tmp_path / "w-b.log"
        result: dict = {}

        def coordinator() -> None:
            result["r"] = _cli("-v", "run", "--config", dist, "--now", NOW.isoformat(),
                               "--distributed")

        killed = None
        try:
            t = threading.Thread(target=coordinator)
            t.start()
            deadline = time.monotonic() + 120
            while killed is None and time.monotonic() < deadline and t.is_alive():
                held = _doing_master_job(url)
                if held is not None:
                    killed, holder = held
                    if holder != first_id:
                        victim, waiter, waiter_log = second, first, tmp_path / "w-a.log"
                    os.kill(victim.pid, signal.SIGKILL)
                else:
                    time.sleep(0.002)
            victim.wait()
            assert killed is not None, "no master job was caught running"
            t.join(300)
            assert not t.is_alive()
        finally:
            _stop([victim, waiter])
    r = result["r"]
    assert r.returncode in (0, 1), r.stderr[-3000:]
    assert f"job {killed} (auditor.master): its worker is gone; queued again" in r.stderr
    waited = waiter_log.read_text()
    assert "gives way to the run's master job" in waited, waited[-3000:]
    assert re.search(r"run \d+ job master: ", waited), waited[-3000:]  # it took it over
    a, b = _answers(lite), _answers(dist)
    for part in ("findings", "events", "scores", "runs", "listings", "links"):
        assert b[part] == a[part], part
    assert len(set(b["listings"])) == len(b["listings"])
    for fp, events in b["events"].items():
        assert len(set(events)) == len(events), fp


def test_crawl_pacing_is_shared_by_processes(pg_server):
    """Three processes reserve 5 slots each of one host at 0.2 s: the 15 slots the
    database handed out are spaced by the interval (exactly: the one clock is the
    database's), and no request left before its slot. The assertions are on the
    recorded reservations and departures, not on how promptly a loaded machine wakes a
    sleeping process (a late wake-up only makes a request later than its slot)."""
    from auditor.distributed import ensure_queue

    url = pg_server.new_database()
    ensure_queue(url)
    interval = 0.2
    code = (
        "import sys, time\n"
        "from auditor.storage.jobs import HostPacer\n"
        "p = HostPacer(sys.argv[1])\n"
        "for _ in range(5):\n"
        f"    w, slot = p.reserve('shop.example:443', {interval})\n"
        "    time.sleep(w)\n"
        "    print(slot, time.time(), flush=True)\n")
    procs = [subprocess.Popen([sys.executable, "-c", code, url], cwd=ROOT,
                              stdout=subprocess.PIPE, text=True) for _ in range(3)]
    rows = [tuple(map(float, line.split())) for p in procs
            for line in p.communicate(timeout=120)[0].splitlines()]
    assert all(p.returncode == 0 for p in procs)
    assert len(rows) == 15
    slots = sorted(slot for slot, _ in rows)
    gaps = [b - a for a, b in zip(slots, slots[1:], strict=False)]
    # Spaced by the interval (timestamps are microseconds: 1 ms of rounding slack).
    assert min(gaps) >= interval - 0.001, gaps
    assert slots[-1] - slots[0] >= 14 * interval - 0.001
    # No request left before its slot (same host clock; 2 ms for the clocks' reading).
    assert all(left >= slot - 0.002 for slot, left in rows), rows


def _reply(handler: BaseHTTPRequestHandler, body: bytes, ctype: str) -> None:
    handler.send_response(200)
    handler.send_header("Content-Type", ctype)
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


class _LocalShop:
    """A test shop on 127.0.0.1 (an ephemeral port), served from a thread."""

    def _serve(self, handler: type[BaseHTTPRequestHandler]) -> None:
        from http.server import ThreadingHTTPServer

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class _RobotsShop(_LocalShop):
    """A loopback shop whose robots.txt asks for ``Crawl-delay: delay`` and lists a
    sitemap of ``pages`` pages; records every request's (path, arrival time)."""

    def __init__(self, delay: float, pages: int):
        from http.server import BaseHTTPRequestHandler

        self.lock = threading.Lock()
        self.log: list[tuple[str, float]] = []
        shop = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with shop.lock:
                    shop.log.append((self.path, time.time()))
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
                _reply(self, body, ctype)

            def log_message(self, *a: Any) -> None:
                pass

        self._serve(Handler)


_CRAWL = (
    "import asyncio, sys, time\n"
    "from auditor import http\n"
    "from auditor.crawl import Crawl, CrawlSettings\n"
    "from auditor.storage.jobs import HostPacer\n"
    "class Recording(HostPacer):\n"
    "    def reserve(self, host, interval, crawl_delay=False):\n"
    "        w, slot = super().reserve(host, interval, crawl_delay)\n"
    "        print('slot', slot, flush=True)\n"
    "        return w, slot\n"
    "http.shared_pacer = Recording(sys.argv[1])\n"
    "async def main():\n"
    "    crawl = Crawl(CrawlSettings(origin=sys.argv[2], user_agent='polish-test/1.0',\n"
    "                                concurrency=4), http.FetchPolicy(allow_private=True), {})\n"
    "    async def emit(res):\n"
    "        pass\n"
    "    while time.time() < float(sys.argv[3]):\n"
    "        await asyncio.sleep(0.005)\n"
    "    await crawl.run(emit)\n"
    "asyncio.run(main())\n")


def test_robots_crawl_delay_spaces_every_worker_from_the_first_request(pg_server):
    """Two processes crawl one shop (robots.txt: Crawl-delay 0.5) starting at the same
    instant, each with the shared pacer of `auditor worker`: one reads robots.txt and
    publishes the delay while the other waits, so every request of both (their
    robots.txt requests included) is spaced by the Crawl-delay. Before, both asked for
    robots.txt at once, neither knowing the delay yet (their slots, and arrivals, came
    0.00-0.11 s apart). Asserted on the slots the database handed out and on every
    request arriving no sooner than its slot, not on the arrival gaps: a loaded machine
    may send a request late (its first connection takes a while), never early."""
    from auditor.distributed import ensure_queue

    url = pg_server.new_database()
    ensure_queue(url)
    delay = 0.5
    shop = _RobotsShop(delay, pages=2)
    try:
        start = time.time() + 4.0  # both processes imported and waiting by then
        procs = [subprocess.Popen([sys.executable, "-c", _CRAWL, url, shop.url, str(start)],
                                  cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True) for _ in range(2)]
        outs = [p.communicate(timeout=120) for p in procs]
    finally:
        shop.close()
    assert all(p.returncode == 0 for p in procs), [err[-2000:] for _, err in outs]
    slots = sorted(float(line.split()[1]) for out, _ in outs for line in out.splitlines()
                   if line.startswith("slot "))
    arrivals = sorted(at for _, at in shop.log)
    paths = sorted(path for path, _ in shop.log)
    # Each process: robots.txt, the sitemap, two pages; every request had a slot.
    assert paths == sorted(["/robots.txt", "/sitemap.xml", "/p/0", "/p/1"] * 2), paths
    assert len(slots) == len(arrivals) == 8
    # The slots handed out are spaced by the Crawl-delay (1 ms of timestamp rounding) ...
    gaps = [b - a for a, b in zip(slots, slots[1:], strict=False)]
    assert min(gaps) >= delay - 0.001, gaps
    # ... and no request arrived before its slot: the k-th arrival is no earlier than
    # the k-th slot (each request leaves at or after its own).
    assert all(a >= s - 0.005 for s, a in zip(slots, arrivals, strict=True)), (slots, arrivals)


def _in_process(tmp_path: Path, name: str, fail_shard: int | None,
                channel: str = "google") -> tuple[Any, Any]:
    """One distributed run of ``channel``, its jobs called in this process on a
    SQLite store (the steps are the workers' own functions); ``fail_shard``: that shard's
    job never succeeded."""
    from auditor.config import load_config
    from auditor.distributed import audit_shard, finish_channel, read_channel
    from auditor.linking import Linker
    from auditor.runner import import_master
    from auditor.storage import ShardSpec, open_store

    world = tmp_path / "world"
    if not world.exists():
        generate_world(world, size=40, seed=11, now=NOW, base_url="http://127.0.0.1:9")
    cfg = load_config(_config(world, tmp_path / name, "http://127.0.0.1:9",
                              'path = "auditor.db"', "workers = 1"))
    store = open_store(cfg.store_url)
    import_master(cfg, store, NOW)
    run_id = store.start_run(NOW, None)
    master, history = store.current_master(), store.master_history()
    # A master no listing of the channel shows: a missing listing, when the read concludes.
    import dataclasses

    first = master[sorted(master)[0]]
    master = {**master, "SKU-NOT-LISTED": dataclasses.replace(first, sku="SKU-NOT-LISTED")}
    ch = cfg.channel(channel)
    read, staged = read_channel(cfg, store, run_id, ch, master, Linker(master, cfg.linking), NOW)
    n = 3
    results = {}
    for i in range(n):
        rows = [r for r in staged if ShardSpec.of(r[0].key, n) == i]
        if i != fail_shard:
            results[i] = audit_shard(cfg, store, run_id, ch, master, history, NOW, i, n, rows,
                                     read)
    failed = [] if fail_shard is None else [fail_shard]
    summary = finish_channel(cfg, store, run_id, ch, master, history, NOW, n, read, results,
                             failed)
    return store, summary


def test_a_shard_that_failed_concludes_nothing_missing(tmp_path):
    ok_store, ok = _in_process(tmp_path, "ok", None)
    bad_store, bad = _in_process(tmp_path, "bad", 1)
    try:
        missing_ok = [f for f in ok_store.findings(channel="google") if f.listing_key is None]
        assert missing_ok, "the world has masters missing from google: the control finds them"
        assert ok.status.value == "complete"
        # One shard failed: the channel is partial, no listing is concluded missing, the
        # other shards' findings were applied, nothing was marked removed.
        assert bad.status.value == "partial"
        assert "1 of 3 shard jobs failed" in (bad.message or "")
        assert [f for f in bad_store.findings(channel="google") if f.listing_key is None] == []
        listing_level = [f for f in bad_store.findings(channel="google")]
        assert listing_level
        from auditor.storage import ShardSpec

        assert all(not ShardSpec(1, 3).contains(f.listing_key) for f in listing_level)
        assert bad_store.run_sources(1)[0].status == "partial"
    finally:
        ok_store.close()
        bad_store.close()


def test_a_held_channel_opens_what_its_shards_read(tmp_path):
    """A POS export with a row without a readable key holds presence: its shards still
    open the findings of the listings they read (the same as a run without the row),
    and no listing is concluded missing."""
    from auditor.storage import ShardSpec

    world = tmp_path / "world"
    generate_world(world, size=40, seed=11, now=NOW, base_url="http://127.0.0.1:9")
    ok_store, ok = _in_process(tmp_path, "ok", None, "pos-berlin")
    pos = world / "feeds" / "pos-berlin.csv"
    pos.write_bytes(pos.read_bytes() + b";;Gift card;10,00;1;Berlin\r\n")  # (cp1252)
    held_store, held = _in_process(tmp_path, "held", None, "pos-berlin")
    try:
        assert ok.status.value == "complete" and ok.presence_held is None
        assert held.status.value == "complete" and "without a readable key" in \
            (held.presence_held or "")
        mine = [(f.fingerprint, f.state, f.outcome)
                for f in held_store.findings(channel="pos-berlin")]
        # every shard's listings opened their findings; only the missing ones are held
        control = [(f.fingerprint, f.state, f.outcome)
                   for f in ok_store.findings(channel="pos-berlin") if f.listing_key]
        assert control and sorted(mine) == sorted(control)
        assert len({ShardSpec.of(f.listing_key, 3) for f in held_store.findings()
                    if f.listing_key}) >= 2  # (opened by more than one shard job)
        assert [f for f in ok_store.findings(channel="pos-berlin") if f.listing_key is None]
        assert held_store.presence_holds(channel="pos-berlin")[0].findings
    finally:
        ok_store.close()
        held_store.close()


class _CountingShop(_LocalShop):
    """A loopback HTTP server that records every request's (path, start, end) and the
    most requests it had in flight at once; ``/busy`` answers 429 with Retry-After: 1
    the first time (and then creates the file ``told``, when given)."""

    def __init__(self, hold: float, told: Path | None = None):
        from http.server import BaseHTTPRequestHandler

        self.lock = threading.Lock()
        self.now_in = self.most_in = 0
        self.log: list[tuple[str, float, float]] = []
        self.busy_told = False
        self.told = told
        shop = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                start = time.time()
                with shop.lock:
                    shop.now_in += 1
                    shop.most_in = max(shop.most_in, shop.now_in)
                    told = self.path == "/busy" and not shop.busy_told
                    shop.busy_told = shop.busy_told or told
                time.sleep(hold)
                with shop.lock:
                    shop.now_in -= 1
                    shop.log.append((self.path, start, time.time()))
                if told:
                    self.send_response(429)
                    self.send_header("Retry-After", "1")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    if shop.told is not None:
                        shop.told.touch()
                    return
                body = b"ok"
                _reply(self, body, "text/plain")

            def log_message(self, *a: Any) -> None:
                pass

        self._serve(Handler)


_FETCH = (
    "import asyncio, os, sys, time\n"
    "from auditor import http\n"
    "from auditor.storage.jobs import HostPacer\n"
    "http.shared_pacer = HostPacer(sys.argv[1])\n"
    "paths = sys.argv[3].split(',')\n"
    "async def main():\n"
    "    policy = http.FetchPolicy(allow_private=True, per_host_concurrency=2,\n"
    "                              concurrency=8, retries=2)\n"
    "    async with http.Fetcher(policy) as f:\n"
    "        while sys.argv[4] != '-' and not os.path.exists(sys.argv[4]):\n"
    "            await asyncio.sleep(0.02)\n"
    "        if sys.argv[4] != '-':  # and until the told process has recorded its back-off\n"
    "            from auditor.storage.postgres import connect\n"
    "            told = os.path.getmtime(sys.argv[4])\n"
    "            give_up = time.time() + 10  # (no shared back-off: ask, and fail the test)\n"
    "            with connect(sys.argv[1]) as c:\n"
    "                while time.time() < give_up and not c.execute(\n"
    "                        'SELECT coalesce(max(extract(epoch FROM next_at)), 0) >= %s'\n"
    "                        ' FROM crawl_hosts', (told + 0.5,)).fetchone()[0]:\n"
    "                    await asyncio.sleep(0.02)\n"
    "        rs = await asyncio.gather(*(f.get(sys.argv[2] + p) for p in paths))\n"
    "    print(sorted(r.status for r in rs), flush=True)\n"
    "asyncio.run(main())\n")


def _fetchers(url: str, shop: _CountingShop, jobs: list[tuple[str, str]]) -> list[str]:
    """Each job: its paths (comma-separated), asked for at once by one process once the
    file named second exists and a back-off of the host past it is recorded, or at once
    ("-")."""
    procs = [subprocess.Popen([sys.executable, "-c", _FETCH, url, shop.url, paths, after],
                              cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for paths, after in jobs]
    outs = [p.communicate(timeout=90) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err[-2000:] for _, err in outs]
    return [out.strip() for out, _ in outs]


def test_per_host_in_flight_cap_is_shared_by_processes(pg_server):
    """Three processes, each asking for 6 pages of one host at once with
    per_host_concurrency = 2: the host never has more than 2 requests in flight in all
    (each process alone would send 2, so 6 together)."""
    from auditor.distributed import ensure_queue

    url = pg_server.new_database()
    ensure_queue(url)
    shop = _CountingShop(hold=0.15)
    try:
        paths = ",".join(f"/p{i}" for i in range(6))
        outs = _fetchers(url, shop, [(paths, "-")] * 3)
    finally:
        shop.close()
    assert outs == ["[200, 200, 200, 200, 200, 200]"] * 3
    assert len(shop.log) == 18
    assert shop.most_in == 2, shop.most_in  # the cap held, and two were in flight at once


def test_a_429_slows_every_process_asking_that_host(pg_server, tmp_path):
    """Process A gets 429 Retry-After: 1 for /busy; process B, asking the same host once
    A has recorded the back-off (B waits for that, not for a guessed half second a loaded
    machine may not keep), waits for the back-off too: no request reaches the host in the
    second after the 429 (alone, B would ask at once), and A's retry then succeeds."""
    from auditor.distributed import ensure_queue

    url = pg_server.new_database()
    ensure_queue(url)
    told = tmp_path / "told"
    shop = _CountingShop(hold=0.0, told=told)
    try:
        outs = _fetchers(url, shop, [("/busy", "-"),
                                     (",".join(f"/q{i}" for i in range(3)), str(told))])
    finally:
        shop.close()
    assert outs == ["[200]", "[200, 200, 200]"]
    told = next(end for path, _, end in shop.log if path == "/busy")
    later = sorted(start for _, start, _ in shop.log if start > told)
    assert len(later) == 4  # A's retry and B's three pages
    assert later[0] - told >= 0.9, (told, later)


def test_the_run_distributed_key_makes_cli_and_scheduled_runs_distributed(tmp_path,
                                                                          pg_server):
    """``[run] distributed = true``: a scheduled audit of `auditor serve` (the command line
    its launcher starts: `auditor run --channel NAME`, no flag) and an audit in a child
    process (``run_in_child``) are both coordinated runs whose channels a worker audits."""
    from auditor.child import run_in_child
    from auditor.service.launcher import audit_argv

    world = tmp_path / "world"
    generate_world(world, size=40, seed=11, now=NOW, base_url="http://127.0.0.1:9")
    url = pg_server.new_database()
    cfg = _config(world, tmp_path / "dist", "http://127.0.0.1:9", f'url = "{url}"',
                  "shard_size = 15\ndistributed = true")
    worker = _worker(cfg, tmp_path / "worker.log")
    try:
        r = subprocess.run([*audit_argv(cfg, "google", 0.0), "--now", NOW.isoformat()],
                           cwd=ROOT, capture_output=True, text=True, timeout=150)
        assert r.returncode in (0, 1), r.stdout[-2000:] + r.stderr[-3000:]
        child = run_in_child(cfg, ["google"], now=NOW + timedelta(days=1), timeout=150)
    finally:
        _stop([worker])
    assert child.exit_code in (0, 1), child
    with psycopg.connect(url) as conn:
        runs = conn.execute("SELECT run_id, status FROM dist_runs ORDER BY run_id").fetchall()
        shards = conn.execute("SELECT run_id, count(*) FROM dist_shards"
                              " GROUP BY run_id ORDER BY run_id").fetchall()
        listings = conn.execute("SELECT count(*) FROM listings WHERE channel = 'google'"
                                ).fetchone()[0]
    assert [s for _, s in runs] == ["finished", "finished"]
    assert runs[1][0] == child.run_id
    assert all(n >= 2 for _, n in shards) and len(shards) == 2, shards  # shards were jobs
    assert listings > 30
    assert "ended with status: Success" in (tmp_path / "worker.log").read_text()


def test_a_read_job_waits_for_its_runs_master_and_not_for_a_gone_coordinator(pg_server):
    """Read jobs are deferred as the run starts: they wait for the master the coordinator
    marks ready (``RunJobs.master_ready``), and stop waiting when the run ends or the
    coordinator's connection (its sign of life) is gone."""
    from auditor.distributed import ensure_queue
    from auditor.storage.jobs import RunJobs

    url = pg_server.new_database()
    ensure_queue(url)
    worker = RunJobs(url)
    coord = RunJobs(url)
    try:
        coord.start_run(5, "/etc/x.toml", "sha", None, NOW, 10)
        coord.hold_run(5)
        assert worker.coordinator_alive(5) and not worker.coordinator_alive(6)
        timer = threading.Timer(0.6, coord.master_ready, (5, "run 5"))
        timer.start()
        t0 = time.monotonic()
        assert worker.wait_master(5, poll=0.05) == "run 5"
        assert time.monotonic() - t0 >= 0.5
        assert worker.run(5)["master_key"] == "run 5"
        # A run ended (interrupted) while its jobs wait: they do nothing.
        coord.start_run(6, "/etc/x.toml", "sha", None, NOW, 10)
        coord.end_run(6, "interrupted")
        assert worker.wait_master(6, poll=0.05) is None
        # A coordinator killed before its master was ready: its lock went with its
        # connection, and the waiting job gives up instead of waiting for ever.
        coord.start_run(7, "/etc/x.toml", "sha", None, NOW, 10)
        coord.hold_run(7)
        assert worker.coordinator_alive(7)
        coord.close()
        t0 = time.monotonic()
        assert worker.wait_master(7, poll=0.05) is None
        assert time.monotonic() - t0 < 5
    finally:
        worker.close()
        coord.close()


def test_a_read_parsed_before_the_master_is_ready_links_as_a_streamed_one(tmp_path):
    """``read_channel`` with ``ready`` (the source read first, master and linker asked for
    afterwards) gives the streamed read's listings, links and outcome."""
    from auditor.config import load_config
    from auditor.distributed import read_channel
    from auditor.linking import Linker
    from auditor.runner import import_master
    from auditor.storage import open_store

    world = tmp_path / "world"
    generate_world(world, size=40, seed=11, now=NOW, base_url="http://127.0.0.1:9")
    cfg = load_config(_config(world, tmp_path / "w", "http://127.0.0.1:9",
                              'path = "auditor.db"', "workers = 1"))
    store = open_store(cfg.store_url)
    try:
        import_master(cfg, store, NOW)
        run_id = store.start_run(NOW, None)
        master = store.current_master()
        asked: list[int] = []

        def ready() -> tuple[Any, Any]:
            asked.append(1)
            return master, Linker(master, cfg.linking)

        for name in ("google", "meta", "amazon"):
            ch = cfg.channel(name)
            streamed, rows = read_channel(cfg, store, run_id, ch, master,
                                          Linker(master, cfg.linking), NOW)
            parsed, rows2 = read_channel(cfg, store, run_id, ch, None, None, NOW,
                                         ready=ready)
            assert rows and [(li, link) for li, link in rows] == rows2
            assert (streamed.linked, streamed.unlinked, streamed.suggested,
                    streamed.ambiguous, streamed.result.listings, streamed.unseen,
                    streamed.errors, streamed.link_notes) == \
                (parsed.linked, parsed.unlinked, parsed.suggested, parsed.ambiguous,
                 parsed.result.listings, parsed.unseen, parsed.errors, parsed.link_notes)
        assert len(asked) == 3
    finally:
        store.close()


def _keyless_and_orphan(tmp_path):
    """A 40-SKU world's master imported into SQLite, and two listings of its first titled
    SKU: one with no key, one whose SKU is on no record (both link only by title)."""
    from auditor.config import load_config
    from auditor.runner import import_master
    from auditor.storage import open_store
    from tests.conftest import make_listing

    world = tmp_path / "world"
    generate_world(world, size=40, seed=11, now=NOW, base_url="http://127.0.0.1:9")
    cfg_path = _config(world, tmp_path / "w", "http://127.0.0.1:9", 'path = "auditor.db"',
                       "workers = 1")
    cfg = load_config(cfg_path)
    lite = open_store(cfg.store_url)
    try:
        import_master(cfg, lite, NOW)
        master = lite.current_master()
    finally:
        lite.close()
    sku, rec = next((s, r) for s, r in master.items() if r.title)
    keyless = make_listing("no-key", sku=None, title=rec.title, brand=rec.brand)
    orphan = make_listing("orphan", sku="NOT-ON-RECORD-1", title=rec.title, brand=rec.brand)
    return cfg_path, cfg, master, sku, keyless, orphan


def test_a_worker_links_by_key_from_the_master_part_and_waits_for_the_rest_when_needed(
        tmp_path, pg_server):
    """The workers' pack comes in parts: master and linker (its first key kind's index)
    mark the master ready; the linker's other indexes (title-matching, other key kinds)
    and the history are later parts. A worker links listings on record by SKU from the
    first part alone, waits for the indexes part only when a listing needs one (and
    then links as one process does), for the history part when it checks; a part the
    coordinator could not store is made by the worker itself; a gone coordinator ends
    the wait."""
    from auditor import distributed, masterpack
    from auditor.linking import Linker
    from auditor.storage.jobs import RunJobs
    from auditor.storage.records import MasterHistory
    from tests.conftest import make_listing

    cfg_path, cfg, master, sku, keyless, orphan = _keyless_and_orphan(tmp_path)
    url = pg_server.new_database()
    distributed.ensure_queue(url)
    distributed._worker_url = url
    distributed._CACHE.clear()
    coord = RunJobs(url)
    history = MasterHistory()
    history.put(sku, "2026-01-01T00:00:00+00:00", master.body(sku))
    try:
        for run_id in (1, 2):
            coord.start_run(run_id, str(cfg_path), distributed.config_sha(cfg_path), None,
                            NOW, 10)
            coord.hold_run(run_id)
            linker = Linker(master, cfg.linking)
            coord.save_pack(run_id, masterpack.dumps((master, linker)))
            coord.master_ready(run_id, f"run {run_id}")
            env = distributed._env(run_id)
            assert env is not None
            try:
                loaded = env.master()
                assert loaded is not None and set(loaded.linker.index) == {"sku"}
                s = loaded.linker.session()
                assert s.link(make_listing("k", sku=sku)).sku == sku  # no wait
                assert s.link(orphan) is None and s.later == [orphan]  # held, no wait
                assert loaded.linker._match_index is None and not loaded.indexed
                if run_id == 1:  # stored 0.6 s later: the keyless listing waits for it
                    built = set(linker.index)
                    linker.prepare()
                    part = masterpack.dumps(masterpack.indexes(linker, built), master)
                    later = masterpack.dumps(history)

                    def store_rest(part: bytes, later: bytes) -> None:  # (one connection:
                        coord.save_pack(1, part, "indexes")  # one thread at a time)
                        coord.save_pack(1, later, "history")

                    threading.Timer(0.6, store_rest, (part, later)).start()
                else:  # the coordinator had none: built here
                    coord.packed(2, "indexes", "none")
                    coord.packed(2, "history", "none")
                t0 = time.monotonic()
                want = Linker(master, cfg.linking).link_all([orphan, keyless])
                assert loaded.linker.link_all([orphan, keyless]) == want
                assert want[1].sku == sku and want[0].sku is None and \
                    sku in want[0].candidates  # (the orphan's title suggests it)
                assert loaded.indexed and loaded.linker._match_index is not None
                if run_id == 1:
                    assert time.monotonic() - t0 >= 0.5
                    assert loaded.linker._match_index._master is loaded.master
                    assert set(loaded.linker.index) == set(linker.index)
                    assert env.history()[sku] == history[sku]
                else:  # the store's history (this store has none)
                    assert len(env.history()) == 0
            finally:
                env.close()
        # the coordinator gone before a part was stored: the wait ends
        coord.start_run(3, str(cfg_path), distributed.config_sha(cfg_path), None, NOW, 10)
        coord.hold_run(3)
        coord.save_pack(3, masterpack.dumps((master, Linker(master, cfg.linking))))
        coord.master_ready(3, "run 3")
        env = distributed._env(3)
        assert env is not None
        try:
            coord.close()
            t0 = time.monotonic()
            try:
                env.history()
                raise AssertionError("no history without a coordinator")
            except distributed._RunOver:
                pass
            assert time.monotonic() - t0 < 5
        finally:
            env.close()
    finally:
        coord.close()
        distributed._CACHE.clear()


def test_the_first_job_needing_the_indexes_builds_them_and_one_whose_builder_died_takes_over(
        tmp_path, pg_server):
    """The linker's other indexes are built by the first job of the run that needs one
    (not by the master job, whose worker writes the snapshot and takes the next job
    meanwhile): it claims them, builds them, links as one process does and stores them
    as the pack's indexes part, which another job then installs without building. A job
    that needs them while a running job has claimed them waits for that job's part; if
    that job stops running (its worker died: queued again, or failed) the waiting job
    claims them and builds them itself; a retried job finds its own claim."""
    from auditor import distributed, masterpack
    from auditor.linking import Linker
    from auditor.storage.jobs import RunJobs

    cfg_path, cfg, master, sku, keyless, orphan = _keyless_and_orphan(tmp_path)
    want = Linker(master, cfg.linking).link_all([orphan, keyless])
    assert want[1].sku == sku
    url = pg_server.new_database()
    distributed.ensure_queue(url)
    distributed._worker_url = url
    app = distributed.make_app(url)
    app.open()
    coord = RunJobs(url)

    def start(run_id: int) -> None:
        distributed._CACHE.clear()
        coord.start_run(run_id, str(cfg_path), distributed.config_sha(cfg_path), None, NOW, 10)
        coord.hold_run(run_id)
        coord.save_pack(run_id, masterpack.dumps((master, Linker(master, cfg.linking))))
        coord.master_ready(run_id, f"run {run_id}")

    def link_in_job(run_id: int, job: int) -> tuple[Any, float]:
        distributed._job_id = job
        env = distributed._env(run_id)
        assert env is not None
        try:
            loaded = env.master()
            assert loaded is not None and not loaded.indexed
            t0 = time.monotonic()
            got = loaded.linker.link_all([orphan, keyless])
            assert loaded.indexed and loaded.linker._match_index is not None
            return got, time.monotonic() - t0
        finally:
            env.close()
            distributed._job_id = None

    def claimed_by(run_id: int) -> Any:
        return coord.conn.execute("SELECT packed ->> 'indexes.by' FROM dist_runs WHERE"
                                  " run_id=%s", (run_id,)).fetchone()[0]

    def doing_job() -> int:
        job = app.configure_task("auditor.finish", queue="other").defer(
            run_id=0, channel="x", failed_shards=[])
        coord.conn.execute("UPDATE procrastinate_jobs SET status='doing' WHERE id=%s",
                           (job,))
        return job

    try:
        # Nobody claimed them: the job builds them, links as one process, stores them.
        start(1)
        got, _ = link_in_job(1, 101)
        assert got == want and claimed_by(1) == "101"
        assert coord.part_state(1, "indexes") == "stored"
        part = masterpack.loads(coord.pack(1, "indexes"), master)
        other = Linker(master, cfg.linking)
        masterpack.install(other, part)
        assert other._match_index is not None and set(other.index) >= {"gtin", "mpn"}
        # ... and another job of the run installs them: it builds nothing, claims nothing.
        distributed._CACHE.clear()
        got, _ = link_in_job(1, 102)
        assert got == want and claimed_by(1) == "101"
        # A running job claimed them: the next one waits; when that job stops running
        # (failed, or back in the queue), the waiting job claims and builds them.
        start(2)
        builder = doing_job()
        assert coord.claim_part(2, "indexes", builder)
        assert coord.claim_part(2, "indexes", builder)  # (its retry: its own claim)
        assert not coord.claim_part(2, "indexes", 202)
        def died() -> None:  # (its worker gone: the job failed)
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute("UPDATE procrastinate_jobs SET status='failed' WHERE id=%s",
                             (builder,))

        timer = threading.Timer(0.6, died)
        timer.start()
        got, waited = link_in_job(2, 202)
        timer.join()
        assert got == want and waited >= 0.5 and claimed_by(2) == "202"
        assert coord.part_state(2, "indexes") == "stored"
        # The part settled: nobody claims it any more.
        assert not coord.claim_part(2, "indexes", 203)
    finally:
        coord.close()
        app.close()
        distributed._CACHE.clear()


def test_a_finish_job_writes_its_channels_propagation_rows(tmp_path, monkeypatch):
    """As a channel's run in one process: the finish job syncs the channel's propagation
    rows (``runner.sync_channel_propagation``), so the evaluation after the run finds them
    written."""
    from auditor import runner

    synced = []
    real = runner.sync_channel_propagation
    monkeypatch.setattr(runner, "sync_channel_propagation",
                        lambda store, channel: synced.append(channel) or real(store, channel))
    store, summary = _in_process(tmp_path, "ok", None)
    try:
        assert summary.status.value == "complete"
        assert synced == ["google"]
    finally:
        store.close()
