"""Feed parsing throughput and memory: connectors reading synthetic feeds.

``bench_feed(connector_type, path, options)`` parses one feed file through a
connector in a child process (so peak RSS is that parse's alone) and returns
``{"rows", "seconds", "rows_per_s", "peak_rss_mb"}`` (plus ``errors``,
``cpu_seconds`` and ``rows_per_cpu_s``). ``rows`` counts Listings: a POS export
with two store columns yields two per row.

Run ``python -m bench.feeds [--rows N] [--repeat K] [--gzip] [--only a,b]`` to
write synthetic feeds of N rows to a temporary folder and print a table.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent


def bench_feed(connector_type: str, path: str | Path, options: dict[str, Any] | None = None
               ) -> dict[str, Any]:
    """Parse ``path`` with the connector in a subprocess; rows, seconds, rows/s, peak RSS."""
    cmd = [sys.executable, "-m", "bench.feeds", "--child", connector_type, str(path),
           json.dumps(options or {})]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"bench child failed: {out.stderr.strip()[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _child(connector_type: str, path: str, options: dict[str, Any]) -> dict[str, Any]:
    from auditor import plugins
    from auditor.config import CHANNEL_OPTIONS, ChannelConfig
    from auditor.connector import SourceContext
    from auditor.options import resolve

    conn = plugins.connectors()[connector_type]
    problems: list[str] = []
    opts = resolve(CHANNEL_OPTIONS + tuple(conn.options),
                   {"name": "bench", "type": connector_type, "source": path, **options},
                   "bench", problems)
    if problems:
        raise SystemExit("; ".join(problems))
    ch = ChannelConfig(name="bench", type=connector_type, source=path, schedule=None,
                       enabled=True, options=opts, checks={}, base_dir=Path("."))
    ctx = SourceContext(channel=ch, now=datetime.now(timezone.utc))
    t0, c0 = time.perf_counter(), time.process_time()
    rows = 0
    for _li in conn(ch).read(ctx):
        rows += 1
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    peak = _peak_rss_mb()
    # CPU seconds as well as wall seconds: on a shared machine other processes
    # take the CPU away, which wall time counts against the parser.
    return {"rows": rows, "errors": ctx.result.errors, "seconds": round(seconds, 3),
            "cpu_seconds": round(cpu, 3),
            "rows_per_s": round(rows / seconds) if seconds else 0,
            "rows_per_cpu_s": round(rows / cpu) if cpu else 0,
            "peak_rss_mb": round(peak, 1)}


def _peak_rss_mb() -> float:
    """This process's peak resident set size in MB.

    VmHWM belongs to the process's own address space; ru_maxrss would also
    count what the parent held when it forked this child (Linux keeps the
    high-water mark across exec).
    """
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


# ----------------------------------------------------------------------------- synthetic feeds

COLORS = ("Red", "Blue", "Green", "Black", "White")
SIZES = ("XS", "S", "M", "L", "XL")


def _gtin(i: int) -> str:
    from auditor.values import gtin_check_digit

    body = f"{400000000000 + i:012d}"
    return body + str(gtin_check_digit(body))


def _price(rnd: random.Random) -> str:
    return f"{rnd.randint(5, 400)}.{rnd.choice(('00', '50', '95', '99'))}"


def write_gm_tsv(path: Path, n: int) -> None:
    """A Google Merchant TSV feed of n items."""
    rnd = random.Random(1)
    with open(path, "w", encoding="utf-8") as f:
        f.write("id\ttitle\tdescription\tlink\timage_link\tadditional_image_link\tprice\t"
                "sale_price\tavailability\tgtin\tbrand\titem_group_id\tcolor\tsize\tcondition\n")
        for i in range(n):
            c, s = COLORS[i % 5], SIZES[(i // 5) % 5]
            p = _price(rnd)
            f.write(f"SKU-{i:07d}\tAcme Tee {i // 25}, {c}, {s}\tSoft cotton tee number {i}.\t"
                    f"https://shop.example/p/{i // 25}?variant={i}\t"
                    f"https://cdn.example/{i}.jpg\thttps://cdn.example/{i}-b.jpg,"
                    f"https://cdn.example/{i}-c.jpg\t{p} EUR\t"
                    f"{'' if i % 3 else p + ' EUR'}\t{'in_stock' if i % 7 else 'out of stock'}\t"
                    f"{_gtin(i)}\tAcme\tG{i // 25}\t{c}\t{s}\tnew\n")


def write_gm_xml(path: Path, n: int) -> None:
    """A Google Merchant RSS feed of n items."""
    rnd = random.Random(2)
    with open(path, "w", encoding="utf-8") as f:
        f.write('<?xml version="1.0"?>\n<rss xmlns:g="http://base.google.com/ns/1.0" '
                'version="2.0"><channel><title>bench</title>\n')
        for i in range(n):
            c, s = COLORS[i % 5], SIZES[(i // 5) % 5]
            f.write(f"<item><g:id>SKU-{i:07d}</g:id><title>Acme Tee {i // 25}, {c}, {s}</title>"
                    f"<description>Soft cotton tee number {i}.</description>"
                    f"<link>https://shop.example/p/{i // 25}?variant={i}</link>"
                    f"<g:image_link>https://cdn.example/{i}.jpg</g:image_link>"
                    f"<g:additional_image_link>https://cdn.example/{i}-b.jpg"
                    f"</g:additional_image_link><g:price>{_price(rnd)} EUR</g:price>"
                    f"<g:availability>in_stock</g:availability><g:gtin>{_gtin(i)}</g:gtin>"
                    f"<g:brand>Acme</g:brand><g:item_group_id>G{i // 25}</g:item_group_id>"
                    f"<g:color>{c}</g:color><g:size>{s}</g:size>"
                    f"<g:condition>new</g:condition></item>\n")
        f.write("</channel></rss>\n")


def write_amazon(path: Path, n: int) -> None:
    """An Amazon all-listings report of n rows."""
    rnd = random.Random(3)
    with open(path, "w", encoding="utf-8") as f:
        f.write("item-name\titem-description\tlisting-id\tseller-sku\tprice\tquantity\t"
                "open-date\timage-url\titem-is-marketplace\tproduct-id-type\titem-condition\t"
                "asin1\tproduct-id\tfulfillment-channel\tstatus\n")
        for i in range(n):
            f.write(f"Acme Tee {i}\tSoft cotton\t{i:010d}\tSKU-{i:07d}\t{_price(rnd)}\t"
                    f"{i % 13}\t2024-01-05 10:00:00 PST\thttps://cdn.example/{i}.jpg\ty\t4\t11\t"
                    f"B0{i:08d}\t{_gtin(i)}\tDEFAULT\tActive\n")


def write_tabular(path: Path, n: int) -> None:
    """A Square-style POS export of n items and two locations."""
    rnd = random.Random(4)
    with open(path, "w", encoding="utf-8") as f:
        f.write("Token,Item Name,Variation Name,SKU,Description,Category,Price,GTIN,"
                "Current Quantity Main St,Current Quantity Airport\n")
        for i in range(n):
            f.write(f"T{i},Acme Tee {i // 25},{COLORS[i % 5]},SKU-{i:07d},Soft cotton,Tees,"
                    f"{_price(rnd)},{_gtin(i)},{i % 9},{i % 4}\n")


FEEDS: dict[str, tuple[str, str, Callable[[Path, int], None], dict[str, Any]]] = {
    "google_merchant_tsv": ("google_merchant", "feed.tsv", write_gm_tsv, {}),
    "google_merchant_xml": ("google_merchant", "feed.xml", write_gm_xml, {}),
    "meta_catalog_tsv": ("meta_catalog", "meta.tsv", write_gm_tsv, {}),
    "amazon_listings": ("amazon_listings", "amazon.txt", write_amazon, {"currency": "EUR"}),
    "tabular_square": ("tabular", "square.csv", write_tabular,
                       {"preset": "square", "currency": "USD"}),
}


def main(argv: list[str] | None = None) -> int:
    """Write synthetic feeds and print a table of rows/s and peak RSS per connector."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--only", default="", help="comma-separated feed names")
    ap.add_argument("--gzip", action="store_true", help="also time gzip-compressed copies")
    ap.add_argument("--repeat", type=int, default=1, help="runs per feed; the fastest is shown")
    ap.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.child:
        print(json.dumps(_child(a.child[0], a.child[1], json.loads(a.child[2]))))
        return 0
    names = [x for x in a.only.split(",") if x] or list(FEEDS)
    print(f"{'feed':24} {'listings':>9} {'seconds':>8} {'rows/s':>9} {'cpu s':>7} "
          f"{'rows/cpu-s':>10} {'peak RSS MB':>12}")
    with tempfile.TemporaryDirectory(prefix="bench-feeds-") as d:
        for name in names:
            ctype, fname, writer, opts = FEEDS[name]
            path = Path(d) / fname
            writer(path, a.rows)
            variants = [(name, path)]
            if a.gzip:
                gz = path.with_name(path.name + ".gz")
                with open(path, "rb") as src, gzip.open(gz, "wb", compresslevel=5) as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
                variants.append((name + ".gz", gz))
            for label, p in variants:
                runs = [bench_feed(ctype, p, opts) for _ in range(max(1, a.repeat))]
                r = min(runs, key=lambda x: x["seconds"])
                print(f"{label:24} {r['rows']:>9} {r['seconds']:>8} {r['rows_per_s']:>9} "
                      f"{r['cpu_seconds']:>7} {r['rows_per_cpu_s']:>10} "
                      f"{r['peak_rss_mb']:>12}", flush=True)
            for _label, p in variants:
                p.unlink()
    return 0


if __name__ == "__main__":
    sys.exit(main())
