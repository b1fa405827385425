"""Delivering the outbox: every pending notification, with retries and backoff.

At-least-once delivery made exactly-once by the idempotency key: a row is marked sent
only after its receiver accepted it, so a process killed mid-send sends that one
notification again on restart, with the same key (receivers, and the tests' receiver,
drop a key they have seen). Nothing else is sent twice: each row is marked sent
(committed) right after its receiver accepted it.

One delivering process per store at a time (a lock file beside the store, released by
the kernel when the process dies). Each receiver is served by its own thread, in
outbox order; a receiver that fails is retried later with exponential backoff and
jitter, and never holds up the others.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import queue
import random
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Iterator

from auditor.alerts import receivers as recv_mod
from auditor.config import Config

log = logging.getLogger(__name__)
Clock = Callable[[], datetime]


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


@contextlib.contextmanager
def delivery_lock(store_path: str) -> Iterator[bool]:
    """Yields True when this process may deliver (no other is delivering)."""
    if store_path == ":memory:":
        yield True
        return
    fd = os.open(str(store_path) + ".alerts.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)


def backoff(attempts: int, first: float, most: float, rng: random.Random | None = None) -> float:
    """Seconds before attempt ``attempts + 1``: first * 2^(attempts-1), capped, +-20% jitter."""
    base = min(most, first * (2 ** max(0, attempts - 1)))
    return base * (rng or random).uniform(0.8, 1.2)


def deliver(store: Any, cfg: Config, clock: Clock = _utcnow,
            on_sent: Callable[[dict], None] | None = None) -> dict[str, Any]:
    """Send every due notification once. Returns counts (sent, failed, gave_up, busy)."""
    ac = cfg.alerts
    out = {"sent": 0, "failed": 0, "gave_up": 0, "busy": False}
    with delivery_lock(store.path) as mine:
        if not mine:
            out["busy"] = True
            return out
        now = clock()
        by_receiver: dict[str, list[dict]] = {}
        for r in store.outbox(("pending",), limit=10_000):
            if r["receiver"] not in ac.receivers:
                store.outbox_failed(r["id"], f"receiver {r['receiver']!r} is not configured "
                                             f"(any more)", None)
                out["gave_up"] += 1
                continue
            by_receiver.setdefault(r["receiver"], []).append(r)
        # Each receiver's notifications go out in order: while its oldest one waits for a
        # retry, the later ones wait behind it.
        by_receiver = {n: rows for n, rows in by_receiver.items()
                       if not rows[0]["next_attempt_at"]
                       or datetime.fromisoformat(rows[0]["next_attempt_at"]) <= now}
        if not by_receiver:
            return out
        results: queue.Queue = queue.Queue()
        timeout = float(ac.get("timeout"))

        def work(name: str, items: list[dict]) -> None:
            receiver = ac.receivers[name]
            try:
                send = recv_mod.sender(receiver.type)
            except Exception as e:
                results.put((items[0], f"{e.__class__.__name__}: {e}"))
                results.put(None)
                return
            for row in items:
                try:
                    send(receiver, row["payload"], timeout, clock())
                except Exception as e:  # refused, unreachable, bad config: retried later
                    results.put((row, f"{e.__class__.__name__}: {e}"))
                    break  # keep this receiver's order: the rest wait for the retry
                results.put((row, None))
            results.put(None)

        threads = [threading.Thread(target=work, args=(n, items), daemon=True,
                                    name=f"deliver-{n}") for n, items in by_receiver.items()]
        for t in threads:
            t.start()
        done = 0
        while done < len(threads):
            item = results.get()
            if item is None:
                done += 1
                continue
            row, error = item
            if error is None:
                store.outbox_sent(row["id"], clock())  # committed before the next one
                out["sent"] += 1
                if on_sent:
                    on_sent(row)
                continue
            attempts = row["attempts"] + 1
            if attempts >= int(ac.get("max_attempts")):
                store.outbox_failed(row["id"], error, None)
                out["gave_up"] += 1
                log.error("notification %s to %s failed %d times, given up: %s",
                          row["idempotency_key"], row["receiver"], attempts, error)
            else:
                delay = backoff(attempts, float(ac.get("backoff")), float(ac.get("max_backoff")))
                store.outbox_failed(row["id"], error, clock() + timedelta(seconds=delay))
                out["failed"] += 1
                log.warning("notification %s to %s failed (attempt %d), retry in %.0f s: %s",
                            row["idempotency_key"], row["receiver"], attempts, delay, error)
        for t in threads:
            t.join()
    return out


def cycle(store: Any, cfg: Config, clock: Clock = _utcnow) -> dict[str, Any]:
    """Evaluate alerts, then deliver: what a deliver step after a run and the service loop do."""
    from auditor.alerts.engine import evaluate

    res = {"evaluated": evaluate(store, cfg, clock())}
    res["delivered"] = deliver(store, cfg, clock)
    return res


def loop(store_url: str | Path, cfg: Config, stop: threading.Event,
         interval: float | None = None, clock: Clock = _utcnow) -> None:
    """The service loop (``auditor serve`` runs it in a thread; ``auditor alerts send
    --loop`` in the foreground): evaluate and deliver every ``interval`` seconds until
    ``stop`` is set, then deliver what is due once more. ``store_url``: as
    ``auditor.storage.open_store`` takes it (a URL or a path)."""
    from auditor.storage import open_store

    interval = float(interval or cfg.alerts.get("send_interval"))
    store = open_store(store_url)
    try:
        while not stop.is_set():
            try:
                cycle(store, cfg, clock)
            except Exception:  # the loop keeps going; the next cycle tries again
                log.exception("alert cycle failed")
            stop.wait(interval)
        with contextlib.suppress(Exception):
            deliver(store, cfg, clock)
    finally:
        store.close()
