"""`skyreel status` and `skyreel assign` against the real database (same functions as the API)."""

from __future__ import annotations

import subprocess
import sys

import asyncpg
from sqlalchemy.ext.asyncio import AsyncEngine
from status_harness import seed
from support import settings_env

from streams.settings import Settings


def _cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streams.cli", *args],
        env=settings_env(settings),
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_status_and_assign_from_the_shell(
    settings: Settings, clean_db: AsyncEngine, pg: asyncpg.Connection
) -> None:
    s = await seed(clean_db)
    out = _cli(settings, "status")
    assert out.returncode == 0, out.stderr
    assert "files_imported=2" in out.stdout and s.session in out.stdout
    bad = _cli(settings, "assign", s.session, "--booking", "../x", "--passenger", "Ann")
    assert bad.returncode == 2 and "booking_id" in bad.stderr
    ok = _cli(settings, "assign", s.session, "--booking", "BK-9", "--passenger", "Ann")
    assert ok.returncode == 0, ok.stderr
    row = await pg.fetchrow("SELECT status, booking_id, assigned_by FROM jump_session")
    assert row["status"] == "assigned" and row["booking_id"] == "BK-9"
    assert row["assigned_by"].startswith("cli:")
    again = _cli(settings, "assign", s.session, "--booking", "BK-9", "--passenger", "Ann")
    assert again.returncode == 1 and "assigned" in again.stderr
