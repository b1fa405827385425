"""Audits in their own process: what a long-running parent (``auditor serve``) calls.

``run_in_child(config_path)`` starts the audit in a fresh child process
(``python -m auditor.child``: a new interpreter, nothing of the parent's threads,
locks or memory, and no re-import of the parent's main module), waits for it and
returns a ``ChildRun`` (run id, status, exit code). The parent never forks itself and never touches its own
garbage collector; the child takes the store's run lock, may fork its channel
workers and freeze its GC as ``auditor run`` does, and exits.

Every event of the run reaches the parent as one JSON line over a pipe of its
own (not stdout: the child's stdout and stderr are the parent's) (``auditor.events``) and is handed to the ``listeners`` given here, in order; log
records of the child come the same way and are handled by the parent's logging.
Plugins registered through the entry point run in the child (they see the events
there), so the parent calls only the listeners it passes.

Stopping: set ``stop`` (a ``threading.Event``) or interrupt the parent, and the
child gets SIGTERM, records the run ``interrupted`` and exits; the child also
gets SIGTERM when the parent's thread that started it dies (Linux), and exits by
itself when its parent process is gone. A child that dies without reporting (a
crash, SIGKILL, out of memory) has its run recorded ``interrupted`` here, with
its exit code.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable

from auditor import events as ev

log = logging.getLogger(__name__)


@dataclass
class ChildRun:
    """What became of an audit run in a child process."""

    run_id: int | None                  # None when it could not start (config, lock)
    status: str                         # complete | partial | failed | interrupted | error
    exit_code: int                      # as `auditor run`'s: 0, 1, 2 (130/143 interrupted)
    error: str | None = None            # why it could not run, or why it was interrupted
    pid: int | None = None              # the child's process id
    report: dict[str, Any] | None = None   # the run's summary (as `auditor run --format json`)
    events: int = 0                     # events received
    seconds: float = 0.0
    child_exitcode: int | None = None   # the child process's own exit status
    extra: dict[str, Any] = field(default_factory=dict)


def run_in_child(config_path: str | Path, channels: Iterable[str] | None = None, *,
                 now: datetime | None = None, listeners: Iterable[Any] = (),
                 wait: float = 0.0, stop: threading.Event | None = None,
                 timeout: float | None = None, grace: float = 30.0) -> ChildRun:
    """Run one audit of ``config_path`` in a child process; return when it has ended.

    ``channels``: only these; ``now``: evaluation time; ``listeners``: objects with
    ``@hookimpl`` event methods (``auditor.hookspecs``) called here, in this
    process; ``wait``: seconds to wait for another run's lock; ``stop`` or
    ``timeout`` (seconds): interrupt the run (SIGTERM to the child, which records
    it ``interrupted``); ``grace``: seconds the child then has before SIGKILL.
    """
    from auditor.session import AuditSession  # noqa: F401  (fail here, not in the child)
    from auditor import plugins

    pm = plugins.new_manager()
    for i, listener in enumerate(listeners):
        pm.register(listener, name=f"listener-{i}-{id(listener)}")
    rfd, wfd = os.pipe()
    args = {"config": str(Path(config_path).resolve()), "channels": list(channels or ()),
            "now": now.isoformat() if now else None, "wait": wait, "fd": wfd}
    env = dict(os.environ)
    # The child imports this very auditor, wherever it was imported from.
    here = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join([here] + ([env["PYTHONPATH"]]
                                                  if env.get("PYTHONPATH") else []))
    t0 = time.perf_counter()
    try:
        proc = _Proc(subprocess.Popen([sys.executable, "-m", "auditor.child", json.dumps(args)],
                                      pass_fds=(wfd,), env=env, stdin=subprocess.DEVNULL))
    finally:
        os.close(wfd)
    recv = _Lines(rfd)
    result = ChildRun(None, "error", 2, pid=proc.pid)
    run_started: ev.RunStarted | None = None
    finished: ev.RunFinished | None = None
    got_result = False
    deadline = None if timeout is None else time.monotonic() + timeout
    stopping_since: float | None = None

    def stop_child(reason: str) -> None:
        nonlocal stopping_since
        if stopping_since is None and proc.is_alive():
            log.warning("stopping audit child %s: %s", proc.pid, reason)
            proc.terminate()  # SIGTERM: the child records the run interrupted
            stopping_since = time.monotonic()

    try:
        while True:
            if stopping_since is not None and time.monotonic() - stopping_since > grace:
                proc.kill()
            if (stop is not None and stop.is_set()) or (
                    deadline is not None and time.monotonic() > deadline):
                stop_child("stop requested" if stop is not None and stop.is_set()
                           else f"timeout after {timeout} s")
            line = recv.next(0.2)
            if line is None:
                continue
            if line == b"":  # end of the pipe: the child has exited (or closed it)
                break
            msg = json.loads(line)
            if "event" in msg:
                event = ev.from_dict(msg)
                result.events += 1
                if isinstance(event, ev.RunStarted):
                    run_started = event
                    result.run_id = event.run_id
                elif isinstance(event, ev.RunFinished):
                    finished = event
                _dispatch(pm, event)
            elif "log" in msg:
                _log_record(msg["log"])
            elif "result" in msg:
                got_result = True
                r = msg["result"]
                result.run_id = r.get("run_id", result.run_id)
                result.status = r["status"]
                result.exit_code = r["exit_code"]
                result.error = r.get("error")
                result.report = r.get("report")
    except BaseException:  # the parent itself is interrupted: so is the run
        stop_child("the parent was interrupted")
        proc.join(grace)
        if proc.is_alive():
            proc.kill()
        raise
    finally:
        recv.close()
    proc.join()
    result.child_exitcode = proc.exitcode
    result.seconds = time.perf_counter() - t0
    if not got_result:
        reason = f"the audit process exited with code {proc.exitcode} before reporting"
        result.status, result.exit_code, result.error = "interrupted", 2, reason
        if run_started is not None and finished is None:
            at = datetime.now(timezone.utc)
            if _record_crash(config_path, run_started.run_id, at, reason):
                _dispatch(pm, ev.RunFinished(run_started.run_id, "interrupted", 2,
                                             run_started.started_at, at,
                                             result.seconds, reason=reason))
        elif run_started is None and stopping_since is None:
            result.status = "error"  # it died before it began a run, unasked
    return result


class _Proc:
    """The few ``multiprocessing.Process`` verbs used above, on a ``Popen``."""

    def __init__(self, popen: subprocess.Popen):
        self.popen = popen
        self.pid = popen.pid

    def is_alive(self) -> bool:
        return self.popen.poll() is None

    def terminate(self) -> None:
        if self.is_alive():
            self.popen.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        if self.is_alive():
            self.popen.kill()

    def join(self, timeout: float | None = None) -> None:
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            pass

    @property
    def exitcode(self) -> int | None:
        return self.popen.poll()


class _Lines:
    """JSON lines from a pipe, read with a timeout."""

    def __init__(self, fd: int):
        self.f = os.fdopen(fd, "rb", buffering=0)
        self.buf = b""
        self.eof = False

    def next(self, timeout: float) -> bytes | None:
        """The next line; None when none came within ``timeout``; b"" at the end."""
        import select

        while True:
            nl = self.buf.find(b"\n")
            if nl >= 0:
                line, self.buf = self.buf[:nl], self.buf[nl + 1:]
                if line.strip():
                    return line
                continue
            if self.eof:
                return b""
            ready, _, _ = select.select([self.f], [], [], timeout)
            if not ready:
                return None
            chunk = self.f.read(1 << 16)
            if not chunk:
                self.eof = True
            self.buf += chunk

    def close(self) -> None:
        self.f.close()


def _dispatch(pm: Any, event: ev.Event) -> None:
    from auditor.session import dispatch

    dispatch(pm, event)


def _log_record(data: dict[str, Any]) -> None:
    logger = logging.getLogger(data.get("name") or "auditor.child")
    level = int(data.get("level", logging.INFO))
    if logger.isEnabledFor(level):
        logger.log(level, "%s", data.get("message", ""),
                   extra={"child_pid": data.get("pid")})


def _record_crash(config_path: str | Path, run_id: int, at: datetime, reason: str) -> bool:
    """Mark a run whose process died without a word as interrupted (from the parent)."""
    from auditor.config import load_config
    from auditor.storage import open_store

    try:
        store = open_store(load_config(Path(config_path)).store_url, create=False)
    except Exception:
        log.exception("could not open the store to record run %s as interrupted", run_id)
        return False
    try:
        return store.interrupt_run(run_id, at, reason)
    finally:
        store.close()


# ---------------------------------------------------------------------- in the child

class _Forward:
    """The child's listener: every event to the parent, as one JSON line."""

    def __init__(self, fd: int):
        self.fd = fd
        self.lock = threading.Lock()

    def line(self, data: dict[str, Any]) -> None:
        payload = json.dumps(data, ensure_ascii=False, default=str).encode() + b"\n"
        with self.lock:
            try:
                view = memoryview(payload)
                while view:
                    view = view[os.write(self.fd, view):]
            except OSError:  # the parent is gone: keep auditing
                pass

    def close(self) -> None:
        with self.lock:
            try:
                os.close(self.fd)
            except OSError:
                pass


