from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st
from sessions_cases import BK_A, BK_B, T0, clip, ticket

from agents.qr.payload import Booking
from agents.sessions import (
    CardFile,
    ClockPolicy,
    FileKind,
    GoProName,
    QrOutcome,
    SessionStatus,
    group_card,
    group_sessions,
    order_files,
    parse_gopro_name,
)

JANE = Booking("BK-1", "Jane Doe", "video")
MO = Booking("BK-2", "Mo", None)


def footage(
    fid: str, minute: float, name: str | None = None, folder: str = "DCIM/100GOPRO"
) -> CardFile:
    name = name or f"{fid}.MP4"
    return CardFile(fid, name, f"{folder}/{name}", T0 + timedelta(minutes=minute), FileKind.FOOTAGE)


def qr(
    fid: str, minute: float, status: QrOutcome | None, booking: Booking | None = None
) -> CardFile:
    return CardFile(
        fid,
        f"{fid}.MP4",
        f"DCIM/100GOPRO/{fid}.MP4",
        T0 + timedelta(minutes=minute),
        FileKind.QR_CANDIDATE,
        status,
        booking,
    )


def test_gopro_names_parse_into_recording_and_chapter() -> None:
    assert parse_gopro_name("GX010042.MP4") == GoProName("GX", 42, 1)
    assert parse_gopro_name("gh030007.mp4") == GoProName("GH", 7, 3)
    assert parse_gopro_name("GOPR0042.MP4") == GoProName("GOPR", 42, 0)
    assert parse_gopro_name("GP010042.MP4") == GoProName("GOPR", 42, 1)
    assert parse_gopro_name("GX010042.LRV") is None
    assert parse_gopro_name("DJI_0001.MP4") is None


def test_chapters_stay_together_in_chapter_order_even_when_mtimes_disagree() -> None:
    # Chapter 2's clock reads earlier than chapter 1 (written at close): order by chapter.
    ch1 = footage("c1", 10, "GX010042.MP4")
    ch2 = footage("c2", 9.5, "GX020042.MP4")
    ch3 = footage("c3", 30, "GX030042.MP4")
    other = footage("o", 20, "GX010043.MP4")
    legacy1 = footage("l1", 40, "GOPR0050.MP4")
    legacy2 = footage("l2", 41, "GP010050.MP4")
    ordered = order_files([legacy2, other, ch3, ch1, legacy1, ch2])
    assert [f.file_id for f in ordered] == ["c1", "c2", "c3", "o", "l1", "l2"]


def test_same_recording_number_in_another_folder_is_another_recording() -> None:
    a = footage("a", 1, "GX010001.MP4", folder="DCIM/100GOPRO")
    b = footage("b", 50, "GX020001.MP4", folder="DCIM/101GOPRO")
    c = footage("c", 20, "GX010002.MP4")
    assert [f.file_id for f in order_files([a, b, c])] == ["a", "c", "b"]


def test_repeated_chapter_numbers_fall_back_to_time_order() -> None:
    old = footage("old", 1, "GX010001.MP4")
    new = footage("new", 100, "GX010001.MP4")
    mid = footage("mid", 50, "X.MP4")
    assert [f.file_id for f in order_files([new, mid, old])] == ["old", "mid", "new"]


def test_decoded_qr_opens_session_and_footage_before_is_unassigned() -> None:
    files = [
        footage("early", 0),
        qr("q1", 5, QrOutcome.DECODED, JANE),
        footage("f1", 6),
        footage("f2", 7),
        qr("q2", 20, QrOutcome.DECODED, MO),
        footage("f3", 21),
    ]
    sessions = group_sessions(files)
    assert [(s.key, s.status, s.booking, s.footage_file_ids) for s in sessions] == [
        ("unassigned:early", SessionStatus.UNASSIGNED, None, ("early",)),
        ("qr:q1", SessionStatus.DECODED, JANE, ("f1", "f2")),
        ("qr:q2", SessionStatus.DECODED, MO, ("f3",)),
    ]


def test_unreadable_qr_gives_needs_review_session_holding_its_footage() -> None:
    files = [
        qr("q1", 0, QrOutcome.DECODED, JANE),
        footage("f1", 1),
        qr("q2", 10, QrOutcome.UNREADABLE),
        footage("f2", 11),
        footage("f3", 12),
    ]
    sessions = group_sessions(files)
    assert sessions[1].status is SessionStatus.NEEDS_REVIEW
    assert sessions[1].qr_file_id == "q2"
    assert sessions[1].footage_file_ids == ("f2", "f3")
    assert sessions[1].booking is None


