"""The service and triage parts of the interface (what `auditor serve`, `auditor links` and
the JSON API ask a store) give the same answers on SQLite and on PostgreSQL.

One scripted history is written to both stores through the interface; every read is then
compared, SQLite's answer being the reference, with a few absolute checks so that two
equally wrong answers cannot pass.
"""

from __future__ import annotations

import dataclasses

from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

from auditor.errors import StoreError
from auditor.model import (Finding, Link, LinkMethod, Money, Outcome, Run, Severity,
                           SourceResult, SourceStatus)
from auditor.storage import open_store
from tests.conftest import NOW, make_listing, make_master


def _history(s) -> None:
    s.save_master([make_master("A"), make_master("B")], "m.csv", "h1", NOW - timedelta(days=2))
    s.save_master([make_master("A", price=Money(Decimal("49.90"), "EUR")), make_master("B")],
                  "m.csv", "h2", NOW - timedelta(days=1))
    for run in (1, 2):
        t = NOW + timedelta(hours=run)
        rid = s.start_run(t, None)
        assert rid == run
        s.save_listings(run, "google", [
            (make_listing("A"), Link("google", "A", "A", LinkMethod.SKU, 1.0)),
            (make_listing("B"), Link("google", "B", None, LinkMethod.SUGGESTED, 0.8, ("B", "C"),
                                     reason="title only", evidence={"title": 0.8})),
            (make_listing("Z"), Link("google", "Z", None, LinkMethod.NONE, 0.0,
                                     reason="no match"))])
        s.save_listings(run, "meta", [(make_listing("A", channel="meta"),
                                       Link("meta", "A", "A", LinkMethod.SKU, 1.0))])
        s.save_link_notes(run, "google", [
            Link("google", "B", None, LinkMethod.SUGGESTED, 0.8, ("B", "C"),
                 reason="title only", evidence={"title": 0.8}),
            Link("google", "Z", None, LinkMethod.NONE, 0.0, reason="no match")])
        fs = [Finding("price", "google", "A", "price", Outcome.FAILED, Severity.CRITICAL,
                      expected="49.90 EUR", actual="59.90 EUR", listing_key="A")]
        if run == 1:
            fs.append(Finding("title", "google", "A", "title", Outcome.WARN, Severity.MINOR,
                              listing_key="A"))
        s.apply_findings(run, "google", fs, SourceStatus.COMPLETE, {"A", "B", "Z"},
                         ["price", "title"], t)
        s.save_source_result(run, SourceResult("google", SourceStatus.COMPLETE, 3, 1, None, t,
                                               t + timedelta(seconds=20)),
                             [("feed.xml:4", "bad price")])
        s.save_source_result(run, SourceResult("meta", SourceStatus.FAILED if run == 2 else
                                               SourceStatus.COMPLETE, 1, 0,
                                               "HTTP 500" if run == 2 else None, t,
                                               t + timedelta(seconds=5)))
        s.save_scores(run, [("google", "price", {"passed": 1, "failed": 1}),
                            ("google", "title", {"passed": 2})])
        s.finish_run(Run(run, t, t + timedelta(minutes=1), SourceStatus.COMPLETE),
                     {"channels": []})
    s.start_run(NOW + timedelta(hours=5), None)  # still "running"


