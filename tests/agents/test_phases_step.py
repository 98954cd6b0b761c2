"""The `phases` step of the jump pipeline on real PostgreSQL, files and FFmpeg: a synthetic jump
with telemetry (two chapters) is found and cut, and its render is as long as its EDL; a recording
with no freefall sends the session to review and is not rendered until an operator assigns it;
with the edit on, a jump without a phases result waits for a person too."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import av
import ledger_rows
import numpy as np
import pytest
from ledger_rows import add_clip, job_settings, render_as_a_worker
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from agents.edit import EditSettings
from agents.jobs import phases_step
from agents.jobs.context import JobContext
from agents.jobs.edit_record import EditRecord
from agents.jobs.kinds import jump_steps
from agents.jobs.render import NO_EDIT_REASON, NeedsReview, render_request
from agents.pipeline.dispatch import Emitter
from agents.pipeline.handlers import StepContext, default_handlers
from agents.telemetry.marks import JumpPhases, Mark, MarkKind, Source
from agents.telemetry.profile import draw_params, generate
from agents.telemetry.sound import SoundSeries
from agents.telemetry.synthetic import VideoFormat, write_jump
from storage import media
from storage import pipeline as repo
from storage.enums import SessionStatus
from storage.sessions import assign_session
from streams import records

CARD = "card-J"
BOOKING = "BK-15"


async def must_not_send(key: bytes, value: bytes) -> object:
    raise AssertionError("the phases step and building a render job send nothing")


@pytest.fixture
def jc(tmp_path: Path, engine: AsyncEngine, clean_db: AsyncEngine, database_url: str) -> JobContext:
    settings = job_settings(
        tmp_path, database_url, edit_jumps=True, edit_door_s=3.0, edit_after_landing_s=2.0,
        edit_exit_replay_s=2.0,
    )  # fmt: skip
    return JobContext(
        settings=settings,
        engine=engine,
        registry=default_handlers().registry,
        emitter=Emitter(must_not_send),
        send_result=must_not_send,
        send_copy_request=must_not_send,
    )


def duration_of(path: Path) -> float:
    with av.open(str(path)) as c:
        return (c.duration or 0) / 1e6


async def session_of(jc: JobContext, key: str, paths: list[Path]) -> list[int]:
    ids = [
        await add_clip(jc, CARD, p.name, seconds=duration_of(p), minute=n, made=p)
        for n, p in enumerate(paths)
    ]
    await ledger_rows.add_session(jc, CARD, key, ids, BOOKING, "Zoë Sky")
    return ids


async def run_phases(jc: JobContext, key: str, eid: int) -> dict[str, object]:
    """The step run as the step runner runs it; its output stored as a succeeded step."""
    request = records.StepRequest(
        execution_id=eid, step="phases", kind="phases", attempt=1, input={"session": key}
    )
    ctx = StepContext(execution_id=eid, step="phases", attempt=1, worker="test")
    out = await phases_step.handler(jc)(ctx, request)
    assert not out.waiting and not out.spawn
    async with jc.engine.begin() as conn:
        await repo.create_execution(
            conn, key=f"jump:{key}", pipeline="jump", subject_type="session", subject_id=key
        )
        await conn.execute(
            text(
                "INSERT INTO pipeline_step (execution_id, name, kind, status, attempt, output) "
                "VALUES (:e, 'phases', 'phases', 'succeeded', 1, CAST(:o AS jsonb))"
            ),
            {"e": eid, "o": json.dumps(out.output)},
        )
    return out.output


async def session(jc: JobContext, key: str) -> media.SessionRow:
    async with jc.engine.connect() as conn:
        row = await media.load_session(conn, key)
    assert row is not None
    return row


def test_the_edit_puts_a_phases_step_before_the_render() -> None:
    steps = {s.name: s for s in jump_steps("s1", [4, 5], edit=True)}
    assert steps["phases"].depends_on == ("?probe:*",)
    assert steps["render"].depends_on == ("?probe:*", "booking", "phases")
    plain = {s.name: s for s in jump_steps("s1", [4, 5])}
    assert "phases" not in plain and plain["render"].depends_on == ("?probe:*", "booking")


@pytest.mark.slow
async def test_a_telemetry_jump_is_cut_and_renders_as_long_as_its_edl(
    jc: JobContext, tmp_path: Path
) -> None:
    params = dataclasses.replace(draw_params(21, compress=0.15), air_pocket_s=None, muffled=False)
    profile = generate(params)
    made = tmp_path / "made"
    made.mkdir()
    paths = write_jump(
        profile, made, chapter_s=40.0, video=VideoFormat(320, 180, 30)
    )  # the ledger facts
    assert len(paths) >= 2
    ids = await session_of(jc, f"{CARD}:1", paths)

    out = await run_phases(jc, f"{CARD}:1", eid=1)
    assert out["needs_review"] is False, out["reasons"]
    assert out["sources"] == {"telemetry": True, "sound": True}
    marks = out["marks"]
    assert isinstance(marks, dict)
    assert abs(marks["exit"]["t"] - profile.truth.exit_s) <= 1.0
    assert abs(marks["opening"]["t"] - profile.truth.opening_s) <= 2.0
    edl = out["edl"]
    assert isinstance(edl, dict)
    assert {s["file_id"] for s in edl["spans"]} <= set(ids)
    assert [s["role"] for s in edl["spans"]][-1] == "exit_replay"
    assert (await session(jc, f"{CARD}:1")).status == SessionStatus.DECODED

    payload = await render_request(jc, f"{CARD}:1", execution_id=1)
    assert payload.cuts is not None and len(payload.cuts) == len(edl["spans"])
    rendered = await render_as_a_worker(payload, jc.settings.render_staging)
    got = duration_of(rendered.video)
    assert got == pytest.approx(edl["total_s"], abs=0.5)
    assert got < sum(duration_of(jc.settings.share_root / CARD / p.name) for p in paths) - 15


@pytest.mark.slow
async def test_no_freefall_goes_to_review_and_renders_only_once_an_operator_assigns_it(
    jc: JobContext,
) -> None:
    # a clip of the ground: no telemetry track, a tone under steady noise
    ids = [await add_clip(jc, CARD, "GX010050.MP4", seconds=3.0)]
    await ledger_rows.add_session(jc, CARD, f"{CARD}:2", ids, BOOKING, "Zoë Sky")

    out = await run_phases(jc, f"{CARD}:2", eid=1)
    assert out["needs_review"] is True and out["edl"] is None
    assert "no freefall found" in out["reasons"]  # type: ignore[operator]
    s = await session(jc, f"{CARD}:2")
    assert s.status == SessionStatus.NEEDS_REVIEW
    assert "no freefall found" in s.review_reason and "exit not found" in s.review_reason

    with pytest.raises(NeedsReview, match="waiting for a person: the automatic edit"):
        await render_request(jc, f"{CARD}:2", execution_id=1)

    async with jc.engine.begin() as conn:
        await assign_session(conn, f"{CARD}:2", BOOKING, "Zoë Sky", "operator")
    payload = await render_request(jc, f"{CARD}:2", execution_id=1)
    assert payload.cuts is None  # approved without an edit: the clip whole
    rendered = await render_as_a_worker(payload, jc.settings.render_staging)
    assert duration_of(rendered.video) == pytest.approx(3.0, abs=0.3)


@pytest.mark.slow
async def test_with_the_edit_on_a_render_without_phases_waits_for_a_person(
    jc: JobContext,
) -> None:
    ids = [await add_clip(jc, CARD, "GX010051.MP4", seconds=1.0)]
    await ledger_rows.add_session(jc, CARD, f"{CARD}:3", ids, BOOKING, "Zoë Sky")
    with pytest.raises(NeedsReview, match="without the edit"):
        await render_request(jc, f"{CARD}:3", execution_id=None)
    s = await session(jc, f"{CARD}:3")
    assert s.status == SessionStatus.NEEDS_REVIEW and s.review_reason == NO_EDIT_REASON
    async with jc.engine.begin() as conn:
        await assign_session(conn, f"{CARD}:3", BOOKING, "Zoë Sky", "operator")
    assert (await render_request(jc, f"{CARD}:3", execution_id=None)).cuts is None


def _mark(kind: MarkKind, t: float, conf: float = 0.9) -> Mark:
    return Mark(kind, t, conf, Source.TELEMETRY)


CLIPS = [
    phases_step.FootageClip(7, "GX010001.MP4", Path("/s/a"), 40.0),
    phases_step.FootageClip(8, "GX020001.MP4", Path("/s/b"), 40.0),
]


def test_a_sure_jump_gets_an_edl_by_file_id_and_round_trips() -> None:
    phases = JumpPhases(
        _mark(MarkKind.EXIT, 30.0), _mark(MarkKind.OPENING, 45.0), _mark(MarkKind.LANDING, 70.0),
        needs_review=False,
    )  # fmt: skip
    record = phases_step.record_of(
        phases, CLIPS, EditSettings(door_s=5, after_landing_s=2), telemetry=True, sound=True,
        notes=(),
    )  # fmt: skip
    assert not record.needs_review
    assert [(s.file_id, s.start, s.end) for s in record.spans or ()] == [
        (7, 25.0, 40.0), (8, 0.0, 32.0),
    ]  # fmt: skip
    back = EditRecord.from_output(json.loads(json.dumps(record.to_output())))
    assert back.spans == record.spans and back.total_s == pytest.approx(47.0)
    assert not back.needs_review


def test_an_edit_that_cannot_be_made_goes_to_review_with_the_marks() -> None:
    # the exit detected past the end of the recording (a bad join): no edit, a person looks
    phases = JumpPhases(
        _mark(MarkKind.EXIT, 95.0), _mark(MarkKind.OPENING, 99.0), None, needs_review=True,
        reasons=("no landing found",),
    )  # fmt: skip
    record = phases_step.record_of(
        phases, CLIPS, EditSettings(), telemetry=True, sound=False, notes=()
    )
    assert record.needs_review and record.spans is None
    reason = record.review_reason()
    assert "no landing found" in reason and "outside the recording" in reason
    assert "exit 95.0 s (0.90)" in reason and "landing not found" in reason
    assert "every clip whole" in reason


def test_a_malformed_output_is_refused() -> None:
    with pytest.raises(ValueError, match="not a phases step output"):
        EditRecord.from_output({"edl": None})
    with pytest.raises(ValueError, match="malformed"):
        EditRecord.from_output({"needs_review": False, "edl": {"spans": [{"file_id": 1}]}})


def test_sound_of_clips_is_joined_on_the_recording_timeline() -> None:
    one = SoundSeries(np.array([0.125, 0.375]), np.zeros(2), np.ones(2), np.zeros(2))
    joined = phases_step.join_sound([(one, 0.0), (None, 0.5), (one, 10.0)])
    assert joined is not None
    assert joined.t.tolist() == [0.125, 0.375, 10.125, 10.375]
    assert phases_step.join_sound([(None, 0.0)]) is None
