"""Apprise: Slack, Discord, ntfy, PagerDuty, Teams (``workflows://``), email and the
rest Apprise speaks, through one URL per service. The URLs hold the services' tokens,
so they come from environment variables (``urls = { env = "NAME" }``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Mapping

from auditor.alerts import messages
from auditor.alerts.config import Receiver
from auditor.alerts.receivers import DeliveryError


def send(receiver: Receiver, payload: Mapping[str, Any], timeout: float, now: datetime) -> None:
    import apprise

    from auditor.configtypes import secret_value

    ap = apprise.Apprise()
    for ref in receiver.options.get("urls") or []:
        if not ap.add(secret_value(ref)):
            raise DeliveryError(f"receiver {receiver.name}: Apprise does not understand the URL "
                                f"in {getattr(ref, 'name', 'the config')}")
    if not len(ap):
        raise DeliveryError(f"receiver {receiver.name}: no Apprise URL")
    ok = ap.notify(title=messages.subject(payload), body=messages.text(payload),
                   body_format=apprise.NotifyFormat.TEXT)
    if not ok:
        raise DeliveryError(f"receiver {receiver.name}: Apprise could not notify every URL")
