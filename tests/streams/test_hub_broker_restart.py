"""Hub faults: copy requests still pending in PostgreSQL reach the detector after the broker came
back empty. Tansu keeps topics in memory; the recreated topic starts again at offset 0, below the
position the hub's consumer had reached — and Tansu takes the old offsets as committed, so the
consumer waits past the end of the new log and every request sent to the topic is skipped. After
the re-assignment that follows, the hub sends its detectors what PostgreSQL still holds pending."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import asyncpg
import pytest
from hub_harness import new_detector, open_detector, produce, running_hub
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from support import copy_request
from websockets.asyncio.client import ClientConnection

from detector import protocol
from streams import records
from streams.hub.detector_ws import copy_request_id
from streams.kafka import ensure_topics
from streams.settings import Settings
from streams.stack.services import ChildService, free_port, start_tansu
from streams.topics import Names

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]


def request(file_id: int) -> bytes:
    return records.encode(
        copy_request(file_id, "station-r", path=f"DCIM/100GOPRO/GX01{file_id:04d}.MP4")
    )


async def copy_requests(ws: ClientConnection, want: int, timeout: float) -> list[str]:
    got: list[str] = []
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout):
            while len(got) < want:
                msg = protocol.parse_hub_message(await ws.recv())
                if isinstance(msg, protocol.CopyRequest):
                    got.append(msg.request_id)
    return got


async def test_pending_requests_reach_the_detector_after_the_broker_came_back_empty(
    settings: Settings,
    names: Names,
    private_broker: list[ChildService],
    clean_db: AsyncEngine,
    sessions: async_sessionmaker[AsyncSession],
    pg: asyncpg.Connection,
    tmp_path: Path,
) -> None:
    s = settings.model_copy(
        update={
            "kafka_url": private_broker[0].address,
            "hub_port": free_port(),
            "hub_id": f"{names.prefix}-hub",
        }
    )
    await ensure_topics(s.kafka_url, names.source_topics(), s.topic_partitions)
    token = await new_detector(sessions, "station-r")
    async with running_hub(s) as hub, open_detector(hub.ws, token) as ws:
        # the partition of this detector moves well past where the new topic will start
        for i in range(1, 6):
            await produce(s.kafka_url, names.copy_requests, "station-r", request(i))
        assert await copy_requests(ws, 5, timeout=30) == [f"f{i}" for i in range(1, 6)]

        old = private_broker[0]
        old.kill()
        # meanwhile ingest recorded two more requests; their messages die with the broker
        ids = [
            await pg.fetchval(
                "INSERT INTO imported_file (card_id, name, path, size, mtime_ms, kind, status, "
                "detector_id) VALUES ('C1', $1, 'DCIM/100GOPRO/' || $1, 5, $2, 'footage', "
                "'requested', 'station-r') RETURNING id",
                name,
                1_700_000_000_000 + n,
            )
            for n, name in enumerate(("GX010006.MP4", "GX010007.MP4"))
        ]
        await asyncio.sleep(1.0)
        private_broker[0] = start_tansu(tmp_path / "tansu", port=old.port)
        await ensure_topics(s.kafka_url, names.source_topics(), s.topic_partitions)
        got = await copy_requests(ws, 2, timeout=90)
        assert sorted(got) == sorted(copy_request_id(i) for i in ids)
