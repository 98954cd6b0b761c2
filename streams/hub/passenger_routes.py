"""The passenger page: ``GET /p/<token>`` and its media, public by design (the token is the key).

    /p/<token>                 the page (streams/hub/passenger_page.py)
    /p/<token>/video[/<n>]     the n-th video (1 when left out); ?download=1: as an attachment
    /p/<token>/poster[/<n>]    its poster
    /p/<token>/photos/<n>      the n-th photo
    /p/<token>/photos.zip      every photo, one ZIP streamed as it is written
    /p/<token>/logo            the dropzone's logo (SKYREEL_BRANDING_LOGO)

Every request opens the link again (signature, expiry, revocation: streams/hub/passenger_links.py)
and looks the booking's files up (streams/hub/passenger_view.py), so a revoked link stops
serving at once and no path is ever taken from the address. Files are answered by Starlette's
FileResponse, as the dashboard's /media routes are: Range requests get 206 with Content-Range
(a phone seeks), a range past the end 416, and ETag/Last-Modified come from the file.

Every refusal is a plain HTML page with its status, never a 500: 404 (not a valid link), 410
(expired; files no longer kept), 403 (revoked), 429 (too many invalid links from this address:
streams/hub/throttle.py), 503 (the hub or its database not answering). Each is logged once per
link and reason an hour, with the link id and never the token.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy.exc import SQLAlchemyError
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from storage import passenger_links as link_queries
from storage.passenger_links import LinkRow
from streams.hub.api_support import HubRuntime
from streams.hub.media_links import is_served_file
from streams.hub.passenger_links import LinkRefused, LinkSigner, Refusal, open_link, signer_for
from streams.hub.passenger_page import (
    PAGE_HEADERS,
    SECURITY_HEADERS,
    Brand,
    Message,
    render_message,
    render_page,
    render_preparing,
)
from streams.hub.passenger_view import PageState, PageView, build_view
from streams.hub.passenger_zip import zip_chunks
from streams.hub.throttle import FailureThrottle, wait_words
from streams.settings import Settings

logger = logging.getLogger(__name__)

LOG_EVERY_S = 3600.0
_LOGGED_MAX = 10_000
MEDIA_HEADERS = {**SECURITY_HEADERS, "Cache-Control": "private, no-cache"}
MEDIA_TYPES = {
    ".mp4": "video/mp4",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".png": "image/png",
}


class PageRefused(Exception):
    """What to answer instead of the page or file."""

    def __init__(self, status: int, message: Message, headers: dict[str, str] | None = None):
        self.status = status
        self.message = message
        self.headers = headers or {}
        super().__init__(message.title)


def _refused_page(refusal: Refusal, dropzone: str) -> tuple[int, Message]:
    ask = f"Ask {dropzone} for a new link."
    if refusal is Refusal.EXPIRED:
        return 410, Message("expired", "This link has expired", f"Links stay valid a while. {ask}")
    if refusal is Refusal.REVOKED:
        return 403, Message("revoked", "This link was withdrawn", f"It no longer works. {ask}")
    return 404, Message(
        "invalid",
        "This link is not valid",
        f"Check that the whole link was copied from your message. {ask}",
    )


@dataclass
class _Opened:
    link: LinkRow
    view: PageView
    base: str


class PassengerPages:
    """The /p/ routes of one hub replica, with its failed-link throttle."""

    def __init__(self, settings: Settings, runtime: HubRuntime) -> None:
        self.settings = settings
        self.runtime = runtime
        self._signer: LinkSigner | None = None
        window = settings.hub_auth_failure_window_s
        self.throttle = FailureThrottle(settings.hub_auth_failures_per_peer, window, window)
        self._logged: OrderedDict[tuple[object, ...], float] = OrderedDict()
        logo = settings.branding_logo
        self.logo_path = logo if isinstance(logo, Path) and is_served_file(logo) else None
        self.brand = Brand(settings.dropzone_name, self.logo_path is not None)

    @property
    def signer(self) -> LinkSigner:
        if self._signer is None:  # reads (or makes) the secret file on first use, not at import
            self._signer = signer_for(self.settings)
        return self._signer

    # --- opening a link ---------------------------------------------------------------------

    def _log_once(self, key: tuple[object, ...], line: str, *args: object) -> None:
        now = time.monotonic()
        last = self._logged.pop(key, None)
        self._logged[key] = last if last is not None and now - last < LOG_EVERY_S else now
        if last is None or now - last >= LOG_EVERY_S:
            logger.info(line, *args)
        while len(self._logged) > _LOGGED_MAX:
            self._logged.popitem(last=False)

    def _refuse(self, exc: LinkRefused, peer: str) -> PageRefused:
        if exc.refusal is Refusal.INVALID:
            burst = self.throttle.failed(peer, time.monotonic())
            if burst is not None:
                logger.warning(
                    "passenger links: %d invalid links from %s within %.0f s; refusing it for "
                    "%.0f s",
                    burst.failures,
                    peer,
                    burst.window_s,
                    burst.block_s,
                )
        key = (exc.link_id,) if exc.link_id is not None else ("peer", peer)
        self._log_once(
            (*key, exc.refusal),
            "passenger link %s refused (%s) for %s: %s",
            exc.link_id if exc.link_id is not None else "?",
            exc.refusal,
            peer,
            exc.detail,
        )
        status, message = _refused_page(exc.refusal, self.settings.dropzone_name)
        return PageRefused(status, message)

    async def _open(self, request: Request) -> _Opened:
        peer = request.client.host if request.client else "unknown"
        wait = self.throttle.retry_after(peer, time.monotonic())
        if wait is not None:
            raise PageRefused(
                429,
                Message(
                    "throttled", "Too many attempts", f"Too many invalid links; {wait_words(wait)}."
                ),
                {"Retry-After": str(max(1, int(wait) + 1))},
            )
        engine = self.runtime.engine
        if engine is None:
            raise _unavailable()
        token = str(request.path_params["token"])
        try:
            claim = self.signer.verify(token, datetime.now(UTC))  # no database for a bad one
            async with engine.connect() as conn:  # one connection: the link, then its files
                link = await open_link(conn, claim)
                sessions = await link_queries.booking_deliverables(conn, link.booking_id)
        except LinkRefused as exc:
            raise self._refuse(exc, peer) from None
        view = await asyncio.to_thread(
            build_view, sessions, self.settings.output_dir, link.booking_id
        )
        if view.state is PageState.GONE:
            self._log_once(
                (link.id, "gone"),
                "passenger link %d: booking %s has no files left to show",
                link.id,
                link.booking_id,
            )
            raise PageRefused(
                410,
                Message(
                    "gone",
                    "These files are no longer kept",
                    f"The videos and photos of this jump have been removed. Ask "
                    f"{self.settings.dropzone_name} whether they still have a copy.",
                ),
            )
        return _Opened(link, view, f"/p/{token}")

    def _answer(self, exc: PageRefused) -> Response:
        html = render_message(exc.message, self.brand)
        return HTMLResponse(html, exc.status, headers={**PAGE_HEADERS, **exc.headers})

    def _guarded(
        self, handler: Callable[[Request], Awaitable[Response]]
    ) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            try:
                return await handler(request)
            except PageRefused as exc:
                return self._answer(exc)
            except (SQLAlchemyError, OSError, ConnectionError) as exc:
                logger.warning("passenger page: database or files not answering: %s", exc)
                return self._answer(_unavailable())
            except Exception:
                logger.exception("passenger page %s failed", request.url.path)
                return self._answer(_unavailable())

        return endpoint

    # --- endpoints ----------------------------------------------------------------------------

    async def page(self, request: Request) -> Response:
        opened = await self._open(request)
        if opened.view.state is PageState.PREPARING:
            html = render_preparing(opened.view, self.brand, opened.base)
            return HTMLResponse(html, headers={**PAGE_HEADERS, "Retry-After": "60"})
        html = render_page(opened.view, self.brand, opened.base)
        return HTMLResponse(html, headers=PAGE_HEADERS)

    @staticmethod
    def _nth(request: Request, count: int) -> int:
        raw = str(request.path_params.get("n", "1"))
        n = int(raw) if raw.isdigit() and len(raw) < 6 else 0
        if not 1 <= n <= count:
            raise PageRefused(404, Message("missing", "Not found", "There is no such file here."))
        return n - 1

    async def _file(self, request: Request, path: Path, download: str | None = None) -> Response:
        try:  # stat here: a file gone since the lookup is a 404 page, not FileResponse's error
            found = await asyncio.to_thread(path.stat)
        except OSError:
            raise PageRefused(404, Message("missing", "Not found", "This file is gone.")) from None
        media_type = MEDIA_TYPES.get(path.suffix.lower(), "application/octet-stream")
        filename = (
            download if download is not None and request.query_params.get("download") else None
        )
        return FileResponse(
            path, media_type=media_type, headers=MEDIA_HEADERS, filename=filename, stat_result=found
        )

    async def video(self, request: Request) -> Response:
        opened = await self._open(request)
        video = opened.view.videos[self._nth(request, len(opened.view.videos))]
        return await self._file(request, video.video, video.download_name)

    async def poster(self, request: Request) -> Response:
        opened = await self._open(request)
        video = opened.view.videos[self._nth(request, len(opened.view.videos))]
        if video.poster is None:
            raise PageRefused(404, Message("missing", "Not found", "This video has no poster."))
        return await self._file(request, video.poster)

    async def photo(self, request: Request) -> Response:
        opened = await self._open(request)
        photo = opened.view.photos[self._nth(request, len(opened.view.photos))]
        return await self._file(request, photo.path, photo.download_name)

    async def photos_zip(self, request: Request) -> Response:
        opened = await self._open(request)
        photos = opened.view.photos
        if not photos:
            raise PageRefused(404, Message("missing", "No photos", "There are no photos here."))
        stem = photos[0].download_name.rsplit("-", 1)[0]
        headers = {
            **MEDIA_HEADERS,
            "Content-Disposition": f'attachment; filename="{stem}-photos.zip"',
        }
        if request.method == "HEAD":  # no archive written for nobody to read
            return Response(media_type="application/zip", headers=headers)
        logger.info(
            "passenger link %d: photos ZIP (%d photos) for %s",
            opened.link.id,
            len(photos),
            request.client.host if request.client else "unknown",
        )
        return StreamingResponse(
            zip_chunks([(p.path, p.download_name) for p in photos]),
            media_type="application/zip",
            headers=headers,
        )

    async def logo(self, request: Request) -> Response:
        await self._open(request)
        if self.logo_path is None:
            raise PageRefused(404, Message("missing", "Not found", "No logo is configured."))
        return await self._file(request, self.logo_path)

    def routes(self) -> list[BaseRoute]:
        both = ["GET", "HEAD"]
        g = self._guarded
        return [
            Route("/p/{token}", g(self.page), methods=both),
            Route("/p/{token}/video", g(self.video), methods=both),
            Route("/p/{token}/video/{n}", g(self.video), methods=both),
            Route("/p/{token}/poster", g(self.poster), methods=both),
            Route("/p/{token}/poster/{n}", g(self.poster), methods=both),
            Route("/p/{token}/photos.zip", g(self.photos_zip), methods=both),
            Route("/p/{token}/photos/{n}", g(self.photo), methods=both),
            Route("/p/{token}/logo", g(self.logo), methods=both),
        ]


def _unavailable() -> PageRefused:
    return PageRefused(
        503,
        Message(
            "unavailable",
            "Please try again in a minute",
            "The video service is starting or busy right now. Reload this page in a minute.",
        ),
        {"Retry-After": "30"},
    )
