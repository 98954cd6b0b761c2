"""Operator commands: the engine applies each command id once and stores its outcome; the hub
answers 202 with the command id when no engine answers in time."""

from __future__ import annotations

import asyncpg
import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from status_harness import AUTH, api_settings, seed, serve_hub

from agents.commands import Commands, record_outcome
from agents.pipeline.dispatch import Emitter
from storage import commands as store
from storage.enums import CommandAction, CommandErrorKind
from streams import commands, records
from streams.hub.api_action_models import CommandQueued
from streams.settings import Settings


async def _nowhere(key: bytes, value: bytes) -> object:
    return None


async def test_a_redelivered_command_is_applied_once(
    clean_db: AsyncEngine, pg: asyncpg.Connection
) -> None:
    s = await seed(clean_db)
    ops = Commands(clean_db, Emitter(_nowhere, _nowhere), _nowhere)
    cmd = commands.new_command(
        CommandAction.RETRY, "ops", execution_id=s.card_import, step="copy", force=False
    )
    payload = records.encode(cmd)
    await ops.handle(payload)
    await ops.handle(payload)  # redelivery, or a replay of the topic
    attempt = await pg.fetchval(
        "SELECT attempt FROM pipeline_step WHERE execution_id = $1 AND name = 'copy'",
        s.card_import,
    )
    assert attempt == 2  # one new attempt, not two
    async with clean_db.connect() as conn:
        found = await store.outcome(conn, cmd.command_id)
    assert found is not None and found.ok
    assert found.result == {"execution_id": s.card_import, "retried": ["copy"]}
    stored = "SELECT count(*) FROM operator_command WHERE command_id = $1"
    assert await pg.fetchval(stored, cmd.command_id) == 1


async def test_refusals_are_stored_with_their_kind(clean_db: AsyncEngine) -> None:
    s = await seed(clean_db)
    ops = Commands(clean_db, Emitter(_nowhere, _nowhere), _nowhere)
    unknown = commands.new_command(CommandAction.CANCEL, "ops", execution_id=999_999)
    resume_running = commands.new_command(CommandAction.RESUME, "ops", execution_id=s.jump)
    for cmd in (unknown, resume_running):
        await ops.apply(cmd)
    async with clean_db.connect() as conn:
        missing = await store.outcome(conn, unknown.command_id)
        conflict = await store.outcome(conn, resume_running.command_id)
    assert missing is not None and missing.error_kind is CommandErrorKind.NOT_FOUND
    assert missing.message == "execution 999999 not found"
    assert conflict is not None and conflict.error_kind is CommandErrorKind.CONFLICT
    assert conflict.message == f"execution {s.jump} is running, not cancelled"


async def test_the_first_outcome_of_a_command_wins(clean_db: AsyncEngine) -> None:
    cmd = commands.new_command(CommandAction.CANCEL, "ops", execution_id=1)
    async with clean_db.begin() as conn:
        assert await record_outcome(conn, cmd, ok=True, result={"n": 1})
        assert not await record_outcome(conn, cmd, ok=False, result={})
    async with clean_db.connect() as conn:
        found = await store.outcome(conn, cmd.command_id)
    assert found is not None and found.ok and found.result == {"n": 1}


async def test_without_an_engine_an_action_is_queued_with_its_command_id(
    settings: Settings, clean_db: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = await seed(clean_db)
    monkeypatch.setattr(commands.issue, "__kwdefaults__", {"timeout": 0.5})
    async with serve_hub(api_settings(settings)) as hub, httpx.AsyncClient(base_url=hub.url) as c:
        r = await c.post(f"/api/executions/{s.jump}/cancel", headers=AUTH)
    assert r.status_code == 202, r.text
    body = CommandQueued.model_validate(r.json())
    assert body.status == "queued: applies when the worker runs"
    assert len(body.command_id) == 36
