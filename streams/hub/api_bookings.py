"""`GET /api/bookings/recent?q=&limit=`: the bookings jumps carry, most recently seen first,
with their passenger — the review form's booking lookup (a datalist), so an operator assigning a
jump from its QR frame picks the booking instead of retyping it (issue 17)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from storage import status_cards as card_queries
from streams.hub import api_action_models as am
from streams.hub.api_support import ApiContext, int_param, json_errors, model_response, text_param

#: what `q` may be (here and on GET /api/sessions): 1-64 characters, no control characters
SEARCH = r"[^\x00-\x1f\x7f]{1,64}"


def booking_routes(ctx: ApiContext) -> list[BaseRoute]:
    @json_errors
    async def recent(request: Request) -> Response:
        ctx.require_read(request)
        q = text_param(request, "q", SEARCH)
        limit = int_param(request, "limit", 20, 1, 50)
        async with ctx.engine().connect() as conn:
            rows = await card_queries.recent_bookings(conn, q, limit)
        return model_response(
            am.RecentBookings(items=[am.RecentBooking.model_validate(r) for r in rows])
        )

    return [Route("/api/bookings/recent", recent, methods=["GET"])]
