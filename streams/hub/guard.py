"""Connection limits and timeouts of the hub's listening socket (red-team D4).

~20,000 idle TCP connections used up the hub's file descriptors and REST stopped answering;
slow-loris clients and idle sockets were never closed. Here:

- :class:`ConnectionGuard` counts open connections per client IP and overall. A peer at
  ``max_per_peer`` is refused; at ``max_total`` the oldest connection that has not sent a
  complete request yet (idle, slow-loris) is closed to make room — failing that, the oldest
  keep-alive connection between requests — and only when every connection is busy (a request
  in progress, a WebSocket) is the new one refused. A refusal is a short ``503`` and a close.
  Each limit is logged once when it is reached and once when it is clear again (with what was
  refused meanwhile), never per connection.
- :class:`GuardedHttp` (uvicorn's httptools protocol) counts itself in at ``connection_made``
  and closes a connection that has not completed its request headers within
  ``header_timeout_s`` of connecting or of its previous response.
- :class:`GuardedWebSocket` (uvicorn's websockets-sansio protocol) takes over the transport at
  the upgrade, so the connection is counted out when *it* is lost; a WebSocket whose handshake
  (authentication included) is not done within ``header_timeout_s`` is closed. Established
  WebSockets are never timed out here: uvicorn's ping interval closes dead ones.
- :meth:`ConnectionGuard.accept_error` is the loop's exception handler for asyncio's
  "socket.accept() out of system resource" (EMFILE): one line when accepting starts failing,
  one when it works again, instead of one per attempt.

Use :func:`guarded_protocols` for the ``http=`` and ``ws=`` classes of ``uvicorn.Config``.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

logger = logging.getLogger(__name__)

#: Descriptors kept free beside the connection limit: database pool, Kafka, Redis, media files,
#: logs. The overall limit is lowered to fit ``RLIMIT_NOFILE - FD_HEADROOM``.
FD_HEADROOM = 256
#: A limit counts as clear again once the count is this fraction below it (no log line per
#: connection when a flood keeps it at the edge).
HYSTERESIS = 0.1
#: Timed-out connections are summed up in one log line at most this often.
SUMMARY_INTERVAL_S = 60.0
#: What asyncio's accept loop reports when accept() fails for lack of descriptors or memory.
ACCEPT_OUT_OF_RESOURCES = "socket.accept() out of system resource"
_REFUSAL_BODY = b"the hub has too many open connections; retry in a few seconds\n"
#: All a refused connection gets before the close (no request is read).
REFUSAL = (
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"retry-after: 5\r\nconnection: close\r\ncontent-length: "
    + str(len(_REFUSAL_BODY)).encode()
    + b"\r\n\r\n"
    + _REFUSAL_BODY
)


@dataclass(frozen=True)
class ConnectionLimits:
    max_total: int
    max_per_peer: int
    header_timeout_s: float


def _clear_below(limit: int) -> int:
    return max(1, limit - max(1, int(limit * HYSTERESIS)))


def raise_fd_limit() -> int:
    """Raise this process's soft RLIMIT_NOFILE to its hard limit; the soft limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1_048_576)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as exc:
            logger.warning("cannot raise the open-file limit from %d to %d: %s", soft, hard, exc)
    return soft


def fit_to_fd_limit(limits: ConnectionLimits, fd_limit: int) -> ConnectionLimits:
    """The limits with ``max_total`` lowered to leave :data:`FD_HEADROOM` descriptors free."""
    room = max(16, fd_limit - FD_HEADROOM)
    if limits.max_total <= room:
        return limits
    logger.warning(
        "the hub allows %d connections, not the configured %d: the open-file limit is %d "
        "(raise it with `ulimit -n` or LimitNOFILE to allow more)",
        room,
        limits.max_total,
        fd_limit,
    )
    return ConnectionLimits(room, min(limits.max_per_peer, room), limits.header_timeout_s)


