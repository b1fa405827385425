"""Receivers: one function per type, ``send(receiver, payload, timeout, now)``.

Each raises on failure (the outbox retries with backoff) and returns on success.
Every notification carries its idempotency key where the receiver can see it: the
``Idempotency-Key`` header and ``idempotency_key`` field (webhook), an annotation
(Alertmanager, whose alerts are idempotent by their labels anyway), the Message-ID
(email) and the last line of the text (Apprise).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Callable, Mapping

from auditor.alerts.config import Receiver

SendFn = Callable[[Receiver, Mapping[str, Any], float, datetime], None]


class DeliveryError(Exception):
    """A receiver refused or could not take a notification (retried later)."""


def sender(rtype: str) -> SendFn:
    """The send function of a receiver type."""
    if rtype == "webhook":
        from auditor.alerts.receivers.webhook import send
    elif rtype == "alertmanager":
        from auditor.alerts.receivers.alertmanager import send
    elif rtype == "email":
        from auditor.alerts.receivers.email import send
    elif rtype == "apprise":
        from auditor.alerts.receivers.apprise import send
    else:
        from auditor import plugins

        plugin = plugins.receivers().get(rtype)
        if plugin is None or not callable(getattr(plugin, "send", None)):
            raise DeliveryError(f"unknown receiver type {rtype!r}")
        return plugin.send  # type: ignore[no-any-return]
    return send




def headers(receiver: Receiver) -> dict[str, str]:
    """A receiver's configured extra headers, secrets resolved from the environment."""
    from auditor.configtypes import secret_value

    out = {}
    for k, v in (receiver.options.get("headers") or {}).items():
        if isinstance(v, dict) and set(v) == {"env"}:
            from auditor.configtypes import EnvRef

            v = EnvRef(v["env"])
        out[str(k)] = secret_value(v)
    return out


def url_of(receiver: Receiver) -> tuple[str, str]:
    """The receiver's URL, and how to name it in errors and logs (an URL from the
    environment is named by its variable, never shown)."""
    from auditor.configtypes import EnvRef, secret_value

    raw = receiver.options["url"]
    if isinstance(raw, EnvRef):
        return secret_value(raw).rstrip("/"), f"${raw.name}"
    return raw, _without_query(raw)


def _without_query(url: str) -> str:
    """``url`` as errors and logs show it: a query (``?token=...``) is left out, it often
    carries a token (a URL that holds one belongs in ``{ env = ... }``)."""
    from urllib.parse import urlsplit, urlunsplit

    try:
        p = urlsplit(url)
    except ValueError:
        return "<the receiver's url>"
    return urlunsplit((p.scheme, p.netloc, p.path, "…" if p.query else "", ""))
