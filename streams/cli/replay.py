"""Replay: rewind a consumer group's committed offsets on a topic so its agents reprocess.

    skyreel replay TOPIC --since 2024-05-01T10:00:00Z [--group G]
    skyreel replay TOPIC --offset 0 [--group G]

TOPIC is a full topic name or a short one (`step-results`), which gets the configured prefix.
The group defaults to the Faust worker's (`SKYREEL_APP_ID`). Every handler is idempotent, so a
replay reprocesses without duplicating rows, steps, copies or renders.

Stop the workers of the group first: the offsets are committed from outside the group, which a
broker accepts only while the group has no members (a live member would overwrite them at its
next commit anyway); the command reports the refusal and changes nothing.

Tansu (the embedded broker) keeps listing members that left and refuses outside commits to any
group that ever had one, so there a replay works for a fresh group: rewind it, then start the
workers with that `SKYREEL_APP_ID` (tests/streams/test_replay.py does exactly this).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, datetime

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from streams.topics import Names

logger = logging.getLogger(__name__)


class ReplayError(RuntimeError):
    """The replay was refused (active group, unknown topic); nothing was changed."""


@dataclass(frozen=True)
class Rewind:
    partition: int
    old: int | None  # committed offset before (None: nothing committed)
    new: int


def resolve_topic(topic: str, names: Names) -> str:
    short = {t.removeprefix(f"{names.prefix}."): t for t in names.source_topics()}
    return short.get(topic, topic)


def parse_since(value: str) -> datetime:
    """ISO 8601; a time without zone is taken as UTC."""
    when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return when if when.tzinfo else when.replace(tzinfo=UTC)


async def lag(bootstrap: str, group: str, topics: list[str]) -> dict[TopicPartition, int]:
    """Messages per partition the group has not committed yet (end offset - committed)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        await consumer.topics()
        tps = [TopicPartition(t, p) for t in topics for p in consumer.partitions_for_topic(t) or ()]
        end = await consumer.end_offsets(tps)
        return {tp: end[tp] - (await consumer.committed(tp) or 0) for tp in tps}
    finally:
        await consumer.stop()


async def replay(
    bootstrap: str,
    topic: str,
    group: str,
    *,
    offset: int | None = None,
    since: datetime | None = None,
    group_timings: dict[str, int] | None = None,
) -> list[Rewind]:
    """Commit `offset` (clamped to what the log holds) or the first offset at/after `since`
    for every partition of `topic` in `group`. Raises ReplayError if the group is in use."""
    if (offset is None) == (since is None):
        raise ValueError("give exactly one of offset or since")
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        **(group_timings or {}),
    )
    await consumer.start()
    try:
        if topic not in await consumer.topics():
            raise ReplayError(f"no topic {topic!r}")
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        consumer.assign(tps)
        begin = await consumer.beginning_offsets(tps)
        end = await consumer.end_offsets(tps)
        if since is not None:
            ms = int(since.timestamp() * 1000)
            found = await consumer.offsets_for_times({tp: ms for tp in tps})
            # No message at/after `since`: the end. (Tansu answers a future time with offset 0
            # and an older timestamp instead of "none", so the timestamp is checked too.)
            target = {
                tp: found[tp].offset
                if found.get(tp) is not None and found[tp].timestamp >= ms
                else end[tp]
                for tp in tps
            }
        else:
            assert offset is not None
            target = {tp: min(max(offset, begin[tp]), end[tp]) for tp in tps}
        old = {tp: await consumer.committed(tp) for tp in tps}
        try:
            await consumer.commit(target)
        except KafkaError as exc:
            # A broker accepts commits from outside a group only while it has no members.
            raise ReplayError(
                f"group {group!r} refused the commit ({type(exc).__name__}): it has active "
                "members; stop its workers first"
            ) from None
    finally:
        await consumer.stop()
    rewinds = [Rewind(tp.partition, old[tp], target[tp]) for tp in tps]
    for r in rewinds:
        logger.info("%s[%d] group %s: %s -> %d", topic, r.partition, group, r.old, r.new)
    return rewinds


def run_replay(
    bootstrap: str,
    names: Names,
    topic: str,
    group: str,
    offset: int | None,
    since: str | None,
    group_timings: dict[str, int] | None = None,
) -> int:
    """The CLI body: prints one line per partition; 1 when refused."""
    full = resolve_topic(topic, names)
    try:
        when = parse_since(since) if since else None
        rewinds = asyncio.run(
            replay(bootstrap, full, group, offset=offset, since=when, group_timings=group_timings)
        )
    except (ReplayError, ValueError) as exc:
        print(f"replay refused: {exc}")
        return 1
    for r in rewinds:
        print(f"{full}[{r.partition}] {group}: {r.old} -> {r.new}")
    return 0
