"""The detector's WebSocket client: cards in, copy requests answered, through hub restarts.

:func:`run_detector` is the whole station client as one coroutine (``cli.main`` calls it; tests
drive it against a real socket with a ``stop`` event). It runs, side by side:

* a card watcher (``cards.watch_cards``): on insertion the card is scanned (metadata only, in a
  thread) and ``card_inserted`` + ``file_list`` are sent; on removal ``card_removed``;
* the connection loop: connect with ``Authorization: Bearer <token>``, wait for ``welcome``,
  send any results the hub has not acknowledged receiving, then every present card's list, then
  read ``copy_request``s. When the hub goes away it reconnects with exponential backoff and full
  jitter and sends everything again (the hub re-sends pending requests, so both sides converge).
  A 1008 close or a 401/403 handshake means the token was refused: it stops with exit code 2
  rather than hammering the hub forever. 4000 (this detector connected again elsewhere) -> 3;
* copy workers: requests wait in a priority queue (lower first: QR candidates are 0) and run
  in a thread, one or two at a time, with throttled ``copy_progress`` and one ``copy_result``.
  A request already queued or running is ignored; one for a card that is gone fails with
  "card not present". Copies keep running while the hub is away; their results wait in an
  outbox and are sent after the next welcome.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import random
import re
import threading
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI

from detector import protocol
from detector.cards import CardEvent, Volume, VolumeSource, scan_all, watch_cards
from detector.copy import HASH_ALGO, CopyError, copy_file
from detector.paths import PathRefused, card_source
from detector.protocol import (
    CardInserted,
    CardRemoved,
    CopyProgress,
    CopyRequest,
    CopyResult,
    ErrorMessage,
    FileEntry,
    FileList,
    Welcome,
)
from detector.scan import ScannedFile, scan_card
from detector.settings import DetectorSettings
from detector.ui import CopyView, PlainView

logger = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_AUTH_REFUSED = 2
EXIT_REPLACED = 3
WELCOME_TIMEOUT = 10.0
REQUEST_SETTLE = 0.05
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")  # as in protocol.CopyResult


class DetectorStopped(Exception):
    """The hub told this detector to stop (``exit_code`` says why)."""

    def __init__(self, reason: str, exit_code: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.exit_code = exit_code


@dataclass
class Card:
    volume: Volume
    files: list[ScannedFile]


@dataclass(order=True)
class _Queued:
    priority: int
    seq: int
    request: CopyRequest = field(compare=False)


def backoff_delay(attempt: int, low: float, high: float, rng: random.Random) -> float:
    """Exponential backoff with full jitter: uniform in [low, min(high, low * 2**attempt)]."""
    ceiling = min(high, low * (2 ** min(attempt, 30)))
    return rng.uniform(low, max(low, ceiling))


def close_verdict(code: int | None, reason: str) -> DetectorStopped | None:
    """Whether a close code means "stop" rather than "reconnect" (pure)."""
    if code == protocol.CLOSE_POLICY:
        return DetectorStopped(
            f"the hub refused this detector's token (close 1008: {reason or 'no reason'}); "
            "check --token / SKYREEL_DETECTOR_TOKEN",
            EXIT_AUTH_REFUSED,
        )
    if code == protocol.CLOSE_REPLACED:
        return DetectorStopped(
            "another detector connected with the same token; this one stops", EXIT_REPLACED
        )
    return None


def failed_result(request_id: str, reason: str) -> CopyResult:
    return CopyResult(
        type="copy_result",
        request_id=request_id,
        status="failed",
        reason=reason[: protocol.MAX_REASON_CHARS],
    )


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


def file_entries(files: Sequence[ScannedFile]) -> list[FileEntry]:
    return [FileEntry(path=f.path, size=f.size, mtime=f.mtime, kind=f.kind) for f in files]


class Detector:
    def __init__(
        self,
        settings: DetectorSettings,
        sources: Sequence[VolumeSource],
        stop: asyncio.Event,
        view: CopyView,
    ) -> None:
        self.settings = settings
        self.sources = sources
        self.stop = stop
        self.view = view
        self.cards: dict[str, Card] = {}
        self.queue: asyncio.PriorityQueue[_Queued] = asyncio.PriorityQueue()
        self.active: set[str] = set()
        self.outbox: dict[str, CopyResult] = {}
        self.ws: ClientConnection | None = None
        self.max_files = protocol.MAX_FILES_PER_LIST
        self.welcomed = False
        self.running = 0
        self.cancel = threading.Event()
        self.last_activity = time.monotonic()
        self._seq = itertools.count()
        self._send_lock = asyncio.Lock()
        self._background: set[asyncio.Future[object]] = set()
        self._rng = random.Random()

    # --- sending ---------------------------------------------------------------------------

    async def _send(self, message: protocol.BaseModel) -> bool:
        ws = self.ws
        if ws is None:
            return False
        try:
            async with self._send_lock:
                await ws.send(protocol.dump(message))
        except ConnectionClosed:
            return False
        return True

    def _spawn(self, coro: Coroutine[object, object, object]) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _send_card(self, card: Card) -> None:
        cid = card.volume.card_id
        label = card.volume.label[:200]
        if not await self._send(CardInserted(type="card_inserted", card_id=cid, label=label)):
            return
        entries = file_entries(card.files)
        # A card beyond the hub's per-list limit goes in several lists (the hub's limit wins).
        for start in range(0, max(len(entries), 1), self.max_files):
            chunk = entries[start : start + self.max_files]
            if not await self._send(FileList(type="file_list", card_id=cid, files=chunk)):
                return
        logger.info("sent card %s: %d files", cid, len(entries))

    async def _deliver(self, result: CopyResult) -> None:
        self.outbox[result.request_id] = result
        if await self._send(result):
            self.outbox.pop(result.request_id, None)

    # --- cards -----------------------------------------------------------------------------

    async def _add_card(self, volume: Volume) -> None:
        files = await asyncio.to_thread(scan_card, volume.root)
        card = Card(volume, files)
        self.cards[volume.card_id] = card
        logger.info("card %s inserted at %s: %d files", volume.card_id, volume.root, len(files))
        self.view.card(volume.card_id, volume.label, True)
        await self._send_card(card)

    async def _on_card_event(self, event: CardEvent) -> None:
        cid = event.volume.card_id
        if event.kind == "inserted":
            await self._add_card(event.volume)
            return
        self.cards.pop(cid, None)
        logger.info("card %s removed", cid)
        self.view.card(cid, event.volume.label, False)
        await self._send(CardRemoved(type="card_removed", card_id=cid))

    async def _watch(self) -> None:
        async for event in watch_cards(self.sources, self.stop, self.settings.poll_interval):
            await self._on_card_event(event)

    async def _scan_once(self) -> None:
        for volume in await asyncio.to_thread(scan_all, self.sources):
            await self._add_card(volume)

    # --- the connection --------------------------------------------------------------------

    async def _connection_loop(self) -> None:
        attempt = 0
        s = self.settings
        headers = {"Authorization": f"Bearer {s.token}"}
        while not self.stop.is_set():
            try:
                async with connect(
                    s.hub_url, additional_headers=headers, max_size=protocol.MAX_FRAME_BYTES
                ) as ws:
                    await self._session(ws)
                    attempt = 0
                    verdict = close_verdict(ws.close_code, ws.close_reason or "")
                    if verdict:
                        raise verdict
                    logger.warning("hub closed the connection (%s); reconnecting", ws.close_code)
            except InvalidStatus as exc:
                status = exc.response.status_code
                if status in (401, 403):
                    raise DetectorStopped(
                        f"the hub refused this detector's token (HTTP {status}); "
                        "check --token / SKYREEL_DETECTOR_TOKEN",
                        EXIT_AUTH_REFUSED,
                    ) from None
                logger.warning("hub refused the connection: HTTP %s", status)
            except ConnectionClosed as exc:
                rcvd = exc.rcvd
                verdict = close_verdict(rcvd.code if rcvd else None, rcvd.reason if rcvd else "")
                if verdict:
                    raise verdict from None
                logger.warning("connection to the hub lost (%s); reconnecting", exc)
            except InvalidURI:
                raise
            except (OSError, TimeoutError, InvalidHandshake) as exc:
                logger.warning("cannot reach the hub at %s: %s", s.hub_url, exc)
            finally:
                self.ws = None
                self.welcomed = False
            if self.stop.is_set():
                return
            delay = backoff_delay(attempt, s.reconnect_min, s.reconnect_max, self._rng)
            attempt += 1
            logger.info("reconnecting in %.1f s", delay)
            try:
                await asyncio.wait_for(self.stop.wait(), timeout=delay)
            except TimeoutError:
                pass

    async def _session(self, ws: ClientConnection) -> None:
        raw = await asyncio.wait_for(ws.recv(), timeout=WELCOME_TIMEOUT)
        welcome = protocol.parse_hub_message(raw)
        if not isinstance(welcome, Welcome):
            logger.error("hub sent %s before welcome; reconnecting", welcome.type)
            return
        logger.info("connected to the hub as detector %s", welcome.detector_id)
        self.max_files = max(1, welcome.max_files_per_list)
        self.ws = ws
        self.welcomed = True
        self.last_activity = time.monotonic()
        for result in list(self.outbox.values()):
            await self._deliver(result)
        for card in list(self.cards.values()):
            await self._send_card(card)
        stopping = asyncio.ensure_future(self.stop.wait())
        receiving: asyncio.Future[str | bytes] | None = None
        try:
            while True:
                receiving = asyncio.ensure_future(ws.recv())
                done, _ = await asyncio.wait(
                    {receiving, stopping}, return_when=asyncio.FIRST_COMPLETED
                )
                if receiving not in done:
                    await ws.close()  # a clean 1000: the hub knows we left on purpose
                    return
                self._on_frame(receiving.result())
        finally:
            stopping.cancel()
            if receiving is not None:
                receiving.cancel()
                # Retrieve its outcome so a close arriving meanwhile is not reported as lost.
                await asyncio.gather(receiving, return_exceptions=True)

    def _on_frame(self, raw: str | bytes) -> None:
        self.last_activity = time.monotonic()
        try:
            message = protocol.parse_hub_message(raw)
        except protocol.ProtocolError as exc:
            logger.warning("ignoring a bad frame from the hub: %s", exc.reason)
            request_id = refused_request_id(raw)
            if request_id is not None:  # e.g. a destination with '..': tell the hub why
                self._spawn(self._deliver(failed_result(request_id, f"refused: {exc.reason}")))
            return
        if isinstance(message, CopyRequest):
            self._enqueue(message)
        elif isinstance(message, ErrorMessage):
            logger.warning(
                "hub error %s%s: %s",
                message.code,
                f" (request {message.request_id})" if message.request_id else "",
                message.message,
            )

    # --- copies ----------------------------------------------------------------------------

    def _enqueue(self, req: CopyRequest) -> None:
        if req.request_id in self.active:
            logger.debug("request %s already queued or running", req.request_id)
            return
        if req.card_id not in self.cards:
            logger.warning("request %s: card %s not present", req.request_id, req.card_id)
            self._spawn(self._deliver(self._failed(req, "card not present")))
            return
        self.active.add(req.request_id)
        self.queue.put_nowait(_Queued(req.priority, next(self._seq), req))
        self.view.queued(req.request_id, req.card_id, req.path.rsplit("/", 1)[-1], req.size)
        logger.info("request %s queued: %s (priority %d)", req.request_id, req.path, req.priority)

    @staticmethod
    def _failed(req: CopyRequest, reason: str) -> CopyResult:
        return failed_result(req.request_id, reason)

    async def _worker(self) -> None:
        while True:
            idle = self.queue.empty()
            item = await self.queue.get()
            if idle:
                # The first request after a pause starts a burst that arrives frame by frame:
                # give it a moment so that the QR candidates (priority 0) in it overtake the
                # footage requested just before them. Within a burst, take the next at once.
                await asyncio.sleep(REQUEST_SETTLE)
                self.queue.put_nowait(item)
                item = self.queue.get_nowait()
            req = item.request
            self.running += 1
            try:
                result = await self._copy(req)
            finally:
                self.running -= 1
                self.active.discard(req.request_id)
                self.last_activity = time.monotonic()
            await self._deliver(result)

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
            return self._failed(req, "card not present")
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
            )
        except PathRefused as exc:
            reason = f"source path refused: {exc.reason}"
        except CopyError as exc:
            reason = exc.reason
        except Exception as exc:  # a bug must fail one request, not the detector
            logger.exception("request %s: unexpected error", req.request_id)
            reason = f"internal error: {type(exc).__name__}: {exc}"
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
        return self._failed(req, reason)

    # --- lifecycle -------------------------------------------------------------------------

    def idle(self) -> bool:
        quiet = time.monotonic() - self.last_activity >= self.settings.once_idle_seconds
        busy = self.running or not self.queue.empty() or self.outbox or self._background
        return self.welcomed and quiet and not busy

    async def _idle_monitor(self) -> None:
        while not self.stop.is_set():
            await asyncio.sleep(0.1)
            if self.idle():
                logger.info("--once: nothing left to do; exiting")
                self.stop.set()

    async def run(self) -> int:
        tasks: list[asyncio.Task[None]] = []
        if self.settings.once:
            await self._scan_once()
            tasks.append(asyncio.create_task(self._idle_monitor()))
        else:
            tasks.append(asyncio.create_task(self._watch()))
        tasks += [asyncio.create_task(self._worker()) for _ in range(self.settings.parallel_copies)]
        connection = asyncio.create_task(self._connection_loop())
        stopping = asyncio.create_task(self.stop.wait())
        try:
            await asyncio.wait({connection, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if not connection.done():
                # Stopping: let the session close the socket cleanly before anything is cancelled.
                await asyncio.wait({connection}, timeout=5)
            if connection.done() and (exc := connection.exception()) is not None:
                if isinstance(exc, DetectorStopped):
                    logger.error("%s", exc.reason)
                    return exc.exit_code
                raise exc
            return EXIT_OK
        finally:
            self.cancel.set()  # running copies stop at the next chunk and remove their partials
            for task in [*tasks, connection, stopping]:
                task.cancel()
            await asyncio.gather(*tasks, connection, stopping, return_exceptions=True)
            self.view.close()


async def run_detector(
    settings: DetectorSettings,
    sources: Sequence[VolumeSource],
    stop: asyncio.Event,
    *,
    view: CopyView | None = None,
) -> int:
    """Run the station client until ``stop`` is set (or --once finds nothing left to do).

    Returns the process exit code: 0, or 2 when the hub refused the token, 3 when replaced.
    """
    detector = Detector(settings, sources, stop, view or PlainView())
    return await detector.run()
