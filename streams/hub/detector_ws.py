"""`/ws/detector`: the hub's end of the detector WebSocket.

A detector authenticates at the handshake (``Authorization: Bearer <token>`` or ``?token=``);
a missing, unknown or revoked token gets close 1008 before any frame is read. Every frame is
validated by :mod:`detector.protocol`; a bad one gets an ``error`` message with the full reason,
then a close (1003, or 1009 for an oversized frame) — nothing from it is written anywhere, and
only that socket is affected. A valid ``file_list`` with some unsafe entries (``..``, absolute,
control characters, not valid Unicode) passes its good entries on; each refused one is logged
with the detector id, kept in the card's ``skipped`` and reported back in ``files_refused``.
Good frames become records: card events on the detector-events
topic (key card id), copy results on copy-results (key detector id), copy progress as throttled
status events (and in memory for the status API). The detector id always comes from the token,
never from a message.

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
from storage import cards, detectors, imports
from streams import records
from streams.hub.copy_requests import deliver, resend_pending
from streams.hub.detector_sockets import (
    CardStatusFollower,
    DetectorSocket,
    ProgressBoard,
    Registry,
    bearer_token,
    remote_address,
)
from streams.hub.presence import forget_presence, keep_present
from streams.hub.rate_limit import DetectorBuckets
from streams.hub.throttle import FailureThrottle, wait_words
from streams.settings import Settings
from streams.topics import Names

logger = logging.getLogger(__name__)

#: Frames above this are parsed in a thread so a 20,000-file list never stalls the loop.
THREAD_PARSE_BYTES = 64 * 1024
CLOSE_INTERNAL = 1011
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


class Unavailable(RuntimeError):
    """A backend service failed while handling a good frame; the detector should retry.

    ``str()`` (for our log) holds the service's own error; a client is told only which
    service (:attr:`for_client`): never SQL, a stack or a broker's internals."""

    def __init__(self, service: str, exc: BaseException) -> None:
        super().__init__(f"{service}: {exc}")
        self.for_client = f"the hub's {service} is unavailable; retry in a moment"


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
    #: failed handshakes per client IP (issue 14); built from the settings on first use
    auth_failures: FailureThrottle | None = None

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
        detector_id = await self._authenticate(websocket, remote)
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

    async def _authenticate(self, websocket: WebSocket, remote: str) -> str | None:
        if self.auth_failures is None:
            window = self.settings.hub_auth_failure_window_s
            self.auth_failures = FailureThrottle(
                self.settings.hub_auth_failures_per_peer, window, window
            )
        peer = websocket.client.host if websocket.client else "unknown"
        wait = self.auth_failures.retry_after(peer, time.monotonic())
        if wait is not None:  # no token check at all: a blocked peer costs no database lookup
            await websocket.accept()
            await websocket.close(
                protocol.CLOSE_POLICY,
                f"too many failed authentication attempts from this address; {wait_words(wait)}",
            )
            return None
        token = bearer_token(websocket)
        reason = "missing token"
        detector_id: str | None = None
        if token:
            try:
                async with self.sessions() as session:
                    detector_id = await detectors.authenticate(session, token)
            except Exception:
                logger.exception("cannot check a detector token from %s", remote)
                await websocket.accept()
                await websocket.close(CLOSE_INTERNAL, "hub cannot check tokens right now")
                return None
            reason = "unknown or revoked token"
        if detector_id is None:
            logger.warning("refused detector connection from %s: %s", remote, reason)
            burst = self.auth_failures.failed(peer, time.monotonic())
            if burst is not None:
                logger.warning(
                    "throttling detector handshakes from %s: %d failed authentications within "
                    "%g s; refusing its handshakes for %g s without checking tokens",
                    peer,
                    burst.failures,
                    burst.window_s,
                    burst.block_s,
                )
            # Accept-then-close so the client sees the 1008 code and reason, not a bare 403.
            await websocket.accept()
            await websocket.close(protocol.CLOSE_POLICY, reason)
        return detector_id

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
            await self._progress(sock, msg)
        elif isinstance(msg, protocol.CopyResult):
            await self._result(sock, msg)
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
            files = [f.model_dump() for f in msg.files]
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

    async def _progress(self, sock: DetectorSocket, msg: protocol.CopyProgress) -> None:
        file_id = await self._progress_file(sock, msg.request_id)
        if file_id is None:
            return
        if not self.progress.update(
            sock.detector_id, msg.request_id, msg.bytes_done, msg.bytes_total
        ):
            return
        status = records.StatusEvent(
            kind="file",
            id=str(file_id),
            data={
                "detector_id": sock.detector_id,
                "request_id": msg.request_id,
                "bytes_done": msg.bytes_done,
                "bytes_total": msg.bytes_total,
            },
        )
        try:  # progress is advisory: enqueue without waiting for the broker
            await self.producer.send(
                self.names.status, records.encode(status), key=sock.detector_id.encode()
            )
        except Exception as exc:
            logger.warning("progress of %s not published: %s", msg.request_id, exc)

    async def _progress_file(self, sock: DetectorSocket, request_id: str) -> int | None:
        """The file a progress frame is about, when its copy was asked of this detector.

        An id this hub sent on the socket costs nothing; another is looked up in PostgreSQL
        once (within a budget per socket), so a flood of made-up ids costs neither memory nor
        a query per frame (red-team D9). A refusal is answered and logged once per socket."""
        file_id = parse_copy_request_id(request_id)
        known = request_id in sock.requests.ids
        if file_id is not None and not known and sock.requests.may_look_up(request_id):
            try:
                known = await self._pending(sock, file_id)
            except Unavailable as exc:  # progress is advisory: drop this frame, keep serving
                logger.warning("progress of %s not checked: %s", request_id, exc)
                return None
            sock.requests.looked_up(request_id, known)
        if file_id is None or not known:
            if sock.requests.refuse("progress frames for requests not theirs"):
                why = "no copy asked of this detector; progress not taken"
                await self._refuse_request(sock, "unknown_request", request_id, why, log=True)
            return None
        return file_id

    async def _result(self, sock: DetectorSocket, msg: protocol.CopyResult) -> None:
        file_id = parse_copy_request_id(msg.request_id)
        if file_id is None:
            first = sock.requests.refuse("results for unknown request ids")
            why = "not a request id this hub issued"
            await self._refuse_request(sock, "unknown_request", msg.request_id, why, log=first)
            return
        # red-team D6/D7: only the detector the copy was asked of, while it is still asked for
        if not await self._pending(sock, file_id):
            sock.requests.settled(msg.request_id)
            self.progress.finish(sock.detector_id, msg.request_id)
            first = sock.requests.refuse("results for copies not pending for them")
            why = (
                f"no copy of file {file_id} is pending for this detector (already settled, "
                "or asked of another station); result not taken"
            )
            await self._refuse_request(sock, "not_pending", msg.request_id, why, log=first)
            return
        result = records.CopyResult(
            request_id=msg.request_id,
            detector_id=sock.detector_id,
            file_id=file_id,
            status=msg.status,
            destination=msg.destination,
            size=msg.size,
            hash=msg.hash,
            hash_algo=msg.hash_algo,
            reason=msg.reason,
            failure=(msg.failure or "") if msg.status == "failed" else "",
        )
        await self._produce(self.names.copy_results, sock.detector_id, records.encode(result))
        self.progress.finish(sock.detector_id, msg.request_id)
        if msg.status == "copied":  # a failed copy may be tried again under the same id
            sock.requests.settled(msg.request_id)
        if sock.follower is not None:
            sock.follower.after_result(file_id)
        logger.info("detector %s: copy %s %s", sock.detector_id, msg.request_id, msg.status)

    async def _pending(self, sock: DetectorSocket, file_id: int) -> bool:
        """Whether the file's copy is asked of this socket's detector and not delivered yet."""
        try:
            async with self.sessions() as session:
                return await imports.pending_request(session, sock.detector_id, file_id)
        except Exception as exc:
            raise Unavailable("database", exc) from exc

    async def _refuse_request(
        self, sock: DetectorSocket, code: str, request_id: str, why: str, *, log: bool
    ) -> None:
        """Answer a progress or result frame that is not taken; ``log`` for the first of its
        kind on the socket (the rest are counted in the disconnect line)."""
        if log:
            logger.warning(
                "detector %s at %s: request %r refused (%s): %s",
                sock.detector_id,
                sock.remote,
                request_id,
                code,
                why,
            )
        await sock.send(protocol.ErrorMessage(code=code, message=why, request_id=request_id))

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
