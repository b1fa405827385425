"""The events of a run, as a listener sees them: normal run, failed source, rejected master,
interrupted run; the hooks registering checks; a plugin loaded through its entry point."""

from __future__ import annotations

import gzip
import importlib
import json
import os
import re
import sys
from pathlib import Path

import pytest

from auditor import events as ev, plugins
from auditor.config import load_config
from auditor.errors import Interrupted
from auditor.hookspecs import EVENT_HOOKS, hookimpl
from auditor.session import AuditSession
from auditor.storage import open_store
from tests.conftest import NOW, write

ROOT = Path(__file__).parent.parent


class Recorder:
    """A test listener: every event, in the order received."""

    def __init__(self) -> None:
        self.events: list[ev.Event] = []

    def hooks(self) -> list[str]:
        return [e.hook for e in self.events]

    def of(self, hook: str) -> list:
        return [e for e in self.events if e.hook == hook]


for _hook in EVENT_HOOKS:
    def _record(self, event, _hook=_hook):
        assert event.hook == _hook
        self.events.append(event)
    _record.__name__ = _hook
    setattr(Recorder, _hook, hookimpl(_record))


def _run(world: Path, *listeners, **kw):
    cfg = load_config(world / "config.toml")
    store = open_store(cfg.store_url)
    rec = Recorder()
    try:
        report = AuditSession(cfg, store, now=NOW, listeners=[rec, *listeners], **kw).run()
    except BaseException:
        store.close()
        raise
    return report, store, rec


def _add_channel(world: Path, name: str, source: str = "google.xml", workers: int = 1) -> None:
    text = (world / "config.toml").read_text()
    text = f"[run]\nworkers = {workers}\n" + re.sub(r"^\[run\]\nworkers = \d+\n", "", text)
    text += f'\n[[channels]]\nname = "{name}"\ntype = "google_merchant"\nsource = "{source}"\n'
    (world / "config.toml").write_text(text)


def _channel_sequence(rec: Recorder, channel: str) -> list[str]:
    seq = [e.hook for e in rec.events if getattr(e, "channel", None) == channel]
    # progress may come more than once; what matters is that it comes first
    return [h for i, h in enumerate(seq) if not (h == "source_progress" and i and
                                                 seq[i - 1] == "source_progress")]


def test_normal_run_event_sequence(mini_world):
    report, store, rec = _run(mini_world)
    store.close()
    assert rec.hooks() == ["run_started", "master_imported", "source_progress",
                           "source_finished", "findings_changed", "channel_finished",
                           "run_finished"]
    started, master, _, source, changed, channel, finished = rec.events
    assert started.run_id == report.run_id and started.channels == ("google",)
    assert started.pid == os.getpid()
    assert master.accepted and master.records == 3 and master.added == 3
    assert master.snapshot_id == report.master["snapshot_id"] and not master.errors
    assert source.status == "complete" and source.listings == 3 and source.errors == 0
    opened = {(c.sku, c.check) for c in changed.changes if c.change == "opened"}
    assert {("TS-BLU-M", "title"), ("TS-BLU-M", "price")} <= opened
    assert all(c.channel == "google" and c.fingerprint for c in changed.changes)
    assert channel.status == "complete" and channel.linked == 3
    assert channel.opened == len(changed.changes) and channel.failed >= 2
    assert finished.status == "complete" and finished.exit_code == 1 == report.exit_code
    assert finished.channel_seconds.keys() == {"google"} and finished.seconds > 0


def test_fixed_drift_is_announced_resolved_and_unchanged_master(mini_world):
    _run(mini_world)[1].close()
    feed = (mini_world / "google.xml").read_text()
    (mini_world / "google.xml").write_text(
        feed.replace("Totally different thing", "Acme Tee, Blue, M").replace("25.00", "20.00"))
    report, store, rec = _run(mini_world)
    store.close()
    (master,) = rec.of("master_imported")
    assert master.accepted and master.unchanged and master.records == 3
    (changed,) = rec.of("findings_changed")
    assert {(c.sku, c.check, c.change) for c in changed.changes} >= {
        ("TS-BLU-M", "title", "resolved"), ("TS-BLU-M", "price", "resolved")}
    assert rec.of("channel_finished")[0].resolved == changed.count("resolved")
    assert rec.of("run_finished")[0].exit_code == report.exit_code


