"""Copy requests out to the detectors: a request from the topic goes to its detector if this
replica holds the socket; on (re)connect, every copy still pending in PostgreSQL is sent again,
so nothing depends on a socket having been up when the request went by on the topic. Each id
sent is remembered on its socket: progress is taken only for those (red-team D9).
"""

from __future__ import annotations

import logging

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from detector import protocol
from storage.copies import PendingCopy, pending_copy_requests
from streams import records
from streams.hub.detector_sockets import DetectorSocket, Registry

logger = logging.getLogger(__name__)


def frame_from_record(req: records.CopyRequest) -> protocol.CopyRequest:
    """The wire frame for a copy request record (raises ValueError if it is not sendable)."""
    return protocol.CopyRequest(
        request_id=req.request_id,
        card_id=req.card_id,
        path=req.path,
        size=req.size,
        mtime=req.mtime,
        destination=req.destination,
        priority=req.priority,
    )


def frame_from_pending(detector_id: str, p: PendingCopy) -> protocol.CopyRequest:
    """The wire frame for a copy still pending in PostgreSQL (the request built by the one
    builder, records.CopyRequest.for_file)."""
    return frame_from_record(records.CopyRequest.for_file(detector_id, p.card_id, p))


async def deliver(registry: Registry, req: records.CopyRequest) -> bool:
    """Send a copy request to its detector if this replica holds its socket."""
    sock = registry.get(req.detector_id)
    if sock is None:
        return False
    try:
        frame = frame_from_record(req)
    except ValueError as exc:
        logger.error(
            "copy request %s for detector %s not sendable: %s",
            req.request_id,
            req.detector_id,
            exc,
        )
        return False
    sock.requests.sent(req.request_id)  # before the send: the answer may come at once
    try:
        await sock.send(frame)
    except Exception as exc:  # the socket died under us; the request stays pending in PG
        logger.warning(
            "copy request %s to detector %s failed: %s", req.request_id, req.detector_id, exc
        )
        return False
    return True


async def resend_pending(sessions: async_sessionmaker[AsyncSession], sock: DetectorSocket) -> int:
    """Send the detector every copy still pending for it in PostgreSQL."""
    async with sessions() as session:
        pending = await pending_copy_requests(session, sock.detector_id)
    sent = 0
    for p in pending:
        try:
            frame = frame_from_pending(sock.detector_id, p)
        except ValueError as exc:
            logger.error(
                "pending file %s of detector %s not sendable: %s",
                p.file_id,
                sock.detector_id,
                exc,
            )
            continue
        sock.requests.sent(frame.request_id)
        await sock.send(frame)
        sent += 1
    return sent
