"""`skyreel status` and `skyreel assign` against the real database (same functions as the API)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import asyncpg
import pytest
from command_harness import commands_in_thread
from sqlalchemy.ext.asyncio import AsyncEngine
from status_harness import seed, seed_trouble
from support import settings_env

from streams.settings import Settings


@pytest.fixture(autouse=True)
def engine_commands(settings: Settings) -> Iterator[None]:
    """`skyreel assign` is a command the engine applies (on a loop of its own: the CLI runs
    under a blocking subprocess.run)."""
    with commands_in_thread(settings):
        yield


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


async def test_status_prints_what_needs_a_person(settings: Settings, clean_db: AsyncEngine) -> None:
    s = await seed(clean_db)
    t = await seed_trouble(clean_db)
    out = _cli(settings, "status")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    start = lines.index("needs attention:")
    attention = lines[start + 1 :]
    assert attention[0] == f"  [action] jump {s.session} needs review: {t.review_reason}"
    expected = [
        "  [action] card GOPRO-B (card-B): removed with 1 file not yet copied — put it back in "
        "a station",
        "  [warning] card GOPRO-A (card-A): nearly full: 2.0 GB of 64.0 GB free",
        f"  [warning] card GOPRO-A (card-A): {t.card_clock}",
        f"  [warning] card GOPRO-A (card-A): file skipped: {t.skipped_path} ({t.skipped_reason})",
        f"  [warning] jump {s.session}: {t.clip_warning}",
        f"  [warning] jump {t.warned_session} (Bea): {t.session_clock}",
    ]
    for line in expected:
        assert line in attention, (line, out.stdout)
    cards = attention[
        attention.index("cards (last seen first; their warnings are listed above):") :
    ]
    assert any(
        "card-A" in c and "copying 1 file — do not remove" in c and "nearly full" in c
        for c in cards
    ), out.stdout
    assert any("card-C" in c and "present" in c and "safe to remove" in c for c in cards)
    assert any("card-B" in c and "removed" in c for c in cards)


async def test_status_never_prints_control_characters_from_a_card(
    settings: Settings, clean_db: AsyncEngine, pg: asyncpg.Connection
) -> None:
    await pg.execute("INSERT INTO card (id, label) VALUES ('card-E', 'CAM')")
    await pg.execute(
        "INSERT INTO jump_session (key, card_id, status, review_reason) "
        "VALUES ('card-E:1', 'card-E', 'needs_review', $1)",
        "gap\x1b[2J after the ticket",
    )
    out = _cli(settings, "status")
    assert out.returncode == 0, out.stderr
    assert "\x1b" not in out.stdout
    assert "needs review: gap\\x1b[2J after the ticket" in out.stdout
