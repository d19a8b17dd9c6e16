"""E-mail through the SMTP server of ``[mail]`` (standard library ``smtplib`` and ``email``).

One function, :func:`send`: a message with an HTML and a plain-text part to a
list of recipients. Alerts use it (:mod:`central.notify`); so can reports.
It blocks for up to ``mail.timeout_s`` per step: call it from a worker thread,
never from ingest or the web server's event loop.
"""

from __future__ import annotations

import smtplib
import ssl
from collections.abc import Sequence
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from central.config import MailConfig
from sync.errors import DeskPulseError


class MailError(DeskPulseError):
    """The message could not be handed to the SMTP server (the reason says why)."""


def message(config: MailConfig, to: Sequence[str], subject: str, html: str, text: str) -> EmailMessage:
    """The message :func:`send` sends: ``From`` ``mail.from``, a plain-text part and an HTML alternative."""
    msg = EmailMessage()
    msg["From"] = config.sender
    msg["To"] = ", ".join(to)
    msg["Subject"] = " ".join(subject.split())
    msg["Date"] = formatdate(localtime=False, usegmt=True)
    domain = config.sender.rsplit("@", 1)[-1].rstrip(">").strip() or "localhost"
    msg["Message-ID"] = make_msgid(domain=domain)
    msg.set_content(text)
    msg.add_alternative(html, subtype="html")
    return msg


def send(config: MailConfig, to: Sequence[str], subject: str, html: str, text: str) -> list[str]:
    """Send one e-mail to ``to`` through ``config``'s server.

    Args:
        config: ``[mail]`` (host, port, security, login).
        to: the recipients' addresses.
        subject: the subject line.
        html: the message as HTML.
        text: the same as plain text (for clients without HTML, and for filters).

    Returns:
        The recipients the server refused while it took the others (empty: all
        taken). Sending again would send the others a second copy.

    Raises:
        MailError: no server configured, no recipient, or the server refused
            the message (or every recipient) or could not be reached (naming
            the server and the reason).
    """
    if config.host is None:
        raise MailError("no SMTP server: add a [mail] table with host (docs/configuration.md)")
    if not to:
        raise MailError("no recipient")
    msg = message(config, to, subject, html, text)
    where = f"SMTP server {config.host}:{config.port} ({config.security})"
    try:
        smtp: smtplib.SMTP
        if config.security == "ssl":
            smtp = smtplib.SMTP_SSL(config.host, config.port, timeout=config.timeout_s,
                                    context=ssl.create_default_context())
        else:
            smtp = smtplib.SMTP(config.host, config.port, timeout=config.timeout_s)
        with smtp:
            if config.security == "starttls":
                smtp.starttls(context=ssl.create_default_context())
            if config.user is not None and config.password is not None:
                smtp.login(config.user, config.password)
            refused = smtp.send_message(msg, to_addrs=list(to))
    except (OSError, smtplib.SMTPException) as exc:
        raise MailError(f"{where}: {type(exc).__name__}: {exc}") from exc
    return sorted(refused)
