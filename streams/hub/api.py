"""The status API: what came off which card, which jump is where, what failed — as JSON.

`StatusApi` is what the hub mounts: `routes()` for the app, `start()`/`stop()` from its lifespan
(the `/ws/status` consumer). Read endpoints live here; actions (retry, cancel, assign) in
`streams.hub.api_actions`; frames and media files in `streams.hub.api_media`; the schema in
`streams.hub.openapi`, generated from the response models in `streams.hub.api_models`.

Reads are open when `settings.reads_open` (LAN), else they need the admin bearer token too.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path

from redis.exceptions import RedisError
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.websockets import WebSocket

from storage import status as queries
from storage import status_cards as card_queries
from storage import status_edit as edit_queries
from streams.hub import api_models as m
from streams.hub import dashboard_session
from streams.hub.api_actions import action_routes
from streams.hub.api_bookings import SEARCH, booking_routes
from streams.hub.api_edit_models import file_names, session_edit
from streams.hub.api_media import media_routes
from streams.hub.api_support import (
    MAX_LIMIT,
    ApiContext,
    ApiError,
    HubRuntime,
    attention,
    cards_with_safety,
    choice,
    cursor_param,
    int_param,
    invalid,
    json_errors,
    model_response,
    not_found,
    path_id,
    path_text,
    text_param,
    when_param,
)
from streams.hub.live import LiveStatus
from streams.hub.login import login_routes
from streams.hub.media_links import MediaRoots, media_links, media_urls
from streams.hub.openapi import openapi_document
from streams.settings import Settings
from streams.topics import Names

logger = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent / "static"
EXECUTION_STATUSES = frozenset(
    {"pending", "running", "waiting", "succeeded", "failed", "cancelled"}
)
SESSION_STATUSES = frozenset({"decoded", "unassigned", "needs_review", "assigned", "pending"})
_ID_TEXT = r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}"


def _summary(row: dict[str, object]) -> dict[str, object]:
    keys = m.ExecutionSummary.model_fields
    return {k: row[k] for k in keys}


def _stored(row: Mapping[str, object]) -> str | None:
    """An imported file's copy on the share (relative to it); None before it is imported."""
    stored = row.get("stored_path")
    return str(stored) if row.get("status") == "imported" and stored else None


def file_info(row: dict[str, object], url: str | None) -> m.FileInfo:
    """A file of the ledger with `url`, the link to its copy (None: not there)."""
    frame = f"/api/files/{row['id']}/frame.jpg" if url is not None else None
    data = {k: row.get(k) for k in m.FileInfo.model_fields if k not in ("url", "frame_url")}
    return m.FileInfo.model_validate({**data, "url": url, "frame_url": frame})


async def file_infos(ctx: ApiContext, rows: list[dict[str, object]]) -> list[m.FileInfo]:
    """Files of the ledger, each linked only when its copy is on the share now."""
    urls = await media_urls(MediaRoots.of(ctx.settings), (_stored(r) for r in rows))
    return [file_info(r, urls.get(_stored(r) or "")) for r in rows]


def step_node(row: dict[str, object]) -> m.StepNode:
    started, finished = row.get("started_at"), row.get("finished_at")
    duration = (finished - started).total_seconds() if started and finished else None  # type: ignore[operator]
    attempts = row.get("attempts")
    if isinstance(attempts, str):
        attempts = json.loads(attempts)
    data = {k: row.get(k) for k in m.StepNode.model_fields if k not in ("duration_s", "attempts")}
    data["depends_on"] = list(row.get("depends_on") or [])  # type: ignore[call-overload]
    data["spawns"] = list(row.get("spawns") or [])  # type: ignore[call-overload]
    return m.StepNode.model_validate({**data, "duration_s": duration, "attempts": attempts or []})


