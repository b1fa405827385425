"""A whole audit on each store: SQLite beside PostgreSQL, first audit and repeat audit.

    python -m bench store --size 50000 [--channels google meta] [--url postgresql://...]

The generated world's master and file channels (no crawl, no images) are audited twice
into a new store of each kind: ``first`` into the empty store (last week's master imported
first, untimed), ``again`` the same files once more (the scheduled steady state: every
listing unchanged). Wall seconds and CPU seconds (the audit process and its channel
workers; on PostgreSQL also the server's backends, read from ``/proc`` when the server
runs on this machine) are printed side by side.

On PostgreSQL the repeat audit's writes are counted from the server's own statistics:
rows inserted, updated and deleted per table (``pg_stat_user_tables``) and, when the
``pg_stat_statements`` module is loaded, the write statements executed. The target: an
unchanged listing is a hash comparison in the audit process and no statement, so the
repeat audit writes no listing row at all (what it still writes is per run: the run and
its sources, one observation per open finding, the findings' last-seen run, scores).

Without ``--url`` a PostgreSQL server is started for the benchmark (tests/pg_server.py's,
with fsync and synchronous commit on, as a deployment runs; ``pg_stat_statements``
loaded) in a temporary folder, and stopped at the end.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Any

from bench.common import isolated, record, table
from bench.world_audit import OUT, audit, ensure_world

# Tables whose writes on the repeat audit are reported one by one (the rest summed).
_LISTING_TABLES = ("listings", "listing_versions")


def _server_cpu(pids: list[int]) -> float:
    """CPU seconds (user + system) of these processes so far, from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # utime, stime, cutime, cstime: fields 14-17 of stat (11-14 after the name)
        total += sum(int(x) for x in fields[11:15]) / tick
    return total


def _postmaster_pid(url: str) -> int | None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as c:
        try:
            data = c.execute("SHOW data_directory").fetchone()
        except psycopg.Error:
            return None
    pidfile = Path(data[0]) / "postmaster.pid" if data else None
    try:
        return int(pidfile.read_text().split()[0]) if pidfile else None
    except OSError:
        return None


def _table_writes(url: str) -> dict[str, tuple[int, int, int]]:
    """table (partitions summed into their parent) -> (inserted, updated, deleted)."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as c:
        c.execute("SELECT pg_stat_clear_snapshot()")
        rows = c.execute(
            "SELECT coalesce(p.relname, s.relname), sum(s.n_tup_ins), sum(s.n_tup_upd),"
            " sum(s.n_tup_del) FROM pg_stat_user_tables s LEFT JOIN pg_inherits i"
            " ON i.inhrelid = s.relid LEFT JOIN pg_class p ON p.oid = i.inhparent"
            " GROUP BY 1").fetchall()
    return {name: (int(i), int(u), int(d)) for name, i, u, d in rows}


def _statements(url: str) -> dict[str, tuple[int, int]] | None:
    """Write statements run since the last reset: kind -> (calls, rows); None when
    pg_stat_statements is not loaded."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as c:
        try:
            rows = c.execute(
                "SELECT query, calls, rows FROM pg_stat_statements WHERE dbid ="
                " (SELECT oid FROM pg_database WHERE datname = current_database())"
            ).fetchall()
        except psycopg.Error:
            return None
    out: dict[str, tuple[int, int]] = {}
    for q, calls, n in rows:
        m = re.match(r"\s*(?:WITH\b.*?\)\s*)?(INSERT|UPDATE|DELETE|COPY|MERGE)\b", q, re.I | re.S)
        if not m:
            continue
        kind = m.group(1).upper()
        c0, r0 = out.get(kind, (0, 0))
        out[kind] = (c0 + calls, r0 + n)
    return out


def _reset_statements(url: str) -> bool:
    import psycopg

    with psycopg.connect(url, autocommit=True) as c:
        try:
            c.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            c.execute("SELECT pg_stat_statements_reset()")
            return True
        except psycopg.Error:
            return False


def _diff(after: dict, before: dict) -> dict[str, tuple[int, int, int]]:
    out = {}
    for k, v in after.items():
        b = before.get(k, (0, 0, 0))
        d = tuple(x - y for x, y in zip(v, b, strict=True))
        if any(d):
            out[k] = d
    return out


