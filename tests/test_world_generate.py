"""The generated world: deterministic, valid identifiers, native formats, honest labels."""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
from datetime import datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import pytest

from auditor.master import load_master
from auditor.values import gtin_valid, normalize_gtin, parse_interval
from auditor.world.catalog import similarity
from auditor.world.drift import BENIGN_KINDS, CHECK_OF, KINDS, truncate
from auditor.world.generate import Manifest, World, generate_world

NOW = datetime(2026, 3, 10, 12, tzinfo=timezone.utc)
ATTRIBUTE_FIELDS = {"color", "size", "material", "weight", "width", "height", "length"}


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("world")
    generate_world(out, size=400, seed=3, now=NOW, sitemap_urls_per_file=50,
                   shopify_page_size=20)
    return out


def _rows(path: Path, delimiter: str = ",", encoding: str = "utf-8") -> list[dict[str, str]]:
    with open(path, encoding=encoding, newline="") as f:
        return list(csv.DictReader(f, delimiter=delimiter))


def _tree_digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _listings(world: Path) -> dict[str, dict[str, dict[str, str]]]:
    """channel -> listing key -> row, for every file channel (normalised column names)."""
    out = {"google": {r["id"]: r for r in _rows(world / "feeds/google.tsv", "\t")},
           "meta": {r["id"]: r for r in _rows(world / "feeds/meta.csv")},
           "amazon": {r["seller-sku"]: r for r in _rows(world / "feeds/amazon.tsv", "\t")}}
    out["shopify"] = {}
    for page in Manifest.load(world).files["shopify_pages"].split(","):
        for prod in json.loads((world / page).read_text())["products"]:
            for v in prod["variants"]:
                img = next((i["src"] for i in prod["images"] if v["id"] in i["variant_ids"]), "")
                out["shopify"][str(v["id"])] = {
                    "sku": v["sku"], "price": v["price"], "image-url": img,
                    "availability": "in stock" if v["available"] else "out of stock",
                    "sale_price": "", "title": prod["title"] if v["title"] == "Default Title"
                    else f"{prod['title']}, {v['title'].replace(' / ', ', ')}"}
    for store in ("berlin", "munich"):
        out[f"pos-{store}"] = {r["SKU"]: r for r in _rows(world / f"feeds/pos-{store}.csv", ";",
                                                         "cp1252")}
    return out


def _price(channel: str, row: dict[str, str]) -> Decimal:
    if channel in ("google", "meta"):
        return Decimal(row["price"].split()[0])
    if channel in ("amazon", "shopify"):
        return Decimal(row["price"])
    return Decimal(row["Price"].replace(",", "."))


def _title(channel: str, row: dict[str, str]) -> str:
    return row.get("title") or row.get("item-name") or row["Item Name"]


def _gtin(channel: str, row: dict[str, str]) -> str:
    return row.get("gtin") or row.get("product-id") or row["EAN"]


def test_same_seed_same_bytes_and_other_seed_differs(tmp_path, monkeypatch):
    import time

    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    generate_world(a, size=60, seed=5, now=NOW)
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + 3600)  # no wall clock leaks into files
    generate_world(b, size=60, seed=5, now=NOW)
    monkeypatch.undo()
    generate_world(c, size=60, seed=6, now=NOW)
    da, db = _tree_digest(a), _tree_digest(b)
    assert da == db
    assert len(da) >= 12
    assert _tree_digest(c)["master.csv"] != da["master.csv"]


@pytest.mark.parametrize("size", [1, 7, 200])
def test_master_has_exactly_size_skus_and_imports_cleanly(tmp_path, size):
    m = generate_world(tmp_path, size=size, seed=2, now=NOW)
    imp = load_master({"source": str(tmp_path / "master.csv"), "type": "csv"}, tmp_path)
    assert len(imp.records) == size
    assert imp.errors == []
    assert Manifest.load(tmp_path).size == size == m.size
    assert sum(len(p.variants) for p in World(tmp_path).products()) == size


def test_size_out_of_range_is_refused(tmp_path):
    with pytest.raises(ValueError, match="size"):
        generate_world(tmp_path, size=0)


