"""The detector's WebSocket client: cards in, copy requests answered, through hub restarts.

:func:`run_detector` is the whole station client as one coroutine (``cli.main`` calls it; tests
drive it against a real socket with a ``stop`` event). It runs, side by side:

* a card watcher (``cards.watch_cards``): on insertion the card is scanned (metadata only, in a
  thread) and ``card_inserted`` + ``file_list`` are sent (with the card's free and total bytes
  and the names that could not be listed); on removal ``card_removed``. A card whose handling
  fails is logged with its id and the watcher goes on to the next card;
* the connection loop: connect with ``Authorization: Bearer <token>``, wait for ``welcome``,
  send any results the hub has not acknowledged receiving, then every present card's list, then
  read ``copy_request``s. When the hub goes away it reconnects with exponential backoff and full
  jitter and sends everything again (the hub re-sends pending requests, so both sides converge).
  A 1008 close or a 401/403 handshake means the token was refused: it stops with exit code 2
  rather than hammering the hub forever (also when its token is revoked while it is connected:
  1008 "detector token revoked"). 4000 (this detector connected again elsewhere) -> 3.
  A station over the hub's card-event rate gets an error ``rate_limited`` with ``retry_after``
  and a 1013 close: it waits that long, reconnects and announces its cards again (nothing lost);
* copy workers (``detector/requests.py``): requests wait in a priority queue and run in a
  thread, one or two at a time, with throttled ``copy_progress`` and one ``copy_result``;
  results that could not be sent wait in an outbox until the next welcome. Requests that
  arrive before the card was (re-)scanned wait for it, bounded; a copy that found the share
  full is retried with backoff (see ``detector/requests.py``).

``card_status`` and ``files_refused`` from the hub are shown by :mod:`detector.notices`; a hub
that never sends them (an older one) changes nothing else. A hub too old to accept the optional
list fields refuses the list naming one of them: the lists are then sent without them; one
too old for ``copy_result.failure`` likewise gets results without it.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Sequence

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI

from detector import protocol
from detector.cards import CardEvent, Volume, VolumeSource, scan_all, watch_cards
from detector.listing import file_entries, read_card
from detector.notices import CardNotices, log_skipped
from detector.protocol import (
    CardInserted,
    CardRemoved,
    CardStatus,
    CopyRequest,
    ErrorMessage,
    FileList,
    FilesRefused,
    Welcome,
    printable,
)
from detector.requests import (
    REQUEST_SETTLE,
    Card,
    CopyRequests,
    failed_result,
    refused_request_id,
)
from detector.settings import DetectorSettings
from detector.ui import CopyView, PlainView

__all__ = [
    "EXIT_AUTH_REFUSED",
    "EXIT_OK",
    "EXIT_REPLACED",
    "REQUEST_SETTLE",
    "WELCOME_TIMEOUT",
    "Card",
    "Detector",
    "DetectorStopped",
    "backoff_delay",
    "close_verdict",
    "failed_result",
    "file_entries",
    "refused_request_id",
    "run_detector",
]

logger = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_AUTH_REFUSED = 2
EXIT_REPLACED = 3
WELCOME_TIMEOUT = 10.0
#: The optional file_list fields a hub from before card safety refuses as unknown.
_LIST_FACTS = ("free_bytes", "capacity_bytes", "skipped")


class DetectorStopped(Exception):
    """The hub told this detector to stop (``exit_code`` says why)."""

    def __init__(self, reason: str, exit_code: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.exit_code = exit_code


def backoff_delay(attempt: int, low: float, high: float, rng: random.Random) -> float:
    """Exponential backoff with full jitter: uniform in [low, min(high, low * 2**attempt)]."""
    ceiling = min(high, low * (2 ** min(attempt, 30)))
    return rng.uniform(low, max(low, ceiling))


def close_verdict(code: int | None, reason: str) -> DetectorStopped | None:
    """Whether a close code means "stop" rather than "reconnect" (pure)."""
    if code == protocol.CLOSE_POLICY and "revoked" in reason:
        return DetectorStopped(
            f"the hub revoked this detector's token while connected (close 1008: {reason}); "
            "an operator must register it again (skyreel register-detector) for a new token",
            EXIT_AUTH_REFUSED,
        )
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
        self.copies = CopyRequests(settings, view, self.cards, self._send, self._touch)
        self.notices = CardNotices(view, self.cards)
        # a hub from before card safety refuses the optional list fields: send lists without
        self.plain_lists = False
        self.ws: ClientConnection | None = None
        self.max_files = protocol.MAX_FILES_PER_LIST
        self.welcomed = False
        self.last_activity = time.monotonic()
        self._send_lock = asyncio.Lock()
        self._rng = random.Random()
        # seconds the hub asked this detector to wait before reconnecting (rate_limited)
        self.retry_after = 0.0

    def _touch(self) -> None:
        self.last_activity = time.monotonic()

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

    async def _send_card(self, card: Card) -> None:
        cid = card.volume.card_id
        label = card.volume.label[:200]
        if not await self._send(CardInserted(type="card_inserted", card_id=cid, label=label)):
            return
        entries = file_entries(card.files)
        # A card beyond the hub's per-list limit goes in several lists (the hub's limit wins);
        # the card's facts travel with the first.
        for start in range(0, max(len(entries), 1), self.max_files):
            chunk = entries[start : start + self.max_files]
            message = FileList(type="file_list", card_id=cid, files=chunk)
            if start == 0 and not self.plain_lists:
                message = FileList(
                    type="file_list",
                    card_id=cid,
                    files=chunk,
                    free_bytes=card.free_bytes if card.capacity_bytes is not None else None,
                    capacity_bytes=card.capacity_bytes if card.free_bytes is not None else None,
                    skipped=card.skipped[: protocol.MAX_SKIPPED],
                )
            if not await self._send(message):
                return
        logger.info("sent card %s: %d files", cid, len(entries))

    # --- cards -----------------------------------------------------------------------------

    async def _add_card(self, volume: Volume) -> None:
        card = await asyncio.to_thread(read_card, volume)
        self.cards[volume.card_id] = card
        self.copies.card_present(volume.card_id)
        logger.info(
            "card %s inserted at %s: %d files%s",
            volume.card_id,
            printable(str(volume.root)),
            len(card.files),
            f", {len(card.skipped)} skipped" if card.skipped else "",
        )
        log_skipped(volume.card_id, card.skipped, "skipping")
        self.view.card(volume.card_id, volume.label, True)
        await self._send_card(card)

    async def _on_card_event(self, event: CardEvent) -> None:
        cid = event.volume.card_id
        if event.kind == "inserted":
            await self._add_card(event.volume)
            return
        self.cards.pop(cid, None)
        self.copies.card_removed(cid)
        self.notices.forget(cid)
        logger.info("card %s removed", cid)
        self.view.card(cid, event.volume.label, False)
        await self._send(CardRemoved(type="card_removed", card_id=cid))

    async def _card_event_guarded(self, event: CardEvent) -> None:
        """Handle one card event; a failure is logged with the card id and costs only it."""
        try:
            await self._on_card_event(event)
        except Exception:
            logger.exception(
                "card %s: handling its %s failed; watching on", event.volume.card_id, event.kind
            )

    async def _watch(self) -> None:
        while not self.stop.is_set():
            try:
                async for event in watch_cards(
                    self.sources, self.stop, self.settings.poll_interval
                ):
                    await self._card_event_guarded(event)
            except Exception:  # the watcher itself failed: start it again after a pause
                logger.exception("card watcher failed; restarting it")
                try:
                    await asyncio.wait_for(self.stop.wait(), timeout=self.settings.poll_interval)
                except TimeoutError:
                    pass

    async def _scan_once(self) -> None:
        for volume in await asyncio.to_thread(scan_all, self.sources):
            await self._card_event_guarded(CardEvent("inserted", volume))

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
                    if self.stop.is_set():  # we closed it: Ctrl-C, SIGTERM, --once done
                        return
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
                if not self.stop.is_set():
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
            if self.retry_after > delay:
                logger.warning(
                    "the hub asked this detector to slow down; reconnecting in %.1f s and "
                    "announcing the cards again",
                    self.retry_after,
                )
                delay = self.retry_after
            self.retry_after = 0.0
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
        self.copies.station = welcome.detector_id
        self.ws = ws
        self.welcomed = True
        self.last_activity = time.monotonic()
        await self.copies.flush()
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
                self.copies.fail_soon(request_id, f"refused: {exc.reason}")
            return
        if isinstance(message, CopyRequest):
            self.copies.enqueue(message)
        elif isinstance(message, CardStatus):
            self.notices.on_status(message)
        elif isinstance(message, FilesRefused):
            self.notices.on_refused(message)
        elif isinstance(message, ErrorMessage):
            logger.warning(
                "hub error %s%s: %s",
                message.code,
                f" (request {message.request_id})" if message.request_id else "",
                message.message,
            )
            if message.code == "bad_frame" and any(f in message.message for f in _LIST_FACTS):
                if not self.plain_lists:
                    logger.warning("the hub is older than card facts; lists go without them")
                self.plain_lists = True
            if message.code == "rate_limited" and message.retry_after is not None:
                self.retry_after = message.retry_after  # the close (1013) follows
            if message.code == "bad_frame" and "failure" in message.message:
                if not self.copies.plain_results:
                    logger.warning("the hub is older than failure kinds; results go without")
                self.copies.plain_results = True

    # --- lifecycle -------------------------------------------------------------------------

    def idle(self) -> bool:
        quiet = time.monotonic() - self.last_activity >= self.settings.once_idle_seconds
        return self.welcomed and quiet and not self.copies.busy()

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
        workers = range(self.settings.parallel_copies)
        tasks += [asyncio.create_task(self.copies.worker()) for _ in workers]
        for started in tasks:
            started.add_done_callback(_log_task_death)
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
            logger.info("detector stopped")
            return EXIT_OK
        finally:
            # Running copies stop at the next chunk and remove their partials.
            self.copies.cancel.set()
            for task in [*tasks, connection, stopping]:
                task.cancel()
            await asyncio.gather(*tasks, connection, stopping, return_exceptions=True)
            self.view.close()


def _log_task_death(task: asyncio.Task[None]) -> None:
    """A watcher or worker that ends on its own is a bug: say so instead of dying silently."""
    if task.cancelled():
        return
    exc = task.exception()
    if exc is not None:
        logger.error("detector task %s died", task.get_name(), exc_info=exc)


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
