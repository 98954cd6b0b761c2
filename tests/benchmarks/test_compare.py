"""benchmarks/_compare.py: interleaving, per-round ratios and their spread, the cache drop."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from benchmarks._compare import (
    CacheMethod,
    Round,
    Spread,
    check_rounds,
    drop_cache,
    figure_spread,
    interleave,
    ratio_spread,
    ratios,
    resident_fraction,
    side_order,
    spread,
    weakest,
)


def test_the_order_alternates_so_each_side_goes_first_as_often() -> None:
    assert [side_order(["a", "b"], i) for i in range(4)] == [
        ("a", "b"),
        ("b", "a"),
        ("a", "b"),
        ("b", "a"),
    ]
    assert side_order(["a", "b", "c"], 1) == ("c", "b", "a")
    with pytest.raises(ValueError, match="two distinct"):
        side_order(["a"], 0)
    with pytest.raises(ValueError, match="two distinct"):
        side_order(["a", "a"], 0)


def test_interleave_runs_a_b_b_a_with_the_hook_before_every_run() -> None:
    log: list[str] = []
    counter = {"a": 0, "b": 0}

    def side(name: str) -> dict[str, float]:
        log.append(name)
        counter[name] += 1
        return {f"{name}_s": float(counter[name])}

    reported: list[Round] = []
    rounds = interleave(
        {"a": lambda: side("a"), "b": lambda: side("b")},
        3,
        before=lambda name: log.append(f"drop:{name}"),
        report=reported.append,
    )
    assert log == [
        "drop:a", "a", "drop:b", "b",
        "drop:b", "b", "drop:a", "a",
        "drop:a", "a", "drop:b", "b",
    ]  # fmt: skip
    assert [r.order for r in rounds] == [("a", "b"), ("b", "a"), ("a", "b")]
    assert [r.index for r in rounds] == [1, 2, 3] and reported == rounds
    assert [r.figures["b_s"] for r in rounds] == [1.0, 2.0, 3.0]


def test_fewer_than_three_rounds_or_colliding_figures_are_refused() -> None:
    with pytest.raises(ValueError, match="at least 3"):
        interleave({"a": lambda: {"x": 1.0}, "b": lambda: {"y": 1.0}}, 2)
    with pytest.raises(ValueError, match="already set"):
        interleave({"a": lambda: {"x": 1.0}, "b": lambda: {"x": 2.0}}, 3)
    assert check_rounds(5) == 5
    with pytest.raises(ValueError):
        check_rounds(1)


def test_ratios_are_per_round_and_the_spread_is_their_median_min_max() -> None:
    rounds = [
        Round(1, ("a", "b"), {"a": 2.0, "b": 1.0}),
        Round(2, ("b", "a"), {"a": 9.0, "b": 3.0}),
        Round(3, ("a", "b"), {"a": 1.0, "b": 4.0}),
    ]
    assert ratios(rounds, "a", "b") == [2.0, 3.0, 0.25]
    # Per round, not a median against a median (median a / median b would be 2 / 3).
    assert ratio_spread(rounds, "a", "b") == Spread(2.0, 0.25, 3.0)
    assert figure_spread(rounds, "b") == Spread(3.0, 1.0, 4.0)
    assert spread([4.0, 1.0, 2.0, 3.0]) == Spread(2.5, 1.0, 4.0)
    with pytest.raises(ValueError):
        spread([])
    with pytest.raises(ValueError, match="is 0"):
        ratios([Round(1, ("a", "b"), {"a": 1.0, "b": 0.0})], "a", "b")


def test_spread_fields_format_for_a_last_line() -> None:
    assert Spread(1.23456, 0.5, 2.0).fields("ratio") == (
        "ratio=1.235 ratio_min=0.500 ratio_max=2.000"
    )
    assert Spread(57.34, 40.0, 60.0).fields("speedup", 1) == (
        "speedup=57.3 speedup_min=40.0 speedup_max=60.0"
    )


def test_the_weakest_cache_method_is_the_one_reported() -> None:
    assert weakest([CacheMethod.DROP_CACHES, CacheMethod.DROP_CACHES]) is CacheMethod.DROP_CACHES
    assert weakest([CacheMethod.DROP_CACHES, CacheMethod.FADVISE]) is CacheMethod.FADVISE
    assert weakest([CacheMethod.FADVISE, CacheMethod.NONE]) is CacheMethod.NONE
    assert weakest([]) is CacheMethod.NONE


def _cached_file(tmp_path: Path) -> Path:
    path = tmp_path / "data.bin"
    path.write_bytes(os.urandom(4 * 1024 * 1024))
    path.read_bytes()  # now in the page cache (written and read)
    return path


def test_fadvise_drops_a_files_pages_and_mincore_sees_it(tmp_path: Path) -> None:
    path = _cached_file(tmp_path)
    assert resident_fraction([path]) == pytest.approx(1.0, abs=0.01)
    assert drop_cache([tmp_path], allow_global=False) is CacheMethod.FADVISE
    assert resident_fraction([tmp_path]) == pytest.approx(0.0, abs=0.01)
    assert drop_cache([], allow_global=False) is CacheMethod.NONE


@pytest.mark.skipif(
    os.geteuid() != 0 or not os.access("/proc/sys/vm/drop_caches", os.W_OK),
    reason="dropping the whole page cache needs root",
)
def test_drop_caches_as_root_empties_the_cache_of_a_file(tmp_path: Path) -> None:
    path = _cached_file(tmp_path)
    assert drop_cache([]) is CacheMethod.DROP_CACHES
    assert resident_fraction([path]) == pytest.approx(0.0, abs=0.01)
