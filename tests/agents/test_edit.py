"""The edit decision list: spans kept from the phases and the product's edit settings."""

from __future__ import annotations

import pytest

from agents.edit import ClipSpan, EditError, EditSettings, MusicBed, Span, SpanRole, build_edl
from agents.telemetry.phases import JumpPhases, Mark, MarkKind, Source


def _phases(exit_s: float = 100.0, opening_s: float = 160.0,
            landing_s: float | None = 440.0) -> JumpPhases:  # fmt: skip
    def mark(kind: MarkKind, t: float) -> Mark:
        return Mark(kind, t, 0.9, Source.FUSED)

    landing = mark(MarkKind.LANDING, landing_s) if landing_s is not None else None
    return JumpPhases(mark(MarkKind.EXIT, exit_s), mark(MarkKind.OPENING, opening_s), landing,
                      needs_review=False)  # fmt: skip


ONE_CLIP = [ClipSpan("GX010001.MP4", 500.0)]


def test_default_edit_is_door_to_landing_plus() -> None:
    edl = build_edl(_phases(), ONE_CLIP, EditSettings())
    assert edl.spans == (Span("GX010001.MP4", 90.0, 448.0, 1.0, SpanRole.JUMP),)
    assert edl.total_s == pytest.approx(358.0)
    assert edl.music is None


def test_a_span_across_chapters_is_split_at_the_boundary() -> None:
    chapters = [ClipSpan("GX010001.MP4", 120.0), ClipSpan("GX020001.MP4", 380.0)]
    edl = build_edl(_phases(), chapters, EditSettings())
    assert edl.spans == (
        Span("GX010001.MP4", 90.0, 120.0, 1.0, SpanRole.JUMP),
        Span("GX020001.MP4", 0.0, 328.0, 1.0, SpanRole.JUMP),
    )
    assert edl.total_s == pytest.approx(358.0)


def test_interview_replay_and_music_in_output_order() -> None:
    music = MusicBed("/srv/music/bed.mp3", level_db=-20.0)
    settings = EditSettings(interview_s=15.0, interview_start_s=5.0, exit_replay_s=4.0,
                            music=music)  # fmt: skip
    edl = build_edl(_phases(), ONE_CLIP, settings)
    assert [s.role for s in edl.spans] == [SpanRole.INTERVIEW, SpanRole.JUMP, SpanRole.EXIT_REPLAY]
    assert edl.spans[0] == Span("GX010001.MP4", 5.0, 20.0, 1.0, SpanRole.INTERVIEW)
    assert edl.spans[2] == Span("GX010001.MP4", 99.0, 103.0, 0.5, SpanRole.EXIT_REPLAY)
    assert edl.total_s == pytest.approx(15.0 + 358.0 + 8.0)
    assert edl.music == music


def test_spans_are_clamped_to_the_recording() -> None:
    edl = build_edl(_phases(exit_s=4.0, opening_s=60.0, landing_s=496.0), ONE_CLIP,
                    EditSettings(interview_s=30.0))  # fmt: skip
    # the door starts at 0, so there is no room for an interview before it; the end is clamped
    assert edl.spans == (Span("GX010001.MP4", 0.0, 500.0, 1.0, SpanRole.JUMP),)


def test_no_landing_keeps_to_the_end_of_the_recording() -> None:
    edl = build_edl(_phases(landing_s=None), ONE_CLIP, EditSettings())
    assert edl.spans[-1].end == 500.0


def test_no_freefall_no_edit() -> None:
    no_freefall = JumpPhases(None, None, None, needs_review=True, reasons=("no freefall found",))
    with pytest.raises(EditError, match="no freefall"):
        build_edl(no_freefall, ONE_CLIP, EditSettings())


def test_bad_settings_and_clips_are_refused() -> None:
    with pytest.raises(EditError, match="door_s"):
        EditSettings(door_s=-1)
    with pytest.raises(EditError, match="exit_replay_speed"):
        EditSettings(exit_replay_speed=2.0)
    with pytest.raises(EditError, match="at least one clip"):
        build_edl(_phases(), [], EditSettings())
    with pytest.raises(EditError, match="outside the recording"):
        build_edl(_phases(exit_s=600, opening_s=700, landing_s=900), ONE_CLIP, EditSettings())
