"""The job queue of distributed runs, seen from outside: its metrics and its retention.

``auditor worker`` deletes a job that succeeded; a job that failed (or was cancelled or
aborted) stays in procrastinate's table (``procrastinate_jobs``) so an operator can see
why. ``prune`` deletes those that ended more than ``[run] job_retention_hours`` ago
(procrastinate's own ``delete_old_jobs`` query), and ``auditor worker`` runs it at its
start and then hourly (``Pruner``).

``JobQueueCollector`` is a custom Prometheus collector reading the queue at each scrape
(``auditor serve`` registers it on a PostgreSQL store): jobs by queue, task and status, the
age of the oldest queued job, the workers alive. Nothing is counted inside the workers,
whose counters would die with them.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Callable, Iterator

from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)

# The job statuses procrastinate keeps (every one is a label value, also when no job has it).
STATUSES = ("todo", "doing", "succeeded", "failed", "cancelled", "aborted")
ENDED = ("succeeded", "failed", "cancelled", "aborted")
LIVE_WORKER_SECONDS = 60.0  # a worker whose heartbeat is older is not counted alive
PRUNE_EVERY = 3600.0  # seconds between two prunes of a running worker

# name (without the auditor_ prefix), help: documented in docs/service.md ("Metrics")
METRICS: tuple[tuple[str, str], ...] = (
    ("jobs", "Jobs of distributed runs in the queue's table, by queue, task and status "
             "(todo, doing, failed, cancelled, aborted; succeeded jobs are deleted by the "
             "workers)."),
    ("jobs_oldest_queued_age_seconds",
     "Seconds the oldest job waiting for a worker (status todo, due now) has waited, by "
     "queue; 0 when none waits."),
    ("job_workers", f"`auditor worker` processes whose heartbeat is at most "
                    f"{LIVE_WORKER_SECONDS:g} s old."),
)

_COUNTS = """
SELECT queue_name, task_name, status::text, count(*) FROM procrastinate_jobs
GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
"""
# A todo job waits from when it was deferred, or from when it is due (a retry's wait).
_OLDEST = """
SELECT j.queue_name,
       extract(epoch FROM now() - min(greatest(e.at, coalesce(j.scheduled_at, e.at))))::float8
FROM procrastinate_jobs j
JOIN procrastinate_events e ON e.job_id = j.id AND e.type = 'deferred'
WHERE j.status = 'todo' AND (j.scheduled_at IS NULL OR j.scheduled_at <= now())
GROUP BY 1 ORDER BY 1
"""


def _installed(conn: Any) -> bool:
    row = conn.execute("SELECT to_regclass('procrastinate_jobs') IS NOT NULL").fetchone()
    return bool(row and row[0])


class JobQueueCollector(Collector):
    """Reads procrastinate's tables in the store's database at each scrape.

    ``connect()`` returns a new psycopg connection (closed after the scrape). A database
    without the queue's tables (no distributed run yet) yields the families empty but for
    ``auditor_job_workers`` 0; one that cannot be read yields nothing (``auditor_store_up``
    already says so)."""

    def __init__(self, connect: Callable[[], Any], prefix: str = "auditor_",
                 shown: Callable[[BaseException], str] = str):
        self.connect = connect
        self.prefix = prefix
        self.shown = shown

    def describe(self) -> Iterator[Metric]:
        return iter(())  # read on demand (registering must not read the database)

    def _family(self, name: str, labels: list[str]) -> GaugeMetricFamily:
        help_ = next(h for n, h in METRICS if n == name)
        return GaugeMetricFamily(self.prefix + name, help_, labels=labels)

    def collect(self) -> Iterator[Metric]:
        try:
            conn = self.connect()
        except Exception as e:
            log.warning("metrics: the job queue could not be read: %s", self.shown(e))
            return
        try:
            jobs = self._family("jobs", ["queue", "task", "status"])
            oldest = self._family("jobs_oldest_queued_age_seconds", ["queue"])
            workers = self._family("job_workers", [])
            alive = 0
            if _installed(conn):
                counts: dict[tuple[str, str], dict[str, int]] = {}
                for queue, task, status, n in conn.execute(_COUNTS):
                    counts.setdefault((queue, task), {})[status] = int(n)
                for (queue, task), by in sorted(counts.items()):
                    for status in STATUSES:
                        jobs.add_metric([queue, task, status], by.get(status, 0))
                waited = {q: max(0.0, float(s)) for q, s in conn.execute(_OLDEST)}
                for queue in sorted({q for q, _ in counts} | set(waited)):
                    oldest.add_metric([queue], waited.get(queue, 0.0))
                row = conn.execute(
                    "SELECT count(*) FROM procrastinate_workers WHERE last_heartbeat >= "
                    "now() - make_interval(secs => %s)", (LIVE_WORKER_SECONDS,)).fetchone()
                alive = int(row[0]) if row else 0
            workers.add_metric([], alive)
        except Exception as e:
            log.warning("metrics: the job queue could not be read: %s", self.shown(e))
            return
        finally:
            conn.close()
        yield jobs
        yield oldest
        yield workers


def connector(url: str) -> Callable[[], Any]:
    """A function opening a new autocommit connection to the store's database."""
    from auditor.storage.postgres import connect

    def open_() -> Any:
        return connect(url, application_name="auditor metrics")

    return open_


def prune(url: str, hours: int) -> int:
    """Delete the jobs that ended (succeeded, failed, cancelled, aborted) more than
    ``hours`` ago, with their events; the number deleted. 0 and nothing done without the
    queue's tables. ``hours`` is 1 or more: a run's coordinator has long seen its jobs end."""
    from procrastinate import sql

    from auditor.storage.postgres import connect

    if hours < 1:
        raise ValueError(f"job retention: expected 1 hour or more, got {hours}")
    conn = connect(url, application_name="auditor job retention")
    try:
        if not _installed(conn):
            return 0
        cur = conn.execute(sql.queries["delete_old_jobs"],
                           {"nb_hours": int(hours), "queue": None, "statuses": list(ENDED)})
        return max(0, cur.rowcount)
    finally:
        conn.close()


class Pruner:
    """``prune`` now and then every ``every`` seconds in a daemon thread, until ``stop()``;
    a failure is logged (the next round tries again), never raised into the worker."""

    def __init__(self, url: str, hours: int, every: float = PRUNE_EVERY):
        self.url = url
        self.hours = hours
        self.every = every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="job-retention", daemon=True)

    def start(self) -> "Pruner":
        self._thread.start()
        return self

    def _loop(self) -> None:
        from auditor.storage import redact

        while True:
            try:
                n = prune(self.url, self.hours)
                if n:
                    log.info("job retention: deleted %s job(s) that ended over %s hour(s) ago",
                             n, self.hours)
            except Exception as e:
                log.warning("job retention: could not prune the queue: %s",
                            redact(str(e), self.url))
            if self._stop.wait(self.every):
                return

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
