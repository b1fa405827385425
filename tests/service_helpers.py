"""Helpers of the service tests: a small world to audit, free ports, a running `auditor serve`."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Iterator

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def build_world(d: Path, n: int = 30, feed_source: str | None = None,
                serve: dict[str, Any] | None = None, schedule: str = "0 */4 * * *",
                master_schedule: str | None = "0 6 * * 1", extra_toml: str = "") -> Path:
    """A master of ``n`` SKUs and a Google feed drifting on some (prices on every 3rd, titles
    on every 5th) with a duplicate and a bad row; returns the config path."""
    d.mkdir(parents=True, exist_ok=True)
    rows = ["sku,title,brand,price,currency,quantity,color"]
    items = []
    for i in range(n):
        sku = f"SKU-{i:03d}"
        rows.append(f"{sku},Acme Tee {i},Acme,{20 + i}.00,USD,5,Red")
        price = 20 + i + (3 if i % 3 == 0 else 0)
        title = f"Acme Tee {i}" if i % 5 else f"Something else {i}"
        items.append(f"<item><g:id>{sku}</g:id><g:title>{title}</g:title>"
                     f"<g:price>{price}.00 USD</g:price><g:availability>in stock"
                     f"</g:availability></item>")
    items.append("<item><g:id>SKU-000</g:id><g:title>dup</g:title></item>")
    items.append("<item><g:id>SKU-BAD</g:id><g:title>Bad</g:title><g:price>ten USD"
                 "</g:price></item>")
    (d / "master.csv").write_text("\n".join(rows) + "\n")
    (d / "google.xml").write_text(
        '<?xml version="1.0"?><rss xmlns:g="http://base.google.com/ns/1.0" version="2.0">'
        "<channel>" + "".join(items) + "</channel></rss>")
    serve_lines = "".join(f"{k} = {json.dumps(v)}\n" for k, v in (serve or {}).items())
    ms = f'schedule = "{master_schedule}"\n' if master_schedule else ""
    (d / "config.toml").write_text(f"""
[store]
path = "auditor.db"
[http]
allow_private = true
timeout = 120
retries = 0
[master]
type = "csv"
source = "master.csv"
{ms}
[[channels]]
name = "google"
type = "google_merchant"
source = "{feed_source or 'google.xml'}"
schedule = "{schedule}"
[serve]
{serve_lines}
{extra_toml}
""")
    return d / "config.toml"


def cli(*args: Any, timeout: float = 120) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "auditor", *map(str, args)], env=env,
                          capture_output=True, text=True, timeout=timeout, cwd=ROOT)


def get(url: str, token: str | None = None, timeout: float = 10) -> tuple[int, Any]:
    req = urllib.request.Request(url)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            body = r.read()
            return r.status, json.loads(body) if "json" in r.headers.get("content-type", "") \
                else body.decode()
    except urllib.error.HTTPError as e:
        body = e.read()
        try:
            return e.code, json.loads(body)
        except ValueError:
            return e.code, body.decode()


def post(url: str, data: Any, token: str | None = None,
         headers: dict[str, str] | None = None) -> tuple[int, Any]:
    req = urllib.request.Request(url, data=json.dumps(data).encode(), method="POST",
                                 headers={"Content-Type": "application/json", **(headers or {})})
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        body = e.read()
        try:
            return e.code, json.loads(body)
        except ValueError:
            return e.code, body.decode()


def wait_for(fn, timeout: float = 30.0, interval: float = 0.2, what: str = "condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = fn()
            if last:
                return last
        except Exception as e:  # not up yet
            last = e
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}: {last!r}")


class Served:
    """A running `auditor serve` process."""

    def __init__(self, proc: subprocess.Popen, port: int, log: Path):
        self.proc, self.port, self.log = proc, port, log
        self.url = f"http://127.0.0.1:{port}"

    def logtext(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout)


@contextlib.contextmanager
def serving(config: Path, *extra: str, env: dict[str, str] | None = None) -> Iterator[Served]:
    """`auditor -v serve` on a free loopback port, up once /healthz answers."""
    port = free_port()
    log = config.parent / f"serve-{port}.log"
    fh = open(log, "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "auditor", "-v", "serve", "--config", str(config),
         "--host", "127.0.0.1", "--port", str(port), *extra],
        env=dict(os.environ, PYTHONPATH=str(ROOT), **(env or {})), cwd=ROOT,
        stdout=fh, stderr=subprocess.STDOUT)
    served = Served(proc, port, log)
    try:
        wait_for(lambda: proc.poll() is None and get(served.url + "/healthz")[0] == 200,
                 timeout=90, what=f"auditor serve on {port} (log: {log})")
        yield served
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        fh.close()
