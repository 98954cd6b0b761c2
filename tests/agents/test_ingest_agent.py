"""The ingest agent in a real Faust worker on the real broker and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import uuid

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from support import Rig, settings_env, wait_for

from streams import records
from streams.topics import Names


def file_list(card: str, n: int, detector: str = "det-1") -> records.DetectorEvent:
    files = [
        {
            "path": f"DCIM/100GOPRO/GX{i:02d}{card[-4:]}.MP4",
            "size": 5_000 if i % 4 == 0 else 500_000_000 + i,
            "mtime": 1_700_000_000 + i,
            "kind": "video",
        }
        for i in range(n)
    ]
    return records.DetectorEvent(
        event_id=uuid.uuid4().hex,
        event="file_list",
        detector_id=detector,
        card_id=card,
        files=files,
    )


async def produce(broker: str, topic: str, items: list[tuple[bytes, bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=broker, acks="all")
    await producer.start()
    try:
        for key, value in items:
            await producer.send_and_wait(topic, value, key=key)
    finally:
        await producer.stop()


async def copy_requests(broker: str, names: Names, want: int, timeout: float = 40) -> list[dict]:
    consumer = AIOKafkaConsumer(
        names.copy_requests, bootstrap_servers=broker, auto_offset_reset="earliest", group_id=None
    )
    await consumer.start()
    got: list[dict] = []
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while len(got) < want and loop.time() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for msgs in batch.values():
                got.extend(json.loads(m.value) for m in msgs)
    finally:
        await consumer.stop()
    return got


async def test_redelivered_and_poison_lists(rig: Rig, broker: str, pg: asyncpg.Connection) -> None:
    rig.spawn("streams.cli", "worker", env=settings_env(rig.settings), name="worker")
    event = file_list("card-0001", 12)
    payload = records.encode(event)
    await produce(
        broker,
        rig.names.detector_events,
        [(b"card-0001", payload), (b"card-0001", b"{not json"), (b"card-0001", payload)],
    )
    # first delivery asks for 12, the redelivery asks again for the 12 not yet imported
    got = await copy_requests(broker, rig.names, 24)
    assert len(got) == 24
    assert await pg.fetchval("SELECT count(*) FROM imported_file") == 12
    first = got[:12]
    kinds = [r["priority"] for r in first]
    assert kinds == sorted(kinds)  # every QR candidate before any footage
    await wait_for(lambda: pg.fetchval("SELECT count(*) FROM dead_letter"), what="dead letter")
    error = await pg.fetchval("SELECT error FROM dead_letter")
    assert "undecodable detector event" in error


async def test_sigkill_of_the_worker_loses_no_list(
    rig: Rig, broker: str, pg: asyncpg.Connection
) -> None:
    env = settings_env(rig.settings)
    worker = rig.spawn("streams.cli", "worker", env=env, name="worker-a")
    cards = [f"card-{i:04d}" for i in range(40)]
    events = [(c.encode(), records.encode(file_list(c, 25))) for c in cards]
    await produce(broker, rig.names.detector_events, events[:20])

    async def some_recorded() -> bool:
        return bool(await pg.fetchval("SELECT count(*) FROM imported_file"))

    await wait_for(some_recorded, timeout=60, what="first lists recorded")
    worker.kill()
    await produce(broker, rig.names.detector_events, events[20:])
    rig.spawn("streams.cli", "worker", env=env, name="worker-b")

    async def all_recorded() -> bool:
        return bool(await pg.fetchval("SELECT count(*) FROM imported_file") == 40 * 25)

    await wait_for(all_recorded, timeout=90, what="every file of every list recorded")
    dupes = await pg.fetchval(
        "SELECT count(*) FROM (SELECT card_id, name FROM imported_file "
        "GROUP BY 1, 2 HAVING count(*) > 1) d"
    )
    assert dupes == 0
    assert await pg.fetchval("SELECT count(*) FROM imported_file WHERE status <> 'requested'") == 0
