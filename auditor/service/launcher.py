"""An audit of one source in a child process: the seam between the scheduler and the run.

The server never forks itself (it runs threads): each audit is a fresh interpreter
started with ``python -m auditor run --channel NAME`` (or ``--master-only``), which
may fork its own workers and records itself interrupted on SIGTERM. The scheduler sees
only ``Launcher.start(source)`` and the ``RunHandle`` it returns, so another way of
starting an audit replaces ``SubprocessLauncher`` without touching the scheduler: the
core's ``auditor.child.run_in_child`` (which also streams the run's events to the
parent) once it can run the master alone, or a job queue.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Callable, Protocol, Sequence

log = logging.getLogger(__name__)

MASTER = "master"  # the source name of the master import


class RunHandle(Protocol):
    """One running audit."""

    pid: int

    def wait(self, timeout: float | None = None) -> int | None:
        """The exit code, or None when still running after ``timeout`` seconds."""

    def terminate(self) -> None:
        """Ask the audit to stop (it records itself as interrupted)."""

    def kill(self) -> None:
        """Stop it at once."""


class Launcher(Protocol):
    """Starts the audit of one source ("master" or a channel name)."""

    def start(self, source: str, wait_for_lock: float) -> RunHandle:
        """Start auditing ``source``; ``wait_for_lock`` seconds may be spent waiting for
        another run holding the store's lock."""


class ProcessHandle:
    """A ``subprocess.Popen`` as a RunHandle."""

    def __init__(self, proc: subprocess.Popen):
        self.proc = proc
        self.pid = proc.pid

    def wait(self, timeout: float | None = None) -> int | None:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def terminate(self) -> None:
        self._signal(signal.SIGTERM)

    def kill(self) -> None:
        self._signal(signal.SIGKILL)

    def _signal(self, sig: int) -> None:
        # The whole process group (the audit leads its own session): its forked channel
        # workers stop with it, as they do on a terminal's Ctrl-C.
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                pass


def audit_argv(config_path: Path, source: str, wait_for_lock: float,
               metrics_file: Path | None = None) -> list[str]:
    """The command line auditing one source."""
    argv = [sys.executable, "-m", "auditor", "run", "--config", str(config_path),
            "--wait", f"{max(0.0, wait_for_lock):.0f}"]
    argv += ["--master-only"] if source == MASTER else ["--channel", source]
    if metrics_file is not None:
        argv += ["--metrics-file", str(metrics_file)]
    return argv


class SubprocessLauncher:
    """Starts ``python -m auditor run`` for one source, in its own process group."""

    def __init__(self, config_path: Path, extra_env: dict[str, str] | None = None,
                 argv: Callable[[Path, str, float], Sequence[str]] | None = None):
        self.config_path = Path(config_path).resolve()
        self.extra_env = extra_env or {}
        self.argv = argv or audit_argv

    def start(self, source: str, wait_for_lock: float) -> ProcessHandle:
        env = dict(os.environ, **self.extra_env)
        # The child imports this very auditor, also when it runs from a source checkout.
        here = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (here, env.get("PYTHONPATH")) if p)
        argv = list(self.argv(self.config_path, source, wait_for_lock))
        log.info("audit of %s: starting %s", source, " ".join(argv[1:]))
        # A session of its own: a terminal's Ctrl-C reaches the server, which decides
        # how its audits stop. stdout (the run summary) is not needed; logs go to stderr.
        proc = subprocess.Popen(argv, env=env, cwd=str(self.config_path.parent),
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                start_new_session=True)
        return ProcessHandle(proc)

