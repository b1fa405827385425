"""A distributed run beside a single-process run: `auditor run --distributed` with N
`auditor worker` processes on PostgreSQL, against `auditor run` in one process.

    python -m bench distributed --size 5000 --workers 1 2 --channels google meta amazon
    python -m bench distributed --size 250000 --workers 1 2 4 --first-only

The generated world's master and file channels (no crawl, no images) are audited twice
into a new store each time: ``first`` into the empty store, ``again`` the same files once
more (every listing unchanged). Measured: wall seconds of the `auditor run` command, and
CPU seconds of the auditor's processes (the run's process, its channel workers, the
`auditor worker` processes) and of the PostgreSQL server's processes (from /proc). The
single-process rows use ``[run] workers = 1``; the distributed rows the default
``[run] shard_size`` unless ``--shard-size`` is given. A PostgreSQL server is started for
the benchmark (tests/pg_server.py's, fsync and synchronous commit on).

The channel phase is the audit after the master is imported: for one process the sum of
its channels' seconds (they run one after the other with ``workers = 1``), for a
distributed run the coordinator's "channels audited in N s" (from the run's master being
ready for the workers, its pack's master part stored, to the last channel finished; the read jobs are
deferred earlier, as the run starts, and parse their feeds meanwhile). Throughput =
listings / channel phase, and listings / wall time in the ratios printed under the table;
each row also carries the machine's 1-minute load average when the run started. Each
process's ``-v`` log is kept beside its config (``run-first.log``, ``worker-N.log``).

Each distributed run's timeline comes from its workers' logs (every job logs its wall
and CPU seconds, its forks' CPU, the seconds it waited for the master or a part of its
pack, and the clock it started at): per job its start and end (seconds since the run
started), wall, CPU and wait, written to ``timeline-STEP.txt`` beside the logs; per
worker its busy, waiting and idle seconds (idle: in no job, before its first, between
two or after its last), recorded under the table.

``--pg-stats`` shows where the server's work went in each distributed run
(``bench/pgstats.py``; the server started with ``pg_stat_statements.track = all``): its
CPU by process kind (client connections by application name, autovacuum, WAL writer ...),
WAL bytes and full-page images, rows inserted / updated / deleted per table, and the top
statements by execution time, shared blocks dirtied and WAL bytes; printed and written to
``pgstats-STEP.txt`` beside the logs::

    python -m bench distributed --size 250000 --channels google meta amazon \
        --workers 1 2 --shard-size 60000 --first-only --workers-only --no-write --pg-stats

``--pairs N`` measures the two-worker target reproducibly: N times one first audit per
``--workers`` count, alternating (1, 2, 1, 2, ...: a load that changes slowly weighs on
both alike), each into a new database dropped afterwards; printed and recorded: each
pair's ratio of wall times and of channel phases, and the medians::

    python -m bench distributed --size 250000 --channels google meta amazon \
        --workers 1 2 --shard-size 60000 --pairs 3
"""

from __future__ import annotations

import re
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path
from statistics import median
from typing import Any

from bench.common import record, table
from bench.store_audit import _postmaster_pid, _server_cpu, _start_server
from bench.world_audit import BASE_URL, OUT, ensure_world

ROOT = Path(__file__).resolve().parent.parent


PACKS: list[str] = []  # the coordinators' master pack lines (see auditor.masterpack)
IDLE: list[list[Any]] = []  # per worker and run: busy, waiting and idle seconds

# A job's line in a worker's ``-v`` log (``auditor.distributed._timed``).
JOB = re.compile(r"run \d+ job (master|read \S+|shard \S+|finish \S+): ([0-9.]+) s \(([0-9.]+) "
                 r"CPU s; forks ([0-9.]+) CPU s; waited ([0-9.]+) s; started at ([0-9.]+)\)")