def test_master_content(world):
    imp = load_master({"source": str(world / "master.csv"), "type": "csv"}, world)
    recs = imp.records
    gtins = [r.gtin for r in recs]
    assert all(gtin_valid(g) for g in gtins) and len(set(gtins)) == len(gtins)
    groups = {}
    for r in recs:
        groups.setdefault(r.group_id, []).append(r)
    assert any(len(v) > 1 for v in groups.values()), "products have variants"
    assert {"USD", "GBP"} <= set(recs[0].prices)
    assert {r.status.value for r in recs} == {"active", "discontinued"}
    states = {("active" if r.sale_active(NOW) else "future" if r.sale_start > NOW else "past")
              for r in recs if r.sale_price is not None}
    assert states == {"active", "future", "past"}
    assert any(r.quantity == 0 for r in recs) and any(r.quantity > 0 for r in recs)
    assert any(len(r.title) > 150 for r in recs), "some titles need truncation on Google"
    assert all(1 <= len(r.images) <= 4 for r in recs)
    assert all(r.attributes["weight"].endswith(" kg") for r in recs)
    assert any(r.attributes.get("width", "").endswith(" cm") for r in recs)
    assert any(r.override("google", "title") for r in recs)


def test_previous_master_differs_in_some_titles_and_prices(world):
    cur = {r["sku"]: r for r in _rows(world / "master.csv")}
    prev = {r["sku"]: r for r in _rows(world / "master_previous.csv")}
    assert cur.keys() == prev.keys()
    titles = sum(cur[s]["title"] != prev[s]["title"] for s in cur)
    prices = sum(cur[s]["price"] != prev[s]["price"] for s in cur)
    assert 0 < titles < len(cur) and 0 < prices < len(cur)


def test_pos_exports_are_cp1252_semicolon_with_vat(world):
    master = {r["sku"]: r for r in _rows(world / "master.csv")}
    labelled = {(r["channel"], r["sku"]) for r in _rows(world / "labels.csv")}
    raw = (world / "feeds/pos-berlin.csv").read_bytes()
    with pytest.raises(UnicodeDecodeError):
        raw.decode("utf-8")  # accented names are Windows-1252 bytes
    assert raw.splitlines()[0] == b"SKU;EAN;Item Name;Price;Qty;Store"
    assert b"\r\n" in raw
    for store, comma in (("berlin", True), ("munich", False)):
        rows = _rows(world / f"feeds/pos-{store}.csv", ";", "cp1252")
        assert any(("," in r["Price"]) == comma for r in rows)
        assert all(("." not in r["Price"]) if comma else ("," not in r["Price"]) for r in rows)
        checked = 0
        for r in rows:
            m = master.get(r["SKU"])
            if m is None or (f"pos-{store}", r["SKU"]) in labelled or m["sale_price"]:
                continue
            gross = (Decimal(m["price"]) * Decimal("1.2")).quantize(Decimal("0.01"), ROUND_HALF_UP)
            assert Decimal(r["Price"].replace(",", ".")) == gross
            checked += 1
        assert checked > 50


def test_label_vocabulary(world):
    labels = _rows(world / "labels.csv")
    assert labels and list(labels[0]) == ["channel", "sku", "listing_key", "check", "field", "kind"]
    for r in labels:
        assert CHECK_OF[r["kind"]] == r["check"]
        if r["check"] == "attributes":
            assert r["field"] in ATTRIBUTE_FIELDS
        elif r["kind"] in ("sale_outside_window", "missing_sale"):
            assert r["field"] == "sale_price"
        else:
            assert r["field"] == {"title": "title", "price": "price", "availability": "availability",
                                  "image": "image", "presence": "listing",
                                  "identifiers": "gtin"}[r["check"]]
    benign = _rows(world / "benign.csv")
    assert {r["kind"] for r in benign} <= set(BENIGN_KINDS)
    assert {"vat_inclusive", "title_truncated", "brand_prefix"} <= {r["kind"] for r in benign}
    # every check has planted drift somewhere in the world
    assert {r["check"] for r in labels} == set(KINDS)


