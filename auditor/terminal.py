"""Untrusted text for the terminal: what the CLI and the demo print goes through ``safe``."""

from __future__ import annotations

import re
from typing import Any

from rich.markup import escape

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def safe(v: Any, width: int | None = None) -> str:
    """Untrusted text for the terminal: control characters dropped, markup escaped."""
    if v is None:
        return ""
    s = _CONTROL.sub("", str(v))
    if width and len(s) > width:
        s = s[: width - 1] + "…"
    return escape(s)
