"""Operator commands (retry, resume, cancel, assign) as the engine applied them, and the reads
the API and CLI check before issuing one.

The hub and the CLI never change pipeline state themselves: they send an ``OperatorCommand``
record (streams/records.py) on the commands topic; the engine (agents/commands.py) applies it
and stores the outcome here, once per command id; the sender polls :func:`outcome` for its
answer. Insert-once is what makes redelivery and replay of the topic harmless.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from storage.enums import CommandAction, CommandErrorKind
from storage.models import JumpSession, OperatorCommandRow, PipelineExecution


@dataclass(frozen=True)
class CommandOutcome:
    command_id: str
    action: CommandAction
    ok: bool
    result: dict[str, Any]
    error_kind: CommandErrorKind
    message: str


async def is_recorded(conn: AsyncConnection, command_id: str) -> bool:
    """True once the engine stored this command's outcome (it must not be applied again)."""
    found = await conn.scalar(
        select(OperatorCommandRow.command_id).where(OperatorCommandRow.command_id == command_id)
    )
    return found is not None


async def record_outcome(
    conn: AsyncConnection,
    *,
    command_id: str,
    action: CommandAction,
    command: dict[str, Any],
    actor: str,
    issued_at: datetime,
    ok: bool,
    result: dict[str, Any],
    error_kind: CommandErrorKind = CommandErrorKind.NONE,
    message: str = "",
) -> bool:
    """Store the outcome once; False when this command id already has one (the first wins)."""
    stmt = (
        insert(OperatorCommandRow)
        .values(
            command_id=command_id,
            action=str(action),
            command=command,
            actor=actor[:200],
            issued_at=issued_at,
            ok=ok,
            result=result,
            error_kind=str(error_kind),
            message=message,
        )
        .on_conflict_do_nothing(index_elements=["command_id"])
        .returning(OperatorCommandRow.command_id)
    )
    return (await conn.scalar(stmt)) is not None


async def outcome(conn: AsyncConnection, command_id: str) -> CommandOutcome | None:
    """The stored outcome of a command; None while the engine has not applied it."""
    row = (
        await conn.execute(
            select(
                OperatorCommandRow.action,
                OperatorCommandRow.ok,
                OperatorCommandRow.result,
                OperatorCommandRow.error_kind,
                OperatorCommandRow.message,
            ).where(OperatorCommandRow.command_id == command_id)
        )
    ).first()
    if row is None:
        return None
    return CommandOutcome(
        command_id=command_id,
        action=CommandAction(row.action),
        ok=bool(row.ok),
        result=dict(row.result or {}),
        error_kind=CommandErrorKind(row.error_kind),
        message=str(row.message),
    )


# --- what the API and CLI check before issuing a command ---------------------------------------


async def execution_status(conn: AsyncConnection, execution_id: int) -> str | None:
    """The execution's status; None when there is no such execution."""
    status = await conn.scalar(
        select(PipelineExecution.status).where(PipelineExecution.id == execution_id)
    )
    return None if status is None else str(status)


@dataclass(frozen=True)
class SessionState:
    status: str
    execution_id: int | None


async def session_state(conn: AsyncConnection, key: str) -> SessionState | None:
    """A jump session's status and execution; None when there is no such session."""
    row = (
        await conn.execute(
            select(JumpSession.status, JumpSession.execution_id).where(JumpSession.key == key)
        )
    ).first()
    return None if row is None else SessionState(str(row.status), row.execution_id)
