"""Group a card's files into jump sessions (pure: frozen dataclasses in, sessions out).

A tandem instructor films the passenger's ticket QR before each jump, so on the card a booking
QR clip *opens* a session that takes the footage after it until the next QR clip. Files are
walked in the order the camera recorded them (``agents/recording.py``: the camera's file counter,
chapters together; capture time only where there is no counter), and capture times tell jumps
apart where the clock can be believed.

Rules, in order of the walk. When skyreel is not sure, a person decides: never guess a passenger.
- footage before any QR clip -> an ``unassigned`` session;
- footage more than the policy's gap (a load cycle, default 20 minutes) after the clip before it
  starts a ``needs_review`` session ("footage after a 40-minute gap, no booking"): a missed
  ticket must not hand the next jump to the previous passenger. A clock that contradicts the
  recording order is reported, never read as a gap;
- a decoded booking QR -> a ``decoded`` session; the same booking filmed again right after
  (no footage between) stays one session, and every QR clip of it is claimed;
- a QR clip whose code was seen but not decoded -> a ``needs_review`` session holding its footage;
- a QR candidate with no result yet -> a ``pending`` session (grouping is redone when it lands);
- a candidate clip that could not be read at all (``unreadable`` reason: the probe or decoder
  failed on it) may have been a ticket: the footage after it goes to ``needs_review``; if no
  footage follows it before the next ticket, it is left out of the previous session with a
  warning instead;
- a short candidate clip (by its duration; by size when that is unknown) with no QR at all is
  ordinary footage.
A booking assigned by hand to a QR clip (``assigned``) counts as decoded, which moves the session
on from ``needs_review`` and lets it merge with a neighbour of the same booking.

Session keys come from the opening QR file id (``qr:``), the first footage file id of an
unassigned session (``unassigned:``) or of footage after a gap (``gap:``), so grouping the same
card again yields the same keys.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import PurePosixPath

from agents.qr.payload import Booking
from agents.recording import (
    ClockPolicy,
    GoProName,
    StepKind,
    camera_counter,
    describe,
    order_recordings,
    parse_gopro_name,
    steps_between,
)
from storage.enums import FileKind, SessionStatus
from storage.enums import QrStatus as QrOutcome

__all__ = [
    "CardFile",
    "ClockPolicy",
    "FileKind",
    "GoProName",
    "Grouping",
    "JumpSession",
    "QrOutcome",
    "SessionStatus",
    "closed_sessions",
    "group_card",
    "group_sessions",
    "order_files",
    "parse_gopro_name",
]


@dataclass(frozen=True)
class CardFile:
    """One footage file of a card as grouping sees it."""

    file_id: str
    name: str
    relative_path: str
    capture_time: datetime  # when recording started: container creation_time, else estimated
    kind: FileKind
    qr_status: QrOutcome | None = None  # None: candidate not decoded yet
    booking: Booking | None = None  # set when qr_status is DECODED
    end_time: datetime | None = None  # when recording ended (the card's mtime), if known
    duration_s: float | None = None
    unreadable: str = ""  # why the clip could not be read at all ('' when it could)


@dataclass(frozen=True)
class JumpSession:
    key: str
    status: SessionStatus
    booking: Booking | None
    qr_file_id: str | None
    footage_file_ids: tuple[str, ...]
    # Every QR clip that belongs to the session (the same ticket filmed twice -> two ids).
    qr_file_ids: tuple[str, ...] = ()
    # Clips claimed by the session that cannot be rendered (could not be read).
    unreadable_file_ids: tuple[str, ...] = ()
    review_reason: str = ""  # why a person must decide ('' for a decoded session)
    warnings: tuple[str, ...] = ()
    capture_start: datetime | None = None

    @property
    def file_ids(self) -> tuple[str, ...]:
        """Every clip the session claims."""
        return (*self.qr_file_ids, *self.footage_file_ids, *self.unreadable_file_ids)


@dataclass(frozen=True)
class Grouping:
    sessions: tuple[JumpSession, ...]
    clock_warnings: tuple[str, ...] = ()


def order_files(files: Iterable[CardFile]) -> list[CardFile]:
    """Files in recording order, each GoPro recording's chapters together in chapter order."""
    out: list[CardFile] = []
    for r in order_recordings(files):
        out.extend(c for c in r.clips if isinstance(c, CardFile))
    return out


_BEFORE_ANY_TICKET = "footage before any QR ticket on this card: assign a booking"
_TICKET_UNREADABLE = "the QR clip could not be read: assign the booking"