def test_many_finding_changes_come_in_bounded_events(mini_world, monkeypatch):
    from auditor import runner

    monkeypatch.setattr(runner, "FINDING_CHANGES_PER_EVENT", 1)
    report, store, rec = _run(mini_world)
    store.close()
    chunks = rec.of("findings_changed")
    assert len(chunks) >= 2 and all(len(c.changes) == 1 for c in chunks)
    assert sum(len(c.changes) for c in chunks) == rec.of("channel_finished")[0].opened
    assert len({c.changes[0].fingerprint for c in chunks}) == len(chunks)


def test_workers_forward_every_event_to_the_listeners(mini_world):
    _add_channel(mini_world, "google-b", workers=2)
    report, store, rec = _run(mini_world)
    store.close()
    assert rec.hooks()[:2] == ["run_started", "master_imported"]
    assert rec.hooks()[-1] == "run_finished"
    for channel in ("google", "google-b"):
        assert _channel_sequence(rec, channel) == [
            "source_progress", "source_finished", "findings_changed", "channel_finished"]
    # the events came from the workers: same content as one process would send
    a, b = rec.of("findings_changed")
    assert sorted((c.sku, c.check, c.change) for c in a.changes) == \
        sorted((c.sku, c.check, c.change) for c in b.changes)
    assert rec.of("run_finished")[0].status == "complete"


