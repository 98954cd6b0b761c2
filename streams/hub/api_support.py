"""Plumbing shared by the status API modules: errors as JSON, parameters, auth, the actor,
and the operator's view of cards and warnings (`card_model`, `attention`: the hub and
`skyreel status` say the same words).

Errors are `{"error": {"code", "message"}}` with 401 (token or login), 403 (a dashboard action
without its CSRF header), 404 (unknown id), 409 (state does
not allow it), 422 (bad filter or body), 503 (hub still starting / dependency down).
"""

from __future__ import annotations

import functools
import hmac
import logging
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from typing import Protocol

from aiokafka import AIOKafkaProducer
from pydantic import BaseModel
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, Response

from storage import status as queries
from storage import status_cards as card_queries
from storage.cards import CardSafety, card_safety
from streams.hub import api_models as m
from streams.hub import dashboard_session
from streams.hub.detector_ws import Gateway
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
    """What the hub's lifespan opened (streams.hub.server.Runtime); None until started."""

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

    def token_matches(self, token: str) -> bool:
        """Whether ``token`` is the admin token (constant time)."""
        expected = self.settings.admin_token.get_secret_value()
        return bool(token) and hmac.compare_digest(token.strip().encode(), expected.encode())

    def token_ok(self, conn: HTTPConnection, *, allow_query: bool = False) -> bool:
        """A bearer header with the admin token; with ``allow_query`` also ``?token=``, kept for
        old clients only (nothing the project ships sends it; logs show it as ``token=***``)."""
        header = conn.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            token = conn.query_params.get("token", "") if allow_query else ""
        return self.token_matches(token)

    def session_ok(self, conn: HTTPConnection) -> bool:
        """A valid dashboard session cookie (streams/hub/dashboard_session.py)."""
        return (
            dashboard_session.verify(
                self.settings.admin_token.get_secret_value(),
                conn.cookies.get(dashboard_session.COOKIE),
                self.settings.dashboard_session_hours * 3600,
            )
            is not None
        )

    def require_token(self, conn: HTTPConnection) -> None:
        """The admin bearer token, or a dashboard login whose request carries the CSRF header
        (a state change the browser's own page asked for, never another site's form)."""
        if self.token_ok(conn):
            return
        if self.session_ok(conn):
            method = conn.scope.get("method", "GET")
            if dashboard_session.csrf_ok(method, conn.headers.get(dashboard_session.CSRF_HEADER)):
                return
            raise ApiError(
                403, "csrf", f"a dashboard action needs the {dashboard_session.CSRF_HEADER} header"
            )
        raise ApiError(401, "unauthorized", "a valid bearer token or a dashboard login is required")

    def require_read(self, conn: HTTPConnection) -> None:
        if self.settings.reads_open or self.token_ok(conn, allow_query=True):
            return
        if not self.session_ok(conn):
            raise ApiError(401, "unauthorized", "reads need a login or a bearer token on this hub")


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


def path_id(request: Request, name: str, what: str) -> int:
    raw = str(request.path_params[name])
    if not re.fullmatch(r"[0-9]{1,18}", raw):
        raise not_found(f"{what} {raw!r}")
    return int(raw)


def path_text(request: Request, name: str, what: str) -> str:
    """A text path parameter (a card id, session key, step name). PostgreSQL text holds no NUL,
    so such a value names nothing: a 404 here, not a driver error (a 500) further down."""
    raw = str(request.path_params[name])
    if "\x00" in raw:
        raise not_found(f"{what} {raw!r}")
    return raw


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


# --- cards and attention: what an operator reads first -------------------------------------------

SKIPPED_SHOWN = 100  # skipped files listed on a card (the total is given too)
SKIPPED_NOTED = 5  # skipped files spelled out in a card's notes and the attention list
ATTENTION_CARDS = 50  # the cards seen last whose warnings it carries (/api/cards' first page)
_SEVERITY_ORDER = {"action": 0, "warning": 1, "info": 2}


def _files(n: int) -> str:
    return f"{n} file" if n == 1 else f"{n} files"


def _bytes(n: int) -> str:
    value = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1000:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} TB"


def skipped_files(safety: CardSafety) -> list[m.SkippedFile]:
    """The card's skipped files as {path, reason}; entries of another shape are shown as text."""
    found: list[m.SkippedFile] = []
    for entry in safety.skipped[:SKIPPED_SHOWN]:
        if isinstance(entry, Mapping):
            path, reason = entry.get("path"), entry.get("reason")
        else:
            path, reason = entry, None
        found.append(m.SkippedFile(path=str(path or "?"), reason=str(reason or "not readable")))
    return found


def _note(kind: m.NoteKind, severity: m.Severity, message: str) -> m.CardNote:
    return m.CardNote(kind=kind, severity=severity, message=message)


def _removal_note(s: CardSafety) -> m.CardNote:
    if s.outstanding and s.present:
        return _note("card_copying", "info", f"copying {_files(s.outstanding)} — do not remove")
    if s.outstanding:
        return _note(
            "card_removed_early",
            "action",
            f"removed with {_files(s.outstanding)} not yet copied — put it back in a station",
        )
    if s.failed:
        return _note("card_files_failed", "action", _failed(s.failed))
    if s.skipped:
        return _note(
            "card_files_skipped",
            "action",
            f"{_files(len(s.skipped))} the station could not read, only on the card — copy by "
            "hand before formatting it",
        )
    return _note("card_safe", "info", "safe to remove" if s.present else "everything copied")


