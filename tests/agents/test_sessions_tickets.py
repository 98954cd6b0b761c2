"""Two passengers' tickets with a clip between them that could not be read (issue 18 review):
the second ticket never takes over the first passenger's session; a person decides. Pure."""

from __future__ import annotations

from sessions_cases import BK_A, BK_B, clip, ticket

from agents.sessions import FileKind, SessionStatus, group_sessions


def test_another_passengers_ticket_after_an_unreadable_clip_opens_its_own_session() -> None:
    files = [
        ticket(1, 0, BK_A),
        clip(2, 1, FileKind.QR_CANDIDATE, unreadable="the QR decoder failed on it"),
        ticket(3, 2, BK_B),  # Ben's ticket: not a retake of Ana's
        clip(4, 5),
    ]
    a, b = group_sessions(files)
    # Ana's session keeps her booking and waits for a person (no footage: what happened?)
    assert (a.key, a.booking) == ("qr:c1", BK_A)
    assert a.status is SessionStatus.NEEDS_REVIEW and a.unreadable_file_ids == ("c2",)
    assert "another passenger's ticket" in a.review_reason
    # Ben's session is his own, with the footage after his ticket
    assert (b.key, b.booking, b.status) == ("qr:c3", BK_B, SessionStatus.DECODED)
    assert b.footage_file_ids == ("c4",)


def test_the_same_ticket_filmed_again_after_an_unreadable_take_is_one_session() -> None:
    files = [
        ticket(1, 0, BK_A),
        clip(2, 1, FileKind.QR_CANDIDATE, unreadable="the QR decoder failed on it"),
        ticket(3, 2, BK_A),  # Ana's ticket again: the unreadable clip was a failed take
        clip(4, 5),
    ]
    (a,) = group_sessions(files)
    assert (a.key, a.booking, a.status) == ("qr:c1", BK_A, SessionStatus.DECODED)
    assert a.footage_file_ids == ("c4",)
