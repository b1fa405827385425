"""Docs are tested: a command or setting cannot exist undocumented."""

import importlib.util
import re
from pathlib import Path

from auditor.cli import main

ROOT = Path(__file__).parent.parent


def _gen():
    spec = importlib.util.spec_from_file_location("gen_reference", ROOT / "scripts" / "gen_reference.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_reference_is_up_to_date():
    current = (ROOT / "docs" / "reference.md").read_text()
    assert current == _gen().render(), "run: python scripts/gen_reference.py"


def test_every_setting_has_help_text():
    from auditor.cli import settings_reference

    for section, opts in settings_reference().items():
        for o in opts:
            assert o["help"].strip(), f"{section}.{o['name']} has no help text"


def test_readme_opens_with_the_two_commands_and_names_every_command():
    readme = (ROOT / "README.md").read_text()
    head = readme[:1500]
    assert "auditor demo" in head and "scripts/test.sh" in head
    for name in main.commands:
        assert re.search(rf"auditor {name}\b", readme), f"README does not mention `auditor {name}`"
    assert "bash scripts/test.sh" in (ROOT / ".ci" / "run").read_text()


def test_readme_config_examples_are_valid(tmp_path):
    import textwrap
    import tomllib

    from auditor.config import parse_config

    blocks = re.findall(r"```toml\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    assert blocks
    for block in blocks:
        cfg = parse_config(tomllib.loads(textwrap.dedent(block)), tmp_path / "config.toml")
        assert cfg.channels
