"""What a detector reports about the copies asked of it: ``copy_progress`` and ``copy_result``.

Only the detector a copy was asked of, while it is still asked for, is heard (red-team D6/D7):
a result is passed on to the copy-results topic only when PostgreSQL has the file
``requested``/``copying`` for this socket's detector (one primary-key lookup,
:func:`storage.imports.pending_request`; the ingest worker checks again before it writes).
Anything else gets an ``error`` frame (``not_pending`` / ``unknown_request``) and nothing is
produced. Progress is taken only for request ids this hub sent on the socket, or that one
lookup found pending (a budget of lookups per socket), and kept on a bounded board dropped at
disconnect (red-team D9), so a flood of made-up ids costs neither memory nor a query per frame.
A refusal is answered every time and logged once per kind per socket; the disconnect line
counts the rest.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiokafka import AIOKafkaProducer
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from detector import protocol
from storage import imports
from streams import records
from streams.hub.detector_sockets import DetectorSocket, ProgressBoard, Unavailable
from streams.topics import Names

logger = logging.getLogger(__name__)


@dataclass
class CopyReports:
    """The copy-report half of a hub's detector endpoint."""

    names: Names
    sessions: async_sessionmaker[AsyncSession]
    producer: AIOKafkaProducer
    progress_board: ProgressBoard
    #: produce and wait for the broker's ack, raising Unavailable (the endpoint's own)
    produce: Callable[[str, str, bytes], Awaitable[None]]

    async def progress(self, sock: DetectorSocket, msg: protocol.CopyProgress) -> None:
        file_id = await self._progress_file(sock, msg.request_id)
        if file_id is None:
            return
        if not self.progress_board.update(
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
        file_id = records.file_of_request(request_id)
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

    async def result(self, sock: DetectorSocket, msg: protocol.CopyResult) -> None:
        file_id = records.file_of_request(msg.request_id)
        if file_id is None:
            first = sock.requests.refuse("results for unknown request ids")
            why = "not a request id this hub issued"
            await self._refuse_request(sock, "unknown_request", msg.request_id, why, log=first)
            return
        # red-team D6/D7: only the detector the copy was asked of, while it is still asked for
        if not await self._pending(sock, file_id):
            sock.requests.settled(msg.request_id)
            self.progress_board.finish(sock.detector_id, msg.request_id)
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
        await self.produce(self.names.copy_results, sock.detector_id, records.encode(result))
        self.progress_board.finish(sock.detector_id, msg.request_id)
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
