import gzip
import re

from auditor.config import load_config
from auditor.model import SourceStatus
from auditor.runner import run_audit
from auditor.storage import open_store
from tests.conftest import NOW, write


def audit(world, **kw):
    cfg = load_config(world / "config.toml")
    store = open_store(cfg.store_url)
    try:
        return run_audit(cfg, store, now=NOW, **kw), store
    except BaseException:
        store.close()
        raise


def test_vertical_slice_finds_planted_drift(mini_world):
    report, store = audit(mini_world)
    (ch,) = report.channels
    assert ch.status is SourceStatus.COMPLETE and ch.listings == 3 and ch.linked == 3
    got = {(f.sku, f.check) for f in store.findings(state="open")}
    assert ("TS-BLU-M", "title") in got and ("TS-BLU-M", "price") in got
    assert ("TS-RED-M", "price") not in got and ("TS-GRN-M", "title") not in got
    assert report.exit_code == 1
    scores = {(r.channel, r.check): r for r in store.scores(report.run_id)}
    assert scores[("google", "price")].passed == 2 and scores[("google", "price")].failed == 1


def test_fixed_drift_resolves_on_next_complete_run(mini_world):
    audit(mini_world)[1].close()
    feed = (mini_world / "google.xml").read_text()
    feed = feed.replace("Totally different thing", "Acme Tee, Blue, M").replace("25.00", "20.00")
    (mini_world / "google.xml").write_text(feed)
    report, store = audit(mini_world)
    assert report.channels[0].resolved >= 2
    assert store.findings(state="open") == [] or all(
        f.sku != "TS-BLU-M" for f in store.findings(state="open"))


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
    assert {f.sku for f in store.findings(state="open")} >= {"TS-BLU-M"}


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
    assert len(errs) == 1 and "google.xml:" in errs[0].location
    assert "bad price 'lots'" in errs[0].reason
    assert report.channels[0].status is SourceStatus.COMPLETE


def _with_channels(world, workers: int, names=("google-b", "google-c")):
    """The mini world with more channels reading the same feed, and ``[run] workers``."""
    text = re.sub(r"^\[run\]\nworkers = \d+\n", "", (world / "config.toml").read_text())
    text = f"[run]\nworkers = {workers}\n" + text
    for name in names:
        if f'"{name}"' not in text:
            text += f'\n[[channels]]\nname = "{name}"\ntype = "google_merchant"\nsource = "google.xml"\n'
    (world / "config.toml").write_text(text)


def _outcome(world):
    report, store = audit(world)
    try:
        # The snapshot (written while the workers ran) is the one the run names.
        snap = next(r.master_snapshot_id for r in store.runs() if r.id == report.run_id)
        assert snap is not None and snap == report.master["snapshot_id"]
        assert store.master_count() == 3
        findings = sorted((f.fingerprint, f.outcome, f.actual)
                          for f in store.findings(state="open"))
        scores = sorted((r.channel, r.check, r.passed, r.failed, r.warn)
                        for r in store.scores(report.run_id))
        links = sorted((k.channel, k.listing_key, k.sku) for k in store.links())
        listings = sorted((li.channel, li.key, li.title) for li in store.listings())
    finally:
        store.close()
    return report, findings, scores, links, listings


def test_workers_audit_exactly_like_one_process(mini_world):
    from auditor.config import load_config
    from auditor.runner import worker_count

    _with_channels(mini_world, 1)
    one = _outcome(mini_world)
    (mini_world / "auditor.db").unlink()
    _with_channels(mini_world, 2)
    cfg = load_config(mini_world / "config.toml")
    store = open_store(cfg.store_url)
    assert worker_count(cfg, store, 3) == 2
    store.close()
    two = _outcome(mini_world)
    assert [c.channel for c in two[0].channels] == ["google", "google-b", "google-c"]
    assert all(c.status is SourceStatus.COMPLETE and c.listings == 3 for c in two[0].channels)
    assert one[1:] == two[1:] and len(two[1]) >= 6
    assert [c.outcomes for c in one[0].channels] == [c.outcomes for c in two[0].channels]


