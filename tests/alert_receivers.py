"""Real receivers on loopback for the alert tests: a JSON webhook that verifies the
HMAC signature and records each notification by its idempotency key, and an SMTP
server (aiosmtpd)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from auditor.alerts.receivers.webhook import verify


class WebhookServer:
    """POSTs land in ``deliveries`` (every request) and ``by_key`` (first per key).
    ``status`` is what it answers (503 to play a receiver that is down)."""

    def __init__(self, secret: str | None = None, path: str = "/hook"):
        self.secret = secret
        self.path = path
        self.status = 200
        self.delay = 0.0  # seconds each accepted request takes (widens a kill's window)
        self.deliveries: list[dict[str, Any]] = []
        self.by_key: dict[str, dict[str, Any]] = {}
        self.bad_signatures = 0
        self.refused = 0
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a: Any) -> None:
                pass

            def do_POST(self) -> None:
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n)
                if outer.delay:
                    import time

                    time.sleep(outer.delay)
                with outer.lock:
                    if outer.status != 200:
                        outer.refused += 1
                        self.send_response(outer.status)
                        self.end_headers()
                        return
                    if outer.secret is not None and not verify(
                            outer.secret, self.headers.get("X-Auditor-Timestamp", ""), body,
                            self.headers.get("X-Auditor-Signature", "")):
                        outer.bad_signatures += 1
                        self.send_response(401)
                        self.end_headers()
                        return
                    doc = json.loads(body) if body else None
                    key = self.headers.get("Idempotency-Key") or ""
                    rec = {"path": self.path, "key": key, "body": doc,
                           "headers": dict(self.headers)}
                    outer.deliveries.append(rec)
                    outer.by_key.setdefault(key, rec)
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}{path}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self) -> "WebhookServer":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class SMTPServer:
    """aiosmtpd on loopback; ``messages`` holds every email.message it received."""

    def __init__(self) -> None:
        import email
        import socket

        from aiosmtpd.controller import Controller

        self.messages: list[Any] = []
        outer = self

        class Handler:
            async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
                outer.messages.append(email.message_from_bytes(envelope.content))
                return "250 OK"

        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        self.port = s.getsockname()[1]
        s.close()
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def close(self) -> None:
        self.controller.stop()
