"""Dashboard login: the admin token typed once per browser, a session cookie after it.

- `GET /login`: the login page (static/login.html); a browser already logged in goes to `/`.
- `POST /api/login` `{"token": "<admin token>"}`: 200 `{"logged_in": true, "expires_at"}`
  and the session cookie (streams/hub/dashboard_session.py); 401 for a wrong token (the page
  says where the token is), 429 with `Retry-After` once one address typed
  ``dashboard_login_failures_per_peer`` wrong ones within ``hub_auth_failure_window_s``
  (streams/hub/throttle.py; refused before the token is even compared); 422 for a body of
  another shape.
- `GET /api/login`: whether this browser is logged in, and whether reads are open anyway.
- `POST /api/logout` (with the CSRF header, as every dashboard action): clears the cookie.

The bodies are `streams.hub.api_action_models.LoginState`/`LoginResult`, as the OpenAPI
document says.

Every failure is logged with the peer's address, never the token typed.
"""

from __future__ import annotations

import json
import logging
import math
import time
from datetime import UTC, datetime

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from streams.hub import dashboard_session
from streams.hub.api_action_models import LoginRequest, LoginResult, LoginState
from streams.hub.api_support import ApiContext, ApiError, invalid, json_errors
from streams.hub.throttle import FailureThrottle, wait_words

logger = logging.getLogger(__name__)

MAX_BODY = 4096


def _peer(request: Request) -> str:
    return request.client.host if request.client else "unknown"


async def _typed_token(request: Request) -> str:
    body = await request.body()
    if len(body) > MAX_BODY:
        raise ApiError(413, "too_large", f"body over {MAX_BODY} bytes")
    try:
        data = json.loads(body or b"null")
    except ValueError:
        raise invalid('body must be JSON: {"token": "<admin token>"}') from None
    try:
        token = LoginRequest.model_validate(data).token  # what the OpenAPI document says
    except ValidationError:
        raise invalid('body must be JSON: {"token": "<admin token>"}') from None
    if not token.strip():
        raise invalid('body must be JSON: {"token": "<admin token>"}')
    return token


def login_routes(ctx: ApiContext, static: str) -> list[BaseRoute]:
    settings = ctx.settings
    window = settings.hub_auth_failure_window_s
    throttle = FailureThrottle(settings.dashboard_login_failures_per_peer, window, window)
    max_age = int(settings.dashboard_session_hours * 3600)

    def _state(logged_in: bool) -> dict[str, object]:
        return LoginState(logged_in=logged_in, reads_open=settings.reads_open).model_dump()

    async def page(request: Request) -> Response:
        if ctx.session_ok(request):
            return RedirectResponse("/", 303)
        return FileResponse(f"{static}/login.html", headers={"Cache-Control": "no-cache"})

    @json_errors
    async def login(request: Request) -> Response:
        peer = _peer(request)
        wait = throttle.retry_after(peer, time.monotonic())
        if wait is not None:
            logger.warning("dashboard login from %s refused (%s)", peer, wait_words(wait))
            return _throttled(wait)
        token = await _typed_token(request)
        if not ctx.token_matches(token):
            burst = throttle.failed(peer, time.monotonic())
            logger.warning("dashboard login from %s: wrong admin token", peer)
            if burst is not None:
                logger.warning(
                    "dashboard login from %s: %d wrong tokens in %.0f s, refusing it for %.0f s",
                    peer,
                    burst.failures,
                    burst.window_s,
                    burst.block_s,
                )
            raise ApiError(
                401,
                "wrong_token",
                "that is not this hub's admin token (`skyreel run` prints it; it is the hub's "
                "SKYREEL_ADMIN_TOKEN)",
            )
        expires = datetime.fromtimestamp(time.time() + max_age, UTC)
        result = LoginResult(logged_in=True, reads_open=settings.reads_open, expires_at=expires)
        response = JSONResponse(result.model_dump(mode="json"))
        response.set_cookie(
            dashboard_session.COOKIE,
            dashboard_session.issue(settings.admin_token.get_secret_value()),
            max_age=max_age,
            path="/",
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
        logger.info("dashboard login from %s (for %.1f h)", peer, max_age / 3600)
        return response

    async def whoami(request: Request) -> Response:
        return JSONResponse(_state(ctx.session_ok(request)))

    @json_errors
    async def logout(request: Request) -> Response:
        header = dashboard_session.CSRF_HEADER
        if not dashboard_session.csrf_ok("POST", request.headers.get(header)):
            raise ApiError(403, "csrf", f"log out needs the {header} header")
        response = JSONResponse(_state(False))
        response.delete_cookie(
            dashboard_session.COOKIE,
            path="/",
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
        logger.info("dashboard logout from %s", _peer(request))
        return response

    return [
        Route("/login", page, methods=["GET"]),
        Route("/api/login", login, methods=["POST"]),
        Route("/api/login", whoami, methods=["GET"]),
        Route("/api/logout", logout, methods=["POST"]),
    ]


def _throttled(wait: float) -> Response:
    message = f"too many wrong tokens from this address: {wait_words(wait)} before trying again"
    return JSONResponse(
        {"error": {"code": "throttled", "message": message}},
        429,
        headers={"Retry-After": str(max(1, math.ceil(wait)))},
    )
