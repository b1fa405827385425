"""A store that spans four weeks of real runs (`auditor run --now ...`): a Google feed
and a POS export whose drift is planted week by week. Used by the weekly report and
the web UI tests, which cross-check what they show against what was planted."""

from __future__ import annotations

import csv
from pathlib import Path

from click.testing import CliRunner

from auditor.cli import main

SKUS = [f"A-{i}" for i in range(1, 11)]
PRICE = {s: f"{10 + i}.00" for i, s in enumerate(SKUS)}
HOSTILE = '<script>alert("x")</script> =HYPERLINK("http://evil")'

# Week by week (ISO weeks 2026-W44 .. W47; a run every Tuesday 06:00 UTC).
RUN_TIMES = ["2026-10-27T06:00:00+00:00", "2026-11-03T06:00:00+00:00",
             "2026-11-10T06:00:00+00:00", "2026-11-17T06:00:00+00:00"]
WEEKS = ["2026-W44", "2026-W45", "2026-W46", "2026-W47"]
# google price drift per run (SKU -> price shown); pos availability drift per run.
GOOGLE_PRICE_DRIFT = [{"A-1": "99.00"}, {"A-1": "99.00", "A-2": "1.00", "A-3": "1.00",
                                          "A-4": "1.00"}, {"A-2": "1.00"}, {}]
GOOGLE_TITLE_DRIFT = [{}, {}, {"A-5": HOSTILE}, {"A-5": HOSTILE}]
POS_MISSING = [set(), {"A-10"}, {"A-10"}, set()]


def _write_world(d: Path, k: int) -> None:
    with open(d / "master.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["sku", "title", "brand", "price", "currency", "quantity"])
        for s in SKUS:
            w.writerow([s, f"Widget {s}", "Acme", PRICE[s], "EUR", "5"])
    with open(d / "google.tsv", "w", newline="") as f:
        w = csv.writer(f, delimiter="\t")
        w.writerow(["id", "title", "brand", "price", "availability"])
        for s in SKUS:
            title = GOOGLE_TITLE_DRIFT[k].get(s, f"Widget {s}")
            price = GOOGLE_PRICE_DRIFT[k].get(s, PRICE[s])
            w.writerow([s, title, "Acme", f"{price} EUR", "in_stock"])
    with open(d / "pos.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["sku", "title", "price", "quantity", "units_sold"])
        for i, s in enumerate(SKUS):
            if s in POS_MISSING[k]:
                continue
            w.writerow([s, f"Widget {s}", PRICE[s], "5", str(i + 1)])


CONFIG = """
[store]
path = "auditor.db"

[master]
type = "csv"
source = "master.csv"
default_currency = "EUR"

[[channels]]
name = "google"
type = "google_merchant"
source = "google.tsv"

[[channels]]
name = "pos"
type = "tabular"
source = "pos.csv"
currency = "EUR"
columns = { units_sold = "units_sold" }
  [channels.checks.image]
  enabled = false

[checks.image]
enabled = false

[smtp]
host = "127.0.0.1"
port = {port}
security = "none"
sender = "Audit <audit@example.com>"

[report]
email_to = ["ops@example.com"]
ui_base_url = "https://audit.example.com"
"""




def build(d: Path, smtp_port: int = 2525) -> Path:
    """Write the config and run the four weekly audits into ``d``; returns ``d``."""
    (d / "config.toml").write_text(CONFIG.replace("{port}", str(smtp_port)))
    for k, at in enumerate(RUN_TIMES):
        _write_world(d, k)
        r = CliRunner().invoke(main, ["run", "-c", str(d / "config.toml"), "--now", at,
                                      "--format", "json"], catch_exceptions=False)
        assert r.exit_code in (0, 1), r.output
    return d
