"""End to end: real `auditor run`s of the generated world (its shop served on loopback)
on a SQLite store and on a PostgreSQL store give the same findings, finding by finding
(fingerprint, state, outcome, values, runs), the same runs and the same scores.

Two runs each, last week's master then this week's, so the second run goes through the
repeat paths too (unchanged listings, findings seen again, changed or resolved).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path


from auditor.demo import config_text
from auditor.world.generate import generate_world
from auditor.world.shop import ShopServer
from tests.pg_server import PASSWORD

ROOT = Path(__file__).resolve().parent.parent


def _cli(*args: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "auditor", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)


def _audit(world: Path, work: Path, base_url: str, store_line: str, now: datetime) -> dict:
    work.mkdir()
    text = config_text(base_url).replace('"world/', f'"{world}/')
    text, n = re.subn(r'(?m)^path = "auditor\.db".*$', store_line, text)
    assert n == 1
    text = text.replace("[master]\n", "[run]\nworkers = 2\n\n[master]\n", 1)
    master = re.search(r'(?m)^source = "(.*/master\.csv)"', text)
    assert master
    outputs = []
    for source, at in ((world / "master_previous.csv", now - timedelta(days=7)),
                       (world / "master.csv", now)):
        (work / "config.toml").write_text(text.replace(master.group(1), str(source)))
        r = _cli("run", "--config", work / "config.toml", "--now", at.isoformat())
        assert r.returncode in (0, 1), r.stderr[-3000:]
        outputs.append(r.stdout + r.stderr)
    cfg = work / "config.toml"
    findings = json.loads(_cli("findings", "--format", "json", "--config", cfg).stdout)
    runs = json.loads(_cli("runs", "--format", "json", "--config", cfg).stdout)
    return {"findings": findings, "runs": runs, "output": "\n".join(outputs)}


def _comparable_runs(runs: list[dict]) -> list:
    out = []
    for r in runs:
        out.append((r["id"], r["status"], r["master_snapshot_id"],
                    sorted((s["source"], s["status"], s["listings"], s["errors"])
                           for s in r["sources"])))
    return out


def test_a_run_on_postgres_finds_what_a_run_on_sqlite_finds(tmp_path, pg_server):
    world = tmp_path / "world"
    now = datetime.fromisoformat("2026-11-20T12:00:00+00:00")
    shop = ShopServer(world, crawl_delay=None)  # bound now: the world names its URL
    generate_world(world, size=40, seed=11, now=now, base_url=shop.base_url)
    url = pg_server.new_database()
    with shop:
        lite = _audit(world, tmp_path / "sqlite", shop.base_url, 'path = "auditor.db"', now)
        pg = _audit(world, tmp_path / "pg", shop.base_url, f'url = "{url}"', now)

    assert len(lite["findings"]) > 20  # the world's planted drift was found
    states = {f["state"] for f in lite["findings"]}
    assert states == {"open", "resolved"}, states  # the second run resolved some

    def key(f: dict) -> str:
        return f["fingerprint"]

    assert sorted(pg["findings"], key=key) == sorted(lite["findings"], key=key)
    # The same order too (most severe first, then channel, check, SKU, field).
    assert [f["fingerprint"] for f in pg["findings"]] == \
        [f["fingerprint"] for f in lite["findings"]]
    assert _comparable_runs(pg["runs"]) == _comparable_runs(lite["runs"])
    assert [r["status"] for r in pg["runs"]] == [r["status"] for r in lite["runs"]]
    # Scores per (channel, check) and every finding's event history agree too.
    from auditor.storage import open_store

    a, b = open_store(tmp_path / "sqlite" / "auditor.db", create=False), open_store(url)
    try:
        for run in (1, 2):
            assert [s.to_dict() for s in b.scores(run)] == [s.to_dict() for s in a.scores(run)]
            assert b.scores(run)
        for f in lite["findings"]:
            assert [(e.event, e.state, e.run_id, e.at, e.outcome, e.actual)
                    for e in b.finding_events(f["fingerprint"])] == \
                [(e.event, e.state, e.run_id, e.at, e.outcome, e.actual)
                 for e in a.finding_events(f["fingerprint"])]
        assert sorted((li.channel, li.key) for li in b.listings()) == \
            sorted((li.channel, li.key) for li in a.listings())
        assert len(a.listings()) > 100
        assert sorted(r.to_dict().items().__repr__() for r in b.links()) == \
            sorted(r.to_dict().items().__repr__() for r in a.links())
    finally:
        a.close()
        b.close()
    # What the runs printed and logged never carries the store's password.
    assert PASSWORD not in pg["output"]
