"""No message is acked unrecorded (agents/guard.py), against real PostgreSQL.

An outage pauses the stream for as long as it lasts; only a permanent error becomes a dead
letter; a dead letter that cannot be stored is retried and the message is not acked until it is.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import logging

import asyncpg
import pytest
from aiokafka.errors import KafkaConnectionError, MessageSizeTooLargeError, UnknownError
from sqlalchemy.ext.asyncio import AsyncEngine

from agents.guard import PermanentError, RetryPolicy, guarded, is_transient

FAST = RetryPolicy(base_delay=0.01, max_delay=0.05)


#: ``guarded`` on topic ``t``, with no dead-letter topic and the fast retry policy
guard = functools.partial(guarded, topic="t", dead_letter_topic=None, policy=FAST)


async def dead_letters(pg: asyncpg.Connection) -> list[str]:
    return [r["error"] for r in await pg.fetch("SELECT error FROM dead_letter ORDER BY id")]


def test_outages_are_transient_bad_messages_are_not() -> None:
    assert is_transient(ConnectionRefusedError(errno.ECONNREFUSED, "refused"))
    assert is_transient(OSError(errno.ENOSPC, "No space left on device"))
    assert is_transient(TimeoutError())
    assert not is_transient(FileNotFoundError(errno.ENOENT, "gone"))
    assert not is_transient(ValueError("bad record"))
    assert not is_transient(PermanentError("bad record"))
    # a broker that came back empty answers produce requests with UnknownError for a while
    assert is_transient(UnknownError())
    assert is_transient(KafkaConnectionError())
    assert not is_transient(MessageSizeTooLargeError())


async def test_an_outage_longer_than_any_retry_budget_is_waited_out_not_dead_lettered(
    clean_db: AsyncEngine, pg: asyncpg.Connection, caplog: pytest.LogCaptureFixture
) -> None:
    calls = 0

    async def handler() -> None:
        nonlocal calls
        calls += 1
        if calls <= 40:  # far more than the old six attempts
            raise ConnectionRefusedError(errno.ECONNREFUSED, "Connect call failed")

    with caplog.at_level(logging.WARNING, logger="agents.guard"):
        ok = await guard(handler=handler, engine=clean_db, key=b"k", payload=b"{}")
    assert ok and calls == 41
    assert await dead_letters(pg) == []
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2, lines  # one when it starts, one when it is over
    assert "paused, retrying until it works" in lines[0]
    assert "works again after" in lines[1] and "41 attempts" in lines[1]


async def test_a_bad_message_becomes_a_dead_letter_at_once(
    clean_db: AsyncEngine, pg: asyncpg.Connection
) -> None:
    async def handler() -> None:
        raise FileNotFoundError(errno.ENOENT, "No such file", "/share/x.mp4")

    ok = await guard(handler=handler, engine=clean_db, key=None, payload=b"{}")
    assert not ok
    [error] = await dead_letters(pg)
    assert error.startswith("FileNotFoundError")


async def test_a_dead_letter_that_cannot_be_stored_is_not_acked_until_it_is(
    clean_db: AsyncEngine, pg: asyncpg.Connection
) -> None:
    async def handler() -> None:
        raise PermanentError("not a record")

    # the fault: the dead letter table is not there (as when the database is being restored)
    await pg.execute("ALTER TABLE dead_letter RENAME TO dead_letter_away")
    try:
        task = asyncio.create_task(
            guard(handler=handler, engine=clean_db, key=b"k", payload=b"payload")
        )
        await asyncio.sleep(0.5)
        assert not task.done(), "returned (the caller would ack) with the dead letter unstored"
    finally:
        await pg.execute("ALTER TABLE dead_letter_away RENAME TO dead_letter")
    assert await asyncio.wait_for(task, 10) is False
    assert await dead_letters(pg) == ["PermanentError: not a record"]


class _PgError(Exception):
    def __init__(self, sqlstate: str) -> None:
        super().__init__(f"sqlstate {sqlstate}")
        self.sqlstate = sqlstate


def test_a_database_starting_up_or_gone_is_an_outage_not_a_bad_message() -> None:
    from sqlalchemy.exc import DBAPIError

    def wrapped(sqlstate: str) -> DBAPIError:
        return DBAPIError("SELECT 1", None, _PgError(sqlstate))

    # "the database system is not yet accepting connections" (a restart's recovery), shutdown,
    # too many connections, a connection exception
    for code in ("57P03", "57P01", "53300", "08006"):
        assert is_transient(wrapped(code)), code
    # a bad statement or value stays a bad message
    for code in ("22P02", "23505", "42P01"):
        assert not is_transient(wrapped(code)), code
