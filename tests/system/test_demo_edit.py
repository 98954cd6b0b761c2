"""The demo card on the whole system with the edit on by default (issue 15): hub, Faust worker,
render worker and a detector watching the card — real PostgreSQL, Redis, broker, files, FFmpeg.
Every readable jump (telemetry or sound only, one in two chapters) is edited without a person:
the `phases` step finds the manifest's true marks and the published video is as long as its EDL,
shorter than the recording."""

from __future__ import annotations

from pathlib import Path

import asyncpg
import av
import pytest
from support import small_system, wait_for
from system.dropzone import Site, assert_edited, edits, explained, outputs, settled

from agents.demo_card import DemoJump
from agents.media.probe import probe
from streams.settings import Settings

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

MARK_TOLERANCE_S = 1.0
SOUND_OPENING_TOLERANCE_S = 3.0  # the sound alone hears the opening ~2 s after the shock


@pytest.fixture
def system_settings(settings: Settings) -> Settings:
    assert settings.edit_jumps is True  # the default
    return small_system(settings, edit_door_s=4.0, edit_after_landing_s=2.0)


def duration_of(path: Path) -> float:
    with av.open(str(path)) as c:
        return (c.duration or 0) / 1e6


def recorded_s(site: Site, card: str, jump: DemoJump) -> float:
    return sum(probe(site.cards / card / f).duration_s or 0 for f in jump.footage_files)


async def test_the_demo_cards_jumps_become_edited_videos_without_a_person(
    system_settings: Settings, site: Site, pg: asyncpg.Connection
) -> None:
    s = system_settings
    card = site.card("CARD-D", 3)
    assert not all(j.telemetry for j in card.readable_jumps)  # one camera is sound only
    assert any(len(j.footage_files) == 2 for j in card.readable_jumps)  # one is chaptered
    procs = await site.start(s, "hangar-d")

    async def ready() -> bool:
        return await settled(pg, len(card.readable_jumps))

    async with explained(pg, procs):
        await wait_for(ready, timeout=300, interval=1, what="the readable jumps published")
        found = await edits(pg)
        published = {
            json_row["booking_id"]: Path(json_row["video"])
            for json_row in await pg.fetch(
                "SELECT js.booking_id, s.output::json->>'video' AS video FROM pipeline_step s "
                "JOIN jump_session js ON js.execution_id = s.execution_id "
                "WHERE s.name = 'publish' AND s.status = 'succeeded'"
            )
        }
    assert_edited(card, found)
    assert len(outputs(s)) == len(card.readable_jumps)
    for jump in card.readable_jumps:
        edit, truth = found[jump.booking_id], jump.truth
        assert truth is not None
        assert edit["sources"]["telemetry"] is jump.telemetry
        marks = edit["marks"]
        opening_tolerance = MARK_TOLERANCE_S if jump.telemetry else SOUND_OPENING_TOLERANCE_S
        assert abs(marks["exit"]["t"] - truth.exit_s) <= MARK_TOLERANCE_S
        assert abs(marks["opening"]["t"] - truth.opening_s) <= opening_tolerance
        assert abs(marks["landing"]["t"] - truth.landing_s) <= MARK_TOLERANCE_S
        video = published[jump.booking_id]
        got = duration_of(video)
        assert got == pytest.approx(edit["edl"]["total_s"], abs=0.6), jump.booking_id
        assert got < recorded_s(site, "CARD-D", jump) - 10, jump.booking_id  # the climb is cut
        if len(jump.footage_files) == 2:  # the edit crosses the chapter boundary
            assert len({span["file_id"] for span in edit["edl"]["spans"]}) == 2
    # the unreadable ticket and the footage before any ticket still wait for a person
    waiting = await pg.fetchval(
        "SELECT count(*) FROM pipeline_execution WHERE pipeline = 'jump' AND status = 'waiting'"
    )
    assert waiting == 2
