"""The whole system, as a dropzone runs it: hub, Faust worker, render worker and a detector
watching a demo SD card — real PostgreSQL, Redis, broker, files and FFmpeg. The edit is on (the
default): each readable jump's video is cut to the jump its telemetry and sound show."""

from __future__ import annotations

import shutil
from pathlib import Path

import asyncpg
import av
import pytest
from support import settings_env, small_system, wait_for
from system.dropzone import (
    Site,
    any_row,
    assert_edited,
    edits,
    explained,
    jump_states,
    larger_frames,
    outputs,
    settled,
)

from agents.demo_card import add_jump, load_demo_card
from streams.settings import Settings

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


@pytest.fixture
def system_settings(settings: Settings) -> Settings:
    return small_system(settings)


async def test_a_card_becomes_finished_videos_and_nothing_twice(
    system_settings: Settings, site: Site, pg: asyncpg.Connection, tmp_path: Path
) -> None:
    s = system_settings
    cards = site.cards
    card = site.card("CARD-A", 3)
    procs = await site.start(s, "hangar-1")

    async def ready() -> bool:
        return await settled(pg, 3)

    try:
        await wait_for(ready, timeout=240, interval=1, what="3 jumps rendered, 2 waiting")
    except AssertionError:
        for name, p in procs.items():
            print(f"----- {name}\n{p.output()[-6000:]}")
        print(await jump_states(pg))
        raise

    videos = outputs(s)
    assert len(videos) == 3
    found = await edits(pg)
    assert_edited(card, found)
    for jump in card.readable_jumps:
        folder = [v for v in videos if v.parent.name.startswith(jump.booking_id)]
        assert len(folder) == 1, (jump.booking_id, videos)
        with av.open(str(folder[0])) as c:
            assert c.streams.video[0].codec_context.width == 320
            assert c.streams.audio, "no audio stream"
            got = (c.duration or 0) / 1e6
        assert got == pytest.approx(found[jump.booking_id]["edl"]["total_s"], abs=0.6)
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
    assert_edited(load_demo_card(cards / "CARD-A"), await edits(pg))  # the added jump too
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
    system_settings: Settings, site: Site, pg: asyncpg.Connection
) -> None:
    # a render still runs when its worker dies: each edited jump is most of a minute of video,
    # so a fast preset leaves plenty of render to interrupt
    s = larger_frames(system_settings, "veryfast")
    card = site.card("CARD-K", 3)  # each jump's recording is a minute long
    procs = await site.start(s, "hangar-9")
    env = settings_env(s)

    some_imported = "SELECT count(*) FROM imported_file WHERE status = 'imported'"
    await wait_for(lambda: any_row(pg, some_imported), timeout=60, what="the first copy landed")
    procs["worker"].kill()  # SIGKILL the Faust worker while the card is being imported
    site.spawn("streams.cli", "worker", env=env, name="worker-2")

    # a render under way: FFmpeg reported progress, or its job has run for a second
    rendering = (
        "SELECT count(*) FROM pipeline_step WHERE name = 'render' AND status = 'running' "
        "AND (progress > 0 OR started_at < now() - interval '1 second')"
    )
    async with explained(pg):
        await wait_for(
            lambda: any_row(pg, rendering), timeout=180, interval=0.1, what="a render in progress"
        )
    procs["render"].kill()  # SIGKILL the render worker (and its FFmpeg) mid-render
    site.spawn("streams.cli", "render-worker", env=env, name="render-2")

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
    assert_edited(card, await edits(pg))
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
