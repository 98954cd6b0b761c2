"""Run a message handler so that no exception ever escapes an agent.

Faust acks a message whose agent raised — that would lose it. So every handler runs through
:func:`guarded`, and a message is acked only after its effect, or its dead letter, is stored:
- a transient failure (database, broker or Redis unreachable; a full disk) is not the message's
  fault: that stream pauses and retries with capped backoff for as long as the outage lasts,
  logging one line when it starts and one when it is over, not one per retry;
- a permanent one (a record that does not decode or validate, a bug) becomes a dead letter — a
  row in ``dead_letter`` plus a record on the dead-letter topic — and the stream moves on; a dead
  letter that cannot be stored is retried the same way, and the message is not acked until it is.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import faust
from aiokafka.errors import (
    KafkaError,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    RecordTooLargeError,
)
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine

from agents.pipeline.step import capped_backoff
from storage import dead_letters
from streams import records

logger = logging.getLogger(__name__)


class PermanentError(Exception):
    """A message that will never be processed (bad record); goes straight to dead letters."""


TRANSIENT = (OperationalError, InterfaceError, ConnectionError, TimeoutError)
# OSErrors that say "the other side or the disk is not there now", not "this message is bad"
_TRANSIENT_ERRNOS = frozenset(
    {
        errno.ECONNREFUSED,
        errno.ECONNRESET,
        errno.ECONNABORTED,
        errno.EPIPE,
        errno.ETIMEDOUT,
        errno.EHOSTUNREACH,
        errno.ENETUNREACH,
        errno.ENETDOWN,
        errno.ENOSPC,
        errno.EDQUOT,
    }
)


_KAFKA_PERMANENT = (MessageSizeTooLargeError, RecordTooLargeError, RecordListTooLargeError)


@dataclass(frozen=True)
class RetryPolicy:
    base_delay: float = 0.2
    max_delay: float = 5.0

    def delay(self, attempt: int) -> float:
        return capped_backoff(self.base_delay, self.max_delay, attempt)


# PostgreSQL SQLSTATEs of a server that is not there now: connection exceptions (class 08),
# shutting down or starting up (57P01-57P03: "the database system is not yet accepting
# connections" while it recovers), too many connections (53300)
_TRANSIENT_SQLSTATES = frozenset({"57P01", "57P02", "57P03", "53300"})


def _sqlstate(exc: DBAPIError) -> str:
    """The SQLSTATE behind a driver error (asyncpg's `sqlstate`, the adapter's `pgcode`)."""
    for cause in (exc.orig, getattr(exc.orig, "__cause__", None)):
        code = getattr(cause, "sqlstate", None) or getattr(cause, "pgcode", None)
        if isinstance(code, str):
            return code
    return ""


def is_transient(exc: BaseException) -> bool:
    """An outage (retry until it is over), as opposed to a message that cannot be processed."""
    if isinstance(exc, PermanentError):
        return False
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    if isinstance(exc, DBAPIError):
        code = _sqlstate(exc)
        if code.startswith("08") or code in _TRANSIENT_SQLSTATES:
            return True
    if isinstance(exc, TRANSIENT):
        return True
    if isinstance(exc, OSError):
        return exc.errno in _TRANSIENT_ERRNOS
    if isinstance(exc, KafkaError):
        # the broker's trouble, not the message's — except a record the broker will never take
        return not isinstance(exc, _KAFKA_PERMANENT)
    return False


class _Outage:
    """One line when an outage starts and one when it is over, whatever the retries between."""

    def __init__(self, topic: str, key: bytes | None, what: str) -> None:
        self.topic, self.key, self.what = topic, key, what
        self.started: float | None = None
        self.attempts = 0

    def failed(self, exc: BaseException) -> None:
        self.attempts += 1
        if self.started is None:
            self.started = time.monotonic()
            logger.warning(
                "%s on %s key=%r failed: %s: %s — paused, retrying until it works",
                self.what,
                self.topic,
                self.key,
                type(exc).__name__,
                exc,
            )
        else:
            logger.debug(
                "%s on %s still failing (attempt %d): %s", self.what, self.topic, self.attempts, exc
            )

    def over(self) -> None:
        if self.started is not None:
            logger.warning(
                "%s on %s key=%r works again after %.1f s (%d attempts)",
                self.what,
                self.topic,
                self.key,
                time.monotonic() - self.started,
                self.attempts + 1,
            )


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
    """Run ``handler``; True when it succeeded, False when the message was dead-lettered.

    Returns only once the effect or the dead letter is stored (so the caller may ack).
    """
    outage = _Outage(topic, key, "handling a message")
    while True:
        try:
            await handler()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if is_transient(exc):
                outage.failed(exc)
                await asyncio.sleep(policy.delay(outage.attempts))
                continue
            outage.over()
            logger.error(
                "dead-lettering a message from %s key=%r: %s",
                topic,
                key,
                exc,
                exc_info=not isinstance(exc, PermanentError),
            )
            error = f"{type(exc).__name__}: {exc}"
            await dead_letter(engine, dead_letter_topic, topic, key, payload, error, policy=policy)
            return False
        outage.over()
        return True


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
    *,
    policy: RetryPolicy = RetryPolicy(),
) -> None:
    """Keep the message and its error where an operator can see it; returns only once the row
    is stored (retrying while the database is away), so the caller may then ack the message."""
    key_text = (key or b"").decode(errors="replace")
    body = payload.decode(errors="replace")

    async def store() -> Exception | None:
        """None when the row is stored, else why not (the topic record is best effort: the row
        is what counts)."""
        try:
            async with engine.begin() as conn:
                await dead_letters.store(conn, topic, key_text, body, error)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            return exc
        if dead_letter_topic is None:
            return None
        try:
            record = records.DeadLetter(topic=topic, key=key_text, payload=body, error=error)
            await dead_letter_topic.send(key=key, value=records.encode(record))
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("could not publish dead letter from %s key=%r", topic, key_text)
        return None

    stored = _Outage(topic, key, "storing a dead letter")
    while (failure := await store()) is not None:
        stored.failed(failure)
        await asyncio.sleep(policy.delay(stored.attempts))
    stored.over()