def _forwarder(send: Any) -> Any:
    """A listener object implementing every event hook by forwarding it."""
    from auditor.hookspecs import EVENT_HOOKS, hookimpl

    fwd = _Forward(send)
    methods = {}
    for hook in EVENT_HOOKS:
        def forward(self: Any, event: ev.Event) -> None:
            fwd.line(event.to_dict())
        forward.__name__ = hook
        methods[hook] = hookimpl(forward)
    listener_cls = type("ForwardToParent", (), methods)
    return fwd, listener_cls()


class _LogToParent(logging.Handler):
    def __init__(self, fwd: _Forward):
        super().__init__()
        self.fwd = fwd

    def emit(self, record: logging.LogRecord) -> None:
        try:
            msg = record.getMessage()
            if record.exc_info:
                msg += "\n" + logging.Formatter().formatException(record.exc_info)
            self.fwd.line({"log": {"name": record.name, "level": record.levelno,
                                   "message": msg, "pid": os.getpid()}})
        except Exception:  # logging must not take the audit down
            pass


def _child_main(config_path: str, channels: list[str], now_text: str | None, wait: float,
                send: int) -> None:
    """The audit child: lock, session, result; exits with the run's exit code."""
    from auditor.config import load_config
    from auditor.errors import AuditorError, Interrupted
    from auditor.log import RedactSecrets
    from auditor.session import AuditSession, interrupt_on_signals
    from auditor.storage import open_store

    fwd, listener = _forwarder(send)
    handler = _LogToParent(fwd)
    handler.addFilter(RedactSecrets())
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(handler)
    root.setLevel(logging.INFO)  # the parent's logging decides what it shows
    for noisy in ("httpx", "httpcore", "apscheduler"):  # a line per request is too many
        logging.getLogger(noisy).setLevel(logging.WARNING)
    _die_with_parent()
    session: Any = None
    code = 2
    try:
        with interrupt_on_signals():
            try:
                cfg = load_config(Path(config_path))
                for name in channels:
                    cfg.channel(name)
                now = datetime.fromisoformat(now_text) if now_text else None
                store = open_store(cfg.store_url)
                try:
                    with store.run_lock(wait):
                        if cfg.run.get("distributed"):  # the scheduled audit as jobs
                            from auditor.distributed import DistributedSession

                            session = DistributedSession(cfg, store, config_path,
                                                         channels=channels or None, now=now,
                                                         listeners=[listener])
                        else:
                            session = AuditSession(cfg, store, channels=channels or None,
                                                   now=now, listeners=[listener])
                        report = session.run()
                finally:
                    store.close()
                from auditor.runner import _summary_dict

                code = report.exit_code
                fwd.line({"result": {
                    "run_id": report.run_id, "status": report.status.value,
                    "exit_code": code, "error": report.master_error,
                    "report": {"run_id": report.run_id, "status": report.status.value,
                               "exit_code": code, "master": report.master,
                               "master_error": report.master_error,
                               "channels": [_summary_dict(s) for s in report.channels]}}})
            except AuditorError as e:  # config invalid, lock held, store unusable
                fwd.line({"result": {"run_id": session.run_id if session else None,
                                     "status": "error", "exit_code": 2, "error": str(e)}})
    except KeyboardInterrupt as e:  # Interrupted by SIGTERM / SIGINT: recorded by the session
        reason = e.reason if isinstance(e, Interrupted) else "SIGINT"
        code = 143 if isinstance(e, Interrupted) and e.signum == signal.SIGTERM else 130
        fwd.line({"result": {"run_id": session.run_id if session else None,
                             "status": "interrupted", "exit_code": code, "error": reason}})
    finally:
        fwd.close()
    sys.exit(code)


def _die_with_parent() -> None:
    """The child gets SIGTERM (and so records its run interrupted) when the parent's
    thread that started it dies (Linux), and exits when the parent process is gone."""
    parent = os.getppid()
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM), 0, 0, 0)
        except (OSError, AttributeError):
            pass

    def watch() -> None:
        while True:
            time.sleep(1.0)
            if os.getppid() != parent:
                os.kill(os.getpid(), signal.SIGTERM)
                return

    threading.Thread(target=watch, name="auditor-parent-watch", daemon=True).start()


if __name__ == "__main__":  # python -m auditor.child '{"config": ..., "fd": N, ...}'
    _a = json.loads(sys.argv[1])
    _child_main(_a["config"], _a["channels"], _a["now"], _a["wait"], _a["fd"])
