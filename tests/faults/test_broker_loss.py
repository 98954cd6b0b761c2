"""Fault suite, broker: the Tansu broker is SIGKILLed mid-import and mid-render, and PostgreSQL
(the truth) brings every jump home through the reconciler.

The session's broker fixture serves every other test, so these tests start a private Tansu on a
free port and, after the SIGKILL, start it again on the SAME port. Tansu comes back with no
topics, so the test creates them again exactly as `skyreel run` does (streams/kafka.py
`ensure_topics`, the call streams/kafka.py makes), as soon as the port answers — before the
children's clients could auto-create them with the broker's default partition count. The Faust
worker, the render worker, the hub and the detector keep running and reconnect by themselves:
the hub's copy-request consumer resets a position the recreated topic no longer has to its first
offset (not its end), so the requests the reconciler re-sends reach the detector.

Each test ends with the same checks: every booking jump edited without a person and rendered
exactly once (video duration = its edit's; no intro is configured), every listed file imported, no
execution waiting except the demo's deliberate review sessions, no orphan in staging, no dead
letter. The seconds from the broker's restart to the last video are printed (`-s` shows them).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import asyncpg
import av
import pytest
from support import Proc, small_system, wait_for
from system.dropzone import (
    Site,
    any_row,
    assert_edited,
    edits,
    explained,
    larger_frames,
    print_open_steps,
)

from agents.demo_card import DemoCard
from streams.kafka import ensure_topics
from streams.settings import Settings
from streams.stack.services import ChildService, start_tansu
from streams.topics import Names

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

JUMPS = 2
REVIEW = 2  # the unreadable ticket's jump and the footage before the first ticket


@pytest.fixture
def fault_settings(settings: Settings, private_broker: list[ChildService]) -> Settings:
    return small_system(settings, kafka_url=private_broker[0].address)


async def start_stack(site: Site, s: Settings) -> dict[str, Proc]:
    """The whole system on the private broker (its topics created first, as `skyreel run`
    does)."""
    await ensure_topics(s.kafka_url, Names(s.topic_prefix).source_topics(), s.topic_partitions)
    return await site.start(s, "hangar-b")


#: How long the broker stays dead: long enough for the clients' own retries to give up.
OUTAGE_S = 4.0


async def restart_broker(held: list[ChildService], s: Settings, tmp_path: Path) -> float:
    """SIGKILL the broker, bring it back on the same port with its topics; returns when."""
    old = held[0]
    old.kill()
    await asyncio.sleep(OUTAGE_S)
    svc = start_tansu(tmp_path / "tansu", port=old.port)
    held[0] = svc
    await ensure_topics(svc.address, Names(s.topic_prefix).source_topics(), s.topic_partitions)
    return time.monotonic()


async def explain(pg: asyncpg.Connection, procs: dict[str, Proc]) -> None:
    await print_open_steps(pg)
    for r in await pg.fetch(
        "SELECT s.name, l.attempt, l.actor, l.message FROM pipeline_step_log l "
        "JOIN pipeline_step s ON s.id = l.step_id WHERE l.actor LIKE 'system%' ORDER BY l.id"
    ):
        print("log", dict(r))
    for name, p in procs.items():
        print(f"----- {name}\n{p.output()[-5000:]}")


UNFINISHED = (
    "SELECT e.key FROM pipeline_execution e WHERE e.status IN ('running', 'waiting', "
    "'pending') AND e.id NOT IN (SELECT execution_id FROM jump_session WHERE status IN "
    "('needs_review', 'unassigned') AND execution_id IS NOT NULL)"
)


async def settled(pg: asyncpg.Connection) -> bool:
    """Every booking jump succeeded, the review jumps wait for a person, nothing else is open
    (an import execution may still be catching up with a lost landing after the jumps)."""
    counts = dict(
        await pg.fetch(
            "SELECT status, count(*) FROM pipeline_execution WHERE pipeline = 'jump' "
            "GROUP BY status"
        )
    )
    return (
        counts.get("succeeded", 0) == JUMPS
        and counts.get("waiting", 0) == REVIEW
        and not await pg.fetch(UNFINISHED)
    )


async def wait_settled(pg: asyncpg.Connection, procs: dict[str, Proc], timeout: float) -> None:
    async with explained(pg, procs, explain):
        await wait_for(lambda: settled(pg), timeout=timeout, interval=0.5, what="jumps settled")


async def check_end_state(pg: asyncpg.Connection, s: Settings, card: DemoCard) -> None:
    """Every booking jump edited without a person and rendered exactly once, as long as its
    edit; nothing stuck or left."""
    videos = sorted(s.output_dir.glob("*/*.mp4"))
    assert {v.parent.name.split("_")[0] for v in videos} == {
        j.booking_id for j in card.readable_jumps
    }
    assert len(videos) == JUMPS
    found = await edits(pg)
    assert_edited(card, found)
    for video in videos:
        edl = found[video.parent.name.split("_")[0]]["edl"]["total_s"]
        with av.open(str(video)) as c:
            duration = (c.duration or 0) / 1e6
        assert abs(duration - float(edl)) <= 0.6, (video.name, duration, edl)
    # one succeeded render and publish attempt per jump: nothing rendered twice
    assert (
        await pg.fetchval(
            "SELECT count(*) FROM (SELECT step_id FROM pipeline_step_attempt "
            "WHERE status = 'succeeded' GROUP BY step_id HAVING count(*) > 1) d"
        )
        == 0
    )
    assert await pg.fetchval("SELECT value FROM counter WHERE name = 'videos_published'") == JUMPS
    assert (
        await pg.fetchval(
            "SELECT count(*) FROM imported_file WHERE status <> 'imported' AND kind <> 'proxy'"
        )
        == 0
    )
    assert await pg.fetch(UNFINISHED) == []
    assert [p for p in s.render_staging.rglob("*") if p.is_file()] == []
    assert [p for p in s.output_dir.rglob("*") if ".partial" in p.name] == []
    assert await pg.fetchval("SELECT count(*) FROM dead_letter") == 0


async def recovered_after(pg: asyncpg.Connection, since: float) -> float:
    """Seconds from the broker's restart to the last publish (clock of PostgreSQL)."""
    age = await pg.fetchval(
        "SELECT extract(epoch FROM now() - max(finished_at)) FROM pipeline_step "
        "WHERE name = 'publish' AND status = 'succeeded'"
    )
    return round(time.monotonic() - since - float(age), 1)


