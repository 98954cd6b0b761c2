"""Output names of bookings without a (usable) passenger name: the booking alone, said once in
words; every jump keeps a name of its own (agents/render/identity.py, agents/jobs/render.py)."""

from __future__ import annotations

import hashlib
import logging
from datetime import UTC, datetime
from pathlib import Path

import ledger_rows
import pytest
from ledger_rows import add_clip, job_settings, render_as_a_worker
from sqlalchemy.ext.asyncio import AsyncEngine

from agents.jobs.context import JobContext
from agents.jobs.render import render_request
from agents.pipeline.dispatch import Emitter
from agents.pipeline.handlers import default_handlers
from agents.render.identity import is_safe_name, name_note, output_name

START = datetime(2026, 5, 1, 14, 30, tzinfo=UTC)
CARD = "card-N"


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:6]


@pytest.mark.parametrize("passenger", ["", "   ", "😀🪂", "!!! ---", "👩‍👩‍👧", "\u200b"])
def test_no_usable_name_names_the_video_after_the_booking(passenger: str) -> None:
    name = output_name("BK-70414", passenger, START, "k")
    assert name == f"BK-70414_20260501-1430_{digest('k')}"
    assert "passenger" not in name and is_safe_name(name)


def test_the_note_says_what_happened() -> None:
    assert name_note("BK-70414", "") == (
        "booking BK-70414 has no passenger name: the video is named after the booking"
    )
    assert name_note("BK-70414", "  ") == name_note("BK-70414", "")
    note = name_note("BK-70414", "😀🪂")
    assert note is not None
    assert note.startswith("booking BK-70414: the passenger name '😀🪂' has no letter or digit")
    assert note.endswith("the video is named after the booking")
    assert "sanitis" not in note
    for fine in ("Ana", "Zoë O'Neil", "محمد", "李 🪂"):
        assert name_note("BK-1", fine) is None
    assert output_name("BK-1", "李 🪂", START, "k").startswith("BK-1_李_")


def test_two_jumps_of_one_booking_without_names_never_share_a_name() -> None:
    names = {
        output_name("BK-70414", "", START, "card-A:1"),
        output_name("BK-70414", "", START, "card-A:2"),  # same minute, another jump
        output_name("BK-70414", "😀", START, "card-B:1"),
        output_name("BK-70414", "", START.replace(minute=45), "card-A:1"),
    }
    assert len(names) == 4


async def must_not_send(key: bytes, value: bytes) -> object:
    raise AssertionError("building a render job sends nothing")


@pytest.fixture
def jc(tmp_path: Path, engine: AsyncEngine, clean_db: AsyncEngine, database_url: str) -> JobContext:
    return JobContext(
        # generic clips in the ledger, no `phases` step: the render is of whole clips (no edit)
        settings=job_settings(tmp_path, database_url, edit_jumps=False).model_copy(
            update={"branding_title": True}
        ),
        engine=engine,
        registry=default_handlers().registry,
        emitter=Emitter(must_not_send),
        send_result=must_not_send,
        send_copy_request=must_not_send,
    )


@pytest.mark.slow
@pytest.mark.parametrize("passenger", ["", "😀🪂"])
async def test_a_booking_without_a_name_renders_under_the_booking_saying_so_once(
    jc: JobContext, passenger: str, caplog: pytest.LogCaptureFixture
) -> None:
    clip = await add_clip(jc, CARD, "GX010070.MP4", seconds=1.0, minute=5, junk_size=4096)
    key = f"{CARD}:1"
    await ledger_rows.add_session(jc, CARD, key, [clip], "BK-70414", passenger)

    with caplog.at_level(logging.INFO):
        payload = await render_request(jc, key, execution_id=3)
        again = await render_request(jc, key, execution_id=3)  # a redelivery: the stored name
        out = await render_as_a_worker(payload, jc.settings.render_staging)
    assert payload.output_name == again.output_name == f"BK-70414_20260501-1405_{digest(key)}"
    assert out.video.name == f"{payload.output_name}.mp4" and out.video.is_file()
    messages = [r.getMessage() for r in caplog.records]
    said = [m for m in messages if "the video is named after the booking" in m]
    assert len(said) == 1 and "booking BK-70414" in said[0] and key in said[0]
    assert [r.levelname for r in caplog.records if r.getMessage() in said] == ["INFO"]
    assert not any("sanitis" in m for m in messages)
    # an emoji-only name is still shown as the title (drawtext draws it); nothing is shown
    # for no name at all
    assert payload.branding["title_enabled"] is bool(passenger)
