"""kill -9 of the delivering process at random points: nothing lost, nothing doubled.

Each trial starts ``auditor alerts send`` (evaluate, then deliver) on a store with new
findings, kills it with SIGKILL at a random moment (before, during or after the
evaluation transaction, between or during sends), then runs it again to the end. The
receiver, which drops an idempotency key it has seen (as receivers are asked to), must
have seen every expected notification exactly once; and no alert group may have been
notified under two different keys (that would be a double no key can catch).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

import pytest

from auditor.model import Finding, Outcome, Severity, SourceResult, SourceStatus
from auditor.storage.sqlite import SQLiteStore as Store
from tests.alert_receivers import WebhookServer

ROOT = Path(__file__).resolve().parent.parent
GROUPS = 8


def _setup(tmp: Path, url: str) -> Path:
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "config.toml").write_text(f"""
[store]
path = "auditor.db"
[master]
source = "master.csv"
[[channels]]
name = "google"
type = "google_merchant"
source = "google.xml"
[alerts]
backoff = 0
[[alerts.receivers]]
name = "hook"
type = "webhook"
url = "{url}"
[[alerts.routes]]
receivers = ["hook"]
group_by = ["sku"]
""")
    store = Store(tmp / "auditor.db")
    at = datetime.now(timezone.utc)
    store.apply_findings(1, "google", [
        Finding("price", "google", f"SKU-{i}", "price", Outcome.FAILED, Severity.CRITICAL,
                expected="1.00 EUR", actual="2.00 EUR", listing_key=f"SKU-{i}")
        for i in range(GROUPS)], SourceStatus.COMPLETE, None, ["price"], at)
    store.save_source_result(1, SourceResult("google", started_at=at, finished_at=at))
    store.close()
    return tmp / "config.toml"


def _send(cfg: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "auditor", "-q", "alerts", "send", "-c",
                             str(cfg)], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)


def _trials(tmp_path: Path, n: int, seed: int) -> dict:
    rng = random.Random(seed)
    stats = Counter()
    for trial in range(n):
        with WebhookServer() as hook:
            hook.delay = 0.01
            cfg = _setup(tmp_path / f"t{trial}", hook.url)
            p = _send(cfg)
            if rng.random() < 0.4:  # anywhere: start-up, evaluation, delivery
                time.sleep(rng.uniform(0.0, 1.5))
            else:                   # mid-delivery: after the k-th notification arrived
                k = rng.randrange(GROUPS)
                deadline = time.monotonic() + 20
                while len(hook.deliveries) < k and p.poll() is None and \
                        time.monotonic() < deadline:
                    time.sleep(0.001)
                time.sleep(rng.uniform(0.0, 0.012))
            killed = p.poll() is None
            if killed:
                os.kill(p.pid, signal.SIGKILL)
                stats["killed"] += 1
            p.wait()
            stats["delivered_before_kill"] += len(hook.deliveries)
            p2 = _send(cfg)
            assert p2.wait(60) == 0, p2.stderr.read().decode()[-2000:]
            # nothing lost
            assert len(hook.by_key) == GROUPS, (trial, len(hook.by_key))
            skus = Counter(d["body"]["alerts"][0]["info"]["sku"] for d in hook.by_key.values())
            assert skus == Counter({f"SKU-{i}": 1 for i in range(GROUPS)}), (trial, skus)
            # nothing doubled: at most the one notification in flight at the kill is sent
            # again, with the same key
            again = len(hook.deliveries) - len(hook.by_key)
            assert again <= (1 if killed else 0), (trial, again)
            stats["resent_same_key"] += again
            store = Store(Path(cfg).parent / "auditor.db")
            try:
                rows = store.outbox(None)
                assert len(rows) == GROUPS and {r["status"] for r in rows} == {"sent"}
            finally:
                store.close()
    return dict(stats)


def test_kill9_while_delivering_5_trials(tmp_path):
    stats = _trials(tmp_path, 5, seed=17)
    assert stats["killed"] >= 3


@pytest.mark.slow
def test_kill9_while_delivering_50_trials(tmp_path):
    stats = _trials(tmp_path, 50, seed=2026)
    print("kill -9 trials:", stats)
    assert stats["killed"] >= 40
