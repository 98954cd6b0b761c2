"""How long a booking's media and personal data are kept, and what is due to go (pure).

Two periods, per booking (all jump sessions of one ``booking_id``):

- media (``retention_media_days``, default 30): the videos, photos and share copies go that long
  after the booking was delivered, i.e. after the latest publish of its jumps. A booking with a
  jump not delivered yet keeps its media (the personal period still applies to it).
- personal data (``retention_personal_days``, default 90): everything goes, name and email too,
  that long after the booking's newest jump was recorded (its session created).

0 days means never automatically (a purge on request still works). A personal purge includes the
media purge; what was purged already is not due again.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from urllib.parse import quote, quote_plus


class PurgeReason(StrEnum):
    """``purge_record.reason``."""

    RETENTION_MEDIA = "retention-media"
    RETENTION_PERSONAL = "retention-personal"
    REQUEST = "request"


class PurgeScope(StrEnum):
    MEDIA = "media"  # files: outputs, stills, share copies
    ALL = "all"  # files, then names and emails, links revoked


def scope_of(reason: PurgeReason) -> PurgeScope:
    return PurgeScope.MEDIA if reason is PurgeReason.RETENTION_MEDIA else PurgeScope.ALL


@dataclass(frozen=True)
class SessionTimes:
    """What the rules need of one jump session."""

    booking_id: str
    created_at: datetime
    delivered_at: datetime | None
    media_purged_at: datetime | None = None
    personal_purged_at: datetime | None = None


@dataclass(frozen=True)
class Due:
    booking_id: str
    reason: PurgeReason
    since: datetime  # when it became due


def _booking_due(
    sessions: Sequence[SessionTimes], now: datetime, media_days: int, personal_days: int
) -> Due | None:
    booking = sessions[0].booking_id
    if personal_days > 0 and any(s.personal_purged_at is None for s in sessions):
        since = max(s.created_at for s in sessions) + timedelta(days=personal_days)
        if now >= since:
            return Due(booking, PurgeReason.RETENTION_PERSONAL, since)
    if media_days <= 0 or all(s.media_purged_at is not None for s in sessions):
        return None
    open_ = [s for s in sessions if s.media_purged_at is None]
    if any(s.delivered_at is None for s in open_):
        return None  # a jump not delivered yet: its passenger has not had it
    delivered = [s.delivered_at for s in open_ if s.delivered_at is not None]
    since = max(delivered) + timedelta(days=media_days)
    return Due(booking, PurgeReason.RETENTION_MEDIA, since) if now >= since else None


def due_purges(
    sessions: Iterable[SessionTimes], now: datetime, *, media_days: int, personal_days: int
) -> list[Due]:
    """The bookings due for a purge at ``now``, longest due first (days < 0 count as 0)."""
    by_booking: dict[str, list[SessionTimes]] = {}
    for s in sessions:
        by_booking.setdefault(s.booking_id, []).append(s)
    found = [
        d
        for group in by_booking.values()
        if (d := _booking_due(group, now, max(0, media_days), max(0, personal_days)))
    ]
    return sorted(found, key=lambda d: (d.since, d.booking_id))


def name_slug(name: str) -> str:
    """The passenger's name as it appears in an output name (agents/render/identity.py)."""
    text = unicodedata.normalize("NFKC", name)
    kept = "".join(ch if ch.isalnum() else "-" for ch in text)
    return "-".join(part for part in kept.split("-") if part)[:60].strip("-")


#: What a replaced name or email becomes; a name in a file name becomes REDACTED_SLUG.
REDACTED = "[purged]"
REDACTED_SLUG = "purged"

_MIN_NEEDLE = 2  # a one-letter "name" would rewrite every word


def needles(names: Iterable[str], emails: Iterable[str]) -> list[tuple[str, str]]:
    """(text to find, what it becomes) for every form of the booking's personal data: the name,
    its output-name slug and URL-encoded forms, the email; longest first."""
    out: dict[str, str] = {}
    for name in names:
        n = " ".join(name.split())
        forms = (
            (name.strip(), REDACTED),
            (n, REDACTED),
            (name_slug(n), REDACTED_SLUG),
            (quote_plus(n), REDACTED_SLUG),  # in a ticket's URL, a query string
            (quote(n), REDACTED_SLUG),
        )
        for form, by in forms:
            if len(form) >= _MIN_NEEDLE and form not in (REDACTED, REDACTED_SLUG):
                out.setdefault(form, by)
    for email in emails:
        e = email.strip()
        if len(e) >= _MIN_NEEDLE:
            out.setdefault(e, REDACTED)
    return sorted(out.items(), key=lambda kv: (-len(kv[0]), kv[0]))


_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


def booking_token(booking_id: str) -> str:
    """The booking id as it appears in file names (outbox messages, output folders)."""
    return _SAFE.sub("", booking_id).strip(".")[:64]
