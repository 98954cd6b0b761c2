"""Operator actions of the status API: retry, resume, cancel, assign a booking, set a jump's
marks (edit), purge a booking, revoke a detector (bearer token required).

The hub changes no pipeline state itself: it checks what it can from storage (404 for an
unknown execution or session, 409 for an obvious conflict), sends an ``OperatorCommand`` on
the commands topic and waits for the engine's outcome (streams/commands.py,
agents/commands.py), which it answers exactly as the engine reported it. When no worker
answers in time: 202 with the command id; the command applies when a worker runs.

Revoking a detector is the exception: the hub owns detector sockets, so it revokes the token in
PostgreSQL itself and closes the live socket on every replica (streams/hub/revocation.py).
"""

from __future__ import annotations

import json
import logging
from typing import Any

from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from storage.commands import execution_status, session_state
from storage.detectors import DetectorError
from storage.enums import CommandAction, CommandErrorKind, ExecutionStatus
from storage.passenger_links import booking_known
from streams import commands, edit_request, records
from streams.hub import api_action_models as am
from streams.hub.api_support import (
    ApiContext,
    ApiError,
    actor,
    invalid,
    json_errors,
    model_response,
    not_found,
    path_id,
    path_text,
)
from streams.hub.revocation import revocation_message, revoke_detector

logger = logging.getLogger(__name__)

MAX_BODY = 16 * 1024


async def _json_body(request: Request) -> object:
    body = await request.body()
    if len(body) > MAX_BODY:
        raise ApiError(413, "too_large", f"body over {MAX_BODY} bytes")
    try:
        return json.loads(body or b"null")
    except ValueError:
        raise invalid("body is not JSON") from None


