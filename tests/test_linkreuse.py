"""Links carried over on a repeat audit (auditor/linkreuse.py) change nothing a run records.

Two stores audit the same generated world through the same sequence of runs: one as
the auditor runs (unchanged orphans' links carried over from the last run, the linker's
indexes built before forking only as the last runs used them), one with both forced
off (every link decided anew, every index built). After every run the findings
(fingerprint, state, outcome, values, runs), the scores, the links with their notes
(reason, candidates, evidence) and the run summaries' counts must be equal. The
sequence moves everything the carried-over links depend on: the audit time (sale
windows), the ``[linking]`` options, a person's rejection, an orphan's title in a feed,
and the master.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import re
from datetime import timedelta
from pathlib import Path

import pytest

from auditor import linking, runner
from auditor.config import load_config
from auditor.demo import config_text
from auditor.linkreuse import EarlierLinks
from auditor.runner import import_master, run_audit
from auditor.storage import open_store
from auditor.world.generate import generate_world
from bench.world_audit import _now

CHANNELS = ["google", "meta", "amazon", "pos-berlin", "pos-munich"]


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("world")
    generate_world(d, size=600, seed=3)
    return d


def _config(world: Path, work: Path, extra: str = "") -> Path:
    text = config_text("http://127.0.0.1:9").replace('"world/', f'"{world}/')
    text = text.replace("[store]", "[checks.image]\nenabled = false\n\n[run]\nworkers = 2\n\n"
                        + extra + "[store]", 1)
    work.mkdir(exist_ok=True)
    (work / "config.toml").write_text(text)
    return work / "config.toml"


def _state(store) -> dict:
    def rows(records) -> list[str]:
        return sorted(json.dumps(r.to_dict(), sort_keys=True, default=str) for r in records)

    runs = store.runs(100)
    return {
        "findings": rows(store.findings()),
        "scores": [rows(store.scores(r.id)) for r in runs],
        "links": rows(store.link_states()),
        "runs": [[{k: v for k, v in c.items()
                   if k not in ("seconds", "link_indexes", "carried_link_indexes",
                                 "link_inputs")}
                  for c in r.summary.get("channels") or ()] for r in runs],
    }


def _orphan(store, channel: str) -> str:
    """A listing of ``channel`` whose SKU matches no master."""
    for s in store.link_states(channel, "unlinked"):
        if s.reason and "matches no master" in s.reason:
            return s.listing_key
    raise AssertionError(f"the world has no orphan on {channel}")


def _retitle(path: Path, sku: str, title: str) -> None:
    """Give the row of ``sku`` in a POS export another title."""
    with path.open(encoding="cp1252", newline="") as f:
        rows = list(csv.reader(f, delimiter=";"))
    head = rows[0]
    hit = [r for r in rows[1:] if r[head.index("SKU")] == sku]
    assert hit, sku
    hit[0][head.index("Item Name")] = title
    with path.open("w", encoding="cp1252", newline="") as f:
        csv.writer(f, delimiter=";").writerows(rows)


def test_carried_over_links_give_the_same_run_as_deciding_every_link(
        world, tmp_path, monkeypatch, caplog):
    caplog.set_level(logging.INFO, logger="auditor.runner")
    now = _now(world)
    works = {"reuse": tmp_path / "reuse", "full": tmp_path / "full"}
    cfgs = {k: _config(world, w) for k, w in works.items()}
    prepare = linking.Linker.prepare
    prepared: list = []

    def run(kind: str, at, channels=CHANNELS) -> None:
        if kind == "full":  # every link decided anew, every index built before the fork
            monkeypatch.setattr(runner, "earlier_links",
                                lambda store, channel, inputs: EarlierLinks())
            monkeypatch.setattr(linking.Linker, "prepare",
                                lambda self, needed=None, background=False: prepare(self, None))
        else:  # as the auditor runs; what it builds before forking is noted
            monkeypatch.setattr(linking.Linker, "prepare",
                                lambda self, needed=None, background=False: (
                                    prepared.append(needed),
                                    prepare(self, needed, background))[1])
        cfg = load_config(cfgs[kind])
        store = open_store(cfg.store_url)
        try:
            run_audit(cfg, store, channels, now=at)
        finally:
            store.close()
        monkeypatch.undo()

    def same() -> dict:
        states = {}
        for kind in works:
            store = open_store(load_config(cfgs[kind]).store_url)
            states[kind] = _state(store)
            store.close()
        assert states["reuse"] == states["full"]
        return states["reuse"]

    def carried() -> int:
        n = sum(int(m.group(1)) for r in caplog.records
                for m in [re.search(r"(\d+) links carried over", r.getMessage())] if m)
        caplog.clear()
        return n

    for kind in works:  # last week's master, then this week's
        cfg = load_config(cfgs[kind])
        store = open_store(cfg.store_url)
        import_master(dataclasses.replace(
            cfg, master={**cfg.master, "source": str(world / "master_previous.csv")}),
            store, now - timedelta(days=7))
        store.close()
    # 1: the first run of this week's master: nothing to carry over (it was read anew)
    for kind in works:
        run(kind, now)
    same()
    assert carried() == 0
    # 2: the same files again: the orphans' links, decided against the master the first
    # run read and stored as the snapshot now in force, are carried over, and no title-
    # matching index is built before forking for them
    for kind in works:
        run(kind, now)
    state = same()
    assert carried() > 0
    assert prepared[-1] is not None and linking.TITLE_INDEX not in prepared[-1]
    assert sum(1 for ln in state["links"] if "matches no master" in str(ln)) > 0
    for kind in works:
        run(kind, now)
    state = same()
    assert carried() > 0
    assert sum(1 for ln in state["links"] if "matches no master" in str(ln)) > 0
    # 3: later (sale windows end, stale values age): links carried over, same findings;
    # the last run needed no title-matching index, so none was built before forking
    for kind in works:
        run(kind, now + timedelta(days=20))
    same()
    assert carried() > 0
    assert prepared[-1] is not None and linking.TITLE_INDEX not in prepared[-1]
    # 4: the [linking] options change: nothing carried over; then carried over again
    for kind in works:
        cfgs[kind] = _config(world, works[kind], "[linking]\nsuggest_score = 0.3\n\n")
        run(kind, now + timedelta(days=20))
    same()
    assert carried() == 0
    for kind in works:
        run(kind, now + timedelta(days=21))
    same()
    assert carried() > 0
    # 5: an orphan's title in a feed becomes a master's: that listing is linked anew (the
    # masters it fits named as suggestions), the rest carried over; then it is carried too
    store = open_store(load_config(cfgs["full"]).store_url)
    key = _orphan(store, "pos-berlin")
    store.close()
    with (world / "master.csv").open(encoding="utf-8", newline="") as f:
        title = next(csv.DictReader(f))["title"]
    _retitle(world / "feeds" / "pos-berlin.csv", key, title)
    for kind in works:
        run(kind, now + timedelta(days=21))
    state = same()
    assert carried() > 0
    suggested = [ln for ln in state["links"] if key in ln and "suggestions" in ln]
    assert suggested, "the retitled orphan got no suggestion"
    for kind in works:
        run(kind, now + timedelta(days=22))
    assert same()["links"] == state["links"]
    assert carried() > 0
    # 6: a person rejects its first suggestion: its channel decides anew, then carries again
    for kind in works:
        store = open_store(load_config(cfgs[kind]).store_url)
        sku = next(s for s in store.link_states("pos-berlin") if s.listing_key == key
                   ).candidates[0]
        store.decide_link("pos-berlin", key, sku, "rejected", now)
        store.close()
    for kind in works:
        run(kind, now + timedelta(days=22), ["pos-berlin"])
    same()
    assert carried() == 0
    for kind in works:
        run(kind, now + timedelta(days=22))
    same()
    assert carried() > 0
    # 7: the master changes: decided anew against it; then carried over again
    master = world / "master.csv"
    lines = master.read_text(encoding="utf-8").splitlines()
    lines[1] = lines[1].replace(",", ",X", 1)  # the first record's group id
    master.write_text("\n".join(lines) + "\n", encoding="utf-8")
    for kind in works:
        run(kind, now + timedelta(days=23))
    same()
    assert carried() == 0
    for kind in works:  # decided against the master read anew, now the snapshot in force
        run(kind, now + timedelta(days=23))
    same()
    assert carried() > 0
