"""`auditor demo`: a generated shop and its channels, audited end to end, offline.

Generates a ~200-SKU world with planted drift, serves its web shop on
127.0.0.1, writes a commented config.toml with one channel per connector type
that is installed, imports last week's master as history, runs a real audit
and prints where to look next. Exit 0 when the demo ran (its findings are
planted on purpose), 2 when it could not run.
"""

from __future__ import annotations

import dataclasses
import os
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from auditor import plugins, wording
from auditor.config import CHANNEL_OPTIONS
from auditor.terminal import safe

if TYPE_CHECKING:
    from auditor.runner import RunReport

DEMO_SIZE = 200
DEMO_SEED = 1
DEMO_DRIFT_RATE = 0.12  # a little more drift than the benchmark default: more to look at
# The demo shop's robots.txt keeps a Crawl-delay (crawlers must honour one) but a short
# one, so the whole demo stays well under a minute.
DEMO_CRAWL_DELAY = 0.05
# `auditor demo --serve`: every channel every quarter of an hour, so a person watching the
# metrics sees audits happen.
DEMO_SCHEDULE = "*/15 * * * *"


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{_key(k)} = {_toml_value(x)}" for k, x in v.items()) + " }"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    s = str(v).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{s}"'


def _key(k: str) -> str:
    return k if k.replace("_", "").replace("-", "").isalnum() else _toml_value(k)


def demo_channels(base_url: str) -> list[dict[str, Any]]:
    """Every channel the demo world offers, with the options its connector may take.

    Keys a connector does not declare are dropped when the config is written, so
    the list can name options of connectors that are not installed yet.
    """
    return [
        {"comment": "The web shop, crawled from its sitemap (JSON-LD, microdata, OpenGraph, "
                    "plain HTML pages).",
         "name": "site", "type": "site", "source": f"{base_url}/sitemap.xml",
         # The demo shop's robots.txt asks for a Crawl-delay; it is ours, so the
         # channel overrides it to keep the demo quick.
         "options": {"crawl_delay": 0.0}},
        {"comment": "Google Merchant Center feed (RSS 2.0 XML).",
         "name": "google", "type": "google_merchant", "source": "world/feeds/google.xml"},
        {"comment": "Meta (Facebook/Instagram) catalog CSV, priced in GBP.",
         "name": "meta", "type": "meta_catalog", "source": "world/feeds/meta.csv"},
        {"comment": "Amazon 'All Listings' report; prices carry no currency.",
         "name": "amazon", "type": "amazon_listings", "source": "world/feeds/amazon.tsv",
         "options": {"currency": "EUR"}},
        {"comment": "Shopify storefront /products.json (paged).",
         "name": "shopify", "type": "shopify", "source": f"{base_url}/products.json",
         "options": {"currency": "EUR"}},
        *({"comment": f"POS export of the {store} store: ';'-separated, Windows-1252, "
                      "prices include 20% VAT.",
           "name": f"pos-{store.lower()}", "type": "tabular",
           "source": f"world/feeds/pos-{store.lower()}.csv",
           "options": {"currency": "EUR", "delimiter": ";", "decimal_separator": sep,
                       "encoding": "cp1252",
                       "columns": {"sku": "SKU", "gtin": "EAN", "title": "Item Name",
                                   "price": "Price", "quantity": "Qty"},
                       "location": store},
           # A till export carries no product images: nothing to compare there.
           "checks": {"price": {"tax_inclusive": True, "vat_rate": 0.20},
                      "image": {"enabled": False}}}
          for store, sep in (("Berlin", ","), ("Munich", "."))),
    ]


