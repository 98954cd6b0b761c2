"""Moving a jump's marks by hand on the whole system (issue 15, item 7): hub, Faust worker, render
worker and a detector watching a card; real PostgreSQL, Redis, broker, files and FFmpeg.

A telemetry jump is edited and published; `POST /api/sessions/{key}/edit` with the exit 3 s later
and the landing 5 s earlier re-runs its phases step from the operator's marks, the render and the
publish: the published video is the new edit and replaces the session's own earlier video. A jump
with no freefall, waiting for a person, is approved by setting its marks and rendered from them.
"""

from __future__ import annotations

import dataclasses
import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import av
import httpx
import pytest
from support import small_system, wait_for
from system.dropzone import explained, start_system, token_for

from agents.demo_clips import ClipPlan, ClipStyle, write_clip
from agents.telemetry.profile import draw_params, generate
from agents.telemetry.synthetic import VideoFormat, write_jump
from streams.settings import Settings

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

STYLE = ClipStyle(seed=15, footage_seconds=1.5, qr_seconds=1.5, width=320, height=180, fps=15)
T0 = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)


def duration_of(path: Path) -> float:
    with av.open(str(path)) as c:
        return (c.duration or 0) / 1e6


async def step_row(pg: asyncpg.Connection, name: str) -> asyncpg.Record:
    row = await pg.fetchrow(
        "SELECT status, attempt, output FROM pipeline_step WHERE name = $1", name
    )
    assert row is not None, f"no {name} step"
    return row


async def published_at(pg: asyncpg.Connection, attempt: int) -> bool:
    """The publish step succeeded at `attempt` or later."""
    row = await pg.fetchrow("SELECT status, attempt FROM pipeline_step WHERE name = 'publish'")
    return row is not None and row["status"] == "succeeded" and row["attempt"] >= attempt


async def edit(s: Settings, key: str, marks: dict[str, float | None]) -> httpx.Response:
    token = s.admin_token.get_secret_value()
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{s.hub_port}", timeout=30) as c:
        return await c.post(
            f"/api/sessions/{key}/edit", json=marks, headers={"Authorization": f"Bearer {token}"}
        )


def ticket(folder: Path, booking: str, name: str) -> None:
    payload = json.dumps({"booking_id": booking, "name": name, "product": "video"})
    plan = ClipPlan("GX010001.MP4", T0, 1.5, f"ticket {booking}", 1, payload)
    write_clip(plan, folder / plan.name, STYLE)


async def test_moving_the_marks_renders_and_publishes_the_new_edit_in_place(
    settings: Settings, sessions, clean_db, pg: asyncpg.Connection, spawn, tmp_path: Path
) -> None:
    s = small_system(settings, edit_jumps=True, edit_door_s=4.0, edit_after_landing_s=2.0)
    cards = tmp_path / "cards"
    folder = cards / "CARD-M" / "DCIM" / "100GOPRO"
    folder.mkdir(parents=True)
    ticket(folder, "BK-M", "Mia Holm")
    params = dataclasses.replace(draw_params(31, compress=0.15), air_pocket_s=None, muffled=False)
    profile = generate(params)
    made = tmp_path / "made"
    made.mkdir()
    start = T0 + timedelta(minutes=3)
    paths = write_jump(
        profile, made, recording=2, chapter_s=40.0, video=VideoFormat(320, 180, 15),
        creation_time=start,
    )  # fmt: skip
    recording_s = 0.0
    for p in paths:
        recording_s += duration_of(p)
        closed = (start + timedelta(seconds=recording_s)).timestamp()
        os.utime(p, (closed, closed))
        os.replace(p, folder / p.name)
    procs = start_system(spawn, s, await token_for(sessions, "hangar-m"), cards)

    async with explained(pg, procs):
        await wait_for(lambda: published_at(pg, 1), timeout=300, interval=1,
                       what="the detected edit published")  # fmt: skip
        first = json.loads((await step_row(pg, "phases"))["output"])
        first_render = json.loads((await step_row(pg, "render"))["output"])
        key = await pg.fetchval("SELECT key FROM jump_session WHERE booking_id = 'BK-M'")
        assert first["needs_review"] is False, first["reasons"]
        # the chart of the recording, for the dashboard
        assert first["recording_s"] == pytest.approx(recording_s, abs=0.2)
        assert [c["name"] for c in first["clips"]] == [p.name for p in paths]
        chart = first["timeline"]
        assert 0 < len(chart["t"]) <= 600
        assert {len(chart[k]) for k in ("altitude_m", "accel_g", "sound_db")} == {len(chart["t"])}
        assert any(a is not None for a in chart["altitude_m"])
        assert all(g is not None for g in chart["accel_g"])

        marks = {k: first["marks"][k]["t"] for k in ("exit", "opening", "landing")}
        moved = {
            "exit": round(marks["exit"] + 3.0, 2),
            "opening": marks["opening"],
            "landing": round(marks["landing"] - 5.0, 2),
        }
        r = await edit(s, key, moved)
        assert r.status_code == 202, r.text
        await wait_for(lambda: published_at(pg, 2), timeout=300, interval=1,
                       what="the moved edit published")  # fmt: skip
        phases = await step_row(pg, "phases")
        render = await step_row(pg, "render")
        publish = await step_row(pg, "publish")

    again = json.loads(phases["output"])
    assert phases["attempt"] == 2 and render["attempt"] >= 2
    assert again["needs_review"] is False and again["reasons"] == []
    for kind in ("exit", "opening", "landing"):
        assert again["marks"][kind] == {"t": moved[kind], "confidence": 1.0, "source": "operator"}
    assert any(n.startswith("marks set by ") for n in again["notes"])
    assert len(again["timeline"]["t"]) == len(chart["t"])  # the chart stays
    edl = again["edl"]
    assert edl["total_s"] == pytest.approx(first["edl"]["total_s"] - 8.0, abs=0.05)
    assert edl["spans"][0]["start"] == pytest.approx(moved["exit"] - 4.0, abs=0.05)

    rendered = json.loads(render["output"])
    assert rendered["fingerprint"] != first_render["fingerprint"]
    out = json.loads(publish["output"])
    assert out["replaced"] is True and out["reused"] is False
    videos = sorted(s.output_dir.glob("*/*.mp4"))
    assert videos == [Path(out["video"])]  # the session's one video, replaced in place
    assert duration_of(videos[0]) == pytest.approx(edl["total_s"], abs=0.5)


