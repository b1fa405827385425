"""Trust under messy input, through the CLI: unreadable cells, rows without a key,
fields a channel never carries, and feeds that suddenly lose items (issue 13 items
1 and 3, issue 21 item 5)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from auditor.cli import main
from conftest import write


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def findings(cfg: Path, *extra: str) -> list[dict]:
    r = cli("findings", "--config", cfg, "--format", "json", *extra)
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


@pytest.fixture
def pos_world(tmp_path: Path) -> Path:
    """A master with images and a POS export without an image column (and no sale)."""
    rows = "\n".join(f"A-{i},Alpha Lamp {i},{10 + i}.00,EUR,5,https://img.example/a{i}.jpg"
                     for i in range(1, 6))
    write(tmp_path / "master.csv", "sku,title,price,currency,quantity,image_1\n" + rows + "\n")
    write(tmp_path / "pos.csv", """
        sku,title,price,quantity
        A-1,Alpha Lamp 1,abc,5
        A-2,Alpha Lamp 2,12.00,5
        A-3,Alpha Lamp 3,13.00,5
        A-4,Alpha Lamp 4,14.00,5
        A-5,Alpha Lamp 5,99.00,5
        """)
    write(tmp_path / "config.toml", """
        [store]
        path = "auditor.db"
        [master]
        source = "master.csv"
        [checks.image]
        enabled = false
        [[channels]]
        name = "pos"
        type = "tabular"
        source = "pos.csv"
        currency = "EUR"
        """)
    return tmp_path


def test_unreadable_price_cell_keeps_the_listing_and_is_not_evaluated(pos_world):
    cfg = pos_world / "config.toml"
    r = cli("run", "--config", cfg)
    assert r.exit_code == 1, r.output  # a real finding (A-5's price), nothing held
    rows = findings(cfg)
    # A-1 is on the POS: no "not on pos" finding for it, or for anyone.
    assert not [f for f in rows if f["check"] == "presence"]
    price = {f["sku"]: f for f in rows if f["check"] == "price"}
    a1 = price["A-1"]
    assert a1["outcome"] == "not_evaluated"
    assert "pos.csv:2" in a1["message"] and "'abc'" in a1["message"] and "price" in a1["message"]
    assert price["A-5"]["outcome"] == "failed"
    # The availability of A-1 was still compared (its quantity cell reads).
    assert not [f for f in rows if f["check"] == "availability"]
    r = cli("runs", "--config", cfg, "--errors")
    assert "pos.csv:2" in r.output and "read without its price" in r.output


def test_row_without_a_key_holds_presence(pos_world):
    cfg = pos_world / "config.toml"
    assert cli("run", "--config", cfg).exit_code == 1
    # The next export loses A-4's SKU cell: A-4 may be on that row.
    text = (pos_world / "pos.csv").read_text().replace("A-4,Alpha Lamp 4", ",Alpha Lamp 4")
    (pos_world / "pos.csv").write_text(text)
    r = cli("run", "--config", cfg)
    assert r.exit_code == 2, r.output
    assert "presence held" in r.output or "without a readable key" in r.output
    assert "pos.csv:5" in r.output
    assert not [f for f in findings(cfg, "--open") if f["check"] == "presence"]
    # Other checks still ran on the rows that were read.
    assert [f for f in findings(cfg, "--open") if f["sku"] == "A-5" and f["check"] == "price"]
    # The row comes back: presence is concluded again, nothing to say.
    (pos_world / "pos.csv").write_text(text.replace(",Alpha Lamp 4", "A-4,Alpha Lamp 4"))
    r = cli("run", "--config", cfg)
    assert r.exit_code == 1 and "held" not in r.output


def test_a_missing_row_is_still_reported_missing(pos_world):
    cfg = pos_world / "config.toml"
    assert cli("run", "--config", cfg).exit_code == 1
    text = (pos_world / "pos.csv").read_text()
    (pos_world / "pos.csv").write_text(
        "\n".join(line for line in text.splitlines() if not line.startswith("A-3")) + "\n")
    r = cli("run", "--config", cfg)
    assert r.exit_code == 1, r.output  # one of five vanished: not a "drop"
    missing = [f for f in findings(cfg, "--open") if f["check"] == "presence"]
    assert [(f["sku"], f["outcome"]) for f in missing] == [("A-3", "failed")]


def test_field_the_channel_never_carries_is_said_once(pos_world):
    cfg = pos_world / "config.toml"
    cfg.write_text(cfg.read_text().replace(
        "enabled = false", 'master_images = "dam"\ndam_dir = "dam"'))
    dam = pos_world / "dam"
    dam.mkdir()
    original = Path(__file__).parent / "fixtures" / "images" / "original.jpg"
    for i in range(1, 6):
        (dam / f"A-{i}.jpg").write_bytes(original.read_bytes())
    write(pos_world / "master.csv", "sku,title,price,currency,quantity,sale_price\n" + "".join(
        f"A-{i},Alpha Lamp {i},{10 + i}.00,EUR,5,{9 + i}.00\n" for i in range(1, 6)))
    # A stock-only export: no price column, no image column, no GTIN column.
    write(pos_world / "pos.csv", "sku,title,quantity\n" + "".join(
        f"A-{i},Alpha Lamp {i},5\n" for i in range(1, 6)))
    r = cli("run", "--config", cfg, "--format", "json")
    pos = json.loads(r.stdout)["channels"][0]
    assert pos["not_carried"] == {"image": ["image", "additional_images"],
                                  "price": ["price", "sale_price"], "identifiers": ["gtin"]}
    assert r.exit_code == 0, r.output  # nothing to say about what the channel cannot show
    assert findings(cfg) == []
    r = cli("run", "--config", cfg)
    assert "not evaluated on this channel, its source never carries them: additional_images, " \
        "gtin, image, price, sale_price" in r.output


def test_single_price_column_still_carries_the_sale(pos_world):
    """One price column shows the price in force: a sale the till ignores is a finding."""
    cfg = pos_world / "config.toml"
    write(pos_world / "master.csv", "sku,title,price,currency,quantity,sale_price\n" + "".join(
        f"A-{i},Alpha Lamp {i},{10 + i}.00,EUR,5,{9 + i}.00\n" for i in range(1, 6)))
    write(pos_world / "pos.csv", "sku,title,price,quantity\n" + "".join(
        f"A-{i},Alpha Lamp {i},{10 + i if i == 1 else 9 + i}.00,5\n" for i in range(1, 6)))
    r = cli("run", "--config", cfg, "--format", "json")
    assert json.loads(r.stdout)["channels"][0]["not_carried"].get("price") is None
    sale = [f for f in findings(cfg) if f["field"] == "sale_price"]
    assert [(f["sku"], f["outcome"]) for f in sale] == [("A-1", "failed")]
    assert "the channel shows the regular price" in sale[0]["message"]


def test_empty_column_is_carried_and_reported_per_listing(pos_world):
    """A column that exists but is empty on a row is the channel not showing the value."""
    cfg = pos_world / "config.toml"
    write(pos_world / "pos.csv", """
        sku,title,price,quantity
        A-1,,11.00,5
        A-2,Alpha Lamp 2,12.00,5
        A-3,Alpha Lamp 3,13.00,5
        A-4,Alpha Lamp 4,14.00,5
        A-5,Alpha Lamp 5,15.00,5
        """)
    assert cli("run", "--config", cfg).exit_code == 1
    title = [f for f in findings(cfg) if f["check"] == "title"]
    assert [(f["sku"], f["message"]) for f in title] == [("A-1", "listing has no title")]


# ------------------------------------------------------------------ sharp drops

def _feed(skus) -> str:
    items = "".join(f"<item><g:id>{s}</g:id><g:title>Tee {s}</g:title>"
                    f"<g:price>20.00 EUR</g:price></item>" for s in skus)
    return ('<?xml version="1.0"?><rss xmlns:g="http://base.google.com/ns/1.0" version="2.0">'
            f"<channel>{items}</channel></rss>")


@pytest.fixture
def feed_world(tmp_path: Path) -> Path:
    skus = [f"T-{i:02d}" for i in range(20)]
    write(tmp_path / "master.csv", "sku,title,price,currency\n" +
          "".join(f"{s},Tee {s},20.00,EUR\n" for s in skus))
    (tmp_path / "google.xml").write_text(_feed(skus))
    write(tmp_path / "config.toml", """
        [store]
        path = "auditor.db"
        [master]
        source = "master.csv"
        [[channels]]
        name = "google"
        type = "google_merchant"
        source = "google.xml"
        """)
    return tmp_path


def _drop(world: Path, keep: int) -> None:
    (world / "google.xml").write_text(_feed([f"T-{i:02d}" for i in range(keep)]))


def _missing(cfg: Path) -> list[str]:
    return sorted(f["sku"] for f in findings(cfg, "--open") if f["check"] == "presence")


def test_sharp_drop_is_held_then_confirmed_by_a_second_run(feed_world):
    cfg = feed_world / "config.toml"
    assert cli("run", "--config", cfg).exit_code == 0
    _drop(feed_world, 12)  # 8 of 20 vanish together
    r = cli("run", "--config", cfg)
    assert r.exit_code == 2, r.output
    assert "8 of 20 listings vanished" in r.output and "presence held" in r.output
    assert "auditor runs accept 2 google" in r.output
    assert _missing(cfg) == []
    r = cli("runs", "--config", cfg)
    assert "presence held" in r.output
    r = cli("run", "--config", cfg)  # the same drop seen again: confirmed
    assert r.exit_code == 1, r.output
    assert "confirmed" in r.output
    assert _missing(cfg) == [f"T-{i:02d}" for i in range(12, 20)]
    assert "presence confirmed" in cli("runs", "--config", cfg).output


def test_held_drop_that_comes_back_opens_nothing(feed_world):
    cfg = feed_world / "config.toml"
    assert cli("run", "--config", cfg).exit_code == 0
    # A finding that exists before the drop must not resolve on the drop's evidence.
    master = (feed_world / "master.csv").read_text()
    (feed_world / "master.csv").write_text(master.replace("T-19,Tee T-19,20.00", "T-19,Tee T-19,21.00"))
    assert cli("run", "--config", cfg).exit_code == 1
    _drop(feed_world, 10)
    assert cli("run", "--config", cfg).exit_code == 2
    open_prices = [f for f in findings(cfg, "--open") if f["check"] == "price"]
    assert [f["sku"] for f in open_prices] == ["T-19"]  # not resolved by its vanishing
    _drop(feed_world, 20)
    r = cli("run", "--config", cfg)
    assert r.exit_code == 1, r.output
    assert _missing(cfg) == []
    assert "presence superseded" in cli("runs", "--config", cfg).output


def test_user_accepts_a_drop(feed_world):
    cfg = feed_world / "config.toml"
    assert cli("run", "--config", cfg).exit_code == 0
    _drop(feed_world, 5)
    assert cli("run", "--config", cfg).exit_code == 2
    r = cli("runs", "accept", "2", "google", "--config", cfg)
    assert r.exit_code == 0, r.output
    assert "15 findings opened" in r.output and "15 listings removed" in r.output
    assert _missing(cfg) == [f"T-{i:02d}" for i in range(5, 20)]
    r = cli("runs", "accept", "2", "google", "--config", cfg)
    assert r.exit_code == 2 and "already accepted" in r.output
    r = cli("run", "--config", cfg)  # the accepted read is the new baseline
    assert r.exit_code == 1 and "held" not in r.output
    assert len(_missing(cfg)) == 15


def test_max_drop_is_configurable(feed_world):
    cfg = feed_world / "config.toml"
    cfg.write_text(cfg.read_text() + 'max_drop = 0.5\n')
    assert cli("run", "--config", cfg).exit_code == 0
    _drop(feed_world, 12)  # 40% vanish: within the configured share
    r = cli("run", "--config", cfg)
    assert r.exit_code == 1 and "held" not in r.output
    assert len(_missing(cfg)) == 8


def test_accept_refuses_an_old_run(feed_world):
    cfg = feed_world / "config.toml"
    assert cli("run", "--config", cfg).exit_code == 0
    _drop(feed_world, 5)
    assert cli("run", "--config", cfg).exit_code == 2
    _drop(feed_world, 20)
    assert cli("run", "--config", cfg).exit_code == 0
    r = cli("runs", "accept", "2", "google", "--config", cfg)
    assert r.exit_code == 2 and "superseded" in r.output
    r = cli("runs", "accept", "2", "nope", "--config", cfg)
    assert r.exit_code == 2 and "unknown channel 'nope'" in r.output


def test_min_ratio_holds_presence_too(feed_world):
    cfg = feed_world / "config.toml"
    cfg.write_text(cfg.read_text() + 'max_drop = 1.0\nmin_ratio = 0.5\n')
    assert cli("run", "--config", cfg).exit_code == 0
    _drop(feed_world, 5)
    r = cli("run", "--config", cfg)
    assert r.exit_code == 2 and "under min_ratio = 50%" in r.output
    assert _missing(cfg) == []


def test_report_says_what_was_held_and_not_carried(feed_world):
    cfg = feed_world / "config.toml"
    assert cli("run", "--config", cfg).exit_code == 0
    _drop(feed_world, 12)
    assert cli("run", "--config", cfg).exit_code == 2
    out = feed_world / "r.html"
    assert cli("report", "--config", cfg, "--output", out).exit_code == 0
    html = out.read_text()
    assert "8 of 20 listings vanished" in html and "presence held" in html
    assert "not evaluated on this channel" in html and "image" in html


def test_row_without_a_key_on_the_first_run_still_opens_what_was_read(pos_world):
    """A POS export with one blank-SKU row from the start: presence is held, but an
    oversold SKU and a price drift on the rows that were read open findings at once."""
    cfg = pos_world / "config.toml"
    write(pos_world / "master.csv", "sku,title,price,currency,quantity\n" + "".join(
        f"A-{i},Alpha Lamp {i},{10 + i}.00,EUR,{0 if i == 2 else 5}\n" for i in range(1, 6)))
    write(pos_world / "pos.csv", """
        sku,title,price,quantity
        A-1,Alpha Lamp 1,11.00,5
        A-2,Alpha Lamp 2,12.00,5
        A-3,Alpha Lamp 3,13.00,5
        ,Alpha Lamp 4,14.00,5
        A-5,Alpha Lamp 5,99.00,5
        Z-9,Zeta Lamp,20.00,5
        """)
    r = cli("run", "--config", cfg)
    assert r.exit_code == 2, r.output
    assert "pos.csv:5" in r.output
    rows = findings(cfg, "--open")
    assert {(f["check"], f["sku"], f["outcome"], f["severity"]) for f in rows} == {
        ("availability", "A-2", "failed", "critical"), ("price", "A-5", "failed", "critical"),
        ("presence", "Z-9", "failed", "major")}  # an orphan: a listing that was read
    # Presence stays held: A-4 (maybe the keyless row) is not concluded missing.
    assert [f["details"]["kind"] for f in findings(cfg) if f["check"] == "presence"] == [
        "orphan"]
    r = cli("runs", "--config", cfg)
    assert "presence held" in r.output or "without a readable key" in r.output
    # The same export again: nothing new, nothing resolved.
    assert cli("run", "--config", cfg).exit_code == 2
    assert {(f["check"], f["sku"]) for f in findings(cfg, "--open")} == {
        ("availability", "A-2"), ("price", "A-5"), ("presence", "Z-9")}
    # Still held, A-5's price is fixed: its finding resolves (A-5 was read); A-4's row
    # keeps its blank SKU, so nothing about A-4 is concluded.
    text = (pos_world / "pos.csv").read_text()
    (pos_world / "pos.csv").write_text(text.replace("A-5,Alpha Lamp 5,99.00", "A-5,Alpha Lamp 5,15.00"))
    assert cli("run", "--config", cfg).exit_code == 2
    assert {(f["check"], f["sku"], f["state"]) for f in findings(cfg)} == {
        ("availability", "A-2", "open"), ("price", "A-5", "resolved"),
        ("presence", "Z-9", "open")}