async def test_broker_killed_mid_import_every_jump_still_renders(
    fault_settings: Settings,
    private_broker: list[ChildService],
    site: Site,
    pg: asyncpg.Connection,
    tmp_path: Path,
) -> None:
    s = fault_settings
    card = site.card("CARD-B", JUMPS)
    procs = await start_stack(site, s)

    first_qr_imported = (
        "SELECT count(*) FROM imported_file WHERE kind = 'qr_candidate' AND status = 'imported'"
    )
    await wait_for(
        lambda: any_row(pg, first_qr_imported), timeout=90, interval=0.01, what="the first QR clip"
    )
    back = await restart_broker(private_broker, s, tmp_path)
    await wait_settled(pg, procs, timeout=150)
    print(f"broker killed mid-import: last video {await recovered_after(pg, back)}s after restart")
    await check_end_state(pg, s, card)


async def test_broker_killed_mid_render_the_render_is_published_not_redone(
    fault_settings: Settings,
    private_broker: list[ChildService],
    site: Site,
    pg: asyncpg.Connection,
    tmp_path: Path,
) -> None:
    # the broker dies while a render is running (an edited jump is most of a minute of video)
    s = larger_frames(fault_settings, "veryfast")
    card = site.card("CARD-R", JUMPS)  # each jump's recording is a minute long
    procs = await start_stack(site, s)

    rendering = (
        "SELECT count(*) FROM pipeline_step WHERE name = 'render' AND status = 'running' "
        "AND waiting_for = '' AND (progress > 0 OR started_at < now() - interval '1 s')"
    )
    async with explained(pg, procs, explain):
        await wait_for(
            lambda: any_row(pg, rendering), timeout=150, interval=0.05, what="a render in progress"
        )
    old = private_broker[0]
    old.kill()

    # the broker stays down until the render is finished: its result cannot reach anyone
    def staged() -> bool:
        return any(s.render_staging.glob("*/*.json"))

    await wait_for(staged, timeout=120, interval=0.1, what="the render finished (staged)")
    svc = start_tansu(tmp_path / "tansu", port=old.port)
    private_broker[0] = svc
    await ensure_topics(svc.address, Names(s.topic_prefix).source_topics(), s.topic_partitions)
    back = time.monotonic()
    await wait_settled(pg, procs, timeout=150)
    print(f"broker killed mid-render: last video {await recovered_after(pg, back)}s after restart")
    await check_end_state(pg, s, card)
    # the render that finished while the broker was down was published, not rendered again
    assert (
        await pg.fetchval(
            "SELECT count(*) FROM pipeline_step WHERE name = 'render' AND attempt > 1"
        )
        == 0
    )
