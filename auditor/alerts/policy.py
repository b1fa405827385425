"""What a finding's alert state is now. Pure: no I/O, ``now`` is passed in.

A finding that is not resolved is, for alerting, exactly one of:

* ``suppressed`` -- acknowledged (in its current episode), snoozed until a later
  time, or matched by a silence in force: it does not alert;
* ``pending``    -- confirming (seen in fewer consecutive runs, or for less time, than
  its check and channel require) or inside the propagation grace after its master
  value changed: it will alert if it persists;
* ``firing``     -- it alerts.

``display_state`` gives the lifecycle state a person sees: open, acknowledged,
snoozed, resolved or reopened (or not_evaluated: kept only to say why a comparison
could not be made).
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from dataclasses import field as _field
from datetime import datetime, timedelta
from typing import Any, Iterable, Mapping, Sequence

PENDING, FIRING, SUPPRESSED = "pending", "firing", "suppressed"
SILENCED_BY = "silenced by silence "  # the reason of a finding a silence mutes, and its id

# Which master fields each built-in check compares (a master change of one of them starts
# the propagation grace for that check's findings on the SKU). Checks not listed here
# compare the master fields they declare (CheckSpec.fields).
MASTER_FIELDS_BY_CHECK: dict[str, tuple[str, ...]] = {
    "price": ("price", "sale_price", "sale_start", "sale_end", "prices", "sale_prices"),
    "title": ("title", "overrides"),
    "availability": ("availability", "quantity", "status"),
    "attributes": ("attributes",),
    "image": ("images",),
    "identifiers": ("gtin",),
    "presence": ("status",),
}


def checks_by_master_field(check_fields: Mapping[str, Sequence[str]]) -> dict[str, list[str]]:
    """Master field -> checks comparing it, from every registered check's declared fields."""
    out: dict[str, list[str]] = {}
    for check, declared in check_fields.items():
        for f in MASTER_FIELDS_BY_CHECK.get(check, tuple(declared)):
            out.setdefault(f, []).append(check)
    return out


@dataclass(frozen=True)
class Rules:
    """Confirmation (per check and channel) and propagation grace (per channel)."""

    confirm_runs: int = 1
    confirm_for: float = 0.0       # seconds
    grace: float = 0.0             # seconds


@dataclass(frozen=True)
class Silence:
    """Mutes every alert whose labels match all matchers (globs) between two times."""

    id: int
    matchers: Mapping[str, str]
    starts_at: datetime
    ends_at: datetime
    created_by: str | None = None
    comment: str | None = None

    def active(self, now: datetime) -> bool:
        return self.starts_at <= now < self.ends_at

    def matches(self, labels: Mapping[str, Any]) -> bool:
        for name, pattern in self.matchers.items():
            value = labels.get(name)
            if value is None or not fnmatch.fnmatchcase(str(value), str(pattern)):
                return False
        return True

    @classmethod
    def from_row(cls, r: Mapping[str, Any]) -> "Silence":
        return cls(r["id"], dict(r["matchers"]), datetime.fromisoformat(r["starts_at"]),
                   datetime.fromisoformat(r["ends_at"]), r.get("created_by"), r.get("comment"))


@dataclass(frozen=True)
class FindingView:
    """What the policy needs to know of one unresolved finding."""

    fingerprint: str
    channel: str
    check: str
    field: str  # the finding's field (it shadows dataclasses.field: hence _field)
    severity: str
    sku: str | None
    since: datetime                   # start of the current episode (opened or reopened)
    runs: int                         # consecutive runs that showed it in this episode
    ack_at: datetime | None = None
    ack_by: str | None = None
    snoozed_until: datetime | None = None
    master_changed_at: datetime | None = None   # latest change of a master field it compares
    labels: Mapping[str, Any] = _field(default_factory=dict)

    @property
    def alert_labels(self) -> dict[str, Any]:
        return {"kind": "finding", "channel": self.channel, "check": self.check,
                "field": self.field, "severity": self.severity, "sku": self.sku or "",
                **self.labels}


@dataclass(frozen=True)
class Status:
    state: str                        # pending, firing or suppressed
    reason: str
    until: datetime | None = None     # when a pending/suppressed state ends by itself


def _dt(v: Any) -> datetime | None:
    return None if not v else datetime.fromisoformat(v) if isinstance(v, str) else v


def alert_status(v: FindingView, rules: Rules, silences: Iterable[Silence],
                 now: datetime) -> Status:
    """The alert state of one unresolved finding at ``now``."""
    if v.ack_at is not None and v.ack_at >= v.since:
        return Status(SUPPRESSED, f"acknowledged by {v.ack_by or 'someone'}")
    if v.snoozed_until is not None and v.snoozed_until > now:
        return Status(SUPPRESSED, f"snoozed until {v.snoozed_until.isoformat()}",
                      v.snoozed_until)
    labels = v.alert_labels
    for s in silences:
        if s.active(now) and s.matches(labels):
            return Status(SUPPRESSED, f"{SILENCED_BY}{s.id}", s.ends_at)
    if rules.grace > 0 and v.master_changed_at is not None:
        end = v.master_changed_at + timedelta(seconds=rules.grace)
        if now < end:
            return Status(PENDING, f"in propagation grace until {end.isoformat()} (master "
                                   f"changed {v.master_changed_at.isoformat()})", end)
    by_runs = rules.confirm_runs > 1
    by_time = rules.confirm_for > 0
    if by_runs or by_time:
        runs_ok = by_runs and v.runs >= rules.confirm_runs
        end = v.since + timedelta(seconds=rules.confirm_for)
        time_ok = by_time and now >= end
        if not (runs_ok or time_ok):
            parts = []
            if by_runs:
                parts.append(f"seen in {v.runs} of {rules.confirm_runs} runs")
            if by_time:
                parts.append(f"open until {end.isoformat()} to confirm")
            return Status(PENDING, "confirming: " + ", or ".join(parts),
                          end if by_time else None)
    return Status(FIRING, "confirmed")


def display_state(row: Mapping[str, Any], now: datetime) -> str:
    """The lifecycle state shown to people: open, acknowledged, snoozed, resolved, reopened.

    ``row`` is a stored finding (``state``, ``ack_at``, ``snoozed_until``) with its
    current episode (``episode_event``, ``since``) when known.
    """
    if row.get("state") == "resolved":
        return "resolved"
    if row.get("outcome") == "not_evaluated":
        return "not_evaluated"  # information: could not be compared; never alerts
    since = _dt(row.get("since"))
    ack = _dt(row.get("ack_at"))
    if ack is not None and (since is None or ack >= since):
        return "acknowledged"
    snooze = _dt(row.get("snoozed_until"))
    if snooze is not None and snooze > now:
        return "snoozed"
    return "reopened" if row.get("episode_event") == "reopened" else "open"


def view_from_row(r: Mapping[str, Any], master_changed_at: datetime | None = None
                  ) -> FindingView:
    """A FindingView from a row of ``Store.alert_candidates``."""
    return FindingView(
        fingerprint=r["fingerprint"], channel=r["channel"], check=r["check"], field=r["field"],
        severity=r["severity"], sku=r.get("sku"), since=datetime.fromisoformat(r["since"]),
        runs=int(r.get("runs") or 1), ack_at=_dt(r.get("ack_at")), ack_by=r.get("ack_by"),
        snoozed_until=_dt(r.get("snoozed_until")), master_changed_at=master_changed_at)
