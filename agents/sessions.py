"""Group a card's files into jump sessions (pure: frozen dataclasses in, sessions out).

A tandem instructor films the passenger's ticket QR before each jump, so on the card a booking
QR clip *opens* a session that takes the footage after it until the next QR clip. Files are
ordered by capture time (container ``creation_time``, else mtime — the caller decides which it
has), with GoPro chapters of one recording kept together in chapter order.

Rules, in order of the walk:
- footage before any QR clip -> an ``unassigned`` session;
- a decoded booking QR -> a ``decoded`` session; the same booking filmed again right after
  (no footage between) stays one session;
- a QR clip whose code was seen but not decoded -> a ``needs_review`` session holding its footage;
- a QR candidate with no result yet -> a ``pending`` session (grouping is redone when it lands);
- a small candidate clip with no QR at all is ordinary footage.
A booking assigned by hand to a QR clip (``assigned``) counts as decoded, which moves the session
on from ``needs_review`` and lets it merge with a neighbour of the same booking.

Session keys come from the opening QR file id (or the first footage file id for an unassigned
session), so grouping the same card again yields the same keys.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from pathlib import PurePosixPath

from agents.qr.payload import Booking

__all__ = [
    "CardFile",
    "FileKind",
    "GoProName",
    "JumpSession",
    "QrOutcome",
    "SessionStatus",
    "group_sessions",
    "order_files",
    "parse_gopro_name",
]


class FileKind(StrEnum):
    QR_CANDIDATE = "qr_candidate"
    FOOTAGE = "footage"


class QrOutcome(StrEnum):
    """Mirrors ``agents.qr.decode.QrStatus``."""

    DECODED = "decoded"
    UNREADABLE = "unreadable"
    NO_QR = "no_qr"


class SessionStatus(StrEnum):
    DECODED = "decoded"
    UNASSIGNED = "unassigned"
    NEEDS_REVIEW = "needs_review"
    PENDING = "pending"


@dataclass(frozen=True)
class CardFile:
    """One footage file of a card as grouping sees it."""

    file_id: str
    name: str
    relative_path: str
    capture_time: datetime  # container creation_time, else mtime
    kind: FileKind
    qr_status: QrOutcome | None = None  # None: candidate not decoded yet
    booking: Booking | None = None  # set when qr_status is DECODED


@dataclass(frozen=True)
class JumpSession:
    key: str
    status: SessionStatus
    booking: Booking | None
    qr_file_id: str | None
    footage_file_ids: tuple[str, ...]
    # Every QR clip that belongs to the session (the same ticket filmed twice -> two ids).
    qr_file_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class GoProName:
    """``GX020042.MP4`` -> family GX, recording 42, chapter 2 (``GOPR0042`` is chapter 0)."""

    family: str
    recording: int
    chapter: int


_GOPRO_CHAPTERED = re.compile(r"^(G[HXL])(\d{2})(\d{4})\.MP4$", re.IGNORECASE)
_GOPRO_LEGACY_FIRST = re.compile(r"^GOPR(\d{4})\.MP4$", re.IGNORECASE)
_GOPRO_LEGACY_NEXT = re.compile(r"^GP(\d{2})(\d{4})\.MP4$", re.IGNORECASE)


def parse_gopro_name(name: str) -> GoProName | None:
    """Recording and chapter of a GoPro file name, None for anything else."""
    if m := _GOPRO_CHAPTERED.match(name):
        return GoProName(m.group(1).upper(), int(m.group(3)), int(m.group(2)))
    if m := _GOPRO_LEGACY_FIRST.match(name):
        return GoProName("GOPR", int(m.group(1)), 0)
    if m := _GOPRO_LEGACY_NEXT.match(name):
        return GoProName("GOPR", int(m.group(2)), int(m.group(1)))
    return None


def _sort_key(f: CardFile) -> tuple[datetime, str, str]:
    return (f.capture_time, f.relative_path, f.file_id)


def _chapter(f: CardFile) -> int:
    gp = parse_gopro_name(f.name)
    return gp.chapter if gp is not None else 0


def order_files(files: Iterable[CardFile]) -> list[CardFile]:
    """Files by capture time, each GoPro recording's chapters together and in chapter order.

    A recording is placed at its earliest chapter's time; chapters are keyed by folder too,
    because numbering restarts after a card is formatted. If a chapter number repeats within a
    key (names reused), the chapters of that key are left as separate files in time order.
    """
    units: dict[tuple[str, str, int], list[CardFile]] = {}
    singles: list[list[CardFile]] = []
    for f in files:
        gp = parse_gopro_name(f.name)
        if gp is None:
            singles.append([f])
            continue
        folder = str(PurePosixPath(f.relative_path).parent)
        units.setdefault((folder, gp.family, gp.recording), []).append(f)
    groups = list(singles)
    for chapters in units.values():
        numbers = [_chapter(c) for c in chapters]
        if len(set(numbers)) != len(numbers):
            groups.extend([c] for c in chapters)
            continue
        groups.append(sorted(chapters, key=_chapter))
    groups.sort(key=lambda g: min(_sort_key(f) for f in g))
    return [f for g in groups for f in g]


@dataclass
class _Open:
    status: SessionStatus
    booking: Booking | None
    qr_ids: list[str]
    footage: list[str] = field(default_factory=list)

    def freeze(self) -> JumpSession:
        key = f"qr:{self.qr_ids[0]}" if self.qr_ids else f"unassigned:{self.footage[0]}"
        return JumpSession(
            key=key,
            status=self.status,
            booking=self.booking,
            qr_file_id=self.qr_ids[0] if self.qr_ids else None,
            footage_file_ids=tuple(self.footage),
            qr_file_ids=tuple(self.qr_ids),
        )


def _opens_session(
    f: CardFile, assigned: Mapping[str, Booking]
) -> tuple[SessionStatus, Booking | None] | None:
    """How ``f`` opens a session, or None when it is ordinary footage."""
    if f.kind is not FileKind.QR_CANDIDATE:
        return None
    if f.file_id in assigned:
        return SessionStatus.DECODED, assigned[f.file_id]
    if f.qr_status is QrOutcome.DECODED and f.booking is not None:
        return SessionStatus.DECODED, f.booking
    if f.qr_status is QrOutcome.UNREADABLE or (
        f.qr_status is QrOutcome.DECODED and f.booking is None
    ):
        return SessionStatus.NEEDS_REVIEW, None
    if f.qr_status is None:
        return SessionStatus.PENDING, None
    return None  # NO_QR: a short clip of something else


def _same_ticket(current: _Open, status: SessionStatus, booking: Booking | None) -> bool:
    if current.status is SessionStatus.DECODED and status is SessionStatus.DECODED:
        assert current.booking is not None and booking is not None
        return current.booking.booking_id == booking.booking_id
    pair = {current.status, status}
    return pair == {SessionStatus.DECODED, SessionStatus.NEEDS_REVIEW}


def group_sessions(
    files: Iterable[CardFile], assigned: Mapping[str, Booking] | None = None
) -> list[JumpSession]:
    """Jump sessions of one card, in capture order. ``assigned``: QR file id -> hand-set booking."""
    manual = assigned or {}
    sessions: list[_Open] = []
    current: _Open | None = None
    for f in order_files(files):
        opening = _opens_session(f, manual)
        if opening is None:
            if current is None:
                current = _Open(SessionStatus.UNASSIGNED, None, [])
                sessions.append(current)
            current.footage.append(f.file_id)
            continue
        status, booking = opening
        if current is not None and not current.footage and _same_ticket(current, status, booking):
            # The ticket filmed again before any footage: one session. A failed take next to a
            # decoded one is taken as the same ticket, so no empty review session is left over.
            current.qr_ids.append(f.file_id)
            if current.status is SessionStatus.NEEDS_REVIEW:
                current.status, current.booking = status, booking
            continue
        current = _Open(status, booking, [f.file_id])
        sessions.append(current)
    return [s.freeze() for s in sessions]