def test_failed_source_event_sequence(mini_world):
    _add_channel(mini_world, "broken", source="broken.xml.gz")
    data = gzip.compress((mini_world / "google.xml").read_bytes())
    (mini_world / "broken.xml.gz").write_bytes(data[: len(data) // 2])
    report, store, rec = _run(mini_world)
    store.close()
    assert _channel_sequence(rec, "broken") == ["source_progress", "source_finished",
                                                "channel_finished"]
    (src,) = [e for e in rec.of("source_finished") if e.channel == "broken"]
    assert src.status == "failed" and "broken.xml.gz" in src.message
    (ch,) = [e for e in rec.of("channel_finished") if e.channel == "broken"]
    assert ch.status == "failed" and ch.opened == 0 and ch.resolved == 0
    fin = rec.of("run_finished")[0]
    assert fin.status == "partial" and fin.exit_code == 2
    assert rec.hooks()[-1] == "run_finished"


def test_rejected_master_on_the_first_run_is_recorded(mini_world):
    (mini_world / "master.csv").write_text("sku,title,price,currency\nX,broken,abc,USD\n")
    report, store, rec = _run(mini_world)
    try:
        assert rec.hooks() == ["run_started", "master_imported", "run_finished"]
        master, fin = rec.events[1:]
        assert not master.accepted and not master.kept_previous and master.records == 0
        assert master.error_count == 1
        assert master.errors[0][0].endswith("master.csv:2 column price")
        assert "bad price 'abc'" in master.errors[0][1]
        assert fin.status == "failed" and fin.exit_code == 2 and "rejected" in fin.reason
        assert report.exit_code == 2 and report.channels == []
        assert "stays in force" not in report.master_error
        (run,) = store.runs()
        assert run.status == "failed" and run.finished_at
        errs = store.run_errors(report.run_id)
        assert [(e.source, e.location[-25:]) for e in errs] == [
            ("master", "master.csv:2 column price")]
        assert store.run_summary(report.run_id)["master"]["rejected"] is True
    finally:
        store.close()


def test_rejected_master_keeps_previous_snapshot_and_says_so(mini_world):
    _run(mini_world)[1].close()
    (mini_world / "master.csv").write_text("sku,title,price,currency\nX,broken,abc,USD\n")
    report, store, rec = _run(mini_world)
    store.close()
    (master,) = rec.of("master_imported")
    assert not master.accepted and master.kept_previous and master.records == 3
    assert master.snapshot_id == 1
    assert rec.of("channel_finished")[0].status == "complete"  # audited against the old one
    assert rec.of("run_finished")[0].status == "partial"


def test_interrupted_run_is_recorded_and_announced(mini_world):
    _add_channel(mini_world, "google-b")

    class StopAfterFirstChannel:
        @hookimpl
        def channel_finished(self, event):
            raise Interrupted("SIGTERM", 15)

    with pytest.raises(Interrupted):
        _run(mini_world, StopAfterFirstChannel())
    # The recorder saw the interruption as the last event.
    cfg = load_config(mini_world / "config.toml")
    store = open_store(cfg.store_url)
    try:
        (run,) = store.runs()
        assert run.status == "interrupted" and run.finished_at
        assert run.summary["interrupted"]["reason"] == "SIGTERM"
    finally:
        store.close()
    # the next run starts, completes, and says the one before was interrupted
    report, store, rec = _run(mini_world)
    store.close()
    assert rec.of("run_finished")[0].status == "complete"
    assert rec.of("run_started")[0].interrupted_before == (run.id,)
    assert report.interrupted_before == [{"id": run.id, "at": run.finished_at.isoformat(),
                                          "reason": "SIGTERM"}]


def test_interrupted_run_last_event_is_run_finished(mini_world):
    rec = Recorder()

    class Stop:
        @hookimpl
        def source_finished(self, event):
            raise KeyboardInterrupt

    cfg = load_config(mini_world / "config.toml")
    store = open_store(cfg.store_url)
    try:
        with pytest.raises(KeyboardInterrupt):
            AuditSession(cfg, store, now=NOW, listeners=[rec, Stop()]).run()
        fin = rec.events[-1]
        assert fin.hook == "run_finished" and fin.status == "interrupted"
        assert fin.reason == "SIGINT (Ctrl-C)"
        assert "channel_finished" not in rec.hooks()
    finally:
        store.close()


def test_a_crash_of_the_run_is_recorded_interrupted(mini_world, monkeypatch):
    from auditor import runner

    def broken(*a, **kw):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(runner, "audit_channel", broken)
    rec = Recorder()
    cfg = load_config(mini_world / "config.toml")
    store = open_store(cfg.store_url)
    try:
        with pytest.raises(RuntimeError):
            AuditSession(cfg, store, now=NOW, listeners=[rec]).run()
        (run,) = store.runs()
        assert run.status == "interrupted"
        reason = run.summary["interrupted"]["reason"]
        assert reason == "crashed: RuntimeError: disk on fire"
        assert rec.events[-1].hook == "run_finished" and rec.events[-1].reason == reason
    finally:
        store.close()


def test_a_crashing_listener_does_not_stop_the_run(mini_world, caplog):
    class Broken:
        @hookimpl
        def channel_finished(self, event):
            raise RuntimeError("listener bug")

    report, store, rec = _run(mini_world, Broken())
    store.close()
    assert rec.hooks()[-1] == "run_finished" and report.status.value == "complete"
    assert "listener bug" in caplog.text


def test_listeners_may_take_no_argument_or_wrap(mini_world):
    calls = []

    class Bare:
        @hookimpl
        def run_finished(self):
            calls.append("bare")

    class Wrapper:
        @hookimpl(wrapper=True)
        def run_finished(self, event):
            calls.append(("before", event.status))
            result = yield
            calls.append("after")
            return result

    _run(mini_world, Bare())[1].close()
    assert calls == ["bare"]
    calls.clear()
    _run(mini_world, Bare(), Wrapper())[1].close()
    assert calls == [("before", "complete"), "bare", "after"]


def test_a_stale_running_run_is_interrupted_by_the_next_run_under_the_lock(mini_world):
    cfg = load_config(mini_world / "config.toml")
    store = open_store(cfg.store_url)
    stale = store.start_run(NOW, None)
    store.update_run_summary(stale, pid=os.getpid())  # alive, but we will hold the lock
    store.close()
    held = open_store(cfg.store_url)
    with held.run_lock():
        report, store, rec = _run(mini_world)
    held.close()
    try:
        runs = {r.id: r for r in store.runs()}
        assert runs[stale].status == "interrupted"
        assert "found still 'running'" in runs[stale].summary["interrupted"]["reason"]
        assert runs[report.run_id].status == "complete"
    finally:
        store.close()


def test_every_event_round_trips_through_json():
    t = NOW
    change = ev.FindingChange("fp", "opened", "price", "google", "S1", "S1", "price",
                              "failed", "critical", "20.00 EUR", "25.00 EUR", "price differs")
    samples = [
        ev.RunStarted(1, t, ("google", "pos"), 42),
        ev.MasterImported(1, False, "m.csv", errors=(("m.csv:2", "bad price"),), error_count=1),
        ev.SourceProgress(1, "google", 1000),
        ev.SourceFinished(1, "google", "partial", 10, 1, (("f:3", "bad"),), "msg", t, t),
        ev.FindingsChanged(1, "google", (change,)),
        ev.ChannelFinished(1, "google", "complete", 3, 3, 0, 0, 0, 1, 0, 1, 0, 0.9, 0.5),
        ev.RunFinished(1, "interrupted", 2, t, t, 1.5, 0.2, {"google": 0.5}, "SIGTERM"),
    ]
    assert {e.hook for e in samples} == set(EVENT_HOOKS)
    for e in samples:
        line = e.to_json()
        assert "\n" not in line and json.loads(line)["event"] == e.hook
        assert ev.from_json(line) == e


# ---------------------------------------------------------------- plugins

def test_builtin_checks_and_connectors_register_through_the_hooks():
    pm = plugins.manager()
    names = dict(pm.list_name_plugin())
    assert {"connectors", "checks"} <= names.keys()
    from_hooks = [spec.name for specs in pm.hook.register_checks() for spec in specs]
    assert set(from_hooks) == set(plugins.checks())
    types = [c.type for classes in pm.hook.register_connectors() for c in classes]
    assert set(types) == set(plugins.connectors()) >= {"google_merchant", "tabular"}


def _example_plugin_source() -> str:
    text = (ROOT / "docs" / "plugins.md").read_text()
    (block,) = [b for b in re.findall(r"```python\n(.*?)```", text, re.S)
                if b.startswith("# my_auditor_plugin.py")]
    return block


@pytest.fixture
def installed_example_plugin(tmp_path, monkeypatch):
    """The documented example plugin, installed as a distribution with the entry point."""
    site = tmp_path / "site"
    write(site / "my_auditor_plugin.py", _example_plugin_source())
    write(site / "my_auditor_plugin-0.1.dist-info" / "METADATA",
          "Metadata-Version: 2.1\nName: my-auditor-plugin\nVersion: 0.1\n")
    write(site / "my_auditor_plugin-0.1.dist-info" / "entry_points.txt",
          "[omni_auditor.plugins]\nrun_log = my_auditor_plugin\n")
    monkeypatch.syspath_prepend(str(site))
    importlib.invalidate_caches()
    monkeypatch.setattr(plugins, "_loaded", False)
    yield
    sys.modules.pop("my_auditor_plugin", None)
    monkeypatch.undo()
    plugins._loaded = False
    importlib.invalidate_caches()
    plugins.load()  # back to the built-ins only
    assert "description_length" not in plugins.checks()


def test_example_plugin_loads_through_the_entry_point_and_hears_the_run(
        mini_world, installed_example_plugin, tmp_path, monkeypatch):
    log_path = tmp_path / "run-log.jsonl"
    monkeypatch.setenv("AUDITOR_RUN_LOG", str(log_path))
    assert "description_length" in plugins.checks()
    assert "entry:run_log" in dict(plugins.manager().list_name_plugin())
    feed = (mini_world / "google.xml").read_text().replace(
        "<title>Acme Tee, Red, M</title>",
        "<title>Acme Tee, Red, M</title><description>short</description>")
    (mini_world / "google.xml").write_text(feed)
    report, store, _ = _run(mini_world)
    try:
        scores = {r.check: r for r in store.scores(report.run_id)}
        assert scores["description_length"].warn == 1
        (f,) = store.findings(check="description_length")
        assert f.sku == "TS-RED-M" and f.actual == "short"
    finally:
        store.close()
    logged = [ev.from_json(line) for line in log_path.read_text().splitlines()]
    assert [e.hook for e in logged] == ["run_started", "master_imported", "findings_changed",
                                        "channel_finished", "run_finished"]
    assert logged[-1].run_id == report.run_id


def test_a_plugin_declared_with_decorators_only_still_loads(tmp_path, monkeypatch):
    site = tmp_path / "site"
    write(site / "old_style_plugin.py", """
        from auditor.check import check

        @check("always_fine")
        def always_fine(master, listing, ctx):
            \"\"\"Old-style plugin check.\"\"\"
            return []
        """)
    write(site / "old_style_plugin-0.1.dist-info" / "METADATA",
          "Metadata-Version: 2.1\nName: old-style-plugin\nVersion: 0.1\n")
    write(site / "old_style_plugin-0.1.dist-info" / "entry_points.txt",
          "[omni_auditor.plugins]\nold = old_style_plugin\n")
    monkeypatch.syspath_prepend(str(site))
    importlib.invalidate_caches()
    monkeypatch.setattr(plugins, "_loaded", False)
    try:
        assert plugins.checks()["always_fine"].help == "Old-style plugin check."
        assert list(plugins.checks())[:7] == ["attributes", "availability", "identifiers",
                                              "image", "presence", "price", "title"]
    finally:
        sys.modules.pop("old_style_plugin", None)
        monkeypatch.undo()
        plugins._loaded = False
        importlib.invalidate_caches()
        plugins.load()
    assert "always_fine" not in plugins.checks()


def test_reserved_hooks_collect_receivers_and_renderers(monkeypatch):
    class Receiver:
        name = "log-receiver"

    class ReservedPlugin:
        @hookimpl
        def register_receivers(self):
            return [Receiver()]

        @hookimpl
        def register_renderers(self):
            return []

    pm = plugins.manager()
    pm.register(ReservedPlugin(), name="reserved-test")
    try:
        plugins._collect(pm)
        assert list(plugins.receivers()) == ["log-receiver"]
        assert plugins.renderers() == {}
    finally:
        pm.unregister(name="reserved-test")
        plugins._collect(pm)
    assert plugins.receivers() == {}


def test_every_hook_and_event_field_is_documented():
    import dataclasses

    from auditor import hookspecs

    doc = (ROOT / "docs" / "plugins.md").read_text()
    arch = (ROOT / "docs" / "architecture.md").read_text()
    specs = [name for name in dir(hookspecs)
             if hasattr(getattr(hookspecs, name), "omni_auditor_spec")]
    assert set(EVENT_HOOKS) < set(specs)
    for name in specs:
        assert f"`{name}(" in doc, f"hook {name} is not in docs/plugins.md"
        assert name in arch, f"hook {name} is not in docs/architecture.md"
    for cls in ev.EVENTS.values():
        row = next(line for line in doc.splitlines() if line.startswith(f"| `{cls.__name__}`"))
        for f in dataclasses.fields(cls):
            assert f"`{f.name}`" in row, f"{cls.__name__}.{f.name} is not documented"
    for f in dataclasses.fields(ev.FindingChange):
        assert f"`{f.name}`" in doc
