"""Text normalization shared by title comparison and fuzzy linking."""

from __future__ import annotations

import html
import re
import unicodedata
from collections import Counter
from functools import lru_cache

# \w keeps letters and digits of every script; "_" is punctuation for titles.
_PUNCT = re.compile(r"[^\w\s]+|_+", re.UNICODE)
# Removed before NFKC, which would turn ™ into "TM" and ℠ into "SM".
# For ASCII text, one byte table does lower() and what _PUNCT does (punctuation and
# "_" to spaces): bytes.translate is C table lookups, str.translate with a dict is not.
_ASCII_FOLD = bytes(c + 32 if 65 <= c <= 90 else
                    32 if c < 128 and not (chr(c).isalnum() or chr(c).isspace()) else c
                    for c in range(256))
_MARKS = re.compile(r"[™®©℠]|\((?:tm|r|c)\)", re.IGNORECASE)


@lru_cache(maxsize=1 << 18)
def normalize_title(s: str) -> str:
    """Case, Unicode NFKC, HTML entities, trademark signs, punctuation and spaces folded.

    Cached: every channel shows the same titles, and most are the master's.
    """
    if "&" in s:
        s = html.unescape(html.unescape(s))
    if s.isascii():  # NFKC and casefold change nothing ASCII but the case
        if "(" in s:
            s = _MARKS.sub(" ", s)
        return " ".join(s.encode("ascii").translate(_ASCII_FOLD).decode("ascii").split())
    else:
        s = _MARKS.sub(" ", s)
        s = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", s).casefold())
    return " ".join(_PUNCT.sub(" ", s).split())


def token_diff(expected: str, actual: str) -> tuple[list[str], list[str]]:
    """Tokens of ``expected`` missing from ``actual`` and tokens ``actual`` adds."""
    e, a = expected.split(), actual.split()
    se, sa = set(e), set(a)
    if len(se) == len(e) and len(sa) == len(a):  # no repeated words: sets say it all
        return sorted(se - sa), sorted(sa - se)
    ce, ca = Counter(e), Counter(a)
    return sorted((ce - ca).elements()), sorted((ca - ce).elements())
