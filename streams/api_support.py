"""Plumbing shared by the status API modules: errors as JSON, parameters, auth, the actor.

Errors are `{"error": {"code", "message"}}` with 401 (token), 404 (unknown id), 409 (state does
not allow it), 422 (bad filter or body), 503 (hub still starting / dependency down).
"""

from __future__ import annotations

import functools
import hmac
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from typing import Protocol

from aiokafka import AIOKafkaProducer
from pydantic import BaseModel
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, Response

from streams.detector_ws import Gateway
from streams.settings import Settings
from streams.topics import Names

logger = logging.getLogger(__name__)

MAX_LIMIT = 200
_ACTOR = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._@-]{0,63}$")


class ApiError(Exception):
    """An error the client should see, with its HTTP status and a stable code."""

    def __init__(self, status: int, code: str, message: str) -> None:
        self.status = status
        self.code = code
        self.message = message
        super().__init__(message)


def not_found(what: str) -> ApiError:
    return ApiError(404, "not_found", f"{what} not found")


def invalid(message: str) -> ApiError:
    return ApiError(422, "invalid", message)


def error_response(exc: ApiError) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
    return JSONResponse(
        {"error": {"code": exc.code, "message": exc.message}}, exc.status, headers=headers
    )


def model_response(model: BaseModel, status: int = 200) -> Response:
    return Response(model.model_dump_json(), status_code=status, media_type="application/json")


class HubRuntime(Protocol):
    """What the hub's lifespan opened (streams.hub.Runtime); None until started."""

    engine: AsyncEngine | None
    redis: Redis | None
    producer: AIOKafkaProducer | None
    gateway: Gateway | None


@dataclass
class ApiContext:
    settings: Settings
    names: Names
    hub_id: str
    runtime: HubRuntime

    def engine(self) -> AsyncEngine:
        if self.runtime.engine is None:
            raise ApiError(503, "starting", "the hub is still starting")
        return self.runtime.engine

    def token_ok(self, conn: HTTPConnection, *, allow_query: bool = False) -> bool:
        expected = self.settings.admin_token.get_secret_value()
        header = conn.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            token = conn.query_params.get("token", "") if allow_query else ""
        return bool(token) and hmac.compare_digest(token.strip().encode(), expected.encode())

    def require_token(self, conn: HTTPConnection) -> None:
        if not self.token_ok(conn):
            raise ApiError(401, "unauthorized", "a valid bearer token is required")

    def require_read(self, conn: HTTPConnection) -> None:
        if not self.settings.reads_open and not self.token_ok(conn, allow_query=True):
            raise ApiError(401, "unauthorized", "reads need a bearer token on this hub")


def actor(request: Request) -> str:
    """Who did it: a name from X-Actor (validated), else `api:<remote address>`."""
    remote = request.client.host if request.client else "unknown"
    name = request.headers.get("x-actor", "").strip()
    if name and _ACTOR.match(name):
        return f"{name} (api:{remote})"
    return f"api:{remote}"


Endpoint = Callable[[Request], Awaitable[Response]]


def json_errors(handler: Endpoint) -> Endpoint:
    """Turn ApiError into its JSON response; anything else is a logged 500 in JSON."""

    @functools.wraps(handler)
    async def wrapper(request: Request) -> Response:
        try:
            return await handler(request)
        except ApiError as exc:
            return error_response(exc)
        except Exception:
            logger.exception("%s %s failed", request.method, request.url.path)
            return error_response(ApiError(500, "internal", "internal error (see hub log)"))

    return wrapper


# --- parameters ----------------------------------------------------------------------------------


def int_param(request: Request, name: str, default: int, lo: int, hi: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    if not re.fullmatch(r"[0-9]{1,9}", raw):
        raise invalid(f"{name} must be an integer between {lo} and {hi}")
    value = int(raw)
    if not lo <= value <= hi:
        raise invalid(f"{name} must be between {lo} and {hi}")
    return value


def optional_int(request: Request, name: str, lo: int = 0, hi: int = 2**62) -> int | None:
    if request.query_params.get(name) is None:
        return None
    return int_param(request, name, 0, lo, hi)


def path_id(request: Request, name: str, what: str) -> int:
    raw = str(request.path_params[name])
    if not re.fullmatch(r"[0-9]{1,18}", raw):
        raise not_found(f"{what} {raw!r}")
    return int(raw)


def choice(request: Request, name: str, allowed: frozenset[str]) -> str | None:
    raw = request.query_params.get(name)
    if raw is None:
        return None
    if raw not in allowed:
        raise invalid(f"{name} must be one of {', '.join(sorted(allowed))}")
    return raw


def text_param(
    request: Request, name: str, pattern: str = r"[^\x00-\x1f\x7f]{1,128}"
) -> str | None:
    raw = request.query_params.get(name)
    if raw is None:
        return None
    if not re.fullmatch(pattern, raw):
        raise invalid(f"{name} is not a valid value")
    return raw


def when_param(request: Request, name: str, *, end: bool = False) -> datetime | None:
    """An ISO date (whole day; `end` means the day after) or date-time; naive is UTC."""
    raw = request.query_params.get(name)
    if raw is None:
        return None
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", raw):
            day = date.fromisoformat(raw)
            if end:
                day = date.fromordinal(day.toordinal() + 1)
            return datetime.combine(day, time(), UTC)
        value = datetime.fromisoformat(raw)
    except (ValueError, OverflowError):
        raise invalid(f"{name} must be an ISO date (YYYY-MM-DD) or date-time") from None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def cursor_param(request: Request) -> int | None:
    raw = request.query_params.get("cursor")
    if raw is None:
        return None
    if not re.fullmatch(r"[1-9][0-9]{0,17}", raw):
        raise invalid("cursor is not one this API handed out")
    return int(raw)
