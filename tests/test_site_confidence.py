"""The generated shop, crawled in a full audit: no failed (or warn) finding rests on a field
read with low confidence, and the planted errors on the shop are still all found (the
uncertainty rule hides nothing real)."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest

from auditor.confidence import READ_FIELD
from auditor.extract import HEURISTIC
from auditor.pagereader import LOW_CONFIDENCE

@pytest.fixture(scope="module")
def audited(tmp_path_factory):
    from datetime import datetime, timezone

    from auditor.config import load_config
    from auditor.demo import config_text
    from auditor.runner import import_master, run_audit
    from auditor.storage import open_store
    from auditor.world.generate import generate_world
    from auditor.world.shop import ShopServer

    now = datetime(2026, 3, 10, 12, tzinfo=timezone.utc)
    world = tmp_path_factory.mktemp("confworld")
    generate_world(world, size=200, seed=7, now=now, drift_rate=0.3)
    work = tmp_path_factory.mktemp("confrun")
    with ShopServer(world, crawl_delay=None) as shop:
        text = config_text(shop.base_url).replace('"world/', f'"{world}/')
        text = text.replace("[store]", "[checks.image]\nenabled = false\n\n[store]", 1)
        (work / "config.toml").write_text(text)
        cfg = load_config(work / "config.toml")
        store = open_store(cfg.store_url)
        previous = dataclasses.replace(
            cfg, master={**cfg.master, "source": str(world / "master_previous.csv")})
        import_master(previous, store, now - timedelta(days=7))
        report = run_audit(cfg, store, ["site"], now=now)
        yield world, store, report
        store.close()


def test_no_failed_finding_rests_on_a_low_confidence_read(audited):
    world, store, report = audited
    site, = report.channels
    assert site.status.value == "complete" and site.listings > 150
    listings = {li.key: li for li in store.listings(channel="site")}
    # the shop has pages without structured data: the reader's confidences are in play
    heuristic = [li for li in listings.values() if HEURISTIC in li.sources.values()]
    assert heuristic and all(li.confidence for li in heuristic)
    reported = [f for f in store.findings(channel="site")
                if f.outcome in ("failed", "warn") and f.listing_key]
    assert reported, "the drifted world plants errors on the shop"
    for f in reported:
        li = listings[f.listing_key]
        c = li.confidence.get(READ_FIELD.get(f.field, f.field))
        assert c is None or c >= LOW_CONFIDENCE, (f.check, f.field, f.message, li.sources, c)


def test_planted_shop_errors_are_found_and_nothing_else(audited):
    from auditor.world.truth import KINDS, score

    world, store, _ = audited
    found = [f.to_dict() for f in store.findings(state="open", channel="site")]
    ran = [k for k in KINDS if k != "image"]  # (images are off in this run)
    s = score(found, world, channels=["site"], checks=ran)["all"]
    assert s.true_positives > 0
    assert s.false_negatives == 0 and s.false_positives == 0, s
