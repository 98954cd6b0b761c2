"""Issue 18: the worker settles its heap once (agents/heap.py): one collection, then every live
object frozen, so later full collections walk only what came after."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from agents import heap


@pytest.fixture
def unfrozen() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()  # the test process's heap goes back to normal collection


class Cycle:
    def __init__(self) -> None:
        self.me = self


def test_settle_frees_the_garbage_and_freezes_what_lives(unfrozen: None) -> None:
    assert gc.get_freeze_count() == 0
    kept = [Cycle() for _ in range(100)]
    for _ in range(50):
        Cycle()  # garbage only the cycle collector frees
    done = heap.settle()
    assert done.collected >= 50
    assert done.frozen == gc.get_freeze_count() >= len(kept)
    assert done.pause_ms >= 0
    # a full collection now walks only what was allocated since
    fresh = [Cycle() for _ in range(10)]
    assert len(gc.get_objects(generation=2)) < done.frozen
    del fresh
