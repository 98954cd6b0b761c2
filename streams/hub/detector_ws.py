"""`/ws/detector`: the hub's end of the detector WebSocket.

A detector authenticates at the handshake (streams/hub/detector_auth.py: bearer header, a
``?token=`` from older clients redacted from every log; failed handshakes throttled per address);
a missing, unknown or revoked token gets close 1008 before any frame is read. Every frame is
validated by :mod:`detector.protocol`; a bad one gets an ``error`` message with the full reason,
then a close (1003, or 1009 for an oversized frame) — nothing from it is written anywhere, and
only that socket is affected. A valid ``file_list`` with some unsafe entries (``..``, absolute,
control characters, not valid Unicode) passes its good entries on; each refused one is logged
with the detector id, kept in the card's ``skipped`` and reported back in ``files_refused``.
Card events (card_inserted, file_list, card_removed) go to the detector-events topic (key card
id), at most a token bucket's worth per detector (red-team D22: over it an ``error``
``rate_limited`` with ``retry_after``, then 1013, and the detector announces its cards again
after the wait). Copy progress and results are heard only for copies asked of this detector
(streams/hub/copy_reports.py). The detector id always comes from the token, never from a message.

The card row (presence, label, free/total bytes, skipped names) is written here, its one
writer. ``card_status`` frames (safe to remove, nearly full) follow once the ingest worker has
recorded a listing or an accepted copy result (:class:`CardStatusFollower`).

Copy requests travel the other way (streams/hub/copy_requests.py): :meth:`Gateway.deliver` puts
a request on the socket of its detector if that socket is on this replica; on connect, requests
still pending in PostgreSQL are sent again. Presence in Redis: streams/hub/presence.py.

Request ids on the wire are ``f<file id>`` (records.copy_request_id / records.file_of_request).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from dataclasses import dataclass, field

from aiokafka import AIOKafkaProducer
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.websockets import WebSocket, WebSocketDisconnect

from detector import protocol
from storage import cards, detectors
from streams import records
from streams.hub.copy_reports import CopyReports
from streams.hub.copy_requests import deliver, resend_pending
from streams.hub.detector_auth import HandshakeAuth
from streams.hub.detector_sockets import (
    CLOSE_INTERNAL,
    CardStatusFollower,
    DetectorSocket,
    ProgressBoard,
    Registry,
    Unavailable,
    remote_address,
)
from streams.hub.presence import forget_presence, keep_present
from streams.hub.rate_limit import DetectorBuckets
from streams.settings import Settings
from streams.topics import Names

logger = logging.getLogger(__name__)

#: Frames above this are parsed in a thread so a 20,000-file list never stalls the loop.
THREAD_PARSE_BYTES = 64 * 1024
#: The close reason (with 1008) of a socket whose token was revoked while it was open.
REVOKED_REASON = "detector token revoked"
#: "Try again later" (RFC 6455): a detector over its card-event rate reconnects after a backoff
#: and announces its present cards again, so a real card is not lost.
CLOSE_TRY_LATER = 1013
#: The longest wait a rate-limited detector is told (the wire's limit for ``retry_after``).
MAX_RETRY_AFTER = 3600.0
#: Refused entries of one frame logged one by one; the rest are counted in one line.
LOGGED_REFUSALS = 20

#: Request ids on the wire: the contract's one spelling (streams/records.py).
copy_request_id = records.copy_request_id
parse_copy_request_id = records.file_of_request


class RateLimited(Exception):
    """A detector sent card events faster than its token bucket allows (red-team D22);
    ``retry_after``: seconds until its bucket is full again."""

    def __init__(self, retry_after: float, rate: float, burst: int) -> None:
        self.retry_after = round(min(max(retry_after, 0.1), MAX_RETRY_AFTER), 1)
        super().__init__(
            f"more than {burst} card events at once (at most {rate:g} a second): closing; "
            f"reconnect in {self.retry_after:.1f} s and announce the cards again"
        )


@dataclass
class Gateway:
    """Everything the endpoint needs, built by the hub's lifespan."""

    settings: Settings
    names: Names
    hub_id: str
    sessions: async_sessionmaker[AsyncSession]
    redis: Redis
    producer: AIOKafkaProducer
    registry: Registry = field(default_factory=Registry)
    progress: ProgressBoard = field(default_factory=ProgressBoard)
    card_buckets: DetectorBuckets = field(default_factory=DetectorBuckets)
    auth: HandshakeAuth = field(init=False)
    copies: CopyReports = field(init=False)

    def __post_init__(self) -> None:
        self.auth = HandshakeAuth(self.settings, self.sessions)
        self.copies = CopyReports(
            self.names, self.sessions, self.producer, self.progress, self._produce
        )

    # --- copy requests out ---------------------------------------------------------------

    async def deliver(self, req: records.CopyRequest) -> bool:
        """Send a copy request to its detector if this replica holds its socket."""
        return await deliver(self.registry, req)

    async def resend_pending_all(self) -> int:
        """Send every connected detector its requests still pending in PostgreSQL (after the
        copy-request topic may have lost messages); never raises."""
        sent = 0
        for detector_id in self.registry.ids():
            sock = self.registry.get(detector_id)
            if sock is None:
                continue
            try:
                sent += await self._resend_pending(sock)
            except Exception as exc:  # the next re-assignment or reconnect tries again
                logger.warning("re-sending pending requests to %s failed: %s", detector_id, exc)
        if sent:
            logger.info(
                "hub %s re-sent %d pending copy requests after a re-assignment", self.hub_id, sent
            )
        return sent

    async def _resend_pending(self, sock: DetectorSocket) -> int:
        return await resend_pending(self.sessions, sock)

    # --- the endpoint --------------------------------------------------------------------

    async def endpoint(self, websocket: WebSocket) -> None:
        remote = remote_address(websocket)
        detector_id = await self.auth.check(websocket, remote)
        if detector_id is None:
            return
        await websocket.accept()
        sock = DetectorSocket(websocket, detector_id, remote)
        old = self.registry.add(sock)
        if old is not None:
            logger.info(
                "detector %s reconnected from %s; closing its older socket from %s",
                detector_id,
                remote,
                old.remote,
            )
            await old.close(protocol.CLOSE_REPLACED, "replaced by a newer connection")
        logger.info("detector %s connected from %s (hub %s)", detector_id, remote, self.hub_id)
        presence = asyncio.create_task(keep_present(self.redis, self.names, self.hub_id, sock))
        follower = CardStatusFollower(sock, self.sessions)
        sock.follower = follower
        following = asyncio.create_task(follower.run())
        code: int | None = None
        try:
            await self._touch(detector_id)
            await sock.send(
                protocol.Welcome(
                    detector_id=detector_id, max_files_per_list=self.settings.max_files_per_list
                )
            )
            resent = await self._resend_pending(sock)
            if resent:
                logger.info("re-sent %d pending copy requests to detector %s", resent, detector_id)
            code = await self._serve(sock)
        except WebSocketDisconnect as exc:
            code = exc.code
        except Exception:
            logger.exception("detector %s at %s: connection failed", detector_id, remote)
            await sock.close(CLOSE_INTERNAL, "internal error")
            code = CLOSE_INTERNAL
        finally:
            presence.cancel()
            following.cancel()
            if self.registry.remove(sock):
                self.progress.drop(sock.detector_id)
                await forget_presence(self.redis, self.names, sock)
            self._log_disconnect(sock, code)

    async def _serve(self, sock: DetectorSocket) -> int | None:
        """Read frames until the socket closes; returns the close code."""
        limit = self.settings.max_files_per_list
        while True:
            message = await sock.websocket.receive()
            if message["type"] == "websocket.disconnect":
                return int(message.get("code") or 1000)
            raw: str | bytes | None = message.get("text")
            if raw is None:
                raw = message.get("bytes") or b""
            try:
                if len(raw) > THREAD_PARSE_BYTES:
                    msg, refused = await asyncio.to_thread(
                        protocol.parse_detector_frame, raw, max_files=limit
                    )
                else:
                    msg, refused = protocol.parse_detector_frame(raw, max_files=limit)
            except protocol.ProtocolError as exc:
                await self._refuse_frame(sock, exc)
                return exc.close_code
            try:
                await self._handle(sock, msg, refused)
            except Unavailable as exc:
                logger.error("detector %s: %s; closing so it retries", sock.detector_id, exc)
                with contextlib.suppress(Exception):
                    await sock.send(
                        protocol.ErrorMessage(code="unavailable", message=exc.for_client)
                    )
                await sock.close(CLOSE_INTERNAL, "hub backend unavailable, retry")
                return CLOSE_INTERNAL
            except RateLimited as exc:
                logger.warning(
                    "detector %s at %s: card events over the rate limit; closing with %d",
                    sock.detector_id,
                    sock.remote,
                    CLOSE_TRY_LATER,
                )
                with contextlib.suppress(Exception):
                    await sock.send(
                        protocol.ErrorMessage(
                            code="rate_limited", message=str(exc), retry_after=exc.retry_after
                        )
                    )
                await sock.close(CLOSE_TRY_LATER, "too many card events; reconnect later")
                return CLOSE_TRY_LATER

    async def _refuse_frame(self, sock: DetectorSocket, exc: protocol.ProtocolError) -> None:
        logger.warning(
            "bad frame from detector %s at %s: %s (closing with %d)",
            sock.detector_id,
            sock.remote,
            exc.reason,
            exc.close_code,
        )
        with contextlib.suppress(Exception):
            await sock.send(protocol.ErrorMessage(code="bad_frame", message=exc.reason))
        await sock.close(exc.close_code, exc.reason)

    def _log_disconnect(self, sock: DetectorSocket, code: int | None) -> None:
        if code == protocol.CLOSE_TOO_BIG and not sock.closed:
            # The WebSocket layer (ws_max_size) refused the frame before it reached us.
            logger.warning(
                "bad frame from detector %s at %s: frame larger than %d bytes (closed with 1009)",
                sock.detector_id,
                sock.remote,
                protocol.MAX_FRAME_BYTES,
            )
        if sock.requests.refused:
            logger.warning(
                "detector %s at %s: refused while connected: %s",
                sock.detector_id,
                sock.remote,
                ", ".join(f"{n} {kind}" for kind, n in sorted(sock.requests.refused.items())),
            )
        logger.info(
            "detector %s disconnected from %s (code %s)", sock.detector_id, sock.remote, code
        )

    # --- frames in -----------------------------------------------------------------------

    async def _handle(
        self,
        sock: DetectorSocket,
        msg: protocol.CardInserted
        | protocol.FileList
        | protocol.CardRemoved
        | protocol.CopyProgress
        | protocol.CopyResult,
        refused: list[protocol.SkippedFile],
    ) -> None:
        if isinstance(msg, protocol.CopyProgress):
            await self.copies.progress(sock, msg)
        elif isinstance(msg, protocol.CopyResult):
            await self.copies.result(sock, msg)
        else:
            await self._card_event(sock, msg, refused)

    async def _card_event(
        self,
        sock: DetectorSocket,
        msg: protocol.CardInserted | protocol.FileList | protocol.CardRemoved,
        refused: list[protocol.SkippedFile],
    ) -> None:
        self._take_card_token(sock)
        files = None
        if isinstance(msg, protocol.FileList):
            files = [f.model_dump(exclude_none=True) for f in msg.files]  # no "duration": None
            self._log_refused(sock, msg.card_id, refused)
        event = records.DetectorEvent(
            event_id=uuid.uuid4().hex,
            event=msg.type,
            detector_id=sock.detector_id,
            card_id=msg.card_id,
            label=msg.label if isinstance(msg, protocol.CardInserted) else "",
            files=files,
        )
        payload = (
            await asyncio.to_thread(records.encode, event)
            if files and len(files) > 1000
            else records.encode(event)
        )
        await self._produce(self.names.detector_events, msg.card_id, payload)
        present = not isinstance(msg, protocol.CardRemoved)
        inserted = isinstance(msg, protocol.CardInserted)
        try:
            async with self.sessions() as session, session.begin():
                placement = await cards.upsert_card(
                    session, msg.card_id, event.label, sock.detector_id, present, inserted=inserted
                )
                if isinstance(msg, protocol.FileList):
                    skipped = [e.model_dump() for e in [*msg.skipped, *refused]]
                    await cards.record_card_facts(
                        session,
                        msg.card_id,
                        free_bytes=msg.free_bytes,
                        capacity_bytes=msg.capacity_bytes,
                        skipped=skipped,
                    )
                if present:
                    await detectors.touch(session, sock.detector_id, msg.card_id)
                    if placement.moved_from is not None:
                        await detectors.clear_card(session, placement.moved_from, msg.card_id)
                elif placement.applied:
                    await detectors.clear_card(session, sock.detector_id, msg.card_id)
        except Exception as exc:
            raise Unavailable("database", exc) from exc
        self._log_placement(sock, msg.card_id, placement)
        logger.info(
            "detector %s: %s card %s%s",
            sock.detector_id,
            msg.type,
            msg.card_id,
            f" ({len(files)} files)" if files is not None else "",
        )
        if isinstance(msg, protocol.FileList):
            if refused:
                await sock.send(
                    protocol.FilesRefused(
                        card_id=msg.card_id,
                        files=refused[: protocol.MAX_SKIPPED],
                        more=max(0, len(refused) - protocol.MAX_SKIPPED),
                    )
                )
            if sock.follower is not None:
                sock.follower.after_listing(msg.card_id, ledger_keys(msg.files))

    def _log_refused(
        self, sock: DetectorSocket, card_id: str, refused: list[protocol.SkippedFile]
    ) -> None:
        for entry in refused[:LOGGED_REFUSALS]:
            logger.warning(
                "detector %s at %s: card %s: entry %s refused: %s",
                sock.detector_id,
                sock.remote,
                card_id,
                entry.path,
                entry.reason,
            )
        if len(refused) > LOGGED_REFUSALS:
            logger.warning(
                "detector %s at %s: card %s: %d more entries refused",
                sock.detector_id,
                sock.remote,
                card_id,
                len(refused) - LOGGED_REFUSALS,
            )

    def _take_card_token(self, sock: DetectorSocket) -> None:
        """One token of the detector's card-event bucket, or :class:`RateLimited`."""
        rate, burst = self.settings.detector_card_rate, self.settings.detector_card_burst
        bucket = self.card_buckets.bucket(sock.detector_id, rate, burst)
        now = time.monotonic()
        if not bucket.take(now):
            raise RateLimited(bucket.full_in(now), rate, burst)

    def _log_placement(
        self, sock: DetectorSocket, card_id: str, placement: cards.CardPlacement
    ) -> None:
        if placement.moved_from is not None:
            logger.warning(
                "card %s moved from detector %s to detector %s at %s; only the files %s lists "
                "move with it",
                card_id,
                placement.moved_from,
                sock.detector_id,
                sock.remote,
                sock.detector_id,
            )
        elif not placement.applied:
            logger.warning(
                "detector %s at %s reported card %s removed, but the card is at another "
                "station: its row is left as it is",
                sock.detector_id,
                sock.remote,
                card_id,
            )

    async def _produce(self, topic: str, key: str, payload: bytes) -> None:
        try:
            await self.producer.send_and_wait(topic, payload, key=key.encode())
        except Exception as exc:
            raise Unavailable("broker", exc) from exc

    # --- revocation ----------------------------------------------------------------------

    async def close_revoked(self, detector_id: str) -> bool:
        """Close the detector's socket with 1008 if this replica holds it (its token was
        revoked: streams/hub/revocation.py); True when it did."""
        sock = self.registry.get(detector_id)
        if sock is None or sock.closed:
            return False
        logger.warning(
            "detector %s at %s: token revoked; closing its socket (hub %s)",
            detector_id,
            sock.remote,
            self.hub_id,
        )
        await sock.close(protocol.CLOSE_POLICY, REVOKED_REASON)
        return True

    # --- presence ------------------------------------------------------------------------

    async def _touch(self, detector_id: str) -> None:
        async with self.sessions() as session, session.begin():
            await detectors.touch(session, detector_id)


def ledger_keys(files: list[protocol.FileEntry]) -> list[tuple[str, int, int]]:
    """The natural keys the ingest worker will record for these entries (its own rules:
    files that are neither video nor proxy are not recorded)."""
    return sorted(
        {
            (f.path, f.size, round(f.mtime * 1000))
            for f in files
            if protocol.classify(f.path) != "other"
        }
    )
