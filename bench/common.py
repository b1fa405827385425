"""Shared benchmark plumbing: isolated measurement, machine facts, tables, the results file."""

from __future__ import annotations

import multiprocessing as mp
import os
import platform
import queue
import resource
import shlex
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "docs" / "benchmarks.md"


def machine() -> str:
    """One line describing where the numbers came from."""
    try:
        cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo")
                    if ln.startswith("model name")), platform.processor())
    except OSError:
        cpu = platform.processor()
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (f"{cpu}, {os.cpu_count()} cores, {mem:.0f} GiB, Python {platform.python_version()}, "
            f"{platform.system()} {platform.release()}")


def _child(fn: Callable, args: tuple, kwargs: dict, q: mp.Queue) -> None:
    t0 = time.perf_counter()
    try:
        res = fn(*args, **kwargs)
        err = None
    except BaseException:  # report, don't hang the parent
        import traceback

        res, err = None, traceback.format_exc()
    secs = time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB -> MiB
    q.put((res, err, secs, rss))


def isolated(fn: Callable, *args: Any, **kwargs: Any) -> tuple[Any, float, float]:
    """Run ``fn`` in a fresh process: (result, seconds, peak RSS in MiB of that process)."""
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_child, args=(fn, args, kwargs, q))
    p.start()
    while True:  # a child that dies before reporting must not hang the benchmark
        try:
            res, err, secs, rss = q.get(timeout=5)
            break
        except queue.Empty:
            if not p.is_alive():
                raise RuntimeError(f"benchmark step {fn.__name__} died with exit code "
                                   f"{p.exitcode}") from None
    p.join()
    if err:
        raise RuntimeError(f"benchmark step {fn.__name__} failed:\n{err}")
    return res, secs, rss


def table(title: str, columns: list[str], rows: list[list[Any]]) -> str:
    """A Markdown table (also readable on a terminal)."""

    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:,.3f}" if abs(v) < 10 else f"{v:,.0f}"
        if isinstance(v, int):
            return f"{v:,}"
        return str(v)

    out = [f"#### {title}", "", "| " + " | ".join(columns) + " |",
           "|" + "|".join("---" for _ in columns) + "|"]
    out += ["| " + " | ".join(fmt(v) for v in r) + " |" for r in rows]
    return "\n".join(out) + "\n"


def record(section: str, tables: list[str], write: bool = True,
           command: str | None = None) -> None:
    """Print the tables and append them, with machine, date and command, to docs/benchmarks.md.
    ``command``: the script that ran, when not ``python -m bench``."""
    text = "\n".join(tables)
    print(text)
    if not write:
        return
    cmd = (command or "python -m bench") + " " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    block = (f"\n### {section} — {stamp}\n\n- machine: {machine()}\n- command: `{cmd}`\n\n"
             f"{text}")
    if not RESULTS.exists():
        RESULTS.write_text("# Benchmarks\n\nNumbers measured by `python -m bench` on the machine "
                           "named with each run; newest runs at the end.\n")
    with RESULTS.open("a") as f:
        f.write(block)
