"""Crash trials: `kill -9` an audit at random moments and check that nothing is lost.

    python -m bench crash --kills 24 [--size 300] [--seed 7]
    python -m bench.crash --kills 5 --no-write

For a generated world (bench/out/world-SIZE-s1, served on loopback like the demo):

1. a **baseline** store: last week's master and every channel, audited to completion;
2. a **reference**: a copy of the baseline audited again with this week's master (the
   master commit, the crawl, the feed reads and the image work all happen), done twice
   to show the reference itself is deterministic;
3. **N trials**: a copy of the baseline, the same audit started as its own process group
   and killed with SIGKILL (every worker too) after a random delay within the
   reference's duration; then ``PRAGMA integrity_check``, no download file left behind
   once the next run starts, and the same audit run again to completion, whose open
   findings must equal the reference's exactly (fingerprint, outcome, severity,
   expected and actual value).

Each trial prints what the run was doing when it was killed (its last log line).
Results are printed and appended to docs/benchmarks.md (``--no-write`` to only print).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def _auditor(args: list[str], cwd: Path, **kw: Any) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.Popen([sys.executable, "-m", "auditor", *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, **kw)


def _run(config: Path, now: str) -> tuple[int, float, str, float]:
    """Run an audit to the end: (exit code, seconds, log, seconds to its first log line)."""
    t0 = time.perf_counter()
    p = _auditor(["-v", "run", "--config", str(config), "--now", now], config.parent)
    first = None
    lines = []
    assert p.stderr is not None
    for line in p.stderr:  # the log, as it comes: when does the real work start?
        if first is None:
            first = time.perf_counter() - t0
        lines.append(line)
    p.wait()
    p.stdout.read()
    secs = time.perf_counter() - t0
    return p.returncode, secs, "".join(lines), first if first is not None else 0.0


def _open_findings(config: Path) -> set[tuple]:
    p = _auditor(["findings", "--config", str(config), "--open", "--format", "json"],
                 config.parent)
    out, err = p.communicate()
    if p.returncode not in (0, 1):
        raise RuntimeError(f"auditor findings failed: {err[-2000:]}")
    return {(f["fingerprint"], f["outcome"], f["severity"], f.get("expected"), f.get("actual"))
            for f in json.loads(out or "[]")}


def _integrity(db: Path) -> str:
    con = sqlite3.connect(db)
    try:
        return con.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        con.close()


def _copy_store(src: Path, dst: Path) -> None:
    dst.mkdir(parents=True, exist_ok=True)
    for p in dst.glob("auditor.db*"):
        p.unlink()
    shutil.copy2(src / "auditor.db", dst / "auditor.db")
    (dst / "config.toml").write_text((src / "config.toml").read_text())


def _last_line(text: str) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1][-140:] if lines else "(nothing logged yet)"


def trials(kills: int, size: int = 300, seed: int = 7, workdir: Path | None = None
           ) -> dict[str, Any]:
    """Run the baseline, the reference and ``kills`` killed-then-rerun trials."""
    from auditor.demo import config_text
    from auditor.world.shop import ShopServer
    from bench.world_audit import PORT, _now, ensure_world

    rng = random.Random(seed)
    world = ensure_world(size)
    now = _now(world).isoformat()
    work = Path(workdir or tempfile.mkdtemp(prefix="bench-crash-"))
    tmpdir = work / "tmp"  # the runs' TMPDIR: a killed download's file is visible here
    tmpdir.mkdir(parents=True, exist_ok=True)
    os.environ["TMPDIR"] = str(tmpdir)
    rows: list[list[Any]] = []
    with ShopServer(world, port=PORT) as shop:
        text = config_text(shop.base_url).replace('"world/', f'"{world}/')
        # Two feeds come over HTTP, so kills land in downloads too (their temporary files).
        for feed in ("google.xml", "meta.csv"):
            text = text.replace(f'"{world}/feeds/{feed}"', f'"{shop.base_url}/feeds/{feed}"')
        base = work / "baseline"
        base.mkdir(parents=True, exist_ok=True)
        (base / "config.toml").write_text(text.replace("master.csv", "master_previous.csv", 1))
        code, secs, err, _ = _run(base / "config.toml", now)
        if code not in (0, 1):
            raise RuntimeError(f"baseline run failed ({code}): {err[-2000:]}")
        (base / "config.toml").write_text(text)  # every later run reads this week's master
        refs = []
        ref_secs = []
        starts = []
        for i in range(2):
            d = work / f"reference-{i}"
            _copy_store(base, d)
            code, secs, err, first = _run(d / "config.toml", now)
            if code not in (0, 1):
                raise RuntimeError(f"reference run failed ({code}): {err[-2000:]}")
            refs.append(_open_findings(d / "config.toml"))
            ref_secs.append(secs)
            starts.append(first)
        deterministic = refs[0] == refs[1]
        reference = refs[0]
        duration = min(ref_secs)
        # Kill between the first log line (start-up, imports, done) and the end.
        start = min(starts)
        ok = {"integrity": 0, "completed": 0, "matched": 0, "no_temp_left": 0}
        killed = 0
        for i in range(kills):
            d = work / f"trial-{i}"
            _copy_store(base, d)
            delay = rng.uniform(start, max(start, duration * 0.8))
            p = _auditor(["-v", "run", "--config", str(d / "config.toml"), "--now", now], d)
            time.sleep(delay)
            finished_first = p.poll() is not None
            if not finished_first:
                os.killpg(p.pid, signal.SIGKILL)  # the run and every worker it forked
                killed += 1
            _, err = p.communicate()
            integrity = _integrity(d / "auditor.db")
            code, _, err2, _ = _run(d / "config.toml", now)
            got = _open_findings(d / "config.toml")
            temp_left = [x.name for x in tmpdir.glob("auditor-dl-*.part")]
            row = {"integrity": integrity == "ok", "completed": code in (0, 1),
                   "matched": got == reference, "no_temp_left": not temp_left}
            for k, v in row.items():
                ok[k] += bool(v)
            rows.append([i + 1, f"{delay:.2f}", "finished first" if finished_first
                         else _last_line(err), integrity, code, "yes" if row["matched"] else
                         f"no ({len(got ^ reference)} differ)", len(temp_left)])
            print(f"trial {i + 1}/{kills}: killed at {delay:.2f}s; integrity {integrity}; "
                  f"next run exit {code}; findings {'match' if row['matched'] else 'DIFFER'}",
                  flush=True)
            shutil.rmtree(d, ignore_errors=True)
    return {"size": size, "kills": kills, "killed": killed, "reference_seconds": duration,
            "start_seconds": start,
            "reference_findings": len(reference), "deterministic": deterministic, "ok": ok,
            "rows": rows, "workdir": str(work)}


def report(res: dict[str, Any], write: bool) -> None:
    from bench.common import record, table

    ok, n = res["ok"], res["kills"]
    summary = table(
        f"kill -9 at random points of an audit ({res['size']:,} SKUs, every channel, images "
        f"on; reference run {res['reference_seconds']:.1f} s, its first log line at "
        f"{res['start_seconds']:.1f} s, kills between the two; {res['reference_findings']} open "
        f"findings, reference deterministic: {'yes' if res['deterministic'] else 'NO'})",
        ["trials", "killed mid-run", "integrity_check ok", "next run completed",
         "open findings = reference", "no download file left"],
        [[n, res["killed"], ok["integrity"], ok["completed"], ok["matched"],
          ok["no_temp_left"]]])
    detail = table("Each trial: when it was killed and what the run was doing (last log line)",
                   ["trial", "killed at s", "last log line", "integrity", "next run exit",
                    "findings match", "download files left"], res["rows"])
    record("Crash trials", [summary, detail], write)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.crash", description=__doc__.splitlines()[0])
    ap.add_argument("--kills", type=int, default=10, help="trials (kill -9 then rerun)")
    ap.add_argument("--size", type=int, default=300, help="SKUs in the generated world")
    ap.add_argument("--seed", type=int, default=7, help="seed of the kill times")
    ap.add_argument("--no-write", action="store_true", help="print only")
    a = ap.parse_args(argv)
    res = trials(a.kills, a.size, a.seed)
    report(res, not a.no_write)
    shutil.rmtree(res["workdir"], ignore_errors=True)
    ok = res["ok"]
    return 0 if res["deterministic"] and all(v == a.kills for v in ok.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
