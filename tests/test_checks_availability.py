"""Availability check: oversell risk, lost sales, safety stock, quantities."""

from __future__ import annotations

import pytest

from auditor.model import Availability as A
from tests.checks_factory import listing, master, problems, run


@pytest.mark.parametrize("mkw, shown, qty, options, expect", [
    ({"quantity": 10}, A.IN_STOCK, None, {}, []),
    ({"quantity": 0}, A.OUT_OF_STOCK, None, {}, []),
    # oversell risk: channel sells what the master does not have
    ({"quantity": 0}, A.IN_STOCK, None, {}, [("failed", "critical")]),
    # lost sales
    ({"quantity": 10}, A.OUT_OF_STOCK, None, {}, [("failed", "major")]),
    # safety stock: 3 units with 5 kept back is out of stock
    ({"quantity": 3}, A.IN_STOCK, None, {"safety_stock": 5}, [("failed", "critical")]),
    ({"quantity": 3}, A.OUT_OF_STOCK, None, {"safety_stock": 5}, []),
    # no quantity: the master's availability decides
    ({"quantity": None, "availability": A.OUT_OF_STOCK}, A.IN_STOCK, None, {},
     [("failed", "critical")]),
    ({"quantity": None, "availability": A.IN_STOCK}, A.IN_STOCK, None, {}, []),
    # backorder while the master has none: orderable, not a promise of stock
    ({"quantity": 0}, A.BACKORDER, None, {}, []),
    # preorder while in stock: odd, a warning
    ({"quantity": 10}, A.PREORDER, None, {}, [("warn", "minor")]),
    # the channel offers more than the master can sell
    ({"quantity": 5}, A.IN_STOCK, 12, {}, [("failed", "critical")]),
    ({"quantity": 5}, A.IN_STOCK, 5, {}, []),
    ({"quantity": 5}, A.IN_STOCK, 12, {"compare_quantity": False}, []),
    # only a quantity on the channel
    ({"quantity": 0}, None, 4, {}, [("failed", "critical")]),
])
def test_availability_table(mkw, shown, qty, options, expect):
    m = master(**mkw)
    out = run("availability", m, listing(m, availability=shown, quantity=qty), options)
    assert [(f.outcome.value, f.severity.value) for f in problems(out)] == expect
    assert all((f.check, f.field) == ("availability", "availability") for f in out)


def test_nothing_to_compare():
    m = master(quantity=None, availability=None)
    assert run("availability", m, listing(m)) == []
    assert run("availability", master(), listing(availability=None, quantity=None)) == []
    assert run("availability", master(), None) == []


@pytest.mark.parametrize("qty", [0, 1, 7, 1000])
def test_identical_listing_never_fails(qty):
    m = master(quantity=qty)
    assert problems(run("availability", m, listing(m))) == []
