"""Every master import is recorded on its run, through the CLI as a user meets it."""

import json

from click.testing import CliRunner

from auditor.cli import main

NOW = "2026-11-20T12:00:00Z"


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_master_rejected_on_the_very_first_run_is_recorded(mini_world):
    cfg = mini_world / "config.toml"
    (mini_world / "master.csv").write_text("sku,title,price,currency\nX,broken,abc,USD\n")
    r = cli("run", "--config", cfg, "--now", NOW)
    assert r.exit_code == 2, r.output
    assert "master import rejected" in r.output and "no earlier snapshot" in r.output
    assert "stays in force" not in r.output
    assert "master.csv:2 column price: bad price 'abc'" in r.output
    assert "see `auditor runs --errors`" in r.output
    r = cli("runs", "--config", cfg, "--errors")
    assert r.exit_code == 0
    assert "run 1" in r.output and "failed" in r.output
    assert "master: rejected, 1 error in" in r.output and "nothing audited" in r.output
    assert "master.csv:2 column price: bad price 'abc'" in r.output
    (run,) = json.loads(cli("runs", "--config", cfg, "--format", "json").output)
    assert run["status"] == "failed" and run["master"]["rejected"] is True
    assert run["master"]["kept_previous"] is False


def test_master_rejected_later_keeps_the_snapshot_and_says_why(mini_world):
    cfg = mini_world / "config.toml"
    assert cli("run", "--config", cfg, "--now", NOW).exit_code == 1
    (mini_world / "master.csv").write_text("sku,title,price,currency\nX,broken,abc,USD\n")
    r = cli("run", "--config", cfg, "--now", NOW)
    assert r.exit_code == 2
    assert "the previous snapshot (3 records) stays in force" in r.output
    assert r.output.count("stays in force") == 1
    r = cli("runs", "--config", cfg, "--errors", "--limit", "1")
    assert "run 2" in r.output
    assert "master: rejected, 1 error in" in r.output
    assert "previous snapshot (3 records) stayed in force" in r.output
    assert "master.csv:2 column price: bad price 'abc'" in r.output
    r = cli("runs", "--config", cfg, "--limit", "2")
    assert "master: 3 records (added 3, changed 0, removed 0)" in r.output  # run 1


def test_accepted_master_with_skipped_rows_lists_them(mini_world):
    cfg = mini_world / "config.toml"
    text = cfg.read_text().replace('source = "master.csv"', 'source = "master.csv"\nskip_bad_rows = true')
    cfg.write_text(text)
    with (mini_world / "master.csv").open("a") as f:
        f.write("BAD-1,Broken,,,ten,USD,1,Red\n")
    r = cli("run", "--config", cfg, "--now", NOW)
    assert r.exit_code == 1, r.output
    r = cli("runs", "--config", cfg, "--errors")
    assert "1 bad rows skipped" in r.output
    assert "master " in r.output and "bad price 'ten'" in r.output


def test_report_of_a_first_run_whose_master_was_rejected(mini_world, tmp_path):
    cfg = mini_world / "config.toml"
    (mini_world / "master.csv").write_text("sku,title,price,currency\nX,broken,abc,USD\n")
    assert cli("run", "--config", cfg, "--now", NOW).exit_code == 2
    out = tmp_path / "report.html"
    r = cli("report", "--config", cfg, "--output", out)
    assert r.exit_code == 0, r.output
    html = out.read_text()
    assert "no earlier snapshot: no channel was audited" in html
    assert "stayed in force" not in html
    assert "bad price" in html
