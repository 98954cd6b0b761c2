"""Live replay: the worker rewinds its own consumer on a topic (issue 17).

`skyreel replay TOPIC` on a group with live members (a running `skyreel worker` or `skyreel run`)
cannot commit offsets from outside the group, so it sends a ``replay`` operator command with the
target offset of every partition (computed by the CLI from --offset / --since). The commands
agent (agents/commands.py) hands it to :meth:`Rewinder.rewind`, which

1. pauses the topic's partitions on the worker's own Faust consumer (no new message of them is
   handed to the agents), waits a moment for the message in flight to be delivered,
2. seeks them to the targets (Faust's ``consumer.seek_wait``: the consumer thread seeks and the
   read offsets are reset, so the messages are read again), and
3. resumes them.

One consumer group stays in use. The committed offsets do not move back: Faust only commits
offsets past the committed one, so the re-read messages are handled and the group goes on
committing where it was. A worker that stops mid-replay therefore does not finish the replay on
restart (run it again). Only rewinds are done: a target at or past the consumer's position would
skip unread messages, so such a partition is left alone (and reported as unchanged).

Handlers are idempotent (every step result, request, copy result and command is checked against
PostgreSQL before it changes anything), so re-read messages render, publish or store nothing a
second time. The rewinder is also a Faust sensor: it counts the re-read messages the agents
finish per partition and logs when a partition has caught up with where it was (the test reads
that line).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

import faust
from faust.sensors import Sensor
from faust.types import TP

logger = logging.getLogger(__name__)

#: How long the partitions stay paused before the seek, so a message already being delivered
#: to its agent is through (its read offset would otherwise overwrite the rewound one).
PAUSE_GRACE_S = 0.3


class ReplayRefused(Exception):
    """This worker cannot rewind that topic (it does not consume it, or owns no partition)."""


@dataclass
class _Progress:
    command_id: str
    start: int  # the target offset
    stop: int  # the consumer's position before the rewind (exclusive)
    reread: int = 0


class Rewinder(Sensor):  # type: ignore[misc]
    """Seeks the worker's consumer back on a topic and tracks the re-read."""

    def __init__(self, app: faust.App, topics: frozenset[str]) -> None:
        super().__init__()
        self.app = app
        self.topics = topics
        self._progress: dict[tuple[str, int], _Progress] = {}

    async def rewind(self, command_id: str, topic: str, offsets: dict[int, int]) -> dict[str, Any]:
        """Rewind the assigned partitions of ``topic`` to ``offsets`` (partition -> offset)."""
        if topic not in self.topics:
            consumed = ", ".join(sorted(self.topics))
            raise ReplayRefused(f"the worker does not consume {topic!r} (it consumes: {consumed})")
        consumer = self.app.consumer
        assigned = {tp.partition for tp in consumer.assignment() if tp.topic == topic}
        mine = {p: o for p, o in offsets.items() if p in assigned}
        not_assigned = sorted(set(offsets) - assigned)
        if not mine:
            raise ReplayRefused(
                f"this worker holds no partition of {topic!r} (asked: {sorted(offsets)}); "
                "run the replay again once it is assigned"
            )
        positions: dict[int, int] = {}
        for p in mine:
            pos = await consumer.position(TP(topic, p))
            positions[p] = int(pos) if pos is not None else 0
        seek = {p: o for p, o in mine.items() if o < positions[p]}
        unchanged = sorted(p for p in mine if p not in seek)
        tps = [TP(topic, p) for p in sorted(seek)]
        if tps:
            consumer.pause_partitions(tps)
            try:
                await asyncio.sleep(PAUSE_GRACE_S)
                await consumer.seek_wait({TP(topic, p): seek[p] for p in seek})
                for p, o in seek.items():
                    self._progress[(topic, p)] = _Progress(command_id, o, positions[p])
            finally:
                consumer.resume_partitions(tps)
        for p in sorted(seek):
            logger.info(
                "replay %s: %s[%d] rewound %d -> %d", command_id, topic, p, positions[p], seek[p]
            )
        return {
            "topic": topic,
            "rewound": {str(p): [positions[p], seek[p]] for p in sorted(seek)},
            "unchanged": unchanged,
            "not_assigned": not_assigned,
        }

    def on_stream_event_out(
        self, tp: TP, offset: int, stream: object, event: object, state: object = None
    ) -> None:
        """A message was handled by its agent: count it if it is a re-read one."""
        progress = self._progress.get((tp.topic, tp.partition))
        if progress is None or offset < progress.start:
            return
        progress.reread += 1
        if offset >= progress.stop - 1:
            del self._progress[(tp.topic, tp.partition)]
            logger.info(
                "replay %s: %s[%d] re-read %d messages (%d..%d), caught up",
                progress.command_id,
                tp.topic,
                tp.partition,
                progress.reread,
                progress.start,
                progress.stop - 1,
            )
