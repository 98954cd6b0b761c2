"""Issue 2 end to end: a detector's list over a real WebSocket, through the hub, Kafka and the
Faust ingest worker, comes back as copy requests — with two hub processes running."""

from __future__ import annotations

import json

import asyncpg
from hub_harness import hub_settings, new_detector, open_detector, recv_hub, wait_healthy
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from support import settings_env
from websockets.asyncio.client import ClientConnection

from detector import protocol
from storage import imports
from streams.settings import Settings
from streams.stack.services import free_port

__all__ = ["hub_settings"]  # fixture

QR_MAX = 100_000_000
CARD = "card-E2E-1"


def listing() -> list[dict[str, object]]:
    files: list[dict[str, object]] = []
    for i in range(45):
        small = i % 5 == 0  # 9 QR candidates
        files.append(
            {
                "path": f"DCIM/100GOPRO/GX01{i:04d}.MP4",
                "size": 30_000_000 + i if small else 2_000_000_000 + i,
                "mtime": 1_750_000_000 + 60 * i,
                "kind": "video",
            }
        )
    for i in range(5):
        files.append(
            {
                "path": f"DCIM/100GOPRO/GL01{i:04d}.{'LRV' if i % 2 else 'THM'}",
                "size": 10_000 + i,
                "mtime": 1_750_000_000 + 60 * i,
                "kind": "proxy",
            }
        )
    return files


async def seed_imported(engine: AsyncEngine, files: list[dict[str, object]], n: int) -> set[str]:
    """Mark the first n footage files of the list imported already (as from an earlier visit)."""
    entries = [
        (str(f["path"]), int(str(f["size"])), float(str(f["mtime"])), str(f["kind"])) for f in files
    ]
    listed = imports.classify_listing(entries, QR_MAX)
    async with engine.begin() as conn:
        rows = await imports.record_listing(conn, CARD, "hangar-2", listed)
        done = [r for r in rows if r.kind != "proxy"][:n]
        for r in done:
            await imports.record_imported(conn, r.file_id, "cards/x", "ab12", "xxh3_128")
    return {r.path for r in done}


async def requests_until_quiet(ws: ClientConnection, want: int) -> list[protocol.CopyRequest]:
    """The copy requests the hub sends (the card's status frames beside them are left aside)."""
    got: list[protocol.CopyRequest] = []
    while len(got) < want:
        msg = await recv_hub(ws, timeout=60)
        if isinstance(msg, protocol.CardStatus):
            continue
        assert isinstance(msg, protocol.CopyRequest), msg
        got.append(msg)
    try:  # no more copy requests should come
        while True:
            extra = await recv_hub(ws, timeout=2)
            if not isinstance(extra, protocol.CardStatus):
                raise AssertionError(f"unexpected extra message {extra}")
    except TimeoutError:
        pass
    return got


async def test_list_of_50_gives_35_requests_qr_first_through_the_other_hub(
    hub_settings: Settings,
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    clean_db: AsyncEngine,
    pg: asyncpg.Connection,
    spawn,
) -> None:
    env = settings_env(hub_settings)
    port_b = free_port()
    spawn("streams.cli", "hub", env={**env, "SKYREEL_HUB_ID": "hub-a"}, name="hub-a")
    spawn(
        "streams.cli",
        "hub",
        env={**env, "SKYREEL_HUB_PORT": str(port_b), "SKYREEL_HUB_ID": "hub-b"},
        name="hub-b",
    )
    spawn("streams.cli", "worker", env=env, name="worker")
    await wait_healthy(f"http://127.0.0.1:{hub_settings.hub_port}", timeout=60)
    await wait_healthy(f"http://127.0.0.1:{port_b}", timeout=60)

    files = listing()
    already = await seed_imported(clean_db, files, 10)
    token = await new_detector(sessions, "hangar-2")
    frame = json.dumps({"v": 1, "type": "file_list", "card_id": CARD, "files": files})

    # the detector is on hub B; ingest's requests are consumed by both hubs, B forwards them
    async with open_detector(f"ws://127.0.0.1:{port_b}/ws/detector", token) as ws:
        await ws.send(frame)
        first = await requests_until_quiet(ws, 35)
        paths = [r.path for r in first]
        assert len(set(paths)) == 35
        assert not set(paths) & already
        assert not any(p.endswith((".LRV", ".THM")) for p in paths)
        priorities = [r.priority for r in first]
        assert priorities == sorted(priorities), "a footage request came before a QR candidate"
        assert priorities.count(0) == 9 - sum(1 for p in already if int(p[-8:-4]) % 5 == 0)
        rows_before = await pg.fetchval("SELECT count(*) FROM imported_file")

        # half of the requested files arrive; then the same list again
        async with clean_db.begin() as conn:
            for r in first[:20]:
                file_id = int(r.request_id[1:])
                await imports.record_imported(conn, file_id, r.destination, "cd34", "xxh3_128")
        await ws.send(frame)
        again = await requests_until_quiet(ws, 15)
        assert {r.path for r in again} == {r.path for r in first[20:]}
        assert await pg.fetchval("SELECT count(*) FROM imported_file") == rows_before == 50
