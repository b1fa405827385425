"""Google Merchant feeds: RSS, Atom, TSV, bad input and hostile XML."""

from __future__ import annotations

import gzip
from decimal import Decimal
from pathlib import Path

import pytest

from auditor.errors import SourceError
from auditor.model import Availability, Money
from auditor.connectors.google_merchant import item_to_listing, parse_xml
from connector_helpers import FIXTURES, NOW, by_key, read

GM = FIXTURES / "google_merchant"


def test_rss_mixed_prefixes_and_attributes():
    listings, ctx = read("google_merchant", str(GM / "rss_mixed.xml"))
    got = by_key(listings)
    assert list(got) == ["TS-RED-M", "TS-BLU-M", "BAD-PRICE", "PRE-1"]
    # An unreadable price leaves a listing without it, the reason named with file and line.
    bad = got["BAD-PRICE"]
    assert bad.price is None and set(bad.unread) == {"price"}
    assert bad.unread["price"].startswith(str(GM / "rss_mixed.xml") + ":")
    assert "twenty dollars" in bad.unread["price"]
    assert ctx.result.presence_held is None
    assert {"images", "price", "title", "availability", "gtin"} <= ctx.carried
    red = got["TS-RED-M"]
    assert red.title == "Acme Tee, Red, M"  # g:title wins over the plain <title>
    assert red.url == "https://shop.example/products/tee?variant=11"
    assert red.description == "Soft <b>cotton</b> tee"
    assert red.price == Money(Decimal("20.00"), "USD")
    assert red.sale_price == Money(Decimal("15.00"), "USD")
    assert red.sale_start.isoformat() == "2025-03-01T00:00:00-08:00"
    assert red.sale_end.isoformat() == "2025-03-08T23:59:00-08:00"
    assert red.availability is Availability.IN_STOCK
    assert red.gtin == "00036282818705"
    assert red.attributes["additional_gtins"] == "04006381333931"
    assert red.images == ("https://cdn.example/tee-red.jpg", "https://cdn.example/tee-red-2.jpg",
                          "https://cdn.example/tee-red-3.jpg", "https://cdn.example/tee-red-4.jpg")
    assert red.group_id == "TS"
    assert {k: red.attributes[k] for k in ("color", "size", "material", "product_weight",
                                           "product_length", "product_width",
                                           "product_height")} == {
        "color": "Red", "size": "M", "material": "Cotton", "product_weight": "0.2 kg",
        "product_length": "70 cm", "product_width": "50 cm", "product_height": "1 cm"}
    assert "shipping" not in red.attributes  # ignored unless configured
    blue = got["TS-BLU-M"]
    assert blue.title == "Acme Tee, Blue, M" and blue.url.endswith("variant=12")
    assert blue.availability is Availability.OUT_OF_STOCK
    assert blue.gtin == "00036282818712"  # lost leading zero restored by padding
    assert got["PRE-1"].price == Money(Decimal("1299.00"), "EUR")
    assert got["PRE-1"].availability is Availability.PREORDER
    reasons = " ".join(r for _, r in ctx.errors)
    assert "duplicate id 'TS-RED-M'" in reasons
    assert ctx.result.errors == 1
    assert all(loc.startswith(str(GM / "rss_mixed.xml") + ":") for loc, _ in ctx.errors)


def test_shipping_kept_when_configured():
    listings, _ = read("google_merchant", str(GM / "rss_mixed.xml"), include_shipping=True)
    assert by_key(listings)["TS-RED-M"].attributes["shipping"] == "US:Standard:4.95 USD"


def test_atom_feed():
    listings, ctx = read("google_merchant", str(GM / "atom.xml"))
    a1, a2 = listings
    assert (a1.key, a1.title, a1.url, a1.description) == (
        "A-1", "Atom Tee", "https://shop.example/a-1", "Atom summary")
    assert a1.availability is Availability.IN_STOCK
    assert a2.availability is Availability.OUT_OF_STOCK and a2.price == Money.of("5", "EUR")
    assert ctx.result.errors == 0


def test_undeclared_g_prefix_is_read():
    listings, _ = read("google_merchant", str(GM / "undeclared_prefix.xml"))
    assert [li.key for li in listings] == ["U-1", "U-2"]
    assert listings[0].price == Money.of("3.00", "GBP")


def test_tsv_with_bom_decimal_commas_and_ugly_rows():
    listings, ctx = read("google_merchant", str(GM / "feed_bom.tsv"))
    got = by_key(listings)
    assert list(got) == ["T-1", "T-2", "T-5", "T-6"]
    t1 = got["T-1"]
    assert t1.gtin == "04006381333931" and t1.attributes["additional_gtins"] == "00036282818705"
    assert t1.images == ("https://cdn.example/1.jpg", "https://cdn.example/1b.jpg",
                         "https://cdn.example/1c.jpg")
    assert t1.brand == "Acme" and t1.attributes["product_weight"] == "250 g"
    t2 = got["T-2"]
    assert t2.title == "Tee two"
    assert t2.price == Money.of("12.50", "EUR") and t2.sale_price == Money.of("9.99", "EUR")
    assert t2.availability is Availability.OUT_OF_STOCK
    assert got["T-5"].availability is Availability.BACKORDER
    assert got["T-6"].title == "Café crème (Windows-1252 row)"
    bad = dict(ctx.errors)
    assert "unquoted delimiter" in bad[f"{GM / 'feed_bom.tsv'}:5"]
    assert "unbalanced quote" in bad[f"{GM / 'feed_bom.tsv'}:6"]


