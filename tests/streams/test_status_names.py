"""`skyreel status` and `skyreel executions` name jumps by booking, passenger, capture time and
card (streams/cli/whose.py); the internal key stays as the trailing id column."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime

import asyncpg
from sqlalchemy.ext.asyncio import AsyncEngine
from support import settings_env

from streams.cli.whose import COLUMNS, header, whose
from streams.settings import Settings

CAPTURED = datetime(2026, 5, 1, 14, 5, tzinfo=UTC)


def test_columns_for_people() -> None:
    line = whose("BK-70414", "Ana Müller", CAPTURED, "card-A")
    assert line.split() == ["BK-70414", "Ana", "Müller", "2026-05-01", "14:05", "card-A"]
    assert len(line) == len(header()) == sum(w for _, w in COLUMNS) + len(COLUMNS) - 1
    # a booking without a name says so; no booking yet (waits for a person): dashes
    assert whose("BK-70414", "", None, "card-A").split() == ["BK-70414", "(no", "name)", "-",
                                                              "card-A"]  # fmt: skip
    assert whose(None, None, None, None).split() == ["-", "-", "-", "-"]
    # long names are cut visibly; the columns stay aligned; no escape reaches the terminal
    long = whose("BK-1", "Maximiliane Alexandra von Hohenzollern", CAPTURED, "card-A")
    assert "Maximiliane Alexandra…" in long and len(long) == len(header())
    hostile = whose("BK-1", "Eve\x1b[2J", CAPTURED, "card-\x07")
    assert "\x1b" not in hostile and "\x07" not in hostile and "\\x1b[2J" in hostile
    # a capture time without a zone is the camera's, shown as stored
    assert "2026-05-01 14:05" in whose("B", "A", CAPTURED.replace(tzinfo=None), "c")


async def _seed(pg: asyncpg.Connection) -> dict[str, int]:
    await pg.execute("INSERT INTO card (id, label) VALUES ('card-A', 'GOPRO-A')")
    ids: dict[str, int] = {}
    for key, booking, passenger, status in (
        ("card-A:1", "BK-70414", "Ana Müller", "assigned"),
        ("card-A:2", "BK-70415", None, "decoded"),
        ("card-A:3", None, None, "needs_review"),
    ):
        ids[key] = await pg.fetchval(
            "INSERT INTO pipeline_execution (key, pipeline, subject_type, subject_id, status) "
            "VALUES ($1, 'jump', 'session', $2, 'running') RETURNING id",
            f"jump:{key}",
            key,
        )
        await pg.execute(
            "INSERT INTO jump_session (key, card_id, status, booking_id, passenger, "
            "execution_id, capture_start) VALUES ($1, 'card-A', $2, $3, $4, $5, $6)",
            key, status, booking, passenger, ids[key], CAPTURED,
        )  # fmt: skip
    ids["import"] = await pg.fetchval(
        "INSERT INTO pipeline_execution (key, pipeline, subject_type, subject_id, status) "
        "VALUES ('import:card-A', 'card_import', 'card', 'card-A', 'succeeded') RETURNING id"
    )
    return ids


def _cli(settings: Settings, *args: str) -> list[str]:
    out = subprocess.run(
        [sys.executable, "-m", "streams.cli", *args],
        env=settings_env(settings),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.splitlines()


def _line_of(lines: list[str], execution_id: int) -> str:
    found = [line for line in lines if line.split() and line.split()[0] == str(execution_id)]
    assert len(found) == 1, lines
    return found[0]


async def test_status_names_jumps_by_booking_and_passenger(
    settings: Settings, clean_db: AsyncEngine, pg: asyncpg.Connection
) -> None:
    ids = await _seed(pg)
    lines = _cli(settings, "status")
    head = next(line for line in lines if line.lstrip().startswith("id"))
    assert "booking" in head and "passenger" in head and "captured" in head and "card" in head
    assert head.rstrip().endswith("key")

    ana = _line_of(lines, ids["card-A:1"])
    assert "BK-70414" in ana and "Ana Müller" in ana and "2026-05-01 14:05" in ana
    assert ana.index("Ana Müller") < ana.index("card-A:1")  # the key trails, as an id
    assert ana.rstrip().endswith("card-A:1")
    nameless = _line_of(lines, ids["card-A:2"])
    assert "BK-70415" in nameless and "(no name)" in nameless
    waiting = _line_of(lines, ids["card-A:3"])
    assert waiting.split()[4:8] == ["-", "-", "2026-05-01", "14:05"]
    card = _line_of(lines, ids["import"])
    assert "card_import" in card and card.split()[-1] == "card-A"


async def test_executions_names_jumps_too(
    settings: Settings, clean_db: AsyncEngine, pg: asyncpg.Connection
) -> None:
    ids = await _seed(pg)
    lines = _cli(settings, "executions")
    assert "booking" in lines[0] and "passenger" in lines[0] and "key" in lines[0]
    ana = _line_of(lines, ids["card-A:1"])
    assert "BK-70414" in ana and "Ana Müller" in ana and "2026-05-01 14:05" in ana
    assert ana.index("Ana Müller") < ana.index("jump:card-A:1")
    assert "(no name)" in _line_of(lines, ids["card-A:2"])
    assert "import:card-A" in _line_of(lines, ids["import"])
