"""Services for benchmarks: the configured ones (SKYREEL_* URLs), else embedded ones.

Benchmarks create their own scratch database and drop it afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import asyncpg

from storage.db import plain_url
from storage.migrate import upgrade

CACHE = Path(__file__).resolve().parent.parent / ".cache"
DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/postgres"


def _answers(url: str) -> bool:
    async def probe() -> bool:
        try:
            conn = await asyncpg.connect(plain_url(url), timeout=2)
        except (OSError, asyncpg.PostgresError):
            return False
        await conn.close()
        return True

    return asyncio.run(probe())


@contextlib.contextmanager
def postgres_admin_url() -> Iterator[str]:
    """A PostgreSQL URL with rights to create databases."""
    url = os.environ.get("SKYREEL_DATABASE_URL") or DEFAULT_PG
    if _answers(url):
        yield plain_url(url)
        return
    from streams.stack.postgres import start_postgres

    svc = start_postgres(CACHE / "bench-services")
    try:
        yield svc.extra["url"]
    finally:
        svc.stop()


@contextlib.contextmanager
def scratch_database(name: str) -> Iterator[str]:
    """A fresh, migrated database for one benchmark run; dropped afterwards."""
    with postgres_admin_url() as admin:

        async def run(sql: str) -> None:
            conn = await asyncpg.connect(admin)
            try:
                await conn.execute(sql)
            finally:
                await conn.close()

        asyncio.run(run(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        asyncio.run(run(f'CREATE DATABASE "{name}"'))
        url = admin.rsplit("/", 1)[0] + f"/{name}"
        upgrade(url)
        try:
            yield url
        finally:
            asyncio.run(run(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