@dataclass
class _Open:
    status: SessionStatus
    booking: Booking | None
    qr_ids: list[str]
    key_prefix: str = "qr"
    reason: str = ""
    footage: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    starts: list[datetime] = field(default_factory=list)
    suspect: bool = False  # opened by a clip that could not be read
    after_gap: bool = False  # opened after a gap (nothing before it to fall back to)

    def freeze(self) -> JumpSession:
        if self.qr_ids:
            key = f"qr:{self.qr_ids[0]}"
        elif self.footage:
            key = f"{self.key_prefix}:{self.footage[0]}"
        else:
            key = f"{self.key_prefix}:{self.unreadable[0]}"
        return JumpSession(
            key=key,
            status=self.status,
            booking=self.booking,
            qr_file_id=self.qr_ids[0] if self.qr_ids else None,
            footage_file_ids=tuple(self.footage),
            qr_file_ids=tuple(self.qr_ids),
            unreadable_file_ids=tuple(self.unreadable),
            review_reason=self.reason if self.status is not SessionStatus.DECODED else "",
            warnings=tuple(dict.fromkeys(self.warnings)),
            capture_start=min(self.starts) if self.starts else None,
        )


class _Ticket:
    """How a QR candidate opens a session."""

    def __init__(self, status: SessionStatus, booking: Booking | None, reason: str = "") -> None:
        self.status, self.booking, self.reason = status, booking, reason


def _opens_session(f: CardFile, assigned: Mapping[str, Booking]) -> _Ticket | None:
    """How ``f`` opens a session, or None when it is ordinary footage."""
    if f.kind is not FileKind.QR_CANDIDATE:
        return None
    if f.file_id in assigned:
        return _Ticket(SessionStatus.DECODED, assigned[f.file_id])
    if f.qr_status is QrOutcome.DECODED and f.booking is not None:
        return _Ticket(SessionStatus.DECODED, f.booking)
    if f.unreadable:
        return None  # handled by the walk: it may have been a ticket
    if f.qr_status is QrOutcome.UNREADABLE or (
        f.qr_status is QrOutcome.DECODED and f.booking is None
    ):
        return _Ticket(SessionStatus.NEEDS_REVIEW, None, _TICKET_UNREADABLE)
    if f.qr_status is None:
        return _Ticket(SessionStatus.PENDING, None, "the QR clip is still being read")
    return None  # NO_QR: a short clip of something else


def _same_ticket(current: _Open, ticket: _Ticket) -> bool:
    """Whether `ticket` is `current`'s ticket filmed again: the same booking, or a failed take
    (no booking) next to a decoded one. Two bookings are two passengers, also when the session
    waits for review (an unreadable clip right after its ticket): never a takeover."""
    if current.suspect:
        return False
    if current.booking is not None and ticket.booking is not None:
        return current.booking.booking_id == ticket.booking.booking_id
    pair = {current.status, ticket.status}
    return pair == {SessionStatus.DECODED, SessionStatus.NEEDS_REVIEW}


class _Walk:
    """The grouping walk's state: sessions so far and the one that takes footage now."""

    def __init__(self, assigned: Mapping[str, Booking]) -> None:
        self.assigned = assigned
        self.sessions: list[_Open] = []
        self.current: _Open | None = None

    def open(self, session: _Open) -> _Open:
        self._settle_suspect()
        self.sessions.append(session)
        self.current = session
        return session

    def _settle_suspect(self) -> None:
        """A clip that could not be read, with no footage after it, was not a ticket that
        matters: it is left out of the session before it (with a warning) instead."""
        cur = self.current
        if cur is None or not cur.suspect or cur.footage or cur.qr_ids:
            return
        previous = self.sessions[-2] if len(self.sessions) > 1 else None
        if previous is None or cur.after_gap:
            return
        self.sessions.pop()
        previous.unreadable.extend(cur.unreadable)
        previous.warnings.extend(cur.warnings)
        previous.starts.extend(cur.starts)
        self.current = previous

    def finish(self) -> list[JumpSession]:
        self._settle_suspect()
        return [s.freeze() for s in self.sessions]

    def footage(self, f: CardFile, gap: str) -> None:
        cur = self.current
        if cur is None:
            cur = self.open(
                _Open(SessionStatus.UNASSIGNED, None, [], "unassigned", _BEFORE_ANY_TICKET)
            )
        elif gap:
            cur = self.open(
                _Open(
                    SessionStatus.NEEDS_REVIEW,
                    None,
                    [],
                    "gap",
                    f"footage after a {gap} gap, no booking: a ticket may have been missed",
                )
            )
        cur.footage.append(f.file_id)
        cur.starts.append(f.capture_time)

    def ticket(self, f: CardFile, t: _Ticket, gap: str) -> None:
        cur = self.current
        if cur is not None and not cur.footage and not gap and _same_ticket(cur, t):
            # The ticket filmed again before any footage: one session, every take claimed. A
            # failed take next to a decoded one is taken as the same ticket.
            cur.qr_ids.append(f.file_id)
            cur.starts.append(f.capture_time)
            if cur.status is SessionStatus.NEEDS_REVIEW and t.status is SessionStatus.DECODED:
                cur.status, cur.booking = t.status, t.booking
            return
        opened = self.open(_Open(t.status, t.booking, [f.file_id], reason=t.reason))
        opened.starts.append(f.capture_time)

    def suspect(self, f: CardFile, gap: str) -> None:
        name = PurePosixPath(f.relative_path).name
        cur = self.current
        warning = f"{name} left out: could not be read ({f.unreadable})"
        if cur is not None and not cur.suspect and cur.qr_ids and not cur.footage and not gap:
            # Right after a ticket: a retake of it, or another passenger's ticket. Unsure.
            cur.unreadable.append(f.file_id)
            cur.warnings.append(warning)
            cur.starts.append(f.capture_time)
            cur.status = SessionStatus.NEEDS_REVIEW
            cur.reason = (
                f"{name} right after the ticket could not be read; it may have been another "
                "passenger's ticket: confirm the booking"
            )
            return
        opened = self.open(
            _Open(
                SessionStatus.NEEDS_REVIEW,
                None,
                [],
                "suspect",
                f"{name} could not be read ({f.unreadable}); it may have been a ticket: the "
                "footage after it needs a booking",
                suspect=True,
                after_gap=bool(gap),
            )
        )
        opened.unreadable.append(f.file_id)
        opened.warnings.append(warning)
        opened.starts.append(f.capture_time)