def _reads(s) -> dict:
    fp_price = Finding("price", "google", "A", "price", Outcome.FAILED,
                       Severity.CRITICAL, listing_key="A").fingerprint
    out = {
        "last_complete_reads": s.last_complete_reads(),
        "latest_scores": s.latest_scores(),
        "unresolved": s.unresolved_finding_counts(),
        "latest_sources": s.latest_source_results(),
        "durations": sorted(s.source_durations()),
        "errors_after": [(src, reason) for _, src, reason in s.run_errors_after(0)],
        "failed_reads": [(src, st, msg) for _, src, st, msg in s.failed_reads_after(0)],
        "outbox": s.outbox_counts(),
        "runs_page": s.runs_page(None, 2),
        "runs_page_before": [r["id"] for r in s.runs_page(3, 10)],
        "findings_page": s.findings_page({"channel": "google"}, None, 10),
        "findings_page_after": s.findings_page({}, (0, ""), 10),
        "finding": s.finding(fp_price),
        "no_finding": s.finding("nope"),
        "master_record": s.master_record("A"),
        "sku_listings": s.sku_listings("A"),
        "suggestions": s.link_suggestions(None, None, 10),
        "suggestions_after": s.link_suggestions("google", ("google", "B"), 10),
        "listing_link": s.listing_link("google", "B"),
        "link_states": s.link_states(),
        "suggested": s.link_states("google", "suggested"),
        "channels_of_A": s.listing_channels("A"),
        "propagation": s.propagation(NOW - timedelta(days=3)),
        "query": [f.fingerprint for f in s.query_findings(states=["open", "resolved"],
                                                          severities=["critical", "minor"])],
        "values": s.finding_values("check_name"),
    }
    # triage and link decisions (writes), then what they left
    # (after the finding's episode began, NOW + 1h; a snooze shows while it lasts)
    later = NOW + timedelta(hours=6)
    out["snooze"] = s.snooze_finding(fp_price, datetime(2100, 1, 1, tzinfo=timezone.utc),
                                     "ops", later)["state"]
    out["ack"] = s.ack_finding(fp_price, "ops", "looking", later)["state"]
    out["resolve"] = s.resolve_finding(fp_price, "ops", later)["state"]
    with pytest.raises(StoreError, match="is resolved"):
        s.ack_finding(fp_price, "ops")
    with pytest.raises(StoreError, match="no finding"):
        s.resolve_finding("nope", "ops")
    out["events"] = [(e.event, e.state, e.run_id, e.actual, e.actor, e.note)
                     for e in s.finding_events(fp_price)]
    out["record"] = s.finding_record(fp_price)
    out["episodes"] = s.finding_episodes([fp_price])
    s.decide_link("google", "B", "B", "confirmed", NOW, "checked")
    s.decide_link("google", "Z", "X", "rejected", NOW)
    out["decisions"] = s.link_decisions("google")
    out["decided"] = s.decided_links()
    out["link_after"] = s.listing_link("google", "B")
    out["interrupted"] = s.interrupt_running_runs(NOW + timedelta(hours=6))
    out["running"] = s.running_runs()
    return out


def test_service_reads_and_triage_agree(tmp_path, pg_server):
    lite, pg = open_store(f"sqlite:///{tmp_path / 'a.db'}"), open_store(pg_server.new_database())
    try:
        _history(lite)
        _history(pg)
        v1, v2 = lite.data_version(), pg.data_version()
        a, b = _reads(lite), _reads(pg)
        assert lite.data_version() != v1 and pg.data_version() != v2  # triage wrote events
    finally:
        lite.close()
        pg.close()
    for k in a:
        assert b[k] == a[k], k
    # absolute checks on the reference
    assert set(a["last_complete_reads"]) == {"google", "meta", "master"}
    assert a["latest_scores"] == [("google", "price", 0.5), ("google", "title", 1.0)]
    assert a["failed_reads"] == [("meta", "failed", "HTTP 500")]
    assert [r["id"] for r in a["runs_page"]] == [3, 2] and a["runs_page_before"] == [2, 1]
    assert [s["source"] for s in a["runs_page"][1]["sources"]] == ["google", "meta"]
    assert [s["sku"] for s in a["suggestions"]] == ["B"] and a["suggestions_after"] == []
    assert a["finding"]["state"] == "open" and a["no_finding"] is None
    assert (a["snooze"], a["ack"], a["resolve"]) == ("snoozed", "acknowledged", "resolved")
    assert [e[0] for e in a["events"][-3:]] == ["snoozed", "acknowledged", "resolved"]
    assert a["events"][-2][4:] == ("ops", "looking")
    assert a["decisions"] == {"confirmed": {"B": "B"}, "rejected": {"Z": {"X"}}}
    assert a["link_after"]["sku"] == "B" and a["link_after"]["method"] == "confirmed"
    assert a["interrupted"] == [3] and a["running"] == []
    assert a["propagation"] and all(ch in ("google", "meta") for ch, _ in a["propagation"])


