"""The package layout: checks/, connectors/ and reports/ install as auditor.checks,
auditor.connectors and auditor.reports only, and the project's modules import no cycle."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = ("checks", "connectors", "reports")

# Cycles not removed yet, each named by its modules; a new cycle fails the test, and so
# does one of these once it is gone (so the list only shrinks).
KNOWN_CYCLES = {
    # the run object and the runner call each other through function-level imports
    frozenset({"auditor.runner", "auditor.session"}),
    # the alert commands use the CLI's helpers and register on its groups
    frozenset({"auditor.alerts.commands", "auditor.cli"}),
}


def _modules() -> dict[str, Path]:
    out = {}
    for top in ("auditor", *FOLDERS):
        for d, dirs, files in os.walk(ROOT / top):  # not following auditor/checks etc.
            dirs[:] = [x for x in dirs if x != "__pycache__"]
            for f in files:
                if f.endswith(".py"):
                    p = Path(d) / f
                    parts = list(p.relative_to(ROOT).with_suffix("").parts)
                    if parts[0] != "auditor":
                        parts.insert(0, "auditor")
                    if parts[-1] == "__init__":
                        parts.pop()
                    out[".".join(parts)] = p
    return out


def import_graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports anywhere (function-level imports count,
    ``if TYPE_CHECKING:`` blocks do not). A package's imports of its own submodules are
    left out: a submodule always imports its package first, so those are not cycles
    between two pieces of the design."""
    mods = _modules()

    def resolve(name: str) -> str | None:
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for m, p in mods.items():
        tree = ast.parse(p.read_text(encoding="utf-8"))
        skip: set[int] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                skip |= {id(n) for b in node.body for n in ast.walk(b)}
        package = m if p.name == "__init__.py" else m.rpartition(".")[0]
        deps: set[str] = set()
        for node in ast.walk(tree):
            if id(node) in skip:
                continue
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(parts + ([base] if base else []))
                names = [f"{base}.{a.name}" for a in node.names]
            for n in names:
                r = resolve(n)
                if r and r != m and not (p.name == "__init__.py" and r.startswith(m + ".")):
                    deps.add(r)
        graph[m] = deps
    return graph


def cycles(graph: dict[str, set[str]]) -> list[frozenset[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[frozenset[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                on.discard(w)
                comp.add(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(frozenset(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_cycle_finder_finds_a_cycle():
    g = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(g) == [frozenset({"a", "b", "c"})]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles_among_the_projects_modules():
    graph = import_graph()
    assert {"auditor.cli", "auditor.demo", "auditor.config", "auditor.plugins",
            "auditor.checks.price", "auditor.connectors.site"} <= graph.keys()
    found = set(cycles(graph))
    assert found - KNOWN_CYCLES == set(), "new import cycle(s)"
    assert KNOWN_CYCLES - found == set(), "a known cycle is gone: drop it from KNOWN_CYCLES"
    for a, b in (("auditor.cli", "auditor.demo"), ("auditor.plugins", "auditor.config")):
        assert not any({a, b} <= c for c in found)


def test_the_folders_are_the_auditor_subpackages():
    for name in FOLDERS:
        link = ROOT / "auditor" / name
        assert link.is_symlink() and os.readlink(link) == f"../{name}"
        assert link.resolve() == (ROOT / name).resolve()
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert pyproject["tool"]["setuptools"]["packages"]["find"]["include"] == ["auditor*"]
    banned = pyproject["tool"]["ruff"]["lint"]["flake8-tidy-imports"]["banned-api"]
    assert set(banned) == set(FOLDERS)


@pytest.mark.parametrize("name", FOLDERS)
def test_the_old_top_level_names_refuse_to_import(name):
    # From the source tree the folders are on sys.path; importing them by their old names
    # would load every check and connector a second time under another name.
    out = subprocess.run([sys.executable, "-c", f"import {name}"], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode != 0
    assert f"import auditor.{name}, not {name}" in out.stderr


def test_every_builtin_module_loads_once_under_the_auditor_name():
    from auditor import plugins

    plugins.checks()
    plugins.connectors()
    assert not [m for m in sys.modules if m.split(".")[0] in FOLDERS]
    assert sys.modules["auditor.checks.price"].__name__ == "auditor.checks.price"
    specs = plugins.checks()
    assert {s.fn.__module__ for s in specs.values()} <= {
        f"auditor.checks.{n}" for n in ("attributes", "availability", "identifiers", "image",
                                         "presence", "price", "title")}
