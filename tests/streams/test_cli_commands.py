"""`skyreel retry`, `cancel`, `resume` and `executions`: operator commands from a shell, applied
by the engine's command applier; without one they stay queued."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator

import asyncpg
import pytest
from command_harness import commands_in_thread
from sqlalchemy.ext.asyncio import AsyncEngine
from status_harness import seed
from support import settings_env, wait_for

from streams.settings import Settings

#: `skyreel` with a short wait for the engine's answer
IMPATIENT = (
    "import sys; from streams import commands; commands.issue.__kwdefaults__['timeout'] = 0.5; "
    "from streams.cli.main import main; sys.exit(main(sys.argv[1:]))"
)


def _cli(
    settings: Settings, *args: str, impatient: bool = False
) -> subprocess.CompletedProcess[str]:
    entry = ["-c", IMPATIENT] if impatient else ["-m", "streams.cli"]
    return subprocess.run(
        [sys.executable, *entry, *args],
        env=settings_env(settings),
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
def engine_commands(settings: Settings) -> Iterator[None]:
    with commands_in_thread(settings):
        yield


async def test_retry_cancel_resume_and_executions_from_the_shell(
    settings: Settings, clean_db: AsyncEngine, pg: asyncpg.Connection, engine_commands: None
) -> None:
    s = await seed(clean_db)
    retried = _cli(settings, "retry", str(s.card_import), "--step", "copy", "--actor", "ops")
    assert retried.returncode == 0, retried.stderr
    assert f"execution {s.card_import}: retried copy" in retried.stdout
    again = _cli(settings, "retry", str(s.card_import), "--step", "copy")
    assert again.returncode == 1 and "retry refused" in again.stdout
    cancelled = _cli(settings, "cancel", str(s.jump))
    assert cancelled.returncode == 0, cancelled.stderr
    assert f"execution {s.jump}: cancelled 2 steps" in cancelled.stdout
    resumed = _cli(settings, "resume", str(s.jump))
    assert resumed.returncode == 0 and f"execution {s.jump}: resumed" in resumed.stdout
    listed = _cli(settings, "executions")
    assert listed.returncode == 0 and "jump:card-A:1" in listed.stdout
    actors = await pg.fetch("SELECT actor FROM operator_command ORDER BY applied_at")
    assert "ops" in [a["actor"] for a in actors]


async def test_without_a_worker_a_command_is_queued(
    settings: Settings, clean_db: AsyncEngine
) -> None:
    s = await seed(clean_db)
    out = _cli(settings, "cancel", str(s.jump), impatient=True)
    assert out.returncode == 0, out.stderr
    assert "queued: applies when the worker runs" in out.stdout


async def test_the_worker_applies_a_command_from_the_shell(
    settings: Settings, clean_db: AsyncEngine, pg: asyncpg.Connection, spawn: Callable[..., object]
) -> None:
    # the real `skyreel worker`: its commands agent (agents/worker.py) applies the command
    s = await seed(clean_db)
    spawn("streams.cli", "worker", env=settings_env(settings), name="worker")
    await wait_for(
        lambda: pg.fetchval("SELECT count(*) FROM worker_heartbeat"), timeout=60, what="worker"
    )
    out = _cli(settings, "cancel", str(s.jump))
    assert out.returncode == 0, out.stderr
    assert f"execution {s.jump}: cancelled" in out.stdout, out.stdout