@dataclass
class _Summary:
    """Counts an event; logs the first at once, then at most one sum per interval."""

    what: str
    count: int = 0
    unlogged: int = 0
    logged_at: float = float("-inf")

    def add(self, peer: str) -> None:
        self.count += 1
        self.unlogged += 1
        now = time.monotonic()
        if now - self.logged_at >= SUMMARY_INTERVAL_S:
            logger.warning("%s: %d connection(s) (last from %s)", self.what, self.unlogged, peer)
            self.unlogged = 0
            self.logged_at = now


@dataclass
class ConnectionGuard:
    """The open connections of one listening server, by transport (see the module doc)."""

    limits: ConnectionLimits
    _peer_of: dict[asyncio.BaseTransport, str] = field(default_factory=dict)
    _per_peer: dict[str, int] = field(default_factory=dict)
    #: connections that have not sent a complete request yet, oldest first: closed first to
    #: make room at the limit (idle and slow-loris sockets are all here)
    _fresh: OrderedDict[asyncio.BaseTransport, None] = field(default_factory=OrderedDict)
    #: keep-alive connections between requests: closed to make room only when no fresh one is
    #: left (a dashboard or a station proved itself with a whole request)
    _kept: OrderedDict[asyncio.BaseTransport, None] = field(default_factory=OrderedDict)
    #: peers at their limit -> connections refused since it was reached
    _peers_full: dict[str, int] = field(default_factory=dict)
    _full: bool = False
    _full_refused: int = 0
    _full_evicted: int = 0
    _accept_failures: int = 0
    refused: int = 0
    evicted: int = 0
    timed_out: _Summary = field(
        default_factory=lambda: _Summary("closed before completing their request headers in time")
    )

    @property
    def open(self) -> int:
        return len(self._peer_of)

    def snapshot(self) -> dict[str, int]:
        """Counters for /api/health."""
        return {
            "open": self.open,
            "limit": self.limits.max_total,
            "limit_per_peer": self.limits.max_per_peer,
            "refused": self.refused,
            "evicted_idle": self.evicted,
            "timed_out": self.timed_out.count,
        }

    # --- admission ------------------------------------------------------------------------

    def admit(self, transport: asyncio.BaseTransport, peer: str) -> bool:
        """Count a new connection in, or say to refuse it (False)."""
        if self._accept_failures:
            logger.warning(
                "accepting connections again (%d accept attempts failed meanwhile)",
                self._accept_failures,
            )
            self._accept_failures = 0
        count = self._per_peer.get(peer, 0)
        if count >= self.limits.max_per_peer:
            self._refuse_peer(peer, count)
            return False
        if self.open >= self.limits.max_total and not self._make_room(peer):
            return False
        self._peer_of[transport] = peer
        self._per_peer[peer] = count + 1
        self._fresh[transport] = None
        return True

    def busy(self, transport: asyncio.BaseTransport) -> None:
        """A request (or WebSocket) is in progress: not closed to make room."""
        self._fresh.pop(transport, None)
        self._kept.pop(transport, None)

    def idle(self, transport: asyncio.BaseTransport) -> None:
        """A keep-alive connection waits for its next request."""
        if transport in self._peer_of:
            self._kept[transport] = None

    def release(self, transport: asyncio.BaseTransport) -> None:
        """Count a connection out (idempotent: the HTTP and the WebSocket protocol both may)."""
        peer = self._peer_of.pop(transport, None)
        self.busy(transport)
        if peer is None:
            return
        count = self._per_peer[peer] - 1
        if count:
            self._per_peer[peer] = count
        else:
            del self._per_peer[peer]
        if peer in self._peers_full and count < _clear_below(self.limits.max_per_peer):
            logger.warning(
                "peer %s below its connection limit again (%d open); refused %d meanwhile",
                peer,
                count,
                self._peers_full.pop(peer),
            )
        if self._full and self.open < _clear_below(self.limits.max_total):
            logger.warning(
                "connections below the limit again (%d open); meanwhile closed %d idle "
                "connection(s) to make room and refused %d",
                self.open,
                self._full_evicted,
                self._full_refused,
            )
            self._full = False

    def _refuse_peer(self, peer: str, count: int) -> None:
        self.refused += 1
        if peer in self._peers_full:
            self._peers_full[peer] += 1
            return
        self._peers_full[peer] = 1
        logger.warning(
            "peer %s reached its connection limit (%d open); refusing more connections from it",
            peer,
            count,
        )

    def _make_room(self, peer: str) -> bool:
        if not self._full:
            self._full = True
            self._full_refused = self._full_evicted = 0
            logger.warning(
                "connection limit reached: %d open; closing the oldest idle connections to make "
                "room, refusing new ones (first from %s) when none is idle",
                self.open,
                peer,
            )
        idle = self._fresh or self._kept
        if idle:
            oldest, _ = idle.popitem(last=False)
            self.release(oldest)
            oldest.close()
            self.evicted += 1
            self._full_evicted += 1
            return True
        self.refused += 1
        self._full_refused += 1
        return False

    # --- accept errors ----------------------------------------------------------------------

    def accept_error_handler(
        self, previous: Callable[[asyncio.AbstractEventLoop, dict[str, Any]], object] | None
    ) -> Callable[[asyncio.AbstractEventLoop, dict[str, Any]], None]:
        """A loop exception handler: accept() failing for lack of resources is logged once per
        state change; anything else goes to ``previous`` (or asyncio's default)."""

        def handle(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
            if context.get("message") == ACCEPT_OUT_OF_RESOURCES:
                self.accept_error(context.get("exception"))
            elif previous is not None:
                previous(loop, context)
            else:
                loop.default_exception_handler(context)

        return handle

    def accept_error(self, exc: object) -> None:
        self._accept_failures += 1
        if self._accept_failures == 1:
            logger.error(
                "cannot accept connections: %s (%d open); new connections wait in the backlog "
                "until descriptors are free (raise `ulimit -n` or lower "
                "SKYREEL_HUB_MAX_CONNECTIONS)",
                exc,
                self.open,
            )


class GuardedHttp(HttpToolsProtocol):
    """uvicorn's httptools protocol, counted by a :class:`ConnectionGuard`, with a header
    timeout."""

    guard: ClassVar[ConnectionGuard]
    _header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if not self.guard.admit(transport, self.client[0] if self.client else "unknown"):
            transport.write(REFUSAL)
            transport.close()
            return
        self._arm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_timer()
        self.guard.release(self.transport)
        super().connection_lost(exc)

    def on_headers_complete(self) -> None:
        self._cancel_header_timer()
        self.guard.busy(self.transport)
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self.timeout_keep_alive_task is not None:  # idle until the next request
            self.guard.idle(self.transport)
            self._arm_header_timer()

    def _arm_header_timer(self) -> None:
        self._cancel_header_timer()
        self._header_timer = self.loop.call_later(
            self.guard.limits.header_timeout_s, self._header_timeout
        )

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_timeout(self) -> None:
        self._header_timer = None
        if not self.transport.is_closing():
            self.guard.timed_out.add(self.client[0] if self.client else "unknown")
            self.transport.close()


class GuardedWebSocket(WebSocketsSansIOProtocol):
    """uvicorn's websockets-sansio protocol: counted out by the guard when lost; the handshake
    (authentication included) must finish within the header timeout."""

    guard: ClassVar[ConnectionGuard]
    _handshake_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.guard.busy(transport)
        loop = asyncio.get_running_loop()
        self._handshake_timer = loop.call_later(
            self.guard.limits.header_timeout_s, self._handshake_timeout
        )

    def connection_lost(self, exc: Exception | None) -> None:
        if self._handshake_timer is not None:
            self._handshake_timer.cancel()
        self.guard.release(self.transport)
        super().connection_lost(exc)

    def _handshake_timeout(self) -> None:
        self._handshake_timer = None
        if not self.handshake_complete and not self.transport.is_closing():
            self.guard.timed_out.add(self.client[0] if self.client else "unknown")
            self.transport.close()


def guarded_protocols(
    guard: ConnectionGuard,
) -> tuple[type[GuardedHttp], type[GuardedWebSocket]]:
    """The ``http=`` and ``ws=`` classes for ``uvicorn.Config``, bound to ``guard``."""
    http = type("GuardedHttp", (GuardedHttp,), {"guard": guard})
    ws = type("GuardedWebSocket", (GuardedWebSocket,), {"guard": guard})
    return http, ws
