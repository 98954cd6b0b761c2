"""Run a message handler so that no exception ever escapes an agent.

Faust acks a message whose agent raised — that would lose it. So every handler runs through
:func:`guarded`: transient failures (database or broker unreachable) are retried with backoff;
permanent ones (a record that does not decode or validate), and transient ones that outlast the
retries, become a dead letter — a row in ``dead_letter`` plus a record on the dead-letter topic —
with the error, and the stream moves on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import faust
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine

from streams import records

logger = logging.getLogger(__name__)


class PermanentError(Exception):
    """A message that will never be processed (bad record); goes straight to dead letters."""


TRANSIENT = (OperationalError, InterfaceError, ConnectionError, OSError, asyncio.TimeoutError)


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 6
    base_delay: float = 0.2
    max_delay: float = 5.0

    def delay(self, attempt: int) -> float:
        return float(min(self.max_delay, self.base_delay * 2 ** (attempt - 1)))


def is_transient(exc: BaseException) -> bool:
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    return isinstance(exc, TRANSIENT)


async def guarded(
    *,
    topic: str,
    key: bytes | None,
    payload: bytes,
    handler: Callable[[], Awaitable[None]],
    engine: AsyncEngine,
    dead_letter_topic: faust.TopicT | None,
    policy: RetryPolicy = RetryPolicy(),
) -> bool:
    """Run ``handler``; True when it succeeded, False when the message was dead-lettered."""
    attempt = 0
    while True:
        attempt += 1
        try:
            await handler()
            return True
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            transient = is_transient(exc) and not isinstance(exc, PermanentError)
            if transient and attempt < policy.attempts:
                delay = policy.delay(attempt)
                logger.warning(
                    "transient error on %s (attempt %d, retry in %.1fs): %s",
                    topic,
                    attempt,
                    delay,
                    exc,
                )
                await asyncio.sleep(delay)
                continue
            logger.error(
                "dead-lettering a message from %s key=%r: %s",
                topic,
                key,
                exc,
                exc_info=not isinstance(exc, PermanentError),
            )
            await dead_letter(
                engine, dead_letter_topic, topic, key, payload, f"{type(exc).__name__}: {exc}"
            )
            return False


T = TypeVar("T")


async def batch_or_each(
    *,
    topic: str,
    items: Sequence[tuple[bytes | None, bytes, T]],
    process: Callable[[list[T]], Awaitable[object]],
    engine: AsyncEngine,
    dead_letter_topic: faust.TopicT | None,
) -> None:
    """Process a batch of decoded messages at once; if that fails, each one on its own through
    :func:`guarded`, so one poison message costs only itself (a dead letter)."""
    try:
        await process([item for _, _, item in items])
        return
    except Exception:
        logger.warning(
            "a batch of %d from %s failed; redoing one by one", len(items), topic, exc_info=True
        )
    for key, payload, item in items:

        async def one(item: T = item) -> None:
            await process([item])

        await guarded(
            topic=topic,
            key=key,
            payload=payload,
            handler=one,
            engine=engine,
            dead_letter_topic=dead_letter_topic,
        )


async def dead_letter(
    engine: AsyncEngine,
    dead_letter_topic: faust.TopicT | None,
    topic: str,
    key: bytes | None,
    payload: bytes,
    error: str,
) -> None:
    """Keep the message and its error where an operator can see it; never raises."""
    key_text = (key or b"").decode(errors="replace")
    body = payload.decode(errors="replace")
    try:
        async with engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO dead_letter (topic, key, payload, error) VALUES (:t, :k, :p, :e)"
                ),
                {"t": topic, "k": key_text[:500], "p": body[:1_000_000], "e": error[:4000]},
            )
            await conn.execute(
                text(
                    "INSERT INTO counter (name, value) VALUES ('dead_lettered', 1) "
                    "ON CONFLICT (name) DO UPDATE SET value = counter.value + 1"
                )
            )
    except Exception:
        logger.exception(
            "could not store dead letter from %s key=%r payload=%s", topic, key_text, body[:2000]
        )
    if dead_letter_topic is None:
        return
    try:
        record = records.DeadLetter(topic=topic, key=key_text, payload=body, error=error)
        await dead_letter_topic.send(key=key, value=records.encode(record))
    except Exception:
        logger.exception("could not publish dead letter from %s key=%r", topic, key_text)
