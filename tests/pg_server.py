"""A real PostgreSQL server for the tests: ``initdb`` into a temp dir, ``postgres`` on
127.0.0.1 at an ephemeral port (its unix socket in the temp dir too), for the session.

PostgreSQL refuses to run as root: when the tests run as root, the server runs as the
``postgres`` system user that Debian's ``postgresql`` package creates (``runuser``).
The binaries are found in ``/usr/lib/postgresql/*/bin`` (Debian) or on ``PATH``; when
they are missing the tests that need the server fail, naming what to install. Only
``AUDITOR_SKIP_POSTGRES=1`` skips them.

A superuser ``auditor`` with a password (scram-sha-256 over TCP) is created, so a URL
carries a password, as a deployment's would: the tests check it never shows.
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest

PASSWORD = "s3cret-pg-pw"
USER = "auditor"


def skip_requested() -> bool:
    return os.environ.get("AUDITOR_SKIP_POSTGRES", "") == "1"


def _bindir() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0)
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).parent
    pytest.fail("PostgreSQL server binaries (initdb, postgres) not found in "
                "/usr/lib/postgresql/*/bin or on PATH: install the Debian package "
                "`postgresql` (scripts/test.sh does), or set AUDITOR_SKIP_POSTGRES=1 to skip "
                "the PostgreSQL tests", pytrace=False)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PgServer:
    """A running server; ``new_database()`` gives the URL of a new, empty database."""

    def __init__(self, settings: dict[str, str] | None = None) -> None:
        """``settings``: server settings (``-c name=value``) over the tests' own (no fsync:
        the tests' data is thrown away)."""
        self.settings = {"fsync": "off", "synchronous_commit": "off",
                         "full_page_writes": "off", "max_connections": "200",
                         "shared_buffers": "64MB", **(settings or {})}
        self.bindir = _bindir()
        self.root = Path(tempfile.mkdtemp(prefix="auditor-pg-"))
        self.data, self.sock = self.root / "data", self.root / "sock"
        self.sock.mkdir()
        self.as_user: list[str] = []
        if os.geteuid() == 0:
            try:
                pwd.getpwnam("postgres")
            except KeyError:
                subprocess.run(["useradd", "--system", "--no-create-home", "postgres"],
                               check=True)
            subprocess.run(["chown", "-R", "postgres:", str(self.root)], check=True)
            self.as_user = ["runuser", "-u", "postgres", "--"]
        pwfile = self.root / "pw"
        pwfile.write_text(PASSWORD + "\n")
        if self.as_user:
            shutil.chown(pwfile, "postgres")
        self._run([str(self.bindir / "initdb"), "-D", str(self.data), "-U", USER,
                   "--pwfile", str(pwfile), "--auth-host=scram-sha-256", "--auth-local=trust",
                   "-E", "UTF8", "--locale=C.UTF-8" if _has_c_utf8() else "--locale=C"])
        self.started = False
        for _ in range(5):  # another process may take the port between pick and bind
            self.port = _free_port()
            if self._start():
                break
        else:
            raise RuntimeError(f"postgres did not start: see {self.root / 'log'}")

    def _run(self, cmd: list[str]) -> None:
        r = subprocess.run(self.as_user + cmd, capture_output=True, text=True)
        if r.returncode:
            raise RuntimeError(f"{cmd[0]} failed ({r.returncode}): {r.stderr or r.stdout}")

    def _start(self) -> bool:
        """Start the server detached (``pg_ctl start``): it is not a child of the test
        process, so tests that check their own process leaves no children are not misled
        by it; ``stop`` (at the end of the session, or at exit) ends it."""
        opts = " ".join(["-h 127.0.0.1", f"-p {self.port}", f"-k {self.sock}",
                         *[f"-c {k}={v}" for k, v in self.settings.items()]])
        r = subprocess.run(self.as_user + [str(self.bindir / "pg_ctl"), "-D", str(self.data),
                                           "-l", str(self.root / "log"), "-o", opts, "-w",
                                           "-t", "30", "start"],
                           capture_output=True, text=True)
        if r.returncode:
            return False
        self.started = True
        atexit.register(self.stop)
        return True

    def url(self, dbname: str = "postgres", password: str | None = PASSWORD) -> str:
        cred = f"{USER}:{password}" if password is not None else USER
        return f"postgresql://{cred}@127.0.0.1:{self.port}/{dbname}"

    def new_database(self) -> str:
        import psycopg

        name = "t_" + uuid.uuid4().hex[:12]
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        if self.started:
            self.started = False
            r = subprocess.run(self.as_user + [str(self.bindir / "pg_ctl"), "-D",
                                               str(self.data), "-m", "fast", "-w", "-t", "30",
                                               "stop"], capture_output=True)
            if r.returncode:  # not stopped in time: end it (its pid is in postmaster.pid)
                with contextlib.suppress(OSError, ValueError, IndexError):
                    pid = int((self.data / "postmaster.pid").read_text().split()[0])
                    os.kill(pid, signal.SIGKILL)
        shutil.rmtree(self.root, ignore_errors=True)


def _has_c_utf8() -> bool:
    r = subprocess.run(["locale", "-a"], capture_output=True, text=True)
    return any(x.lower() in ("c.utf8", "c.utf-8") for x in r.stdout.split())


@pytest.fixture(scope="session")
def pg_server():
    """The session's PostgreSQL server (started on first use)."""
    if skip_requested():
        pytest.skip("AUDITOR_SKIP_POSTGRES=1: PostgreSQL tests skipped")
    server = PgServer()
    try:
        yield server
    finally:
        server.stop()
