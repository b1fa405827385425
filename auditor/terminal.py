"""Untrusted text for the terminal: what the CLI and the demo print goes through ``safe``;
for HTML pages (the UI, the reports), ``visible`` is every template's ``finalize``."""

from __future__ import annotations

import re
from typing import Any

from rich.markup import escape

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
# In a page: C0/C1 controls but tab and line ends, and the bidirectional overrides and
# isolates with which a channel's text could show reversed or hide what follows it.
_INVISIBLE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def safe(v: Any, width: int | None = None) -> str:
    """Untrusted text for the terminal: control characters dropped, markup escaped."""
    if v is None:
        return ""
    s = _CONTROL.sub("", str(v))
    if width and len(s) > width:
        s = s[: width - 1] + "…"
    return escape(s)


def visible(v: Any) -> Any:
    """A template expression's value without control characters or bidirectional overrides
    (Jinja's ``finalize``: applied before autoescaping; markup already safe is kept)."""
    if isinstance(v, str) and not hasattr(v, "__html__") and _INVISIBLE.search(v):
        return _INVISIBLE.sub("", v)
    return v
