"""Helpers of the pipeline integration tests: a real worker subprocess, a producer, queries."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence

import asyncpg
from aiokafka import AIOKafkaProducer
from sqlalchemy.ext.asyncio import AsyncEngine
from support import Proc, wait_for

from agents.pipeline.dispatch import Emitter
from agents.pipeline.handlers import default_handlers
from agents.pipeline.orchestrator import StepDef, start_execution
from streams.kafka import ensure_topics, make_producer
from streams.settings import Settings
from streams.topics import Names

REGISTRY = default_handlers().registry


@contextlib.asynccontextmanager
async def emitter(settings: Settings, names: Names) -> AsyncIterator[Emitter]:
    """An Emitter producing straight to the test's topics (created first, with partitions)."""
    await ensure_topics(settings.kafka_url, names.source_topics(), settings.topic_partitions)
    producer: AIOKafkaProducer = make_producer(settings.kafka_url)
    await producer.start()

    async def send_request(key: bytes, value: bytes) -> object:
        return await producer.send_and_wait(names.step_requests, value=value, key=key)

    try:
        yield Emitter(send_request)
    finally:
        await producer.stop()


async def start(engine: AsyncEngine, em: Emitter, key: str, steps: Sequence[StepDef]) -> int:
    return await start_execution(
        engine,
        em,
        REGISTRY,
        key=key,
        pipeline="test",
        subject_type="test",
        subject_id=key,
        steps=steps,
    )


async def execution_status(pg: asyncpg.Connection, eid: int) -> str:
    return str(await pg.fetchval("SELECT status FROM pipeline_execution WHERE id = $1", eid))


async def wait_status(
    pg: asyncpg.Connection, eid: int, status: str, proc: Proc | None = None, timeout: float = 60
) -> None:
    async def reached() -> bool:
        if proc is not None and proc.popen.poll() is not None:
            raise AssertionError(f"worker exited {proc.popen.returncode}:\n{proc.output()[-4000:]}")
        return await execution_status(pg, eid) == status

    try:
        await wait_for(reached, timeout=timeout, interval=0.1, what=f"execution {eid} {status}")
    except AssertionError:
        rows = await pg.fetch(
            "SELECT name, status, attempt, error FROM pipeline_step WHERE execution_id = $1 "
            "ORDER BY name",
            eid,
        )
        summary = "\n".join(
            f"  {r['name']} {r['status']} a{r['attempt']} {r['error']}" for r in rows[:40]
        )
        tail = proc.output()[-3000:] if proc is not None else ""
        raise AssertionError(
            f"execution {eid} is {await execution_status(pg, eid)}, wanted {status}\n"
            f"{summary}\n{tail}"
        ) from None


async def steps(pg: asyncpg.Connection, eid: int) -> dict[str, asyncpg.Record]:
    rows = await pg.fetch("SELECT * FROM pipeline_step WHERE execution_id = $1", eid)
    return {r["name"]: r for r in rows}


async def attempts(pg: asyncpg.Connection, eid: int) -> list[asyncpg.Record]:
    return await pg.fetch(
        "SELECT s.name, a.* FROM pipeline_step_attempt a JOIN pipeline_step s ON s.id = a.step_id "
        "WHERE s.execution_id = $1 ORDER BY s.name, a.attempt",
        eid,
    )
