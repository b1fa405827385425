"""Benchmarks: `python -m bench all --size 10000` (or one of the parts below).

    quality   full audit of a generated world: precision and recall per check, benign hits,
              wall time per channel and stage, peak RSS
    reaudit   the same audit twice on an unchanged world: speed-up of the second
    feeds     connector parsing of the world's feeds (rows/s, peak RSS), and --rows synthetic
    checks    non-image listing comparisons per second (one core)
    images    image matching matrix and decode+hash throughput
    crawl     our crawler vs Scrapy on the generated shop, same concurrency
    scaling   audit wall time and RSS at several world sizes (file channels), vs parse time
    extract   extraction quality on real saved product pages (the shared dev set beside the
              repository; bench/pages/ when present): precision, recall, F1 per field, per
              structured-data kind, and with the structured data removed
    link      linking quality on the devsets in ../shared and the world with one channel
              stripped of its keys (precision, recall, F1), and --link-scale: N unkeyed
              listings against a generated master, link time vs parse time
    link-train  a logistic regression over the linking evidence, fitted on some sets and
              measured on the others (and grouped k-fold within each) against the rules at
              equal precision; --save-coefficients PATH writes the model fitted on all
    crash     kill -9 an audit at random points (--kills N): integrity, next run, findings
    store     a whole audit (first and repeat) on SQLite and on PostgreSQL (--url, or a
              server started for it), wall and CPU, and the repeat audit's writes
    distributed  `auditor run --distributed` with --workers N `auditor worker` processes on
              PostgreSQL beside one process (SQLite and PostgreSQL), wall and CPU
    masterread  the master export (master.csv of the worlds of --sizes SKUs) read alone,
              in one process and in parts on every core: wall and CPU seconds, peak RSS
    messy     the hand-made messy retail world (tests/fixtures/messy_retail) audited
              through the CLI: planted drifts found, missed, false alarms

Every part prints Markdown tables and appends them, with machine, date and command,
to docs/benchmarks.md (``--no-write`` to only print). Worlds are generated once under
bench/out/ and reused.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path
from typing import Any

from bench.common import isolated, record, table
from bench.world_audit import FILE_CHANNELS, OUT, audit, checks_on_world, ensure_world



def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v:.3f}"


def part_quality(size: int, write: bool) -> dict[str, Any]:
    world = ensure_world(size)
    res, secs, rss = isolated(audit, world, OUT / f"audit-{size}")
    q = res["quality"]
    rows = [[k, v["true_positives"] + v["false_negatives"], v["true_positives"],
             v["false_positives"], v["false_negatives"], _pct(v["precision"]),
             _pct(v["recall"]), v["benign_hits"]] for k, v in q.items()]
    t1 = table(f"Detection quality, world of {size:,} SKUs (all channels, images on); "
               f"{res.get('uncertain_reads', 0)} comparisons not evaluated because a page "
               f"was read with low confidence",
               ["check", "planted", "found", "false alarms", "missed", "precision", "recall",
                "hits on benign variations"], rows)
    ch_rows = [[c["channel"], c["status"], c["listings"], round(c["seconds"], 2),
                round(c["listings"] / c["seconds"]) if c["seconds"] else "-"]
               for c in res["channels"]]
    ch_rows.append(["**whole audit**", "", res["listings"], round(res["wall_seconds"], 2),
                    round(res["listings"] / res["wall_seconds"])])
    t2 = table(f"Audit wall time per channel (read + link + check + store), {size:,} SKUs; "
               f"process peak RSS {rss:,.0f} MiB",
               ["channel", "status", "listings", "seconds", "listings/s"], ch_rows)
    record(f"Quality and audit, {size:,} SKUs", [t1, t2], write)
    return res


def part_reaudit(size: int, write: bool) -> None:
    world = ensure_world(size)
    work = OUT / f"reaudit-{size}"
    first, _, rss1 = isolated(audit, world, work, None, True)
    second, _, rss2 = isolated(audit, world, work, None, False)
    rows = [[c1["channel"], round(c1["seconds"], 2), round(c2["seconds"], 2),
             f"{c1['seconds'] / c2['seconds']:.1f}x" if c2["seconds"] else "-"]
            for c1, c2 in zip(first["channels"], second["channels"], strict=True)]
    rows.append(["**whole audit**", round(first["wall_seconds"], 2),
                 round(second["wall_seconds"], 2),
                 f"{first['wall_seconds'] / second['wall_seconds']:.1f}x"])
    record(f"Re-audit of an unchanged world, {size:,} SKUs", [table(
        f"First and second audit (peak RSS {rss1:,.0f} / {rss2:,.0f} MiB)",
        ["channel", "first s", "second s", "speed-up"], rows)], write)


def part_feeds(size: int, rows: int, write: bool) -> None:
    from bench.feeds import bench_feed

    world = ensure_world(size)
    feeds = world / "feeds"
    cases = [
        ("google XML", "google_merchant", feeds / "google.xml", {}),
        ("google TSV", "google_merchant", feeds / "google.tsv", {}),
        ("meta CSV", "meta_catalog", feeds / "meta.csv", {}),
        ("amazon TSV", "amazon_listings", feeds / "amazon.tsv", {"currency": "EUR"}),
        ("POS CSV (cp1252, ;)", "tabular", feeds / "pos-berlin.csv",
         {"currency": "EUR", "delimiter": ";", "decimal_separator": ",", "encoding": "cp1252",
          "columns": {"sku": "SKU", "gtin": "EAN", "title": "Item Name", "price": "Price",
                      "quantity": "Qty"}}),
    ]
    out = []
    for name, ctype, path, opts in cases:
        r = bench_feed(ctype, path, opts)
        out.append([name, r["rows"], r["seconds"], r["rows_per_s"], r["rows_per_cpu_s"],
                     r["peak_rss_mb"]])
    tables = [table(f"Feed parsing into Listing objects, world of {size:,} SKUs",
                    ["feed", "listings", "seconds", "listings/s", "listings/cpu-s",
                     "peak RSS MiB"], out)]
    if rows:
        import tempfile

        from bench.feeds import write_gm_tsv, write_gm_xml

        tmp = Path(tempfile.mkdtemp(prefix="bench-feeds-"))
        try:
            big = []
            for name, ctype, writer, fname in (
                    ("google TSV", "google_merchant", write_gm_tsv, "g.tsv"),
                    ("google XML", "google_merchant", write_gm_xml, "g.xml")):
                writer(tmp / fname, rows)
                r = bench_feed(ctype, tmp / fname, {})
                big.append([name, r["rows"], r["seconds"], r["rows_per_s"], r["rows_per_cpu_s"],
                            r["peak_rss_mb"]])
                (tmp / fname).unlink()
            tables.append(table(f"Feed parsing, {rows:,}-row synthetic feeds (streaming)",
                                ["feed", "listings", "seconds", "listings/s", "listings/cpu-s",
                                 "peak RSS MiB"], big))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    record("Feed parsing", tables, write)


def part_checks(masters: int, listings: int, write: bool) -> None:
    from auditor.compact import compact
    from bench.checks import bench_checks, synthetic

    rows = []
    for drift in (0.02, 0.08):
        master, ls, history = synthetic(masters, listings, drift)
        master = compact(master)  # as a run holds it; each lookup is timed with the checks
        best = None
        for _ in range(3):  # best of 3: the machine's other work only slows a run down
            r = bench_checks(master, ls, {"type": "google_merchant"}, history=history)
            best = r if best is None or r["per_s"] > best["per_s"] else best
        rows.append([f"{drift:.0%}", best["comparisons"], round(best["seconds"], 2),
                     round(best["per_s"]), best["not_passed"]])
    world_size = 100_000
    world_rows, _, _ = isolated(checks_on_world, world_size)
    record("Checks throughput", [table(
        f"Non-image checks ({', '.join(best['checks'])}), {listings:,} synthetic listings "
        f"against {masters:,} masters (a CompactMaster, each listing's master looked up "
        f"in the timed loop), one core, CPU seconds, best of 3",
        ["drift", "comparisons", "cpu seconds", "comparisons/s", "not passed"], rows), table(
        f"The same checks on the world of {world_size:,} SKUs (8% drift, 15% benign "
        f"variations, real history), per channel, one core, CPU seconds, best of 3",
        ["channel", "comparisons", "cpu seconds", "comparisons/s", "not passed"],
        world_rows)], write)


def part_images(write: bool) -> None:
    from bench import images

    r, secs, rss = isolated(images.run)
    rows = [[k, v] for k, v in r.items() if not isinstance(v, (dict, list))]
    rows += [[f"throughput: {k}", v] for k, v in (r.get("throughput") or {}).items()]
    record("Image matching", [table("Matrix and 1000x1000 JPEG decode + hash throughput "
                                    "(bench/images.py defaults)", ["measure", "value"], rows)],
           write)


def part_crawl(size: int, pages: int, concurrency: int, write: bool, repeat: int = 3) -> None:
    from statistics import median

    from auditor.world.shop import ShopServer
    from bench import crawl

    world = ensure_world(size)

    def row(name: str, r: dict) -> list:
        return [name, r["pages"], round(r["seconds"], 2), round(r["pages_per_s"], 1),
                round(r["cpu_s"], 2), round(r["pages_per_cpu_s"], 1), r.get("peak_rss_mb", "-")]

    tables = []
    # The shop as generated (five page kinds), then every page as JSON-LD. The Scrapy
    # spider reads JSON-LD, microdata and OpenGraph with extruct; ours also reads the
    # visible HTML of pages without structured data. The two crawlers run `repeat` times,
    # alternating which goes first, and the ratios are taken per repetition (the two
    # runs next to each other share the machine's load), then their median: on a shared
    # machine one run decides nothing.
    for kind, label in ((None, "mixed page kinds"), ("jsonld", "JSON-LD pages only")):
        # No Crawl-delay in robots.txt: Scrapy does not honour it and ours would, which
        # would measure the delay rather than the crawlers.
        # any free port: the crawl reads the shop's own sitemap, not the world's URLs
        reps: list[tuple[dict, dict, dict, float]] = []
        with ShopServer(world, port=0, crawl_delay=None, page_kind=kind) as shop:
            crawl.warm(shop.base_url, pages)  # untimed: the server's first renders
            for i in range(max(1, repeat)):
                if i % 2:
                    scrapy = crawl.scrapy_bench(shop.base_url, concurrency, pages)
                    both = crawl.recrawl_bench(shop.base_url, concurrency, pages)
                else:
                    both = crawl.recrawl_bench(shop.base_url, concurrency, pages)
                    scrapy = crawl.scrapy_bench(shop.base_url, concurrency, pages)
                reps.append((both["first"], both["second"], scrapy, both["speedup"]))
        wall = [o["pages_per_s"] / s["pages_per_s"] if s["pages_per_s"] else 0.0
                for o, _, s, _ in reps]
        cpu = [o["pages_per_cpu_s"] / s["pages_per_cpu_s"] if s["pages_per_cpu_s"] else 0.0
               for o, _, s, _ in reps]
        mid = sorted(range(len(reps)), key=lambda k: cpu[k])[len(reps) // 2]
        ours, again, scrapy, speedup = reps[mid]
        rows = [row("omni-auditor (site channel)", ours),
                row("omni-auditor, second crawl of the unchanged shop", again),
                row(scrapy["crawler"] + " (SitemapSpider + extruct)", scrapy)]
        rows += [[f"repetition {k + 1}: ours/Scrapy", "", "", f"{wall[k]:.2f}x", "",
                  f"{cpu[k]:.2f}x", ""] for k in range(len(reps))]
        tables.append(table(
            f"Generated shop ({size:,} SKUs, {label}), concurrency {concurrency}, one "
            f"invocation, {len(reps)} alternated repetitions: ours/Scrapy median "
            f"{median(wall):.2f}x wall ({min(wall):.2f}-{max(wall):.2f}x), median "
            f"{median(cpu):.2f}x per CPU second ({min(cpu):.2f}-{max(cpu):.2f}x); second crawl "
            f"{speedup:.1f}x faster (rows: the repetition with the median CPU ratio)",
            ["crawler", "pages", "seconds", "pages/s", "CPU s", "pages/cpu-s", "peak RSS MiB"],
            rows))
    record("Crawl vs Scrapy", tables, write)


def part_scaling(sizes: list[int], write: bool, first_only: bool = False,
                 again_only: bool = False) -> None:
    from bench.feeds import bench_feed
    from bench.world_audit import parse_master

    rows = []
    for size in sizes:
        world = ensure_world(size)
        # First audit into an empty store (last week's master imported first, untimed),
        # then the same files again: the steady state of a scheduled audit.
        # --again-only: the repeat alone, on the store an earlier first audit left.
        first, _, rss1 = (None, 0.0, 0.0) if again_only else \
            isolated(audit, world, OUT / f"scale-{size}", FILE_CHANNELS, True, False)
        again, _, rss2 = (None, 0.0, 0.0) if first_only else \
            isolated(audit, world, OUT / f"scale-{size}", FILE_CHANNELS, False, False)
        parse, _, _ = isolated(parse_master, world)
        feeds = world / "feeds"
        for ctype, path, opts in (
                ("google_merchant", feeds / "google.xml", {}),
                ("meta_catalog", feeds / "meta.csv", {}),
                ("amazon_listings", feeds / "amazon.tsv", {"currency": "EUR"}),
                ("tabular", feeds / "pos-berlin.csv", {"currency": "EUR", "delimiter": ";",
                 "decimal_separator": ",", "encoding": "cp1252", "columns": {
                     "sku": "SKU", "gtin": "EAN", "title": "Item Name", "price": "Price",
                     "quantity": "Qty"}}),
                ("tabular", feeds / "pos-munich.csv", {"currency": "EUR", "delimiter": ";",
                 "encoding": "cp1252", "columns": {
                     "sku": "SKU", "gtin": "EAN", "title": "Item Name", "price": "Price",
                     "quantity": "Qty"}})):
            parse += bench_feed(ctype, path, opts)["seconds"]
        for label, res, rss in (("first", first, rss1), ("again", again, rss2)):
            if res is None:  # --first-only, --again-only
                continue
            user = res["wall_seconds"] + res["after_run_seconds"]
            rows.append([size, res["listings"], label, round(parse, 1),
                         round(res["wall_seconds"], 1), f"{res['wall_seconds'] / parse:.2f}x",
                         round(res["after_run_seconds"], 1),
                         round(res.get("after_run_cpu_seconds", 0.0), 1), f"{user / parse:.2f}x",
                         round(res["cpu_seconds"], 1), round(rss),
                         round(res["worker_peak_rss_mib"])])
    record("Scaling", [table(
        "Full audit of the master and the five file channels (no crawl, no images) vs merely "
        "parsing those files one after another in one process; `first` = into an empty store, "
        "`again` = the "
        "same files once more (scheduled steady state); CPU s = the whole benchmark process "
        "(for `first` also importing last week's master) plus its channel workers; after-run s "
        "= what `auditor run` does after the run before it returns (alert evaluation, "
        "propagation latency of master changes), in the `with after-run` ratio; after-run "
        "CPU s = that step's CPU (it runs in the benchmark process)",
        ["SKUs", "listings", "audit", "parse s", "audit s", "audit / parse", "after-run s",
         "after-run CPU s", "with after-run / parse", "CPU s", "peak RSS MiB", "worker peak RSS MiB"], rows)],
           write)


def part_extract(sets: list[str], dump: Path | None, write: bool) -> dict[str, Any]:
    from bench import extract as ex

    dirs = []
    if "shared" in sets:
        d = ex.shared_set()
        if d is None:
            print("shared dev set not found (set AUDITOR_DEVSET_PAGES or clone the repository "
                  "beside shared/): skipped")
        else:
            dirs.append(("shared", d))
    if "repo" in sets and (ex.REPO_SET / "labels.jsonl").is_file():
        dirs.append(("repo", ex.REPO_SET))
    if dump is not None and dump.exists():
        dump.unlink()
    tables, results = [], {}

    def rows(sc: dict) -> list[list]:
        return [[f, s["n"], s["tp"], s["fp"], s["fn"], round(s["precision"], 3),
                 round(s["recall"], 3), round(s["f1"], 3)] for f, s in sc.items()]

    cols = ["field", "labelled", "TP", "FP", "FN", "P", "R", "F1"]
    for name, d in dirs:
        r, _, _ = isolated(ex.run_set_summary, name, d, dump)
        results[name] = r
        tables.append(table(
            f"{name} set ({d.name}/): {r['pages']} pages, {r['domains']} shops, languages "
            f"{', '.join(r['languages'])}; extract median {r['ms_median']:.1f} ms, max "
            f"{r['ms_max']:.0f} ms CPU a page; {r['low_confidence_fields']} low-confidence "
            f"fields", cols, rows(r["all"])))
        kind_rows = []
        for kind, (n, sc) in r["by_kind"].items():
            kind_rows += [[kind, n] + row[:2] + row[5:] for row in rows(sc)]
        tables.append(table(f"{name} set by structured-data kind",
                            ["kind", "pages", "field", "labelled", "P", "R", "F1"], kind_rows))
        # The candidate reader alone: the same pages with their structured data removed
        # (JSON-LD, microdata/RDFa attributes, OpenGraph product tags), a wider test of
        # the reader than the pages that never had any.
        st, _, _ = isolated(ex.run_stripped, d)
        tables.append(table(f"{name} set with its structured data removed (the candidate "
                            f"reader alone, {r['pages']} pages)", cols, rows(st["all"])))
    if tables:
        record("Extraction on real pages", tables, write)
    return results


def part_link(size: int, write: bool, scale_listings: int = 0, masters: int = 250_000,
              workers: int | None = None) -> None:
    from bench import link

    results = [link.evaluate(s, size) for s in (*link.DEVSETS, "world")]
    tables = [table(
        "Pair-level precision, recall and F1 of confident links, and of confident plus "
        f"suggested links (devsets from ../shared/devsets/linking; world of {size:,} SKUs, "
        "Meta channel with SKU, GTIN, MPN and URL stripped)", link.COLUMNS,
        link.rows_for(results))]
    if scale_listings:
        r, _, _ = isolated(link.scale, scale_listings, masters, OUT / "link-scale", workers)
        tables.append(table(
            f"{r['listings']:,} unkeyed listings (Google TSV, the generated catalog's first "
            f"{r['listings']:,} SKUs) against a master of its first {r['masters']:,}: parse "
            "vs link (index build apart; link = every listing plus the channel-wide "
            f"assignment), ranked by {r['workers']} process(es) ([linking] workers); link CPU "
            "s = this process plus the forked ones; CPU seconds beside wall seconds (shared "
            "machine)",
            ["listings", "masters", "parse s", "parse CPU s", "index s", "link s",
             "link CPU s", "link / parse (wall)", "link / parse (CPU)", "linked",
             "linked right", "suggested", "unlinked", "peak RSS MiB", "forked peak RSS MiB"],
            [[r["listings"], r["masters"], round(r["parse_s"], 1), round(r["parse_cpu_s"], 1),
              round(r["index_s"], 1), round(r["link_s"], 1), round(r["link_cpu_s"], 1),
              f"{r['link_s'] / r['parse_s']:.1f}x", f"{r['link_cpu_s'] / r['parse_cpu_s']:.1f}x",
              r["linked"], r["linked_right"], r["suggested"], r["unlinked"],
              round(r["peak_rss_mib"]), round(r["forked_peak_rss_mib"])]]))
    record("Linking quality", tables, write)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    ap.add_argument("part", choices=["all", "quality", "reaudit", "feeds", "checks", "images",
                                     "crawl", "scaling", "link", "extract", "crash",
                                     "store", "distributed", "masterread", "link-train",
                                     "messy"])
    ap.add_argument("--size", type=int, default=2000, help="SKUs in the world")
    ap.add_argument("--rows", type=int, default=0, help="feeds: also a synthetic N-row feed")
    ap.add_argument("--masters", type=int, default=250_000)
    ap.add_argument("--listings", type=int, default=250_000)
    ap.add_argument("--pages", type=int, default=2000, help="crawl: pages per crawler")
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=3,
                    help="crawl: alternated repetitions of both crawlers (median ratios)")
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--set", dest="sets", nargs="+", choices=["shared", "repo"],
                    default=["shared", "repo"], help="extract: which page sets")
    ap.add_argument("--dump", type=Path, help="extract: write predictions (JSONL) here")
    ap.add_argument("--link-scale", type=int, default=0, metavar="N",
                    help="link: also N unkeyed listings against --masters masters")
    ap.add_argument("--link-workers", type=int, default=None, metavar="N",
                    help="link --link-scale: processes ranking the listings (default: "
                         "[linking] workers)")
    ap.add_argument("--save-coefficients", type=Path, metavar="PATH",
                    help="link-train: write the scorer fitted on every set here (JSON)")
    ap.add_argument("--kills", type=int, default=10, help="crash: kill -9 trials")
    ap.add_argument("--url", help="store: the PostgreSQL store to measure (its tables are "
                                  "dropped first); default: a server started for it")
    ap.add_argument("--channels", nargs="+", default=["google", "meta"],
                    help="store: the world's file channels to audit")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2],
                    help="distributed: numbers of `auditor worker` processes to measure")
    ap.add_argument("--shard-size", type=int, default=None,
                    help="distributed: [run] shard_size (default: the config's default)")
    ap.add_argument("--first-only", action="store_true",
                    help="scaling, distributed: only the first audit (not the repeat), for the "
                         "largest sizes")
    ap.add_argument("--again-only", action="store_true",
                    help="scaling: only the repeat audit, on the store of an earlier first audit "
                         "(the largest sizes, in two steps)")
    ap.add_argument("--pg-stats", action="store_true",
                    help="distributed: where the PostgreSQL server's CPU, WAL and rows went in "
                         "each distributed run (statements, process kinds, tables)")
    ap.add_argument("--workers-only", action="store_true",
                    help="distributed: only the --distributed rows (not one process's)")
    ap.add_argument("--pairs", type=int, default=0, metavar="N",
                    help="distributed: N alternations of the --workers counts (first audits, "
                         "each into a new database): each pair's ratios and the medians")
    ap.add_argument("--no-write", action="store_true", help="print only")
    a = ap.parse_args(argv)
    write = not a.no_write
    if a.part == "store":  # not part of `all`: it needs a PostgreSQL server
        from bench import store_audit

        store_audit.run(a.size if a.size != 2000 else 50_000, a.channels, a.url, write)
        return 0
    if a.part == "distributed":  # not part of `all`: it needs a PostgreSQL server
        from bench import distributed

        distributed.run(a.size, a.channels, a.workers, a.shard_size, write, a.first_only,
                        not a.workers_only, a.pairs, a.pg_stats)
        return 0
    if a.part == "link-train":  # not part of `all`: a measurement of a scorer runs do not use
        from bench import linktrain

        linktrain.run(a.size, write, a.save_coefficients)
        return 0
    if a.part == "masterread":  # not part of `all`: the largest worlds
        from bench import masterread

        masterread.run(a.sizes, write)
        return 0
    if a.part == "messy":  # not part of `all`: detection on a small hand-made world
        from bench import messy

        res = messy.run(write)
        return 0 if not res["score"]["missed"] and not res["score"]["false_alarms"] else 1
    if a.part == "crash":  # not part of `all`: it is a robustness trial, not a speed target
        from bench import crash

        res = crash.trials(a.kills, a.size if a.size != 2000 else 300)
        crash.report(res, write)
        shutil.rmtree(res["workdir"], ignore_errors=True)
        return 0 if res["deterministic"] and all(v == a.kills for v in res["ok"].values()) else 1
    parts = ["quality", "reaudit", "feeds", "checks", "images", "crawl", "scaling", "link",
             "extract"] if a.part == "all" else [a.part]
    for part in parts:
        if part == "quality":
            part_quality(a.size, write)
        elif part == "reaudit":
            part_reaudit(a.size, write)
        elif part == "feeds":
            part_feeds(a.size, a.rows, write)
        elif part == "checks":
            part_checks(a.masters, a.listings, write)
        elif part == "images":
            part_images(write)
        elif part == "crawl":
            part_crawl(a.size, a.pages, a.concurrency, write, a.repeat)
        elif part == "scaling":
            part_scaling(a.sizes, write, a.first_only, a.again_only)
        elif part == "extract":
            part_extract(a.sets, a.dump, write)
        elif part == "link":
            part_link(a.size, write, a.link_scale, a.masters, a.link_workers)
    return 0


if __name__ == "__main__":
    sys.exit(main())
