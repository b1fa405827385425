"""bench link: devsets read in place (AUDITOR_DEVSETS or ../shared), scored as score.py does."""

from __future__ import annotations

from bench import link
from tests.conftest import write


def test_devset_is_read_in_place_and_scored(tmp_path, monkeypatch):
    d = tmp_path / "amazon_google"
    write(d / "master.csv", """
        sku,title,description,brand,price,currency
        M1,Kingston KTC-D320/1G Memory Module,model: KTC-D320/1G,Kingston,33.75,USD
        M2,Epson T060320 Ink Cartridge Magenta,,Epson,16.99,USD
        M3,Acme Garden Hose 15 m,,Acme,20.00,USD
        """)
    write(d / "listings.csv", """
        listing_id,title,description,brand,price
        L1,Kingston KTCD3201G 1GB memory for Compaq Evo,,Kingston,30.00
        L2,Epson T060320 Magenta Ink,,Epson,16.84
        L3,Something else entirely,,,5.00
        L4,,,,
        """)
    write(d / "truth.csv", """
        listing_id,sku
        L1,M1
        L2,M2
        L3,M3
        """)
    monkeypatch.setenv("AUDITOR_DEVSETS", str(tmp_path))
    r = link.evaluate("amazon_google")
    assert (r["masters"], r["listings"], r["true_pairs"]) == (3, 4, 3)
    c = r["confident"]
    assert (c["predicted"], c["correct"]) == (2, 2)
    assert c["precision"] == 1.0 and abs(c["recall"] - 2 / 3) < 1e-9
    assert abs(c["f1"] - 0.8) < 1e-9
    (row,) = link.rows_for([r])
    assert row[:8] == ["amazon_google", 3, 4, 3, 2, 1.0, 0.667, 0.8]
    # the curve's cell at the default link_score and link_margin is what a run links
    cells = link.curve("amazon_google", (0.8, 5.0), (0.05,))
    assert [(c["predicted"], c["correct"]) for c in cells] == [(2, 2), (0, 0)]
    assert cells[0]["labelled_precision"] == 1.0 and cells[0]["f1"] == c["f1"]
    assert "| 0.8 | 1.000 / 0.667 / 0.800 (1.000) 2 |" in link.curve_table("ag", cells)


def test_prf_counts_pairs_once():
    got = link.prf([("a", "1"), ("a", "1"), ("b", "2")], {("a", "1"), ("c", "3")})
    assert (got["predicted"], got["correct"], got["precision"], got["recall"]) == (2, 1, 0.5, 0.5)
