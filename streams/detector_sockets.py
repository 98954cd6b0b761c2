"""The detector sockets a hub replica holds, and what it remembers about them.

Small pieces the `/ws/detector` endpoint (:mod:`streams.detector_ws`) is built from: one
socket per detector (a newer one replaces the older), a send lock per socket (the endpoint and
the copy-request forwarder both write to it), and copy progress kept in memory for the status
API with a throttle for the status topic.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from dataclasses import dataclass, field

from pydantic import BaseModel
from starlette.websockets import WebSocket, WebSocketState

from detector import protocol

#: At most one progress status event per request per this many seconds (plus the last one).
PROGRESS_INTERVAL = 1.0
#: RFC 6455 limits a close reason to 123 bytes.
_MAX_CLOSE_REASON = 123


def close_reason(reason: str) -> str:
    """Cut a reason to what fits in a close frame (UTF-8 safe)."""
    raw = reason.encode()
    if len(raw) <= _MAX_CLOSE_REASON:
        return reason
    return raw[: _MAX_CLOSE_REASON - 3].decode(errors="ignore") + "..."


def bearer_token(websocket: WebSocket) -> str | None:
    header = websocket.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return websocket.query_params.get("token") or None


def remote_address(websocket: WebSocket) -> str:
    client = websocket.client
    return f"{client.host}:{client.port}" if client else "unknown"


@dataclass(eq=False)
class DetectorSocket:
    """One accepted connection of an authenticated detector."""

    websocket: WebSocket
    detector_id: str
    remote: str
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    closed: bool = False
    connection_id: str = field(default_factory=lambda: uuid.uuid4().hex)

    async def send(self, message: BaseModel) -> None:
        async with self.lock:
            await self.websocket.send_text(protocol.dump(message))

    async def close(self, code: int, reason: str) -> None:
        if self.closed:
            return
        self.closed = True
        with contextlib.suppress(Exception):  # the peer may be gone already; nothing to do
            async with self.lock:
                if self.websocket.application_state == WebSocketState.CONNECTED:
                    await self.websocket.close(code, close_reason(reason))


class Registry:
    """The detector sockets held by this hub replica (one per detector)."""

    def __init__(self) -> None:
        self._by_id: dict[str, DetectorSocket] = {}

    def add(self, sock: DetectorSocket) -> DetectorSocket | None:
        """Register ``sock``; returns the older socket of the same detector, if any."""
        old = self._by_id.get(sock.detector_id)
        self._by_id[sock.detector_id] = sock
        return old

    def remove(self, sock: DetectorSocket) -> bool:
        """Forget ``sock`` unless a newer socket already replaced it."""
        if self._by_id.get(sock.detector_id) is sock:
            del self._by_id[sock.detector_id]
            return True
        return False

    def get(self, detector_id: str) -> DetectorSocket | None:
        return self._by_id.get(detector_id)

    def ids(self) -> list[str]:
        return sorted(self._by_id)


@dataclass
class Progress:
    detector_id: str
    request_id: str
    bytes_done: int
    bytes_total: int
    updated: float
    emitted: float = 0.0


class ProgressBoard:
    """Latest copy progress per request, in memory (the status API reads it)."""

    def __init__(self, interval: float = PROGRESS_INTERVAL) -> None:
        self.interval = interval
        self.entries: dict[str, Progress] = {}

    def update(self, detector_id: str, request_id: str, done: int, total: int) -> bool:
        """Record progress; True when a status event is due (first, throttled, or complete)."""
        now = time.monotonic()
        entry = self.entries.get(request_id)
        if entry is None:
            entry = Progress(detector_id, request_id, done, total, now)
            self.entries[request_id] = entry
        entry.bytes_done, entry.bytes_total, entry.updated = done, total, now
        due = entry.emitted == 0.0 or now - entry.emitted >= self.interval or done >= total
        if due:
            entry.emitted = now
        return due

    def finish(self, request_id: str) -> None:
        self.entries.pop(request_id, None)
