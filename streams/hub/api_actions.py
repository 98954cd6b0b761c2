"""Operator actions of the status API: retry, resume, cancel, assign a booking (bearer token
required).

Each calls the same functions as the CLI (`agents.pipeline.orchestrator.retry` / `resume` /
`cancel`,
`agents.jobs.assign.assign_booking`), which record the actor in the step log; the hub then
sends the step requests and a status event so every dashboard refreshes.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable

from pydantic import ValidationError
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from agents.jobs.assign import assign_booking
from agents.pipeline import orchestrator
from agents.pipeline.errors import InvalidDag, InvalidTransition
from storage.pipeline import ExecutionNotFound
from storage.sessions import SessionNotAssignable, SessionNotFound
from streams import records
from streams.hub import api_models as m
from streams.hub.api_support import (
    ApiContext,
    ApiError,
    actor,
    invalid,
    json_errors,
    model_response,
    not_found,
    path_id,
)

logger = logging.getLogger(__name__)

MAX_BODY = 16 * 1024


def emitter(ctx: ApiContext) -> orchestrator.Emitter:
    producer = ctx.runtime.producer
    if producer is None:
        raise ApiError(503, "starting", "the hub is still starting")

    async def send_request(key: bytes, value: bytes) -> object:
        return await producer.send_and_wait(ctx.names.step_requests, value, key=key)

    async def send_status(key: bytes, value: bytes) -> object:
        return await producer.send_and_wait(ctx.names.status, value, key=key)

    return orchestrator.Emitter(send_request, send_status)


async def publish_status(ctx: ApiContext, kind: str, id_: str, data: dict[str, object]) -> None:
    """Tell every hub's dashboards; advisory, so a broker hiccup only logs."""
    if ctx.runtime.producer is None:
        return
    event = records.StatusEvent(kind=kind, id=id_, data=data)
    try:
        await ctx.runtime.producer.send_and_wait(
            ctx.names.status, records.encode(event), key=id_.encode()
        )
    except Exception as exc:
        logger.warning("status event for %s %s not published: %s", kind, id_, exc)


async def assign(
    engine: AsyncEngine,
    key: str,
    booking_id: str,
    passenger: str,
    who: str,
    send_result: Callable[[bytes, bytes], Awaitable[object]],
) -> None:
    """Assign a booking and move the jump on (agents/jobs/assign.py)."""
    await assign_booking(engine, key, booking_id, passenger, who, send_result=send_result)


def result_sender(ctx: ApiContext) -> Callable[[bytes, bytes], Awaitable[object]]:
    producer = ctx.runtime.producer
    if producer is None:
        raise ApiError(503, "starting", "the hub is still starting")

    async def send(key: bytes, value: bytes) -> object:
        return await producer.send_and_wait(ctx.names.step_results, value, key=key)

    return send


async def _json_body(request: Request) -> object:
    body = await request.body()
    if len(body) > MAX_BODY:
        raise ApiError(413, "too_large", f"body over {MAX_BODY} bytes")
    try:
        return json.loads(body or b"null")
    except ValueError:
        raise invalid("body is not JSON") from None


