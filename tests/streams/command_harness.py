"""The engine's command applier (agents/commands.py) running in the test's own loop, for the
tests of the hub's and the CLI's operator actions.

A full `skyreel worker` would also run the seeded steps and reconcile them, which those tests'
seeded states are not built for; this is the worker's commands agent alone, over the same
topics: it consumes the commands topic from the start, applies each command and stores its
outcome; step requests, step results and status events go to their topics as a worker's do.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Iterator

from aiokafka import AIOKafkaConsumer

from agents.commands import Commands
from agents.pipeline.dispatch import Emitter
from storage.db import make_engine
from streams.kafka import ensure_topics, make_producer
from streams.settings import Settings
from streams.topics import Names


@contextlib.asynccontextmanager
async def running_commands(settings: Settings) -> AsyncIterator[None]:
    names = Names(settings.topic_prefix)
    topics = [names.commands, names.step_requests, names.step_results, names.status]
    await ensure_topics(settings.kafka_url, topics, settings.topic_partitions)
    engine = make_engine(settings.database_url, pool_size=2)
    producer = make_producer(settings.kafka_url)
    consumer = AIOKafkaConsumer(
        names.commands,
        bootstrap_servers=settings.kafka_url,
        group_id=None,
        auto_offset_reset="earliest",
    )
    await producer.start()
    await consumer.start()

    def sender(topic: str):  # type: ignore[no-untyped-def]
        async def send(key: bytes, value: bytes) -> object:
            return await producer.send_and_wait(topic, value, key=key)

        return send

    ops = Commands(
        engine,
        Emitter(sender(names.step_requests), sender(names.status)),
        sender(names.step_results),
    )

    async def loop() -> None:
        async for msg in consumer:
            assert msg.value is not None
            await ops.handle(msg.value)

    task = asyncio.create_task(loop())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await consumer.stop()
        await producer.stop()
        await engine.dispose()


@contextlib.contextmanager
def commands_in_thread(settings: Settings) -> Iterator[None]:
    """:func:`running_commands` on a loop of its own, for tests that block theirs (a
    subprocess.run of the CLI, a hub served from a thread)."""
    stop, applying = threading.Event(), threading.Event()

    async def apply_until_stopped() -> None:
        async with running_commands(settings):
            applying.set()
            while not stop.is_set():
                await asyncio.sleep(0.05)

    thread = threading.Thread(target=asyncio.run, args=(apply_until_stopped(),), daemon=True)
    thread.start()
    try:
        assert applying.wait(30), "the command applier did not start"
        yield
    finally:
        stop.set()
        thread.join(20)
