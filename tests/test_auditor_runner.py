import gzip

from auditor.config import load_config
from auditor.model import SourceStatus
from auditor.runner import run_audit
from auditor.store import Store
from tests.conftest import NOW, write


def audit(world, **kw):
    cfg = load_config(world / "config.toml")
    store = Store(cfg.store_path)
    try:
        return run_audit(cfg, store, now=NOW, **kw), store
    except BaseException:
        store.close()
        raise


def test_vertical_slice_finds_planted_drift(mini_world):
    report, store = audit(mini_world)
    (ch,) = report.channels
    assert ch.status is SourceStatus.COMPLETE and ch.listings == 3 and ch.linked == 3
    got = {(f["sku"], f["check"]) for f in store.findings(state="open")}
    assert ("TS-BLU-M", "title") in got and ("TS-BLU-M", "price") in got
    assert ("TS-RED-M", "price") not in got and ("TS-GRN-M", "title") not in got
    assert report.exit_code == 1
    scores = {(r["channel"], r["check_name"]): r for r in store.scores(report.run_id)}
    assert scores[("google", "price")]["passed"] == 2 and scores[("google", "price")]["failed"] == 1


def test_fixed_drift_resolves_on_next_complete_run(mini_world):
    audit(mini_world)[1].close()
    feed = (mini_world / "google.xml").read_text()
    feed = feed.replace("Totally different thing", "Acme Tee, Blue, M").replace("25.00", "20.00")
    (mini_world / "google.xml").write_text(feed)
    report, store = audit(mini_world)
    assert report.channels[0].resolved >= 2
    assert store.findings(state="open") == [] or all(
        f["sku"] != "TS-BLU-M" for f in store.findings(state="open"))


def test_unreadable_source_fails_without_touching_findings(mini_world):
    audit(mini_world)[1].close()
    # A truncated gzip where the feed was: the source fails, open findings stay open.
    data = gzip.compress((mini_world / "google.xml").read_bytes())
    (mini_world / "google.xml").write_bytes(data[: len(data) // 2])
    report, store = audit(mini_world)
    ch = report.channels[0]
    assert ch.status is SourceStatus.FAILED and ch.resolved == 0
    assert "google.xml" in ch.message
    assert report.exit_code == 2
    assert {f["sku"] for f in store.findings(state="open")} >= {"TS-BLU-M"}


def test_empty_feed_after_full_one_is_a_source_problem(mini_world):
    audit(mini_world)[1].close()
    write(mini_world / "google.xml", '<?xml version="1.0"?><rss version="2.0"><channel></channel></rss>')
    report, store = audit(mini_world)
    ch = report.channels[0]
    assert ch.status is SourceStatus.FAILED and "no listings" in ch.message
    assert len(store.listings("google")) == 3  # nothing marked removed


def test_rejected_master_keeps_previous_snapshot(mini_world):
    audit(mini_world)[1].close()
    (mini_world / "master.csv").write_text("sku,title,price,currency\nX,broken,abc,USD\n")
    report, store = audit(mini_world)
    assert report.master_error and "master.csv:2" in report.master_error
    assert store.master_count() == 3
    assert report.exit_code == 2


def test_bad_rows_are_recorded_on_the_run(mini_world):
    feed = (mini_world / "google.xml").read_text().replace(
        "</channel>", "<item><g:id>BAD</g:id><g:price>lots</g:price></item></channel>")
    (mini_world / "google.xml").write_text(feed)
    report, store = audit(mini_world)
    errs = store.run_errors(report.run_id)
    assert len(errs) == 1 and "google.xml:" in errs[0]["location"]
    assert "bad price 'lots'" in errs[0]["reason"]
    assert report.channels[0].status is SourceStatus.COMPLETE
