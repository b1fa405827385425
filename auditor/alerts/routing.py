"""Routes: which receivers an alert goes to, and how alerts are grouped. Pure.

Routes are tried in order; the first that matches takes the alert, unless it says
``continue = true``, in which case later routes are tried too. A route matches when
every label it names matches one of its globs. Alerts one route sends to one receiver
are grouped by the route's ``group_by`` labels: one notification per group.
"""

from __future__ import annotations

import fnmatch
import hashlib
from typing import Any, Iterable, Mapping, Sequence

from auditor.alerts.config import Route


def matches(route: Route, labels: Mapping[str, Any]) -> bool:
    for name, patterns in route.match.items():
        value = labels.get(name)
        if value is None or not any(fnmatch.fnmatchcase(str(value), p) for p in patterns):
            return False
    return True


def routes_for(labels: Mapping[str, Any], routes: Sequence[Route]) -> list[tuple[int, Route]]:
    """The routes that take an alert with these labels, in order."""
    out = []
    for i, r in enumerate(routes):
        if matches(r, labels):
            out.append((i, r))
            if not r.cont:
                break
    return out


def group_key(route_index: int, route: Route, labels: Mapping[str, Any]
              ) -> tuple[str, dict[str, str]]:
    """A stable key of the group an alert falls in, and the group's labels."""
    glabels = {k: str(labels.get(k, "")) for k in route.group_by}
    raw = f"{route_index}\x1f" + "\x1f".join(f"{k}={v}" for k, v in sorted(glabels.items()))
    return f"r{route_index}-" + hashlib.blake2b(raw.encode(), digest_size=8).hexdigest(), glabels


def assign(alerts: Iterable[Any], routes: Sequence[Route]
           ) -> dict[tuple[str, str], dict[str, Any]]:
    """(receiver, group key) -> {labels, route, alerts {id: alert}} for alerts with ``.labels``."""
    groups: dict[tuple[str, str], dict[str, Any]] = {}
    for a in alerts:
        for i, route in routes_for(a.labels, routes):
            key, glabels = group_key(i, route, a.labels)
            for receiver in route.receivers:
                g = groups.setdefault((receiver, key), {"labels": glabels, "route": route,
                                                        "alerts": {}})
                g["alerts"][a.id] = a
    return groups
