"""Title check: the channel's title says what the master title says."""

from __future__ import annotations

import html
import re
import unicodedata

from rapidfuzz import fuzz

from auditor.check import CheckContext, check
from auditor.model import Listing, MasterRecord, Outcome, Severity
from auditor.options import Opt

_PUNCT = re.compile(r"[^\w\s]+", re.UNICODE)
_SPACE = re.compile(r"\s+")
_MARKS = re.compile(r"[™®©℠]")


def normalize_title(s: str) -> str:
    """Case, Unicode NFKC, HTML entities, trademark signs, punctuation and spaces folded."""
    s = html.unescape(html.unescape(s))
    s = unicodedata.normalize("NFKC", s)
    s = _MARKS.sub(" ", s).casefold()
    s = _PUNCT.sub(" ", s)
    return _SPACE.sub(" ", s).strip()


@check("title", fields=("title",), options=(
    Opt("warn_below", float, 95.0, "Similarity (0-100) under which a title is a warning."),
    Opt("fail_below", float, 85.0, "Similarity (0-100) under which a title is a failure."),
))
def title_check(master: MasterRecord | None, listing: Listing | None, ctx: CheckContext):
    """Compare the listing title with the master title (or the title approved for the channel)."""
    if master is None or listing is None:
        return []
    expected = master.override(ctx.channel, "title") or master.title
    if not expected:
        return []
    if not listing.title:
        return [ctx.finding(master, listing, "title", Outcome.FAILED, Severity.MAJOR,
                            expected=expected, actual=None, message="listing has no title")]
    a, b = normalize_title(expected), normalize_title(listing.title)
    if a == b:
        return [ctx.passed(master, listing, "title")]
    score = fuzz.ratio(a, b)
    if score >= ctx.options["warn_below"]:
        return [ctx.passed(master, listing, "title")]
    outcome = Outcome.WARN if score >= ctx.options["fail_below"] else Outcome.FAILED
    sev = Severity.MINOR if outcome == Outcome.WARN else Severity.MAJOR
    return [ctx.finding(master, listing, "title", outcome, sev, expected=expected,
                        actual=listing.title, score=round(score, 1),
                        message=f"title differs from master (similarity {score:.0f}%)")]