def config_text(base_url: str) -> str:
    """config.toml for the demo: only channel types (and option keys) that are installed."""
    connectors = plugins.connectors()
    checks = plugins.checks()
    common = {o.name for o in CHANNEL_OPTIONS}
    lines = [
        "# omni-auditor demo configuration, written by `auditor demo`.",
        "# Paths are relative to this file. Re-run the audit with:",
        "#   auditor run --config config.toml   (the demo shop must be running: auditor demo --serve)",
        "",
        "[store]",
        'path = "auditor.db"            # SQLite: master history, listings, findings, runs',
        "",
        "[http]",
        "allow_private = true           # the demo shop listens on 127.0.0.1 (loopback)",
        "",
        "[master]",
        'type = "csv"',
        'source = "world/master.csv"    # the PIM export; world/master_previous.csv is last week\'s',
        'schedule = "0 * * * *"         # `auditor serve` imports it every hour',
        "",
        "[serve]",
        "jitter = 5.0                   # the demo's channels start within 5 s of their time",
        "",
    ]
    skipped = []
    for ch in demo_channels(base_url):
        conn = connectors.get(ch["type"])
        if conn is None:
            skipped.append(f"{ch['name']} ({ch['type']})")
            continue
        allowed = common | {o.name for o in getattr(conn, "options", ())}
        lines += [f"# {ch['comment']}", "[[channels]]", f'name = "{ch["name"]}"',
                  f'type = "{ch["type"]}"', f"source = {_toml_value(ch['source'])}",
                  f'schedule = "{DEMO_SCHEDULE}"      # `auditor serve` audits it then']
        for k, v in ch.get("options", {}).items():
            if k in allowed:
                lines.append(f"{_key(k)} = {_toml_value(v)}")
        for cname, copts in ch.get("checks", {}).items():
            spec = checks.get(cname)
            if spec is None:
                continue
            known = {o.name for o in spec.all_options}
            keep = {k: v for k, v in copts.items() if k in known}
            if keep:
                lines.append(f"[channels.checks.{cname}]")
                lines += [f"{_key(k)} = {_toml_value(v)}" for k, v in keep.items()]
        lines.append("")
    if skipped:
        lines.append("# Channels of the demo world whose connector is not installed: "
                     + ", ".join(skipped))
        lines.append("")
    return "\n".join(lines)


def print_truth(console, findings: list[dict], world_dir: Path, channels: list[str]) -> None:
    """How the audit's findings compare with what was planted, per check."""
    from rich.table import Table

    from auditor.world.truth import read_rows, score

    scores = score(findings, world_dir, channels, plugins.checks())
    t = Table(title="against the planted drift (world/labels.csv), audited channels only",
              title_justify="left")
    for col in ("check", "planted", "found", "missed", "false alarms", "on benign variations"):
        t.add_column(col, justify="left" if col == "check" else "right")
    for name, s in scores.items():
        planted = s.true_positives + s.false_negatives
        if name != "all" and not planted and not s.false_positives:
            continue
        t.add_row(name, str(planted), str(s.true_positives), str(s.false_negatives),
                  str(s.false_positives), str(s.benign_hits))
    console.print(t)
    # a planted drift the channel's source cannot show (a sale price on a report of regular
    # prices) is missed, and the run said why: say so rather than leave "missed" unexplained
    labels = {(r["channel"], r["sku"], r["check"], r["field"])
              for r in read_rows(world_dir / "labels.csv")}
    why = [f for f in findings if f.get("outcome") == "not_evaluated" and
           (f.get("channel"), f.get("sku"), f.get("check"), f.get("field")) in labels]
    if why:
        n = len(why)
        console.print(f"of those missed, {wording.counted(n, 'planted finding')} "
                      f"{'was' if n == 1 else 'were'} not evaluated, the run saying why, e.g. "
                      f"{safe(why[0]['channel'])} {safe(why[0]['sku'])}: "
                      f"{safe(why[0]['message'])}")


def _port_problem(port: int) -> str | None:
    """Why ``auditor serve`` could not listen on 127.0.0.1:``port`` now, or None."""
    import socket

    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            s.bind(("127.0.0.1", port))
        except OSError as e:
            return e.strerror or str(e)
    return None


