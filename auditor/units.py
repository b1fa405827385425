"""Unit-aware quantities for attribute values: "30 cm" equals "11.81 in".

pint is slow per call, so it is asked once per distinct unit spelling (how
many base units one of it is); values are parsed with a regex and compared as
floats in base units. One registry for the process, created on first use.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import NamedTuple

_QTY = re.compile(r"^\s*([-+]?\d+(?:[.,]\d+)?)\s*([^\d\s,;|/][^\d,;|]*?)?\s*\.?\s*$")
# Spellings pint does not know, or knows as something else.
_ALIASES = {'"': "inch", "″": "inch", "''": "inch", "'": "ft", "′": "ft", "in": "inch",
            "inches": "inch", "ins": "inch", "lbs": "lb", "pound": "lb", "pounds": "lb",
            "kgs": "kg", "kilogram": "kg", "kilograms": "kg", "gram": "g", "grams": "g",
            "cms": "cm", "centimeter": "cm", "centimeters": "cm", "centimetre": "cm",
            "centimetres": "cm", "millimeter": "mm", "millimetre": "mm", "mtr": "m",
            "meter": "m", "metre": "m", "ltr": "l", "liter": "l", "litre": "l",
            "fl oz": "fluid_ounce", "fl. oz": "fluid_ounce", "floz": "fluid_ounce"}
_REGISTRY = None
# The units product data nearly always uses, so a run need not load pint at all
# (building its registry takes a quarter of a second). Same values and
# dimensionality strings as pint; tests/test_checks_attributes.py checks that.
COMMON_UNITS: dict[str, tuple[float, str]] = {
    "kg": (1.0, "[mass]"), "g": (0.001, "[mass]"), "mg": (1e-6, "[mass]"),
    "lb": (0.45359237, "[mass]"), "oz": (0.028349523125, "[mass]"),
    "m": (1.0, "[length]"), "cm": (0.01, "[length]"), "mm": (0.001, "[length]"),
    "inch": (0.0254, "[length]"), "ft": (0.3048, "[length]"), "yd": (0.9144, "[length]"),
    "l": (0.001, "[length] ** 3"), "ml": (1e-6, "[length] ** 3"), "cl": (1e-5, "[length] ** 3"),
}


class Quantity(NamedTuple):
    """A parsed value: magnitude in base units, its dimension, and its written precision."""

    base: float  # value in SI base units (or the plain number without a unit)
    dim: str  # pint dimensionality ("" for a plain number)
    half_step: float  # half of the last written digit, in base units (rounding slack)
    unit: str  # the unit as written, lowercased ("" when none)


def registry():
    """The process-wide pint UnitRegistry."""
    global _REGISTRY
    if _REGISTRY is None:
        import pint

        _REGISTRY = pint.UnitRegistry()
    return _REGISTRY


@lru_cache(maxsize=1024)
def unit_info(unit: str) -> tuple[float, str] | None:
    """(base units per one ``unit``, dimensionality) or None for an unknown or offset unit."""
    name = _ALIASES.get(unit, unit)
    if name in COMMON_UNITS:
        return COMMON_UNITS[name]
    try:
        ureg = registry()
        u = ureg.Unit(name)
        if not u.is_compatible_with(ureg.dimensionless) and not ureg.Quantity(1, u)._ok_for_muldiv():
            return None  # °C and friends: an offset, not a scale
        q = ureg.Quantity(1, u).to_base_units()
    except Exception:  # pint raises many kinds for text that is no unit
        return None
    return float(q.magnitude), str(q.dimensionality)


@lru_cache(maxsize=65536)
def parse_quantity(text: str) -> Quantity | None:
    """"30 cm", "2,5kg", "11.81 in", "12" as a Quantity; None when not a number with a unit."""
    m = _QTY.match(text)
    if not m:
        return None
    num = m.group(1).replace(",", ".")
    value = float(num)
    decimals = len(num.partition(".")[2])
    half = 0.5 * 10 ** -decimals
    unit = (m.group(2) or "").strip().lower()
    if not unit:
        return Quantity(value, "", half, "")
    info = unit_info(unit)
    if info is None:
        return None
    factor, dim = info
    return Quantity(value * factor, dim, half * factor, unit)


def same_quantity(a: Quantity, b: Quantity, rel_tol: float) -> bool:
    """Whether two quantities agree within ``rel_tol``, or within the rounding of a converted value.

    ``a`` is the reference (the master). A value written in another unit may be
    off by half its last digit (11.81 in for 30 cm), capped at 3% so that a
    whole-number conversion ("2 lb" for 1 kg) is not waved through.
    A plain number takes the other side's unit.
    """
    if a.dim and b.dim and a.dim != b.dim:
        return False
    if not a.dim or not b.dim:
        if a.unit or b.unit:  # one side has no unit: the number is read in the other's unit
            fa = unit_info(a.unit)[0] if a.unit else unit_info(b.unit)[0]  # type: ignore[index]
            av = a.base if a.unit else a.base * fa
            bv = b.base if b.unit else b.base * fa
        else:
            av, bv = a.base, b.base
        return abs(av - bv) <= rel_tol * max(abs(av), abs(bv))
    diff = abs(a.base - b.base)
    ref = abs(a.base)
    if diff <= rel_tol * ref:
        return True
    return a.unit != b.unit and diff <= min(b.half_step, 0.03 * ref)