@pytest.mark.parametrize("fmt", ["auto", "xml"])
def test_html_where_feed_expected_is_a_source_error(fmt):
    with pytest.raises(SourceError, match="HTML page"):
        read("google_merchant", str(GM / "login.html"), format=fmt)


def test_truncated_gzip_is_a_source_error(tmp_path):
    data = gzip.compress((GM / "rss_mixed.xml").read_bytes() * 50)
    p = tmp_path / "feed.xml.gz"
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(SourceError, match="truncated or corrupt"):
        read("google_merchant", str(p))


def test_broken_xml_is_a_source_error(tmp_path):
    p = tmp_path / "feed.xml"
    p.write_text("<rss><channel><item><g:id>1</g:id>", encoding="utf-8")
    with pytest.raises(SourceError, match="XML syntax error"):
        read("google_merchant", str(p))


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<rss xmlns:g="http://base.google.com/ns/1.0"><channel>
<item><g:id>X</g:id><g:title>&lol9;</g:title></item>
</channel></rss>"""


def _xxe(target: Path) -> bytes:
    return (f'<?xml version="1.0"?>\n<!DOCTYPE r [<!ENTITY xxe SYSTEM "file://{target}">]>\n'
            f'<rss xmlns:g="http://base.google.com/ns/1.0"><channel><item><g:id>X</g:id>'
            f'<g:title>&xxe;</g:title></item></channel></rss>').encode()


def test_billion_laughs_is_not_expanded(tmp_path):
    p = tmp_path / "laughs.xml"
    p.write_bytes(BILLION_LAUGHS)
    try:
        listings, _ = read("google_merchant", str(p))
    except SourceError as e:  # refusing the document is as safe as not expanding it
        assert "entity" in e.reason
        return
    assert len(listings) == 1
    assert "lollollol" not in (listings[0].title or "")


def test_external_entity_is_not_resolved(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-CONTENT", encoding="utf-8")
    p = tmp_path / "xxe.xml"
    p.write_bytes(_xxe(secret))
    with open(p, "rb") as f:
        items = list(parse_xml(f, str(p)))
    assert items and all("TOP-SECRET" not in v for _, fields in items for v in fields.values())


def test_item_without_id_is_a_bad_record():
    from auditor.errors import BadRecord

    with pytest.raises(BadRecord) as e:
        item_to_listing({"title": "no id"}, "gm", NOW, "feed:1", {})
    assert e.value.field == "id"


@pytest.mark.parametrize("fields,field,word", [
    ({"id": "1", "price": "abc"}, "price", "abc"),
    ({"id": "1", "availability": "maybe"}, "availability", "maybe"),
    ({"id": "1", "sale_price_effective_date": "2025-03-08/2025-03-01"},
     "sale_start", "sale_price_effective_date"),
    ({"id": "1", "quantity_to_sell_on_facebook": "many"}, "quantity", "many"),
])
def test_bad_value_leaves_the_listing_with_an_unread_field(fields, field, word):
    li = item_to_listing(fields, "gm", NOW, "feed:1", {})
    assert li.key == "1" and set(li.unread) == {field}
    assert li.unread[field].startswith("feed:1: ") and word in li.unread[field]
    assert getattr(li, field) is None


@pytest.mark.parametrize("raw,expected", [
    ("in stock", Availability.IN_STOCK), ("in_stock", Availability.IN_STOCK),
    ("Out Of Stock", Availability.OUT_OF_STOCK), ("backorder", Availability.BACKORDER),
    ("pre_order", Availability.PREORDER),
])
def test_availability_spellings(raw, expected):
    li = item_to_listing({"id": "1", "availability": raw}, "gm", NOW, "feed:1", {})
    assert li.availability is expected


def test_default_currency_and_sku_field():
    li = item_to_listing({"id": "1", "price": "12,50", "mpn": " M-1 "}, "gm", NOW, "f:1",
                         {"currency": "EUR", "sku_field": "mpn"})
    assert li.price == Money.of("12.50", "EUR") and li.sku == "M-1" and li.mpn == "M-1"


def test_url_feed_with_env_secrets(monkeypatch, caplog):
    import logging

    from connector_helpers import HTTP_LOCAL, serve

    monkeypatch.setenv("GM_TOKEN", "Bearer gm-secret-4711")
    body = gzip.compress((GM / "atom.xml").read_bytes())
    routes = {"/feed.xml.gz": (200, {"Content-Type": "application/gzip"}, body),
              "/login": (200, {"Content-Type": "text/html"}, (GM / "login.html").read_bytes())}
    with serve(routes) as (base, seen), caplog.at_level(logging.DEBUG):
        listings, ctx = read("google_merchant", f"{base}/feed.xml.gz", http_options=HTTP_LOCAL,
                             headers={"Authorization": {"env": "GM_TOKEN"}})
        with pytest.raises(SourceError) as e:
            read("google_merchant", f"{base}/login", http_options=HTTP_LOCAL,
                 headers={"Authorization": {"env": "GM_TOKEN"}})
    assert [li.key for li in listings] == ["A-1", "A-2"]
    assert seen[0]["authorization"] == "Bearer gm-secret-4711"
    assert "HTML page" in str(e.value)
    assert "gm-secret-4711" not in str(e.value) + caplog.text


def test_url_outside_private_guard_is_refused():
    from connector_helpers import serve

    with serve({"/f.xml": (200, {}, b"<rss/>")}) as (base, _):
        with pytest.raises(SourceError, match="private"):
            read("google_merchant", f"{base}/f.xml", http_options={"retries": 0})
