import json
from decimal import Decimal
from pathlib import Path

import pytest

from auditor.errors import MasterImportError
from auditor.master import load_master
from auditor.model import Availability, MasterStatus
from tests.conftest import write

OPTS = {"type": "csv", "encoding": "auto", "delimiter": "auto", "columns": {},
        "default_currency": None, "skip_bad_rows": False, "timezone": "UTC"}

HEADER = "sku,title,brand,gtin,price,currency,sale_price,sale_start,sale_end,quantity,status,image_1,image_2,color,weight,title@amazon,price_usd\n"


def load(tmp_path: Path, text: str, name: str = "master.csv", file_encoding: str = "utf-8",
         **opts):
    write(tmp_path / name, text, file_encoding)
    o = dict(OPTS, source=name, **opts)
    return load_master(o, tmp_path)


def test_convention_maps_every_column(tmp_path):
    res = load(tmp_path, HEADER +
               "S1,Trail Shoe,Acme,4006381333931,59.90,EUR,49.90,2026-11-01,2026-12-01T00:00:00+01:00,"
               "5,active,https://cdn/a.jpg,https://cdn/b.jpg,Red,1.2 kg,Acme Trail Shoe (Amazon),64.00\n")
    (r,) = res.records
    assert r.sku == "S1" and r.title == "Trail Shoe" and r.brand == "Acme"
    assert r.gtin == "04006381333931"
    assert r.price.amount == Decimal("59.90") and r.price.currency == "EUR"
    assert r.sale_price.amount == Decimal("49.90")
    assert r.sale_start.isoformat() == "2026-11-01T00:00:00+00:00"
    assert r.sale_end.utcoffset().total_seconds() == 3600
    assert r.prices["USD"].amount == Decimal("64.00")
    assert r.quantity == 5 and r.status is MasterStatus.ACTIVE
    assert r.images == ("https://cdn/a.jpg", "https://cdn/b.jpg")
    assert r.attributes == {"color": "Red", "weight": "1.2 kg"}
    assert r.override("amazon", "title") == "Acme Trail Shoe (Amazon)"
    assert res.sha256 and len(res.sha256) == 64


def test_images_column_and_jsonl(tmp_path):
    rows = [{"sku": "J1", "title": "X", "price": "10", "currency": "GBP",
             "images": ["https://c/1.jpg", "https://c/2.jpg"], "availability": "in stock",
             "attributes": {"Color": "Blue"}, "overrides": {"meta": {"title": "X!"}}},
            {"sku": "J2", "price": 12.5, "currency": "GBP", "images": "https://c/3.jpg|https://c/4.jpg"}]
    res = load(tmp_path, "\n".join(json.dumps(r) for r in rows) + "\n", "m.jsonl", type="jsonl")
    a, b = res.records
    assert a.images == ("https://c/1.jpg", "https://c/2.jpg")
    assert a.availability is Availability.IN_STOCK
    assert a.attributes == {"color": "Blue"}
    assert a.override("meta", "title") == "X!"
    assert b.price.amount == Decimal("12.5") and b.images[1] == "https://c/4.jpg"


def test_column_remap_and_semicolon_cp1252(tmp_path):
    text = "Artikel;Bezeichnung;Preis\nA-1;Küchenmesser groß;1.299,00\n"
    res = load(tmp_path, text, file_encoding="cp1252", default_currency="EUR",
               columns={"sku": "Artikel", "title": "Bezeichnung", "price": "Preis"})
    (r,) = res.records
    assert r.title == "Küchenmesser groß"
    assert r.price.amount == Decimal("1299.00")


@pytest.mark.parametrize("row,where,reason", [
    (",No SKU,10,EUR", ":2 column sku", "missing SKU"),
    ("S2,Bad price,ten,EUR", ":2 column price", "bad price 'ten'"),
    ("S3,Unknown currency,10,EUX", ":2 column currency", "unknown currency 'EUX'"),
    ("S4,No currency,10,", ":2 column price", "no currency"),
])
def test_bad_rows_are_named_and_reject_the_file(tmp_path, row, where, reason):
    with pytest.raises(MasterImportError) as e:
        load(tmp_path, "sku,title,price,currency\n" + row + "\n")
    msg = str(e.value)
    assert f"master.csv{where}" in msg and reason in msg
    assert "stays in force" not in msg  # the run says whether an earlier snapshot does


def test_duplicate_sku_names_both_lines(tmp_path):
    with pytest.raises(MasterImportError, match=r"master.csv:3 column sku: duplicate SKU 'S1' \(first on line 2\)"):
        load(tmp_path, "sku,title\nS1,a\nS1,b\n")


def test_every_error_is_listed(tmp_path):
    with pytest.raises(MasterImportError) as e:
        load(tmp_path, "sku,title,price,currency\nS1,a,x,EUR\nS2,b,1,EUR\n,c,1,EUR\nS4,d,1,ABC\n")
    # line 5 has two problems: an unknown currency, hence a price with no currency
    assert [loc.split(" ")[0].rsplit(":", 1)[1] for loc, _ in e.value.errors] == ["2", "4", "5", "5"]


def test_skip_bad_rows_keeps_good_ones(tmp_path):
    res = load(tmp_path, "sku,title,price,currency\nS1,a,x,EUR\nS2,b,1,EUR\n", skip_bad_rows=True)
    assert [r.sku for r in res.records] == ["S2"]
    assert len(res.errors) == 1


def test_wrong_explicit_encoding_names_the_line(tmp_path):
    with pytest.raises(MasterImportError) as e:
        load(tmp_path, "sku,title\nS1,ok\nS2,Gr\u00f6\u00dfe\n", file_encoding="cp1252",
             encoding="utf-8")
    assert "master.csv:3" in str(e.value) and "not valid utf-8" in str(e.value)


def test_auto_encoding_reads_cp1252_and_bom(tmp_path):
    res = load(tmp_path, "sku,title\nS2,Gr\u00f6\u00dfe\n", file_encoding="cp1252")
    assert res.records[0].title == "Gr\u00f6\u00dfe"
    res = load(tmp_path, "\ufeffsku,title\nS3,\u00e9t\u00e9\n", name="bom.csv")
    assert res.records[0].title == "\u00e9t\u00e9"


def test_no_sku_column_and_missing_file(tmp_path):
    with pytest.raises(MasterImportError, match="no 'sku' column"):
        load(tmp_path, "id,title\n1,a\n")
    with pytest.raises(MasterImportError, match="file not found"):
        load_master(dict(OPTS, source="absent.csv"), tmp_path)


def test_invalid_gtin_in_master_is_an_error(tmp_path):
    with pytest.raises(MasterImportError, match="wrong check digit"):
        load(tmp_path, "sku,gtin\nS1,4006381333932\n")
