"""Login and CSRF protection of the web UI.

A login is a password compared in constant time with the one from the environment;
it sets a session cookie signed with itsdangerous (HttpOnly, SameSite=Lax, expiring
after ``[ui] session_hours``). Every form that changes something carries the
session's CSRF token, which the POST must echo back; a token from another session, or
none, is refused with 403. With no password configured the UI is read-only.
"""

from __future__ import annotations

import hmac
import os
import secrets
from dataclasses import dataclass
from typing import Any, Mapping

from itsdangerous import BadSignature, URLSafeTimedSerializer

from auditor.config import EnvRef, secret_value

COOKIE = "auditor_session"
PASSWORD_ENV = "AUDITOR_UI_PASSWORD"
SECRET_ENV = "AUDITOR_UI_SECRET"


@dataclass(frozen=True)
class Session:
    """Who is looking: logged in or not, and the session's CSRF token."""

    user: str | None
    csrf: str

    @property
    def logged_in(self) -> bool:
        return self.user is not None


class Auth:
    """Signs and reads session cookies; checks passwords and CSRF tokens."""

    def __init__(self, ui: Mapping[str, Any]):
        self.ui = ui
        key = _resolve(ui.get("secret"), SECRET_ENV)
        self._signer = URLSafeTimedSerializer(key or secrets.token_hex(32), salt="auditor-ui")
        self.max_age = int(float(ui.get("session_hours") or 12) * 3600)
        self.secure = bool(ui.get("secure_cookies"))

    def password(self) -> str | None:
        """The configured password (read from the environment each time), or None."""
        return _resolve(self.ui.get("password"), PASSWORD_ENV)

    @property
    def enabled(self) -> bool:
        return bool(self.password())

    def check_password(self, given: str) -> bool:
        want = self.password()
        return want is not None and want != "" and hmac.compare_digest(given.encode(), want.encode())

    def session(self, cookie: str | None) -> Session:
        """The session a cookie carries; a new anonymous one when it is missing, forged
        or expired."""
        if cookie:
            try:
                data = self._signer.loads(cookie, max_age=self.max_age)
                if isinstance(data, dict) and isinstance(data.get("csrf"), str):
                    return Session(data.get("user"), data["csrf"])
            except BadSignature:
                pass
        return Session(None, secrets.token_urlsafe(24))

    def cookie(self, session: Session) -> str:
        return self._signer.dumps({"user": session.user, "csrf": session.csrf})

    def cookie_args(self) -> dict[str, Any]:
        return {"key": COOKIE, "max_age": self.max_age, "httponly": True, "samesite": "lax",
                "secure": self.secure, "path": "/"}

    @staticmethod
    def csrf_ok(session: Session, token: object) -> bool:
        """``token`` as a form posted it (a file upload named csrf is no token)."""
        return isinstance(token, str) and token != "" and hmac.compare_digest(
            token.encode(), session.csrf.encode())


def _resolve(value: str | EnvRef | None, env: str) -> str | None:
    if value is not None:
        try:
            return secret_value(value) or None
        except Exception:
            return None
    return os.environ.get(env) or None
