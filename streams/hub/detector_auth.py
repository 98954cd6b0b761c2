"""The handshake of `/ws/detector`: whose token is it, and is this address still allowed to try.

A detector authenticates at the handshake (``Authorization: Bearer <token>``; ``?token=`` from
older clients is still taken and is redacted from every log line). A missing, unknown or revoked
token gets accept-then-close 1008 with the reason before any frame is read, so the client sees
the code rather than a bare 403. Failed handshakes are counted per client address
(:class:`streams.hub.throttle.FailureThrottle`, red-team "300 failed handshakes in 3.5 s"):
past the limit an address is refused for a while before any token lookup, so a guessing peer
costs no database round trip, and the burst is logged once.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.websockets import WebSocket

from detector import protocol
from storage import detectors
from streams.hub.detector_sockets import CLOSE_INTERNAL, bearer_token
from streams.hub.throttle import FailureThrottle, wait_words
from streams.settings import Settings

logger = logging.getLogger(__name__)


@dataclass
class HandshakeAuth:
    """Checks detector handshakes for one hub replica (the throttle lives as long as it)."""

    settings: Settings
    sessions: async_sessionmaker[AsyncSession]
    failures: FailureThrottle = field(init=False)

    def __post_init__(self) -> None:
        window = self.settings.hub_auth_failure_window_s
        self.failures = FailureThrottle(self.settings.hub_auth_failures_per_peer, window, window)

    async def check(self, websocket: WebSocket, remote: str) -> str | None:
        """The detector id of the handshake's token, or None after closing the socket with
        the reason (1008; 1011 when tokens cannot be checked right now)."""
        peer = websocket.client.host if websocket.client else "unknown"
        wait = self.failures.retry_after(peer, time.monotonic())
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
            burst = self.failures.failed(peer, time.monotonic())
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
