"""Held presence: when a run must not conclude that listings are missing.

A source read completely is evidence that what it did not show is absent, except
when the read itself gives reason to doubt that:

* a row whose key could not be read (the missing listing may be on that row);
* a sharp drop: more than ``max_drop`` of the listings of the last complete read
  vanished together (a feed cut short upstream, a half-exported file).

Then presence is *held* for the channel in that run: no listing is concluded
missing or removed and no missing-listing finding opens or resolves, while the
checks run on the listings that were read and their findings open and resolve as
after a complete read (findings are applied as for a partial read, auditor.lifecycle). What the run would have concluded is kept
(``presence_holds``): a second run that sees the same drop confirms it (and
concludes normally), and ``auditor runs accept RUN CHANNEL`` applies it at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from auditor.configtypes import ChannelConfig

# Fewer vanished listings than this are never a "drop" (one listing is not a batch).
MIN_DROP_ITEMS = 2


@dataclass
class DropVerdict:
    """What the drop rule says about one complete read."""

    hold: str | None = None           # why presence is held, or None
    confirmed_run: int | None = None  # an earlier held drop this run confirms
    note: str | None = None           # a line for the run summary


def judge_drop(store: Any, ch: ChannelConfig, run_id: int, unseen: Sequence[str],
               listings: int) -> DropVerdict:
    """Whether the listings that vanished since the last complete read are a sharp drop
    to hold, or the confirmation of a drop an earlier run held.

    A drop is sharp when more than ``max_drop`` of the last complete read's listings
    (and at least two) vanished, or when the read yielded under ``min_ratio`` of them."""
    prev = store.last_good_listing_count(ch.name, run_id)
    share = ch.opt("max_drop", 0.1)
    ratio = ch.opt("min_ratio", 0.5)
    if not prev:
        return DropVerdict()

    def sharp(n: int) -> bool:
        return n >= MIN_DROP_ITEMS and n > share * prev and share < 1

    if not sharp(len(unseen)) and not listings < ratio * prev:
        return DropVerdict()
    last = store.previous_run_of(ch.name, run_id)
    earlier = [h for h in store.presence_holds(last, ch.name, "held") if h.kind == "drop"] \
        if last is not None else []
    if earlier:  # the previous run held a drop: is this the same one, seen again?
        new = set(unseen) - set(earlier[0].vanished)
        if not sharp(len(new)):
            return DropVerdict(confirmed_run=last, note=(
                f"{len(unseen)} listings vanished since the last complete read, as in run "
                f"{last}: the drop is confirmed and presence concluded"))
    why = (f"{len(unseen)} of {prev} listings vanished since the last complete read (more "
           f"than max_drop = {share:.0%})" if sharp(len(unseen)) else
           f"the source yielded {listings} listings, under min_ratio = {ratio:.0%} of the last "
           f"complete read ({prev})")
    return DropVerdict(hold=(
        f"{why}: no listing concluded missing and none resolved until the next run confirms "
        f"the drop or `auditor runs accept {run_id} {ch.name}`"))


def settle_earlier(store: Any, channel: str, run_id: int, confirmed_run: int | None,
                   now: Any) -> None:
    """Close the holds of the channel's previous run: ``confirmed`` by this run, or
    ``superseded`` (this run concluded, or held, on its own read)."""
    last = store.previous_run_of(channel, run_id)
    if last is None:
        return
    for _ in store.presence_holds(last, channel, "held"):
        state = "confirmed" if last == confirmed_run else "superseded"
        store.decide_presence_hold(last, channel, state, run_id, now)
