"""The repeat audit's hot-path constructors build exactly what the general code builds."""

from __future__ import annotations

import dataclasses

from auditor.linking import _exact_link
from auditor.model import Link, LinkMethod


def test_an_exact_link_is_the_dataclass_built_the_usual_way():
    for method in (LinkMethod.SKU, LinkMethod.GTIN):
        fast = _exact_link("google", "k1", "SKU-1", method)
        slow = Link("google", "k1", "SKU-1", method, 1.0)
        assert fast == slow
        assert repr(fast) == repr(slow)
        # every field is set (a field added to Link must be added to _exact_link too)
        assert {f.name: getattr(fast, f.name) for f in dataclasses.fields(Link)} == \
            {f.name: getattr(slow, f.name) for f in dataclasses.fields(Link)}
        assert fast.evidence is not _exact_link("google", "k2", "SKU-2", method).evidence
