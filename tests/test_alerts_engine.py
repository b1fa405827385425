"""Alert lifecycle with a controlled clock: confirmation, propagation grace, repeat,
snooze, silences, resolution, incidents, routing and propagation latency."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest

from auditor.alerts import incidents, messages, policy, routing
from auditor.alerts.config import parse_duration, parse_until
from auditor.alerts.engine import evaluate
from auditor.config import parse_config
from auditor.errors import ConfigError
from auditor.model import Finding, Money, Outcome, Severity, SourceResult, SourceStatus
from auditor.storage import open_store
from auditor.storage.sqlite import SQLiteStore
from tests.conftest import make_master

# Every test that opens a store runs on SQLite and on PostgreSQL (tests/pg_server.py):
# ``Store(path)`` opens the store of the test's kind; one path, one store.
_OPEN = {"store": SQLiteStore}


def Store(path):  # noqa: N802  (stands for the store class of the test's kind)
    return _OPEN["store"](path)


@pytest.fixture(autouse=True, params=["sqlite", "postgresql"])
def store_kind(request, monkeypatch):
    if request.param == "postgresql":
        pg = request.getfixturevalue("pg_server")
        urls: dict[str, str] = {}

        def open_pg(path):
            key = str(path)
            if key == ":memory:" or key not in urls:
                urls[key] = pg.new_database()
            return open_store(urls[key])

        monkeypatch.setitem(_OPEN, "store", open_pg)
    return request.param

T0 = datetime(2026, 11, 20, 12, 0, tzinfo=timezone.utc)
H = timedelta(hours=1)


def _cfg(alerts=None, channel=None, checks=None, receivers=None, routes=None):
    raw = {"master": {"source": "m.csv"},
           "channels": [{"name": "google", "type": "google_merchant", "source": "g.xml",
                         **(channel or {})}],
           "checks": checks or {},
           "alerts": {"receivers": receivers or [
               {"name": "hook", "type": "webhook", "url": "http://127.0.0.1:9/x"}],
               "routes": routes or [{"receivers": ["hook"], "repeat_interval": "4h",
                                     "group_by": ["channel"]}],
               **(alerts or {})}}
    return parse_config(raw, Path("/tmp/config.toml"))


def _f(sku, check="price", field=None, severity=Severity.CRITICAL, actual="2.00 EUR",
       channel="google", **details):
    return Finding(check, channel, sku, field or check, Outcome.FAILED, severity,
                   expected="1.00 EUR", actual=actual, listing_key=sku, details=details)


class World:
    """A store fed run by run, and the notifications the engine recorded."""

    def __init__(self, cfg):
        self.cfg = cfg
        self.store = Store(":memory:")
        self.run_id = 0
        self.seen = 0

    def run(self, at, findings, checks=("price", "title", "attributes", "image"),
            status=SourceStatus.COMPLETE):
        self.run_id += 1
        self.store.apply_findings(self.run_id, "google", findings, status, None, list(checks), at)
        self.store.save_source_result(self.run_id, SourceResult("google", status,
                                                                 started_at=at, finished_at=at))
        return self.eval(at)

    def eval(self, at):
        evaluate(self.store, self.cfg, at)
        rows = self.store.outbox(None)
        new = [r["payload"] for r in rows[self.seen:]]
        self.seen = len(rows)
        return new


def _ids(payload, status="firing"):
    return sorted(a["info"].get("sku") or a["id"] for a in payload["alerts"]
                  if a["status"] == status)


# ------------------------------------------------------------------ pure parts

def test_durations_and_until():
    assert parse_duration("24h") == 86400 and parse_duration("15m") == 900
    assert parse_duration(90) == 90 and parse_duration("2d") == 172800
    with pytest.raises(ValueError, match="duration"):
        parse_duration("soon")
    assert parse_until("2d", T0) == T0 + 48 * H
    assert parse_until("2026-12-01T09:00", T0) == datetime(2026, 12, 1, 9, tzinfo=timezone.utc)


def test_policy_states():
    v = policy.FindingView("fp", "google", "price", "price", "critical", "A", since=T0, runs=1)
    none = policy.Rules()
    assert policy.alert_status(v, none, [], T0).state == "firing"
    by_runs = policy.Rules(confirm_runs=3)
    st = policy.alert_status(v, by_runs, [], T0)
    assert st.state == "pending" and "1 of 3 runs" in st.reason
    assert policy.alert_status(policy.FindingView(**{**v.__dict__, "runs": 3}), by_runs, [],
                               T0).state == "firing"
    either = policy.Rules(confirm_runs=3, confirm_for=6 * 3600)
    assert policy.alert_status(v, either, [], T0 + 5 * H).state == "pending"
    assert policy.alert_status(v, either, [], T0 + 6 * H).state == "firing"
    grace = policy.Rules(grace=24 * 3600)
    changed = policy.FindingView(**{**v.__dict__, "master_changed_at": T0})
    st = policy.alert_status(changed, grace, [], T0 + 23 * H)
    assert st.state == "pending" and "propagation grace" in st.reason
    assert policy.alert_status(changed, grace, [], T0 + 24 * H).state == "firing"
    acked = policy.FindingView(**{**v.__dict__, "ack_at": T0 + H, "ack_by": "ana"})
    assert policy.alert_status(acked, none, [], T0 + 2 * H).reason == "acknowledged by ana"
    # An acknowledgement of an earlier episode does not hold after a reopen.
    reopened = policy.FindingView(**{**acked.__dict__, "since": T0 + 3 * H})
    assert policy.alert_status(reopened, none, [], T0 + 4 * H).state == "firing"
    snoozed = policy.FindingView(**{**v.__dict__, "snoozed_until": T0 + 2 * H})
    assert policy.alert_status(snoozed, none, [], T0 + H).state == "suppressed"
    assert policy.alert_status(snoozed, none, [], T0 + 2 * H).state == "firing"
    sil = policy.Silence(1, {"channel": "goo*", "sku": "A"}, T0, T0 + H)
    assert policy.alert_status(v, none, [sil], T0 + H / 2).reason == "silenced by silence 1"
    assert policy.alert_status(v, none, [sil], T0 + H).state == "firing"
    other = policy.Silence(2, {"sku": "B*"}, T0, T0 + H)
    assert policy.alert_status(v, none, [other], T0).state == "firing"


def test_display_state():
    row = {"state": "open", "since": T0.isoformat(), "episode_event": "opened"}
    assert policy.display_state(row, T0) == "open"
    assert policy.display_state({**row, "episode_event": "reopened"}, T0) == "reopened"
    assert policy.display_state({**row, "ack_at": (T0 + H).isoformat()}, T0) == "acknowledged"
    assert policy.display_state({**row, "snoozed_until": (T0 + H).isoformat()}, T0) == "snoozed"
    assert policy.display_state({**row, "snoozed_until": (T0 + H).isoformat()},
                                T0 + 2 * H) == "open"
    assert policy.display_state({**row, "state": "resolved"}, T0) == "resolved"


def test_difference_and_messages():
    assert messages.difference("20.00 USD", "25.00 USD") == "+5.00 USD (+25.0%)"
    assert messages.difference("20.00 USD", "25.00 EUR") == "differs"
    assert messages.difference("Red", "Blue") == "differs"
    assert messages.difference("1", None) == "missing on the channel"
    payload = {"idempotency_key": "k1", "group_labels": {"channel": "g"}, "alerts": [
        {"id": "x", "kind": "finding", "status": "firing", "severity": "critical",
         "summary": "s", "since": T0.isoformat(),
         "info": {"sku": "A<b>", "product_title": "Tee & <i>", "channel": "g", "check": "price",
                  "field": "price", "expected": "1 EUR", "actual": "2 EUR",
                  "stale_note": "shows the price valid until 2026-11-03", "runs": 3,
                  "listing_url": "https://shop/p?a=1&b=<2>"}}]}
    text = messages.text(payload)
    assert "shows the price valid until 2026-11-03" in text and "seen in 3 run(s)" in text
    html = messages.html_body(payload)
    assert "<i>" not in html and "Tee &amp; &lt;i&gt;" in html
    assert 'href="https://shop/p?a=1&amp;b=&lt;2&gt;"' in html


def test_routes_match_group_and_continue():
    cfg = _cfg(receivers=[{"name": "pager", "type": "webhook", "url": "http://127.0.0.1:9/p"},
                          {"name": "hook", "type": "webhook", "url": "http://127.0.0.1:9/h"}],
               routes=[{"match": {"severity": "critical", "channel": ["goo*", "amazon"]},
                        "receivers": ["pager"], "continue": True, "group_by": ["sku"]},
                       {"match": {"check": "price"}, "receivers": ["hook"], "group_by": ["check"]},
                       {"receivers": ["hook"], "group_by": ["channel"]}])
    alerts = [incidents.Alert(str(i), "finding", lab, "s", lab["severity"], T0.isoformat())
              for i, lab in enumerate([
                  {"channel": "google", "check": "price", "severity": "critical", "sku": "A"},
                  {"channel": "google", "check": "title", "severity": "minor", "sku": "A"},
                  {"channel": "meta", "check": "price", "severity": "critical", "sku": "B"}])]
    groups = routing.assign(alerts, cfg.alerts.routes)
    got = {(recv, tuple(sorted(g["alerts"]))) for (recv, _), g in groups.items()}
    assert got == {("pager", ("0",)), ("hook", ("0", "2")), ("hook", ("1",))}


def test_config_errors_name_table_and_key():
    with pytest.raises(ConfigError) as e:
        _cfg(receivers=[{"name": "x", "type": "apprise", "urls": "slack://token"},
                        {"name": "m", "type": "email"}],
             routes=[{"receivers": ["nope"], "repeat_interval": "often"}])
    text = str(e.value)
    assert "[[alerts.receivers]] 'x'.urls: Apprise URLs carry tokens" in text
    assert "[[alerts.receivers]] 'm'.host: missing" in text
    assert "[[alerts.routes]] #1.receivers: unknown receiver 'nope'" in text
    assert "[[alerts.routes]] #1.repeat_interval: expected a duration" in text


# ------------------------------------------------------------------ with a store

def test_confirmation_by_runs_per_check_and_channel():
    w = World(_cfg(channel={"checks": {"price": {"confirm_runs": 3}}}))
    out = w.run(T0, [_f("A"), _f("A", "title", severity=Severity.MAJOR)])
    assert [_ids(p) for p in out] == [["A"]]  # the title alerts at once, the price waits
    assert out[0]["alerts"][0]["info"]["check"] == "title"
    assert w.run(T0 + H, [_f("A"), _f("A", "title", severity=Severity.MAJOR)]) == []
    f = w.store.finding(_f("A").fingerprint)
    assert f["alert_state"] == "pending" and "2 of 3 runs" in f["alert_reason"]
    out = w.run(T0 + 2 * H, [_f("A"), _f("A", "title", severity=Severity.MAJOR)])
    assert len(out) == 1 and out[0]["new"] == [_f("A").fingerprint]
    assert out[0]["alerts"][0]["info"]["runs"] == 3


def test_confirmation_by_duration():
    w = World(_cfg(checks={"price": {"confirm_for": "6h"}}))
    assert w.run(T0, [_f("A")]) == []
    assert w.eval(T0 + 5 * H) == []
    out = w.eval(T0 + 6 * H)
    assert len(out) == 1 and _ids(out[0]) == ["A"]
    # A resolution and a return start over: the new episode must be confirmed again.
    w.run(T0 + 7 * H, [])
    assert w.run(T0 + 8 * H, [_f("A")]) == []
    assert len(w.eval(T0 + 14 * H)) == 1


def test_propagation_grace_after_a_master_change():
    w = World(_cfg(channel={"grace": "24h"}, routes=[
        {"receivers": ["hook"], "repeat_interval": "48h", "group_by": ["channel"]}]))
    s = w.store
    s.save_master([make_master("A"), make_master("B")], "m.csv", None, T0 - 48 * H)
    s.save_master([make_master("A", price=Money(Decimal("2.00"), "EUR")), make_master("B")],
                  "m.csv", None, T0)
    out = w.run(T0 + H, [_f("A"), _f("B"), _f("A", "title", severity=Severity.MAJOR)])
    # A's price changed an hour ago: pending. B's price and A's title did not change.
    assert len(out) == 1 and sorted(a["id"] for a in out[0]["alerts"]) == sorted(
        [_f("B").fingerprint, _f("A", "title").fingerprint])
    f = s.finding(_f("A").fingerprint)
    assert f["alert_state"] == "pending" and "propagation grace until" in f["alert_reason"]
    assert w.eval(T0 + 23 * H) == []
    out = w.eval(T0 + 24 * H)
    assert len(out) == 1 and out[0]["new"] == [_f("A").fingerprint]


def test_repeat_interval_and_resolved_notification():
    w = World(_cfg())
    assert len(w.run(T0, [_f("A"), _f("B")])) == 1
    assert w.eval(T0 + H) == []
    assert w.eval(T0 + 3 * H) == []
    out = w.eval(T0 + 4 * H)
    assert len(out) == 1 and out[0]["repeat"] is True and _ids(out[0]) == ["A", "B"]
    out = w.run(T0 + 5 * H, [_f("B")])
    assert len(out) == 1 and _ids(out[0]) == ["B"] and _ids(out[0], "resolved") == ["A"]
    a = next(x for x in out[0]["alerts"] if x["status"] == "resolved")
    assert a["ends_at"] == (T0 + 5 * H).isoformat() and a["resolution"] == "resolved"
    out = w.run(T0 + 6 * H, [])
    assert out[0]["status"] == "resolved" and _ids(out[0], "resolved") == ["B"]
    assert w.eval(T0 + 20 * H) == []  # nothing firing: nothing repeats
    assert w.store.alert_groups() == {}


def test_receiver_without_resolved_notifications():
    w = World(_cfg(receivers=[{"name": "hook", "type": "webhook", "url": "http://127.0.0.1:9/x",
                               "send_resolved": False}]))
    w.run(T0, [_f("A"), _f("B")])
    assert w.run(T0 + H, [_f("B")]) == []


def test_snooze_then_alerts_again():
    w = World(_cfg())
    w.run(T0, [_f("A")])
    fp = _f("A").fingerprint
    w.store.snooze_finding(fp, T0 + 2 * H, "ana", now=T0 + H / 2)
    assert w.eval(T0 + H) == []  # withdrawn, not resolved: no resolved message
    assert w.store.finding(fp)["alert_state"] == "suppressed"
    assert w.eval(T0 + 1.5 * H) == []
    out = w.eval(T0 + 2 * H)
    assert len(out) == 1 and out[0]["new"] == [fp]
    events = [e.event for e in w.store.finding_events(fp)]
    assert events == ["opened", "snoozed"]


def test_silence_mutes_matching_alerts_until_it_expires():
    w = World(_cfg())
    sid = w.store.add_silence({"sku": "A*", "check": "price"}, T0, T0 + 3 * H, "ana", "repricing")
    out = w.run(T0, [_f("A1"), _f("A2"), _f("B")])
    assert len(out) == 1 and _ids(out[0]) == ["B"]
    assert w.eval(T0 + 2 * H) == []
    w.store.expire_silence(sid, now=T0 + 2.5 * H)
    out = w.eval(T0 + 2.5 * H)
    assert len(out) == 1 and sorted(out[0]["new"]) == sorted(
        [_f("A1").fingerprint, _f("A2").fingerprint])


def test_ack_stops_alerting_and_a_reopen_clears_it():
    w = World(_cfg())
    w.run(T0, [_f("A")])
    fp = _f("A").fingerprint
    w.store.ack_finding(fp, "ana", "on it", now=T0 + H)
    assert w.eval(T0 + 10 * H) == []  # no repeat while acknowledged
    w.run(T0 + 11 * H, [])          # resolved: nothing to tell (it was withdrawn already)
    out = w.run(T0 + 12 * H, [_f("A")])
    assert len(out) == 1 and out[0]["new"] == [fp]


def test_incident_groups_many_stale_findings_and_names_the_cause():
    w = World(_cfg(alerts={"incident_min_skus": 10, "incident_examples": 3}))
    stale = [_f(f"S{i:02d}", valid_until="2026-11-03T00:00:00+00:00", stale=True)
             for i in range(12)]
    attrs = [_f(f"S{i:02d}", "attributes", "color", Severity.MAJOR, actual="Rot")
             for i in range(10)]
    out = w.run(T0, stale + attrs + [_f("X")])
    assert len(out) == 1
    alerts = out[0]["alerts"]
    kinds = sorted(a["kind"] for a in alerts)
    assert kinds == ["finding", "incident", "incident"]
    inc = next(a for a in alerts if a["labels"].get("cause") == "stale")
    assert inc["summary"] == ("google shows the previous master price for 12 SKUs: a sync that "
                              "did not run?")
    assert inc["info"]["skus"] == 12 and len(inc["info"]["examples"]) == 3
    col = next(a for a in alerts if a["labels"].get("cause") == "attribute")
    assert "attribute color differs on google for 10 SKUs: mapped wrong?" in col["summary"]
    assert "'1.00 EUR' shown as 'Rot' (10 SKUs)" in col["summary"]
    text = messages.text(out[0])
    assert "... and 9 more SKU(s)" in text


def test_a_failing_source_is_one_incident_and_resolves():
    w = World(_cfg())
    w.run(T0, [_f("A")])
    out = w.run(T0 + H, [], status=SourceStatus.FAILED)
    assert len(out) == 1
    src = next(a for a in out[0]["alerts"] if a["kind"] == "source")
    assert src["summary"].startswith("source google failed in 1 run(s) in a row")
    # the failed read did not resolve A
    assert w.store.finding(_f("A").fingerprint)["state"] == "open"
    out = w.run(T0 + 2 * H, [_f("A")])
    assert [a["kind"] for a in out[0]["alerts"] if a["status"] == "resolved"] == ["source"]


def test_evaluation_is_idempotent():
    w = World(_cfg())
    w.run(T0, [_f("A")])
    assert w.eval(T0) == [] and w.eval(T0) == []
    assert len(w.store.outbox(None)) == 1


def test_propagation_latency_per_channel_and_change():
    s = Store(":memory:")
    from tests.conftest import make_listing
    from auditor.model import Link, LinkMethod

    s.save_master([make_master("A"), make_master("B")], "m.csv", None, T0)
    link = lambda k: Link("google", k, k, LinkMethod.SKU, 1.0)  # noqa: E731
    s.save_listings(1, "google", [(make_listing("A"), link("A")), (make_listing("B"), link("B"))])
    price2 = Money(Decimal("64.90"), "EUR")
    s.save_master([make_master("A", price=price2), make_master("B", title="New")],
                  "m.csv", None, T0 + H)
    snap = s.last_master_snapshot().id
    r1 = s.start_run(T0 + H, snap)
    s.apply_findings(r1, "google", [_f("A")], SourceStatus.COMPLETE, None, ["price", "title"],
                     T0 + H)
    s.save_source_result(r1, SourceResult("google", started_at=T0 + H,
                                          finished_at=T0 + 2 * H))
    s.sync_propagation({"price": ["price"], "title": ["title"]})
    rows = {(r["sku"], r["field"]): r for r in s.propagation_rows("google")}
    assert rows[("B", "title")]["latency_seconds"] == 3600.0  # shown in the first run
    assert rows[("A", "price")]["caught_up_at"] is None
    r2 = s.start_run(T0 + 5 * H, snap)
    s.apply_findings(r2, "google", [], SourceStatus.COMPLETE, None, ["price", "title"], T0 + 5 * H)
    s.save_source_result(r2, SourceResult("google", started_at=T0 + 5 * H,
                                          finished_at=T0 + 6 * H))
    assert s.sync_propagation({"price": ["price"], "title": ["title"]})["caught_up"] == 1
    a = [r for r in s.propagation_rows("google") if r["sku"] == "A"][0]
    assert a["latency_seconds"] == 5 * 3600.0 and a["caught_up_run"] == r2
    assert s.propagation_rows(pending=True) == []


def test_docs_alerts_config_examples_are_valid(tmp_path):
    import re
    import tomllib

    text = (Path(__file__).parent.parent / "docs" / "alerts.md").read_text()
    blocks = re.findall(r"```toml\n(.*?)```", text, re.S)
    assert len(blocks) >= 2
    base = {"master": {"source": "m.csv"},
            "channels": [{"name": "google", "type": "google_merchant", "source": "g.xml"}]}
    for block in blocks:
        raw = tomllib.loads(block)
        merged = {**base, **raw, "channels": base["channels"] + raw.get("channels", [])}
        cfg = parse_config(merged, tmp_path / "config.toml")
        assert cfg.alerts is not None
    cfg = parse_config({**base, **tomllib.loads(blocks[1])}, tmp_path / "config.toml")
    assert set(cfg.alerts.receivers) == {"ops-chat", "pager", "erp-hook", "mail"}
    assert cfg.alerts.routes[0].cont and cfg.alerts.routes[1].repeat_interval == 12 * 3600


def test_unchanged_inputs_skip_evaluation_until_something_is_due():
    w = World(_cfg(checks={"price": {"confirm_for": "2h"}}, routes=[
        {"receivers": ["hook"], "repeat_interval": "24h", "group_by": ["channel"]}]))
    out = w.run(T0, [_f("A"), _f("B", "title", severity=Severity.MAJOR)])
    assert len(out) == 1 and _ids(out[0]) == ["B"]
    assert evaluate(w.store, w.cfg, T0 + H).get("unchanged") is True
    r = evaluate(w.store, w.cfg, T0 + 2 * H)  # A's confirmation is due
    assert not r.get("unchanged") and r["notifications"] == 1
    w.store.add_silence({"sku": "A"}, T0 + 3 * H, T0 + 5 * H, "ana", None)
    assert not evaluate(w.store, w.cfg, T0 + 2.5 * H).get("unchanged")  # a new silence
    assert evaluate(w.store, w.cfg, T0 + 2.6 * H).get("unchanged") is True
    evaluate(w.store, w.cfg, T0 + 3 * H)  # the silence starts
    assert w.store.finding(_f("A").fingerprint)["alert_state"] == "suppressed"
    assert evaluate(w.store, w.cfg, T0 + 4 * H).get("unchanged") is True
    evaluate(w.store, w.cfg, T0 + 5 * H)  # and ends
    assert w.store.finding(_f("A").fingerprint)["alert_state"] == "firing"
    # A different config (a new route) is a reason to evaluate again.
    w.cfg = _cfg(checks={"price": {"confirm_for": "1h"}})
    assert not evaluate(w.store, w.cfg, T0 + 5.1 * H).get("unchanged")


def test_findings_joining_an_incident_are_not_reported_resolved():
    w = World(_cfg(alerts={"incident_min_skus": 3}))
    out = w.run(T0, [_f("A", valid_until=T0.isoformat(), stale=True),
                     _f("B", valid_until=T0.isoformat(), stale=True)])
    assert _ids(out[0]) == ["A", "B"]
    out = w.run(T0 + H, [_f(s, valid_until=T0.isoformat(), stale=True) for s in "ABC"])
    assert len(out) == 1
    assert [a["kind"] for a in out[0]["alerts"] if a["status"] == "firing"] == ["incident"]
    assert _ids(out[0], "resolved") == []  # A and B were withdrawn into it, not resolved
    assert out[0]["alerts"][0]["info"]["skus"] == 3


def test_two_evaluations_at_once_record_one_notification(tmp_path):
    cfg = _cfg()
    s1, s2 = Store(tmp_path / "a.db"), Store(tmp_path / "a.db")
    s1.apply_findings(1, "google", [_f("A")], SourceStatus.COMPLETE, None, ["price"], T0)
    s1.save_source_result(1, SourceResult("google", started_at=T0, finished_at=T0))
    original = s1.record_alerts
    calls = []

    def racing(*a, **k):  # another process records its evaluation first
        if not calls:
            calls.append(evaluate(s2, cfg, T0))
        got = original(*a, **k)
        calls.append(got)
        return got

    s1.record_alerts = racing
    res = evaluate(s1, cfg, T0)
    assert calls[0]["notifications"] == 1 and calls[1] is None  # s1's first try conflicted
    assert res.get("unchanged") is True  # and its second saw s2's result: nothing to add
    assert len(s1.outbox(None)) == 1
    s1.close()
    s2.close()


def test_incident_summary_names_the_field_once_and_presence_by_kind():
    from auditor.alerts.incidents import describe

    rows = [{"details": {"kind": "missing"}}] * 3 + [{"details": {"kind": "orphan"}}]
    assert describe("field", "presence", "listing", "shop", 4, rows) == \
        "presence differs on shop for 4 SKUs: 3 missing, 1 orphan"
    assert describe("field", "title", "title", "google", 15, []) == \
        "title differs on google for 15 SKUs"
    assert describe("field", "price", "sale_price", "meta", 12, []) == \
        "price sale_price differs on meta for 12 SKUs"
