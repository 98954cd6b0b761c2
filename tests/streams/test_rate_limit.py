"""The token bucket behind the hub's per-detector card-event limit (streams/hub/rate_limit.py):
pure, so tested with a hand-driven clock."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams.hub.rate_limit import DetectorBuckets, TokenBucket


def test_a_full_bucket_gives_its_burst_then_one_token_per_interval() -> None:
    bucket = TokenBucket(rate=2.0, burst=3)
    assert [bucket.take(10.0) for _ in range(4)] == [True, True, True, False]
    assert bucket.full_in(10.0) == pytest.approx(1.5)
    assert not bucket.take(10.4)  # 0.8 of a token
    assert bucket.take(10.5)
    assert not bucket.take(10.5)
    assert bucket.take(100.0) and bucket.take(100.0) and bucket.take(100.0)  # never above burst
    assert not bucket.take(100.0)


def test_waiting_full_in_seconds_refills_the_whole_burst() -> None:
    bucket = TokenBucket(rate=0.5, burst=4)
    while bucket.take(0.0):
        pass
    wait = bucket.full_in(0.0)
    assert wait == pytest.approx(8.0)
    assert [bucket.take(wait) for _ in range(5)] == [True] * 4 + [False]


def test_a_clock_going_backwards_adds_no_tokens() -> None:
    bucket = TokenBucket(rate=1.0, burst=1)
    assert bucket.take(50.0)
    assert not bucket.take(10.0)


@pytest.mark.parametrize(("rate", "burst"), [(0.0, 5), (-1.0, 5), (1.0, 0)])
def test_a_bucket_that_could_never_give_a_token_is_refused(rate: float, burst: float) -> None:
    with pytest.raises(ValueError, match="rate > 0 and burst >= 1"):
        TokenBucket(rate=rate, burst=burst)


@given(
    rate=st.floats(0.01, 100),
    burst=st.integers(1, 100),
    gaps=st.lists(st.floats(0, 10), min_size=1, max_size=200),
)
def test_tokens_taken_never_exceed_burst_plus_rate_times_elapsed(
    rate: float, burst: int, gaps: list[float]
) -> None:
    bucket = TokenBucket(rate=rate, burst=burst)
    now, taken = 0.0, 0
    for gap in gaps:
        now += gap
        taken += bucket.take(now)
    assert taken <= burst + rate * now + 1e-6


def test_each_detector_has_its_own_bucket_kept_across_its_reconnections() -> None:
    buckets = DetectorBuckets()
    flood = buckets.bucket("station-a", 1.0, 2)
    assert flood.take(0.0) and flood.take(0.0) and not flood.take(0.0)
    assert not buckets.bucket("station-a", 1.0, 2).take(0.0)  # a reconnect starts no fresh one
    assert buckets.bucket("station-b", 1.0, 2).take(0.0)  # the other station is not starved
    assert buckets.bucket("station-a", 5.0, 10).take(0.0)  # new settings: a new bucket
