"""The alert commands end to end on the mini world: run, findings ack/snooze/resolve/show,
silences, the outbox and --fail-on, delivering to a real webhook on loopback."""

from __future__ import annotations

import json
import re

from click.testing import CliRunner

from auditor.cli import main
from tests.alert_receivers import WebhookServer


def _cfg(world, url: str) -> str:
    cfg = world / "config.toml"
    cfg.write_text(cfg.read_text() + f"""
[alerts]
base_url = "https://auditor.example.com"

[[alerts.receivers]]
name = "hook"
type = "webhook"
url = "{url}"
secret = {{ env = "AUDITOR_TEST_HOOK_SECRET" }}

[[alerts.routes]]
receivers = ["hook"]
group_by = ["channel"]
""")
    return str(cfg)


def _invoke(*args):
    r = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return r.exit_code, r.output


def test_run_delivers_then_triage_commands(mini_world, monkeypatch):
    monkeypatch.setenv("AUDITOR_TEST_HOOK_SECRET", "s3cret-key")
    with WebhookServer(secret="s3cret-key") as hook:
        cfg = _cfg(mini_world, hook.url)
        code, out = _invoke("run", "-c", cfg)
        assert code == 1, out
        assert len(hook.by_key) == 1 and hook.bad_signatures == 0
        body = next(iter(hook.by_key.values()))["body"]
        assert body["status"] == "firing" and body["group_labels"] == {"channel": "google"}
        skus = {a["info"]["sku"] for a in body["alerts"]}
        assert "TS-BLU-M" in skus
        price = next(a for a in body["alerts"] if a["info"]["check"] == "price")
        assert price["info"]["expected"] == "20.00 USD"
        assert price["info"]["actual"] == "25.00 USD"
        assert price["info"]["difference"] == "+5.00 USD (+25.0%)"
        assert price["info"]["product_title"] == "Acme Tee, Blue, M"
        assert price["info"]["finding_url"] == (
            f"https://auditor.example.com/findings/{price['id']}")
        # A second run changes nothing: nothing new is sent, and --fail-on new is 0.
        code, out = _invoke("run", "-c", cfg, "--fail-on", "new")
        assert code == 0, out
        assert len(hook.deliveries) == 1
        code, out = _invoke("run", "-c", cfg, "--fail-on", "critical")
        assert code == 1  # the price mismatch is critical
        assert price["severity"] == "critical"
        fp = price["id"]
        code, out = _invoke("findings", "ack", fp[:8], "-c", cfg, "--by", "ana",
                            "--note", "fixing the feed")
        assert code == 0 and "acknowledged" in out
        code, out = _invoke("findings", "show", fp[:8], "-c", cfg, "--format", "json")
        shown = json.loads(out)
        assert shown["state"] == "acknowledged" and shown["ack_by"] == "ana"
        assert [e["event"] for e in shown["events"]][-1] == "acknowledged"
        # Acknowledged, the critical finding no longer fails the run under --fail-on critical
        # (the title drift is not critical), but still under the default --fail-on any.
        code, out = _invoke("run", "-c", cfg, "--fail-on", "critical")
        assert code == 0, out
        code, out = _invoke("run", "-c", cfg)
        assert code == 1
        # The acknowledged finding leaves the group: no resolved message (it is not
        # resolved), so nothing is sent for it.
        code, out = _invoke("alerts", "send", "-c", cfg)
        assert code == 0, out
        assert len(hook.deliveries) == 1  # withdrawn, not resolved: nothing to tell
        code, out = _invoke("findings", "-c", cfg, "--format", "json", "--open")
        states = {r["fingerprint"]: (r["state"], r["alert"]) for r in json.loads(out)}
        assert states[fp] == ("acknowledged", "suppressed")
        code, out = _invoke("findings", "resolve", fp, "-c", cfg, "--by", "ana")
        assert code == 0
        code, out = _invoke("findings", "show", fp, "-c", cfg, "--format", "json")
        assert json.loads(out)["state"] == "resolved"
        # Still wrong on the channel: the next complete read reopens it, and it alerts
        # again (a reopen clears the acknowledgement).
        n = len(hook.by_key)
        code, out = _invoke("run", "-c", cfg, "--fail-on", "new")
        assert code == 1
        code, out = _invoke("findings", "show", fp, "-c", cfg, "--format", "json")
        assert json.loads(out)["state"] == "reopened"
        assert len(hook.by_key) == n + 1
        last = list(hook.by_key.values())[-1]["body"]
        assert fp in last["new"]
        code, out = _invoke("findings", "snooze", fp, "-c", cfg, "--until", "2d")
        assert code == 0 and "snoozed" in out
        code, out = _invoke("findings", "show", fp, "-c", cfg, "--format", "json")
        assert json.loads(out)["state"] == "snoozed"
        code, out = _invoke("findings", "ack", "zz", "-c", cfg)
        assert code == 2 and "not a finding fingerprint" in out


def test_silences_and_outbox(mini_world):
    with WebhookServer() as hook:
        hook.status = 503
        cfg = _cfg(mini_world, hook.url).replace("", "")
        text = (mini_world / "config.toml").read_text().replace(
            'secret = { env = "AUDITOR_TEST_HOOK_SECRET" }\n', "")
        (mini_world / "config.toml").write_text(text)
        code, out = _invoke("silence", "add", "-c", cfg, "--channel", "google", "--check", "title",
                            "--expires", "1d", "--comment", "title rework")
        assert code == 2  # no store yet
        code, out = _invoke("run", "-c", cfg)
        assert code == 1
        code, out = _invoke("alerts", "outbox", "-c", cfg, "--format", "json")
        rows = json.loads(out)
        assert len(rows) == 1 and rows[0]["attempts"] == 1
        assert rows[0]["why"].startswith("attempt 1 failed: DeliveryError")
        assert "HTTP 503" in rows[0]["why"] and rows[0]["status"] == "pending"
        code, out = _invoke("silence", "add", "-c", cfg, "--channel", "goo*", "--check", "title",
                            "--expires", "1d", "--comment", "title rework")
        assert code == 0
        sid = int(re.search(r"silence (\d+)", out).group(1))
        code, out = _invoke("silence", "list", "-c", cfg, "--format", "json")
        assert json.loads(out)[0]["matchers"] == "channel=goo*, check=title"
        code, out = _invoke("silence", "add", "-c", cfg, "--expires", "1d")
        assert code == 2 and "at least one matcher" in out
        code, out = _invoke("silence", "expire", "-c", cfg, str(sid))
        assert code == 0
        code, out = _invoke("silence", "list", "-c", cfg, "--format", "json")
        assert json.loads(out) == []
        code, out = _invoke("silence", "expire", "-c", cfg, str(sid))
        assert code == 2
