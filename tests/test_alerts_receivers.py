"""Receivers against real components on loopback: a signed JSON webhook, an SMTP server
(aiosmtpd), Apprise (its json:// service posting to a local server) and Alertmanager
(Debian's prometheus-alertmanager, started here with a temporary config and storage).
Set AUDITOR_SKIP_ALERTMANAGER=1 to skip the Alertmanager tests where it cannot be had."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest

from auditor.alerts.engine import evaluate
from auditor.alerts.outbox import deliver
from auditor.config import parse_config
from auditor.model import Finding, Outcome, Severity, SourceResult, SourceStatus
from auditor.storage.sqlite import SQLiteStore as Store
from tests.alert_receivers import SMTPServer, WebhookServer

T0 = datetime(2026, 11, 20, 12, 0, tzinfo=timezone.utc)


def _cfg(receivers, routes=None, alerts=None, path=Path("/tmp/config.toml")):
    return parse_config({
        "master": {"source": "m.csv"},
        "channels": [{"name": "google", "type": "google_merchant", "source": "g.xml"}],
        "alerts": {"receivers": receivers,
                   "routes": routes or [{"receivers": [r["name"] for r in receivers],
                                         "group_by": ["sku"]}],
                   "backoff": "30s", **(alerts or {})}}, path)


def _f(sku, actual="25.00 USD", check="price"):
    return Finding(check, "google", sku, check, Outcome.FAILED, Severity.CRITICAL,
                   expected="20.00 USD", actual=actual, listing_key=sku,
                   message=f"price differs for {sku}")


def _run(store, run_id, at, findings):
    store.apply_findings(run_id, "google", findings, SourceStatus.COMPLETE, None, ["price"], at)
    store.save_source_result(run_id, SourceResult("google", started_at=at, finished_at=at))


def test_webhook_down_then_up_delivers_each_exactly_once(tmp_path):
    with WebhookServer(secret="k3y-for-hmac") as hook:
        os.environ["AUDITOR_TEST_SECRET"] = "k3y-for-hmac"
        cfg = _cfg([{"name": "hook", "type": "webhook", "url": hook.url,
                     "secret": {"env": "AUDITOR_TEST_SECRET"}}])
        store = Store(tmp_path / "a.db")
        _run(store, 1, T0, [_f("A"), _f("B"), _f("C")])
        assert evaluate(store, cfg, T0)["notifications"] == 3  # grouped by SKU
        hook.status = 503
        clock = [T0]
        res = deliver(store, cfg, lambda: clock[0])
        # the receiver's first failure holds back its later rows (kept in order)
        assert res["failed"] == 1 and res["sent"] == 0 and hook.refused == 1
        rows = store.outbox()
        assert rows[0]["attempts"] == 1 and "HTTP 503" in rows[0]["last_error"]
        assert datetime.fromisoformat(rows[0]["next_attempt_at"]) >= T0 + timedelta(seconds=24)
        assert deliver(store, cfg, lambda: clock[0])["failed"] == 0  # backing off: not due
        clock[0] = T0 + timedelta(seconds=40)
        assert deliver(store, cfg, lambda: clock[0])["failed"] == 1
        second = store.outbox()[0]
        assert second["attempts"] == 2
        assert datetime.fromisoformat(second["next_attempt_at"]) >= clock[0] + timedelta(seconds=48)
        hook.status = 200
        clock[0] = T0 + timedelta(minutes=5)
        res = deliver(store, cfg, lambda: clock[0])
        assert res["sent"] == 3 and store.outbox() == []
        assert deliver(store, cfg, lambda: clock[0])["sent"] == 0
        assert len(hook.deliveries) == 3 and len(hook.by_key) == 3 and hook.bad_signatures == 0
        assert sorted(d["body"]["alerts"][0]["info"]["sku"] for d in hook.deliveries) == \
            ["A", "B", "C"]
        for d in hook.deliveries:
            assert d["key"] == d["body"]["idempotency_key"]
        store.close()


def test_one_failing_receiver_does_not_hold_up_another(tmp_path):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    dead_port = s.getsockname()[1]
    s.close()  # nothing listens there: connection refused
    with WebhookServer() as hook:
        cfg = _cfg([{"name": "dead", "type": "webhook", "url": f"http://127.0.0.1:{dead_port}/x"},
                    {"name": "hook", "type": "webhook", "url": hook.url}])
        store = Store(tmp_path / "a.db")
        _run(store, 1, T0, [_f("A"), _f("B")])
        evaluate(store, cfg, T0)
        res = deliver(store, cfg, lambda: T0)
        assert res["sent"] == 2 and res["failed"] == 1
        assert len(hook.by_key) == 2
        left = store.outbox()
        assert [r["receiver"] for r in left] == ["dead", "dead"]
        assert "ConnectError" in left[0]["last_error"] and left[1]["attempts"] == 0
        store.close()


def test_gives_up_after_max_attempts_and_retry_failed(tmp_path):
    with WebhookServer() as hook:
        hook.status = 500
        cfg = _cfg([{"name": "hook", "type": "webhook", "url": hook.url}],
                   alerts={"max_attempts": 2, "backoff": 1})
        store = Store(tmp_path / "a.db")
        _run(store, 1, T0, [_f("A")])
        evaluate(store, cfg, T0)
        deliver(store, cfg, lambda: T0)
        assert deliver(store, cfg, lambda: T0 + timedelta(seconds=5))["gave_up"] == 1
        (row,) = store.outbox()
        assert row["status"] == "failed" and row["attempts"] == 2
        hook.status = 200
        assert store.outbox_retry_failed(T0) == 1
        assert deliver(store, cfg, lambda: T0 + timedelta(seconds=6))["sent"] == 1
        assert len(hook.by_key) == 1
        store.close()


def test_email_over_smtp_has_text_and_html(tmp_path):
    smtp = SMTPServer()
    try:
        cfg = _cfg([{"name": "mail", "type": "email", "host": "127.0.0.1", "port": smtp.port,
                     "from": "auditor@example.com", "to": ["ops@example.com"]}],
                   alerts={"base_url": "https://auditor.example.com"})
        store = Store(tmp_path / "a.db")
        _run(store, 1, T0, [_f("A<script>", actual="25.00 USD")])
        evaluate(store, cfg, T0)
        assert deliver(store, cfg, lambda: T0)["sent"] == 1
        deadline = time.monotonic() + 5
        while not smtp.messages and time.monotonic() < deadline:
            time.sleep(0.05)
        (msg,) = smtp.messages
        key = store.outbox(None)[0]["idempotency_key"]
        assert msg["Message-ID"] == f"<{key}@omni-auditor>"
        assert msg["Subject"].startswith("[FIRING] omni-auditor 1 firing")
        parts = {p.get_content_type(): p.get_payload(decode=True).decode()
                 for p in msg.walk() if not p.is_multipart()}
        assert set(parts) == {"text/plain", "text/html"}
        assert "master: 20.00 USD | channel: 25.00 USD | difference: +5.00 USD (+25.0%)" in \
            parts["text/plain"]
        assert "https://auditor.example.com/findings/" in parts["text/plain"]
        assert "<script>" not in parts["text/html"] and "A&lt;script&gt;" in parts["text/html"]
        store.close()
    finally:
        smtp.close()



def test_email_of_an_sku_with_line_breaks_is_sent_with_a_one_line_subject(tmp_path):
    """A channel SKU carrying CR/LF ("ORPH\\r\\nBcc: ...") must neither inject a header nor
    make the message unsendable (it would hold up every later one to the receiver)."""
    smtp = SMTPServer()
    try:
        cfg = _cfg([{"name": "mail", "type": "email", "host": "127.0.0.1", "port": smtp.port,
                     "from": "auditor@example.com", "to": ["ops@example.com"]}])
        store = Store(tmp_path / "a.db")
        _run(store, 1, T0, [_f("ORPH\r\nBcc: evil@example.com\rX", actual="25.00 USD")])
        evaluate(store, cfg, T0)
        assert deliver(store, cfg, lambda: T0)["sent"] == 1
        deadline = time.monotonic() + 5
        while not smtp.messages and time.monotonic() < deadline:
            time.sleep(0.05)
        (msg,) = smtp.messages
        assert msg.get_all("Bcc") is None
        subject = " ".join(msg["Subject"].split())  # (a long header comes folded)
        assert "ORPH Bcc: evil@example.com X" in subject
        store.close()
    finally:
        smtp.close()

def test_apprise_url_from_the_environment(tmp_path, monkeypatch):
    with WebhookServer(path="/apprise") as hook:
        monkeypatch.setenv("AUDITOR_TEST_APPRISE", f"json://127.0.0.1:{hook.port}/apprise")
        cfg = _cfg([{"name": "chat", "type": "apprise", "urls": {"env": "AUDITOR_TEST_APPRISE"}}])
        store = Store(tmp_path / "a.db")
        _run(store, 1, T0, [_f("A")])
        evaluate(store, cfg, T0)
        assert deliver(store, cfg, lambda: T0)["sent"] == 1
        (d,) = hook.deliveries
        key = store.outbox(None)[0]["idempotency_key"]
        assert d["body"]["title"].startswith("[FIRING]")
        assert "A on google: price (critical)" in d["body"]["message"]
        assert key in d["body"]["message"]
        monkeypatch.setenv("AUDITOR_TEST_APPRISE", "notaservice://x")
        _run(store, 2, T0, [_f("A"), _f("B")])
        evaluate(store, cfg, T0)
        res = deliver(store, cfg, lambda: T0)
        assert res["failed"] == 1
        assert "does not understand the URL in AUDITOR_TEST_APPRISE" in \
            store.outbox()[0]["last_error"]
        store.close()


# ------------------------------------------------------------------ Alertmanager

def _free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest.fixture
def alertmanager(tmp_path):
    if os.environ.get("AUDITOR_SKIP_ALERTMANAGER") == "1":
        pytest.skip("AUDITOR_SKIP_ALERTMANAGER=1")
    binary = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
    assert binary, ("Alertmanager is not installed: scripts/test.sh installs Debian's "
                    "prometheus-alertmanager (or set AUDITOR_SKIP_ALERTMANAGER=1)")
    hook = WebhookServer(path="/am")
    port = _free_port()
    conf = tmp_path / "am.yml"
    conf.write_text(f"""
