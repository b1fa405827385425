"""Findings scored against a world's ground truth (labels.csv and benign.csv).

A reported finding (outcome failed or warn) is a true positive when a label
names the same channel, listing (SKU, or listing key for orphans) and check,
and for the attributes check the same attribute. A finding on a listing and
field that only carries a benign variation is a benign hit (a false positive
the world planted on purpose).
"""

from __future__ import annotations

import csv
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping

from auditor.world.drift import KINDS

REPORTED = ("failed", "warn")
ATTRIBUTE_FIELDS = ("color", "size", "material", "weight", "width", "height", "length")


@dataclass
class Score:
    """Detection quality of one check (or ``all``)."""

    check: str
    true_positives: int = 0
    false_positives: int = 0
    false_negatives: int = 0
    benign_hits: int = 0

    @property
    def precision(self) -> float | None:
        """Share of reported findings that were planted (None when nothing was reported)."""
        n = self.true_positives + self.false_positives
        return self.true_positives / n if n else None

    @property
    def recall(self) -> float | None:
        """Share of planted findings that were reported (None when nothing was planted)."""
        n = self.true_positives + self.false_negatives
        return self.true_positives / n if n else None


def read_rows(path: Path) -> list[dict[str, str]]:
    """A labels.csv or benign.csv file as dicts."""
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def _key(channel: str, ident: str, check: str, fld: str) -> tuple[str, str, str, str]:
    # Only the attributes check is matched per field: the others name one thing per listing.
    return channel, ident, check, fld if check == "attributes" else ""


def _benign_check(fld: str) -> str:
    return "attributes" if fld in ATTRIBUTE_FIELDS else fld


def score(findings: Iterable[Mapping], world_dir: Path, channels: Iterable[str] | None = None,
          checks: Iterable[str] | None = None) -> dict[str, Score]:
    """Per-check scores (plus ``all``) of ``findings`` on the labelled channels and checks.

    ``findings`` are dicts with at least channel, sku, check, field, outcome (and
    optionally listing_key), as ``auditor findings --format json`` prints them.
    Only ``channels`` and ``checks`` given are scored (default: all of the world's).
    """
    chans = set(channels) if channels is not None else None
    wanted = set(checks) if checks is not None else set(KINDS)
    wanted &= set(KINDS)
    labels = [r for r in read_rows(Path(world_dir) / "labels.csv")
              if r["check"] in wanted and (chans is None or r["channel"] in chans)]
    benign = {(r["channel"], r["sku"], _benign_check(r["field"]))
              for r in read_rows(Path(world_dir) / "benign.csv")}
    planted: dict[tuple, dict[str, str]] = {}
    for r in labels:
        for ident in {r["sku"], r["listing_key"]} - {""}:
            planted[_key(r["channel"], ident, r["check"], r["field"])] = r
    out = {c: Score(c) for c in sorted(wanted)}
    found: set[int] = set()
    for f in findings:
        check = f.get("check")
        if check not in wanted or f.get("outcome") not in REPORTED:
            continue
        if chans is not None and f.get("channel") not in chans:
            continue
        idents = [x for x in (f.get("sku"), f.get("listing_key")) if x]
        hit = next((planted[k] for k in (_key(f["channel"], i, check, f.get("field") or "")
                                         for i in idents) if k in planted), None)
        if hit is not None:
            if id(hit) not in found:
                found.add(id(hit))
                out[check].true_positives += 1
            continue
        out[check].false_positives += 1
        if any((f["channel"], i, check) in benign for i in idents):
            out[check].benign_hits += 1
    for r in labels:
        if id(r) not in found:
            out[r["check"]].false_negatives += 1
    total = Score("all")
    for s in out.values():
        total.true_positives += s.true_positives
        total.false_positives += s.false_positives
        total.false_negatives += s.false_negatives
        total.benign_hits += s.benign_hits
    out["all"] = total
    return out


def by_kind(world_dir: Path, channels: Iterable[str] | None = None) -> dict[str, int]:
    """How many findings of each kind were planted (on ``channels``)."""
    chans = set(channels) if channels is not None else None
    counts: dict[str, int] = defaultdict(int)
    for r in read_rows(Path(world_dir) / "labels.csv"):
        if chans is None or r["channel"] in chans:
            counts[r["kind"]] += 1
    return dict(counts)