def group_card(
    files: Iterable[CardFile],
    assigned: Mapping[str, Booking] | None = None,
    policy: ClockPolicy | None = None,
) -> Grouping:
    """Jump sessions of one card in recording order, and what looked wrong with its clock.

    ``assigned``: QR file id -> hand-set booking.
    """
    walk = _Walk(assigned or {})
    recordings = order_recordings(files)
    steps = steps_between(recordings, policy or ClockPolicy())
    clock: list[str] = []
    for recording, step in zip(recordings, steps, strict=True):
        gap = describe(step.delta) if step.kind is StepKind.GAP else ""
        if step.kind is StepKind.CLOCK:
            clock.append(step.warning)
        for i, clip in enumerate(recording.clips):
            assert isinstance(clip, CardFile)
            first_gap = gap if i == 0 else ""
            ticket = _opens_session(clip, walk.assigned)
            if ticket is not None:
                walk.ticket(clip, ticket, first_gap)
            elif clip.kind is FileKind.QR_CANDIDATE and clip.unreadable:
                walk.suspect(clip, first_gap)
            else:
                walk.footage(clip, first_gap)
            if step.kind is StepKind.CLOCK and i == 0 and walk.current is not None:
                walk.current.warnings.append(step.warning)
    return Grouping(tuple(walk.finish()), tuple(dict.fromkeys(clock)))


def group_sessions(
    files: Iterable[CardFile],
    assigned: Mapping[str, Booking] | None = None,
    policy: ClockPolicy | None = None,
) -> list[JumpSession]:
    """Jump sessions of one card, in recording order. ``assigned``: QR file id -> booking."""
    return list(group_card(files, assigned, policy).sessions)


# --- earlier renders (issue 18): the sessions already closed while QR clips are still read ------


def _undecided(f: CardFile, assigned: Mapping[str, Booking]) -> bool:
    """A QR candidate whose probe or decode has not finished (no result yet)."""
    t = _opens_session(f, assigned)
    return t is not None and t.status is SessionStatus.PENDING


def closed_sessions(
    files: Iterable[CardFile],
    assigned: Mapping[str, Booking] | None = None,
    policy: ClockPolicy | None = None,
) -> Grouping:
    """The sessions of :func:`group_card` that no QR candidate still being read can change.

    The walk is cut before every decided ticket (a decoded or seen-but-undecoded QR clip) that
    follows ordinary footage: that ticket always opens a new session and nothing after it ever
    touches a session before it, so the clips between two cuts (or a cut and the listing's end)
    are grouped the same whatever happens elsewhere. A span holding a candidate with no result
    yet stays open (a retake, a failed take, a clip with no QR at all: each would group its span
    differently), and so do the sessions around it. Cuts are only ever added as results land,
    so a span closed now is a span of the final grouping, with the same sessions.

    Clips without a camera counter are ordered by capture time, which a candidate's probe may
    still change: while such a candidate is undecided nothing is closed.
    """
    assigned = assigned or {}
    listed = list(files)
    if any(_undecided(f, assigned) and camera_counter(f.relative_path) is None for f in listed):
        return Grouping(())
    grouping = group_card(listed, assigned, policy)
    left_open: set[str] = set()
    span: list[str] = []
    undecided = after_footage = False
    for clip in order_files(listed):
        ticket = _opens_session(clip, assigned)
        decided_ticket = ticket is not None and ticket.status is not SessionStatus.PENDING
        if decided_ticket and after_footage:
            if undecided:
                left_open.update(span)
            span, undecided = [], False
        span.append(clip.file_id)
        undecided = undecided or _undecided(clip, assigned)
        after_footage = ticket is None and not (
            clip.kind is FileKind.QR_CANDIDATE and clip.unreadable
        )
    if undecided:
        left_open.update(span)
    closed = tuple(s for s in grouping.sessions if left_open.isdisjoint(s.file_ids))
    return Grouping(closed, grouping.clock_warnings)