route:
  receiver: hook
  group_by: ['auditor_id']
  group_wait: 0s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: hook
    webhook_configs:
      - url: '{hook.url}'
        send_resolved: true
""")
    proc = subprocess.Popen([binary, f"--config.file={conf}", f"--storage.path={tmp_path / 'am'}",
                             f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address="],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while True:
        try:
            if httpx.get(base + "/-/ready", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"alertmanager did not start: {proc.stderr.read().decode()[-2000:]}")
        time.sleep(0.1)
    try:
        yield base, hook
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        hook.close()


def _wait(pred, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = pred()
        if got:
            return got
        time.sleep(0.2)
    return pred()


def test_alertmanager_push_read_back_resend_and_resolve(tmp_path, alertmanager):
    base, am_hook = alertmanager
    cfg = _cfg([{"name": "am", "type": "alertmanager", "url": base, "resend_interval": "60s"}],
               alerts={"base_url": "https://auditor.example.com"})
    store = Store(tmp_path / "a.db")
    now = datetime.now(timezone.utc).replace(microsecond=0)
    _run(store, 1, now, [_f("A"), _f("B")])
    evaluate(store, cfg, now)
    assert deliver(store, cfg, lambda: now)["sent"] == 2
    alerts = httpx.get(base + "/api/v2/alerts").json()
    by_sku = {a["labels"]["sku"]: a for a in alerts}
    assert set(by_sku) == {"A", "B"}
    a = by_sku["A"]
    assert a["labels"]["alertname"] == "AuditorFinding" and a["labels"]["severity"] == "critical"
    assert a["labels"]["channel"] == "google" and a["status"]["state"] == "active"
    assert a["annotations"]["idempotency_key"].startswith("oa-")
    assert "difference: +5.00 USD" in a["annotations"]["description"]
    assert a["annotations"]["finding_url"].startswith("https://auditor.example.com/findings/")
    ends = datetime.fromisoformat(a["endsAt"].replace("Z", "+00:00"))
    assert abs((ends - (now + timedelta(seconds=240))).total_seconds()) < 2
    # Still firing a resend interval later: posted again, endsAt moves ahead; one alert.
    later = now + timedelta(seconds=61)
    assert evaluate(store, cfg, later)["notifications"] == 2
    deliver(store, cfg, lambda: later)
    alerts = httpx.get(base + "/api/v2/alerts").json()
    assert len(alerts) == 2
    ends2 = datetime.fromisoformat({x["labels"]["sku"]: x for x in alerts}["A"]["endsAt"]
                                   .replace("Z", "+00:00"))
    assert abs((ends2 - (later + timedelta(seconds=240))).total_seconds()) < 2
    # A resolves: posted with endsAt = the resolution time; Alertmanager drops it from the
    # active alerts and tells its own webhook it resolved.
    resolved_at = datetime.now(timezone.utc)  # Alertmanager compares endsAt with its clock
    _run(store, 2, resolved_at, [_f("B")])
    evaluate(store, cfg, resolved_at)
    deliver(store, cfg, lambda: resolved_at)
    alerts = httpx.get(base + "/api/v2/alerts").json()
    assert [x["labels"]["sku"] for x in alerts] == ["B"]

    def resolved_webhook():
        for d in am_hook.deliveries:
            for x in d["body"]["alerts"]:
                if x["labels"].get("sku") == "A" and x["status"] == "resolved":
                    return x
        return None

    x = _wait(resolved_webhook)
    assert x is not None, am_hook.deliveries
    assert datetime.fromisoformat(x["endsAt"].replace("Z", "+00:00")) == resolved_at
    store.close()


def test_webhook_url_with_a_token_comes_from_the_environment(tmp_path, monkeypatch):
    with WebhookServer(path="/services/T0KEN-SECRET") as hook:
        hook.status = 500
        monkeypatch.setenv("AUDITOR_TEST_HOOK_URL", hook.url)
        cfg = _cfg([{"name": "hook", "type": "webhook", "url": {"env": "AUDITOR_TEST_HOOK_URL"}}])
        store = Store(tmp_path / "a.db")
        _run(store, 1, T0, [_f("A")])
        evaluate(store, cfg, T0)
        deliver(store, cfg, lambda: T0)
        (row,) = store.outbox()
        assert row["last_error"] == "DeliveryError: $AUDITOR_TEST_HOOK_URL: HTTP 500"
        assert "T0KEN" not in str(store.outbox(None))
        hook.status = 200
        assert deliver(store, cfg, lambda: T0 + timedelta(hours=1))["sent"] == 1
        store.close()



def test_a_plain_webhook_url_is_shown_without_its_query(tmp_path):
    """Errors and logs name a plain URL without its query (a token often rides there):
    `http://h/hook?…` (a login in a URL is refused by the config already)."""
    with WebhookServer(path="/hook") as hook:
        hook.status = 500
        url = hook.url + "?token=Q-SECRET&x=1"
        cfg = _cfg([{"name": "hook", "type": "webhook", "url": url}])
        store = Store(tmp_path / "a.db")
        _run(store, 1, T0, [_f("A")])
        evaluate(store, cfg, T0)
        deliver(store, cfg, lambda: T0)
        (row,) = store.outbox()
        assert row["last_error"] == f"DeliveryError: {hook.url}?…: HTTP 500"
        assert "SECRET" not in str(store.outbox(None))
        store.close()

def test_service_loop_delivers_and_flushes_on_stop(tmp_path):
    import threading

    from auditor.alerts.outbox import loop

    with WebhookServer() as hook:
        cfg = _cfg([{"name": "hook", "type": "webhook", "url": hook.url}])
        store = Store(tmp_path / "a.db")
        _run(store, 1, datetime.now(timezone.utc), [_f("A")])
        stop = threading.Event()
        t = threading.Thread(target=loop, args=(tmp_path / "a.db", cfg, stop, 0.1))
        t.start()
        deadline = time.monotonic() + 10
        while not hook.by_key and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(hook.by_key) == 1
        _run(store, 2, datetime.now(timezone.utc), [_f("A"), _f("B")])
        while len(hook.by_key) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        stop.set()
        t.join(10)
        assert not t.is_alive() and len(hook.by_key) == 2 and len(hook.deliveries) == 2
        assert store.outbox() == []
        store.close()


def test_a_plugin_registers_a_receiver_type(tmp_path):
    from auditor import plugins
    from auditor.hookspecs import hookimpl

    got = []

    class Pager:
        name = "pager-plugin"

        def send(self, receiver, payload, timeout, now):
            got.append((receiver.name, payload["idempotency_key"], receiver.options["url"]))

    class Plugin:
        @hookimpl
        def register_receivers(self):
            return [Pager()]

    pm = plugins.manager()
    pm.register(Plugin(), name="pager-test")
    try:
        plugins._collect(pm)
        cfg = _cfg([{"name": "p", "type": "pager-plugin", "url": "https://pager.example/x"}])
        store = Store(tmp_path / "a.db")
        _run(store, 1, T0, [_f("A")])
        evaluate(store, cfg, T0)
        assert deliver(store, cfg, lambda: T0)["sent"] == 1
        assert got == [("p", store.outbox(None)[0]["idempotency_key"], "https://pager.example/x")]
        store.close()
    finally:
        pm.unregister(name="pager-test")
        plugins._collect(pm)
    with pytest.raises(Exception, match="unknown receiver type 'pager-plugin'"):
        _cfg([{"name": "p", "type": "pager-plugin", "url": "https://pager.example/x"}])
