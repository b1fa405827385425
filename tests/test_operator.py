"""What an operator of the scale features meets (docs/scaling.md): the PostgreSQL store's
errors, `[run]` settings of distributed runs, `auditor worker` and `auditor run
--distributed` when something around them is missing or broken. Each test is a defect
found by trying the documented commands as a new operator would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from auditor.errors import StoreError
from auditor.storage import postgres, redact

PW = "Pw-secret-42"


@pytest.mark.parametrize("url", [
    f"postgresql://auditor:{PW}@[bad/auditor",              # libpq quotes the URI it rejects
    "postgres://auditor:Pw%2Dsecret-42@[bad/auditor",      # percent-encoded, other scheme
    f"postgresql://auditor@[bad/auditor?password={PW}",    # libpq's query form
])
def test_a_url_the_driver_cannot_parse_never_shows_its_password(url):
    with pytest.raises(StoreError) as e:
        postgres.connect(url)
    msg = str(e.value)
    assert "cannot open the PostgreSQL store" in msg and "IPv6" in msg  # the driver's reason
    assert PW not in msg and "Pw%2Dsecret" not in msg and "***" in msg


def test_redact_hides_every_form_of_the_password():
    url = "postgresql://auditor:p%40ss-w0rd@db:5432/auditor"
    text = f"bad {url}; again postgresql://auditor:p%40ss-w0rd@db:5432/auditor; raw p@ss-w0rd"
    shown = redact(text, url)
    assert "p@ss-w0rd" not in shown and "p%40ss" not in shown
    assert shown.count("postgresql://auditor:***@db:5432/auditor") == 2
    assert redact("no password here", "postgresql://auditor@db/a") == "no password here"


CONFIG = """store = "postgresql://auditor@127.0.0.1:5432/auditor"
[master]
type = "csv"
source = "master.csv"
[run]
{run}
"""


@pytest.mark.parametrize("run, says", [
    ("shard_size = 0", "[run].shard_size: expected 1 or more, got 0"),
    ("shard_size = -5", "[run].shard_size: expected 1 or more, got -5"),
    ("job_attempts = 0", "[run].job_attempts: expected 1 or more, got 0"),
    ("stalled_after = 0", "[run].stalled_after: expected seconds above 0"),
    ("stalled_after = -1.5", "[run].stalled_after: expected seconds above 0"),
])
def test_distributed_run_settings_out_of_range_are_config_errors(tmp_path, run, says):
    """shard_size = 0 made a shard job per listing (the read job took max(1, 0)), and
    stalled_after = 0 handed every running job back to the queue at each look."""
    from auditor.config import load_config
    from auditor.errors import ConfigError

    path = tmp_path / "config.toml"
    path.write_text(CONFIG.format(run=run))
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert says in str(e.value)
    path.write_text(CONFIG.format(run="shard_size = 1\njob_attempts = 1\nstalled_after = 0.5"))
    assert load_config(path).run["shard_size"] == 1


ROOT = Path(__file__).resolve().parent.parent


def _cli(*args: str | Path, env: dict[str, str] | None = None,
         timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "auditor", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def _demo_config(tmp_path: Path, store_url: str, extra: str = "") -> Path:
    """A config of the mini world's file channels on this store."""
    from auditor.world.generate import generate_world

    world = tmp_path / "world"
    generate_world(world, size=30, seed=5, base_url="http://127.0.0.1:9")
    cfg = tmp_path / "config.toml"
    cfg.write_text(f'''store = "{store_url}"
{extra}
[master]
type = "csv"
source = "{world}/master.csv"

[checks.image]
enabled = false

[[channels]]
name = "google"
type = "google_merchant"
source = "{world}/feeds/google.xml"

[[channels]]
name = "amazon"
type = "amazon_listings"
source = "{world}/feeds/amazon.tsv"
currency = "EUR"
''')
    return cfg


def test_without_the_job_queue_installed_worker_and_distributed_run_say_what_to_install(
        tmp_path, pg_server):
    """Without procrastinate, `auditor run --distributed` imported the master, then
    crashed with an ImportError traceback (the run recorded as interrupted), and
    `auditor worker` printed a traceback."""
    from auditor.storage import open_store

    blocker = tmp_path / "blocker" / "procrastinate"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('No module named procrastinate')\n")
    env = {"PYTHONPATH": f"{blocker.parent}{os.pathsep}{ROOT}"}
    url = pg_server.new_database()
    cfg = _demo_config(tmp_path, url)
    for args in (("worker", "--once"), ("run", "--distributed")):
        r = _cli(*args, "--config", cfg, env=env)
        assert r.returncode == 2, r.stderr
        assert "pip install 'omni-auditor[distributed]'" in r.stderr, r.stderr
        assert "Traceback" not in r.stderr
    store = open_store(url)
    try:
        assert store.runs(5) == []  # refused before a run was recorded
    finally:
        store.close()
