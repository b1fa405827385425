"""Text normalization shared by title comparison and fuzzy linking."""

from __future__ import annotations

import html
import re
import unicodedata
from collections import Counter

# \w keeps letters and digits of every script; "_" is punctuation for titles.
_PUNCT = re.compile(r"[^\w\s]+|_+", re.UNICODE)
_SPACE = re.compile(r"\s+")
# Removed before NFKC, which would turn ™ into "TM" and ℠ into "SM".
_MARKS = re.compile(r"[™®©℠]|\((?:tm|r|c)\)", re.IGNORECASE)


def normalize_title(s: str) -> str:
    """Case, Unicode NFKC, HTML entities, trademark signs, punctuation and spaces folded."""
    s = html.unescape(html.unescape(s))
    s = _MARKS.sub(" ", s)
    s = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", s).casefold())
    s = _PUNCT.sub(" ", s)
    return _SPACE.sub(" ", s).strip()


def token_diff(expected: str, actual: str) -> tuple[list[str], list[str]]:
    """Tokens of ``expected`` missing from ``actual`` and tokens ``actual`` adds."""
    e, a = Counter(expected.split()), Counter(actual.split())
    return sorted((e - a).elements()), sorted((a - e).elements())
