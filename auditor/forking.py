"""Forked helper processes of a run: a step computed in a child that sees everything this
process holds (``_in_fork``), children that die with their parent (``die_with_parent``)
and leave without an interpreter shutdown (``_leave_fork``). Used by ``auditor.runner``
(channel workers, the master plan) and ``auditor.linkbatch`` (ranking in parts)."""

from __future__ import annotations

import contextlib
import logging
import multiprocessing as mp
import os
import signal
import sys
import threading
import time
from typing import Any, Callable

log = logging.getLogger("auditor.runner")


def _leave_fork(q: Any = None) -> None:
    """End a forked child at once, once its queue is flushed.

    No interpreter shutdown: its flush of stdio could block for ever on a lock that
    another thread of the parent (a terminal progress display) held at fork time.
    """
    if q is not None:
        q.close()
        q.join_thread()
    os._exit(0)


def _in_fork(fn: Callable[[], Any]) -> Callable[[], Any]:
    """Start ``fn()`` in a forked process; the returned function waits for its result.

    The child sees everything this process holds (no copying in); only the result
    travels back, pickled. When the child fails, the result is computed here.
    """
    ctx = mp.get_context("fork")
    recv, send = ctx.Pipe(duplex=False)
    parent = os.getpid()

    def child() -> None:
        die_with_parent(parent)
        try:
            send.send((True, fn()))
        except BaseException as e:  # reported; the parent computes it itself
            send.send((False, f"{e.__class__.__name__}: {e}"))
        send.close()
        _leave_fork()

    p = ctx.Process(target=child, daemon=True)
    p.start()
    send.close()

    def result() -> Any:
        try:
            ok, value = recv.recv()
        except EOFError:  # the child died before sending
            p.join()
            ok, value = False, f"exited with code {p.exitcode}"
        p.join()
        recv.close()
        if ok:
            return value
        log.warning("background step failed (%s); doing it in this process", value)
        return fn()

    def cancel() -> None:  # the run was interrupted: the step is not wanted any more
        if p.is_alive():
            p.terminate()
        p.join()
        recv.close()

    result.cancel = cancel  # type: ignore[attr-defined]
    result.alive = p.is_alive  # type: ignore[attr-defined]  # (still working: not waited)
    return result


PR_SET_PDEATHSIG = 1


def die_with_parent(parent: int) -> None:
    """In a forked child of the run: die with the run's process, and leave signals to it.

    Ctrl-C reaches every process of the terminal's group: a child ignores SIGINT (its
    parent stops it); SIGTERM, which the parent sends to stop it, ends it at once
    (no handler inherited from the parent). On Linux the kernel kills the child when
    its parent dies (prctl PR_SET_PDEATHSIG); everywhere a watcher thread ends it
    when its parent process is gone (it was re-parented).
    """
    with contextlib.suppress(ValueError):  # not the main thread: leave them
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        except (OSError, AttributeError):  # no prctl: the watcher alone
            pass
    if os.getppid() != parent:  # the parent died before the line above
        os._exit(1)

    def watch() -> None:
        while True:
            time.sleep(0.5)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, name="auditor-parent-watch", daemon=True).start()
