"""Attributes check: field maps, units, colour and size synonyms, multi-valued sets."""

from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from auditor.synonyms import SynonymTable, synonym_groups
from auditor.units import COMMON_UNITS, parse_quantity, registry, same_quantity
from tests.checks_factory import NOW, days, listing, master, problems, run


def fails(m, shown: dict, options: dict | None = None):
    out = run("attributes", m, listing(m, attributes=shown), options)
    assert all(f.check == "attributes" for f in out)
    return sorted(f.field for f in problems(out))


@pytest.mark.parametrize("mattrs, shown, expect", [
    # benign: units
    ({"length": "30 cm"}, {"product_length": "11.81 in"}, []),
    ({"weight": "1.2 kg"}, {"product_weight": "2.65 lb"}, []),
    ({"weight": "1.2 kg"}, {"product_weight": "1200 g"}, []),
    ({"weight": "1.2 kg"}, {"product_weight": "1,2 kg"}, []),
    ({"width": "25.4 cm"}, {"product_width": '10"'}, []),
    # benign: colour and size synonyms, case, multi-valued order
    ({"color": "Grey"}, {"color": "gray"}, []),
    ({"color": "Navy"}, {"color": "Navy Blue"}, []),
    ({"color": "Burgundy"}, {"color": "Bordeaux"}, []),
    ({"color": "Beige"}, {"color": "Sand"}, []),
    ({"color": "Red|Blue"}, {"color": "Blue/Red"}, []),
    ({"colour": "Grey"}, {"color": "Gray"}, []),
    ({"size": "M"}, {"size": "Medium"}, []),
    ({"size": "XL"}, {"size": "Extra Large"}, []),
    ({"size": "XL"}, {"size": "x-large"}, []),
    ({"material": "Cotton, Elastane"}, {"material": "elastane / cotton"}, []),
    # drift: wrong values
    ({"color": "Grey"}, {"color": "Navy"}, ["color"]),
    ({"color": "Red|Blue"}, {"color": "Red"}, ["color"]),
    ({"size": "M"}, {"size": "L"}, ["size"]),
    ({"material": "Merino Wool"}, {"material": "Polyester"}, ["material"]),
    # drift: wrong unit or value
    ({"length": "30 cm"}, {"product_length": "30 in"}, ["length"]),
    ({"weight": "1.2 kg"}, {"product_weight": "1.2 lb"}, ["weight"]),
    ({"weight": "1.2 kg"}, {"product_weight": "1.5 kg"}, ["weight"]),
    ({"weight": "1.2 kg"}, {"product_weight": "30 cm"}, ["weight"]),
    # nothing to compare: the master lacks the attribute, or it is bookkeeping
    ({"color": "Grey"}, {"pattern": "striped"}, []),
    ({"color": "Grey"}, {"additional_gtins": "123"}, []),
])
def test_attributes_table(mattrs, shown, expect):
    assert fails(master(attributes=mattrs), shown) == expect


def test_field_map_and_finding_field():
    m = master(attributes={"farbe": "Rot"})
    out = problems(run("attributes", m, listing(m, attributes={"color": "Blau"}),
                       {"field_map": {"color": "farbe"}}))
    assert [(f.field, f.details["channel_attribute"]) for f in out] == [("farbe", "color")]


def test_configured_synonyms_extend_builtins():
    m = master(attributes={"color": "Grey"})
    assert fails(m, {"color": "Charcoal"}) == ["color"]
    assert fails(m, {"color": "Charcoal"}, {"colour_synonyms": [["grey", "charcoal"]]}) == []
    # the built-in group still holds after the merge
    assert fails(m, {"color": "Gray"}, {"colour_synonyms": [["grey", "charcoal"]]}) == []


def test_unit_tolerance_option():
    m = master(attributes={"weight": "1.00 kg"})
    assert fails(m, {"product_weight": "1.04 kg"}) == ["weight"]
    assert fails(m, {"product_weight": "1.04 kg"}, {"unit_tolerance": 0.05}) == []


def test_only_and_ignore():
    m = master(attributes={"color": "Grey", "size": "M"})
    assert fails(m, {"color": "Red", "size": "L"}, {"only": ["size"]}) == ["size"]
    assert fails(m, {"color": "Red", "size": "L"}, {"ignore": ["size"]}) == ["color"]


def test_stale_attribute():
    old, now = master(attributes={"color": "Red"}), master(attributes={"color": "Blue"})
    out = problems(run("attributes", now, listing(now, attributes={"color": "Red"}),
                       history={now.sku: [(NOW - days(2), old)]}))
    assert out[0].details["stale"] is True


@pytest.mark.parametrize("a, b, same", [
    ("30 cm", "11.81 in", True), ("1.2 kg", "2.65 lb", True), ("1 l", "1000 ml", True),
    ("5 mm", "0.2 in", True), ("1 kg", "2 lb", False), ("30 cm", "30 in", False),
    ("30", "30 cm", True), ("2,5 kg", "2.5kg", True),
])
def test_same_quantity(a, b, same):
    qa, qb = parse_quantity(a), parse_quantity(b)
    assert qa is not None and qb is not None
    assert same_quantity(qa, qb, 0.01) is same


@pytest.mark.parametrize("text", ["20 °C", "Red", "cm", "1 2 3", "12 furlongs-ish"])
def test_not_quantities(text):
    assert parse_quantity(text) is None


def test_synonym_table_merges_groups():
    t = SynonymTable([("grey", "gray")]).extend([("charcoal", "gray")])
    assert t.canonical("Charcoal") == t.canonical("GREY") == t.canonical("gray")
    assert t.canonical("Red") == "red"


@pytest.mark.parametrize("bad", ["grey", [["grey", 1]], [[]], [1]])
def test_synonym_groups_validation(bad):
    with pytest.raises(ValueError):
        synonym_groups(bad)


_word = st.text(alphabet="abcdefgh XYZ-/,|0123456789.", min_size=1, max_size=20)


@given(st.dictionaries(st.sampled_from(["color", "size", "material", "weight", "length"]),
                       _word, max_size=5))
def test_identical_listing_never_fails(attrs):
    m = master(attributes=attrs)
    assert problems(run("attributes", m, listing(m, attributes=dict(attrs)))) == []


@pytest.mark.parametrize("unit", sorted(COMMON_UNITS))
def test_common_units_agree_with_pint(unit):
    q = registry().Quantity(1, unit).to_base_units()
    factor, dim = COMMON_UNITS[unit]
    assert float(q.magnitude) == pytest.approx(factor, rel=1e-12)
    assert str(q.dimensionality) == dim
