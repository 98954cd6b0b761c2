"""The worker's heap, settled once it has started, so garbage collection stops pausing it.

A Faust worker holds ~160,000 long-lived objects after start-up (modules, the app, its agents,
topics, the SQLAlchemy and aiokafka machinery). CPython's full (generation 2) collection walks
all of them: measured at 100-190 ms in the worker, and one lands in almost every large batch
(a 1,000-step fan-out's promoting `UPDATE` allocates ~1,000 rows' worth of objects), so it sat
between a step becoming ready and its commit (issue 18; docs/architecture.md, "Where the time
goes").

`settle` runs one full collection (start-up garbage goes first) and then `gc.freeze()`s what is
left: frozen objects are never walked again, so later full collections only walk what the
worker allocated since. Nothing frozen is ever freed by the cycle collector, which is why it
happens once, after start-up, when what is alive is what lives for the whole process. Reference
counting frees everything else as before.
"""

from __future__ import annotations

import gc
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class Settled:
    frozen: int  # objects moved to the permanent generation
    collected: int  # unreachable objects the collection before freed
    pause_ms: float  # how long the collection and the freeze took


def settle() -> Settled:
    """Collect once, then freeze every object still alive (see the module's docstring)."""
    began = time.perf_counter()
    collected = gc.collect()
    gc.freeze()
    return Settled(
        frozen=gc.get_freeze_count(),
        collected=collected,
        pause_ms=(time.perf_counter() - began) * 1000,
    )