class StatusApi:
    """The status API, live updates and dashboard of one hub replica."""

    def __init__(self, settings: Settings, names: Names, hub_id: str, runtime: HubRuntime) -> None:
        self.ctx = ApiContext(settings, names, hub_id, runtime)
        self.live = LiveStatus(settings, names, hub_id)

    def start(self) -> None:
        self.live.start(self.ctx.runtime.redis)

    async def stop(self) -> None:
        await self.live.stop()

    def routes(self) -> list[BaseRoute]:
        ctx = self.ctx
        reads = _ReadEndpoints(ctx)
        return [
            Route("/", self._index, methods=["GET"]),
            Mount("/static", StaticFiles(directory=STATIC), name="static"),
            Route("/api/openapi.json", self._openapi, methods=["GET"]),
            Route("/api/executions", json_errors(reads.executions), methods=["GET"]),
            Route("/api/executions/{execution_id}", json_errors(reads.execution), methods=["GET"]),
            Route(
                "/api/executions/{execution_id}/steps/{step}/logs",
                json_errors(reads.logs),
                methods=["GET"],
            ),
            Route("/api/attention", json_errors(reads.attention), methods=["GET"]),
            Route("/api/cards", json_errors(reads.cards), methods=["GET"]),
            Route("/api/cards/{card_id}", json_errors(reads.card), methods=["GET"]),
            Route("/api/cards/{card_id}/files", json_errors(reads.card_files), methods=["GET"]),
            Route("/api/sessions", json_errors(reads.sessions), methods=["GET"]),
            Route("/api/sessions/{key}", json_errors(reads.session), methods=["GET"]),
            Route("/api/detectors", json_errors(reads.detectors), methods=["GET"]),
            Route("/api/counters", json_errors(reads.counters), methods=["GET"]),
            Route("/api/dead-letters", json_errors(reads.dead_letters), methods=["GET"]),
            *action_routes(ctx),
            *media_routes(ctx),
            *login_routes(ctx, str(STATIC)),  # issue 17: dashboard login
            *booking_routes(ctx),
            WebSocketRoute("/ws/status", self._ws),
            Route(
                "/api/{rest:path}", self._unknown, methods=["GET", "POST", "PUT", "DELETE", "PATCH"]
            ),
        ]

    async def _index(self, request: Request) -> Response:
        ctx = self.ctx
        if not ctx.settings.reads_open and not ctx.session_ok(request):
            return RedirectResponse("/login", 303)  # nothing to show before a login
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    async def _openapi(self, request: Request) -> Response:
        return JSONResponse(openapi_document())

    async def _unknown(self, request: Request) -> Response:
        return JSONResponse(
            {"error": {"code": "not_found", "message": f"no endpoint {request.url.path}"}}, 404
        )

    async def _ws(self, websocket: WebSocket) -> None:
        async def authorized(ws: WebSocket) -> bool:
            if self.ctx.settings.reads_open or self.ctx.token_ok(ws, allow_query=True):
                return True
            # a dashboard login: only from the hub's own page (no cross-site socket hijack)
            origin, host = ws.headers.get("origin"), ws.headers.get("host")
            return dashboard_session.same_origin(origin, host) and self.ctx.session_ok(ws)

        await self.live.endpoint(websocket, authorized, self.ctx.token_matches)