def test_worker_that_dies_fails_only_its_channel(mini_world, monkeypatch):
    import os

    from auditor.connectors.google_merchant import GoogleMerchant

    _with_channels(mini_world, 2)
    audit(mini_world)[1].close()  # a complete first run: open findings on every channel
    real = GoogleMerchant.read

    def read(self, ctx):
        if ctx.channel.name == "google-b":
            os._exit(3)  # a worker killed mid-read (out of memory, a crash in C code)
        yield from real(self, ctx)

    monkeypatch.setattr(GoogleMerchant, "read", read)
    report, store = audit(mini_world)
    try:
        by = {c.channel: c for c in report.channels}
        assert by["google-b"].status is SourceStatus.FAILED
        assert "exited with code 3" in by["google-b"].message
        assert by["google"].status is SourceStatus.COMPLETE
        assert by["google-c"].status is SourceStatus.COMPLETE
        assert report.exit_code == 2
        rs = {r.source: r for r in store.run_sources(report.run_id)}
        assert rs["google-b"].status == "failed"
        # The failed channel's findings stay open; nothing was concluded from it.
        still = {f.fingerprint for f in store.findings(state="open", channel="google-b")}
        assert still and not store.findings(state="resolved", channel="google-b")
    finally:
        store.close()


def test_worker_log_records_reach_the_auditor_process(mini_world, monkeypatch, caplog):
    import logging

    from auditor.connectors.google_merchant import GoogleMerchant

    _with_channels(mini_world, 2)
    real = GoogleMerchant.read

    def read(self, ctx):
        logging.getLogger("auditor.connectors.google_merchant").warning(
            "reading %s in pid-tagged worker", ctx.channel.name)
        yield from real(self, ctx)

    monkeypatch.setattr(GoogleMerchant, "read", read)
    with caplog.at_level(logging.WARNING):
        audit(mini_world)[1].close()
    got = {r.getMessage() for r in caplog.records if "pid-tagged" in r.getMessage()}
    assert got == {f"reading {n} in pid-tagged worker" for n in ("google", "google-b",
                                                                   "google-c")}


def test_background_step_result_or_fallback_in_this_process():
    import os

    from auditor.runner import _in_fork

    parent = os.getpid()
    assert _in_fork(lambda: ("child", os.getpid() != parent))() == ("child", True)

    calls = []

    def dies_in_child():
        calls.append(os.getpid())
        if os.getpid() != parent:
            os._exit(7)  # killed mid-way: the parent computes it itself
        return "here"

    assert _in_fork(dies_in_child)() == "here" and calls == [parent]



def test_workers_take_the_longest_channels_first(tmp_path):
    from auditor.config import ChannelConfig
    from auditor.runner import longest_first

    def channel(name, source):
        return ChannelConfig(name, "tabular", source, None, True, {}, {}, tmp_path)

    (tmp_path / "small.csv").write_text("x" * 10)
    (tmp_path / "big.csv").write_text("x" * 1000)
    (tmp_path / "drop").mkdir()
    (tmp_path / "drop" / "a.csv").write_text("x" * 500)
    chans = [channel("small", "small.csv"), channel("done-fast", "big.csv"),
             channel("glob", "drop/*.csv"), channel("remote", "https://feeds.example/f.xml"),
             channel("done-slow", "small.csv"), channel("missing", "nope.csv"),
             channel("big", str(tmp_path / "big.csv"))]
    order = [ch.name for _, ch in longest_first(chans, {"done-fast": 3.0, "done-slow": 40.0})]
    # Never run: URL (size unknown) first, then by file size; then by last duration.
    assert order == ["remote", "big", "glob", "small", "missing", "done-slow", "done-fast"]
    assert [i for i, _ in longest_first(chans, {})][:3] == [3, 1, 6]  # ties: config order


def test_last_durations_come_from_complete_reads(mini_world):
    from auditor.config import load_config

    cfg = load_config(mini_world / "config.toml")
    store = open_store(cfg.store_url)
    try:
        run_audit(cfg, store, now=NOW)
        durations = store.last_durations()
        assert set(durations) == {c.name for c in cfg.channels if c.enabled}
        assert all(0 <= s < 60 for s in durations.values())
    finally:
        store.close()


def _changed_master(world):
    master = (world / "master.csv").read_text()
    (world / "master.csv").write_text(master.replace("TS-BLU-M,\"Acme Tee, Blue, M\",Acme,,20.00",
                                                     "TS-BLU-M,\"Acme Tee, Blue, M\",Acme,,25.00"))


