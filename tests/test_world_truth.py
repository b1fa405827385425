"""Scoring findings against a world's labels: true and false positives, misses, benign hits."""

from __future__ import annotations

import pytest

from auditor.world.truth import score

LABELS = """channel,sku,listing_key,check,field,kind
google,A-1,A-1,price,price,price_typo
google,A-2,A-2,attributes,color,wrong_attribute
google,XA-9,XA-9,presence,listing,orphan_listing
shopify,B-1,4000001,title,title,wrong_title
"""
BENIGN = """channel,sku,listing_key,field,kind
google,A-3,A-3,title,brand_prefix
google,A-4,A-4,size,size_synonym
"""


@pytest.fixture()
def world(tmp_path):
    (tmp_path / "labels.csv").write_text(LABELS)
    (tmp_path / "benign.csv").write_text(BENIGN)
    return tmp_path


def F(channel, sku, check, field, outcome="failed", listing_key=None):  # noqa: N802
    return {"channel": channel, "sku": sku, "check": check, "field": field, "outcome": outcome,
            "listing_key": listing_key}


@pytest.mark.parametrize("findings,check,expect", [
    ([F("google", "A-1", "price", "price")], "price", (1, 0, 0, 0)),
    ([F("google", "A-1", "price", "sale_price", "warn")], "price", (1, 0, 0, 0)),
    ([F("google", "A-1", "price", "price", "passed")], "price", (0, 0, 1, 0)),
    ([F("google", "A-1", "price", "price")] * 2, "price", (1, 0, 0, 0)),
    ([F("google", "A-2", "attributes", "size")], "attributes", (0, 1, 1, 0)),
    ([F("google", "A-2", "attributes", "color")], "attributes", (1, 0, 0, 0)),
    ([F("google", None, "presence", "listing", listing_key="XA-9")], "presence", (1, 0, 0, 0)),
    ([F("google", "A-3", "title", "title", "warn")], "title", (0, 1, 1, 1)),
    ([F("google", "A-4", "attributes", "size")], "attributes", (0, 1, 1, 1)),
    ([F("shopify", "B-1", "title", "title", listing_key="4000001")], "title", (1, 0, 0, 0)),
    ([F("meta", "A-1", "price", "price")], "price", (0, 0, 1, 0)),  # meta is not scored
    ([F("google", "A-1", "colour_check", "x")], "price", (0, 0, 1, 0)),  # unknown check ignored
])
def test_score(world, findings, check, expect):
    s = score(findings, world, channels=["google", "shopify"])[check]
    assert (s.true_positives, s.false_positives, s.false_negatives, s.benign_hits) == expect


def test_totals_precision_recall_and_filters(world):
    found = [F("google", "A-1", "price", "price"), F("google", "A-3", "title", "title")]
    scores = score(found, world)
    total = scores["all"]
    assert (total.true_positives, total.false_positives, total.false_negatives) == (1, 1, 3)
    assert total.precision == 0.5 and total.recall == 0.25
    only = score(found, world, channels=["google"], checks=["price"])
    assert set(only) == {"price", "all"} and only["all"].recall == 1.0
    assert score([], world, checks=["image"])["image"].precision is None
