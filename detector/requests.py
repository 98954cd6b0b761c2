"""The detector's copy side: copy requests queued, copied in threads, and answered exactly once.

:class:`CopyRequests` is what ``detector.client.Detector`` hands every ``copy_request`` to; the
client keeps the connection and the cards. Requests wait in a priority queue (lower first: QR
candidates are 0) and run in a thread, ``parallel_copies`` workers at a time, with throttled
``copy_progress`` and one ``copy_result``. A request already queued, running or waiting is
ignored. Copies keep running while the hub is away; their results wait in an outbox and
:meth:`CopyRequests.flush` sends them after the next welcome.

Two waits keep what is only a passing state from counting as a failure:

* a request for a card this detector has not (yet) scanned — the hub re-sends pending requests
  the moment a restarted detector connects, before its first scan — waits up to
  ``card_wait_seconds`` for the card, then fails "card not present". A card this detector saw
  removed, or ``--once`` (cards are scanned before connecting), fails at once;
* a copy that found the share full (``no_space``; its partial is already removed) frees its
  worker and is tried again after a backoff (``space_retry_min`` doubling to
  ``space_retry_max``) for up to ``space_wait_seconds``; only then is it answered, as a failure of
  kind ``no_space``, which the backend records as waiting for space, not as a failed copy.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import re
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import cast

from detector import protocol
from detector.cards import Volume
from detector.copy import HASH_ALGO, CopyError, copy_file
from detector.paths import PathRefused, card_source
from detector.protocol import CopyProgress, CopyRequest, CopyResult, FailureKind, SkippedFile
from detector.scan import ScannedFile
from detector.settings import DetectorSettings
from detector.ui import CopyView

logger = logging.getLogger(__name__)

#: Files at least this big are copied one at a time (see CopyRequests.__init__).
LARGE_FILE = 64 * 1024 * 1024
REQUEST_SETTLE = 0.05
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")  # as in protocol.CopyResult

Send = Callable[[protocol.BaseModel], Awaitable[bool]]


@dataclass
class Card:
    """A card present on this station: where it is mounted and what was on it at insertion."""

    volume: Volume
    files: list[ScannedFile]
    skipped: list[SkippedFile] = field(default_factory=list)  # not listed, with the reason
    free_bytes: int | None = None  # shutil.disk_usage of the mount root at insertion
    capacity_bytes: int | None = None


@dataclass(order=True)
class _Queued:
    priority: int
    seq: int
    request: CopyRequest = field(compare=False)


def failed_result(request_id: str, reason: str, failure: FailureKind | None = None) -> CopyResult:
    return CopyResult(
        type="copy_result",
        request_id=request_id,
        status="failed",
        reason=reason[: protocol.MAX_REASON_CHARS],
        failure=failure,
    )


def space_retry_delay(attempt: int, low: float, high: float) -> float:
    """Seconds before the ``attempt``-th retry (0-based) of a copy that found the share full:
    ``low`` doubling up to ``high`` (pure)."""
    return min(high, low * (2 ** min(attempt, 30)))


@dataclass
class _SpaceWait:
    """A request waiting for space on the share: its retries so far, since when."""

    attempts: int
    since: float


def refused_request_id(raw: str | bytes) -> str | None:
    """The request id of an invalid copy_request frame, if it has a usable one (pure)."""
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(data, dict) or data.get("type") != "copy_request":
        return None
    rid = data.get("request_id")
    if isinstance(rid, str) and _REQUEST_ID.match(rid):
        return rid
    return None


class CopyRequests:
    """The queue, the workers, progress and result delivery of one detector.

    ``cards`` is the client's live mapping (read, never changed here); ``send`` sends one message
    if connected (False otherwise); ``touch`` records activity for ``--once`` idling.
    """

    def __init__(
        self,
        settings: DetectorSettings,
        view: CopyView,
        cards: Mapping[str, Card],
        send: Send,
        touch: Callable[[], None],
    ) -> None:
        self.settings = settings
        self.view = view
        self.cards = cards
        self._send = send
        self._touch = touch
        self.queue: asyncio.PriorityQueue[_Queued] = asyncio.PriorityQueue()
        # queued, running, waiting for its card or for space: a re-sent request is ignored
        self.active: set[str] = set()
        #: the detector id the hub welcomed us as: it names our temp files on the share
        self.station = ""
        #: a hub too old for CopyResult.failure: results go without it (the reason stays)
        self.plain_results = False
        self.awaiting_card: dict[str, list[CopyRequest]] = {}
        self.removed: set[str] = set()  # cards this detector saw removed
        self.space_waits: dict[str, _SpaceWait] = {}
        self.outbox: dict[str, CopyResult] = {}
        self.running = 0
        self.cancel = threading.Event()
        self._seq = itertools.count()
        self._background: set[asyncio.Future[object]] = set()
        # One large file streams at a time (a card reader is fastest read sequentially); the
        # other workers take small files beside it — QR clips, whose fsync latency dominates.
        self._large = asyncio.Semaphore(1)

    def busy(self) -> bool:
        """Whether anything is queued, copying, waiting, unsent or still being sent."""
        return bool(
            self.running
            or not self.queue.empty()
            or self.outbox
            or self._background
            or self.awaiting_card
        )

    # --- results ---------------------------------------------------------------------------

    def _spawn(self, coro: Awaitable[object]) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def deliver(self, result: CopyResult) -> None:
        if self.plain_results and result.failure is not None:
            result = result.model_copy(update={"failure": None})
        self.outbox[result.request_id] = result
        if await self._send(result):
            self.outbox.pop(result.request_id, None)

    async def flush(self) -> None:
        """Send the results that could not be sent while the hub was away."""
        for result in list(self.outbox.values()):
            await self.deliver(result)

    def fail_soon(self, request_id: str, reason: str, failure: FailureKind | None = None) -> None:
        """Answer a request that will not run, without waiting for the send."""
        self._spawn(self.deliver(failed_result(request_id, reason, failure)))

    # --- the queue -------------------------------------------------------------------------

    def _card_wait(self) -> float:
        return 0.0 if self.settings.once else self.settings.card_wait_seconds

    def enqueue(self, req: CopyRequest) -> None:
        if req.request_id in self.active:
            logger.debug("request %s already queued, running or waiting", req.request_id)
            return
        if req.card_id not in self.cards:
            wait = self._card_wait()
            if wait <= 0 or req.card_id in self.removed:
                logger.warning("request %s: card %s not present", req.request_id, req.card_id)
                self.fail_soon(req.request_id, "card not present", "source")
                return
            logger.info(
                "request %s: card %s not scanned yet; waiting up to %.0f s for it",
                req.request_id,
                req.card_id,
                wait,
            )
            self.active.add(req.request_id)
            self.awaiting_card.setdefault(req.card_id, []).append(req)
            self._spawn(self._card_deadline(req, wait))
            return
        self._put(req)

    def card_present(self, card_id: str) -> None:
        """The card was scanned: the requests that waited for it are queued now."""
        self.removed.discard(card_id)
        for req in self.awaiting_card.pop(card_id, []):
            logger.info("request %s: card %s is here now", req.request_id, card_id)
            self._put(req)

    def card_removed(self, card_id: str) -> None:
        self.removed.add(card_id)

    async def _card_deadline(self, req: CopyRequest, wait: float) -> None:
        await asyncio.sleep(wait)
        waiting = self.awaiting_card.get(req.card_id, [])
        if req not in waiting:
            return  # the card came
        waiting.remove(req)
        if not waiting:
            self.awaiting_card.pop(req.card_id, None)
        self.active.discard(req.request_id)
        logger.warning(
            "request %s: card %s did not appear within %.0f s", req.request_id, req.card_id, wait
        )
        self.view.finished(req.request_id, False, "card not present")
        await self.deliver(failed_result(req.request_id, "card not present", "source"))

    def _put(self, req: CopyRequest) -> None:
        self.active.add(req.request_id)
        self.queue.put_nowait(_Queued(req.priority, next(self._seq), req))
        self.view.queued(req.request_id, req.card_id, req.path.rsplit("/", 1)[-1], req.size)
        logger.info("request %s queued: %s (priority %d)", req.request_id, req.path, req.priority)

    def _take_small(self) -> _Queued | None:
        """The most urgent queued request for a small file, if any (the rest stay queued)."""
        held: list[_Queued] = []
        found = None
        while not self.queue.empty():
            item = self.queue.get_nowait()
            if item.request.size < LARGE_FILE:
                found = item
                break
            held.append(item)
        for item in held:
            self.queue.put_nowait(item)
        return found

    async def worker(self) -> None:
        """Take requests, highest priority first, until cancelled (run several side by side).

        A failure around one request is logged with its id and the worker takes the next one.
        """
        while True:
            try:
                await self._work_one()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("copy worker: a request failed outside its copy; going on")

    async def _work_one(self) -> None:
        """Take the next request, copy it, deliver its result."""
        idle = self.queue.empty()
        item = await self.queue.get()
        if idle:
            # The first request after a pause starts a burst that arrives frame by frame:
            # give it a moment so that the QR candidates (priority 0) in it overtake the
            # footage requested just before them. Within a burst, take the next at once.
            await asyncio.sleep(REQUEST_SETTLE)
            self.queue.put_nowait(item)
            item = self.queue.get_nowait()
        if item.request.size >= LARGE_FILE and self._large.locked():
            small = self._take_small()
            if small is not None:  # the large one waits its turn; a small one goes now
                self.queue.put_nowait(item)
                item = small
        req = item.request
        self.running += 1
        try:
            if req.size >= LARGE_FILE:
                async with self._large:
                    result = await self._copy(req)
            else:
                result = await self._copy(req)
        except Exception as exc:  # e.g. the view failed: answer the request all the same
            logger.exception("request %s failed", req.request_id)
            result = failed_result(
                req.request_id, f"internal error: {type(exc).__name__}", "internal"
            )
        finally:
            self.running -= 1
            self._touch()
        if result.failure == "no_space" and self._wait_for_space(req, result.reason):
            return  # still active: it runs again after the backoff
        self.active.discard(req.request_id)
        if self.space_waits.pop(req.request_id, None) is not None and result.failure != "no_space":
            logger.info("request %s: space on the share again", req.request_id)
        await self.deliver(result)

    # --- a full share ----------------------------------------------------------------------

    def _wait_for_space(self, req: CopyRequest, reason: str) -> bool:
        """Schedule another try of a copy that found the share full; False: out of patience."""
        s = self.settings
        now = time.monotonic()
        wait = self.space_waits.get(req.request_id)
        if wait is None:
            wait = self.space_waits[req.request_id] = _SpaceWait(0, now)
            logger.warning(
                "request %s: the share is full (%s); retrying for up to %.0f s",
                req.request_id,
                reason,
                s.space_wait_seconds,
            )
        delay = space_retry_delay(wait.attempts, s.space_retry_min, s.space_retry_max)
        if self.cancel.is_set() or now + delay - wait.since > s.space_wait_seconds:
            logger.warning(
                "request %s: the share stayed full for %.0f s; reporting it",
                req.request_id,
                now - wait.since,
            )
            return False
        wait.attempts += 1
        self.view.finished(req.request_id, False, f"waiting for space (retry in {delay:.0f} s)")
        self._spawn(self._retry_after(req, delay))
        return True

    async def _retry_after(self, req: CopyRequest, delay: float) -> None:
        await asyncio.sleep(delay)
        if self.cancel.is_set():
            return
        self.queue.put_nowait(_Queued(req.priority, next(self._seq), req))
        self.view.queued(req.request_id, req.card_id, req.path.rsplit("/", 1)[-1], req.size)

    # --- one copy --------------------------------------------------------------------------

    def _progress_callback(self, req: CopyRequest) -> Callable[[int, int], None]:
        loop = asyncio.get_running_loop()
        interval = self.settings.progress_interval
        last = [0.0]

        def on_progress(done: int, total: int) -> None:  # runs in the copy thread
            now = time.monotonic()
            if now - last[0] < interval and done < total:
                return
            last[0] = now
            loop.call_soon_threadsafe(self._on_progress, req.request_id, done, total)

        return on_progress

    def _on_progress(self, request_id: str, done: int, total: int) -> None:
        self.view.advanced(request_id, done)
        self._spawn(
            self._send(
                CopyProgress(
                    type="copy_progress",
                    request_id=request_id,
                    bytes_done=done,
                    bytes_total=total,
                )
            )
        )

    async def _copy(self, req: CopyRequest) -> CopyResult:
        card = self.cards.get(req.card_id)
        if card is None:
            self.view.finished(req.request_id, False, "card not present")
            return failed_result(req.request_id, "card not present", "source")
        self.view.started(req.request_id)
        try:
            src = card_source(card.volume.root, req.path)
            outcome = await asyncio.to_thread(
                copy_file,
                src,
                self.settings.share_root,
                req.destination,
                req.size,
                verify_readback=self.settings.verify_readback,
                progress=self._progress_callback(req),
                cancel=self.cancel,
                station=self.station,
            )
        except PathRefused as exc:
            reason, kind = f"source path refused: {exc.reason}", "refused"
        except CopyError as exc:
            reason, kind = exc.reason, exc.kind
        except Exception as exc:  # a bug must fail one request, not the detector
            logger.exception("request %s: unexpected error", req.request_id)
            reason, kind = f"internal error: {type(exc).__name__}: {exc}", "internal"
        else:
            detail = "already present" if outcome.skipped else "copied"
            self.view.finished(req.request_id, True, f"{detail} -> {outcome.destination}")
            return CopyResult(
                type="copy_result",
                request_id=req.request_id,
                status="copied",
                destination=outcome.destination,
                size=outcome.size,
                hash=outcome.hash,
                hash_algo=HASH_ALGO,
            )
        logger.warning("request %s failed: %s", req.request_id, reason)
        self.view.finished(req.request_id, False, reason)
        return failed_result(req.request_id, reason, cast(FailureKind, kind))
