"""A generic JSON webhook, signed with HMAC-SHA256.

POST <url> with the notification as JSON (sorted keys, UTF-8) and headers:

* ``Idempotency-Key``: the notification's key (the same on every retry);
* ``X-Auditor-Timestamp``: Unix seconds when this attempt was signed;
* ``X-Auditor-Signature``: ``sha256=<hex HMAC-SHA256 of "<timestamp>." + body>`` with the
  receiver's ``secret`` (from the environment), when one is configured.

Any 2xx is success; anything else (or no answer within the timeout) is retried.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from datetime import datetime
from typing import Any, Mapping

import httpx

from auditor.alerts.config import Receiver
from auditor.alerts.receivers import DeliveryError, headers, url_of


def sign(secret: str, timestamp: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), timestamp.encode() + b"." + body,
                                hashlib.sha256).hexdigest()


def verify(secret: str, timestamp: str, body: bytes, signature: str) -> bool:
    """What a receiving service does: recompute and compare in constant time."""
    return hmac.compare_digest(sign(secret, timestamp, body), signature)


def send(receiver: Receiver, payload: Mapping[str, Any], timeout: float, now: datetime) -> None:
    from auditor.configtypes import secret_value

    body = json.dumps(payload, sort_keys=True, ensure_ascii=False, default=str).encode()
    ts = str(int(time.time()))
    h = {"Content-Type": "application/json", "User-Agent": "omni-auditor",
         "Idempotency-Key": str(payload["idempotency_key"]), "X-Auditor-Timestamp": ts,
         **headers(receiver)}
    secret = receiver.options.get("secret")
    if secret is not None:
        h["X-Auditor-Signature"] = sign(secret_value(secret), ts, body)
    url, shown = url_of(receiver)
    try:
        r = httpx.post(url, content=body, headers=h, timeout=timeout)
    except httpx.HTTPError as e:
        raise DeliveryError(f"{shown}: {e.__class__.__name__}: "
                            f"{str(e).replace(url, shown)}") from None
    if not 200 <= r.status_code < 300:
        raise DeliveryError(f"{shown}: HTTP {r.status_code}")
