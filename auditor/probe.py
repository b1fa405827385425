"""`auditor config check` beyond syntax: can every source the config names be opened?

For the master and each enabled channel: a path exists (a glob matches a file), a
URL answers (through the shared HTTP client and its outbound guard, reading no
more than the first bytes of the body), and every environment variable the
config refers to anywhere (sources, alert receivers, [smtp], [ui], [serve]) is set. Nothing is stored and nothing is parsed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import glob
import os
from pathlib import Path
from typing import Any, Mapping

from auditor.config import Config, EnvRef
from auditor.errors import ConfigError, FetchError
from auditor.http import Fetcher, FetchPolicy
from auditor.sources import is_url

# Bytes of a body read to know that a URL answers (a feed is not downloaded whole).
PROBE_BYTES = 65_536


def _env_refs(table: Mapping[str, Any]) -> list[str]:
    names = []
    for key in ("headers", "auth"):
        for v in (table.get(key) or {}).values():
            if isinstance(v, EnvRef):
                names.append(v.name)
    return names


def _all_env_refs(value: Any, table: str = "", keys: str = "") -> list[tuple[str, str]]:
    """(where, variable) of every `{ env = "NAME" }` anywhere in the config file: alert
    receivers, [smtp], [ui], [serve] ... (`[[alerts.receivers]] 'hook'.secret`)."""
    if isinstance(value, dict):
        if set(value) == {"env"} and isinstance(value["env"], str):
            return [(f"{table}{keys}" if table else keys.lstrip("."), value["env"])]
        if not table:  # a top-level table: [smtp], [alerts] ...
            return [ref for k, v in value.items()
                    for ref in (_all_env_refs(v, f"[{k}]") if isinstance(v, dict) else
                                _all_env_refs(v, "", f".{k}"))]
        return [ref for k, v in value.items() for ref in _all_env_refs(v, table, f"{keys}.{k}")]
    if isinstance(value, list):
        out = []
        for i, v in enumerate(value):
            name = v.get("name") if isinstance(v, dict) else None
            if isinstance(name, str):  # an array of tables: [[alerts.receivers]] 'hook'
                dotted = f"{table[1:-1]}{keys}" if table else keys.lstrip(".")
                out.extend(_all_env_refs(v, f"[[{dotted}]] {name!r}"))
            else:
                out.extend(_all_env_refs(v, table, f"{keys}[{i}]"))
        return out
    return []


def _path_problem(source: str, base: Path) -> str | None:
    path = Path(source).expanduser()
    if not path.is_absolute():
        path = base / path
    if any(ch in source for ch in "*?["):
        if not any(Path(p).is_file() for p in glob.glob(str(path))):
            return f"no file matches {path}"
        return None
    if not path.exists():
        return f"file not found: {path}"
    if not path.is_file():
        return f"not a file: {path}"
    if not os.access(path, os.R_OK):
        return f"not readable: {path}"
    return None


async def _url_problem(url: str, policy: FetchPolicy, headers: dict[str, str],
                       auth: tuple[str, str] | None) -> str | None:
    probe = dataclasses.replace(policy, max_body_bytes=PROBE_BYTES, retries=0,
                                deadline=min(policy.attempt_deadline, 30.0))
    try:
        async with Fetcher(probe, headers=headers, auth=auth) as f:
            resp = await f.get(url)
    except FetchError as e:
        if e.status is not None and e.status < 400 and "max_body_bytes" in e.reason:
            return None  # it answers, with more than the probe reads
        return f"{url}: {e.reason}"
    if resp.status >= 400:
        return f"{url}: HTTP {resp.status}"
    return None


def probe_sources(cfg: Config) -> list[str]:
    """Every problem opening the config's sources, each naming its table and source."""
    problems: list[str] = []
    targets: list[tuple[str, str | None, Mapping[str, Any], Mapping[str, Any]]] = [
        ("[master]", cfg.master.get("source"), cfg.master, {})]
    for ch in cfg.channels:
        if ch.enabled:
            targets.append((f"[[channels]] {ch.name!r}", ch.source, ch.options, ch.options))
    for where, source, table, ch_opts in targets:
        missing = [n for n in _env_refs(table) if n not in os.environ]
        for name in missing:
            problems.append(f"{where}: environment variable {name} is not set "
                            f"(referenced as {{ env = \"{name}\" }})")
        if not source:
            continue
        if is_url(source):
            if missing:
                continue  # the request would go without its credentials
            try:
                headers = {k: v.get() if isinstance(v, EnvRef) else v
                           for k, v in (table.get("headers") or {}).items()}
                a = table.get("auth")
                auth = (a["username"].get(), a["password"].get()) if a else None
            except ConfigError as e:
                problems.append(f"{where}: {e}")
                continue
            policy = FetchPolicy.from_config(cfg.http, ch_opts, [source])
            why = asyncio.run(_url_problem(source, policy, headers, auth))
        else:
            why = _path_problem(source, cfg.base_dir)
        if why:
            problems.append(f"{where}.source: {why}")
    told = {p.split("environment variable ", 1)[1].split(" ", 1)[0] for p in problems
            if "environment variable " in p}
    for where, name in _all_env_refs(cfg.raw):
        if name not in os.environ and name not in told:
            told.add(name)
            problems.append(f"{where}: environment variable {name} is not set "
                            f"(referenced as {{ env = \"{name}\" }})")
    for name, opts in [("[checks.image]", cfg.checks.get("image", {}))] + [
            (f"[[channels]] {c.name!r}.checks.image", c.checks.get("image", {}))
            for c in cfg.channels if c.enabled]:
        dam = opts.get("dam_dir")
        if dam and not cfg.resolve_path(dam).is_dir():
            problems.append(f"{name}.dam_dir: no folder {cfg.resolve_path(dam)}")
    problems += store_problems(cfg)
    return list(dict.fromkeys(problems))