def action_routes(ctx: ApiContext) -> list[BaseRoute]:
    async def _execution_status(eid: int) -> str:
        async with ctx.engine().connect() as conn:
            status = await execution_status(conn, eid)
        if status is None:
            raise not_found(f"execution {eid}")
        return status

    async def _issue(
        cmd: records.OperatorCommand, answer: type[BaseModel], ok_status: int = 200
    ) -> Response:
        producer = ctx.runtime.producer
        if producer is None:
            raise ApiError(503, "starting", "the hub is still starting")

        async def send(key: bytes, value: bytes) -> object:
            return await producer.send_and_wait(ctx.names.commands, value, key=key)

        found = await commands.issue(ctx.engine(), send, cmd)
        if found is None:
            logger.info("command %s (%s) queued: no worker answered", cmd.command_id, cmd.action)
            return model_response(
                am.CommandQueued(command_id=cmd.command_id, status=commands.QUEUED), 202
            )
        if found.error_kind is CommandErrorKind.NOT_FOUND:
            raise ApiError(404, "not_found", found.message)
        if not found.ok:
            raise ApiError(409, "conflict", found.message)
        return model_response(answer.model_validate(found.result), ok_status)

    async def _retry(request: Request, step: str | None) -> Response:
        ctx.require_token(request)
        eid = path_id(request, "execution_id", "execution")
        who = actor(request)
        await _execution_status(eid)
        force = request.query_params.get("force", "").lower() in ("1", "true", "yes")
        cmd = commands.new_command(
            CommandAction.RETRY, who, execution_id=eid, step=step, force=force
        )
        logger.info("execution %d: retry of %s by %s", eid, step or "failed steps", who)
        return await _issue(cmd, am.RetryResult)

    @json_errors
    async def retry_execution(request: Request) -> Response:
        return await _retry(request, None)

    @json_errors
    async def retry_step(request: Request) -> Response:
        ctx.require_token(request)  # before the step name is looked at: 401 comes first
        return await _retry(request, path_text(request, "step", "step"))

    @json_errors
    async def cancel(request: Request) -> Response:
        ctx.require_token(request)
        eid = path_id(request, "execution_id", "execution")
        status = await _execution_status(eid)
        if status in (ExecutionStatus.SUCCEEDED, ExecutionStatus.CANCELLED):
            raise ApiError(409, "conflict", f"execution {eid} is already {status}")
        cmd = commands.new_command(CommandAction.CANCEL, actor(request), execution_id=eid)
        return await _issue(cmd, am.CancelResult)

    @json_errors
    async def resume(request: Request) -> Response:
        ctx.require_token(request)
        eid = path_id(request, "execution_id", "execution")
        who = actor(request)
        status = await _execution_status(eid)
        if status != ExecutionStatus.CANCELLED:
            raise ApiError(409, "conflict", f"execution {eid} is {status}, not cancelled")
        cmd = commands.new_command(CommandAction.RESUME, who, execution_id=eid)
        logger.info("execution %d: resume by %s", eid, who)
        return await _issue(cmd, am.RetryResult)

    @json_errors
    async def assign_route(request: Request) -> Response:
        ctx.require_token(request)
        key = path_text(request, "key", "session")
        try:
            body = am.AssignRequest.model_validate(await _json_body(request))
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first.get("loc", ())) or "body"
            raise invalid(f"{where}: {first.get('msg', 'invalid')}") from None
        async with ctx.engine().connect() as conn:
            if await session_state(conn, key) is None:
                raise not_found(f"session {key!r}")
        fields: dict[str, Any] = {
            "session_key": key,
            "booking_id": body.booking_id,
            "passenger": body.passenger.strip(),
            "email": body.email,
            "product": " ".join(body.product.split()) if body.product else None,
        }
        cmd = commands.new_command(CommandAction.ASSIGN, actor(request), **fields)
        return await _issue(cmd, am.AssignResult)

    @json_errors
    async def edit_route(request: Request) -> Response:
        """Operator marks (issue 15): stored by the engine, then the session is edited again."""
        ctx.require_token(request)
        key = path_text(request, "key", "session")
        try:
            marks = edit_request.parse_marks(await _json_body(request))
            async with ctx.engine().connect() as conn:
                await edit_request.precheck(conn, key, marks)
        except edit_request.EditRejected as exc:
            logger.info("session %s: edit refused: %s", key, exc.message)
            if exc.kind is edit_request.Rejection.NOT_FOUND:
                raise ApiError(404, "not_found", exc.message) from None
            if exc.kind is edit_request.Rejection.CONFLICT:
                raise ApiError(409, "conflict", exc.message) from None
            raise invalid(exc.message) from None
        cmd = commands.new_command(CommandAction.EDIT, actor(request), session_key=key, marks=marks)
        logger.info("session %s: marks %s by %s", key, marks.as_dict(), cmd.actor)
        # 202 either way: the re-edit, render and publish follow
        return await _issue(cmd, am.EditResult, 202)

    @json_errors
    async def purge_route(request: Request) -> Response:
        """A booking's files and personal data deleted on request (issue 16, item 5): applied
        and recorded by the engine (agents/purge.py), answered as it recorded it."""
        ctx.require_token(request)
        booking_id = path_text(request, "booking_id", "booking")
        async with ctx.engine().connect() as conn:
            if not await booking_known(conn, booking_id):
                raise not_found(f"booking {booking_id!r}")
        cmd = commands.new_command(CommandAction.PURGE, actor(request), booking_id=booking_id)
        logger.info("booking %s: purge requested by %s", booking_id, cmd.actor)
        return await _issue(cmd, am.PurgeResult)

    @json_errors
    async def revoke(request: Request) -> Response:
        ctx.require_token(request)
        detector_id = str(request.path_params["detector_id"])
        gateway = ctx.runtime.gateway
        if gateway is None:
            raise ApiError(503, "starting", "the hub is still starting")
        try:
            done = await revoke_detector(
                gateway.sessions, ctx.runtime.redis, ctx.names, detector_id
            )
        except DetectorError:
            raise not_found(f"detector {detector_id!r}") from None
        if not done.found:
            raise not_found(f"detector {detector_id!r}")
        # Without Redis the others close it at their next re-check; this replica does now.
        await gateway.close_revoked(detector_id)
        logger.info("detector %s revoked by %s", detector_id, actor(request))
        return model_response(
            am.DetectorRevoked(
                detector_id=detector_id,
                revoked=True,
                connected_hub=done.connected.hub if done.connected else None,
                closed=done.closed,
                hubs_told=done.hubs_told,
                message=revocation_message(done),
            )
        )

    return [
        Route("/api/detectors/{detector_id}/revoke", revoke, methods=["POST"]),
        Route("/api/executions/{execution_id}/retry", retry_execution, methods=["POST"]),
        Route("/api/executions/{execution_id}/steps/{step}/retry", retry_step, methods=["POST"]),
        Route("/api/executions/{execution_id}/cancel", cancel, methods=["POST"]),
        Route("/api/executions/{execution_id}/resume", resume, methods=["POST"]),
        Route("/api/sessions/{key}/assign", assign_route, methods=["POST"]),
        Route("/api/sessions/{key}/edit", edit_route, methods=["POST"]),
        Route("/api/bookings/{booking_id}/purge", purge_route, methods=["POST"]),  # issue 16
    ]
