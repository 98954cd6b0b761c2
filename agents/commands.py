"""The engine side of operator commands: retry, resume, cancel, assign and edit, sent by the API
and the CLI as ``OperatorCommand`` records on the commands topic (they never import agents).

Each command is applied with the engine's own functions (``agents.pipeline.orchestrator.retry``
/ ``resume`` / ``cancel``, ``agents.jobs.assign.assign_booking``,
``agents.jobs.edit_marks.set_marks``; replay: ``agents.replay.Rewinder.rewind``, which seeks
this worker's consumer back) and its outcome is stored in
``operator_command`` (storage/commands.py) before the message is acked. A command whose
outcome is stored already is skipped, so redelivery and replay apply nothing twice. (A worker
killed between applying and storing applies the command again on redelivery; the second time
is refused by the same guards as a second click, and that refusal is what gets stored.)
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import faust
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from agents.jobs.assign import assign_booking
from agents.jobs.edit_marks import EditRefused, set_marks
from agents.pipeline import dispatch, orchestrator
from agents.pipeline.errors import (
    InvalidDag,
    InvalidTransition,
    PermanentStepError,
    RetryableStepError,
)
from agents.purge import BookingNotFound, purge_booking, purged_message
from agents.qr.payload import email_problem
from agents.replay import ReplayRefused
from agents.retention import PurgeReason
from storage import commands as store
from storage.enums import CommandAction, CommandErrorKind, ExecutionStatus, StatusKind, StepStatus
from storage.pipeline import ExecutionNotFound, load_steps
from storage.sessions import Assigned, SessionNotAssignable, SessionNotFound
from streams import records
from streams.kafka import Send
from streams.settings import Settings
from streams.topics import Names

logger = logging.getLogger(__name__)


class Refused(Exception):
    """A command the engine will not apply: stored as its outcome (HTTP 404 / 409)."""

    def __init__(self, kind: CommandErrorKind, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


def _not_found(what: str) -> Refused:
    return Refused(CommandErrorKind.NOT_FOUND, f"{what} not found")


def _conflict(message: str) -> Refused:
    return Refused(CommandErrorKind.CONFLICT, message)


def declare_topic(app: faust.App, names: Names, partitions: int) -> faust.TopicT:
    return app.topic(
        names.commands, partitions=partitions, key_serializer="raw", value_serializer="raw"
    )


async def record_outcome(
    conn: AsyncConnection,
    cmd: records.OperatorCommand,
    *,
    ok: bool,
    result: dict[str, Any],
    error_kind: CommandErrorKind = CommandErrorKind.NONE,
    message: str = "",
) -> bool:
    """Store what applying ``cmd`` came to; False when it has an outcome already (the first
    wins)."""
    return await store.record_outcome(
        conn,
        command_id=cmd.command_id,
        action=cmd.action,
        command=records.as_dict(cmd),
        actor=cmd.actor,
        issued_at=cmd.issued_at,
        ok=ok,
        result=result,
        error_kind=error_kind,
        message=message,
    )


@dataclass(frozen=True)
class Commands:
    """Applies commands; ``send_result`` must be acked by the broker before it returns."""

    engine: AsyncEngine
    emitter: dispatch.Emitter
    send_result: Send
    settings: Settings | None = None  # a purge needs the folders (issue 16)
    #: replay (issue 17): agents.replay.Rewinder.rewind of this worker; None: refused
    rewind: Callable[[str, str, dict[int, int]], Awaitable[dict[str, Any]]] | None = None
    # issue 16: an operator's resend (agents/jobs/deliver_step.py `resend`), bound to the
    # worker's settings; None: resend commands are refused
    resend: Callable[[str, str, str], Awaitable[dict[str, object]]] | None = None
    # issue 16: a product set on assign adds the steps it buys (agents/jobs/bought_later.py):
    # (session key, execution id, product, actor) -> the steps added
    bought_later: Callable[[str, int, str, str], Awaitable[list[str]]] | None = None

    async def handle(self, payload: bytes) -> None:
        await self.apply(records.decode(records.OperatorCommand, payload))

    async def apply(self, cmd: records.OperatorCommand) -> None:
        async with self.engine.connect() as conn:
            if await store.is_recorded(conn, cmd.command_id):
                logger.info("command %s (%s) applied already", cmd.command_id, cmd.action)
                return
        ok, result, kind, message = True, {}, CommandErrorKind.NONE, ""
        try:
            result = await self._dispatch(cmd)
        except Refused as exc:
            ok, kind, message = False, exc.kind, exc.message
        async with self.engine.begin() as conn:
            await record_outcome(conn, cmd, ok=ok, result=result, error_kind=kind, message=message)
        logger.info(
            "command %s: %s by %s %s%s",
            cmd.command_id,
            cmd.action,
            cmd.actor,
            "applied" if ok else f"refused ({kind})",
            f": {message}" if message else "",
        )

    async def _dispatch(self, cmd: records.OperatorCommand) -> dict[str, Any]:
        if cmd.action is CommandAction.ASSIGN:
            return await self._assign(cmd)
        if cmd.action is CommandAction.EDIT:
            return await self._edit(cmd)
        if cmd.action is CommandAction.PURGE:
            return await self._purge(cmd)
        if cmd.action is CommandAction.REPLAY:
            return await self._replay(cmd)
        if cmd.action is CommandAction.RESEND:
            return await self._resend(cmd)
        if cmd.execution_id is None:
            raise _not_found("execution")
        eid = cmd.execution_id
        async with self.engine.connect() as conn:
            status = await store.execution_status(conn, eid)
        if status is None:
            raise _not_found(f"execution {eid}")
        try:
            if cmd.action is CommandAction.RETRY:
                return await self._retry(cmd, eid)
            if cmd.action is CommandAction.RESUME:
                return await self._resume(cmd, eid, status)
            return await self._cancel(cmd, eid, status)
        except ExecutionNotFound:
            raise _not_found(f"execution {eid}") from None

    async def _retry(self, cmd: records.OperatorCommand, eid: int) -> dict[str, Any]:
        async with self.engine.connect() as conn:
            purged = await purged_message(conn, eid)
        if purged:  # its footage is gone: nothing can render it again
            raise _conflict(f"execution {eid}: {purged}")
        try:
            retried = await orchestrator.retry(
                self.engine, self.emitter, eid, step=cmd.step, actor=cmd.actor, force=cmd.force
            )
        except InvalidTransition as exc:
            raise _conflict(str(exc)) from None
        except InvalidDag:
            raise _not_found(f"step {cmd.step!r} of execution {eid}") from None
        await self._status(StatusKind.EXECUTION, str(eid), {"action": "retry", "steps": retried})
        return {"execution_id": eid, "retried": retried}

    async def _resume(self, cmd: records.OperatorCommand, eid: int, status: str) -> dict[str, Any]:
        if status != ExecutionStatus.CANCELLED:
            raise _conflict(f"execution {eid} is {status}, not cancelled")
        ready = await orchestrator.resume(self.engine, self.emitter, eid, actor=cmd.actor)
        await self._status(StatusKind.EXECUTION, str(eid), {"action": "resume", "steps": ready})
        return {"execution_id": eid, "retried": ready}

    async def _cancel(self, cmd: records.OperatorCommand, eid: int, status: str) -> dict[str, Any]:
        if status in (ExecutionStatus.SUCCEEDED, ExecutionStatus.CANCELLED):
            raise _conflict(f"execution {eid} is already {status}")
        n = await orchestrator.cancel(self.engine, self.emitter, eid, actor=cmd.actor)
        return {"execution_id": eid, "cancelled_steps": n}

    async def _assign(self, cmd: records.OperatorCommand) -> dict[str, Any]:
        key = cmd.session_key or ""
        booking_id = cmd.booking_id or ""
        passenger = (cmd.passenger or "").strip()
        problem = email_problem(cmd.email) if cmd.email else None
        if problem is not None:
            raise _conflict(f"email {cmd.email!r} refused: {problem}")
        try:
            assigned = await assign_booking(
                self.engine,
                key,
                booking_id,
                passenger,
                cmd.actor,
                send_result=self.send_result,
                email=cmd.email,
                product=cmd.product,
            )
        except SessionNotFound:
            raise _not_found(f"session {key!r}") from None
        except SessionNotAssignable as exc:
            raise _conflict(str(exc)) from None
        passenger = passenger or assigned.passenger
        added: list[str] = []
        if cmd.product and assigned.execution_id is not None and self.bought_later is not None:
            added = await self.bought_later(key, assigned.execution_id, cmd.product, cmd.actor)
        if not added:  # added steps rerun `deliver` themselves
            await self._deliver_again(assigned, cmd.actor)
        async with self.engine.connect() as conn:
            state = await store.session_state(conn, key)
        status = state.status if state is not None else "assigned"
        execution_id = state.execution_id if state is not None else None
        await self._status(StatusKind.SESSION, key, {"status": status, "booking_id": booking_id})
        return {
            "key": key,
            "status": status,
            "booking_id": booking_id,
            "passenger": passenger,
            "execution_id": execution_id,
            "actor": cmd.actor,
            "email": cmd.email,
            "product": cmd.product,
        }

    async def _deliver_again(self, assigned: Assigned, actor: str) -> None:
        """A new email on a jump whose `deliver` step finished: it runs again (issue 16); it
        sends once per deliverable set whatever runs it, so this is always safe."""
        eid = assigned.execution_id
        if eid is None or not assigned.email or assigned.email == assigned.email_before:
            return
        async with self.engine.connect() as conn:
            rows = await load_steps(conn, eid, ["deliver"])
        if not rows or rows[0].state.status not in (StepStatus.SUCCEEDED, StepStatus.FAILED):
            return  # not run yet: it reads the email when it does
        await orchestrator.rerun(
            self.engine, self.emitter, eid, step="deliver", actor=actor,
            reason=f"an email was set for session {assigned.key}",
        )  # fmt: skip

    async def _resend(self, cmd: records.OperatorCommand) -> dict[str, Any]:
        booking_id = cmd.booking_id or ""
        if self.resend is None:
            raise _conflict("this worker cannot send email (no resend configured)")
        try:
            out = await self.resend(booking_id, cmd.command_id, cmd.actor)
        except LookupError as exc:
            raise Refused(CommandErrorKind.NOT_FOUND, str(exc)) from None
        except (PermanentStepError, RetryableStepError) as exc:
            raise _conflict(str(exc)) from None
        return {"booking_id": booking_id, **out, "actor": cmd.actor}

    async def _edit(self, cmd: records.OperatorCommand) -> dict[str, Any]:
        """Operator marks: stored, then the session's phases step and what follows run again."""
        key = cmd.session_key or ""
        if cmd.marks is None:
            raise _conflict("an edit command needs marks (exit, opening, landing)")
        try:
            done = await set_marks(
                self.engine, self.emitter, key, cmd.marks, cmd.actor, cmd.command_id
            )
        except EditRefused as exc:
            if exc.not_found:
                raise _not_found(f"session {key!r}") from None
            raise _conflict(exc.message) from None
        except (InvalidDag, ExecutionNotFound):
            raise _conflict(f"session {key}: its pipeline has no phases step to run") from None
        async with self.engine.connect() as conn:
            state = await store.session_state(conn, key)
        status = state.status if state is not None else ""
        await self._status(StatusKind.SESSION, key, {"status": status, "edit": "marks set"})
        return {
            "key": key,
            "status": status,
            "execution_id": done.execution_id,
            "marks": done.marks,
            "rerun": done.rerun,
            "approved": done.approved,
            "applied_before": done.applied_before,
            "actor": cmd.actor,
        }

    async def _purge(self, cmd: records.OperatorCommand) -> dict[str, Any]:
        """A booking's files and personal data, on request (issue 16, item 5); recorded in
        ``purge_record`` before this command's outcome is."""
        if self.settings is None:
            raise _conflict("this worker was started without settings: it cannot purge")
        booking_id = (cmd.booking_id or "").strip()

        async def cancel(eid: int) -> int:
            return await orchestrator.cancel(self.engine, self.emitter, eid, actor=cmd.actor)

        try:
            done = await purge_booking(
                self.engine,
                self.settings,
                booking_id,
                PurgeReason.REQUEST,
                cmd.actor,
                cancel=cancel,
            )
        except BookingNotFound:
            raise _not_found(f"booking {booking_id!r}") from None
        for key in done.keys:
            await self._status(StatusKind.SESSION, key, {"status": "purged", "action": "purge"})
        return done.as_dict()

    async def _replay(self, cmd: records.OperatorCommand) -> dict[str, Any]:
        """Rewind this worker's consumer on a topic (agents/replay.py); re-read messages are
        handled idempotently, so nothing is applied twice."""
        if self.rewind is None:
            raise _conflict("this worker cannot replay (no rewinder attached)")
        offsets = cmd.offsets or {}
        if not cmd.topic or not offsets or min(*offsets, *offsets.values()) < 0:
            raise _conflict("a replay command needs a topic and offsets >= 0 per partition")
        try:
            return await self.rewind(cmd.command_id, cmd.topic, offsets)
        except ReplayRefused as exc:
            raise _conflict(str(exc)) from None

    async def _status(self, kind: StatusKind, id_: str, data: dict[str, object]) -> None:
        """Tell every hub's dashboards; advisory, so a broker hiccup only logs."""
        if self.emitter.send_status is None:
            return
        event = records.StatusEvent(kind=kind, id=id_, data=data)
        try:
            await self.emitter.send_status(id_.encode(), records.encode(event))
        except Exception as exc:
            logger.warning("status event for %s %s not published: %s", kind, id_, exc)