def test_same_booking_filmed_twice_in_a_row_is_one_session() -> None:
    files = [
        qr("q1", 0, QrOutcome.DECODED, JANE),
        qr("q1b", 0.2, QrOutcome.DECODED, Booking("BK-1", "Jane Doe", None)),
        footage("f1", 1),
    ]
    [session] = group_sessions(files)
    assert session.key == "qr:q1"
    assert session.qr_file_ids == ("q1", "q1b")
    assert session.footage_file_ids == ("f1",)


def test_same_booking_after_footage_opens_a_new_session() -> None:
    files = [
        qr("q1", 0, QrOutcome.DECODED, JANE),
        footage("f1", 1),
        qr("q2", 30, QrOutcome.DECODED, JANE),
        footage("f2", 31),
    ]
    assert [s.key for s in group_sessions(files)] == ["qr:q1", "qr:q2"]


def test_failed_take_next_to_a_decoded_take_is_folded_into_it() -> None:
    files = [
        qr("bad", 0, QrOutcome.UNREADABLE),
        qr("good", 0.3, QrOutcome.DECODED, JANE),
        footage("f1", 1),
    ]
    [session] = group_sessions(files)
    assert session.status is SessionStatus.DECODED
    assert session.booking == JANE
    assert session.qr_file_ids == ("bad", "good")


def test_candidate_without_qr_is_ordinary_footage() -> None:
    files = [
        qr("q1", 0, QrOutcome.DECODED, JANE),
        qr("short", 1, QrOutcome.NO_QR),
        footage("f1", 2),
    ]
    [session] = group_sessions(files)
    assert session.footage_file_ids == ("short", "f1")


def test_undecided_candidate_gives_pending_session() -> None:
    sessions = group_sessions([qr("q1", 0, None), footage("f1", 1)])
    assert [(s.status, s.footage_file_ids) for s in sessions] == [(SessionStatus.PENDING, ("f1",))]


def test_booking_assigned_by_hand_moves_needs_review_on() -> None:
    files = [qr("q1", 0, QrOutcome.UNREADABLE), footage("f1", 1)]
    [before] = group_sessions(files)
    [after] = group_sessions(files, assigned={"q1": MO})
    assert before.status is SessionStatus.NEEDS_REVIEW
    assert (after.key, after.status, after.booking) == (before.key, SessionStatus.DECODED, MO)


def test_interleaved_chapters_and_qr_clips_group_by_capture_time() -> None:
    files = [
        footage("old1", -600, "GX010001.MP4"),  # imported yesterday, still on the card
        qr("q1", 0, QrOutcome.DECODED, JANE),
        footage("j1c1", 5, "GX010010.MP4"),
        footage("j1c2", 17, "GX020010.MP4"),
        qr("q2", 60, QrOutcome.DECODED, MO),
        footage("j2c1", 65, "GX010012.MP4"),
        footage("j2c2", 64.9, "GX020012.MP4"),
    ]
    sessions = group_sessions(files)
    assert [(s.key, s.footage_file_ids) for s in sessions] == [
        ("unassigned:old1", ("old1",)),
        ("qr:q1", ("j1c1", "j1c2")),
        ("qr:q2", ("j2c1", "j2c2")),
    ]


def test_grouping_is_stable_under_input_order() -> None:
    files = [
        footage("a", 0),
        qr("q1", 1, QrOutcome.DECODED, JANE),
        footage("b", 2, "GX010005.MP4"),
        footage("c", 3, "GX020005.MP4"),
        qr("q2", 4, QrOutcome.UNREADABLE),
        footage("d", 5),
        footage("e", 5),  # same time: tie broken by path, not input order
    ]
    expected = group_sessions(files)
    rng = random.Random(7)
    for _ in range(20):
        shuffled = files[:]
        rng.shuffle(shuffled)
        assert group_sessions(shuffled) == expected


def test_empty_card_has_no_sessions() -> None:
    assert group_sessions([]) == []


