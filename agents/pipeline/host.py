"""What the engine's Faust agents need of the process that hosts them.

The worker (agents/worker.py, the composition root) builds it; the engine never imports the
worker, so the host is defined here.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import faust
from sqlalchemy.ext.asyncio import AsyncEngine

from agents.app import Topics
from agents.guard import batch_or_each, dead_letter
from streams.topics import Names

T = TypeVar("T")


@dataclass
class AgentHost:
    """The Faust app, its declared topics, the database engine and the topic names."""

    app: faust.App
    topics: Topics
    engine: AsyncEngine
    names: Names


def attach_batched(
    wa: AgentHost,
    topic: faust.TopicT,
    *,
    agent: str,
    decode: Callable[[bytes], Sequence[T]],
    what: str,
    process: Callable[[list[T]], Awaitable[object]],
    batch: int,
    within: float,
    concurrency: int = 1,
) -> None:
    """Attach the agent ``agent`` on ``topic``: it takes batches of up to ``batch`` events,
    decodes each into items (one that does not decode is a dead letter, "undecodable ``what``")
    and processes them through :func:`agents.guard.batch_or_each`."""
    name = topic.get_topic_name()

    async def consume(stream: object) -> None:
        async for events in stream.take_events(batch, within=within):  # type: ignore[attr-defined]
            items: list[tuple[bytes | None, bytes, T]] = []
            for event in events:
                payload = bytes(event.value or b"")
                key = event.key if isinstance(event.key, bytes) else None
                try:
                    items += [(key, payload, item) for item in decode(payload)]
                except Exception as exc:
                    await dead_letter(
                        wa.engine,
                        wa.topics.dead_letter,
                        name,
                        key,
                        payload,
                        f"undecodable {what}: {exc}",
                    )
            await batch_or_each(
                topic=name,
                items=items,
                process=process,
                engine=wa.engine,
                dead_letter_topic=wa.topics.dead_letter,
            )

    consume.__name__ = consume.__qualname__ = agent
    wa.app.agent(topic, name=f"{wa.names.prefix}.{agent}", concurrency=concurrency)(consume)