def test_labels_are_visible_in_the_files(world):
    master = {r["sku"]: r for r in _rows(world / "master.csv")}
    prev = {r["sku"]: r for r in _rows(world / "master_previous.csv")}
    listings = _listings(world)
    seen: set[str] = set()
    for lab in _rows(world / "labels.csv"):
        ch, sku, kind = lab["channel"], lab["sku"], lab["kind"]
        if ch not in listings:
            continue
        rows = listings[ch]
        seen.add(kind)
        if kind == "missing_listing":
            assert lab["listing_key"] not in rows
            continue
        row = rows[lab["listing_key"]]
        m = master.get(sku)
        vat = Decimal("1.2") if ch.startswith("pos-") else Decimal(1)
        cur = "GBP" if ch == "meta" else "EUR"
        col = {"EUR": "price", "GBP": "price_gbp"}[cur]
        if kind == "orphan_listing":
            assert m is None
        elif kind == "discontinued_listed":
            assert m["status"] == "discontinued"
        elif kind == "wrong_title":
            assert similarity(_title(ch, row), m["title"]) < 85
        elif kind == "old_title":
            limit = {"google": 150, "meta": 200, "amazon": 200}.get(ch)
            assert _title(ch, row) == truncate(prev[sku]["title"], limit)
            assert similarity(_title(ch, row), m["title"]) < 85
        elif kind == "price_typo":
            assert _price(ch, row) != (Decimal(m[col]) * vat).quantize(Decimal("0.01"))
        elif kind == "old_price":
            expected = (Decimal(prev[sku][col]) * vat).quantize(Decimal("0.01"), ROUND_HALF_UP)
            assert _price(ch, row) == expected != Decimal(m[col]) * vat
        elif kind == "currency_wrong":
            assert row["price"].split()[1] != cur
        elif kind == "invalid_gtin":
            assert not gtin_valid(normalize_gtin(_gtin(ch, row)))
        elif kind == "missing_sale":
            start, end = (datetime.fromisoformat(m[k]) for k in ("sale_start", "sale_end"))
            assert start <= NOW < end
            assert not row.get("sale_price") and _price(ch, row) == (Decimal(m[col]) * vat
                                                                     ).quantize(Decimal("0.01"))
        elif kind == "sale_outside_window":
            start, end = (datetime.fromisoformat(m[k]) for k in ("sale_start", "sale_end"))
            assert not start <= NOW < end
            shown = row.get("sale_price") and Decimal(row["sale_price"].split()[0])
            assert shown or _price(ch, row) < Decimal(m[col]) * vat
            if row.get("sale_price"):
                assert not row["sale_price_effective_date"]
        elif kind in ("wrong_availability", "oversell_risk"):
            qty = int(m["quantity"])
            shown = row.get("availability") or ("in stock" if int(row.get("quantity") or
                                                                 row.get("Qty")) else "out")
            in_stock = shown.replace("_", " ") == "in stock"
            assert (qty > 0 and not in_stock) if kind == "wrong_availability" else \
                (qty == 0 and in_stock)
        elif kind in ("wrong_attribute", "wrong_unit_value"):
            col_name = {"weight": "product_weight", "width": "product_width",
                        "height": "product_height", "length": "product_length"}
            assert row[col_name.get(lab["field"], lab["field"])] != m[lab["field"]]
        elif kind in ("swapped_colour_image", "outdated_image", "missing_image"):
            shown = row.get("image_link") or row.get("image[0].url") or row.get("image-url")
            assert shown != m["image_1"]
    assert {"missing_listing", "orphan_listing", "price_typo", "wrong_title",
            "invalid_gtin", "old_price", "swapped_colour_image"} <= seen


def test_unlabelled_listings_match_the_master(world):
    """Every listing without a label shows master values (up to its benign variations)."""
    master = {r["sku"]: r for r in _rows(world / "master.csv")}
    labelled = {(r["channel"], r["sku"]) for r in _rows(world / "labels.csv")}
    benign = {(r["channel"], r["sku"], r["field"]) for r in _rows(world / "benign.csv")}
    listings = _listings(world)
    for ch in ("google", "meta", "amazon"):
        for key, row in listings[ch].items():
            if (ch, key) in labelled:
                continue
            m = master[key]
            assert _gtin(ch, row) == m["gtin"]
            approved = m.get(f"title@{ch}") or m["title"]
            if (ch, key, "title") not in benign:
                assert _title(ch, row) == approved
        present = {k for k in listings[ch]}
        for sku, m in master.items():
            if m["status"] == "active" and (ch, sku) not in labelled:
                assert sku in present


def test_google_feed_xml_and_tsv_agree_and_parse(world):
    from lxml import etree

    tree = etree.parse(str(world / "feeds/google.xml"))
    ns = {"g": "http://base.google.com/ns/1.0"}
    ids = [e.text for e in tree.iterfind(".//item/g:id", ns)]
    assert ids == list(_listings(world)["google"])
    assert tree.find(".//item/title") is not None and tree.find(".//item/g:title", ns) is not None
    dates = [e.text for e in tree.iterfind(".//g:sale_price_effective_date", ns)]
    assert dates and all(parse_interval(d)[0] < parse_interval(d)[1] for d in dates)
    assert tree.find(".//g:product_weight", ns) is not None


def test_meta_has_flattened_image_rows(world):
    rows = _rows(world / "feeds/meta.csv")
    assert any(r["image[0].url"] and not r["image_link"] for r in rows)
    assert any(r["image_link"] and not r["image[0].url"] for r in rows)
    assert {r["availability"] for r in rows} == {"in stock", "out of stock"}
    wrong = {r["sku"] for r in _rows(world / "labels.csv")
             if r["channel"] == "meta" and r["kind"] == "currency_wrong"}
    assert all(r["price"].endswith(" GBP") for r in rows if r["id"] not in wrong)