def _failed(n: int) -> str:
    return f"{_files(n)} could not be copied (only on the card) — do not format it"


def card_notes(s: CardSafety) -> list[m.CardNote]:
    """The card in words: its removal state first, then nearly full, clock, skipped files."""
    notes = [_removal_note(s)]
    if s.outstanding and s.failed:
        notes.append(_note("card_files_failed", "action", _failed(s.failed)))
    if s.nearly_full() and s.free_bytes is not None and s.capacity_bytes:
        free, cap = _bytes(s.free_bytes), _bytes(s.capacity_bytes)
        notes.append(_note("card_nearly_full", "warning", f"nearly full: {free} of {cap} free"))
    if s.clock_warning:
        clock = s.clock_warning
        notes.append(
            _note(
                "card_clock",
                "warning",
                clock if "clock" in clock.lower() else f"camera clock looks wrong: {clock}",
            )
        )
    skipped = skipped_files(s)
    for f in skipped[:SKIPPED_NOTED]:
        notes.append(_note("card_skipped_file", "warning", f"file skipped: {f.path} ({f.reason})"))
    if len(s.skipped) > SKIPPED_NOTED:
        more = len(s.skipped) - SKIPPED_NOTED
        notes.append(
            _note("card_skipped_file", "warning", f"{_files(more)} more skipped (see the card)")
        )
    return notes


def card_model(row: Mapping[str, object], s: CardSafety) -> m.Card:
    """A `storage.status.list_cards` row and the card's safety as the API's Card."""
    return m.Card.model_validate(
        {
            **{k: row[k] for k in m.Card.model_fields if k in row},
            "listed": s.listed,
            "imported": s.imported,
            "outstanding": s.outstanding,
            "failed": s.failed,
            "safe_to_remove": s.safe_to_remove,
            "nearly_full": s.nearly_full(),
            "free_bytes": s.free_bytes,
            "capacity_bytes": s.capacity_bytes,
            "skipped": skipped_files(s),
            "skipped_total": len(s.skipped),
            "clock_warning": s.clock_warning,
            "notes": card_notes(s),
        }
    )


async def cards_with_safety(conn: AsyncConnection, rows: list[queries.Row]) -> list[m.Card]:
    """Card rows with their safety: one more query for the whole page."""
    safety = await card_safety(conn, [str(r["id"]) for r in rows])
    return [card_model(r, safety[str(r["id"])]) for r in rows if str(r["id"]) in safety]


def card_name(card_id: str, label: object) -> str:
    return f"card {label} ({card_id})" if label else f"card {card_id}"


def _session_subject(row: Mapping[str, object]) -> str:
    who = row.get("passenger") or row.get("booking_id")
    return f"jump {row['key']}" + (f" ({who})" if who else "")


def session_items(rows: Iterable[Mapping[str, object]]) -> list[m.AttentionItem]:
    """Rows of `storage.status.attention_sessions` as attention items."""
    items: list[m.AttentionItem] = []
    for r in rows:
        subject = _session_subject(r)
        detail = str(r.get("message") or "")
        execution = r.get("execution_id")
        review = r["kind"] == "review"
        if review:
            detail = detail or (
                "no booking yet" if r.get("status") == "unassigned" else "reason not recorded"
            )
        items.append(
            m.AttentionItem(
                kind="needs_review" if review else "session_warning",
                severity="action" if review else "warning",
                subject=subject,
                detail=detail,
                message=f"{subject} needs review: {detail}" if review else f"{subject}: {detail}",
                card_id=str(r["card_id"]),
                session_key=str(r["key"]),
                execution_id=int(execution) if execution is not None else None,  # type: ignore[call-overload]
            )
        )
    return items


def card_items(card_id: str, label: object, s: CardSafety) -> list[m.AttentionItem]:
    """A card's notes that need someone (action or warning) as attention items."""
    subject = card_name(card_id, label)
    return [
        m.AttentionItem(
            kind=n.kind,
            severity=n.severity,
            subject=subject,
            detail=n.message,
            message=f"{subject}: {n.message}",
            card_id=card_id,
            session_key=None,
            execution_id=None,
        )
        for n in card_notes(s)
        if n.severity != "info"
    ]


async def attention(conn: AsyncConnection, limit: int) -> m.Attention:
    """What needs a person, actions first (three queries, whatever the number of rows)."""
    sessions = await card_queries.attention_sessions(conn, limit + 1)
    reviews = [r for r in sessions if r["kind"] == "review"]
    warnings = [r for r in sessions if r["kind"] != "review"]
    truncated = len(reviews) > limit or len(warnings) > limit
    cards = await card_queries.recent_cards(conn, ATTENTION_CARDS)
    safety = await card_safety(conn, [str(c["id"]) for c in cards])
    items = session_items(reviews[:limit])
    for c in cards:
        found = safety.get(str(c["id"]))
        if found is not None:
            items += card_items(str(c["id"]), c.get("label"), found)
    items += session_items(warnings[:limit])
    items.sort(key=lambda i: _SEVERITY_ORDER[i.severity])  # stable: sessions, cards, warnings
    return m.Attention(items=items, truncated=truncated)
