"""A token bucket: how many card events one detector may send, and how long to wait when over.

Pure (the caller passes the clock), so it is tested directly. The hub keeps one bucket per
detector id (:class:`DetectorBuckets`), across that detector's reconnections: a flood that is
closed and reconnects does not start with a full bucket again. A station inserting cards by
hand, or re-announcing its few present cards after a reconnect, stays far below the burst.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class TokenBucket:
    """``burst`` tokens at most, ``rate`` new tokens per second; one event takes one token."""

    rate: float
    burst: float
    tokens: float = -1.0  # -1: full at the first look
    stamp: float = 0.0

    def __post_init__(self) -> None:
        if self.rate <= 0 or self.burst < 1:
            raise ValueError(f"a token bucket needs rate > 0 and burst >= 1, not {self}")

    def _refill(self, now: float) -> None:
        if self.tokens < 0:
            self.tokens, self.stamp = self.burst, now
            return
        elapsed = max(0.0, now - self.stamp)
        self.tokens = min(self.burst, self.tokens + elapsed * self.rate)
        self.stamp = now

    def take(self, now: float) -> bool:
        """Take one token if there is one; False when the caller is over its rate."""
        self._refill(now)
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False

    def full_in(self, now: float) -> float:
        """Seconds until the bucket holds ``burst`` tokens again: a detector told to wait this
        long can announce all its cards at once when it is back."""
        self._refill(now)
        return (self.burst - self.tokens) / self.rate


@dataclass
class DetectorBuckets:
    """One bucket per detector id (the ids are authenticated, so this holds no more entries
    than there are registered detectors that connected to this replica)."""

    buckets: dict[str, TokenBucket] = field(default_factory=dict)

    def bucket(self, detector_id: str, rate: float, burst: float) -> TokenBucket:
        b = self.buckets.get(detector_id)
        if b is None or (b.rate, b.burst) != (rate, burst):
            b = self.buckets[detector_id] = TokenBucket(rate, burst)
        return b
