"""The whole system, as a dropzone runs it: hub, Faust worker, render worker and a detector
watching a demo SD card — real PostgreSQL, Redis, broker, files and FFmpeg."""

from __future__ import annotations

import shutil
from pathlib import Path

import asyncpg
import av
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from support import Proc, settings_env, small_system, wait_for

from agents.demo_card import DemoCard, add_jump, write_demo_card
from storage.detectors import register_detector
from streams.settings import Settings

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


@pytest.fixture
def system_settings(settings: Settings) -> Settings:
    return small_system(settings)


async def token_for(sessions: async_sessionmaker[AsyncSession], detector_id: str) -> str:
    async with sessions() as session, session.begin():
        return (await register_detector(session, detector_id, detector_id)).token


def start_system(spawn, s: Settings, token: str, cards: Path) -> dict[str, Proc]:
    env = settings_env(s)
    procs = {
        "hub": spawn("streams.cli", "hub", env=env, name="hub"),
        "worker": spawn("streams.cli", "worker", env=env, name="worker"),
        "render": spawn("streams.cli", "render-worker", env=env, name="render"),
    }
    procs["detector"] = spawn(
        "detector",
        "--hub",
        f"ws://127.0.0.1:{s.hub_port}/ws/detector",
        f"--token={token}",
        "--share",
        str(s.share_root),
        "--watch",
        str(cards),
        env=env,
        name="detector",
    )
    return procs


async def jump_states(pg: asyncpg.Connection) -> dict[str, str]:
    rows = await pg.fetch(
        "SELECT s.key, s.status AS session, e.status FROM jump_session s "
        "LEFT JOIN pipeline_execution e ON e.id = s.execution_id"
    )
    return {r["key"]: f"{r['session']}/{r['status']}" for r in rows}


async def settled(pg: asyncpg.Connection, rendered: int) -> bool:
    done = await pg.fetchval(
        "SELECT count(*) FROM pipeline_execution WHERE pipeline = 'jump' AND status = 'succeeded'"
    )
    waiting = await pg.fetchval(
        "SELECT count(*) FROM pipeline_execution WHERE pipeline = 'jump' AND status = 'waiting'"
    )
    return bool(done == rendered and waiting == 2)


async def explain(pg: asyncpg.Connection, procs: dict[str, Proc] | None = None) -> None:
    """Print what the pipeline looks like (on a failure, for whoever reads the log)."""
    for r in await pg.fetch(
        "SELECT e.key, s.name, s.status, s.attempt, s.worker, s.waiting_for, s.error "
        "FROM pipeline_step s JOIN pipeline_execution e ON e.id = s.execution_id "
        "WHERE s.status <> 'succeeded' ORDER BY e.id, s.name"
    ):
        print(dict(r))
    for r in await pg.fetch(
        "SELECT s.name, l.attempt, l.at, l.actor, l.message FROM pipeline_step_log l "
        "JOIN pipeline_step s ON s.id = l.step_id WHERE s.status <> 'succeeded' ORDER BY l.id"
    ):
        print("log", dict(r))
    for r in await pg.fetch(
        "SELECT s.name, a.attempt, a.status, a.worker, a.started_at, a.finished_at "
        "FROM pipeline_step_attempt a JOIN pipeline_step s ON s.id = a.step_id "
        "WHERE s.status <> 'succeeded' ORDER BY s.name, a.attempt"
    ):
        print("attempt", dict(r))
    for name, p in (procs or {}).items():
        print(f"----- {name}\n{p.output()[-4000:]}")


def outputs(s: Settings) -> list[Path]:
    return sorted(s.output_dir.glob("*/*.mp4"))


