"""Links carried over from the last run where nothing they depend on has changed.

A listing that carries a SKU or GTIN matching no master (an orphan) is not linked, but
the masters its title fits are named as suggestions, and finding those needs the
title-matching index over the whole master (``MatchIndex``): on a repeat audit of a
large master that index was built for a few hundred orphans per channel. Such a link
is decided for the listing alone (``LinkSession.link``), from:

- what the listing shows (its stored body, ``codec.body``: every field the linker reads);
- the master in force (a master snapshot is fixed once written: a changed import makes
  a new one);
- the ``[linking]`` options, a person's confirmations and rejections on the channel;
- the linking code itself.

``link_inputs`` digests everything but the listing into one value, recorded per channel
in the run summary (``link_inputs``). When the channel's last run recorded the same
value, each link note of that run (``Store.earlier_link_notes``: the listing unchanged
since) is the link this run would decide for the same body, and ``EarlierLinks`` hands
it back instead (``LinkSession.link``). Anything else is linked as before. A master
read anew in this run is linked against as read and carries nothing over in it; once it
is stored as the new snapshot (before the channel workers start, or before the first
channel), the channels record that snapshot in their ``link_inputs``, so the next run
on the same snapshot carries their links over. Listings matched by what they show alone (no key) are never
carried over: their links are decided together for the whole channel.
"""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path
from typing import Any, Iterable, Mapping

from auditor import codec
from auditor.model import Link, LinkMethod, Listing

__all__ = ["EarlierLinks", "code_version", "link_inputs", "earlier_links"]


@functools.cache
def code_version() -> str:
    """A digest of the auditor package's own modules (the linker, its matching and text
    handling among them): links carried over from a run of other code are not trusted."""
    h = hashlib.blake2b(digest_size=16)
    for path in sorted(Path(__file__).resolve().parent.glob("*.py")):
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def link_inputs(options: Mapping[str, Any], master_version: Any,
                decisions: Iterable[Any]) -> str | None:
    """What a channel's links depend on beside the listings themselves, as one digest:
    the code, the master snapshot, the ``[linking]`` options and every decision a person
    recorded on the channel (``Store.decided_links``, with its time: a note a decision
    changed never matches again). None when the master in force is not a stored snapshot
    known to be unchanged (``master_version`` None): nothing is carried over then."""
    if master_version is None:
        return None
    decided = sorted((d.listing_key, d.sku, d.decision, str(d.decided_at)) for d in decisions)
    text = json.dumps([code_version(), master_version, dict(options), decided],
                      sort_keys=True, default=str)
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def _body_hash(li: Listing) -> str:
    """The stored hash of a listing's body (the stores' ``digest`` of ``codec.body``)."""
    return hashlib.blake2b(codec.body(li), digest_size=10).hexdigest()


class EarlierLinks(dict):
    """Listing key -> (stored body hash, link) of the last run's link notes that may be
    carried over; ``unchanged(listing)`` gives the link when the body is the same."""

    def unchanged(self, li: Listing) -> Link | None:
        prev = self.get(li.key)
        if prev is None or _body_hash(li) != prev[0]:
            return None
        return prev[1]


def earlier_links(store: Any, channel: str, inputs: str | None) -> EarlierLinks:
    """The channel's last link notes whose run recorded the same ``inputs`` for it, and
    whose listing has not changed since (empty when ``inputs`` is None)."""
    out = EarlierLinks()
    if inputs is None:
        return out
    same: dict[int, bool] = {}
    for key, run_id, h, method, score, reason, candidates, evidence in \
            store.earlier_link_notes(channel):
        ok = same.get(run_id)
        if ok is None:
            ok = same[run_id] = any(
                c.get("channel") == channel and c.get("link_inputs") == inputs
                for c in store.run_summary(run_id).get("channels") or ())
        if not ok:
            continue
        if isinstance(candidates, str):
            candidates = json.loads(candidates)
        if isinstance(evidence, str):
            evidence = json.loads(evidence)
        out[key] = (h, Link(channel, key, None, LinkMethod(method), score,
                            tuple(candidates or ()), reason, evidence or {}))
    return out