def store_problems(cfg: Config) -> list[str]:
    """The store: a PostgreSQL server must answer to the URL's user and password (the
    database must exist; the first `auditor run` creates the tables in it); a SQLite
    file's folder must exist, and the file, when there is one, must be a SQLite database.
    A store made by a newer auditor is a problem too. Nothing is created or migrated.
    Each problem names the key that set the store."""
    from auditor.errors import StoreError
    from auditor.storage import _postgres_url, _sqlite_file

    raw = cfg.raw.get("store")
    where = "store" if isinstance(raw, str) else \
        "[store].url" if isinstance(raw, dict) and raw.get("url") else "[store].path"
    try:
        if _postgres_url(cfg.store_url) is not None:
            _postgres_version_ok(cfg.store_url)  # connects; no table is created
            return []
        path = _sqlite_file(cfg.store_url)
        if path != ":memory:" and not Path(path).parent.is_dir():
            return [f"{where}: no folder {Path(path).parent} for the SQLite store {path}"]
        if path != ":memory:" and Path(path).exists():
            _sqlite_version_ok(path)
    except StoreError as e:
        return [f"{where}: {e}"]
    return []


def _postgres_version_ok(url: str) -> None:
    import contextlib

    from auditor.storage import _postgres_module, describe

    postgres = _postgres_module()  # StoreError naming the extra when psycopg is missing
    with contextlib.closing(postgres.connect(url)) as conn:
        current = postgres._current_version(conn)
    if current is not None:
        postgres._check_version(current, postgres.SCHEMA_VERSION, describe(url))


def _sqlite_version_ok(path: str) -> None:
    """Read the file's schema version without writing to it (read-only, no WAL made)."""
    import contextlib
    import sqlite3
    from urllib.parse import quote

    from auditor.errors import StoreUnavailable
    from auditor.storage import sqlite as sqlite_store

    try:
        with contextlib.closing(sqlite3.connect(
                f"file:{quote(str(Path(path).resolve()))}?mode=ro", uri=True)) as conn:
            current = conn.execute("PRAGMA user_version").fetchone()[0]
    except sqlite3.DatabaseError as e:
        raise StoreUnavailable(f"cannot open the SQLite store {path}: {e}") from None
    sqlite_store._check_version(current, sqlite_store.SCHEMA_VERSION, path)
