"""Identifiers check: invalid GTINs, GTINs differing from the master."""

from __future__ import annotations

import pytest

from auditor.model import Outcome
from tests.checks_factory import GTIN, NOW, OTHER_GTIN, days, listing, master, problems, run

BAD_CHECK = GTIN[:-1] + str((int(GTIN[-1]) + 1) % 10)


@pytest.mark.parametrize("shown, expect", [
    (GTIN.zfill(14), []),
    (GTIN, []),                                  # GTIN-13 vs GTIN-14 form
    ("0" + GTIN, []),
    (BAD_CHECK, [("failed", "invalid")]),        # wrong check digit
    ("12345", [("failed", "invalid")]),          # too short
    ("ABC123456789", [("failed", "invalid")]),   # not digits
    (OTHER_GTIN, [("failed", "differs")]),
    (None, []),                                  # channel carries no GTIN
])
def test_identifiers_table(shown, expect):
    out = run("identifiers", master(), listing(gtin=shown))
    got = [(f.outcome.value, "invalid" if f.details.get("invalid") else "differs")
           for f in problems(out)]
    assert got == expect
    assert all((f.check, f.field) == ("identifiers", "gtin") for f in out)


def test_upc_a_equals_its_ean13():
    m = master(gtin="036282818705".zfill(14))
    assert problems(run("identifiers", m, listing(m, gtin="0036282818705"))) == []


def test_additional_gtin_counts():
    m = master()
    li = listing(m, gtin=OTHER_GTIN, attributes={"additional_gtins": GTIN.zfill(14)})
    assert problems(run("identifiers", m, li)) == []


def test_invalid_gtin_on_orphan_listing():
    out = run("identifiers", None, listing(gtin=BAD_CHECK))
    assert [f.outcome for f in out] == [Outcome.FAILED]


def test_stale_gtin():
    old, now = master(gtin=OTHER_GTIN.zfill(14)), master()
    out = problems(run("identifiers", now, listing(now, gtin=OTHER_GTIN),
                       history={now.sku: [(NOW - days(1), old)]}))
    assert out[0].details["stale"] is True and "valid until" in out[0].message
