"""Email over SMTP: one message with a plain-text and an HTML part and attachments.

Settings come from the config's ``[smtp]`` table, shared by every sender (the weekly
report, email alert receivers); the password comes from the environment.
"""

from __future__ import annotations

import smtplib
import ssl
from email.message import EmailMessage
from email.utils import make_msgid
from typing import Any, Mapping, Sequence

from auditor.config import secret_value
from auditor.errors import AuditorError


def build_message(smtp: Mapping[str, Any], to: Sequence[str], subject: str, text: str,
                  html: str | None = None,
                  attachments: Sequence[tuple[str, bytes, str]] = ()) -> EmailMessage:
    """The message: text first, HTML as the alternative, then the attachments."""
    sender = smtp.get("sender")
    if not sender:
        raise AuditorError("[smtp].sender is not set: the From address of the email")
    if not to:
        raise AuditorError("no recipient: set [report].email_to (or pass --to)")
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = ", ".join(to)
    msg["Subject"] = subject.replace("\r", " ").replace("\n", " ")
    domain = sender.rsplit("@", 1)[-1].strip("> ") or None
    msg["Message-ID"] = make_msgid(domain=domain)
    msg.set_content(text)
    if html is not None:
        msg.add_alternative(html, subtype="html")
    for name, data, mime in attachments:
        maintype, _, subtype = mime.partition("/")
        msg.add_attachment(data, maintype=maintype, subtype=subtype or "octet-stream",
                           filename=name)
    return msg


def send(smtp: Mapping[str, Any], msg: EmailMessage) -> None:
    """Send ``msg`` through the configured server; a clear error when it cannot."""
    host = smtp.get("host")
    if not host:
        raise AuditorError("[smtp].host is not set: the SMTP server to send through")
    port = int(smtp.get("port") or 587)
    security = smtp.get("security") or "starttls"
    timeout = float(smtp.get("timeout") or 30)
    try:
        if security == "tls":
            conn: smtplib.SMTP = smtplib.SMTP_SSL(host, port, timeout=timeout,
                                                  context=ssl.create_default_context())
        else:
            conn = smtplib.SMTP(host, port, timeout=timeout)
        with conn:
            if security == "starttls":
                conn.starttls(context=ssl.create_default_context())
            user, password = smtp.get("username"), smtp.get("password")
            if user and password:
                conn.login(secret_value(user), secret_value(password))
            conn.send_message(msg)
    except (OSError, smtplib.SMTPException) as e:
        raise AuditorError(f"could not send email through {host}:{port}: {e}") from None