_STATUSES = [None, QrOutcome.DECODED, QrOutcome.UNREADABLE, QrOutcome.NO_QR]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 500),
            st.booleans(),
            st.sampled_from(_STATUSES),
            st.sampled_from(["BK-1", "BK-2"]),
        ),
        max_size=25,
    )
)
def test_every_file_lands_in_exactly_one_session(
    rows: list[tuple[int, bool, QrOutcome | None, str]],
) -> None:
    files = []
    for i, (minute, is_qr, status, bid) in enumerate(rows):
        if is_qr:
            booking = Booking(bid) if status is QrOutcome.DECODED else None
            files.append(qr(f"q{i}", minute, status, booking))
        else:
            files.append(footage(f"f{i}", minute))
    sessions = group_sessions(files)
    placed = [fid for s in sessions for fid in (*s.qr_file_ids, *s.footage_file_ids)]
    assert sorted(placed) == sorted(f.file_id for f in files)
    assert len({s.key for s in sessions}) == len(sessions)
    for s in sessions:
        assert (s.status is SessionStatus.DECODED) == (s.booking is not None)
        # only footage before any ticket, or after a gap, opens a session without a QR clip
        assert (s.qr_file_id is None) == (s.key.split(":")[0] in ("unassigned", "gap"))


# --- issue 11: gaps, clocks, unreadable clips, re-filmed tickets --------------------------------


def test_footage_after_a_gap_without_a_ticket_goes_to_review_not_to_the_previous_passenger() -> (
    None
):
    files = [
        ticket(1, 0, BK_A),
        clip(2, 2),
        ticket(3, 10, None),  # the next passenger's ticket, QR not found: looks like footage
        clip(4, 50),  # 40 minutes later: the next jump
        clip(5, 52),
    ]
    a, review = group_sessions(files)
    assert (a.key, a.booking, a.footage_file_ids) == ("qr:c1", BK_A, ("c2", "c3"))
    assert review.key == "gap:c4"
    assert review.status is SessionStatus.NEEDS_REVIEW and review.booking is None
    assert review.footage_file_ids == ("c4", "c5")
    assert review.review_reason.startswith("footage after a 40 minutes gap, no booking")


def test_the_gap_limit_is_configurable() -> None:
    files = [ticket(1, 0, BK_A), clip(2, 30)]
    assert len(group_sessions(files)) == 2
    [one] = group_sessions(files, policy=ClockPolicy(gap=timedelta(minutes=45)))
    assert one.footage_file_ids == ("c2",)


def test_the_camera_counter_orders_the_card_not_a_clock_that_was_reset() -> None:
    # A battery change reset the clock to 2016 after the ticket was filmed: by time the footage
    # would come before the ticket and go to "unassigned".
    reset = datetime(2016, 1, 1, 0, 0, tzinfo=UTC)
    files = [
        ticket(1, 0, BK_A),
        clip(2, 0, at=reset),
        clip(3, 0, at=reset + timedelta(minutes=3)),
    ]
    result = group_card(files)
    [session] = result.sessions
    assert session.booking == BK_A
    assert session.footage_file_ids == ("c2", "c3")
    [warning] = result.clock_warnings
    assert warning.startswith("camera clock looks wrong: GX010002.MP4 was recorded after")
    assert "2016-01-01" in warning and "years earlier" in warning
    assert session.warnings == (warning,)


def test_a_clock_jumping_forward_by_years_is_reported_and_is_no_gap() -> None:
    later = T0 + timedelta(days=3 * 365)
    files = [ticket(1, 0, BK_A), clip(2, 0, at=later), clip(3, 0, at=later + timedelta(minutes=1))]
    result = group_card(files)
    [session] = result.sessions
    assert session.footage_file_ids == ("c2", "c3")
    assert len(result.clock_warnings) == 1 and "later" in result.clock_warnings[0]


def test_a_re_filmed_ticket_is_claimed_by_its_session() -> None:
    files = [ticket(1, 0, BK_A), ticket(2, 0.5, BK_A), clip(3, 2)]
    [session] = group_sessions(files)
    assert session.qr_file_ids == ("c1", "c2")
    assert set(session.file_ids) == {"c1", "c2", "c3"}


def test_same_booking_on_two_jumps_is_two_sessions() -> None:
    files = [ticket(1, 0, BK_A), clip(2, 2), ticket(3, 30, BK_B), clip(4, 32)]
    files += [ticket(5, 60, BK_A), clip(6, 62)]
    sessions = group_sessions(files)
    assert [(s.key, s.booking) for s in sessions] == [
        ("qr:c1", BK_A),
        ("qr:c3", BK_B),
        ("qr:c5", BK_A),
    ]


def test_an_unreadable_clip_before_footage_may_have_been_a_ticket() -> None:
    files = [
        ticket(1, 0, BK_A),
        clip(2, 2),
        clip(3, 10, FileKind.QR_CANDIDATE, unreadable="not a readable video: moov atom missing"),
        clip(4, 12),
    ]
    a, suspect = group_sessions(files)
    assert a.footage_file_ids == ("c2",)
    assert suspect.key == "suspect:c4" or suspect.key.startswith("suspect:")
    assert suspect.status is SessionStatus.NEEDS_REVIEW
    assert suspect.unreadable_file_ids == ("c3",) and suspect.footage_file_ids == ("c4",)
    assert "GX010003.MP4 could not be read" in suspect.review_reason


