"""Issuing an operator command and waiting for the engine's answer: the one client of the
commands topic, used by the hub's actions (streams/hub/api_actions.py) and the CLI
(streams/cli/commands.py).

The command goes out as a ``records.OperatorCommand``; the engine (agents/commands.py) applies
it and stores its outcome in ``operator_command``; :func:`issue` polls storage for that row. No
answer within ``timeout`` is not a failure: the command is on the topic and applies when a
worker runs (the caller says so, with the command id).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncEngine

from storage.commands import CommandOutcome, outcome
from storage.enums import CommandAction
from streams import records
from streams.kafka import Send

#: How long a sender waits for the engine before answering "queued".
ANSWER_TIMEOUT_S = 15.0
POLL_INTERVAL_S = 0.05
QUEUED = "queued: applies when the worker runs"


def new_command(action: CommandAction, actor: str, **fields: object) -> records.OperatorCommand:
    """A command with a fresh id, issued now."""
    return records.OperatorCommand.model_validate(
        {
            "command_id": str(uuid.uuid4()),
            "action": action,
            "actor": actor,
            "issued_at": datetime.now(UTC),
            **fields,
        }
    )


async def issue(
    engine: AsyncEngine,
    send: Send,
    command: records.OperatorCommand,
    *,
    timeout: float = ANSWER_TIMEOUT_S,
) -> CommandOutcome | None:
    """Send ``command`` (on the commands topic, through ``send``) and wait for its outcome;
    None when the engine did not answer within ``timeout``."""
    await send(command.key, records.encode(command))
    deadline = time.monotonic() + timeout
    while True:
        async with engine.connect() as conn:
            found = await outcome(conn, command.command_id)
        if found is not None or time.monotonic() >= deadline:
            return found
        await asyncio.sleep(POLL_INTERVAL_S)
