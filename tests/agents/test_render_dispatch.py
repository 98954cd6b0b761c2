"""The render job built from the ledger (real PostgreSQL), then rendered and published with real
FFmpeg: a clip whose probe failed is left out with a warning on the session, the session's output
name is stored once and kept, a session with no readable clip fails permanently."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import av
import ledger_rows
import pytest
from ledger_rows import add_clip, job_settings, render_as_a_worker
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from agents.jobs.context import JobContext
from agents.jobs.publish import Rendered, publish_files
from agents.jobs.render import render_request
from agents.pipeline.dispatch import Emitter
from agents.pipeline.errors import PermanentStepError
from agents.pipeline.handlers import default_handlers
from agents.render.identity import read_manifest
from storage import media

pytestmark = pytest.mark.slow
CARD = "card-D"


async def must_not_send(key: bytes, value: bytes) -> object:
    raise AssertionError("building a render job sends nothing")


@pytest.fixture
def jc(tmp_path: Path, engine: AsyncEngine, clean_db: AsyncEngine, database_url: str) -> JobContext:
    return JobContext(
        # generic ledger clips with no jump in them and no `phases` step: the render as it is
        # without the edit (the edit's dispatch is tests/agents/test_phases_step.py's)
        settings=job_settings(tmp_path, database_url, edit_jumps=False),
        engine=engine,
        registry=default_handlers().registry,
        emitter=Emitter(must_not_send),
        send_result=must_not_send,
        send_copy_request=must_not_send,
    )


async def add_file(
    jc: JobContext, name: str, *, seconds: float | None, probe_error: str = "", minute: int = 0
) -> int:
    """An imported clip on the share: really encoded (seconds) or bytes no decoder reads."""
    return await add_clip(
        jc,
        CARD,
        name,
        seconds=seconds,
        minute=minute,
        probe_error=probe_error,
        junk_size=4096,
        facts=bool(seconds),
    )


async def add_session(jc: JobContext, key: str, file_ids: list[int]) -> None:
    await ledger_rows.add_session(jc, CARD, key, file_ids, "BK-42", "Zoë Sky")


async def test_a_clip_whose_probe_failed_is_left_out_and_the_session_says_so(
    jc: JobContext, tmp_path: Path
) -> None:
    good = await add_file(jc, "GX010044.MP4", seconds=1.0, minute=5)
    bad = await add_file(
        jc,
        "GX010045.MP4",
        seconds=None,
        probe_error="not a readable video: moov atom not found",
        minute=6,
    )
    await add_session(jc, f"{CARD}:1", [good, bad])

    payload = await render_request(jc, f"{CARD}:1", execution_id=7)
    assert [c.id for c in payload.clips] == [good]
    name = payload.output_name
    assert name.startswith("BK-42_Zoë-Sky_20260501-1405_")
    async with jc.engine.connect() as conn:
        session = await media.load_session(conn, f"{CARD}:1")
    assert session is not None and session.output_name == name
    assert session.warnings == (
        "GX010045.MP4 left out of the video: not a readable video (moov atom not found)",
    )

    # the job renders on a worker and is published: the video holds the readable clip only
    out = await render_as_a_worker(payload, jc.settings.render_staging, jc.settings.output_dir)
    published = await asyncio.to_thread(
        publish_files,
        Rendered(out.video, out.poster, out.manifest, f"{CARD}:1", name, out.fingerprint),
        jc.settings.output_dir,
    )
    video = Path(str(published["video"]))
    assert video == jc.settings.output_dir / name / f"{name}.mp4"
    with av.open(str(video)) as c:
        assert abs((c.duration or 0) / 1e6 - 1.0) <= 0.2
    manifest = read_manifest(Path(str(published["manifest"])))
    assert manifest is not None and manifest.execution_id == 7
    assert [c["id"] for c in manifest.inputs["clips"]] == [good]  # type: ignore[attr-defined]

    # a redelivered request builds the same job and adds no second warning
    again = await render_request(jc, f"{CARD}:1", execution_id=7)
    assert again.output_name == name
    async with jc.engine.connect() as conn:
        session = await media.load_session(conn, f"{CARD}:1")
    assert session is not None and len(session.warnings) == 1


async def test_the_stored_output_name_is_kept_when_the_clock_facts_change(
    jc: JobContext,
) -> None:
    clip = await add_file(jc, "GX010050.MP4", seconds=1.0, minute=20)
    await add_session(jc, f"{CARD}:2", [clip])
    first = (await render_request(jc, f"{CARD}:2")).output_name
    async with jc.engine.begin() as conn:
        await conn.execute(
            text("UPDATE jump_session SET capture_start = :t WHERE key = :k"),
            {"t": datetime(2026, 5, 2, 9, 0, tzinfo=UTC), "k": f"{CARD}:2"},
        )
        await conn.execute(
            text("UPDATE imported_file SET creation_time = :t WHERE id = :id"),
            {"t": datetime(2026, 5, 3, 9, 0, tzinfo=UTC), "id": clip},
        )
    assert (await render_request(jc, f"{CARD}:2")).output_name == first
    assert "20260501-1420" in str(first)


async def test_two_sessions_of_one_booking_get_two_names(jc: JobContext) -> None:
    a = await add_file(jc, "GX010060.MP4", seconds=1.0, minute=30)
    b = await add_file(jc, "GX010061.MP4", seconds=1.0, minute=30)
    await add_session(jc, f"{CARD}:3", [a])
    await add_session(jc, f"{CARD}:4", [b])
    names = {(await render_request(jc, f"{CARD}:{n}")).output_name for n in (3, 4)}
    assert len(names) == 2


async def test_a_session_without_a_readable_clip_fails_permanently_and_keeps_its_warning(
    jc: JobContext,
) -> None:
    bad = await add_file(jc, "GX010070.MP4", seconds=None, probe_error="no video stream")
    await add_session(jc, f"{CARD}:5", [bad])
    with pytest.raises(PermanentStepError, match="no clip can be rendered"):
        await render_request(jc, f"{CARD}:5")
    async with jc.engine.connect() as conn:
        session = await media.load_session(conn, f"{CARD}:5")
    assert session is not None
    assert session.warnings == (
        "GX010070.MP4 left out of the video: not a readable video (no video stream)",
    )
