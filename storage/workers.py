"""Liveness of Faust workers: a heartbeat row per worker, beaten every few seconds."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

#: A worker beats every HEARTBEAT_S; one not heard of for DEAD_AFTER_S is taken for dead.
HEARTBEAT_S = 2.0
DEAD_AFTER_S = 10.0


async def beat(conn: AsyncConnection, worker: str) -> None:
    await conn.execute(
        text(
            "INSERT INTO worker_heartbeat (worker, seen_at) VALUES (:w, now()) "
            "ON CONFLICT (worker) DO UPDATE SET seen_at = now()"
        ),
        {"w": worker[:200]},
    )


async def live_workers(conn: AsyncConnection, within_s: float) -> set[str]:
    rows = await conn.execute(
        text(
            "SELECT worker FROM worker_heartbeat WHERE seen_at > now() - make_interval(secs => :s)"
        ),
        {"s": within_s},
    )
    return {str(r[0]) for r in rows}


async def forget_stale(conn: AsyncConnection, older_than_s: float) -> None:
    await conn.execute(
        text("DELETE FROM worker_heartbeat WHERE seen_at < now() - make_interval(secs => :s)"),
        {"s": older_than_s},
    )
