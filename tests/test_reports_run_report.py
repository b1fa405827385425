from auditor.config import load_config
from auditor.runner import run_audit
from auditor.storage import open_store
from auditor.reports.run_report import build_context, render
from tests.conftest import NOW


def test_report_shows_scores_findings_and_escapes_channel_text(mini_world):
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
