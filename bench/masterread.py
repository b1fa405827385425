"""The master export read alone, in one process and in parts (``auditor.masterparts``):
`python -m bench masterread --sizes 250000 1000000`.

Each read runs in a fresh process (``load_master`` on the world's master.csv), one process
then the parts, back to back per size: wall seconds, CPU seconds of the reading process and
of the processes it forked, peak RSS of the reading process. Both reads must give the same
records (their stored hashes are compared).
"""

from __future__ import annotations

import hashlib
import resource
import time
from pathlib import Path
from typing import Any

from bench.common import isolated, record, table
from bench.world_audit import ensure_world


def _read(master: str, parts: int) -> dict[str, Any]:
    from auditor import masterparts
    from auditor.master import load_master

    masterparts.PARTS = parts
    r0, c0 = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    imp = load_master({"type": "csv", "source": master}, Path(master).parent)
    wall = time.perf_counter() - t0
    r1, c1 = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    digest = hashlib.sha256()
    for sku, h in imp.records.master().hashes() or ():  # type: ignore[union-attr]
        digest.update(f"{sku}:{h}\n".encode())
    return {"records": len(imp.records), "errors": len(imp.errors), "wall": wall,
            "cpu": r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime,
            "cpu_children": c1.ru_utime + c1.ru_stime - c0.ru_utime - c0.ru_stime,
            "digest": digest.hexdigest()}


def _load() -> str:
    return " ".join(f"{v:.1f}" for v in __import__("os").getloadavg())


def run(sizes: list[int], write: bool) -> None:
    from auditor import masterparts

    cores = masterparts.cores()
    rows = []
    for size in sizes:
        master = str(ensure_world(size) / "master.csv")
        mb = Path(master).stat().st_size / 1e6
        got = {}
        for parts in (1, cores):
            load = _load()
            res, _, rss = isolated(_read, master, parts)
            got[parts] = res
            rows.append([f"{size:,} ({mb:,.0f} MB)", "one process" if parts == 1 else
                         f"{parts} parts", res["records"], round(res["wall"], 1),
                         round(res["cpu"], 1), round(res["cpu_children"], 1),
                         round(res["cpu"] + res["cpu_children"], 1), round(rss), load])
        one, many = got[1], got[cores]
        if one["digest"] != many["digest"] or one["errors"] != many["errors"]:
            raise SystemExit(f"{size}: the read in parts differs from the read in one process")
        rows.append([f"{size:,}", "**parts / one**", "same records",
                     f"{many['wall'] / one['wall']:.2f}x", f"{many['cpu'] / one['cpu']:.2f}x",
                     "", f"{(many['cpu'] + many['cpu_children']) / one['cpu']:.2f}x", "", ""])
    record("The master export read in parts", [table(
        f"Master export read alone (`load_master`), one process vs {cores} parts "
        f"(`auditor.masterparts`), each in a fresh process",
        ["SKUs (master.csv)", "read", "records", "wall s", "CPU s (reading process)",
         "CPU s (its forks)", "CPU s total", "peak RSS MiB (reading process)",
         "load before"], rows)], write)
