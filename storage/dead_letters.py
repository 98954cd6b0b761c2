"""The dead-letter ledger: messages an agent could not process, kept for a person to look at."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from storage.imports import bump_counter


async def store(conn: AsyncConnection, topic: str, key: str, payload: str, error: str) -> None:
    """Keep one dead letter (truncated to the column limits) and count it."""
    await conn.execute(
        text("INSERT INTO dead_letter (topic, key, payload, error) VALUES (:t, :k, :p, :e)"),
        {"t": topic, "k": key[:500], "p": payload[:1_000_000], "e": error[:4000]},
    )
    await bump_counter(conn, "dead_lettered")
