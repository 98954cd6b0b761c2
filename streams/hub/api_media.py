"""Media for the dashboard: still frames of clips, finished videos and posters.

`GET /api/files/{id}/frame.jpg?t=` decodes one frame of an imported file with PyAV in a worker
thread (never on the event loop) and answers a JPEG; results are kept in a small in-memory LRU
keyed by file, size, mtime and time. Files are served under `/media/output/...` (published
videos) and `/media/share/...` (copied footage) from exactly those two roots: paths are resolved
(symlinks included) and must stay inside their root.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from pathlib import Path
from urllib.parse import quote

import av
import cv2
import numpy as np
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import BaseRoute, Route

from agents.media.frames import MediaOpenError, open_video
from storage import status as queries
from streams.hub.api_support import ApiContext, ApiError, json_errors, not_found, path_id

logger = logging.getLogger(__name__)

FRAME_MAX_WIDTH = 960
FRAME_CACHE = 64
MEDIA_TYPES = {
    ".mp4": "video/mp4",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".mov": "video/quicktime",
}


class FrameError(Exception):
    """No frame could be taken from a file (permanent for these bytes)."""


def confined(root: Path, candidate: str | Path) -> Path | None:
    """`candidate` (absolute, or relative to `root`) resolved, if it lies inside `root`."""
    try:
        base = root.resolve()
        path = Path(candidate)
        full = (path if path.is_absolute() else base / path).resolve()
    except (ValueError, OSError):  # NUL bytes, loops: not a path we serve
        return None
    return full if full.is_relative_to(base) and full != base else None


def media_url(ctx: ApiContext, path: str) -> str | None:
    """Where the hub serves a file, or None when it is outside both media roots."""
    for prefix, root in (("output", ctx.settings.output_dir), ("share", ctx.settings.share_root)):
        full = confined(root, path)
        if full is not None:
            rel = full.relative_to(root.resolve()).as_posix()
            return f"/media/{prefix}/{quote(rel)}"
    return None


def extract_frame(path: Path, at: float, max_width: int = FRAME_MAX_WIDTH) -> bytes:
    """A JPEG of the first frame at or after `at` seconds (the last one if the clip is shorter)."""
    try:
        with open_video(path) as handle:
            stream = handle.stream
            if at > 0 and stream.time_base is not None:
                handle.container.seek(int(at / stream.time_base), stream=stream, backward=True)
            chosen = None
            for frame in handle.container.decode(stream):
                chosen = frame
                if frame.time is None or frame.time >= at:
                    break
    except MediaOpenError as exc:
        raise FrameError(exc.reason) from exc
    except (av.FFmpegError, OSError) as exc:
        raise FrameError(f"cannot decode: {exc}") from exc
    if chosen is None:
        raise FrameError("no video frames")
    image: np.ndarray = chosen.to_ndarray(format="bgr24")
    h, w = image.shape[:2]
    if w > max_width:
        image = cv2.resize(
            image, (max_width, max(1, round(h * max_width / w))), interpolation=cv2.INTER_AREA
        )
    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 85])
    if not ok:
        raise FrameError("JPEG encoding failed")
    return encoded.tobytes()


class FrameCache:
    """A small LRU of JPEG stills (clips do not change once imported)."""

    def __init__(self, size: int = FRAME_CACHE) -> None:
        self.size = size
        self.entries: OrderedDict[tuple[str, int, int, float], bytes] = OrderedDict()
        self.misses = 0

    async def get(self, path: Path, at: float) -> bytes:
        st = await asyncio.to_thread(path.stat)
        key = (str(path), st.st_size, st.st_mtime_ns, round(at, 2))
        if key in self.entries:
            self.entries.move_to_end(key)
            return self.entries[key]
        self.misses += 1
        jpeg = await asyncio.to_thread(extract_frame, path, at)
        self.entries[key] = jpeg
        while len(self.entries) > self.size:
            self.entries.popitem(last=False)
        return jpeg


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
            row = await queries.get_file(conn, file_id)
        if row is None:
            raise not_found(f"file {file_id}")
        stored = row.get("stored_path")
        full = confined(ctx.settings.share_root, str(stored)) if stored else None
        if full is None or not full.is_file():
            raise not_found(f"imported copy of file {file_id}")
        if at is None:
            at = float(row.get("qr_frame_s") or 0.0)  # type: ignore[arg-type]
        try:
            jpeg = await cache.get(full, at)
        except FrameError as exc:
            raise ApiError(422, "undecodable", f"file {file_id}: {exc}") from exc
        return Response(jpeg, media_type="image/jpeg", headers={"Cache-Control": "max-age=3600"})

    async def media(request: Request) -> Response:
        if not ctx.settings.reads_open and not ctx.token_ok(request, allow_query=True):
            return Response("unauthorized", 401)
        roots = {"output": ctx.settings.output_dir, "share": ctx.settings.share_root}
        root = roots.get(str(request.path_params["root"]))
        full = confined(root, str(request.path_params["path"])) if root else None
        if full is None or not full.is_file():
            return Response("not found", 404)
        return FileResponse(full, media_type=MEDIA_TYPES.get(full.suffix.lower()))

    return [
        Route("/api/files/{file_id}/frame.jpg", frame, methods=["GET"]),
        Route("/media/{root}/{path:path}", media, methods=["GET", "HEAD"]),
    ]
