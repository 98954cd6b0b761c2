"""The edit on the whole system (issue 15): hub, Faust worker, render worker and a detector
watching a card whose jump carries GoPro telemetry (a synthetic tandem jump in two chapters behind
a ticket); real PostgreSQL, Redis, broker, files and FFmpeg. The published video is the jump cut
from the recording: as long as its EDL, and its first frames are the door."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import av
import numpy as np
import pytest
from support import settings_env, small_system, wait_for
from system.dropzone import explained, start_system, token_for

from agents.demo_clips import ClipPlan, ClipStyle, write_clip
from agents.telemetry.profile import draw_params, generate
from agents.telemetry.synthetic import VideoFormat, write_jump
from streams.settings import Settings

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

STYLE = ClipStyle(seed=15, footage_seconds=1.5, qr_seconds=1.5, width=320, height=180, fps=15)
T0 = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)
DOOR_S = 4.0


@pytest.fixture
def system_settings(settings: Settings) -> Settings:
    return small_system(settings, edit_jumps=True, edit_door_s=DOOR_S, edit_after_landing_s=2.0)


def duration_of(path: Path) -> float:
    with av.open(str(path)) as c:
        return (c.duration or 0) / 1e6


def blue_at(path: Path, t: float) -> float:
    """Mean blue of the centre of the first frame at or after `t` s (the synthetic picture is
    grey-brown in the plane, blue in freefall)."""
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        for frame in c.decode(stream):
            if frame.time is not None and frame.time >= t:
                rgb = frame.to_ndarray(format="rgb24")
                h, w = rgb.shape[:2]
                return float(np.mean(rgb[h // 4 : h // 2, w // 4 : 3 * w // 4, 2]))
    raise AssertionError(f"{path.name} has no frame at {t} s")


async def publishes(pg: asyncpg.Connection) -> int:
    return int(
        await pg.fetchval(
            "SELECT count(*) FROM pipeline_step WHERE name = 'publish' AND status = 'succeeded'"
        )
    )


async def test_a_card_with_a_telemetry_jump_becomes_its_edited_video(
    system_settings: Settings, sessions, clean_db, pg: asyncpg.Connection, spawn, tmp_path: Path
) -> None:
    s = system_settings
    cards = tmp_path / "cards"
    folder = cards / "CARD-E" / "DCIM" / "100GOPRO"
    folder.mkdir(parents=True)
    payload = json.dumps({"booking_id": "BK-E", "name": "Eva Lund", "product": "video"})
    ticket = ClipPlan("GX010001.MP4", T0, 1.5, "ticket BK-E", 1, payload)
    write_clip(ticket, folder / ticket.name, STYLE)
    params = dataclasses.replace(draw_params(31, compress=0.15), air_pocket_s=None, muffled=False)
    profile = generate(params)
    made = tmp_path / "made"
    made.mkdir()
    start = T0 + timedelta(minutes=3)
    paths = write_jump(
        profile, made, recording=2, chapter_s=40.0, video=VideoFormat(320, 180, 15),
        creation_time=start,
    )  # fmt: skip
    assert [p.name for p in paths][:2] == ["GX010002.MP4", "GX020002.MP4"]
    recording_s = 0.0
    for p in paths:
        recording_s += duration_of(p)
        closed = (start + timedelta(seconds=recording_s)).timestamp()
        os.utime(p, (closed, closed))  # the camera closed the chapter when it ended
        os.replace(p, folder / p.name)

    procs = start_system(spawn, s, await token_for(sessions, "hangar-e"), cards)

    async def published() -> bool:
        return bool(
            await pg.fetchval(
                "SELECT count(*) FROM pipeline_step WHERE name = 'publish' AND status = 'succeeded'"
            )
        )

    async with explained(pg, procs):
        await wait_for(published, timeout=300, interval=1, what="the edited jump published")
        phases = json.loads(
            await pg.fetchval("SELECT output FROM pipeline_step WHERE name = 'phases'")
        )
        video = Path(
            json.loads(
                await pg.fetchval("SELECT output FROM pipeline_step WHERE name = 'publish'")
            )["video"]
        )
    assert phases["needs_review"] is False, phases["reasons"]
    assert abs(phases["marks"]["exit"]["t"] - profile.truth.exit_s) <= 1.0
    edl = phases["edl"]
    assert {s["role"] for s in edl["spans"]} == {"jump"}
    assert len(edl["spans"]) >= 2  # the jump crosses a chapter boundary

    got = duration_of(video)
    assert got == pytest.approx(edl["total_s"], abs=0.5)
    assert got < recording_s - 15  # the climb is gone
    # the first frames are the door (still in the plane), freefall follows the exit
    assert blue_at(video, 0.0) < 150
    assert blue_at(video, DOOR_S + 1.5) > 150


async def test_a_jump_without_freefall_waits_for_a_person_then_renders_whole(
    system_settings: Settings, sessions, clean_db, pg: asyncpg.Connection, spawn, tmp_path: Path
) -> None:
    s = system_settings
    cards = tmp_path / "cards"
    folder = cards / "CARD-R" / "DCIM" / "100GOPRO"
    payload = json.dumps({"booking_id": "BK-R", "name": "Rui Costa", "product": "video"})
    ticket = ClipPlan("GX010001.MP4", T0, 1.5, "ticket BK-R", 1, payload)
    # footage of the ground: no telemetry track, a tone under steady noise, no jump in it
    ground = ClipPlan("GX010002.MP4", T0 + timedelta(minutes=3), 3.0, "ON THE GROUND", 2)
    folder.mkdir(parents=True)
    for plan in (ticket, ground):
        write_clip(plan, folder / plan.name, STYLE)
    procs = start_system(spawn, s, await token_for(sessions, "hangar-r"), cards)

    async def render_waits() -> bool:
        return bool(
            await pg.fetchval(
                "SELECT count(*) FROM pipeline_step WHERE name = 'render' "
                "AND waiting_for LIKE 'waiting for a person:%'"
            )
        )

    async with explained(pg, procs):
        await wait_for(render_waits, timeout=180, interval=1, what="the render waiting")
        row = await pg.fetchrow("SELECT key, status, review_reason FROM jump_session")
        assert row["status"] == "needs_review"
        assert "no freefall found" in row["review_reason"]
        assert await publishes(pg) == 0 and not list(s.output_dir.glob("*/*.mp4"))

        assign = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "streams.cli", "assign", row["key"], "--booking", "BK-R",
            "--passenger", "Rui Costa", env=settings_env(s), stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        _, err = await asyncio.wait_for(assign.communicate(), 60)
        assert assign.returncode == 0, err.decode()

        async def published() -> bool:
            return await publishes(pg) == 1

        await wait_for(published, timeout=180, interval=1, what="the approved jump published")
        out = await pg.fetchval("SELECT output FROM pipeline_step WHERE name = 'publish'")
    video = Path(json.loads(out)["video"])
    assert duration_of(video) == pytest.approx(3.0, abs=0.3)  # approved: the clip whole
