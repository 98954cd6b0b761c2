"""Bodies of `skyreel retry`, `skyreel resume` and `skyreel executions` (the parsers live in
streams/cli.py)."""

from __future__ import annotations

import asyncio
import logging

from agents.pipeline.errors import PipelineError
from agents.pipeline.orchestrator import Emitter, resume, retry
from storage.db import make_engine
from storage.pipeline import PipelineStoreError, executions_overview
from streams.kafka import make_producer
from streams.settings import Settings
from streams.topics import Names

logger = logging.getLogger(__name__)


async def _act(
    settings: Settings, execution_id: int, step: str | None, actor: str, *, force: bool, again: bool
) -> int:
    engine = make_engine(settings.database_url, pool_size=1)
    producer = make_producer(settings.kafka_url)
    await producer.start()
    topic = Names(settings.topic_prefix).step_requests

    async def send(key: bytes, value: bytes) -> object:
        return await producer.send_and_wait(topic, value=value, key=key)

    what = "resume" if again else "retry"
    try:
        if again:
            names = await resume(engine, Emitter(send), execution_id, actor=actor)
        else:
            names = await retry(
                engine, Emitter(send), execution_id, step=step, actor=actor, force=force
            )
    except (PipelineError, PipelineStoreError) as exc:
        print(f"{what} refused: {exc}")
        return 1
    finally:
        await producer.stop()
        await engine.dispose()
    done = "resumed" if again else "retried"
    print(f"execution {execution_id}: {done} {', '.join(names) or 'nothing (no step to move)'}")
    return 0


def retry_cli(
    settings: Settings, execution_id: int, step: str | None, actor: str, force: bool = False
) -> int:
    if not settings.database_url or not settings.kafka_url:
        print("retry needs SKYREEL_DATABASE_URL and SKYREEL_KAFKA_URL")
        return 2
    return asyncio.run(_act(settings, execution_id, step, actor, force=force, again=False))


def resume_cli(settings: Settings, execution_id: int, actor: str) -> int:
    if not settings.database_url or not settings.kafka_url:
        print("resume needs SKYREEL_DATABASE_URL and SKYREEL_KAFKA_URL")
        return 2
    return asyncio.run(_act(settings, execution_id, None, actor, force=False, again=True))


async def _executions(settings: Settings, limit: int) -> int:
    engine = make_engine(settings.database_url, pool_size=1)
    try:
        async with engine.connect() as conn:
            rows = await executions_overview(conn, limit)
            for r in rows:
                print(f"{r.id:>6} {r.status:<10} {r.pipeline:<12} {r.key}  [{r.steps or '-'}]")
    finally:
        await engine.dispose()
    return 0


def executions_cli(settings: Settings, limit: int) -> int:
    if not settings.database_url:
        print("executions needs SKYREEL_DATABASE_URL")
        return 2
    return asyncio.run(_executions(settings, limit))