def run_demo(directory: Path, serve: bool, console, port: int = 8080,
             show_report: Callable[[RunReport], None] | None = None) -> int:
    """Generate, serve, configure and audit the demo world; 0 when it ran, 2 when not.
    ``show_report`` prints the run's summary (the CLI passes its ``print_report``)."""
    if serve and (problem := _port_problem(port)):  # said now, not after the whole audit
        console.print(f"[bold red]demo failed:[/] cannot listen on 127.0.0.1:{port}: "
                      f"{safe(problem)} (another `auditor serve`?); choose a port with --port")
        return 2
    from auditor.config import load_config
    from auditor.errors import AuditorError
    from auditor.runner import import_master, run_audit
    from auditor.storage import open_store, remove_store
    from auditor.world.generate import generate_world
    from auditor.world.shop import ShopServer

    t0 = time.perf_counter()
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    world_dir = directory / "world"
    # the audit's clock is the real time (not the hour): findings, the run and the reads
    # agree on when they happened, and propagation is not the minutes past the hour
    now = datetime.now(timezone.utc).replace(microsecond=0)
    shop = ShopServer(world_dir, crawl_delay=DEMO_CRAWL_DELAY)
    try:
        m = generate_world(world_dir, size=DEMO_SIZE, seed=DEMO_SEED, now=now,
                           drift_rate=DEMO_DRIFT_RATE, base_url=shop.base_url)
        console.print(f"generated {m.size} SKUs ({m.products} products) with {m.labels} planted "
                      f"findings and {m.benign} harmless variations in {safe(world_dir)}")
        config_path = directory / "config.toml"
        config_path.write_text(config_text(shop.base_url), encoding="utf-8")
        shop.start()
        console.print(f"demo shop serving at {shop.base_url}")
        cfg = load_config(config_path)
        console.print("channels: " + ", ".join(f"{c.name} ({c.type})" for c in cfg.channels))
        remove_store(cfg.store_url)  # each demo starts from a fresh store: the shop's port changes
        store = open_store(cfg.store_url)
        try:
            with store.run_lock(0):
                previous = dataclasses.replace(
                    cfg, master={**cfg.master, "source": "world/master_previous.csv"})
                import_master(previous, store, now - timedelta(days=7))
                console.print(f"history: last week's master (world/master_previous.csv) imported "
                              f"as of {(now - timedelta(days=7)):%Y-%m-%d}, so this week's "
                              f"shows as changed and old values on channels as stale")
                report = run_audit(cfg, store, now=now)
                findings = [f.to_dict() for f in store.findings(state="open")]
                from auditor.reports.run_report import write_report

                report_path = write_report(store, directory / "report.html")
        finally:
            store.close()
        if show_report is not None:
            show_report(report)
        print_truth(console, findings, world_dir, [c.name for c in cfg.channels])
        console.print(f"\ndemo finished in {time.perf_counter() - t0:.1f}s. The findings are "
                      f"planted on purpose (ground truth: {safe(world_dir / 'labels.csv')}), so "
                      "the demo exits 0.")
        console.print("\nWhere to look next:")
        api = f"http://127.0.0.1:{port}"
        nxt: list[tuple[str, str]] = [
            (report_path.resolve().as_uri(), "the HTML report, in a browser"),
            (f"auditor findings --open --config {config_path}", "what is wrong now"),
            (f"auditor findings --format json --config {config_path}", ""),
            (f"auditor links --config {config_path}", "how listings matched"),
            (f"auditor runs --errors --config {config_path}", "run history, source errors")]
        if serve:
            nxt += [(f"{api}/", "the web UI: findings inbox, products on every channel, link "
                     "suggestions, runs" + ("" if os.environ.get("AUDITOR_UI_PASSWORD") else
                                            " (read-only: start with AUDITOR_UI_PASSWORD=... "
                                            "set to log in and acknowledge, snooze or confirm "
                                            "links)")),
                    (f"{shop.base_url}/collections/all", "the demo shop"),
                    (f"{api}/metrics", "Prometheus metrics"),
                    (f"{api}/docs", f"the JSON API (OpenAPI: {api}/openapi.json)"),
                    (f"{api}/api/findings?state=open&severity=critical", "")]
        else:
            nxt.append(("auditor demo --serve", "keep the shop running and run auditor serve "
                        "on it (web UI, metrics, API, schedules)"))
        width = max(len(what) for what, _ in nxt)
        for what, why in nxt:  # the comments in one column
            console.print(f"  {safe(what)}" + (f"{' ' * (width - len(what))}   # {safe(why)}"
                                                if why else ""))
        if serve:
            import logging

            from auditor.service.app import serve as run_service

            console.print(ops_line(port))
            console.print(f"\nauditor serve on {api}: every channel is audited again on its "
                          f"schedule ({DEMO_SCHEDULE}); Ctrl-C stops the service and the shop.")
            # uvicorn logs at the CLI's level (its INFO lines with -v only, as `auditor serve`)
            level = logging.getLevelName(logging.getLogger().getEffectiveLevel()).lower()
            if run_service(config_path, "127.0.0.1", port, log_level=level) != 0:
                return 2
        return 0 if report.exit_code in (0, 1) else 2
    except (AuditorError, OSError) as e:
        console.print(f"[bold red]demo failed:[/] {safe(e)}")
        return 2
    finally:
        shop.stop()


def ops_line(port: int) -> str:
    """Where the Grafana dashboard and the Prometheus config are: absolute paths in a
    source checkout (the demo is often run from elsewhere), else where to find them (a
    wheel does not ship ``ops/``)."""
    ops = Path(__file__).resolve().parent.parent / "ops"
    dashboard, prom = ops / "grafana" / "auditor-dashboard.json", ops / "prometheus" / "prometheus.yml"
    if dashboard.is_file() and prom.is_file():
        return (f"  {dashboard}   # import into Grafana, scrape 127.0.0.1:{port} with {prom}")
    return ("  ops/grafana/auditor-dashboard.json in the omni-auditor source repository   # "
            f"import into Grafana, scrape 127.0.0.1:{port} with ops/prometheus/prometheus.yml")
