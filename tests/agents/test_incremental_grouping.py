"""Earlier renders (issue 18): sessions started as soon as they are closed are the sessions of
the whole-card grouping, whatever order the QR clips are decoded in (pure)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from agents.jobs.sessions import card_files
from agents.qr.payload import Booking
from agents.sessions import (
    CardFile,
    FileKind,
    JumpSession,
    QrOutcome,
    SessionStatus,
    closed_sessions,
    group_card,
)
from storage import media

T0 = datetime(2024, 6, 1, 10, 0, tzinfo=UTC)
BOOKINGS = (
    Booking("BK-1", "Jane", "video"),
    Booking("BK-2", "Mo", None),
    Booking("BK-3", "Li", None),
)

# what a QR candidate turns out to be once read
OUTCOMES = ("decoded", "seen", "no_qr", "failed", "probe_failed")


def clip(n: int, minute: float, outcome: str | None, booking: int = 0) -> CardFile:
    """Clip number `n` (GoPro counter order); outcome None: footage, else a QR candidate's."""
    name = f"GX01{n:04d}.MP4"
    base = CardFile(
        str(n), name, f"DCIM/100GOPRO/{name}", T0 + timedelta(minutes=minute), FileKind.FOOTAGE
    )
    if outcome is None:
        return base
    base = dataclasses.replace(base, kind=FileKind.QR_CANDIDATE)
    if outcome == "decoded":
        return dataclasses.replace(base, qr_status=QrOutcome.DECODED, booking=BOOKINGS[booking])
    if outcome == "seen":
        return dataclasses.replace(base, qr_status=QrOutcome.UNREADABLE)
    if outcome == "no_qr":
        return dataclasses.replace(base, qr_status=QrOutcome.NO_QR)
    if outcome == "failed":
        return dataclasses.replace(base, unreadable="the QR decoder failed on it")
    return dataclasses.replace(base, qr_status=QrOutcome.NO_QR, unreadable="probe failed")


def pending(f: CardFile) -> CardFile:
    """The same candidate before its probe and decode finished."""
    return dataclasses.replace(f, qr_status=None, booking=None, unreadable="")


layouts = st.lists(
    st.tuples(
        st.one_of(st.none(), st.sampled_from(OUTCOMES)),
        st.integers(0, 2),  # booking
        st.sampled_from((1.0, 2.0, 45.0)),  # minutes since the clip before (45: a gap)
    ),
    min_size=1,
    max_size=14,
)


def build(layout: list[tuple[str | None, int, float]]) -> list[CardFile]:
    minute, out = 0.0, []
    for n, (outcome, booking, step) in enumerate(layout, start=1):
        minute += step
        out.append(clip(n, minute, outcome, booking))
    return out


def incremental(final: list[CardFile], order: list[str]) -> dict[str, JumpSession]:
    """What the pipeline does: after each decode, start the closed sessions among the files not
    in a session yet; at the end, group what is left (every candidate read)."""
    decided: set[str] = set()
    started: dict[str, JumpSession] = {}
    claimed: set[str] = set()
    for fid in [*order, None]:
        if fid is not None:
            decided.add(fid)
        view = [
            f if f.kind is FileKind.FOOTAGE or f.file_id in decided else pending(f)
            for f in final
            if f.file_id not in claimed
        ]
        sessions = closed_sessions(view).sessions if fid is not None else group_card(view).sessions
        for s in sessions:
            assert s.key not in started, f"{s.key} started twice"
            assert s.status is not SessionStatus.PENDING
            started[s.key] = s
            claimed.update(s.file_ids)
    return started


@settings(max_examples=400, deadline=None)
@given(layouts, st.randoms(use_true_random=False))
def test_incremental_grouping_in_any_decode_order_is_the_whole_card_grouping(
    layout: list[tuple[str | None, int, float]], rnd: object
) -> None:
    final = build(layout)
    order = [f.file_id for f in final if f.kind is FileKind.QR_CANDIDATE]
    rnd.shuffle(order)  # type: ignore[attr-defined]
    whole = {s.key: s for s in group_card(final).sessions}
    assert incremental(final, order) == whole


