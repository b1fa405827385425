"""Title truncation, as a user meets it through the CLI (issue 13 item 4)."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from auditor.cli import main
from conftest import write

LONG = ("Alpha Desk Lamp Black 90 cm with a weighted base, a dimmable warm LED, a braided "
        "cable, a touch switch and a five year warranty on every part of the lamp, made in Berlin")


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def _world(tmp: Path, master_title: str, shown: str, extra: str = "") -> Path:
    write(tmp / "master.csv", "sku,title,price,currency,color\n"
          f'A-1,"{master_title}",10.00,EUR,Black\n')
    (tmp / "google.xml").write_text(
        '<?xml version="1.0"?><rss xmlns:g="http://base.google.com/ns/1.0" version="2.0">'
        f"<channel><item><g:id>A-1</g:id><g:title>{shown}</g:title>"
        "<g:price>10.00 EUR</g:price></item></channel></rss>")
    write(tmp / "config.toml", """
        [store]
        path = "auditor.db"
        [master]
        source = "master.csv"
        [[channels]]
        name = "google"
        type = "google_merchant"
        source = "google.xml"
        """ + extra)
    return tmp / "config.toml"


def _titles(cfg: Path) -> list[dict]:
    rows = json.loads(cli("findings", "--config", cfg, "--format", "json").stdout)
    return [f for f in rows if f["check"] == "title"]


def test_prefix_of_a_title_that_fits_is_a_difference(tmp_path):
    cfg = _world(tmp_path, "Alpha Desk Lamp Black 90 cm", "Alpha Desk Lamp")
    r = cli("run", "--config", cfg)
    assert r.exit_code == 1, r.output
    (f,) = _titles(cfg)
    assert f["outcome"] in ("failed", "warn")
    assert "-black" in f["message"] and "-90" in f["message"]
    assert "drops colour/size words: black" in f["message"]


def test_dropped_colour_is_a_warning_even_when_similar(tmp_path):
    title = "Alpha Desk Lamp with dimmable warm LED and weighted base Black"
    cfg = _world(tmp_path, title, title.rsplit(" ", 1)[0])
    assert cli("run", "--config", cfg).exit_code == 1
    (f,) = _titles(cfg)
    assert f["outcome"] == "warn" and f["severity"] == "minor"
    assert "drops colour/size words: black" in f["message"]


def test_truncation_of_a_title_over_the_google_limit_passes(tmp_path):
    assert len(LONG) > 150
    shown = LONG[:150].rsplit(" ", 1)[0]
    cfg = _world(tmp_path, LONG, shown)
    r = cli("run", "--config", cfg)
    assert r.exit_code == 0, r.output
    assert _titles(cfg) == []


def test_per_channel_max_length(tmp_path):
    cfg = _world(tmp_path, "Alpha Desk Lamp Black 90 cm", "Alpha Desk Lamp",
                 "  [channels.checks.title]\n  max_length = 20\n")
    r = cli("run", "--config", cfg)
    assert r.exit_code == 0, r.output  # 27 characters do not fit 20: a cut at a word passes
    assert _titles(cfg) == []
