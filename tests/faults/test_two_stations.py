"""Fault suite, two stations: one card's files visible to two detectors at once (both watch the
same card folder and copy to the same share), on the real stack.

Both stations list the card; the later listing asks the second station for every file not
imported yet, so both copy the same files side by side. Each writes its own temp name
(``.<name>.<station>.skyreel-partial``), so neither unlinks the other's partial; whichever
finishes first imports the file, the other's result is a duplicate. End state: every file
imported once with the card's bytes, no copy failed, no partial left, every readable jump
edited without a person and rendered exactly once (as long as its edit), no dead letter.
"""

from __future__ import annotations

import asyncio

import asyncpg
import pytest
from support import small_system, wait_for
from system.dropzone import Site, detector, explained, start_system
from test_detector_restart import make_large, partials, rendered_and_clean

from agents.demo_card import load_demo_card
from streams.settings import Settings

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]
JUMPS = 2
CONNECTED = "connected to the hub as detector"  # detector/client.py's line


@pytest.fixture
def fault_settings(settings: Settings) -> Settings:
    return small_system(settings)


async def test_two_stations_copy_one_card_without_touching_each_others_partials(
    fault_settings: Settings, site: Site, pg: asyncpg.Connection
) -> None:
    s = fault_settings
    staged = site.card("CARD-2", JUMPS, folder=site.cards.parent / "staging")
    for jump in staged.readable_jumps:  # large clips: both stations are still copying them
        make_large(staged, jump.footage_files[-1])
    site.cards.mkdir(parents=True, exist_ok=True)  # watched, empty until both are connected
    token_a = await site.token("station-a")
    token_b = await site.token("station-b")
    procs = start_system(site.spawn, s, token_a, site.cards)
    procs["detector-b"] = detector(site.spawn, s, token_b, site.cards, "detector-b")
    # the card goes in once both stations are connected, so both list it while the large clips
    # are still being copied (a station that starts late on a busy machine would find it done)
    await wait_for(
        lambda: all(CONNECTED in procs[n].output() for n in ("detector", "detector-b")),
        timeout=90, what="both stations connected to the hub",
    )  # fmt: skip
    staged.root.rename(site.cards / "CARD-2")
    card = load_demo_card(site.cards / "CARD-2")
    seen: set[str] = set()  # the partials observed on the share, by name
    both_at_once = False
    stop = asyncio.Event()

    async def watch_partials() -> None:
        nonlocal both_at_once
        while not stop.is_set():
            names = {p.name for p in partials(s.share_root)}
            seen.update(names)
            if any(".station-a." in n for n in names) and any(".station-b." in n for n in names):
                both_at_once = True
            await asyncio.sleep(0.01)

    watcher = asyncio.create_task(watch_partials())

    try:
        async with explained(pg, procs):
            await rendered_and_clean(pg, s, card, 180, "every jump rendered")
    finally:
        stop.set()
        await watcher
    logs = {name: procs[name].output() for name in ("detector", "detector-b")}
    for name, log in logs.items():
        assert "temp file was gone" not in log, name
        assert "source disappeared" not in log, name
        assert " failed: " not in log, (name, log[-3000:])
    # both stations were asked for files of the card, and each wrote under its own temp name
    asked = {name: log.count(" queued: ") for name, log in logs.items()}
    assert all(asked.values()), asked
    assert not [n for n in seen if ".station-" not in n], seen
    print("stations asked:", asked, "both partials at once:", both_at_once)
