"""Earlier renders (issue 18), whole system: a jump is grouped and rendered as soon as its span of
the card is closed, not after every QR clip of the card was read.

Real hub, Faust worker, render worker, detector, PostgreSQL, Redis, broker, files and FFmpeg.
A card of three jumps whose last ticket clip cannot be copied for a while: the card copies land
on their own small file system, and that clip is padded (an MP4 ``free`` box: same video, same
QR, same duration) to more than the space left once every other file is copied, so the
detector's copy of it waits for space. The first jump's render starts while the last ticket is
still not decoded; once space returns, every jump is rendered once, with the sessions the
whole-card grouping gives.
"""

from __future__ import annotations

import os
import shutil
import struct
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
from support import small_disk, small_system, wait_for
from system.dropzone import Site, any_row, explained

from agents.demo_card import DemoCard, write_demo_card
from streams.settings import Settings

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]
JUMPS = 3
PAGE = 4096
MARGIN = 1 << 20  # room left beyond the other files (whatever else a copy writes)


@pytest.fixture
def early_settings(settings: Settings, tmp_path: Path) -> Iterator[Settings]:
    share, output = tmp_path / "early-share", tmp_path / "early-output"
    share.mkdir()
    output.mkdir()
    with small_disk(share / "cards", "256m"):
        yield small_system(settings, share_root=share, output_dir=output)


def pages(size: int) -> int:
    return -(-size // PAGE) * PAGE


def pad(path: Path, to_size: int) -> None:
    """Grow an MP4 to ``to_size`` with a trailing ``free`` box (players and decoders skip it),
    keeping its mtime."""
    st = path.stat()
    extra = to_size - st.st_size
    assert 8 < extra < 1 << 32
    with path.open("ab") as fh:
        fh.write(struct.pack(">I4s", extra, b"free"))
        fh.write(b"\0" * (extra - 8))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def leave_free(disk: Path, free: int) -> Path:
    """Take the space of ``disk`` but ``free`` bytes."""
    filler = disk / "filler"
    size = shutil.disk_usage(disk).free - free
    chunk = b"\0" * (1 << 20)
    with filler.open("wb") as fh:  # tmpfs: written bytes are taken pages
        while size > 0:
            size -= fh.write(chunk[: min(size, len(chunk))])
    left = shutil.disk_usage(disk).free
    assert abs(left - free) <= 4 * PAGE, (left, free)
    return filler


async def file_id(pg: asyncpg.Connection, path: str) -> int:
    return int(await pg.fetchval("SELECT id FROM imported_file WHERE path = $1", path))


async def test_the_first_jump_renders_before_the_last_ticket_is_read(
    early_settings: Settings, site: Site, pg: asyncpg.Connection
) -> None:
    s = early_settings
    card: DemoCard = write_demo_card(
        site.cards / "CARD-E",
        JUMPS,
        footage_seconds=1.5,
        qr_seconds=1.5,
        size=(320, 180),
        unreadable_jump=None,
    )
    last_qr = card.jumps[-1].qr_file
    others = sum(pages(card.path(v).stat().st_size) for v in card.videos if v != last_qr)
    pad(card.path(last_qr), others + 8 * MARGIN)
    assert card.path(last_qr).stat().st_size <= s.qr_candidate_max_bytes
    disk = s.share_root / "cards"
    filler = leave_free(disk, others + MARGIN)
    procs = await site.start(s, "hangar-e")
    first = card.jumps[0]

    async with explained(pg, procs):
        await wait_for(
            lambda: "the share is full" in procs["detector"].output(),
            timeout=120,
            what="the last ticket's copy waiting for space",
        )
        first_render = (
            "SELECT count(*) FROM pipeline_step s JOIN pipeline_execution e "
            "ON e.id = s.execution_id JOIN imported_file f ON e.key = 'jump:qr:' || f.id "
            f"WHERE f.path = '{first.qr_file}' AND s.name = 'render' "
            "AND s.status IN ('running', 'succeeded')"
        )
        await wait_for(
            lambda: any_row(pg, first_render), timeout=240, what="the first jump's render"
        )
        held = await pg.fetchrow(
            "SELECT f.status, (SELECT count(*) FROM qr_scan q WHERE q.file_id = f.id) AS scans "
            "FROM imported_file f WHERE f.path = $1",
            last_qr,
        )
        assert held["status"] != "imported" and held["scans"] == 0, dict(held)
        # the first jump's session is the whole-card one: its ticket and exactly its footage
        ids = sorted([await file_id(pg, f) for f in first.footage_files])
        row = await pg.fetchrow(
            "SELECT file_ids FROM jump_session WHERE key = $1",
            f"qr:{await file_id(pg, first.qr_file)}",
        )
        assert sorted(int(i) for i in row["file_ids"]) == ids
        # the second jump may end where the last ticket begins: it waits for that clip
        second = f"qr:{await file_id(pg, card.jumps[1].qr_file)}"
        assert await pg.fetchval("SELECT count(*) FROM jump_session WHERE key = $1", second) == 0
        groups = await pg.fetch("SELECT status FROM pipeline_step WHERE name = 'group'")
        assert [g["status"] for g in groups] == ["pending"], groups

        filler.unlink()  # space returns: the last ticket is copied and read

        async def rendered() -> bool:
            done = await pg.fetchval(
                "SELECT count(*) FROM pipeline_execution e JOIN jump_session s "
                "ON e.id = s.execution_id WHERE e.status = 'succeeded' AND s.booking_id IS NOT NULL"
            )
            return int(done) == JUMPS

        await wait_for(rendered, timeout=300, what="every jump rendered")

        for jump in card.jumps:
            key = f"qr:{await file_id(pg, jump.qr_file)}"
            row = await pg.fetchrow(
                "SELECT booking_id, file_ids FROM jump_session WHERE key = $1", key
            )
            assert row is not None and row["booking_id"] == jump.booking_id, (key, row)
            footage = sorted([await file_id(pg, f) for f in jump.footage_files])
            assert sorted(int(i) for i in row["file_ids"]) == footage, key
            videos = [
                v for v in s.output_dir.glob("*/*.mp4") if v.parent.name.startswith(jump.booking_id)
            ]
            assert len(videos) == 1, (jump.booking_id, videos)
        twice = await pg.fetchval(
            "SELECT count(*) FROM (SELECT step_id FROM pipeline_step_attempt "
            "WHERE status = 'succeeded' GROUP BY step_id HAVING count(*) > 1) d"
        )
        assert twice == 0, "a step succeeded twice"
        assert await pg.fetch("SELECT topic, error FROM dead_letter") == []
