"""Keep an outage to a few log lines: the broker client's own errors, repeated per retry.

While a broker is down, aiokafka logs "Unable connect to node …", "Failed fetch messages …" and
"Unable to update metadata …" at ERROR on every retry of every client — tens of kilobytes a
second, which buries the one line that says what happened. :class:`RepeatFilter` lets the first
of each kind through, holds back the repeats for ``window_s`` and then lets one through again
with how many it held back. Our own state-change lines (agents/guard.py, the supervisor) are not
affected: only the noisy libraries are filtered.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

NOISY = ("aiokafka", "kafka", "faust", "mode")


class RepeatFilter(logging.Filter):
    """Pass the first record of a kind (logger + message template) per window; count the rest."""

    def __init__(
        self,
        window_s: float = 30.0,
        prefixes: tuple[str, ...] = NOISY,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self.window_s = window_s
        self.prefixes = prefixes
        self.clock = clock
        self._seen: dict[tuple[str, str], tuple[float, int]] = {}

    def _noisy(self, name: str) -> bool:
        return any(name == p or name.startswith(p + ".") for p in self.prefixes)

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING or not self._noisy(record.name):
            return True
        if getattr(record, "_repeat_checked", False):  # passed a logger's filter already
            return True
        record._repeat_checked = True
        key = (record.name, str(record.msg))
        now = self.clock()
        since, held = self._seen.get(key, (0.0, -1))
        if held >= 0 and now - since < self.window_s:
            self._seen[key] = (since, held + 1)
            return False
        self._seen[key] = (now, 0)
        if held > 0:
            record.msg = f"{record.msg} (and {held} more like it in the last {self.window_s:.0f} s)"
        if len(self._seen) > 1000:  # a flood of distinct templates: forget the oldest
            for old in sorted(self._seen, key=lambda k: self._seen[k][0])[:500]:
                del self._seen[old]
        return True


# the broker client's module loggers (a filter on a logger sees only its own records)
_CLIENT_LOGGERS = (
    "aiokafka",
    "aiokafka.conn",
    "aiokafka.cluster",
    "aiokafka.consumer.consumer",
    "aiokafka.consumer.fetcher",
    "aiokafka.consumer.group_coordinator",
    "aiokafka.producer.producer",
    "aiokafka.producer.sender",
)


def quiet_repeats(window_s: float = 30.0) -> RepeatFilter:
    """Install one filter on the broker client's loggers — they keep it when a framework (Faust)
    configures logging again — and on the root logger's handlers."""
    found = RepeatFilter(window_s)
    names = {*_CLIENT_LOGGERS}
    names |= {n for n in logging.root.manager.loggerDict if found._noisy(n)}
    for name in sorted(names):
        logger = logging.getLogger(name)
        if not any(isinstance(f, RepeatFilter) for f in logger.filters):
            logger.addFilter(found)
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, RepeatFilter) for f in handler.filters):
            handler.addFilter(found)
    return found