def measure(world: Path, store_url: str | None, channels: list[str], label: str
            ) -> dict[str, Any]:
    """First and repeat audit of ``world`` into a new store (``store_url``, or SQLite)."""
    work = OUT / f"store-{label}-{world.name}"
    res: dict[str, Any] = {"store": label}
    pg = store_url is not None and store_url.startswith("postgres")
    server_pids: list[int] = []
    if pg:
        from auditor.storage import remove_store

        remove_store(store_url)  # type: ignore[arg-type]
        master = _postmaster_pid(store_url)  # type: ignore[arg-type]
        if master is not None:
            server_pids = [master]
    for step in ("first", "again"):
        if pg and step == "again":
            res["statements_on"] = _reset_statements(store_url)  # type: ignore[arg-type]
            before = _table_writes(store_url)  # type: ignore[arg-type]
        cpu0 = _server_cpu(server_pids)
        r, _, rss = isolated(audit, world, work, channels, step == "first", False, store_url)
        time.sleep(1.5)  # backends flush their statistics when they end (within a second)
        server_cpu = _server_cpu(server_pids) - cpu0 if server_pids else None
        res[step] = {"wall": r["wall_seconds"], "cpu": r["cpu_seconds"],
                     "server_cpu": server_cpu, "listings": r["listings"], "rss": rss}
        if pg and step == "again":
            res["writes"] = _diff(_table_writes(store_url), before)  # type: ignore[arg-type]
            res["statements"] = _statements(store_url)  # type: ignore[arg-type]
    return res


def _start_server(track_all: bool = False) -> Any:
    """``track_all``: ``pg_stat_statements`` also counts the statements run inside functions
    and triggers (``bench distributed --pg-stats``)."""
    from tests.pg_server import PgServer

    return PgServer(settings={"fsync": "on", "synchronous_commit": "on",
                              "full_page_writes": "on", "shared_buffers": "256MB",
                              "shared_preload_libraries": "pg_stat_statements",
                              **({"pg_stat_statements.track": "all"} if track_all else {})})


def run(size: int, channels: list[str], url: str | None, write: bool) -> list[dict[str, Any]]:
    world = ensure_world(size)
    server = None
    if url is None:
        server = _start_server()
        url = server.new_database()
    try:
        results = [measure(world, None, channels, "sqlite"),
                   measure(world, url, channels, "postgresql")]
    finally:
        if server is not None:
            server.stop()
    report(results, size, channels, server is not None, write)
    return results


def report(results: list[dict[str, Any]], size: int, channels: list[str], own_server: bool,
           write: bool) -> None:
    rows = []
    for r in results:
        for step in ("first", "again"):
            s = r[step]
            server = "-" if s["server_cpu"] is None else round(s["server_cpu"], 1)
            rows.append([r["store"], step, s["listings"], round(s["wall"], 1),
                         round(s["cpu"], 1), server, round(s["rss"])])
    pg = next((r for r in results if r["store"] == "postgresql"), None)
    tables = [table(
        f"Audit of the generated world's master and {' + '.join(channels)} ({size:,} SKUs, no "
        "crawl, no images), `first` into an empty store, `again` the same files once more; "
        "CPU s = the audit process and its channel workers; server CPU s = the PostgreSQL "
        "server's processes" + (" (started for the benchmark: fsync and synchronous commit "
                                "on)" if own_server else ""),
        ["store", "audit", "listings", "wall s", "CPU s", "server CPU s", "peak RSS MiB"],
        rows)]
    if pg is not None:
        w = pg.get("writes", {})
        wrows = [[t, *w[t]] for t in sorted(w)]
        for t in _LISTING_TABLES:
            if t not in w:
                wrows.append([t, 0, 0, 0])
        tables.append(table(
            "PostgreSQL, repeat audit of the unchanged world: rows written per table "
            "(pg_stat_user_tables, partitions summed; an unchanged listing is a hash "
            "comparison and no write)", ["table", "inserted", "updated", "deleted"], wrows))
        st = pg.get("statements")
        if st is not None:
            tables.append(table(
                "PostgreSQL, repeat audit: write statements executed (pg_stat_statements; a "
                "COPY counts once per batch)", ["statement", "calls", "rows"],
                [[k, *v] for k, v in sorted(st.items())]))
    record("Stores side by side: a whole audit on SQLite and on PostgreSQL", tables, write)
