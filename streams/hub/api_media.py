"""Media for the dashboard: still frames of clips, finished videos and posters.

`GET /api/files/{id}/frame.jpg?t=` decodes one frame of an imported file (streams/hub/frames.py)
in a worker thread (never on the event loop) and answers a JPEG; results are kept in a small
in-memory LRU keyed by file, size, mtime and time. Files are served under `/media/output/...`
(published videos) and `/media/share/...` (copied footage, render staging) from exactly those
two roots: paths are resolved (symlinks included) and must stay inside their root. The links the
API hands out to these files are built in streams/hub/media_links.py.
"""

from __future__ import annotations

import logging

from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import BaseRoute, Route

from storage import status_cards as card_queries
from streams.hub.api_support import ApiContext, ApiError, json_errors, not_found, path_id
from streams.hub.frames import FrameCache, FrameError
from streams.hub.media_links import MediaRoots, confined, is_served_file, locate

logger = logging.getLogger(__name__)

MEDIA_TYPES = {
    ".mp4": "video/mp4",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".mov": "video/quicktime",
}


def media_routes(ctx: ApiContext) -> list[BaseRoute]:
    cache = FrameCache()

    @json_errors
    async def frame(request: Request) -> Response:
        ctx.require_read(request)
        file_id = path_id(request, "file_id", "file")
        raw_t = request.query_params.get("t")
        at: float | None = None
        if raw_t is not None:
            try:
                at = float(raw_t)
            except ValueError:
                raise ApiError(422, "invalid", "t must be a number of seconds") from None
            if not 0 <= at <= 86_400:
                raise ApiError(422, "invalid", "t must be between 0 and 86400")
        async with ctx.engine().connect() as conn:
            row = await card_queries.get_file(conn, file_id)
        if row is None:
            raise not_found(f"file {file_id}")
        stored = row.get("stored_path")
        found = locate(MediaRoots.of(ctx.settings), str(stored)) if stored else None
        if found is None:
            raise not_found(f"imported copy of file {file_id}")
        if at is None:
            at = float(row.get("qr_frame_s") or 0.0)  # type: ignore[arg-type]
        try:
            jpeg = await cache.get(found.path, at)
        except FrameError as exc:
            raise ApiError(422, "undecodable", f"file {file_id}: {exc}") from exc
        return Response(jpeg, media_type="image/jpeg", headers={"Cache-Control": "max-age=3600"})

    @json_errors
    async def media(request: Request) -> Response:
        ctx.require_read(request)  # a dashboard login's cookie: <img>/<video> send no header
        root = MediaRoots.of(ctx.settings).root(str(request.path_params["root"]))
        full = confined(root, str(request.path_params["path"])) if root else None
        if full is None or not is_served_file(full):
            raise not_found("media file")
        return FileResponse(full, media_type=MEDIA_TYPES.get(full.suffix.lower()))

    return [
        Route("/api/files/{file_id}/frame.jpg", frame, methods=["GET"]),
        Route("/media/{root}/{path:path}", media, methods=["GET", "HEAD"]),
    ]