def timeline(texts: list[str], t0: float, wall: float) -> tuple[list[list[Any]],
                                                                 list[list[Any]]]:
    """From the workers' logs (one text each) and the run's start (``time.time()``) and
    wall seconds: the jobs (worker, job, start, end, wall, CPU, forks' CPU, waited; in
    seconds since ``t0``, by start) and per worker (jobs, busy = in a job and not
    waiting, waiting, idle = in no job, CPU incl. forks, the idle tail after its last job)."""
    jobs: list[list[Any]] = []
    per: list[list[Any]] = []
    for w, text in enumerate(texts):
        mine: list[list[Any]] = []
        for m in JOB.finditer(text):
            start = float(m[6]) - t0
            secs = float(m[2])
            if start < -1 or start > wall:  # another run's
                continue
            mine.append([w, m[1], start, start + secs, secs, float(m[3]), float(m[4]),
                         float(m[5])])
        mine.sort(key=lambda j: j[2])
        jobs += mine
        inside = sum(j[4] for j in mine)
        waited = sum(j[7] for j in mine)
        last = max((j[3] for j in mine), default=0.0)
        per.append([w, len(mine), round(inside - waited, 1), round(waited, 1),
                    round(max(0.0, wall - inside), 1), round(sum(j[5] + j[6] for j in mine), 1),
                    round(max(0.0, wall - last), 1)])
    jobs.sort(key=lambda j: j[2])
    return jobs, per


def _show_timeline(jobs: list[list[Any]], per: list[list[Any]]) -> str:
    lines = ["worker  job                 start    end   wall    CPU  forks waited"]
    lines += [f"{w:>6}  {job:<18} {a:6.1f} {b:6.1f} {s:6.1f} {c:6.1f} {f:6.1f} {x:6.1f}"
              for w, job, a, b, s, c, f, x in jobs]
    lines += ["", "worker  jobs   busy waited   idle    CPU   tail"]
    lines += [f"{w:>6} {n:5} {b:6.1f} {x:6.1f} {i:6.1f} {c:6.1f} {t:6.1f}"
              for w, n, b, x, i, c, t in per]
    return "\n".join(lines) + "\n"


def _children_cpu() -> float:
    u = resource.getrusage(resource.RUSAGE_CHILDREN)
    return u.ru_utime + u.ru_stime


def _config(world: Path, work: Path, store_line: str, run: str) -> Path:
    from auditor.demo import config_text

    work.mkdir(parents=True, exist_ok=True)
    text = config_text(BASE_URL).replace('"world/', f'"{world}/')
    text = text.replace("[store]", "[checks.image]\nenabled = false\n\n[store]", 1)
    text, n = re.subn(r'(?m)^path = "auditor\.db".*$', store_line, text)
    assert n == 1
    text = text.replace("[master]\n", f"[run]\n{run}\n\n[master]\n", 1)
    (work / "config.toml").write_text(text)
    return work / "config.toml"


def _auditor(*args: str | Path) -> subprocess.CompletedProcess:
    r = subprocess.run([sys.executable, "-m", "auditor", *map(str, args)], cwd=ROOT,
                       capture_output=True, text=True, timeout=7200)
    if r.returncode not in (0, 1):
        raise RuntimeError(f"auditor {' '.join(map(str, args))} exited {r.returncode}:\n"
                           f"{r.stdout[-2000:]}{r.stderr[-3000:]}")
    return r


def _steal() -> float:
    """Seconds of CPU the hypervisor gave other guests while this one wanted it (steal,
    all cores, from /proc/stat): a quiet machine whose host is busy runs slower."""
    import os

    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()
    return int(fields[8]) / os.sysconf("SC_CLK_TCK") if len(fields) > 8 else 0.0


def _load() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def _phase(r: subprocess.CompletedProcess, summary: dict[str, Any]) -> float:
    m = re.findall(r"channels audited in ([0-9.]+) s", r.stderr)
    if m:
        return float(m[-1])
    return sum(c.get("seconds") or 0.0 for c in summary["channels"])


