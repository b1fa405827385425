"""Stale values: a channel showing what the master held earlier.

A value equal to an earlier master version tells a failed sync from a typo;
the finding then says until when that value was valid.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Callable

from auditor.check import CheckContext


def stale_until(ctx: CheckContext, sku: str, getter: Callable[[Any], Any],
                matches: Callable[[Any], bool]) -> datetime | None:
    """When the newest earlier master value that ``matches`` stopped being valid, else None."""
    if sku not in ctx.history:
        return None
    for until, value in ctx.previous_values(sku, getter):
        if matches(value):
            return until
    return None


def stale_note(what: str, until: datetime) -> tuple[str, dict[str, Any]]:
    """Message text and finding details for a stale value."""
    day = until.date().isoformat()
    return f"shows the {what} valid until {day}", {"stale": True, "valid_until": until.isoformat()}
