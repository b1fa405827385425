"""Where a PostgreSQL server's work goes during one benchmarked run (``--pg-stats``).

Needs the server started with ``pg_stat_statements`` preloaded and
``pg_stat_statements.track = all`` (``bench.store_audit._start_server(stats=True)``).
Between ``start()`` and ``stop()``:

- the server's CPU per process kind: a thread samples every server process's CPU from
  ``/proc`` twice a second (client backends named by their ``application_name``, the others
  by ``backend_type``: autovacuum worker, checkpointer, walwriter ...); a process's CPU is
  its last sample less its first (0 when it started during the run);
- WAL bytes (``pg_current_wal_lsn``) and full-page images (``pg_stat_wal``);
- rows inserted, updated (HOT among them) and deleted per table (partitions summed);
- the top statements by execution time and by shared blocks dirtied (``pg_stat_statements``,
  reset at ``start()``).
"""

from __future__ import annotations

import os
import re
import threading
import time
from pathlib import Path
from typing import Any

TOP = 15


def _cpu(pid: int) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _children(ppid: int) -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            if int((d / "stat").read_text().rsplit(")", 1)[1].split()[1]) == ppid:
                out.append(int(d.name))
        except (OSError, IndexError, ValueError):
            continue
    return out


def _kind(pid: int, names: dict[int, str]) -> str:
    if pid in names:
        return names[pid]
    try:
        title = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return "?"
    m = re.match(r"postgres: (autovacuum worker|autovacuum launcher|checkpointer|walwriter|"
                 r"background writer|logical replication launcher|stats collector)", title)
    return m.group(1) if m else "backend (unnamed)"


def _table_rows(c: Any) -> dict[str, tuple[int, ...]]:
    c.execute("SELECT pg_stat_clear_snapshot()")
    rows = c.execute(
        "SELECT coalesce(p.relname, s.relname), sum(s.n_tup_ins), sum(s.n_tup_upd),"
        " sum(s.n_tup_hot_upd), sum(s.n_tup_del), sum(s.autovacuum_count),"
        " sum(s.autoanalyze_count) FROM pg_stat_user_tables s LEFT JOIN pg_inherits i"
        " ON i.inhrelid = s.relid LEFT JOIN pg_class p ON p.oid = i.inhparent"
        " GROUP BY 1").fetchall()
    return {r[0]: tuple(int(x) for x in r[1:]) for r in rows}


class PgStats:
    def __init__(self, server_url: str, db_url: str, postmaster: int) -> None:
        import psycopg

        self.conn = psycopg.connect(server_url, autocommit=True, application_name="bench stats")
        self.db = psycopg.connect(db_url, autocommit=True, application_name="bench stats")
        self.postmaster = postmaster
        self.first: dict[int, float] = {}
        self.last: dict[int, float] = {}
        self.kinds: dict[int, str] = {}
        self.names: dict[int, str] = {}
        self.done = threading.Event()
        self.thread: threading.Thread | None = None

    def _sample(self, first: bool = False) -> None:
        for pid, app, btype in self.conn.execute(
                "SELECT pid, application_name, backend_type FROM pg_stat_activity"):
            if pid not in self.names:
                self.names[pid] = (f"client: {app or '(no name)'}"
                                   if btype == "client backend" else btype)
        for pid in _children(self.postmaster):
            v = _cpu(pid)
            if v is None:
                continue
            if pid not in self.first:
                self.first[pid] = v if first else 0.0
            self.last[pid] = v
            self.kinds.setdefault(pid, _kind(pid, self.names))
            if self.kinds[pid] == "backend (unnamed)" and pid in self.names:
                self.kinds[pid] = self.names[pid]

    def _loop(self) -> None:
        while not self.done.wait(0.5):
            self._sample()

    def start(self) -> None:
        self.db.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        self.db.execute("SELECT pg_stat_statements_reset()")
        self.db.execute("SELECT pg_stat_reset_shared('wal')")
        self.lsn = self.db.execute("SELECT pg_current_wal_lsn()").fetchone()[0]
        self.tables = _table_rows(self.db)
        self.own = _cpu(self.postmaster) or 0.0
        self._sample(first=True)
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def stop(self) -> str:
        time.sleep(1.0)  # backends report their table statistics within a second
        self.done.set()
        if self.thread:
            self.thread.join()
        self._sample()
        me = {r[0] for r in self.conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = 'bench stats'")}
        by: dict[str, float] = {}
        for pid, v in self.last.items():
            if pid in me:
                continue
            k = self.kinds.get(pid, "?")
            by[k] = by.get(k, 0.0) + v - self.first[pid]
        by["postmaster"] = (_cpu(self.postmaster) or 0.0) - self.own
        total = sum(by.values())
        wal = self.db.execute("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), %s)",
                              (self.lsn,)).fetchone()[0]
        fpi = self.db.execute("SELECT wal_records, wal_fpi, wal_bytes FROM pg_stat_wal"
                              ).fetchone()
        out = [f"server CPU by process kind (sampled from /proc): {total:.1f} s in all"]
        out += [f"  {v:7.1f}  {k}" for k, v in sorted(by.items(), key=lambda kv: -kv[1])
                if v >= 0.05]
        out.append(f"WAL: {int(wal) / 1e6:.1f} MB ({fpi[0]:,} records, {fpi[1]:,} full-page "
                   "images)")
        now = _table_rows(self.db)
        out.append("rows per table: inserted, updated (HOT), deleted; autovacuums, "
                   "autoanalyzes")
        for t in sorted(now):
            d = [a - b for a, b in zip(now[t], self.tables.get(t, (0,) * 6), strict=True)]
            if any(d):
                out.append(f"  {t:<28} {d[0]:>9,} {d[1]:>9,} ({d[2]:,}) {d[3]:>9,}; "
                           f"{d[4]}, {d[5]}")
        rows = self.db.execute(
            "SELECT query, calls, rows, total_exec_time, shared_blks_dirtied,"
            " shared_blks_written, wal_bytes, temp_blks_written, toplevel FROM"
            " pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname ="
            " current_database())").fetchall()
        for title, key in (("by execution time", 3), ("by shared blocks dirtied", 4),
                           ("by WAL bytes", 6)):
            out.append(f"top statements {title} (ms, calls, rows, dirtied, written, WAL MB, "
                       "temp written, top level)")
            for q, calls, n, ms, dirt, wr, wb, tmp, top in sorted(
                    rows, key=lambda r: -float(r[key] or 0))[:TOP]:
                q1 = " ".join(q.split())[:150]
                out.append(f"  {ms:9.0f} {calls:6} {n:9} {dirt:7} {wr:7} "
                           f"{float(wb) / 1e6:7.1f} {tmp:6} {'t' if top else 'n'}  {q1}")
        self.conn.close()
        self.db.close()
        return "\n".join(out) + "\n"