async def test_a_jump_without_freefall_is_approved_by_its_marks_and_cut_to_them(
    settings: Settings, sessions, clean_db, pg: asyncpg.Connection, spawn, tmp_path: Path
) -> None:
    s = small_system(settings, edit_jumps=True, edit_door_s=0.5, edit_after_landing_s=0.5)
    cards = tmp_path / "cards"
    folder = cards / "CARD-N" / "DCIM" / "100GOPRO"
    folder.mkdir(parents=True)
    ticket(folder, "BK-N", "Noa Berg")
    ground = ClipPlan("GX010002.MP4", T0 + timedelta(minutes=3), 3.0, "ON THE GROUND", 2)
    write_clip(ground, folder / ground.name, STYLE)
    procs = start_system(spawn, s, await token_for(sessions, "hangar-n"), cards)

    async def render_waits() -> bool:
        return bool(
            await pg.fetchval(
                "SELECT count(*) FROM pipeline_step WHERE name = 'render' "
                "AND waiting_for LIKE 'waiting for a person:%'"
            )
        )

    async with explained(pg, procs):
        await wait_for(render_waits, timeout=180, interval=1, what="the render waiting")
        row = await pg.fetchrow("SELECT key, status FROM jump_session WHERE booking_id = 'BK-N'")
        assert row["status"] == "needs_review"
        first = json.loads((await step_row(pg, "phases"))["output"])
        assert first["edl"] is None and "no freefall found" in first["reasons"]
        assert first["recording_s"] == pytest.approx(3.0, abs=0.2)

        too_late = await edit(s, row["key"], {"exit": 1.0, "opening": 1.5, "landing": 9.0})
        assert too_late.status_code == 422 and "beyond the end" in too_late.text
        r = await edit(s, row["key"], {"exit": 1.0, "opening": 1.5, "landing": 2.0})
        assert r.status_code == 202, r.text
        assert r.json()["approved"] is True
        await wait_for(lambda: published_at(pg, 1), timeout=180, interval=1,
                       what="the jump published from its marks")  # fmt: skip
        status = await pg.fetchval("SELECT status FROM jump_session WHERE key = $1", row["key"])
        phases = json.loads((await step_row(pg, "phases"))["output"])
        out = json.loads((await step_row(pg, "publish"))["output"])
    assert status == "assigned"
    assert phases["needs_review"] is False and phases["marks"]["exit"]["source"] == "operator"
    assert phases["edl"]["total_s"] == pytest.approx(2.0, abs=0.05)  # 0.5 s .. 2.5 s
    videos = sorted(s.output_dir.glob("*/*.mp4"))
    assert videos == [Path(out["video"])]
    assert duration_of(videos[0]) == pytest.approx(2.0, abs=0.3)  # the cut, not the 3 s whole
