"""A new user's pass (polish3): what felt wrong when following README.md literally.

Each test fails on the code before the fix."""

from __future__ import annotations

import contextlib
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from auditor.cli import main
from auditor.config import load_config
from tests.service_helpers import build_world


@contextlib.contextmanager
def _service(config: Path):
    from fastapi.testclient import TestClient

    from auditor.service.app import Service, create_app

    service = Service(config, load_config(config), schedule=False)
    with TestClient(create_app(service)) as client:
        yield client


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    d = tmp_path_factory.mktemp("world")
    config = build_world(d)
    r = CliRunner().invoke(main, ["run", "-c", str(config)], catch_exceptions=False)
    assert r.exit_code == 1, r.output
    return config


HTML = {"Accept": "text/html"}


def test_the_inbox_says_which_filter_values_it_left_out(world):
    """A bookmark with a renamed channel (or a typo) showed every finding, looking filtered."""
    with _service(world) as client:
        plain = client.get("/", headers=HTML)
        bad = client.get("/?channel=gogle&severity=<b>loud</b>&page=x", headers=HTML)
        good = client.get("/?channel=google&severity=critical", headers=HTML)
    assert plain.status_code == bad.status_code == good.status_code == 200
    notice = re.search(r'<p class="flash" id="ignored">(.*?)</p>', bad.text)
    assert notice, bad.text[:2000]
    assert "channel &#39;gogle&#39;" in notice.group(1)
    assert "severity &#39;&lt;b&gt;loud&lt;/b&gt;&#39;" in notice.group(1)  # escaped
    assert "page &#39;x&#39;" in notice.group(1)
    assert "<b>loud" not in bad.text
    assert 'id="ignored"' not in plain.text and 'id="ignored"' not in good.text


def test_products_without_an_sku_says_how_to_use_it(world):
    """`/products` redirected to `/products/`, which said "There is no product ."."""
    with _service(world) as client:
        r = client.get("/products/", headers=HTML)
    assert r.status_code == 404
    assert "There is no product ." not in r.text
    assert "/products/SKU shows one product" in r.text


def test_a_missing_config_file_is_named_with_its_full_path(tmp_path, monkeypatch):
    """Run from the wrong folder: the error names the absolute path it looked for and how
    to get a config (no "the repository": a pip install has none)."""
    monkeypatch.chdir(tmp_path)
    r = CliRunner().invoke(main, ["config", "check"])
    assert r.exit_code == 2
    assert f"file not found: {tmp_path / 'config.toml'}" in r.output
    assert "auditor init" in r.output and "repository" not in r.output


def test_run_report_does_not_repeat_the_check_as_the_field(world, tmp_path):
    """The report's "since the last run" listed `availability/availability`."""
    out = tmp_path / "report.html"
    r = CliRunner().invoke(main, ["report", "-c", str(world), "--output", str(out)],
                           catch_exceptions=False)
    assert r.exit_code == 0, r.output
    html = out.read_text()
    opened = re.findall(r"[A-Z0-9-]+ ([a-z_]+)(?:/([a-z_]+))?(?:, |</div>)", html)
    assert opened, html[:3000]
    assert all(field != check for check, field in opened), opened
    assert not re.search(r"\b(\w+)/\1\b", html.split("<style", 1)[0] + html.split("</style>")[-1])


@pytest.mark.parametrize("argv, text", [
    (["links", "confirm", "--help"], "the --config before the command, else $AUDITOR_CONFIG"),
    (["findings", "show", "--help"], "Output: text for people, JSON for programs."),
    (["serve", "--help"], "Serve the web UI, metrics and the API only"),
    (["config", "options", "--help"], "Examples:"),
])
def test_help_texts_are_consistent(argv, text):
    r = CliRunner().invoke(main, argv, terminal_width=200)
    assert r.exit_code == 0 and text in r.output, r.output


def test_worker_help_keeps_its_examples_apart():
    out = CliRunner().invoke(main, ["worker", "--help"], terminal_width=200).output
    assert "finished first.\n\n  Examples:" in out, out


def test_a_rejected_first_master_is_said_once(tmp_path):
    """The summary says "there is no earlier snapshot, so no channel was audited"; the
    ERROR log line saying it again is dropped (kept with -q, where no summary shows)."""
    import subprocess
    import sys

    (tmp_path / "pim.csv").write_text("sku,title,price,currency\nA-1,Lamp,ten,EUR\n")
    (tmp_path / "pos.csv").write_text("SKU,Name,Price\nA-1,Lamp,1.00\n")
    (tmp_path / "config.toml").write_text(
        '[store]\npath = "auditor.db"\n\n[master]\ntype = "csv"\nsource = "pim.csv"\n\n'
        '[[channels]]\nname = "pos"\ntype = "tabular"\nsource = "pos.csv"\ncurrency = "EUR"\n'
        'columns = { sku = "SKU", title = "Name", price = "Price" }\n')
    root = Path(__file__).resolve().parent.parent

    def run(*flags: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "auditor", *flags, "run", "-c",
                               str(tmp_path / "config.toml")], cwd=root, capture_output=True,
                              text=True, timeout=120)

    r = run()
    assert r.returncode == 2
    assert "there is no earlier snapshot, so no channel was audited" in r.stdout
    assert "no earlier master snapshot" not in r.stderr, r.stderr
    q = run("-q")
    assert q.returncode == 2 and q.stdout == ""
    assert "no earlier master snapshot: no channel was audited" in q.stderr


@pytest.mark.parametrize("argv", [
    ["run", "--channel", "gogle"],
    ["runs", "accept", "1", "gogle"],
    ["alerts", "propagation", "--channel", "gogle"],
])
def test_an_unknown_channel_argument_is_a_usage_error_not_a_bad_config(world, argv):
    """`run --channel gogle` said "invalid config ...: no channel named 'gogle'" (the config
    is fine), and `alerts propagation --channel gogle` said "0 change(s)"."""
    r = CliRunner().invoke(main, [*argv, "-c", str(world)])
    assert r.exit_code == 2, r.output
    assert "unknown channel 'gogle' (did you mean 'google'?)" in r.output, r.output
    assert "invalid config" not in r.output