def test_an_unreadable_clip_with_no_footage_after_it_is_left_out_of_its_session() -> None:
    files = [
        ticket(1, 0, BK_A),
        clip(2, 2),
        clip(3, 4, FileKind.QR_CANDIDATE, unreadable="zero bytes"),
        ticket(4, 30, BK_B),
        clip(5, 32),
    ]
    a, b = group_sessions(files)
    assert (a.booking, a.status) == (BK_A, SessionStatus.DECODED)
    assert a.footage_file_ids == ("c2",) and a.unreadable_file_ids == ("c3",)
    assert a.warnings == ("GX010003.MP4 left out: could not be read (zero bytes)",)
    assert b.booking == BK_B and b.status is SessionStatus.DECODED


def test_an_unreadable_clip_right_after_the_ticket_puts_the_session_in_review() -> None:
    files = [
        ticket(1, 0, BK_A),
        clip(2, 0.5, FileKind.QR_CANDIDATE, unreadable="truncated"),
        clip(3, 2),
    ]
    [session] = group_sessions(files)
    assert session.status is SessionStatus.NEEDS_REVIEW
    assert session.booking == BK_A  # kept as the suggestion the operator confirms
    assert "may have been another passenger's ticket" in session.review_reason


def test_same_name_in_two_dcim_folders_is_two_clips_in_folder_order() -> None:
    files = [
        clip(1, 60, FileKind.QR_CANDIDATE, QrOutcome.DECODED, BK_A, folder="DCIM/101GOPRO"),
        ticket(1, 0, BK_B),
        clip(2, 2),
        clip(2, 62, folder="DCIM/101GOPRO"),
    ]
    b, a = group_sessions(files)
    assert (b.booking, b.footage_file_ids) == (BK_B, ("c2",))
    assert (a.booking, a.footage_file_ids) == (BK_A, ("c2@101GOPRO",))


# The property of the issue: random QR / unreadable / missed-QR / footage clips with random gaps.
_CLIP_KINDS = ["ticket", "unreadable_qr", "missed_qr", "bad_clip", "footage", "footage"]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(_CLIP_KINDS),
            st.sampled_from([0.5, 2, 5, 19, 21, 45, 300]),  # minutes since the clip before
            st.sampled_from([BK_A, BK_B]),
        ),
        max_size=30,
    ),
    st.sampled_from([10, 20, 30]),
)
def test_no_footage_ever_crosses_a_gap_into_a_ticket_session(
    rows: list[tuple[str, float, Booking]], gap_minutes: int
) -> None:
    files: list[CardFile] = []
    minute = 0.0
    for n, (what, step, booking) in enumerate(rows, start=1):
        minute += step
        if what == "ticket":
            files.append(ticket(n, minute, booking))
        elif what == "unreadable_qr":
            files.append(clip(n, minute, FileKind.QR_CANDIDATE, QrOutcome.UNREADABLE))
        elif what == "missed_qr":
            files.append(clip(n, minute, FileKind.QR_CANDIDATE, QrOutcome.NO_QR))
        elif what == "bad_clip":
            files.append(clip(n, minute, FileKind.QR_CANDIDATE, unreadable="not a video"))
        else:
            files.append(clip(n, minute))
    limit = timedelta(minutes=gap_minutes)
    sessions = group_sessions(files, policy=ClockPolicy(gap=limit))

    # every clip lands in exactly one session (or review session)
    placed = [fid for s in sessions for fid in s.file_ids]
    assert sorted(placed) == sorted(f.file_id for f in files)
    assert len({s.key for s in sessions}) == len(sessions)

    # footage never lands in a ticket's session across a gap larger than the limit
    position = {f.file_id: i for i, f in enumerate(files)}  # files are in recording order
    times = [f.capture_time for f in files]
    for s in sessions:
        if s.status is not SessionStatus.DECODED:
            assert s.booking is None or s.status is SessionStatus.NEEDS_REVIEW
            continue
        assert s.qr_file_id is not None and s.review_reason == ""
        opened = position[s.qr_file_id]
        for fid in s.footage_file_ids:
            at = position[fid]
            assert at > opened
            assert all(times[i] - times[i - 1] <= limit for i in range(opened + 1, at + 1))