def test_history_and_browse_reads_agree_on_four_weeks_of_runs(tmp_path, pg_server):
    """The weekly report's and the web UI's reads, after four weekly `auditor run`s of the
    same planted drift into each store (tests/store_world.py)."""
    from datetime import datetime

    from click.testing import CliRunner

    from auditor.cli import main
    from tests import store_world

    url = pg_server.new_database()
    dirs = {}
    for name, store_line in (("sqlite", 'path = "auditor.db"'), ("pg", f'url = "{url}"')):
        d = tmp_path / name
        d.mkdir()
        (d / "config.toml").write_text(store_world.CONFIG.replace("{port}", "2525").replace(
            'path = "auditor.db"', store_line))
        for k, at in enumerate(store_world.RUN_TIMES):
            store_world._write_world(d, k)
            r = CliRunner().invoke(main, ["run", "-c", str(d / "config.toml"), "--now", at,
                                          "--format", "json"], catch_exceptions=False)
            assert r.exit_code in (0, 1), r.output
        dirs[name] = d
    lite, pg = open_store(dirs["sqlite"] / "auditor.db", create=False), open_store(url)
    try:
        answers = []
        for s in (lite, pg):
            got = {}
            for t in store_world.RUN_TIMES + ["2026-11-29T12:00:00+00:00"]:
                at = datetime.fromisoformat(t)
                got[t] = (s.run_at(at), s.channel_health(at), s.channel_skus(at),
                          s.findings_at(at))
            start, end = (datetime.fromisoformat("2026-10-01T00:00:00+00:00"),
                          datetime.fromisoformat("2026-12-01T00:00:00+00:00"))
            # (in the order written: channel workers run side by side, so compare as sets)
            got["activity"] = sorted(s.finding_activity(start, end), key=repr)
            got["runs"] = [(r.id, r.status) for r in s.runs_between(start, end)]
            got["changes"] = [s.run_finding_changes(i) for i in range(1, 5)]
            got["keys"] = s.listing_keys("google", store_world.SKUS)
            got["units"] = s.sales_units(["units_sold"])
            page = s.search_findings(text="a-1", sort="sku", limit=100)
            got["search"] = ([f.fingerprint for f in page.findings], page.total)
            got["search_impact"] = [f.fingerprint for f in s.search_findings(limit=100).findings]
            got["finding_record"] = s.finding_record(page.findings[0].fingerprint) \
                if page.findings else None
            got["master_for"] = s.master_for("A-1")
            got["product"] = [(p.channel, p.key, p.link_method, p.removed, p.first_seen_at,
                               p.last_changed_at)
                              for p in s.product_listings("A-1")]
            got["channels"] = s.finding_channels()
            one = s.listing("google", got["keys"]["A-1"][0]) if got["keys"].get("A-1") else None
            # (the evidence names the file read: each store's world is in its own folder)
            got["listing"] = one and dataclasses.replace(
                one, evidence=(one.evidence or "").replace(str(dirs["sqlite" if s is lite
                                                                     else "pg"]), "."))
            got["search_open"] = [f.fingerprint for f in s.search_findings(
                states=["open"], limit=100).findings]
            got["page_open"] = [r["fingerprint"] for r in s.findings_page(
                {"state": "open"}, None, 100)]
            # the alert engine's reads, and the propagation it records
            got["episodes"] = s.finding_episodes()
            got["candidates"] = [(r["fingerprint"], r["since"], r["runs"], r["state"])
                                 for r in s.alert_candidates()]
            got["streaks"] = {k: (v["run_id"], v["status"], v["failing_runs"])
                              for k, v in s.source_failure_streaks().items()}
            got["context"] = s.listing_context([("google", k) for k in
                                                sorted(got["keys"].get("A-1", []))])
            got["titles"] = s.master_titles(store_world.SKUS)
            got["sync"] = s.sync_propagation({"price": ["price"], "title": ["title"]})
            got["sync_again"] = s.sync_propagation({"price": ["price"], "title": ["title"]})
            got["propagation"] = sorted(
                (r["channel"], r["sku"], r["field"], r["check_name"], r["changed_at"],
                 r["caught_up_at"], r["caught_up_run"], r["latency_seconds"])
                for r in s.propagation_rows())
            got["links"] = s.link_states()
            # the weekly report itself, as people get it: text, HTML and the findings CSV
            from auditor.config import load_config
            from auditor.reports import weekly

            cfg = load_config(dirs["sqlite" if s is lite else "pg"] / "config.toml")
            for week in ("2026-W46", "2026-W47"):
                ctx = weekly.build_weekly(s, cfg, week, datetime.fromisoformat(
                    "2026-11-29T12:00:00+00:00"), "https://audit.example.com")
                got[f"weekly {week}"] = (weekly.render_text(ctx), weekly.render_html(ctx),
                                         weekly.findings_csv(ctx["open_findings"]))
            answers.append(got)
    finally:
        lite.close()
        pg.close()
    a, b = answers
    for k in a:
        assert b[k] == a[k], k
    assert a["activity"] and a["search"][1] > 0 and a["channels"]
    assert a[store_world.RUN_TIMES[1]][1]  # channel health at week 2 is not empty
    assert a["listing"] is not None and a["episodes"] and a["candidates"] and a["titles"]
    # (the world's master never changes: propagation is compared in test_alerts_engine.py)
    assert a["sync_again"]["added"] == 0
    assert "A-1" in a["weekly 2026-W46"][0] and a["weekly 2026-W46"] != a["weekly 2026-W47"]
