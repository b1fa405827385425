"""The hand-made messy retail world (tests/fixtures/messy_retail) audited as a user would.

    python -m bench messy [--no-write]

Serves the world's shop on 127.0.0.1, runs `auditor run` and `auditor findings` in a
temporary copy, and scores the findings against truth.csv: planted drifts found and missed,
false alarms, and "missing listing" findings on sources that could not be read completely.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any

from bench.common import ROOT, record, table

WORLD = ROOT / "tests" / "fixtures" / "messy_retail"
NOW = "2026-06-15T10:00:00Z"


def fixture_module(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"messy_{name}", WORLD / f"{name}.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def audit(where: Path) -> dict[str, Any]:
    """Run the world in ``where``: the run's summary, its findings and the score."""
    server, _config = fixture_module("serve").start(where)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    try:
        t0 = time.perf_counter()
        run = subprocess.run([sys.executable, "-m", "auditor", "run", "--now", NOW,
                              "--format", "json"], cwd=where, env=env, capture_output=True,
                             text=True, timeout=600)
        seconds = time.perf_counter() - t0
        found = subprocess.run([sys.executable, "-m", "auditor", "findings", "--format", "json"],
                               cwd=where, env=env, capture_output=True, text=True, timeout=600,
                               check=True)
    finally:
        server.shutdown()
        server.server_close()
    summary = json.loads(run.stdout)
    findings = json.loads(found.stdout)
    return {"summary": summary, "findings": findings, "seconds": seconds,
            "exit": run.returncode, "score": fixture_module("score").score(findings, summary)}


def run(write: bool = True) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="messy-") as tmp:
        res = audit(Path(tmp))
    s = res["score"]
    t1 = table("Messy retail world (hand-made: tests/fixtures/messy_retail), planted drifts",
               ["planted", "found", "missed", "false alarms",
                "missing listings on sources not read completely", "exit code", "run seconds"],
               [[s["planted"], len(s["found"]), len(s["missed"]), len(s["false_alarms"]),
                 len(s["missing_on_unread_sources"]), res["exit"], round(res["seconds"], 1)]])
    rows = [[c["channel"], c["status"], c["listings"], c["failed"], c["warn"],
             "held" if c.get("presence_held") else "", c.get("errors", 0)]
            for c in res["summary"]["channels"]]
    t2 = table("Messy retail world, per channel", ["channel", "status", "listings", "failed",
                                                   "warn", "presence", "bad rows/pages"], rows)
    wrong = [f"- {what}: {' '.join(k)}" for what in ("missed", "false_alarms",
                                                      "missing_on_unread_sources")
             for k in s[what]]
    record("Messy retail world", [t1, t2] + (["\n".join(wrong) + "\n"] if wrong else []), write)
    return res
