"""The step attempts a worker holds: claimed and executing, or finished with their result sent
a moment ago.

A RUNNING agent step claimed by this worker that it does not hold lost its result on the way
(sent into a broker that then died, or a batch that failed after its claim): nothing would ever
finish it but the kind's `timeout_s` (up to 30 min for photos). The worker's own reconciliation
requeues it instead (agents/pipeline/reconcile.py), as it requeues the steps of a worker that
died. A result is held for `RELEASED_S` after it was sent, so one on its way to the orchestrator
is never taken for lost; should it arrive after all, it is stale (the attempt was closed as
`lost`) and the new attempt's result counts. Pure: the clock is given.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

RELEASED_S = 60.0  # how long a sent result is waited for before its attempt counts as lost

#: (execution id, step name, attempt)
Key = tuple[int, str, int]


class Held:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._released: dict[Key, float] = {}  # result sent at (clock)
        self._taken: set[Key] = set()

    def take(self, keys: Iterable[Key]) -> None:
        """Before claiming: these attempts are (about to be) executing here."""
        self._taken.update(keys)

    def drop(self, keys: Iterable[Key]) -> None:
        """Not won by the claim: never held."""
        self._taken.difference_update(keys)

    def release(self, keys: Iterable[Key]) -> None:
        """Finished here (result sent, or the batch gave up): held a little longer."""
        now = self._clock()
        for key in keys:
            self._taken.discard(key)
            self._released[key] = now
        cutoff = now - RELEASED_S
        for key in [k for k, at in self._released.items() if at < cutoff]:
            del self._released[key]

    def holds(self, key: Key) -> bool:
        if key in self._taken:
            return True
        at = self._released.get(key)
        return at is not None and self._clock() - at < RELEASED_S