def action_routes(ctx: ApiContext) -> list[BaseRoute]:
    async def _execution_status(engine: AsyncEngine, eid: int) -> str:
        async with engine.connect() as conn:
            status = await conn.scalar(
                text("SELECT status FROM pipeline_execution WHERE id = :e"), {"e": eid}
            )
        if status is None:
            raise not_found(f"execution {eid}")
        return str(status)

    async def _retry(request: Request, step: str | None) -> Response:
        ctx.require_token(request)
        eid = path_id(request, "execution_id", "execution")
        engine = ctx.engine()
        who = actor(request)
        await _execution_status(engine, eid)
        force = request.query_params.get("force", "").lower() in ("1", "true", "yes")
        try:
            retried = await orchestrator.retry(
                engine, emitter(ctx), eid, step=step, actor=who, force=force
            )
        except ExecutionNotFound:
            raise not_found(f"execution {eid}") from None
        except InvalidTransition as exc:
            raise ApiError(409, "conflict", str(exc)) from None
        except InvalidDag:
            raise not_found(f"step {step!r} of execution {eid}") from None
        await publish_status(ctx, "execution", str(eid), {"action": "retry", "steps": retried})
        logger.info("execution %d: retry of %s by %s", eid, step or "failed steps", who)
        return model_response(m.RetryResult(execution_id=eid, retried=retried))

    @json_errors
    async def retry_execution(request: Request) -> Response:
        return await _retry(request, None)

    @json_errors
    async def retry_step(request: Request) -> Response:
        return await _retry(request, str(request.path_params["step"]))

    @json_errors
    async def cancel(request: Request) -> Response:
        ctx.require_token(request)
        eid = path_id(request, "execution_id", "execution")
        engine = ctx.engine()
        status = await _execution_status(engine, eid)
        if status in ("succeeded", "cancelled"):
            raise ApiError(409, "conflict", f"execution {eid} is already {status}")
        try:
            n = await orchestrator.cancel(engine, emitter(ctx), eid, actor=actor(request))
        except ExecutionNotFound:
            raise not_found(f"execution {eid}") from None
        return model_response(m.CancelResult(execution_id=eid, cancelled_steps=n))

    @json_errors
    async def resume(request: Request) -> Response:
        ctx.require_token(request)
        eid = path_id(request, "execution_id", "execution")
        engine = ctx.engine()
        who = actor(request)
        status = await _execution_status(engine, eid)
        if status != "cancelled":
            raise ApiError(409, "conflict", f"execution {eid} is {status}, not cancelled")
        try:
            ready = await orchestrator.resume(engine, emitter(ctx), eid, actor=who)
        except ExecutionNotFound:
            raise not_found(f"execution {eid}") from None
        await publish_status(ctx, "execution", str(eid), {"action": "resume", "steps": ready})
        logger.info("execution %d: resumed by %s", eid, who)
        return model_response(m.RetryResult(execution_id=eid, retried=ready))

    @json_errors
    async def assign_route(request: Request) -> Response:
        ctx.require_token(request)
        key = str(request.path_params["key"])
        try:
            body = m.AssignRequest.model_validate(await _json_body(request))
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first.get("loc", ())) or "body"
            raise invalid(f"{where}: {first.get('msg', 'invalid')}") from None
        who = actor(request)
        engine = ctx.engine()
        try:
            await assign(
                engine, key, body.booking_id, body.passenger.strip(), who, result_sender(ctx)
            )
        except SessionNotFound:
            raise not_found(f"session {key!r}") from None
        except SessionNotAssignable as exc:
            raise ApiError(409, "conflict", str(exc)) from None
        async with engine.connect() as conn:
            row = (
                await conn.execute(
                    text("SELECT status, execution_id FROM jump_session WHERE key = :k"),
                    {"k": key},
                )
            ).first()
        status, execution_id = (str(row[0]), row[1]) if row is not None else ("assigned", None)
        await publish_status(ctx, "session", key, {"status": status, "booking_id": body.booking_id})
        return model_response(
            m.AssignResult(
                key=key,
                status=status,
                booking_id=body.booking_id,
                passenger=body.passenger.strip(),
                execution_id=execution_id,
                actor=who,
            )
        )

    return [
        Route("/api/executions/{execution_id}/retry", retry_execution, methods=["POST"]),
        Route("/api/executions/{execution_id}/steps/{step}/retry", retry_step, methods=["POST"]),
        Route("/api/executions/{execution_id}/cancel", cancel, methods=["POST"]),
        Route("/api/executions/{execution_id}/resume", resume, methods=["POST"]),
        Route("/api/sessions/{key}/assign", assign_route, methods=["POST"]),
    ]
