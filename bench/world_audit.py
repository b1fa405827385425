"""Full audits of a generated world: detection quality, stage throughput, re-audit, scaling.

Each audit runs in a fresh process (bench.common.isolated) so its peak RSS is its own.
"""

from __future__ import annotations

import dataclasses
import json
import resource
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parent / "out"
# The world's files (master image URLs, feed links) name the shop by the URL it was
# generated with, so the benchmark shop always listens on this loopback port.
PORT = 18765
BASE_URL = f"http://127.0.0.1:{PORT}"


def ensure_world(size: int, seed: int = 1) -> Path:
    """Generate (once) the world of ``size`` SKUs under bench/out/; reuse it when present."""
    from auditor.world.generate import generate_world

    d = OUT / f"world-{size}-s{seed}"
    manifest = d / "manifest.json"
    if manifest.exists():
        return d
    generate_world(d, size=size, seed=seed, base_url=BASE_URL)
    return d


FILE_CHANNELS = ["google", "meta", "amazon", "pos-berlin", "pos-munich"]


def checks_on_world(size: int) -> list[list[Any]]:
    """bench_checks per file channel of the audited world (runs the scaling audit first
    when its store is missing): listings read by the connectors and linked by the real
    linker, the master's real history, best of 3 per channel."""
    import dataclasses

    from auditor import plugins
    from auditor.config import load_config
    from auditor.connector import SourceContext
    from auditor.linking import Linker
    from auditor.storage import open_store, store_exists
    from bench.checks import bench_checks
    from bench.common import isolated

    world, work = ensure_world(size), OUT / f"scale-{size}"
    if not (work / "config.toml").exists() or \
            not store_exists(load_config(work / "config.toml").store_url):
        isolated(audit, world, work, FILE_CHANNELS, True, False)
    cfg = load_config(work / "config.toml")
    store = open_store(cfg.store_url)
    now = _now(world)
    master, history = store.current_master(), store.master_history()
    linker = Linker(master, cfg.linking)
    rows, total_n, total_s = [], 0, 0.0
    for name in FILE_CHANNELS:
        ch = cfg.channel(name)
        ctx = SourceContext(channel=ch, now=now, http_options=cfg.http, store=store,
                            master=master)
        listings = [dataclasses.replace(li, sku=linker.link(li).sku)
                    for li in plugins.connectors()[ch.type](ch).read(ctx)]
        best = None
        for _ in range(3):
            r = bench_checks(master, listings, ch.options, check_options=ch.checks,
                             history=history, now=now, channel=name)
            best = r if best is None or r["per_s"] > best["per_s"] else best
        rows.append([name, best["comparisons"], round(best["seconds"], 2),
                     round(best["per_s"]), best["not_passed"]])
        total_n += best["comparisons"]
        total_s += best["seconds"]
    store.close()
    rows.append(["**all**", total_n, round(total_s, 2), round(total_n / total_s), ""])
    return rows


def parse_master(world: Path) -> float:
    """Seconds to merely parse the world's master export (as the demo config reads it), in
    one process: the bare parse the audit is held to (as the feeds are parsed), whereas the
    audit reads a large master on every core (``auditor.masterparts``)."""
    from auditor import masterparts
    from auditor.master import load_master

    masterparts.PARTS = 1
    t0 = time.perf_counter()
    imp = load_master({"type": "csv", "source": str(world / "master.csv"), "encoding": "auto"},
                      world)
    assert imp.records and not imp.errors, imp.errors[:3]
    return time.perf_counter() - t0


def _now(world: Path) -> datetime:
    return datetime.fromisoformat(json.loads((world / "manifest.json").read_text())["now"])


def audit(world: Path, workdir: Path, channels: list[str] | None = None,
          fresh: bool = True, images: bool = True, store_url: str | None = None
          ) -> dict[str, Any]:
    """Serve the world's shop, write the demo config, import last week's master, then audit.

    Returns wall seconds per stage and per channel, counts, and the quality score.
    Runs in the calling process (wrap it in ``isolated`` to measure RSS). ``store_url``:
    another store than the SQLite file in ``workdir`` (``postgresql://...``).
    """
    from auditor.cli import _after_run_alerts
    from auditor.config import load_config
    from auditor.demo import config_text
    from auditor.runner import import_master, run_audit
    from auditor.storage import open_store, remove_store
    from auditor.world.shop import ShopServer
    from auditor.world.truth import score

    workdir.mkdir(parents=True, exist_ok=True)
    now = _now(world)
    with ShopServer(world, port=PORT) as shop:
        text = config_text(shop.base_url).replace('"world/', f'"{world}/')
        if not images:
            text = text.replace("[store]", "[checks.image]\nenabled = false\n\n[store]", 1)
        if store_url:
            text = text.replace('path = "auditor.db"', f'url = "{store_url}"', 1)
        # The world's files name the shop by the base URL it was generated with.
        (workdir / "config.toml").write_text(text)
        cfg = load_config(workdir / "config.toml")
        if fresh:
            remove_store(cfg.store_url)
        store = open_store(cfg.store_url)
        try:
            t_prev = None
            if fresh:
                t0 = time.perf_counter()
                previous = dataclasses.replace(
                    cfg, master={**cfg.master, "source": str(world / "master_previous.csv")})
                import_master(previous, store, now - timedelta(days=7))
                t_prev = time.perf_counter() - t0
            t0 = time.perf_counter()
            report = run_audit(cfg, store, channels, now=now)
            wall = time.perf_counter() - t0
            # What `auditor run` does next, before it returns to the user: the alerts'
            # evaluation and the propagation latency of the master's changes
            # (auditor.cli._after_run_alerts).
            t0, c0 = time.perf_counter(), time.process_time()
            _after_run_alerts(cfg, store, now)
            after, after_cpu = time.perf_counter() - t0, time.process_time() - c0
            findings = [f.to_dict() for f in store.findings(state="open")]
        finally:
            store.close()
    usage = {who: resource.getrusage(w) for who, w in (("self", resource.RUSAGE_SELF),
                                                        ("children", resource.RUSAGE_CHILDREN))}
    names = [c.channel for c in report.channels]
    scores = score(findings, world, names)
    return {
        "wall_seconds": wall, "previous_master_seconds": t_prev,
        # the step after the run that `auditor run` also waits for (alerts, propagation)
        "after_run_seconds": after, "after_run_cpu_seconds": after_cpu,
        # CPU of this process and of the channel workers it forked (whole process life).
        "cpu_seconds": sum(u.ru_utime + u.ru_stime for u in usage.values()),
        "worker_peak_rss_mib": usage["children"].ru_maxrss / 1024,
        "master": report.master,
        "channels": [{"channel": c.channel, "status": c.status.value, "listings": c.listings,
                      "seconds": c.seconds, "errors": c.errors} for c in report.channels],
        "listings": sum(c.listings for c in report.channels),
        # comparisons left not_evaluated because the page read was uncertain, and
        # failed/warn findings on such reads (auditor/confidence.py: always 0)
        "uncertain_reads": sum(1 for f in findings if "low confidence" in (f.get("message")
                                                                           or "")),
        "quality": {k: dataclasses.asdict(v) | {"precision": v.precision, "recall": v.recall}
                    for k, v in scores.items()},
    }
