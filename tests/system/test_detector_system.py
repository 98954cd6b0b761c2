"""The detector against the real hub and ingest worker, with real files of 60-120 MB: only new
files arrive, byte-identical, QR candidates first; the same card again copies nothing; the hub
restarted mid-copy costs nothing but time."""

from __future__ import annotations

import asyncio
import hashlib
import os
from pathlib import Path

import asyncpg
import pytest
from support import settings_env, wait_for
from system.dropzone import Site, detector

from storage.detectors import register_detector
from streams.settings import Settings
from streams.stack.services import free_port

pytestmark = [pytest.mark.slow, pytest.mark.timeout(400)]

MB = 1024 * 1024


def write(path: Path, size: int, seed: int, mtime: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    block = hashlib.sha256(str(seed).encode()).digest() * (MB // 32)
    with path.open("wb") as fh:
        left = size
        while left:
            n = min(left, len(block))
            fh.write(block[:n])
            left -= n
    os.utime(path, (mtime, mtime))


def sha(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(8 * MB):
            h.update(chunk)
    return h.hexdigest()


T0 = 1_760_000_000.0


def first_visit(root: Path) -> None:
    d = root / "DCIM" / "100GOPRO"
    write(d / "GX010001.MP4", 120 * MB, 1, T0)
    write(d / "GX010002.MP4", 2 * MB, 2, T0 + 60)  # a QR candidate (small)


def later_jumps(root: Path) -> None:
    d = root / "DCIM" / "100GOPRO"
    write(d / "GX010003.MP4", 90 * MB, 3, T0 + 3600)
    write(d / "GX010004.MP4", 3 * MB, 4, T0 + 3660)  # QR candidate
    write(d / "GX010005.MP4", 60 * MB, 5, T0 + 3720)
    write(d / "GL010005.LRV", 1 * MB, 6, T0 + 3720)  # proxy: never copied


async def imported_is(pg: asyncpg.Connection, n: int) -> bool:
    count = await pg.fetchval("SELECT count(*) FROM imported_file WHERE status = 'imported'")
    return bool(count == n)


async def test_only_new_files_arrive_qr_first_and_survive_a_hub_restart(
    settings: Settings, site: Site, pg: asyncpg.Connection, tmp_path: Path
) -> None:
    s = settings.model_copy(update={"hub_port": free_port(), "qr_candidate_max_bytes": 10 * MB})
    env = settings_env(s)
    spawn = site.spawn
    async with site.sessions() as session, session.begin():
        token = (await register_detector(session, "hangar-3")).token
    cards, away = site.cards, tmp_path / "away"
    cards.mkdir()
    card = away / "CARD-BIG"
    first_visit(card)
    spawn("streams.cli", "worker", env=env, name="worker")
    hub = spawn("streams.cli", "hub", env=env, name="hub")
    detector(spawn, s, token, cards, env=env)

    # first visit of the card: both files
    card.rename(cards / "CARD-BIG")
    await wait_for(lambda: imported_is(pg, 2), timeout=120, what="first visit imported")
    (cards / "CARD-BIG").rename(card)
    await wait_for(
        lambda: pg.fetchval("SELECT NOT present FROM card"), timeout=30, what="card removed"
    )

    # more jumps on the card; inserted again
    later_jumps(card)
    card.rename(cards / "CARD-BIG")
    await wait_for(lambda: imported_is(pg, 3), timeout=120, what="the new QR clip first")
    first_new = await pg.fetchval(
        "SELECT name FROM imported_file WHERE status = 'imported' ORDER BY imported_at DESC LIMIT 1"
    )
    assert first_new == "GX010004.MP4"  # the QR candidate before the footage
    hub.kill()  # the hub goes away while footage is being copied
    spawn("streams.cli", "hub", env=env, name="hub-2")
    await wait_for(
        lambda: imported_is(pg, 5), timeout=240, interval=0.5, what="every video imported"
    )

    rows = await pg.fetch(
        "SELECT name, stored_path, request_count FROM imported_file WHERE status = 'imported'"
    )
    for r in rows:
        src = cards / "CARD-BIG" / "DCIM" / "100GOPRO" / r["name"]
        assert sha(s.share_root / r["stored_path"]) == sha(src), r["name"]
    old = {r["name"]: r["request_count"] for r in rows}
    assert old["GX010001.MP4"] == 1 and old["GX010002.MP4"] == 1  # never asked for again
    assert not [p for p in s.share_root.rglob("*") if "partial" in p.name]
    assert not list(s.share_root.rglob("*.LRV"))
    assert await pg.fetchval("SELECT count(DISTINCT card_id) FROM imported_file") == 1

    # the same card again: nothing more is asked for or copied
    before = await pg.fetchval("SELECT sum(request_count) FROM imported_file")
    (cards / "CARD-BIG").rename(card)
    await wait_for(
        lambda: pg.fetchval("SELECT NOT present FROM card"), timeout=30, what="card removed"
    )
    card.rename(cards / "CARD-BIG")
    await wait_for(lambda: pg.fetchval("SELECT present FROM card"), timeout=30, what="card back")
    await asyncio.sleep(5)  # its list follows card_inserted on the same socket and partition
    assert await pg.fetchval("SELECT sum(request_count) FROM imported_file") == before
    assert await pg.fetchval("SELECT count(*) FROM imported_file") == 6  # 5 videos + the proxy