@settings(max_examples=300, deadline=None)
@given(layouts, st.data())
def test_a_closed_session_is_a_session_of_every_outcome(
    layout: list[tuple[str | None, int, float]], data: st.DataObject
) -> None:
    """Whatever the undecided candidates turn out to be, a closed session stays as it is."""
    final = build(layout)
    candidates = [f.file_id for f in final if f.kind is FileKind.QR_CANDIDATE]
    undecided: set[str] = set()
    if candidates:
        undecided = set(data.draw(st.lists(st.sampled_from(candidates), unique=True)))
    view = [pending(f) if f.file_id in undecided else f for f in final]
    closed = closed_sessions(view).sessions
    other = [
        clip(int(f.file_id), 0, data.draw(st.sampled_from(OUTCOMES)), data.draw(st.integers(0, 2)))
        if f.file_id in undecided
        else f
        for f in final
    ]
    other = [
        dataclasses.replace(o, capture_time=f.capture_time)
        for o, f in zip(other, final, strict=True)
    ]
    whole = set(group_card(other).sessions)
    assert set(closed) <= whole


def test_a_pending_candidate_keeps_the_sessions_it_could_bound_open() -> None:
    jane = clip(1, 0, "decoded", 0)
    mo = clip(4, 3, "decoded", 1)
    li = clip(7, 6, "decoded", 2)
    card = [jane, clip(2, 1, None), pending(clip(3, 2, "decoded")), mo, clip(5, 4, None)]
    card += [li, clip(8, 7, None)]
    # the clip after Jane's footage may be a retake, another ticket or footage: Jane's session
    # waits; Mo's ticket follows the undecided clip directly (it may be the same ticket): waits.
    # Li's ticket follows Mo's footage: closed.
    assert [s.key for s in closed_sessions(card).sessions] == ["qr:7"]
    card[2] = clip(3, 2, "no_qr")
    keys = [s.key for s in closed_sessions(card).sessions]
    assert keys == ["qr:1", "qr:4", "qr:7"]


def test_the_last_ticket_still_read_leaves_the_earlier_jumps_closed() -> None:
    card = [clip(1, 0, "decoded", 0), clip(2, 1, None), clip(3, 2, "decoded", 1), clip(4, 3, None)]
    card += [pending(clip(5, 4, "decoded", 2)), clip(6, 5, None)]
    # the second jump waits for the clip after its footage (it may be more footage of it)
    closed = closed_sessions(card).sessions
    assert [(s.key, s.footage_file_ids) for s in closed] == [("qr:1", ("2",))]


def test_nothing_closes_while_an_undecided_clip_has_no_camera_counter() -> None:
    loose = dataclasses.replace(pending(clip(5, 4, "decoded")), name="x.MP4", relative_path="x.MP4")
    card = [clip(1, 0, "decoded", 0), clip(2, 1, None), clip(3, 2, "decoded", 1), loose]
    assert closed_sessions(card).sessions == ()


def _row(fid: int, *, probed: bool = True, probe_error: str = "") -> media.FileRow:
    return media.FileRow(
        id=fid,
        card_id="C",
        name=f"GX01{fid:04d}.MP4",
        path=f"DCIM/100GOPRO/GX01{fid:04d}.MP4",
        size=1000,
        mtime_ms=1_700_000_000_000 + fid * 60_000,
        kind="qr_candidate",
        status="imported",
        reason="",
        stored_path="x",
        duration_s=5.0 if probed and not probe_error else None,
        width=None,
        height=None,
        fps=None,
        has_audio=None,
        creation_time=None,
        session_key=None,
        probe_error=probe_error,
    )


def test_a_partial_grouping_counts_a_clip_read_only_once_its_probe_and_decode_finished() -> None:
    scan = media.QrRow(2, "no_qr", None, None, None)
    rows = [_row(1), _row(2, probed=False), _row(3, probe_error="moov atom not found")]
    partial = {f.file_id: f for f in card_files(rows, {2: scan}, settled=False)}
    # no scan yet; scanned but not probed; probe failed but not decoded yet: none is decided
    assert all(f.qr_status is None and not f.unreadable for f in partial.values())
    rows[1] = _row(2)
    settled = {f.file_id: f for f in card_files(rows, {2: scan}, settled=False)}
    assert settled["2"].qr_status is QrOutcome.NO_QR
    final = {f.file_id: f for f in card_files(rows, {2: scan})}
    assert final["1"].unreadable and final["3"].unreadable == "moov atom not found"
