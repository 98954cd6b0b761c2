"""Whose an execution is, in the columns `skyreel status` and `skyreel executions` print: the
booking, the passenger, when the jump was filmed and the card — what an operator knows a jump by —
with the internal key (``card-A:3``, ``jump:card-A:3``) left to a trailing id column."""

from __future__ import annotations

import re
import unicodedata
from datetime import UTC, datetime

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")

#: column titles and widths, in print order (the id column follows them)
COLUMNS = (("booking", 12), ("passenger", 22), ("captured (UTC)", 16), ("card", 12))


def plain(text: str) -> str:
    """Names and reasons come from cards and tickets: no escape sequence reaches the terminal."""
    return _CONTROL.sub(lambda c: f"\\x{ord(c.group()):02x}", text)


def _fit(text: str, width: int) -> str:
    """`text` cut to `width` characters (an ellipsis marks the cut) and padded to it."""
    text = unicodedata.normalize("NFC", text)
    if len(text) > width:
        text = text[: width - 1] + "…"
    return text.ljust(width)


def captured(when: datetime | None) -> str:
    """A capture time as the camera had it (no zone on cards: kept as UTC), to the minute."""
    if when is None:
        return "-"
    when = when if when.tzinfo else when.replace(tzinfo=UTC)
    return when.astimezone(UTC).strftime("%Y-%m-%d %H:%M")


def whose(
    booking_id: str | None,
    passenger: str | None,
    capture_start: datetime | None,
    card_id: str | None,
) -> str:
    """The booking, passenger, capture time and card columns of one execution."""
    if passenger and passenger.strip():
        who = passenger.strip()
    else:
        who = "(no name)" if booking_id else "-"
    values = (booking_id or "-", who, captured(capture_start), card_id or "-")
    return " ".join(_fit(plain(v), w) for v, (_, w) in zip(values, COLUMNS, strict=True))


def header() -> str:
    return " ".join(title.ljust(w) for title, w in COLUMNS)