def test_shopify_pages_and_sitemaps(world):
    m = Manifest.load(world)
    pages = m.files["shopify_pages"].split(",")
    assert len(pages) > 1
    products = [p for n in pages for p in json.loads((world / n).read_text())["products"]]
    assert len({p["id"] for p in products}) == len(products)
    variant_ids = [v["id"] for p in products for v in p["variants"]]
    assert len(set(variant_ids)) == len(variant_ids)
    for p in products:
        assert p["variants"] and p["options"] and {"handle", "title", "images"} <= set(p)
        for v in p["variants"]:
            Decimal(v["price"])
    index = (world / "site/sitemap.xml").read_text()
    parts = [line.split("<loc>")[1].split("</loc>")[0] for line in index.splitlines()
             if "<loc>" in line]
    assert len(parts) > 1 and "<lastmod>" in index
    urls = []
    for u in parts:
        xml = gzip.decompress((world / "site" / u.split("shop.local/")[1]).read_bytes()).decode()
        urls += [line for line in xml.splitlines() if "<loc>" in line]
    assert 50 < len(urls) <= 400 + 40
    assert all("<lastmod>" in line for line in urls)


def test_prices_use_decimal_strings(world):
    for r in _rows(world / "master.csv"):
        assert Decimal(r["price"]) == Decimal(r["price"]).quantize(Decimal("0.01"))
        if r["sale_price"]:
            assert Decimal(r["sale_price"]) < Decimal(r["price"])
            assert datetime.fromisoformat(r["sale_end"]) - datetime.fromisoformat(
                r["sale_start"]) >= timedelta(days=1)


def test_images_distinct_products_and_colour_variants():
    from auditor.world.shop import image_bytes
    from PIL import Image, ImageChops

    def img(key, colour, mod=None, ext="png"):
        return Image.open(io.BytesIO(image_bytes(key, colour, 1, mod, ext)))

    red, blue = img("p0000001", "red"), img("p0000001", "blue")
    other = img("p0000002", "red")
    # same shape: the non-background masks of the colour variants are identical
    mask = lambda im: im.convert("L").point(lambda v: 0 if v > 250 else 255)  # noqa: E731
    assert ImageChops.difference(mask(red), mask(blue)).getbbox() is None
    assert ImageChops.difference(mask(red), mask(other)).getbbox() is not None
    assert red.size == (800, 600)
    assert img("p0000001", "red", "-sq").size == (800, 800)
    assert img("p0000001", "red", "-w400", "jpg").size == (400, 300)
    assert img("p0000001", "red", None, "webp").format == "WEBP"


def test_command_line_generate(tmp_path, capsys):
    from auditor.world.__main__ import main as world_main

    assert world_main(["generate", str(tmp_path), "--size", "30", "--seed", "9",
                       "--now", "2026-03-10T12:00:00+00:00"]) == 0
    assert "30 SKUs" in capsys.readouterr().out
    m = Manifest.load(tmp_path)
    assert (m.size, m.seed, m.now_dt) == (30, 9, NOW)


def test_image_hashes_separate_products_not_harmless_copies():
    import imagehash
    from PIL import Image

    from auditor.world.shop import image_bytes

    def h(key, colour="red", mod=None, ext="png"):
        return imagehash.phash(Image.open(io.BytesIO(image_bytes(key, colour, 1, mod, ext))))

    base = {i: h(f"p{i:07d}") for i in range(12)}
    distinct = [base[a] - base[b] for a in base for b in base if a < b]
    assert min(distinct) >= 10  # distinct products look distinct
    for i in range(4):
        key = f"p{i:07d}"
        assert h(key, mod="-old") - base[i] >= 10  # the outdated photo is another picture
        for mod, ext in ((None, "webp"), ("-w400", "jpg"), ("-q40", "jpg")):
            assert h(key, mod=mod, ext=ext) - base[i] <= 4  # harmless copies stay close


def test_same_bytes_across_processes_with_different_hash_seeds(tmp_path):
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    for name, hash_seed in (("a", "1"), ("b", "777")):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed, "PYTHONPATH": str(root)}
        subprocess.run([sys.executable, "-m", "auditor.world", "generate", str(tmp_path / name),
                        "--size", "80", "--now", NOW.isoformat()], check=True, env=env, cwd=root,
                       capture_output=True)
    assert _tree_digest(tmp_path / "a") == _tree_digest(tmp_path / "b")
