"""Crontab expressions as cron means them, turned into APScheduler 3 triggers.

APScheduler 3's ``CronTrigger.from_crontab`` counts weekdays from Monday = 0, while cron
counts from Sunday = 0 (and 7 is Sunday too): ``0 6 * * 1`` must be Monday and
``0 6 * * 0`` and ``0 6 * * 7`` Sunday. Weekdays are therefore translated to names.
Cron also runs a job when *either* the day of month or the weekday matches, when both
are restricted (``0 6 1 * 1``: the 1st and every Monday); APScheduler ANDs them, so such
an expression becomes an ``OrTrigger`` of the two.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, tzinfo
from typing import Any

from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.combining import OrTrigger
from apscheduler.triggers.cron import CronTrigger

# cron numbering: Sunday = 0 (and 7)
_DAY_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_NAME_NUMBER = {n: i for i, n in enumerate(_DAY_NAMES)}
_ITEM = re.compile(r"^(?:(\*)|([a-z]{3}|\d+)(?:-([a-z]{3}|\d+))?)(?:/(\d+))?$")


def _day_number(text: str, expr: str) -> int:
    if text.isdigit():
        n = int(text)
        if n > 7:
            raise ValueError(f"weekday {n} out of range 0-7 in {expr!r} (0 and 7 are Sunday)")
        return n
    if text not in _NAME_NUMBER:
        raise ValueError(f"unknown weekday {text!r} in {expr!r} (expected 0-7 or sun..sat)")
    return _NAME_NUMBER[text]


def translate_weekdays(field: str) -> str:
    """A crontab weekday field in APScheduler's terms: weekday names, never numbers.

    ``1`` → ``mon``, ``0`` and ``7`` → ``sun``, ``1-5`` → ``mon,tue,wed,thu,fri``,
    ``*/2`` → ``sun,tue,thu,sat``; ``*`` stays ``*``.
    """
    field = field.strip().lower()
    if field in ("*", "?"):
        return "*"
    days: list[int] = []
    for item in field.split(","):
        m = _ITEM.match(item.strip())
        if not m:
            raise ValueError(f"bad weekday field {field!r}")
        star, first, last, step = m.groups()
        step_n = int(step) if step else 1
        if step_n < 1:
            raise ValueError(f"bad step in weekday field {field!r}")
        if star:
            lo, hi = 0, 6
        else:
            lo = _day_number(first, field)
            hi = _day_number(last, field) if last else (6 if step else lo)
            if last and hi == 0 and lo > 0:
                hi = 7  # "5-0" is not cron; but "5-7" (Friday to Sunday) is
            if lo > hi:
                raise ValueError(f"weekday range {item!r} runs backwards in {field!r}")
        days += [d % 7 for d in range(lo, hi + 1, step_n)]
    ordered = sorted(set(days), key=lambda d: (d - 1) % 7)  # Monday first, as people read
    return ",".join(_DAY_NAMES[d] for d in ordered)


def cron_trigger(expr: str, timezone: tzinfo | str = "UTC", jitter: int | None = None
                 ) -> BaseTrigger:
    """A trigger firing when the five-field crontab ``expr`` says, as cron reads it."""
    if not isinstance(expr, str):
        raise ValueError(f"expected a cron expression such as \"0 */4 * * *\", got {expr!r}")
    fields = expr.split()
    if len(fields) != 5:
        raise ValueError(f"expected 5 fields (minute hour day month weekday), got "
                         f"{len(fields)} in {expr!r}")
    minute, hour, day, month, weekday = fields
    dow = translate_weekdays(weekday)
    common: dict[str, Any] = dict(minute=minute, hour=hour, month=month, timezone=timezone)
    if day not in ("*", "?") and dow != "*":
        # cron's rule: either field matching is enough
        return OrTrigger([CronTrigger(day=day, day_of_week="*", **common),
                          CronTrigger(day="*", day_of_week=dow, **common)], jitter=jitter)
    return CronTrigger(day=day, day_of_week=dow, jitter=jitter, **common)


def validate(expr: Any) -> str:
    """The expression itself when valid; a ValueError saying what is wrong otherwise."""
    try:
        cron_trigger(expr)
    except ValueError as e:
        raise ValueError(f"invalid cron expression {expr!r}: {e}") from None
    return expr


def fire_times(trigger: BaseTrigger, after: datetime, n: int) -> list[datetime]:
    """The next ``n`` fire times strictly after ``after`` (without jitter)."""
    out: list[datetime] = []
    prev = None
    now = after + timedelta(microseconds=1)
    for _ in range(n):
        t = _plain(trigger).get_next_fire_time(prev, now)
        if t is None:
            break
        out.append(t)
        prev, now = t, t + timedelta(microseconds=1)
    return out


def _plain(trigger: BaseTrigger) -> BaseTrigger:
    """The trigger without jitter (fire times for planning must be exact)."""
    if getattr(trigger, "jitter", None):
        import copy

        t = copy.copy(trigger)
        t.jitter = None
        return t
    return trigger


def interval(trigger: BaseTrigger, now: datetime, samples: int = 12) -> timedelta:
    """The longest gap between consecutive fire times after ``now``: how old the last
    run of a source may be before it counts as missed (``0 6 * * 1-5`` gives 3 days,
    over the weekend)."""
    times = fire_times(trigger, now, samples)
    if len(times) < 2:
        return timedelta(days=366)
    return max(b - a for a, b in zip(times, times[1:], strict=False))
