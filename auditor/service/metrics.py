"""Prometheus metrics, read from the store at scrape time.

Every metric is defined here, in ``METRICS`` (name, type, help), and produced by
``StoreCollector.collect()`` from what the store holds when Prometheus scrapes: nothing
is counted inside short-lived audit processes (their counters would die with them).
Names follow Prometheus' conventions: one ``auditor_`` prefix, base units (seconds,
ratios 0-1), ``_total`` only on counters, timestamps as ``_timestamp_seconds``. Labels
are bounded: channel, check, severity, source, reason; never a SKU, URL or finding.

``auditor serve`` serves them at ``/metrics``; ``auditor run --metrics-file PATH``
writes the same in the node-exporter textfile format (atomically).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import platform
import re
import threading
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, ContextManager, Iterable, Iterator

from prometheus_client import CollectorRegistry, write_to_textfile
from prometheus_client.metrics_core import (CounterMetricFamily, GaugeMetricFamily,
                                            HistogramMetricFamily, Metric)
from prometheus_client.registry import Collector

from auditor import __version__

log = logging.getLogger(__name__)

# name (without the auditor_ prefix), type, help
METRICS: tuple[tuple[str, str, str], ...] = (
    ("build_info", "gauge", "Always 1; the auditor's version and Python in labels."),
    ("store_up", "gauge", "1 when the store could be read for this scrape, else 0."),
    ("consistency_ratio", "gauge",
     "Share (0-1) of evaluated comparisons that passed, per channel and check, in the "
     "channel's latest run."),
    ("findings_open", "gauge",
     "Findings not resolved (open, acknowledged or snoozed), by channel, check and severity."),
    ("listings_seen", "gauge", "Listings read from the channel in its latest run."),
    ("source_up", "gauge", "1 when the source's latest read was complete, else 0."),
    ("fetch_errors_total", "counter",
     "Bad rows, pages and failed reads recorded for the source, by reason class."),
    ("run_duration_seconds", "histogram", "Duration of each read of a source (read, linked, checked)."),
    ("source_last_success_timestamp_seconds", "gauge",
     "When the source's latest complete read finished (Unix time)."),
    ("source_last_run_timestamp_seconds", "gauge",
     "When the source's latest read finished, whatever its status (Unix time)."),
    ("propagation_latency_seconds", "histogram",
     "Time from a master change (last 30 days) to the channel's first complete read "
     "showing it."),
    ("propagation_pending", "gauge",
     "Master changes of the last 30 days the channel does not show yet."),
    ("notifications_pending", "gauge", "Notifications in the outbox waiting to be sent."),
    ("notifications_failed", "gauge", "Notifications in the outbox that could not be sent."),
)

DURATION_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400)
LATENCY_BUCKETS = (300, 900, 1800, 3600, 7200, 14400, 28800, 43200, 86400, 172800, 345600,
                   604800)

# A reason recorded with a bad row or a failed read, as one of a few classes (the text
# itself names files, lines and URLs: never a label).
REASONS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (name, re.compile(rx, re.I)) for name, rx in (
        ("timeout", r"time(d)? ?out|deadline"),
        ("http_5xx", r"\b(HTTP|status)\D{0,3}5\d\d\b|\b5\d\d (server|internal|bad gateway|service)"),
        ("http_4xx", r"\b(HTTP|status)\D{0,3}4\d\d\b|\b40[34] (not found|forbidden)"),
        ("robots", r"robots"),
        ("blocked", r"captcha|robot check|blocked|denied|refused by the outbound guard"),
        ("tls", r"ssl|tls|certificate"),
        ("connection", r"connect|dns|resolve|unreachable|reset by peer|refused"),
        ("too_large", r"too large|exceeds|over the limit|max_body"),
        ("empty", r"no listings|yielded \d+ listings|empty"),
        ("duplicate", r"duplicate"),
        ("parse", r"pars|invalid|malformed|bad |expected|decode|syntax|missing|unknown|column"),
    ))


@functools.lru_cache(maxsize=8192)  # a run records the same few reasons many times
def reason_class(text: str | None) -> str:
    """The bounded class of an error text (``other`` when none fits)."""
    for name, rx in REASONS:
        if text and rx.search(text):
            return name
    return "other"


def _ts(iso: str | None) -> float | None:
    return datetime.fromisoformat(iso).timestamp() if iso else None


def _buckets(values: list[float], bounds: Iterable[float]) -> list[tuple[str, float]]:
    out = []
    for b in bounds:
        out.append((repr(float(b)), float(sum(1 for v in values if v <= b))))
    out.append(("+Inf", float(len(values))))
    return out


StoreOpener = Callable[[], ContextManager[Any]]


class StoreCollector(Collector):
    """Reads the store at each scrape. ``open_store()`` yields a store for one scrape
    (a connection of the scraping thread's own). Error counters grow from the rows
    already counted, so a scrape reads only what is new."""

    def __init__(self, open_store: StoreOpener, prefix: str = "auditor_",
                 extra: Callable[[], Iterable[Metric]] | None = None,
                 clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
                 shown: Callable[[BaseException], str] = str):
        self.open_store = open_store
        self.shown = shown  # an error's text as it may be logged (no store password)
        self.prefix = prefix
        self.extra = extra
        self.clock = clock
        self._lock = threading.Lock()
        self._errors: Counter[tuple[str, str]] = Counter()
        self._last_error_id = 0
        self._last_read_rowid = 0
        # The families read from the store, while nothing was written there since.
        self._cached: tuple[Any, list[Metric]] | None = None

    def describe(self) -> Iterator[Metric]:
        return iter(())  # collected on demand (registering must not read the store)

    def _family(self, name: str, labels: list[str]) -> Any:
        """A gauge, counter or histogram family (their ``add_metric`` signatures differ, so
        the caller, which knows the kind by name, gets the concrete class untyped)."""
        kind, help_ = next((k, h) for n, k, h in METRICS if n == name)
        full = self.prefix + name
        if kind == "gauge":
            return GaugeMetricFamily(full, help_, labels=labels)
        if kind == "counter":
            return CounterMetricFamily(full, help_, labels=labels)
        return HistogramMetricFamily(full, help_, labels=labels)

    def collect(self) -> Iterator[Metric]:
        info = self._family("build_info", ["version", "python"])
        info.add_metric([__version__, platform.python_version()], 1)
        yield info
        up = self._family("store_up", [])
        try:
            with self._lock, self.open_store() as store:
                families = list(self._from_store(store))
        except Exception as e:
            log.warning("metrics: the store could not be read: %s", self.shown(e))
            up.add_metric([], 0)
            yield up
        else:
            up.add_metric([], 1)
            yield up
            yield from families
        if self.extra is not None:
            yield from self.extra()

    def _from_store(self, store: Any) -> Iterator[Metric]:
        version = store.data_version()
        if self._cached is None or self._cached[0] != version:
            self._cached = (version, list(self._from_runs(store, version)))
        yield from self._cached[1]
        outbox = store.outbox_counts()  # written by the alert relay, between runs too
        for name, statuses in (("notifications_pending", ("pending", "retrying")),
                               ("notifications_failed", ("failed", "dead"))):
            g = self._family(name, [])
            g.add_metric([], sum(outbox.get(s, 0) for s in statuses))
            yield g

    def _from_runs(self, store: Any, version: Any) -> Iterator[Metric]:
        """Everything that changes only when a run, a finding or the master is written."""
        ratio = self._family("consistency_ratio", ["channel", "check"])
        for channel, check, score in store.latest_scores():
            ratio.add_metric([channel, check], float(score))
        yield ratio

        open_ = self._family("findings_open", ["channel", "check", "severity"])
        for channel, check, severity, n in store.unresolved_finding_counts():
            open_.add_metric([channel, check, severity], n)
        yield open_

        seen = self._family("listings_seen", ["channel"])
        up = self._family("source_up", ["source"])
        last_run = self._family("source_last_run_timestamp_seconds", ["source"])
        for r in store.latest_source_results():
            if r["source"] != "master":
                seen.add_metric([r["source"]], r["listings"] or 0)
            up.add_metric([r["source"]], 1 if r["status"] == "complete" else 0)
            t = _ts(r["finished_at"])
            if t is not None:
                last_run.add_metric([r["source"]], t)
        yield seen
        yield up
        yield last_run

        success = self._family("source_last_success_timestamp_seconds", ["source"])
        for source, at in sorted(store.last_complete_reads().items()):
            success.add_metric([source], at.timestamp())
        yield success

        for row_id, source, reason in store.run_errors_after(self._last_error_id):
            self._errors[(source, reason_class(reason))] += 1
            self._last_error_id = row_id
        for rowid, source, _status, message in store.failed_reads_after(self._last_read_rowid):
            self._errors[(source, reason_class(message))] += 1
            self._last_read_rowid = rowid
        errors = self._family("fetch_errors_total", ["source", "reason"])
        for (source, reason), n in sorted(self._errors.items()):
            errors.add_metric([source, reason], n)
        yield errors

        durations: dict[str, list[float]] = {}
        for source, seconds in store.source_durations():
            durations.setdefault(source, []).append(seconds)
        hist = self._family("run_duration_seconds", ["source"])
        for source, values in sorted(durations.items()):
            hist.add_metric([source], _buckets(values, DURATION_BUCKETS), sum(values))
        yield hist

        propagation = store.propagation(self.clock() - timedelta(days=30))
        latencies: dict[str, list[float]] = {}
        pending: Counter[str] = Counter()
        for channel, seconds in propagation:
            if seconds is None:
                pending[channel] += 1
            else:
                latencies.setdefault(channel, []).append(seconds)
        lat = self._family("propagation_latency_seconds", ["channel"])
        for channel, values in sorted(latencies.items()):
            lat.add_metric([channel], _buckets(values, LATENCY_BUCKETS), sum(values))
        yield lat
        pend = self._family("propagation_pending", ["channel"])
        for channel in sorted(set(latencies) | set(pending)):
            pend.add_metric([channel], pending.get(channel, 0))
        yield pend


def store_opener(url: str | Path) -> StoreOpener:
    """Opens the store at ``url`` (``auditor.storage.open_store``) for one scrape and
    closes it after."""

    @contextlib.contextmanager
    def open_store() -> Iterator[Any]:
        from auditor.storage import open_store as open_url

        store = open_url(url, write_wait=5.0)
        try:
            yield store
        finally:
            store.close()

    return open_store


def registry_for(open_store: StoreOpener, extra: Callable[[], Iterable[Metric]] | None = None
                 ) -> CollectorRegistry:
    """A fresh registry holding only the auditor's collector."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreCollector(open_store, extra=extra))
    return registry


def write_metrics_file(path: str | Path, open_store: StoreOpener) -> None:
    """The metrics in the node-exporter textfile format, written atomically (a temporary
    file renamed over ``path``): the collector never reads half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_to_textfile(str(path), registry_for(open_store))