class _ReadEndpoints:
    def __init__(self, ctx: ApiContext) -> None:
        self.ctx = ctx

    async def _media(self, outputs: list[dict[str, object]]) -> list[m.MediaLink]:
        roots = MediaRoots.of(self.ctx.settings)
        return await media_links(roots, queries.output_files(outputs))

    async def executions(self, request: Request) -> Response:
        self.ctx.require_read(request)
        f = queries.ExecutionFilter(
            status=choice(request, "status", EXECUTION_STATUSES),
            card=text_param(request, "card"),
            booking=text_param(request, "booking", r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}"),
            since=when_param(request, "since"),
            until=when_param(request, "until", end=True),
        )
        if f.since and f.until and f.since >= f.until:
            raise invalid("since must be before until")
        page = queries.Page(
            limit=int_param(request, "limit", 50, 1, MAX_LIMIT),
            cursor=cursor_param(request),
            offset=int_param(request, "offset", 0, 0, 1_000_000),
        )
        if page.cursor is not None and page.offset:
            raise invalid("use either cursor or offset, not both")
        async with self.ctx.engine().connect() as conn:
            rows, cursor = await queries.list_executions(conn, f, page)
        return model_response(
            m.ExecutionList(
                items=[m.ExecutionSummary.model_validate(_summary(r)) for r in rows],
                limit=page.limit,
                next_cursor=str(cursor) if cursor is not None else None,
            )
        )

    async def execution(self, request: Request) -> Response:
        self.ctx.require_read(request)
        eid = path_id(request, "execution_id", "execution")
        async with self.ctx.engine().connect() as conn:
            row = await queries.get_execution(conn, eid)
            if row is None:
                raise not_found(f"execution {eid}")
            steps = await queries.execution_steps(conn, eid)
            outputs = await queries.execution_outputs(conn, eid)
        nodes = [step_node(s) for s in steps]
        edges = queries.dag_edges(
            ((n.name, n.depends_on) for n in nodes), {n.name: n.spawns for n in nodes}
        )
        detail = m.ExecutionDetail.model_validate(
            {
                **_summary(row),
                "context": row.get("context") or {},
                "steps": nodes,
                "edges": [m.Edge(source=a, target=b) for a, b in edges],
                "media": await self._media(outputs),
            }
        )
        return model_response(detail)

    async def logs(self, request: Request) -> Response:
        self.ctx.require_read(request)
        eid = path_id(request, "execution_id", "execution")
        name = path_text(request, "step", "step")
        attempt = int_param(request, "attempt", -1, 0, 1_000_000)
        limit = int_param(request, "limit", 500, 1, 2000)
        after = int_param(request, "after", 0, 0, 2**62)
        async with self.ctx.engine().connect() as conn:
            sid = await queries.step_id(conn, eid, name)
            if sid is None:
                raise not_found(f"step {name!r} of execution {eid}")
            lines = await queries.step_logs(
                conn, sid, None if attempt < 0 else attempt, limit, after
            )
        items = [m.LogLine.model_validate(r) for r in lines]
        return model_response(
            m.StepLogs(
                execution_id=eid,
                step=name,
                attempt=None if attempt < 0 else attempt,
                lines=items,
                next_after=items[-1].id if len(items) == limit else None,
            )
        )

    async def cards(self, request: Request) -> Response:
        self.ctx.require_read(request)
        limit = int_param(request, "limit", 50, 1, MAX_LIMIT)
        offset = int_param(request, "offset", 0, 0, 1_000_000)
        async with self.ctx.engine().connect() as conn:
            items = await cards_with_safety(
                conn, await card_queries.list_cards(conn, limit, offset)
            )
        return model_response(m.CardList(items=items, limit=limit, offset=offset))

    async def card(self, request: Request) -> Response:
        self.ctx.require_read(request)
        card_id = _card_id(request)
        async with self.ctx.engine().connect() as conn:
            row = await card_queries.get_card(conn, card_id)
            items = await cards_with_safety(conn, [row] if row is not None else [])
        if not items:
            raise not_found(f"card {card_id!r}")
        return model_response(items[0])

    async def attention(self, request: Request) -> Response:
        self.ctx.require_read(request)
        limit = int_param(request, "limit", 100, 1, MAX_LIMIT)
        async with self.ctx.engine().connect() as conn:
            return model_response(await attention(conn, limit))

    async def card_files(self, request: Request) -> Response:
        self.ctx.require_read(request)
        card_id = _card_id(request)
        limit = int_param(request, "limit", 200, 1, MAX_LIMIT)
        offset = int_param(request, "offset", 0, 0, 1_000_000)
        async with self.ctx.engine().connect() as conn:
            if not await card_queries.card_exists(conn, card_id):
                raise not_found(f"card {card_id!r}")
            rows = await card_queries.card_files(conn, card_id, limit, offset)
        return model_response(
            m.FileList(
                card_id=card_id, items=await file_infos(self.ctx, rows), limit=limit, offset=offset
            )
        )

    async def sessions(self, request: Request) -> Response:
        self.ctx.require_read(request)
        status = choice(request, "status", SESSION_STATUSES)
        card = text_param(request, "card")
        q = text_param(request, "q", SEARCH)  # issue 17: passenger, booking or key
        limit = int_param(request, "limit", 50, 1, MAX_LIMIT)
        offset = int_param(request, "offset", 0, 0, 1_000_000)
        async with self.ctx.engine().connect() as conn:
            rows = await card_queries.list_sessions(conn, status, card, limit, offset, q)
        return model_response(
            m.SessionList(
                items=[m.SessionSummary.model_validate(r) for r in rows], limit=limit, offset=offset
            )
        )

    async def session(self, request: Request) -> Response:
        self.ctx.require_read(request)
        key = path_text(request, "key", "session")
        async with self.ctx.engine().connect() as conn:
            row = await card_queries.get_session(conn, key)
            if row is None:
                raise not_found(f"session {key!r}")
            files = await card_queries.session_files(conn, key, list(row.get("file_ids") or []))  # type: ignore[call-overload]
            eid = row.get("execution_id")
            outputs: list[dict[str, object]] = []
            phases: dict[str, object] | None = None
            if eid is not None:
                outputs = await queries.execution_outputs(conn, int(eid))  # type: ignore[call-overload]
                phases = await edit_queries.phases_step(conn, int(eid))  # type: ignore[call-overload]
        infos = await file_infos(self.ctx, files)
        qr = next((f for f in infos if f.id == row.get("qr_file_id")), None)
        summary = {k: row[k] for k in m.SessionSummary.model_fields}
        detail = m.SessionDetail.model_validate(
            {
                **summary,
                "footage": [f for f in infos if qr is None or f.id != qr.id],
                "qr_file": qr,
                "frame_url": qr.frame_url if qr is not None else None,
                "media": await self._media(outputs),
                "edit": session_edit(phases, file_names(files)),
            }
        )
        return model_response(detail)

    async def detectors(self, request: Request) -> Response:
        self.ctx.require_read(request)
        async with self.ctx.engine().connect() as conn:
            rows = await queries.list_detectors(conn)
        presence = await self._presence([str(r["id"]) for r in rows])
        gateway = self.ctx.runtime.gateway
        entries = list(gateway.progress.entries.values()) if gateway is not None else []
        items = []
        for r in rows:
            seen = presence.get(str(r["id"]))
            copies = [
                m.CopyProgress(
                    request_id=e.request_id, bytes_done=e.bytes_done, bytes_total=e.bytes_total
                )
                for e in entries
                if e.detector_id == r["id"]
            ]
            items.append(
                m.DetectorInfo(
                    **{
                        k: r[k]
                        for k in ("id", "name", "revoked", "last_seen_at", "current_card_id")
                    },  # type: ignore[arg-type]
                    online=seen is not None,
                    hub=_str(seen, "hub"),
                    remote=_str(seen, "remote"),
                    since=_str(seen, "since"),
                    copies=copies,
                )
            )
        return model_response(m.DetectorList(items=items))

    async def _presence(self, ids: list[str]) -> dict[str, dict[str, object]]:
        redis = self.ctx.runtime.redis
        if redis is None or not ids:
            return {}
        try:
            values = await redis.mget([self.ctx.names.detector_presence_key(i) for i in ids])
        except (RedisError, OSError) as exc:
            raise ApiError(503, "redis_down", f"detector presence not readable: {exc}") from exc
        found: dict[str, dict[str, object]] = {}
        for detector_id, value in zip(ids, values, strict=True):
            if value is None:
                continue
            try:
                parsed = json.loads(value)
            except ValueError:
                parsed = {}
            found[detector_id] = parsed if isinstance(parsed, dict) else {}
        return found

    async def counters(self, request: Request) -> Response:
        self.ctx.require_read(request)
        async with self.ctx.engine().connect() as conn:
            values = await queries.counters(conn)
        main = ("files_imported", "steps_failed", "steps_retried", "dead_letters")
        return model_response(
            m.Counters(
                **{k: values.get(k, 0) for k in main},
                queue=await self._queue_depth(),
                other={k: v for k, v in sorted(values.items()) if k not in main},
            )
        )

    async def _queue_depth(self) -> m.QueueDepth | None:
        # saq's Redis layout (saq/queue/redis.py): saq:<queue>:queued|active (lists),
        # saq:<queue>:incomplete (sorted set). Read directly: no saq import on the hub.
        redis = self.ctx.runtime.redis
        name = self.ctx.names.render_queue
        if redis is None:
            return None
        try:
            async with redis.pipeline(transaction=False) as pipe:
                pipe.llen(f"saq:{name}:queued")
                pipe.llen(f"saq:{name}:active")
                pipe.zcard(f"saq:{name}:incomplete")
                queued, active, incomplete = await pipe.execute()
        except (RedisError, OSError) as exc:
            logger.warning("render queue depth not readable: %s", exc)
            return None
        return m.QueueDepth(name=name, queued=queued, active=active, incomplete=incomplete)

    async def dead_letters(self, request: Request) -> Response:
        self.ctx.require_read(request)
        page = queries.Page(
            limit=int_param(request, "limit", 50, 1, MAX_LIMIT), cursor=cursor_param(request)
        )
        async with self.ctx.engine().connect() as conn:
            rows, cursor = await queries.list_dead_letters(conn, page)
        return model_response(
            m.DeadLetterList(
                items=[m.DeadLetterItem.model_validate(r) for r in rows],
                limit=page.limit,
                next_cursor=str(cursor) if cursor is not None else None,
            )
        )


def _card_id(request: Request) -> str:
    return path_text(request, "card_id", "card")


def _str(data: dict[str, object] | None, key: str) -> str | None:
    value = (data or {}).get(key)
    return str(value) if value is not None else None
