"""Shared connector helpers, and every file connector's robustness against garbage input."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from auditor.errors import SourceError
from auditor.connectors._common import header_key, map_columns, map_columns_all, row_values
from connector_helpers import read


@pytest.mark.parametrize("a,b", [("Seller-SKU", "seller sku"), ("Variant_Price", "variantprice"),
                                 (" Option1 Name ", "option1 name")])
def test_header_key_ignores_case_spaces_dashes(a, b):
    assert header_key(a) == header_key(b)


def test_map_columns_first_present_candidate_and_errors():
    header = ["sku", "Price", "EAN", "UPC"]
    assert map_columns(header, {"sku": ["seller-sku", "sku"], "gtin": ["UPC", "EAN"]}, "f") == {
        "sku": 0, "gtin": 3}
    assert map_columns_all(header, {"gtin": ["UPC", "EAN"]}, "f") == {"gtin": [3, 2]}
    with pytest.raises(SourceError, match=r"title \(item-name\).*sku, Price"):
        map_columns(header, {"title": "item-name"}, "f", required=("title",))


def test_row_values_strips_skips_empty_and_pads():
    values = row_values({"sku": [0], "gtin": [2, 1], "title": [3]})
    assert values([" A ", "123", "", ""]) == {"sku": "A", "gtin": "123"}
    assert values(["B"]) == {"sku": "B"}  # a short row


HEADERS = {
    "google_merchant": ("id\ttitle\tprice\tgtin\tavailability\tsale_price_effective_date\n", {}),
    "meta_catalog": ("id,title,price,image[0].url,inventory\n", {}),
    "amazon_listings": ("seller-sku\tprice\tquantity\tproduct-id\tproduct-id-type\tstatus\n",
                        {"currency": "EUR"}),
    "tabular": ("SKU;Price;GTIN;Qty A;Qty B\n", {"currency": "EUR", "locations": "Qty (.*)"}),
    "shopify": ("Handle,Title,Variant SKU,Variant Price,Option1 Name,Option1 Value\n",
                {"currency": "EUR"}),
}
TOKENS = st.sampled_from(list("ab,;\t\"'\n\r 09.€$<>/&#-_:") + [
    "EUR", "in stock", "1.299,00", "036282818705", "<item>", "</item>", "<g:id>", "\x00", "é"])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.sampled_from(sorted(HEADERS)), st.lists(TOKENS, max_size=120),
       st.sampled_from(["utf-8", "cp1252", "utf-16"]), st.booleans())
def test_garbage_is_bad_rows_or_a_source_error_never_a_crash(tmp_path, ctype, tokens, enc,
                                                              with_header):
    header, opts = HEADERS[ctype]
    p = tmp_path / "feed"
    p.write_bytes(((header if with_header else "") + "".join(tokens)).encode(enc, "replace"))
    try:
        listings, ctx = read(ctype, str(p), **opts)
    except SourceError as e:
        assert e.reason  # says why
        return
    assert all(li.key for li in listings)
    assert all(loc.startswith(str(p)) for loc, _ in ctx.errors)


DOC = Path(__file__).parent.parent / "docs" / "connectors.md"


def test_every_connector_option_is_documented():
    from auditor import plugins

    # The site channel is documented beside the crawler it drives.
    text = DOC.read_text(encoding="utf-8") + (DOC.parent / "crawler.md").read_text("utf-8")
    missing = [f"{name}.{o.name}" for name, conn in plugins.connectors().items()
               for o in conn.options if f"`{o.name}`" not in text]
    assert missing == []
    assert all(f"## {name}" in text for name in plugins.connectors())


@pytest.mark.parametrize("index", range(len(re.findall(r"```toml\n", DOC.read_text("utf-8")))))
def test_doc_examples_are_valid_config(index):
    from auditor.config import parse_config

    block = re.findall(r"```toml\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)[index]
    raw = tomllib.loads(block)
    raw["master"] = {"type": "csv", "source": "master.csv"}
    cfg = parse_config(raw, DOC.parent / "config.toml")
    assert cfg.channels  # every example configures at least one channel
