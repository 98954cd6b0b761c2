"""Services for benchmarks: the configured ones (SKYREEL_* URLs), else embedded ones.

Benchmarks create their own scratch database and drop it afterwards (the test suite makes its
databases with the same helpers).
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


def pg_answers(url: str) -> bool:
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
    if pg_answers(url):
        yield plain_url(url)
        return
    from streams.stack.postgres import start_postgres

    svc = start_postgres(CACHE / "bench-services")
    try:
        yield svc.extra["url"]
    finally:
        svc.stop()


def admin_sql(admin_url: str, sql: str) -> None:
    """One statement (CREATE or DROP DATABASE) on a connection of its own."""

    async def run() -> None:
        conn = await asyncpg.connect(admin_url)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run())


@contextlib.contextmanager
def new_database(admin_url: str, name: str, *, migrate: bool = True) -> Iterator[str]:
    """Database ``name`` created beside ``admin_url`` (migrated with Alembic unless told not
    to); its URL; dropped afterwards."""
    admin_sql(admin_url, f'CREATE DATABASE "{name}"')
    url = admin_url.rsplit("/", 1)[0] + f"/{name}"
    try:
        if migrate:
            upgrade(url)
        yield url
    finally:
        admin_sql(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def scratch_database(name: str) -> Iterator[str]:
    """A fresh, migrated database for one benchmark run; dropped afterwards."""
    with postgres_admin_url() as admin:
        admin_sql(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        with new_database(admin, name) as url:
            yield url