def test_workers_write_a_changed_master_before_the_channels(mini_world, monkeypatch):
    """With workers, the new snapshot is written by the forked planning step before the
    channel workers start: a worker's listing writes never wait for its transaction.
    And a run with a changed master audits exactly as one process does."""
    import time

    from auditor.storage.sqlite import SQLiteStore

    def runs_twice(workers):
        _with_channels(mini_world, workers)
        (mini_world / "auditor.db").unlink(missing_ok=True)
        audit(mini_world)[1].close()
        _changed_master(mini_world)
        try:
            report, findings, scores, links, listings = _outcome(mini_world)
        finally:
            (mini_world / "master.csv").write_text(original)
        return report, findings, scores, links, listings

    original = (mini_world / "master.csv").read_text()
    one = runs_twice(1)
    real_commit, real_save = SQLiteStore.commit_master, SQLiteStore.save_listings

    def slow_commit(self, *a, **kw):
        time.sleep(1.0)  # a large snapshot: still being written after the fork, if it were
        return real_commit(self, *a, **kw)

    def save(self, run_id, channel, observed, shard=None):
        last = self.last_master_snapshot()  # the first run's has changed == 0
        if last is None or last.records != 3 or last.changed != 1:
            raise AssertionError("the new master snapshot is not written yet")
        return real_save(self, run_id, channel, observed, shard)

    monkeypatch.setattr(SQLiteStore, "commit_master", slow_commit)
    _with_channels(mini_world, 2)
    (mini_world / "auditor.db").unlink()
    audit(mini_world)[1].close()
    _changed_master(mini_world)
    monkeypatch.setattr(SQLiteStore, "save_listings", save)
    report, store = audit(mini_world)
    try:
        assert [c.status for c in report.channels] == [SourceStatus.COMPLETE] * 3, \
            [c.message for c in report.channels]
        assert report.master["changed"] == 1 and not report.master_error
        assert store.last_master_snapshot().id == report.master["snapshot_id"]
    finally:
        store.close()
        (mini_world / "master.csv").write_text(original)
    monkeypatch.setattr(SQLiteStore, "save_listings", real_save)
    two = runs_twice(2)
    assert one[1:] == two[1:] and any(f[0] for f in two[1])
    assert [c.outcomes for c in one[0].channels] == [c.outcomes for c in two[0].channels]
    assert one[0].master["changed"] == two[0].master["changed"] == 1


def test_a_master_that_cannot_be_written_by_the_forked_step(mini_world, monkeypatch):
    """The forked step fails to write the snapshot: the run says so (master_error, exit
    2) and audits the channels against the master as read, as one process does."""
    from auditor.storage.sqlite import SQLiteStore

    _with_channels(mini_world, 2)
    audit(mini_world)[1].close()
    _changed_master(mini_world)

    def broken(self, *a, **kw):
        raise RuntimeError("disk full")

    monkeypatch.setattr(SQLiteStore, "commit_master", broken)
    report, store = audit(mini_world)
    try:
        assert report.master_error and "could not be stored" in report.master_error
        assert "disk full" in report.master_error
        assert report.exit_code == 2
        assert all(c.status is SourceStatus.COMPLETE and c.listings == 3
                   for c in report.channels)
        assert store.last_master_snapshot().changed == 0  # the earlier snapshot stays
        price = {f.sku: f for f in store.findings(state="open", check="price")}
        assert "TS-BLU-M" not in price  # audited against the master as read (25.00)
    finally:
        store.close()


def test_workers_get_the_replaced_versions_packed_by_the_forked_step(mini_world, monkeypatch,
                                                                     tmp_path):
    """With workers, the versions a changed master replaces are added to the history by
    the forked planning step (packing a million-SKU master's hundreds of thousands of
    them held up the channel workers' start), and the run's history holds them."""
    import os

    from auditor.session import AuditSession
    from auditor.storage import MasterHistory

    _with_channels(mini_world, 2)
    audit(mini_world)[1].close()
    _changed_master(mini_world)
    calls = tmp_path / "adds"
    real_add = MasterHistory.add

    def add(self, replaced, until):
        if replaced:
            with calls.open("a") as f:
                f.write(f"{os.getpid()}\n")
        return real_add(self, replaced, until)

    monkeypatch.setattr(MasterHistory, "add", add)
    cfg = load_config(mini_world / "config.toml")
    store = open_store(cfg.store_url)
    try:
        session = AuditSession(cfg, store, now=NOW)
        report = session.run()
        assert report.master["changed"] == 1 and not report.master_error
        pids = calls.read_text().split()
        assert pids and str(os.getpid()) not in pids  # added in the forked step only
        (until, old), = session.history["TS-BLU-M"]
        assert str(old.price.amount) == "20.00"  # the version the import replaced
        (until, stored), = store.master_history()["TS-BLU-M"]  # and the store holds it
        assert str(stored.price.amount) == "20.00"
    finally:
        store.close()
