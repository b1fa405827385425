"""The finding lifecycle: when a finding opens, changes, resolves or reopens.

Pure rules, no I/O: ``transition(previous, observation, evidence)`` says what one
finding does after one run of its channel, and a store applies it (writes the
state and the event). Tested without a database (``tests/test_auditor_lifecycle.py``).

- A fingerprint seen for the first time **opens**.
- An open finding seen again stays open; when its outcome, expected or actual value
  differ from last time, that is a **changed** event.
- A resolved finding seen again **reopens**.
- An open finding not seen again **resolves** where its check ran on the channel.
- A source that could not be read (``failed``) opens, reopens and resolves nothing
  (an open finding it saw again is still updated).
- A source read in part (``partial``; also a complete read whose presence is held,
  ``auditor.holds``) is evidence about what it read, and only that: an outcome on a
  listing it read opens, reopens and changes as on a complete read, and an open finding
  not seen resolves only when its listing was read in this run (its ``listing_key`` in
  ``Evidence.seen_keys``; unknown keys resolve nothing). Nothing is concluded about
  the listings it did not read, nor about masters: a finding about no listing (a
  missing listing) neither opens, reopens nor resolves on a partial read.
- A ``not_evaluated`` outcome neither opens nor resolves: an existing finding stays
  as it is; on a complete read, a new fingerprint is kept only as a note of why it
  could not be compared (state open, outcome ``not_evaluated``; it never alerts), which
  **opens** for real once a comparison finds a difference.

``transition`` is called once per finding on a run's hot path: it allocates nothing
(the transitions are constants) and takes the store's rows as they come (any object
with the attributes of ``Previous``; a ``Finding`` is an ``Observation``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import AbstractSet, NamedTuple, Protocol, Sequence

from auditor.model import SourceStatus

OPEN = "open"
RESOLVED = "resolved"
NOT_EVALUATED = "not_evaluated"  # the outcome of a comparison that could not be made
STATES = (OPEN, RESOLVED)

# Events, as stored in a finding's history.
OPENED, CHANGED, RESOLVED_EVENT, REOPENED = "opened", "changed", "resolved", "reopened"
EVENTS = (OPENED, CHANGED, RESOLVED_EVENT, REOPENED)


class Previous(NamedTuple):
    """A finding as stored before this run."""

    state: str
    outcome: str
    expected: str | None
    actual: str | None
    check: str
    listing_key: str | None


class Observation(Protocol):
    """A non-passed outcome seen in this run (``auditor.model.Finding`` is one)."""

    @property
    def outcome(self) -> str: ...

    @property
    def expected(self) -> str | None: ...

    @property
    def actual(self) -> str | None: ...

    @property
    def listing_key(self) -> str | None: ...  # None: about no listing (a master)


@dataclass(frozen=True, slots=True)
class Evidence:
    """What one run of a channel can vouch for."""

    status: SourceStatus                     # how the source was read
    seen_keys: AbstractSet[str] | None       # listing keys read (None: unknown, so a
    #                                          partial read resolves nothing)
    checks_ran: AbstractSet[str] | Sequence[str]  # checks enabled on the channel

    def shows_gone(self, check: str, listing_key: str | None) -> bool:
        """Whether a finding of ``check`` on ``listing_key``, not seen, is really gone,
        its check having run on the channel: a complete read says so for every finding;
        a partial read only for one on a listing it read (``listing_key`` in
        ``seen_keys``), never for a finding about no listing; a failed read never."""
        if check not in self.checks_ran:
            return False
        status = self.status
        if status == SourceStatus.COMPLETE:
            return True
        return status == SourceStatus.PARTIAL and listing_key is not None and \
            self.seen_keys is not None and listing_key in self.seen_keys

    def shows(self, observation: Observation) -> bool:
        """Whether an observation is evidence enough to open or reopen its finding: any
        on a complete read; on a partial read one on a listing it read (every observed
        listing was read; a finding about no listing is a conclusion about the part not
        read); on a failed read none."""
        status = self.status
        return status == SourceStatus.COMPLETE or (
            status == SourceStatus.PARTIAL and observation.listing_key is not None)


@dataclass(frozen=True, slots=True)
class Transition:
    """What happens to a finding: its new state, and the event recorded (None: no
    event, e.g. an open finding seen again unchanged; it is still updated as seen)."""

    state: str
    event: str | None
    seen: bool  # observed in this run: its last-seen time and values are updated


OPEN_NEW = Transition(OPEN, OPENED, True)
STILL_OPEN = Transition(OPEN, None, True)
OPEN_CHANGED = Transition(OPEN, CHANGED, True)
REOPEN = Transition(OPEN, REOPENED, True)
RESOLVE = Transition(RESOLVED, RESOLVED_EVENT, False)


def transition(previous: Previous | None, observation: Observation | None,
               evidence: Evidence) -> Transition | None:
    """What one finding does in this run; None when nothing happens to it.

    ``previous``: the finding as stored (None: never seen). ``observation``: this
    run's non-passed outcome for its fingerprint (None: not seen)."""
    if observation is not None:
        if observation.outcome == NOT_EVALUATED:  # no evidence either way
            return OPEN_NEW if previous is None and \
                evidence.status == SourceStatus.COMPLETE else None
        if previous is None:
            return OPEN_NEW if evidence.shows(observation) else None
        if previous.state == RESOLVED:
            return REOPEN if evidence.shows(observation) else None
        if previous.outcome == NOT_EVALUATED:  # a note, compared at last: it differs
            return OPEN_NEW if evidence.shows(observation) else None
        if (previous.outcome, previous.expected, previous.actual) != (
                observation.outcome, observation.expected, observation.actual):
            return OPEN_CHANGED
        return STILL_OPEN
    if previous is not None and previous.state == OPEN and \
            evidence.shows_gone(previous.check, previous.listing_key):
        return RESOLVE
    return None
