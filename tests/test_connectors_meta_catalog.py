"""Meta catalog feeds: flattened image columns, Meta availability words, XML."""

from __future__ import annotations

import pytest

from auditor.model import Availability, Money
from auditor.connectors.meta_catalog import meta_name
from connector_helpers import FIXTURES, by_key, read

META = FIXTURES / "meta_catalog"


@pytest.mark.parametrize("name,expected", [
    ("image[0].url", "image_link"), ("image[1].url", "additional_image_link"),
    ("image[12].url", "additional_image_link"), ("image[0].tag[0]", "image[0].tag[0]"),
    ("title", "title"),
])
def test_meta_names(name, expected):
    assert meta_name(name) == expected


def test_csv_with_flattened_images_and_comment_row():
    listings, ctx = read("meta_catalog", str(META / "catalog.csv"))
    got = by_key(listings)
    assert list(got) == ["M-1", "M-2", "M-3"]
    m1 = got["M-1"]
    assert m1.title == "Acme Hoodie, Grey"
    assert m1.description == 'Warm hoodie with a "kangaroo" pocket'
    assert m1.images == ("https://cdn.example/h1.jpg", "https://cdn.example/h2.jpg")
    assert m1.price == Money.of("49.00", "EUR") and m1.sale_price == Money.of("39.00", "EUR")
    assert m1.quantity == 12 and m1.gtin == "04006381333931"
    assert m1.attributes["status"] == "active" and m1.attributes["color"] == "Grey"
    assert got["M-2"].availability is Availability.BACKORDER
    assert got["M-2"].price == Money.of("12.00", "EUR")
    assert got["M-2"].quantity == 0
    assert got["M-3"].availability is Availability.OUT_OF_STOCK
    assert [r for _, r in ctx.errors] == ["duplicate id 'M-1'; kept the first"]


def test_xml_with_nested_images():
    listings, ctx = read("meta_catalog", str(META / "catalog.xml"))
    (li,) = listings
    assert li.images == ("https://cdn.example/x1.jpg", "https://cdn.example/x2.jpg",
                         "https://cdn.example/x3.jpg")
    assert li.quantity == 3 and li.availability is Availability.IN_STOCK
    assert ctx.result.errors == 0
