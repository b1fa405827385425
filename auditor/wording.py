"""Counted words and the sentences shown in more than one place (CLI, reports, web UI), so
"1 finding" and "2 findings" read right and every place says a thing the same way."""

from __future__ import annotations

from typing import Iterable


def counted(n: int, noun: str, plural: str | None = None) -> str:
    """``1 finding``, ``2 findings``, ``1,200 listings`` (``plural`` for irregular nouns)."""
    return f"{n:,} {noun if n == 1 else plural or noun + 's'}"


def not_carried(fields: Iterable[str]) -> str:
    """The run summary's note on fields a channel's source never carries (not evaluated)."""
    names = sorted(set(fields))
    them = "it" if len(names) == 1 else "them"
    return f"not evaluated on this channel, its source never carries {them}: {', '.join(names)}"


def check_field(check: str, field: str | None, sep: str = " / ") -> str:
    """``price / sale_price``, but ``availability`` alone where the field is the check's
    own (``availability / availability`` said nothing twice)."""
    return check if not field or field == check else f"{check}{sep}{field}"
