from auditor.config import load_config
from auditor.runner import run_audit
from auditor.storage import open_store
from auditor.reports.run_report import build_context, render
from tests.conftest import NOW


def test_report_shows_scores_findings_and_escapes_channel_text(mini_world_each_store):
    mini_world = mini_world_each_store
    feed = (mini_world / "google.xml").read_text().replace(
        "Totally different thing", "&lt;script&gt;alert(1)&lt;/script&gt;")
    (mini_world / "google.xml").write_text(feed)
    cfg = load_config(mini_world / "config.toml")
    store = open_store(cfg.store_url)
    run_audit(cfg, store, now=NOW)
    ctx = build_context(store)
    assert ctx["matrix"]["google"]["price"]["score"] == round(100 * 2 / 3, 1)
    assert ctx["total_open"] == 2
    html = render(ctx)
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "TS-BLU-M" in html and "complete" in html


def test_report_lists_not_evaluated_apart_from_open_findings(tmp_path):
    """The demo's report said "167 open findings" where the run had opened 165 and the
    inbox listed fewer: two "sale price ... not compared" entries (not_evaluated, kept only
    to say why) were counted and listed as open findings."""
    (tmp_path / "m.csv").write_text(
        "sku,title,price,currency,sale_price,sale_start,sale_end\n"
        "A,Tee,10.00,EUR,8.00,2026-11-01,2026-12-31\nB,Mug,5.00,EUR,,,\n")
    (tmp_path / "c.csv").write_text("sku,title,price\nA,Tee,10.00\nB,Mug,6.00\n")
    (tmp_path / "config.toml").write_text(
        '[store]\npath = "a.db"\n[master]\ntype = "csv"\nsource = "m.csv"\n'
        '[[channels]]\nname = "pos"\ntype = "tabular"\nsource = "c.csv"\ncurrency = "EUR"\n'
        '  [channels.checks.price]\n  regular_price_only = true\n')
    cfg = load_config(tmp_path / "config.toml")
    store = open_store(cfg.store_url)
    try:
        run_audit(cfg, store, now=NOW)
        outcomes = sorted(f.outcome for f in store.findings(state="open"))
        ctx = build_context(store)
    finally:
        store.close()
    assert outcomes == ["failed", "not_evaluated"], outcomes
    assert ctx["total_open"] == 1 and ctx["severity_counts"] == [("critical", 1)]
    assert [f["sku"] for rows in ctx["findings"].values() for f in rows] == ["B"]
    assert [(f["sku"], f["field"]) for f in ctx["not_evaluated"]] == [("A", "sale_price")]
    html = render(ctx)
    assert "<b>1</b>open findings" in html and "Not evaluated" in html
