"""The passenger's email (issue 16): what is ready, the link, its expiry — text and HTML (pure).

:func:`build_message` turns a :class:`Letter` into an ``email.message.EmailMessage`` (a
``multipart/alternative`` of text and HTML) that aiosmtplib sends or the outbox writes as an
.eml file. Everything the passenger or a ticket put in is treated as data: the name is
collapsed to one line (no header can be injected through it) and HTML-escaped in the HTML
part; the recipient was checked by agents/qr/payload.py `email_problem`.

The Message-ID is derived from the delivery's idempotency key (:func:`message_id`): a message
sent twice after a crash between "sent" and "recorded" carries the same Message-ID, so the
receiving side can tell it is one message (see agents/jobs/deliver_step.py).
"""

from __future__ import annotations

import hashlib
import html
from dataclasses import dataclass, field
from datetime import datetime
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime

__all__ = ["Letter", "build_message", "message_id", "one_line", "sender_domain"]

MAX_NAME_CHARS = 120


@dataclass(frozen=True)
class Letter:
    """What one email says (all plain text; escaping is this module's job)."""

    recipient: str
    sender: str
    passenger: str  # '' when the booking has no name
    dropzone: str
    ready: tuple[str, ...]  # e.g. ("your jump video", "30 photos")
    link: str
    expires_at: datetime
    idempotency_key: str
    notes: tuple[str, ...] = ()  # what is not there and why ("the photos could not be made")
    sent_at: datetime | None = None
    # the Message-ID recorded when the key was first claimed ('' : derived from the key)
    message_id: str = ""
    extra_headers: dict[str, str] = field(default_factory=dict)


def one_line(text: str, limit: int = MAX_NAME_CHARS) -> str:
    """`text` on one line (every run of whitespace, CR/LF included, one space), at most `limit`."""
    cleaned = "".join(ch if ch.isprintable() else " " for ch in text)
    return " ".join(cleaned.split())[:limit].rstrip()


def sender_domain(sender: str) -> str:
    """The domain of a From address ('localhost' when it has none)."""
    domain = sender.rpartition("@")[2].strip().strip(">").lower()
    return domain or "localhost"


def message_id(idempotency_key: str, domain: str) -> str:
    """The Message-ID of the delivery with this key: the same key, the same id, always."""
    digest = hashlib.sha256(idempotency_key.encode()).hexdigest()[:32]
    return f"<skyreel.{digest}@{domain}>"


def _ready_words(ready: tuple[str, ...]) -> str:
    if not ready:
        return "your jump"
    if len(ready) == 1:
        return ready[0]
    return ", ".join(ready[:-1]) + " and " + ready[-1]


def _verb(ready: tuple[str, ...]) -> str:
    """'is' for one thing ("your jump video", "1 photo"), 'are' for more ("12 photos")."""
    return "is" if len(ready) <= 1 and not (ready and ready[0].endswith("s")) else "are"


def _subject(letter: Letter) -> str:
    dz = one_line(letter.dropzone, 100) or "skyreel"
    return one_line(f"{dz}: {_ready_words(letter.ready)} — ready to watch and download", 200)


def _expiry(when: datetime) -> str:
    return when.strftime("%d %B %Y")


def text_body(letter: Letter) -> str:
    name = one_line(letter.passenger)
    dz = one_line(letter.dropzone, 100) or "skyreel"
    lines = [
        f"Hi {name}," if name else "Hi,",
        "",
        f"Thank you for jumping with {dz}! {_ready_words(letter.ready).capitalize()} "
        f"{_verb(letter.ready)} ready:",
        "",
        f"    {letter.link}",
        "",
        f"Watch on your phone or download there. The link works until "
        f"{_expiry(letter.expires_at)}; please download what you want to keep before then.",
    ]
    if letter.notes:
        lines += ["", *(f"Note: {one_line(n, 300)}" for n in letter.notes)]
    lines += ["", "Blue skies,", dz, ""]
    return "\n".join(lines)


def html_body(letter: Letter) -> str:
    name = html.escape(one_line(letter.passenger))
    dz = html.escape(one_line(letter.dropzone, 100) or "skyreel")
    link = html.escape(letter.link, quote=True)
    ready = html.escape(_ready_words(letter.ready).capitalize())
    verb = _verb(letter.ready)
    notes = "".join(
        f'<p style="color:#8a5a00">Note: {html.escape(one_line(n, 300))}</p>' for n in letter.notes
    )
    return (
        '<!doctype html><html><head><meta charset="utf-8"><title>'
        f"{html.escape(_subject(letter))}</title></head>"
        '<body style="font-family:sans-serif;line-height:1.5;max-width:36em;margin:auto">'
        f"<p>{f'Hi {name},' if name else 'Hi,'}</p>"
        f"<p>Thank you for jumping with {dz}! {ready} {verb} ready:</p>"
        f'<p><a href="{link}" style="display:inline-block;padding:.7em 1.2em;'
        'background:#0b5fff;color:#fff;border-radius:6px;text-decoration:none">'
        "Watch and download</a></p>"
        f'<p style="font-size:90%">Or open this address: <a href="{link}">{link}</a></p>'
        f"<p>The link works until {html.escape(_expiry(letter.expires_at))}; please download "
        "what you want to keep before then.</p>"
        f"{notes}<p>Blue skies,<br>{dz}</p></body></html>"
    )


def build_message(letter: Letter) -> EmailMessage:
    """The whole message: headers (Message-ID from the key) and both bodies."""
    msg = EmailMessage(policy=SMTP)
    dz = one_line(letter.dropzone, 100) or "skyreel"
    msg["Subject"] = _subject(letter)
    msg["From"] = f'"{dz.replace(chr(34), "")}" <{letter.sender}>'
    msg["To"] = letter.recipient
    msg["Message-ID"] = one_line(letter.message_id, 300) or message_id(
        letter.idempotency_key, sender_domain(letter.sender)
    )
    if letter.sent_at is not None:
        msg["Date"] = format_datetime(letter.sent_at)
    msg["Auto-Submitted"] = "auto-generated"
    msg["X-Skyreel-Delivery"] = one_line(letter.idempotency_key, 200)
    for key, value in letter.extra_headers.items():
        msg[one_line(key, 60)] = one_line(value, 300)
    msg.set_content(text_body(letter))
    msg.add_alternative(html_body(letter), subtype="html")
    return msg
