"""Where a run's memory goes: the loaded master, its indexes, history and plan.

    python -m bench.memory WORLD_DIR [--limit N]

Reads the world's last-week master into a temporary store, then measures with
tracemalloc (bytes allocated and still held) each part a run holds while it
audits: the master as read from the file, the same master read back from the
store, the linker's key indexes, the title-matching index, the history and the
import plan. Prints bytes per SKU. Works against any checkout on PYTHONPATH (so
the same script measures the code before and after a change).
"""

from __future__ import annotations

import argparse
import gc
import json
import tempfile
import time
import tracemalloc
from datetime import datetime, timedelta
from pathlib import Path

import orjson


HELD = "held: "  # rows held while auditing


def _held(fn):
    gc.collect()
    before = tracemalloc.get_traced_memory()[0]
    t0 = time.process_time()
    out = fn()
    gc.collect()
    return out, tracemalloc.get_traced_memory()[0] - before, time.process_time() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("world", type=Path)
    ap.add_argument("--limit", type=int, default=0, help="first N master rows only")
    ap.add_argument("--write", action="store_true", help="append the table to docs/benchmarks.md")
    a = ap.parse_args()

    from auditor.linking import KEY_KINDS, Linker
    from auditor.master import load_master
    from auditor.storage import open_store

    now = datetime.fromisoformat(json.loads((a.world / "manifest.json").read_text())["now"])
    opts = {"type": "csv", "encoding": "auto"}
    with tempfile.TemporaryDirectory() as tmp:
        src = {}
        for name in ("master_previous.csv", "master.csv"):
            p = a.world / name
            if a.limit:
                lines = p.read_text(encoding="utf-8").splitlines(keepends=True)[:a.limit + 1]
                p = Path(tmp) / name
                p.write_text("".join(lines), encoding="utf-8")
            src[name] = p
        store = open_store(f"sqlite:///{tmp}/m.db")
        prev = load_master({**opts, "source": str(src["master_previous.csv"])}, a.world)
        store.save_master(prev.records, "prev", None, now - timedelta(days=7))
        del prev
        rows = []
        tracemalloc.start()

        def read():
            return load_master({**opts, "source": str(src["master.csv"])}, a.world)

        imp, b_imp, t_imp = _held(read)
        n = len(imp.records)
        rows.append((f"master as read from the file ({type(imp.records).__name__})",
                     b_imp, t_imp))
        def decoded(recs=imp.records):  # each record decoded from its body, nothing shared
            from auditor import codec
            return {r.sku: codec.master_from_dict(orjson.loads(codec.body(r))) for r in recs}

        records, b_rec, t_rec = _held(decoded)
        del decoded
        rows.append(("the same as a dict of MasterRecord (what runs held before)", b_rec, t_rec))
        del records

        def plan_it(recs=imp.records):
            return store.plan_master(recs.master() if hasattr(recs, "master")
                                     else {r.sku: r for r in recs}, now)

        plan, b_plan, t_plan = _held(plan_it)
        del plan_it
        rows.append((f"import plan ({len(plan.writes)} writes, {len(plan.replaced)} replaced)",
                     b_plan, t_plan))
        del plan, imp
        gc.collect()
        store.save_master(read().records, "now", None, now)
        master, b_cur, t_cur = _held(store.current_master)
        rows.append((f"{HELD}master read from the store (current_master, "
                     f"{type(master).__name__})",
                     b_cur, t_cur))
        history, b_hist, t_hist = _held(store.master_history)
        rows.append((f"{HELD}history ({len(history)} SKUs with earlier versions)", b_hist, t_hist))
        linker, b_link, t_link = _held(lambda: Linker(master, {"order": list(KEY_KINDS),
                                                               "fuzzy": False}))
        rows.append((f"{HELD}linker: SKU index", b_link, t_link))
        for kind in list(KEY_KINDS)[1:]:
            _, b, t = _held(lambda k=kind: linker.index[k])
            rows.append((f"{HELD}linker: {kind} index", b, t))
        held = sum(b for label, b, _t in rows if label.startswith(HELD))
        # The title-matching index is built on first need (a listing no key links);
        # the title normalizer's cache it fills is bounded and shared with the checks,
        # so it is measured apart.
        from auditor.text import normalize_title

        normalize_title.cache_clear()
        linker.fuzzy = True
        _, b_mi, t_mi = _held(lambda: linker.match_index)
        cache = normalize_title.cache_info().currsize
        _, b_cache, _t = _held(normalize_title.cache_clear)
        b_mi += b_cache  # (what clearing it gave back, a negative number)
        rows.append(("linker: title-matching index (MatchIndex), once built", b_mi, t_mi))
        tracemalloc.stop()
        store.close()
    print(f"{n:,} SKUs")
    out = [[label, round(b / 2**20, 1), round(b / n), round(t, 1)] for label, b, t in rows]
    out.append(["**held while auditing, every listing linked by a key (master + history + "
                "key indexes)**", round(held / 2**20, 1), round(held / n), ""])
    out.append(["**held while auditing, once a listing needed the MatchIndex**",
                round((held + b_mi) / 2**20, 1), round((held + b_mi) / n), ""])
    out.append([f"(not per SKU) title normalizer cache: {cache:,} titles, bounded at "
                f"{normalize_title.cache_info().maxsize:,}", round(-b_cache / 2**20, 1), "", ""])
    from bench.common import record, table

    record("Memory per SKU (the loaded master)", [table(
        f"{n:,} SKUs of {a.world.name}: bytes allocated and still held after each step "
        "(tracemalloc), CPU seconds under tracemalloc", ["part", "MiB", "bytes per SKU", "cpu s"],
        out)], a.write, command="python -m bench.memory")


if __name__ == "__main__":
    main()
