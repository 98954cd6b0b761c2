"""Fault suite, full disk: the share (card copies, render staging and the published output)
lives on a 24 MiB tmpfs, which fills up in the middle of the import and again in the middle of
the renders; then the space is freed. Real stack, real files, real FFmpeg.

A full disk is a state, not a failure: the detector's copies find the share full (before or
while writing), remove their partials and try again with backoff; renders that hit ENOSPC remove
their partials and are retried by the render queue with backoff. Nobody intervenes. End state:
every readable jump edited without a person and rendered exactly once (duration = its edit's),
every file imported once with the card's bytes, no copy counted as failed, no partial left, no
dead letter.
"""

from __future__ import annotations

import asyncio
import errno
import shutil
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
from support import small_disk as mounted_disk
from support import small_system, wait_for
from system.dropzone import Site, any_row, explained
from test_detector_restart import rendered_and_clean

from streams.settings import Settings

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]
JUMPS = 3


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 24 MiB file system."""
    with mounted_disk(tmp_path / "disk", "24m") as mnt:
        yield mnt


@pytest.fixture
def fault_settings(settings: Settings, small_disk: Path) -> Settings:
    share, output = small_disk / "share", small_disk / "output"
    share.mkdir()
    output.mkdir()
    # the output on the same file system as the share: publishing is a rename
    return small_system(settings, share_root=share, output_dir=output)


def fill(disk: Path) -> Path:
    """Take every free byte of ``disk`` (what another program filling the share would do)."""
    filler = disk / "filler"
    with filler.open("ab", buffering=0) as fh:
        try:
            while True:
                fh.write(b"\0" * 65536)
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                raise
    return filler


async def test_share_full_mid_import_and_mid_render_recovers_once_space_returns(
    fault_settings: Settings, small_disk: Path, site: Site, pg: asyncpg.Connection
) -> None:
    s = fault_settings
    card = site.card("CARD-F", JUMPS)
    procs = await site.start(s, "hangar-f")

    async def imported() -> int:
        return int(
            await pg.fetchval("SELECT count(*) FROM imported_file WHERE status = 'imported'")
        )

    render_started = (
        "SELECT count(*) FROM pipeline_step WHERE name = 'render' "
        "AND status IN ('ready', 'running')"
    )

    async with explained(pg, procs):
        # mid-import: the share fills up as soon as the detector writes its first copy. (The
        # ledger is no trigger: a card's copies can all land before the worker records the
        # first one, and a share filled after that leaves no copy to find it full.)
        cards = s.share_root / "cards"

        def copying() -> bool:
            return cards.is_dir() and any(p.is_file() for p in cards.rglob("*"))

        await wait_for(copying, timeout=90, interval=0.005, what="the first copy on the share")
        filler = fill(small_disk)
        assert shutil.disk_usage(small_disk).free < 64 * 1024
        await wait_for(
            lambda: "the share is full" in procs["detector"].output(),
            timeout=60,
            what="a copy finding the share full",
        )
        stuck_at = await imported()
        await asyncio.sleep(3)  # full for a while: copies wait, nothing is failed
        failed = await pg.fetch("SELECT path, reason FROM imported_file WHERE status = 'failed'")
        assert failed == [], [dict(r) for r in failed]
        filler.unlink()  # space returns: the copies go on by themselves

        # mid-render: full again as soon as a render is under way
        await wait_for(
            lambda: any_row(pg, render_started),
            timeout=120,
            interval=0.02,
            what="a render under way",
        )
        filler = fill(small_disk)
        assert await imported() > stuck_at
        await wait_for(
            lambda: "the disk is full" in procs["render"].output(),
            timeout=90,
            what="a render finding the disk full",
        )
        await asyncio.sleep(2)
        filler.unlink()
        await rendered_and_clean(pg, s, card, 150, "every jump rendered after the disk")
    retried = await pg.fetchval(
        "SELECT count(*) FROM pipeline_step WHERE name = 'render' AND attempt > 1"
    )
    print(
        "copies waiting for space:",
        procs["detector"].output().count("the share is full"),
        "renders retried for space:",
        procs["render"].output().count("the disk is full; retrying"),
        "render steps re-attempted:",
        retried,
    )
