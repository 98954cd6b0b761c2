"""Operator actions on passenger links (bearer token required, like every action):

    POST /api/bookings/{booking_id}/link     issue a link; body (optional) {"days": n}
                                             -> 201 {link_id, booking_id, url, path, expires_at}
    POST /api/links/{link_id}/revoke         revoke it from now on (idempotent)
                                             -> 200 {link_id, booking_id, revoked_at, revoked_by}

The hub does these itself (a link is the hub's, like a detector's token): the row is written
in storage/passenger_links.py, the token signed in streams/hub/passenger_links.py. The URL is
under SKYREEL_PASSENGER_LINK_BASE_URL, else the address the call came to.
"""

from __future__ import annotations

import functools
import json
import logging
import re

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from streams.hub.api_support import ApiContext, ApiError, actor, invalid, json_errors, path_id
from streams.hub.passenger_links import (
    BookingUnknown,
    LinkSigner,
    issue_link,
    public_url,
    revoke_link,
    signer_for,
)

logger = logging.getLogger(__name__)

BOOKING_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
MAX_BODY = 4096


async def _days(request: Request, default: int) -> int:
    body = await request.body()
    if len(body) > MAX_BODY:
        raise ApiError(413, "too_large", f"body over {MAX_BODY} bytes")
    if not body.strip():
        return default
    try:
        data = json.loads(body)
    except ValueError:
        raise invalid("body is not JSON") from None
    if not isinstance(data, dict) or set(data) - {"days"}:
        raise invalid('body must be {"days": <1-365>} or empty')
    days = data.get("days", default)
    if not isinstance(days, int) or isinstance(days, bool) or not 1 <= days <= 365:
        raise invalid("days must be a whole number between 1 and 365")
    return days


def passenger_link_routes(ctx: ApiContext) -> list[BaseRoute]:
    @functools.cache
    def _signer() -> LinkSigner:  # made on first use (it may generate the secret file)
        return signer_for(ctx.settings)

    @json_errors
    async def issue(request: Request) -> Response:
        ctx.require_token(request)
        booking_id = str(request.path_params["booking_id"])
        if not BOOKING_ID.fullmatch(booking_id):
            raise invalid("booking_id is not a valid booking id")
        days = await _days(request, ctx.settings.passenger_link_days)
        who = actor(request)
        try:
            issued = await issue_link(ctx.engine(), _signer(), booking_id, days=days, actor=who)
        except BookingUnknown as exc:
            raise ApiError(404, "not_found", str(exc)) from None
        base = ctx.settings.passenger_link_base_url or str(request.base_url)
        return JSONResponse(
            {
                "link_id": issued.link.id,
                "booking_id": booking_id,
                "url": public_url(base, issued.path),
                "path": issued.path,
                "expires_at": issued.link.expires_at.isoformat(),
            },
            201,
            headers={"Cache-Control": "no-store"},
        )

    @json_errors
    async def revoke(request: Request) -> Response:
        ctx.require_token(request)
        link_id = path_id(request, "link_id", "link")
        row = await revoke_link(ctx.engine(), link_id, actor(request))
        if row is None:
            raise ApiError(404, "not_found", f"link {link_id} not found")
        return JSONResponse(
            {
                "link_id": row.id,
                "booking_id": row.booking_id,
                "revoked_at": row.revoked_at.isoformat() if row.revoked_at else None,
                "revoked_by": row.revoked_by,
            }
        )

    return [
        Route("/api/bookings/{booking_id}/link", issue, methods=["POST"]),
        Route("/api/links/{link_id}/revoke", revoke, methods=["POST"]),
    ]