def _runs(cfg: Path, channels: list[str], extra: tuple[str, ...], server: list[int],
          workers: int = 0, steps: tuple[str, ...] = ("first", "again"),
          stats: tuple[Any, str] | None = None) -> list[list[Any]]:
    """First and repeat audit; with ``workers``, that many `auditor worker` processes
    are started before and stopped after. CPU: the `auditor run` process (and its
    channel workers) from this process's children usage, the live `auditor worker`
    processes and the server's from /proc. ``stats``: (the server, the store's URL): where
    the server's work went in each step (``bench.pgstats``), printed and written to
    ``pgstats-STEP.txt`` beside the logs."""
    import json

    from bench.pgstats import PgStats

    # Each worker in a session of its own, as separate services (or machines) are: with the
    # kernel's autogroup scheduling (/proc/sys/kernel/sched_autogroup_enabled), a busy
    # machine's CPU is shared by session first, so workers started in the benchmark's own
    # session would share one session's CPU however many there are.
    # Each process's log (``auditor -v``: master steps, every job's wall and CPU seconds)
    # beside its config: worker-N.log and run-STEP.log.
    logs = [open(cfg.parent / f"worker-{i}.log", "w") for i in range(workers)]  # noqa: SIM115
    procs = [subprocess.Popen([sys.executable, "-m", "auditor", "-v", "worker", "--config",
                               str(cfg)], cwd=ROOT, stdout=subprocess.DEVNULL,
                              stderr=log, start_new_session=True)
             for log in logs]
    pids = [p.pid for p in procs]
    out = []
    try:
        if procs:
            time.sleep(3)  # the workers import and connect before the clock starts
        chans = [a for c in channels for a in ("--channel", c)]
        for step in steps:
            cpu0, wcpu0, srv0 = _children_cpu(), _server_cpu(pids), _server_cpu(server)
            load, steal = _load(), _steal()
            watch = PgStats(stats[0].url(), stats[1], server[0]) if stats and server else None
            if watch:
                watch.start()
            epoch = time.time()
            t0 = time.perf_counter()
            r = _auditor("-v", "run", "--config", cfg, "--format", "json", *chans, *extra)
            wall = time.perf_counter() - t0
            cpu = _children_cpu() - cpu0 + _server_cpu(pids) - wcpu0
            srv = _server_cpu(server) - srv0 if server else None
            if watch:
                shown = watch.stop()
                (cfg.parent / f"pgstats-{step}.txt").write_text(shown)
                print(shown, flush=True)
            (cfg.parent / f"run-{step}.log").write_text(r.stderr)
            summary = json.loads(r.stdout)
            listings = sum(c["listings"] for c in summary["channels"])
            out.append([step, listings, wall, _phase(r, summary), cpu, srv, load,
                        _steal() - steal])
            print(step, *out[-1][1:], flush=True)
            # The master job's steps, from the log of the worker that ran it.
            for log in logs:
                log.flush()
            text = "".join((cfg.parent / f"worker-{i}.log").read_text()
                           for i in range(workers))
            pack = re.findall(r"master read in ([0-9.]+) s; its pack's master part "
                              r"\(([0-9.]+) MB\) packed in ([0-9.]+) s, stored in ([0-9.]+) s",
                              text)
            rest = re.findall(r"linker indexes built in ([0-9.]+) s, packed and stored in "
                              r"([0-9.]+) s \(([0-9.]+) MB\)", text)
            snap = re.findall(r"master snapshot \S+ written in ([0-9.]+) s", text)
            job = re.findall(r"job master: ([0-9.]+) s \(([0-9.]+) CPU s", text)
            if workers:
                jobs_, per = timeline([(cfg.parent / f"worker-{i}.log").read_text()
                                       for i in range(workers)], epoch, wall)
                shown = _show_timeline(jobs_, per)
                (cfg.parent / f"timeline-{step}.txt").write_text(shown)
                print(shown, flush=True)
                IDLE.extend([f"{step}, {workers} worker(s), {wall:.0f} s", *row]
                            for row in per)
            coord = re.findall(r"this coordinator's CPU so far ([0-9.]+) s", r.stderr)
            if pack:
                PACKS.append(
                    f"- {step}, {workers} worker(s): the master job read the master in "
                    f"{pack[-1][0]} s and stored its pack's master part ({pack[-1][1]} MB) "
                    f"{float(pack[-1][2]) + float(pack[-1][3]):.1f} s later (the read jobs "
                    "other workers took parse meanwhile, then link)" + (
                        f"; the indexes part ({rest[-1][2]} MB) built in {rest[-1][0]} s "
                        "(by the first job that needed it)"
                        if rest else "") + (
                        f"; the snapshot written in {snap[-1]} s" if snap else "") + (
                        f"; the whole job {job[-1][0]} s ({job[-1][1]} CPU s in the worker's "
                        "own process)" if job else "") + (
                        f"; the coordinator's process {coord[-1]} CPU s" if coord else ""))
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            p.wait(60)
        for log in logs:
            log.close()
    return out


