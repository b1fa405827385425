"""The HTTP client's network streams on asyncio (auditor.http._AsyncioStream): a kept-alive
connection the server closed is not reused, timeouts and resets map to httpcore's errors."""

from __future__ import annotations

import asyncio
import socket
import threading
import time

import pytest

from auditor.errors import FetchError
from auditor.http import Fetcher, FetchPolicy


class _OneShotServer:
    """Answers each connection's first request with keep-alive, then closes it (or, with
    ``stall``, sends headers and never the body)."""

    def __init__(self, stall: bool = False):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self.stall = stall
        self._stop = False
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn: socket.socket) -> None:
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(4096)
                if not chunk:
                    return
                data += chunk
            if self.stall:
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n"
                             b"Content-Length: 10\r\n\r\n")
                time.sleep(3)
                return
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nConnection: "
                         b"keep-alive\r\nContent-Length: 2\r\n\r\nok")
            time.sleep(0.05)
        # closed: the client's pooled connection is now dead

    def close(self) -> None:
        self._stop = True
        self.sock.close()


def _get_twice(url: str, policy: FetchPolicy) -> list[bytes]:
    async def go() -> list[bytes]:
        out = []
        async with Fetcher(policy) as f:
            for _ in range(2):
                r = await f.get(url)
                out.append(r.body or b"")
                await asyncio.sleep(0.3)  # the server closes the idle connection meanwhile
        return out

    return asyncio.run(go())


def test_a_connection_the_server_closed_is_not_reused():
    srv = _OneShotServer()
    try:
        # no retries: a reused dead connection would fail the second request
        got = _get_twice(f"http://127.0.0.1:{srv.port}/a",
                         FetchPolicy(allow_private=True, retries=0, concurrency=1))
        assert got == [b"ok", b"ok"]
        assert srv.connections == 2
    finally:
        srv.close()


def test_a_body_that_never_comes_times_out():
    srv = _OneShotServer(stall=True)
    try:
        t = time.perf_counter()
        with pytest.raises(FetchError, match="timed out|deadline|truncated|transport"):
            _get_twice(f"http://127.0.0.1:{srv.port}/a",
                       FetchPolicy(allow_private=True, retries=0, timeout=0.5))
        assert time.perf_counter() - t < 3
    finally:
        srv.close()


def test_a_refused_connection_is_a_fetch_error():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there
    with pytest.raises(FetchError, match="transport error"):
        _get_twice(f"http://127.0.0.1:{port}/a", FetchPolicy(allow_private=True, retries=0))