async def test_a_card_becomes_finished_videos_and_nothing_twice(
    system_settings: Settings,
    sessions,
    clean_db,
    pg: asyncpg.Connection,
    spawn,
    tmp_path: Path,
) -> None:
    s = system_settings
    cards = tmp_path / "cards"
    card: DemoCard = write_demo_card(
        cards / "CARD-A", 3, footage_seconds=1.5, qr_seconds=1.5, size=(320, 180)
    )
    token = await token_for(sessions, "hangar-1")
    procs = start_system(spawn, s, token, cards)

    async def ready() -> bool:
        return await settled(pg, 3)

    try:
        await wait_for(ready, timeout=120, interval=1, what="3 jumps rendered, 2 waiting")
    except AssertionError:
        for name, p in procs.items():
            print(f"----- {name}\n{p.output()[-6000:]}")
        print(await jump_states(pg))
        raise

    videos = outputs(s)
    assert len(videos) == 3
    for jump in card.readable_jumps:
        folder = [v for v in videos if v.parent.name.startswith(jump.booking_id)]
        assert len(folder) == 1, (jump.booking_id, videos)
        with av.open(str(folder[0])) as c:
            assert c.streams.video[0].codec_context.width == 320
            assert c.streams.audio, "no audio stream"
        assert folder[0].with_suffix(".jpg").exists()
    # the QR agent recorded every ticket: booking and passenger, or why it could not
    scans = {
        r["path"]: r
        for r in await pg.fetch(
            "SELECT f.path, q.status, q.booking_id, q.passenger, q.decoder FROM qr_scan q "
            "JOIN imported_file f ON f.id = q.file_id"
        )
    }
    for jump in card.jumps:
        scan = scans[jump.qr_file]
        if jump.unreadable:
            assert scan["status"] == "unreadable"
        else:
            assert (scan["status"], scan["booking_id"], scan["passenger"]) == (
                "decoded",
                jump.booking_id,
                jump.passenger,
            ), scan
    states = await jump_states(pg)
    assert sorted(states.values()).count("needs_review/waiting") == 1
    assert sorted(states.values()).count("unassigned/waiting") == 1
    copied = await pg.fetchval("SELECT count(*) FROM imported_file WHERE status = 'imported'")
    assert copied == len(card.videos)

    # The same card again: nothing is copied, nothing rendered.
    shutil.move(cards / "CARD-A", tmp_path / "pulled")
    await wait_for(
        lambda: pg.fetchval("SELECT NOT present FROM card"), timeout=30, what="card removed"
    )
    requests_before = await pg.fetchval("SELECT sum(request_count) FROM imported_file")
    shutil.move(tmp_path / "pulled", cards / "CARD-A")
    await wait_for(
        lambda: pg.fetchval("SELECT present FROM card"), timeout=30, what="card inserted again"
    )
    # new footage on the card: only it is copied and only its jump rendered
    shutil.move(cards / "CARD-A", tmp_path / "pulled")
    await wait_for(
        lambda: pg.fetchval("SELECT NOT present FROM card"), timeout=30, what="card removed"
    )
    new_jump = add_jump(tmp_path / "pulled")
    shutil.move(tmp_path / "pulled", cards / "CARD-A")

    async def four() -> bool:
        return await settled(pg, 4)

    await wait_for(four, timeout=300, interval=1, what="the new jump rendered")
    assert requests_before == await pg.fetchval(
        "SELECT sum(request_count) FROM imported_file WHERE first_listed_at < "
        "(SELECT min(first_listed_at) FROM imported_file WHERE path = $1)",
        new_jump.qr_file,
    )
    assert len(outputs(s)) == 4
    assert (
        await pg.fetchval(
            "SELECT count(*) FROM pipeline_step WHERE name = 'render' AND attempt > 1"
        )
        == 0
    )


async def test_killed_workers_reach_the_same_final_state(
    system_settings: Settings,
    sessions,
    clean_db,
    pg: asyncpg.Connection,
    spawn,
    tmp_path: Path,
) -> None:
    # Larger frames and a slower preset, so a render is still running when its worker dies.
    s = system_settings.model_copy(
        update={
            "render_width": 960,
            "render_height": 540,
            "render_fps": 30,
            "render_preset": "medium",
        }
    )
    cards = tmp_path / "cards"
    card = write_demo_card(
        cards / "CARD-K", 3, footage_seconds=4.0, qr_seconds=1.5, size=(320, 180)
    )
    token = await token_for(sessions, "hangar-9")
    procs = start_system(spawn, s, token, cards)
    env = settings_env(s)

    async def some_imported() -> bool:
        return bool(
            await pg.fetchval("SELECT count(*) FROM imported_file WHERE status = 'imported'")
        )

    await wait_for(some_imported, timeout=60, what="the first copy landed")
    procs["worker"].kill()  # SIGKILL the Faust worker while the card is being imported
    spawn("streams.cli", "worker", env=env, name="worker-2")

    async def rendering() -> bool:
        # a render under way: FFmpeg reported progress, or its job has run for a second
        return bool(
            await pg.fetchval(
                "SELECT count(*) FROM pipeline_step WHERE name = 'render' AND status = 'running' "
                "AND (progress > 0 OR started_at < now() - interval '1 second')"
            )
        )

    try:
        await wait_for(rendering, timeout=180, interval=0.1, what="a render in progress")
    except AssertionError:
        await explain(pg)
        raise
    procs["render"].kill()  # SIGKILL the render worker (and its FFmpeg) mid-render
    spawn("streams.cli", "render-worker", env=env, name="render-2")

    async def ready() -> bool:
        return await settled(pg, 3)

    await wait_for(ready, timeout=240, interval=1, what="3 jumps rendered after the kills")
    videos = outputs(s)
    assert len(videos) == 3
    assert {v.parent.name.split("_")[0] for v in videos} == {
        j.booking_id for j in card.readable_jumps
    }
    leftovers = [p for p in s.output_dir.rglob("*") if ".partial" in p.name]
    leftovers += [p for p in s.render_staging.rglob("*") if p.is_file()]
    assert leftovers == []
    states = sorted((await jump_states(pg)).values())
    assert states.count("needs_review/waiting") == 1
    assert states.count("unassigned/waiting") == 1
    # no step succeeded twice
    assert (
        await pg.fetchval(
            "SELECT count(*) FROM (SELECT step_id FROM pipeline_step_attempt "
            "WHERE status = 'succeeded' GROUP BY step_id HAVING count(*) > 1) d"
        )
        == 0
    )
    assert (
        await pg.fetchval(
            "SELECT count(*) FROM imported_file WHERE status <> 'imported' AND kind <> 'proxy'"
        )
        == 0
    )
