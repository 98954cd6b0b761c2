"""The passenger's email on the dashboard (issue 16, items 3 and 4):

    GET  /api/outbox                         recent deliveries (recipient partly masked)
    GET  /api/outbox/{delivery_id}/eml       the .eml written in outbox mode (bearer token)
    GET  /api/bookings/{booking_id}/link.svg the booking's passenger link as a QR code to scan
                                             at the desk (bearer token; issues or reuses a
                                             link; the URL is in the X-Passenger-Link header)
    POST /api/bookings/{booking_id}/resend   email the link once more (bearer token): an
                                             OperatorCommand the worker applies, with a new
                                             idempotency key ``<booking>/resend-<n>``

The SQL is in storage/deliveries.py; the sending is the worker's (agents/jobs/deliver_step.py).
"""

from __future__ import annotations

import functools
import io
import logging
import re
from pathlib import Path

import segno
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Route

from storage import deliveries
from storage.deliveries import DeliveryRow
from storage.enums import CommandAction, CommandErrorKind
from streams import commands
from streams.hub.api_support import (
    ApiContext,
    ApiError,
    actor,
    int_param,
    invalid,
    json_errors,
    path_id,
)
from streams.passenger_links import (
    BookingUnknown,
    LinkSigner,
    public_url,
    reuse_or_issue,
    signer_for,
)

logger = logging.getLogger(__name__)

BOOKING_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
OUTBOX = "outbox"
MAX_LIST = 200


def mask(address: str) -> str:
    local, _, domain = address.partition("@")
    return f"{local[:1]}***@{domain}" if domain else "***"


def _row(r: DeliveryRow) -> dict[str, object]:
    return {
        "id": r.id,
        "booking_id": r.booking_id,
        "session_key": r.session_key,
        "recipient": mask(r.recipient),
        "status": str(r.status),
        "deliverables": r.deliverable_set,
        "key": r.idempotency_key,
        "attempts": r.attempts,
        "last_error": r.last_error,
        "file": r.outbox_file,
        "link_id": r.link_id,
        "created_at": r.created_at.isoformat(),
        "sent_at": r.sent_at.isoformat() if r.sent_at else None,
    }


def _booking(request: Request) -> str:
    booking_id = str(request.path_params["booking_id"])
    if not BOOKING_ID.fullmatch(booking_id):
        raise invalid("booking_id is not a valid booking id")
    return booking_id


def qr_svg(url: str) -> bytes:
    """The link as a QR code (SVG, error correction M: readable off a screen at the desk)."""
    out = io.BytesIO()
    segno.make(url, error="m").save(out, kind="svg", scale=6, border=2, xmldecl=False)
    return out.getvalue()


def delivery_routes(ctx: ApiContext) -> list[BaseRoute]:
    @functools.cache
    def _signer() -> LinkSigner:  # made on first use (it may generate the secret file)
        return signer_for(ctx.settings)

    @json_errors
    async def outbox(request: Request) -> Response:
        ctx.require_read(request)
        limit = int_param(request, "limit", 50, 1, MAX_LIST)
        async with ctx.engine().connect() as conn:
            rows = await deliveries.recent(conn, limit)
            count = await deliveries.outbox_count(conn)
        return JSONResponse(
            {
                "smtp": bool(ctx.settings.smtp_host.strip()),
                "outbox_sent": count,
                "deliveries": [_row(r) for r in rows],
            },
            headers={"Cache-Control": "no-store"},
        )

    @json_errors
    async def eml(request: Request) -> Response:
        ctx.require_token(request)
        delivery_id = path_id(request, "delivery_id", "delivery")
        async with ctx.engine().connect() as conn:
            row = await deliveries.get(conn, delivery_id)
        if row is None or not row.outbox_file:
            raise ApiError(404, "not_found", f"delivery {delivery_id} has no outbox file")
        name = Path(row.outbox_file).name
        path = Path(ctx.settings.data_dir) / OUTBOX / name
        if name != row.outbox_file or not path.is_file():
            raise ApiError(404, "not_found", f"the outbox file of delivery {delivery_id} is gone")
        return FileResponse(
            path,
            media_type="message/rfc822",
            filename=name,
            headers={"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"},
        )

    @json_errors
    async def link_svg(request: Request) -> Response:
        ctx.require_token(request)
        booking_id = _booking(request)
        try:
            issued = await reuse_or_issue(
                ctx.engine(),
                _signer(),
                booking_id,
                days=ctx.settings.passenger_link_days,
                actor=actor(request),
            )
        except BookingUnknown as exc:
            raise ApiError(404, "not_found", str(exc)) from None
        base = ctx.settings.passenger_link_base_url or str(request.base_url)
        url = public_url(base, issued.path)
        return Response(
            qr_svg(url),
            media_type="image/svg+xml",
            headers={
                "Cache-Control": "no-store",
                "X-Passenger-Link": url,
                "X-Link-Id": str(issued.link.id),
                "X-Link-Expires": issued.link.expires_at.isoformat(),
                "X-Content-Type-Options": "nosniff",
            },
        )

    @json_errors
    async def resend(request: Request) -> Response:
        ctx.require_token(request)
        booking_id = _booking(request)
        producer = ctx.runtime.producer
        if producer is None:
            raise ApiError(503, "starting", "the hub is still starting")
        async with ctx.engine().connect() as conn:
            if await deliveries.booking_contact(conn, booking_id) is None:
                raise ApiError(404, "not_found", f"no jump of booking {booking_id!r} has an email")
        cmd = commands.new_command(CommandAction.RESEND, actor(request), booking_id=booking_id)

        async def send(key: bytes, value: bytes) -> object:
            return await producer.send_and_wait(ctx.names.commands, value, key=key)

        logger.info("booking %s: resend by %s (command %s)", booking_id, cmd.actor, cmd.command_id)
        found = await commands.issue(ctx.engine(), send, cmd)
        if found is None:
            return JSONResponse({"command_id": cmd.command_id, "status": commands.QUEUED}, 202)
        if found.error_kind is CommandErrorKind.NOT_FOUND:
            raise ApiError(404, "not_found", found.message)
        if not found.ok:
            raise ApiError(409, "conflict", found.message)
        return JSONResponse(dict(found.result), headers={"Cache-Control": "no-store"})

    return [
        Route("/api/outbox", outbox, methods=["GET"]),
        Route("/api/outbox/{delivery_id}/eml", eml, methods=["GET"]),
        Route("/api/bookings/{booking_id}/link.svg", link_svg, methods=["GET"]),
        Route("/api/bookings/{booking_id}/resend", resend, methods=["POST"]),
    ]
