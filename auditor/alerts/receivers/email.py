"""Email over SMTP: one message per notification, with a text and an HTML part.

The Message-ID is derived from the idempotency key (``<KEY@omni-auditor>``), so a
mail system (or a person) can tell a retry from a new notification.
"""

from __future__ import annotations

import smtplib
import ssl
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Any, Mapping

from auditor.alerts import messages
from auditor.alerts.config import Receiver
from auditor.alerts.receivers import DeliveryError


def build(receiver: Receiver, payload: Mapping[str, Any], now: datetime) -> EmailMessage:
    o = receiver.options
    msg = EmailMessage()
    msg["Subject"] = messages.subject(payload).replace("\n", " ")
    msg["From"] = o["from"]
    msg["To"] = ", ".join(o["to"])
    msg["Date"] = format_datetime(now)
    msg["Message-ID"] = f"<{payload['idempotency_key']}@omni-auditor>"
    msg["X-Idempotency-Key"] = str(payload["idempotency_key"])
    msg.set_content(messages.text(payload))
    msg.add_alternative(messages.html_body(payload), subtype="html")
    return msg


def send(receiver: Receiver, payload: Mapping[str, Any], timeout: float, now: datetime) -> None:
    from auditor.configtypes import secret_value

    o = receiver.options
    msg = build(receiver, payload, now)
    try:
        if o.get("ssl"):
            smtp: smtplib.SMTP = smtplib.SMTP_SSL(o["host"], o.get("port") or 465,
                                                 timeout=timeout,
                                                 context=ssl.create_default_context())
        else:
            smtp = smtplib.SMTP(o["host"], o.get("port") or 25, timeout=timeout)
        with smtp:
            if o.get("starttls"):
                smtp.starttls(context=ssl.create_default_context())
            if o.get("username") is not None:
                smtp.login(secret_value(o["username"]), secret_value(o["password"]))
            smtp.send_message(msg)
    except (OSError, smtplib.SMTPException) as e:
        raise DeliveryError(f"smtp {o['host']}:{o.get('port')}: {e.__class__.__name__}: {e}"
                            ) from None
