"""The failed-authentication throttle (streams/hub/throttle.py), pure: times are given."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams.hub.throttle import FailureThrottle, wait_words


def test_the_limit_th_failure_in_the_window_blocks_the_peer_once() -> None:
    throttle = FailureThrottle(limit=3, window_s=10, block_s=30)
    assert throttle.failed("a", 0.0) is None
    assert throttle.failed("a", 1.0) is None
    assert throttle.retry_after("a", 1.5) is None
    burst = throttle.failed("a", 2.0)
    assert burst is not None and (burst.peer, burst.failures) == ("a", 3)
    assert throttle.retry_after("a", 2.0) == pytest.approx(30.0)
    assert throttle.retry_after("a", 31.0) == pytest.approx(1.0)
    assert throttle.refused_in_block("a") == 2 and throttle.refused_total == 2
    assert throttle.retry_after("b", 3.0) is None  # another peer is not affected
    assert throttle.blocked_peers(3.0) == ["a"]


def test_failures_older_than_the_window_do_not_count() -> None:
    throttle = FailureThrottle(limit=3, window_s=10, block_s=30)
    for t in (0.0, 5.0, 11.0, 16.0, 22.0):  # never three within ten seconds
        assert throttle.failed("a", t) is None
    assert throttle.retry_after("a", 23.0) is None


def test_a_block_runs_out_and_counting_starts_afresh() -> None:
    throttle = FailureThrottle(limit=2, window_s=10, block_s=5)
    throttle.failed("a", 0.0)
    assert throttle.failed("a", 1.0) is not None
    assert throttle.retry_after("a", 6.0) is None  # blocked until 6.0
    assert throttle.failed("a", 6.5) is None  # one failure after the block: not blocked again
    assert throttle.failed("a", 7.0) is not None


def test_the_table_of_peers_is_bounded() -> None:
    throttle = FailureThrottle(limit=5, window_s=10, block_s=5, max_peers=100)
    for i in range(1000):
        throttle.failed(f"10.0.{i // 256}.{i % 256}", float(i))
    assert len(throttle._peers) == 100


@given(st.lists(st.floats(min_value=0, max_value=1000), max_size=60), st.integers(1, 8))
def test_never_blocked_with_fewer_than_limit_failures_in_any_window(
    times: list[float], limit: int
) -> None:
    throttle = FailureThrottle(limit=limit, window_s=10, block_s=10)
    times = sorted(times)
    for i, t in enumerate(times):
        if throttle.retry_after("p", t) is not None:
            continue
        burst = throttle.failed("p", t)
        if burst is not None:
            recent = [x for x in times[: i + 1] if x > t - 10]
            assert len(recent) >= limit


def test_wait_words_round_up_to_whole_seconds() -> None:
    assert wait_words(0.2) == "wait 1 s"
    assert wait_words(29.01) == "wait 30 s"


def test_nonsense_limits_are_refused() -> None:
    with pytest.raises(ValueError, match="limit must be"):
        FailureThrottle(limit=0, window_s=10, block_s=10)
