import csv
import io
import json
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from auditor.cli import main

ROOT = Path(__file__).parent.parent


def cli(*args, **kw):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False, **kw)


def test_every_command_has_help_with_an_example():
    for name, cmd in main.commands.items():
        r = cli(name, "--help")
        assert r.exit_code == 0, name
        subs = getattr(cmd, "commands", None)
        if subs:
            for sub in subs:
                r2 = cli(name, sub, "--help")
                assert r2.exit_code == 0
                assert "Example" in r2.output, f"{name} {sub}"
        elif name not in ("connectors", "checks"):
            assert "Example" in r.output, name


def test_run_exit_codes_and_json_findings(mini_world):
    cfg = mini_world / "config.toml"
    r = cli("run", "--config", cfg, "--now", "2026-11-20T12:00:00Z")
    assert r.exit_code == 1, r.output
    assert "google" in r.output and "complete" in r.output
    r = cli("findings", "--config", cfg, "--open", "--format", "json")
    rows = json.loads(r.output)
    assert rows and {"channel", "sku", "check", "field", "outcome", "severity", "expected",
                     "actual", "state", "message", "fingerprint"} <= set(rows[0])
    r = cli("links", "--config", cfg, "--format", "csv")
    links = list(csv.DictReader(io.StringIO(r.output)))
    assert {ln["listing_key"]: ln["method"] for ln in links}["TS-RED-M"] == "sku"
    assert {"channel", "listing_key", "sku", "method", "confidence"} <= set(links[0])


def test_run_exit_0_when_consistent(mini_world):
    feed = (mini_world / "google.xml").read_text()
    (mini_world / "google.xml").write_text(
        feed.replace("Totally different thing", "Acme Tee, Blue, M").replace("25.00", "20.00"))
    r = cli("run", "--config", mini_world / "config.toml", "--format", "json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["exit_code"] == 0


def test_config_check_names_a_typo(mini_world):
    cfg = mini_world / "config.toml"
    cfg.write_text(cfg.read_text().replace("schedule", "schedul"))
    r = cli("config", "check", "--config", cfg)
    assert r.exit_code == 2
    assert "unknown key 'schedul' (did you mean 'schedule'?)" in r.output


def test_broken_config_never_starts_a_run(mini_world):
    cfg = mini_world / "config.toml"
    cfg.write_text(cfg.read_text().replace('type = "csv"', 'type = "csvv"'))
    r = cli("run", "--config", cfg)
    assert r.exit_code == 2 and "[master].type" in r.output
    assert not (mini_world / "auditor.db").exists()


def test_second_run_waits_or_exits_clearly(mini_world):
    from auditor.storage import open_store

    cfg = mini_world / "config.toml"
    store = open_store(mini_world / "auditor.db")
    with store.run_lock():
        r = cli("run", "--config", cfg, "--wait", "0.2")
    store.close()
    assert r.exit_code == 2 and "another run holds the lock" in r.output


def test_store_by_url_from_run_to_the_read_commands(mini_world):
    cfg = mini_world / "config.toml"
    cfg.write_text(cfg.read_text().replace('path = "auditor.db"',
                                           'url = "sqlite:///data/store.db"'))
    r = cli("findings", "--config", cfg)
    assert r.exit_code == 2 and "no store at" in r.output and "run `auditor run` first" in r.output
    assert not (mini_world / "data").exists()  # a read command creates nothing
    assert cli("run", "--config", cfg).exit_code == 1
    assert (mini_world / "data/store.db").exists() and not (mini_world / "auditor.db").exists()
    rows = json.loads(cli("findings", "--open", "--format", "json", "--config", cfg).output)
    assert {(f["sku"], f["check"]) for f in rows} >= {("TS-BLU-M", "price")}
    assert rows[0]["first_seen_at"].endswith("+00:00") and "check_name" not in rows[0]
    runs = json.loads(cli("runs", "--format", "json", "--config", cfg).output)
    assert runs[0]["status"] == "complete" and runs[0]["sources"][0]["source"] == "google"
    ok = cli("config", "check", "--config", cfg)
    assert f"store sqlite:///{mini_world / 'data/store.db'}" in ok.output


def test_untrusted_titles_are_escaped_in_tables(mini_world):
    feed = (mini_world / "google.xml").read_text().replace(
        "Totally different thing", "[bold red]pwned[/] \u009b31mANSI")
    (mini_world / "google.xml").write_text(feed)
    cli("run", "--config", mini_world / "config.toml")
    r = cli("findings", "--config", mini_world / "config.toml", "--wide")
    assert "[bold red]pwned[/]" in r.output  # shown literally, not interpreted
    assert "\u009b" not in r.output


def test_module_entry_point_runs():
    r = subprocess.run([sys.executable, "-m", "auditor", "--version"], cwd=ROOT,
                       capture_output=True, text=True)
    assert r.returncode == 0 and "auditor" in r.stdout