def _drop(server: Any, url: str) -> None:
    import psycopg

    name = url.rsplit("/", 1)[1]
    with psycopg.connect(server.url(), autocommit=True) as c:
        c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def run(size: int, channels: list[str], workers: list[int], shard_size: int | None,
        write: bool, first_only: bool = False, single: bool = True, pairs: int = 0,
        pg_stats: bool = False) -> None:
    """``pairs``: that many alternations of the ``workers`` counts, first audits only
    (see the module's doc), without the one-process rows. ``pg_stats``: where the server's
    CPU, WAL and rows went in each distributed run (``bench.pgstats``)."""
    if pairs:
        first_only, single = True, False
    steps = ("first",) if first_only else ("first", "again")
    world = ensure_world(size)
    server = _start_server(track_all=pg_stats)
    rows: list[list[Any]] = []
    try:
        pids = [p for p in [_postmaster_pid(server.new_database())] if p]
        lite = _config(world, OUT / f"dist-sqlite-{world.name}", 'path = "auditor.db"',
                       "workers = 1")
        for f in lite.parent.glob("auditor.db*"):
            f.unlink()
        if single:
            for r in _runs(lite, channels, (), [], steps=steps):
                rows.append(["SQLite, one process", *r])
            url = server.new_database()
            one = _config(world, OUT / f"dist-pg1-{world.name}", f'url = "{url}"',
                          "workers = 1")
            for r in _runs(one, channels, (), pids, steps=steps):
                rows.append(["PostgreSQL, one process", *r])
        extra = f"\nshard_size = {shard_size}" if shard_size else ""
        for i in range(pairs or 1):
            for n in workers:
                url = server.new_database()
                cfg = _config(world, OUT / (f"dist-w{n}-{world.name}" + (
                    f"-pair{i + 1}" if pairs else "")), f'url = "{url}"', f"workers = 1{extra}")
                before = len(IDLE)
                for r in _runs(cfg, channels, ("--distributed",), pids, workers=n,
                              steps=steps, stats=(server, url) if pg_stats else None):
                    if pairs:
                        for row in IDLE[before:]:
                            row[0] = f"pair {i + 1}, {row[0]}"
                        r[0] = f"{r[0]}, pair {i + 1}"
                    rows.append([f"PostgreSQL, --distributed, {n} worker(s)", *r])
                if pairs:  # (a 250k first audit's database is 1-2 GB)
                    _drop(server, url)
    finally:
        server.stop()
    shown = [[who, step, listings, round(wall, 1), round(phase, 1), round(listings / phase),
              round(cpu, 1), "-" if srv is None else round(srv, 1), f"{load:.1f}"]
             + [round(steal, 1)] for who, step, listings, wall, phase, cpu, srv, load, steal
             in rows]
    per = {(who, step): listings / phase for who, step, listings, _, phase, *_ in rows}
    walls = {(who, step): wall for who, step, _, wall, *_ in rows}
    one = "PostgreSQL, --distributed, 1 worker(s)"
    ratios = [f"- {step}: {n} workers' throughput = {per[(who, step)] / base:.2f}x one "
              f"worker's over the channel phase, {walls[(one, step)] / walls[(who, step)]:.2f}x"
              " over the wall time" for step in steps for n in workers if n != 1
              for who in [f"PostgreSQL, --distributed, {n} worker(s)"]
              for base in [per.get((one, step))] if base]
    if pairs:
        ratios = [f"- pair {i + 1}: {n} workers {walls[(who, step)]:.0f} s against one "
                  f"worker's {walls[(one, step)]:.0f} s: {walls[(one, step)] / walls[(who, step)]:.2f}x "
                  f"over the wall time, {per[(who, step)] / per[(one, step)]:.2f}x over the "
                  "channel phase" for i in range(pairs) for step in [f"first, pair {i + 1}"]
                  for n in workers if n != 1 for who in [f"PostgreSQL, --distributed, {n} worker(s)"]
                  if (one, step) in walls]
        for n in workers:
            who = f"PostgreSQL, --distributed, {n} worker(s)"
            mine = [r for r in rows if r[0] == who]
            line = (f"- median of {len(mine)}, {n} worker(s): wall {median(r[3] for r in mine):.1f} s, "
                    f"channel phase {median(r[4] for r in mine):.1f} s, auditor CPU "
                    f"{median(r[5] for r in mine):.1f} s, server CPU "
                    f"{median(r[6] or 0.0 for r in mine):.1f} s")
            if n != 1 and any(r[0] == one for r in rows):
                pw = [walls[(one, f"first, pair {i + 1}")] / walls[(who, f"first, pair {i + 1}")]
                      for i in range(pairs)]
                pc = [per[(who, f"first, pair {i + 1}")] / per[(one, f"first, pair {i + 1}")]
                      for i in range(pairs)]
                line += (f"; the pairs' median ratio {median(pw):.2f}x over the wall time "
                         f"({', '.join(f'{x:.2f}' for x in pw)}), {median(pc):.2f}x over the "
                         "channel phase")
            ratios.append(line)
        print("\n".join(ratios), flush=True)
    idle = table("Each worker's time in the distributed runs above, from its jobs' -v log "
                 "lines: busy = in a job and not waiting; waited = in a job, waiting for the "
                 "master or a part of its pack; idle = in no job (before its first, between "
                 "two, after its last); tail = idle after its last job; CPU = its jobs' CPU "
                 "and their forks'", ["run", "worker", "jobs", "busy s", "waited s", "idle s",
                                      "CPU s", "tail s"], IDLE) if IDLE else ""
    record("Distributed runs beside one process", [table(
        f"The generated world's master and {' + '.join(channels)} ({size:,} SKUs, no crawl, "
        f"no images), shard_size {shard_size or 'default (150,000)'}; wall s of the "
        "`auditor run` command; channel phase s: the audit after the master import "
        "(see bench/distributed.py); listings/s over the channel phase; CPU s = the "
        "auditor's processes (for --distributed the coordinator and the `auditor worker` "
        "processes); server CPU s = PostgreSQL's processes; load: the 1-minute load "
        "average when the run started; steal s: CPU seconds the hypervisor gave to other "
        "guests during the run (/proc/stat). One 2-core machine shared with other work: the "
        "workers compete with the server and each other for the same two cores.",
        ["mode", "audit", "listings", "wall s", "channel phase s", "listings/s", "CPU s",
         "server CPU s", "load", "steal s"], shown), "\n".join(ratios + PACKS), idle], write)
