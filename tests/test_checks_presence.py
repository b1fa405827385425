"""Presence check: missing listings in scope, orphans, discontinued masters listed."""

from __future__ import annotations

import pytest

from auditor.model import Link, LinkMethod, MasterStatus, Outcome
from auditor.checks.presence import in_scope
from tests.checks_factory import context, listing, master, problems, run
from auditor import plugins


@pytest.mark.parametrize("m, has_listing, scope, expect", [
    (master(), True, {}, []),
    (master(), False, {}, [("failed", "missing")]),
    (master(status=MasterStatus.DISCONTINUED), False, {}, []),
    (master(status=MasterStatus.DRAFT), False, {}, []),
    (master(status=MasterStatus.DISCONTINUED), True, {}, [("failed", "zombie")]),
    (master(status=MasterStatus.DRAFT), True, {}, [("warn", "draft")]),
    # out of the channel's assortment: not expected there
    (master(attributes={"category": "home"}), False, {"category": ["apparel"]}, []),
    (master(attributes={"category": "Apparel"}), False, {"category": ["apparel"]},
     [("failed", "missing")]),
    (master(brand="Acme"), False, {"brand": ["Northwind"]}, []),
])
def test_presence_table(m, has_listing, scope, expect):
    out = run("presence", m, listing(m) if has_listing else None,
              channel_options={"scope": scope})
    assert [(f.outcome.value, f.details["kind"]) for f in problems(out)] == expect
    assert all((f.check, f.field) == ("presence", "listing") for f in out)


def test_orphan():
    out = run("presence", None, listing(sku="GHOST-1", key="GHOST-1"))
    assert [(f.outcome, f.details["kind"], f.listing_key) for f in out] == \
        [(Outcome.FAILED, "orphan", "GHOST-1")]


def test_ambiguous_link_is_not_an_orphan():
    ctx = context("presence")
    ctx.link = Link("google", "K", None, LinkMethod.AMBIGUOUS, 0.9, ("A", "B"))
    out = plugins.checks()["presence"].fn(None, listing(key="K"), ctx)
    assert [(f.outcome, f.details["candidates"]) for f in out] == \
        [(Outcome.NOT_EVALUATED, ["A", "B"])]


def test_in_scope_multi_valued():
    assert in_scope(master(attributes={"category": "shoes|sale"}), {"category": ["sale"]})
    assert not in_scope(master(attributes={}), {"category": ["sale"]})
