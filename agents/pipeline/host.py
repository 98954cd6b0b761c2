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
from agents.pipeline import trace
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
    traced: bool = False,
) -> None:
    """Attach the agent ``agent`` on ``topic``: it takes batches of up to ``batch`` events,
    decodes each into items (one that does not decode is a dead letter, "undecodable ``what``")
    and processes them through :func:`agents.guard.batch_or_each`. ``traced``: items are step
    requests whose arrival is marked in the benchmark trace (agents/pipeline/trace.py)."""
    name = topic.get_topic_name()

    async def consume(stream: object) -> None:
        async for events in stream.take_events(batch, within=within):  # type: ignore[attr-defined]
            items: list[tuple[bytes | None, bytes, T]] = []
            for event in events:
                payload = bytes(event.value or b"")
                key = event.key if isinstance(event.key, bytes) else None
                try:
                    decoded = decode(payload)
                    items += [(key, payload, item) for item in decoded]
                except Exception as exc:
                    await dead_letter(
                        wa.engine,
                        wa.topics.dead_letter,
                        name,
                        key,
                        payload,
                        f"undecodable {what}: {exc}",
                    )
                    continue
                if traced and trace.ON and decoded and event.message.time_in is not None:
                    _mark("r.in", decoded, trace.wall_of_monotonic(event.message.time_in))
            if traced and trace.ON:
                _mark("r.batch", [item for _, _, item in items])
            await batch_or_each(
                topic=name,
                items=items,
                process=process,
                engine=wa.engine,
                dead_letter_topic=wa.topics.dead_letter,
            )

    consume.__name__ = consume.__qualname__ = agent
    wa.app.agent(topic, name=f"{wa.names.prefix}.{agent}", concurrency=concurrency)(consume)


def _mark(phase: str, items: Sequence[object], at: float | None = None) -> None:
    by_execution: dict[int, list[str]] = {}
    for item in items:
        by_execution.setdefault(getattr(item, "execution_id", 0), []).append(
            str(getattr(item, "step", ""))
        )
    for eid, steps in by_execution.items():
        trace.mark(phase, eid, steps, at)
