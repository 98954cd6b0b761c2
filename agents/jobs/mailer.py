"""Sending one built message (issue 16): through SMTP (aiosmtplib) or into the outbox folder.

With SKYREEL_SMTP_HOST empty (the embedded default) a message is written atomically to
``<data_dir>/outbox/<file>.eml`` instead, so the demo shows the whole flow without a mail
server. SMTP failures are sorted into what a retry may fix (:class:`MailRetry`: the server
down or busy, a 4xx, a login refused — the operator can fix the settings while the step waits)
and what it cannot (:class:`MailRefused`: a 5xx for this recipient or message); each says what
to do.
"""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path

import aiosmtplib

from streams.settings import Settings

OUTBOX = "outbox"
_UNSAFE = re.compile(r"[^A-Za-z0-9._+-]+")


class MailRetry(Exception):
    """Sending failed in a way a later attempt may not (retryable)."""


class MailRefused(Exception):
    """The server refused this message or recipient for good (permanent)."""


@dataclass(frozen=True)
class Sent:
    how: str  # "smtp" | "outbox"
    detail: str  # the server's answer, or the outbox file's path
    outbox_file: str | None = None


def smtp_configured(settings: Settings) -> bool:
    return bool(settings.smtp_host.strip())


def sender(settings: Settings) -> str:
    return settings.smtp_from.strip() or "skyreel@localhost"


def outbox_dir(settings: Settings) -> Path:
    return Path(settings.data_dir) / OUTBOX


def outbox_name(booking_id: str, key: str) -> str:
    """``<booking>-<what>.eml`` for the key ``<booking>/<what>`` (safe as a file name)."""
    what = key.split("/", 1)[1] if "/" in key else key
    return f"{_UNSAFE.sub('_', booking_id)}-{_UNSAFE.sub('_', what)}.eml"[:200]


def write_outbox(folder: Path, name: str, message: EmailMessage) -> Path:
    """Write the message atomically (a reader never sees half of it); blocking."""
    folder.mkdir(parents=True, exist_ok=True)
    dest = folder / name
    fd, tmp = tempfile.mkstemp(prefix=".", suffix=".eml.tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(message.as_bytes())
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return dest


def _port(settings: Settings) -> int:
    if settings.smtp_port:
        return settings.smtp_port
    return {"ssl": 465, "starttls": 587}.get(settings.smtp_security, 25)


def _where(settings: Settings) -> str:
    return f"{settings.smtp_host}:{_port(settings)}"


def explain(exc: Exception, settings: Settings) -> MailRetry | MailRefused:
    """An aiosmtplib (or socket) error as what happened and what to do."""
    where = _where(settings)
    if isinstance(exc, aiosmtplib.SMTPAuthenticationError):
        return MailRetry(
            f"SMTP {exc.code} authentication failed at {where}: check SKYREEL_SMTP_USERNAME/"
            f"PASSWORD ({exc.message.strip()[:200]})"
        )
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused) and exc.recipients:
        first = exc.recipients[0]
        return explain(first, settings)
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        what = f"SMTP {exc.code} from {where}: {exc.message.strip()[:300]}"
        if exc.code == 530:  # authentication required
            return MailRetry(f"{what}; set SKYREEL_SMTP_USERNAME/PASSWORD")
        if 500 <= exc.code < 600:
            if isinstance(exc, aiosmtplib.SMTPRecipientRefused):
                return MailRefused(
                    f"{what} (the recipient {exc.recipient} was refused): correct the booking's "
                    "email (skyreel assign ... --email), then resend"
                )
            return MailRefused(f"{what}: the message was refused; see the server's reason")
        return MailRetry(f"{what} (temporary; trying again)")
    if isinstance(exc, aiosmtplib.SMTPException | OSError | TimeoutError):
        return MailRetry(
            f"SMTP server {where} not reachable or not answering ({exc}); check "
            "SKYREEL_SMTP_HOST/PORT/SECURITY and that the server is up (trying again)"
        )
    return MailRetry(f"sending through {where} failed: {exc!r}")


async def send_smtp(settings: Settings, message: EmailMessage, recipient: str) -> Sent:
    """Send through the configured server; raises MailRetry or MailRefused."""
    security = settings.smtp_security
    try:
        _, answer = await aiosmtplib.send(
            message,
            sender=sender(settings),
            recipients=[recipient],
            hostname=settings.smtp_host.strip(),
            port=_port(settings),
            username=settings.smtp_username or None,
            password=settings.smtp_password.get_secret_value() or None,
            use_tls=security == "ssl",
            start_tls=None if security == "starttls" else False,
            timeout=settings.smtp_timeout_s,
        )
    except Exception as exc:  # every failure is explained, none escapes unsorted
        raise explain(exc, settings) from exc
    return Sent("smtp", f"{_where(settings)}: {answer.strip()[:200]}")
