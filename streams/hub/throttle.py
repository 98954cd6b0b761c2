"""Failed-authentication throttling per peer address (red-team: 300 failed handshakes in 3.5 s).

Pure bookkeeping, no I/O: :class:`FailureThrottle` remembers, per client IP, the times of its
recent failed authentications (a sliding window). A peer with ``limit`` failures inside
``window_s`` seconds is *blocked* for ``block_s`` seconds from its last counted failure: the
hub refuses its handshakes before any database lookup, even with a valid token, and tells it how
long to wait. Attempts refused while blocked are counted, not remembered one by one, and do not
extend the block (a station with a wrong token that keeps retrying gets in as soon as its token
is fixed and the block ran out).

The caller logs once per burst: :meth:`FailureThrottle.failed` says when a failure *starts* a
block (and how many attempts the previous block refused). Memory is bounded: at most
``limit`` timestamps per peer and at most ``max_peers`` peers (the stalest are forgotten).
"""

from __future__ import annotations

import math
from collections import OrderedDict, deque
from dataclasses import dataclass, field

#: Peers remembered at most; beyond it the peer not heard of for longest is forgotten (an
#: attacker cycling through addresses cannot grow the table without bound).
MAX_PEERS = 10_000


@dataclass(frozen=True)
class Burst:
    """A peer just crossed the limit: what to log once."""

    peer: str
    failures: int
    window_s: float
    block_s: float


@dataclass
class _Peer:
    failures: deque[float]
    blocked_until: float = 0.0
    refused: int = 0


@dataclass
class FailureThrottle:
    """Per-peer failure counter with a sliding window; times come from the caller's clock."""

    limit: int
    window_s: float
    block_s: float
    max_peers: int = MAX_PEERS
    _peers: OrderedDict[str, _Peer] = field(default_factory=OrderedDict)
    #: attempts refused because their peer was blocked, since start (for the status API)
    refused_total: int = 0

    def __post_init__(self) -> None:
        if self.limit < 1 or self.window_s <= 0 or self.block_s <= 0:
            raise ValueError("limit must be >= 1 and window_s, block_s > 0")

    def retry_after(self, peer: str, now: float) -> float | None:
        """Seconds this peer must still wait, or None when it may try; counts a refusal."""
        state = self._peers.get(peer)
        if state is None or state.blocked_until <= now:
            return None
        state.refused += 1
        self.refused_total += 1
        return state.blocked_until - now

    def failed(self, peer: str, now: float) -> Burst | None:
        """Record a failed authentication; a Burst when it makes the peer blocked."""
        state = self._peers.pop(peer, None)
        if state is None:
            state = _Peer(deque(maxlen=self.limit))
        self._peers[peer] = state  # most recently heard of last
        self._forget_stale()
        if state.blocked_until > now:
            return None  # already blocked (only reachable if the caller skipped retry_after)
        if state.blocked_until:  # a block ran out: start counting afresh
            state.failures.clear()
            state.blocked_until = 0.0
            state.refused = 0
        failures = state.failures
        while failures and failures[0] <= now - self.window_s:
            failures.popleft()
        failures.append(now)
        if len(failures) < self.limit:
            return None
        state.blocked_until = now + self.block_s
        return Burst(peer, len(failures), self.window_s, self.block_s)

    def refused_in_block(self, peer: str) -> int:
        """Attempts refused during this peer's current (or last) block."""
        state = self._peers.get(peer)
        return state.refused if state is not None else 0

    def blocked_peers(self, now: float) -> list[str]:
        return [p for p, s in self._peers.items() if s.blocked_until > now]

    def _forget_stale(self) -> None:
        while len(self._peers) > self.max_peers:
            self._peers.popitem(last=False)


def wait_words(seconds: float) -> str:
    """'wait 12 s' for a close reason or a log line (whole seconds, rounded up)."""
    return f"wait {max(1, math.ceil(seconds))} s"
