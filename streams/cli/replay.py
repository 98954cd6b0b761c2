"""Replay: make the agents read a topic again from an offset or a time.

    skyreel replay TOPIC --since 2024-05-01T10:00:00Z [--group G] [--offline]
    skyreel replay TOPIC --offset 0 [--group G] [--offline]

TOPIC is a full topic name or a short one (`step-results`), which gets the configured prefix.
The group defaults to the Faust worker's (`SKYREEL_APP_ID`). The target of every partition is
the first offset at/after --since (or --offset, clamped to what the log holds). Two ways:

- **Offline** (the group has no members): the targets are committed for the group directly, and
  its workers read from there when they start.
- **Live** (the group has members, e.g. inside `skyreel run` or next to a running `skyreel
  worker`; a broker refuses commits from outside a live group): the command asks the running
  worker, through a ``replay`` operator command on the commands topic, to rewind itself: it
  pauses the topic's partitions, seeks its consumer to the targets and resumes
  (agents/replay.py), and stores the outcome like every operator command. Needs
  SKYREEL_DATABASE_URL too (to read the outcome). With no worker answering, the command waits on
  the commands topic and applies when the worker starts (on Tansu, which refuses outside commits
  to any group that ever had members, that is the way to replay with the workers stopped).

Why one group (and not a dedicated replay consumer): the worker's own handlers, with their
locks and ordering per partition, handle the re-read messages, and nothing is written to the
topics again. Every handler is idempotent (results, requests, copies and commands are checked
against PostgreSQL first), so a replay renders, publishes, copies or stores nothing twice.
"""

from __future__ import annotations

import asyncio
import getpass
import logging
from dataclasses import dataclass
from datetime import UTC, datetime

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from storage.enums import CommandAction
from streams import commands
from streams.cli.commands import send_command
from streams.kafka import group_timings
from streams.settings import Settings
from streams.topics import Names

logger = logging.getLogger(__name__)


class ReplayError(RuntimeError):
    """The replay was refused (active group, unknown topic); nothing was changed."""


class GroupActive(ReplayError):
    """The broker refused the offline commit (the group has members): ``targets`` is what the
    replay would have committed (partition -> offset), for the live path."""

    def __init__(self, message: str, targets: dict[int, int]) -> None:
        super().__init__(message)
        self.targets = targets


@dataclass(frozen=True)
class Rewind:
    partition: int
    old: int | None  # committed offset before (None: nothing committed)
    new: int


def resolve_topic(topic: str, names: Names) -> str:
    short = {t.removeprefix(f"{names.prefix}."): t for t in names.source_topics()}
    return short.get(topic, topic)


def parse_since(value: str) -> datetime:
    """ISO 8601; a time without zone is taken as UTC. ValueError names the bad value."""
    try:
        when = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"--since {value!r} is not an ISO 8601 time (e.g. 2024-05-01T10:00:00Z)"
        ) from None
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
            raise ReplayError(f"no topic {topic!r} on the broker (`skyreel status` lists them)")
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
            raise GroupActive(
                f"group {group!r} refused the commit ({type(exc).__name__}): it has members",
                {tp.partition: target[tp] for tp in tps},
            ) from None
    finally:
        await consumer.stop()
    rewinds = [Rewind(tp.partition, old[tp], target[tp]) for tp in tps]
    for r in rewinds:
        logger.info("%s[%d] group %s: %s -> %d", topic, r.partition, group, r.old, r.new)
    return rewinds


def run_replay(
    settings: Settings,
    topic: str,
    group: str,
    offset: int | None,
    since: str | None,
    *,
    offline: bool = False,
) -> int:
    """The CLI body: offline rewind, else (group in use) the live one; 1 when refused."""
    names = Names(settings.topic_prefix)
    full = resolve_topic(topic, names)
    try:
        when = parse_since(since) if since else None
        rewinds = asyncio.run(
            replay(
                settings.kafka_url,
                full,
                group,
                offset=offset,
                since=when,
                group_timings=group_timings(settings),
            )
        )
    except GroupActive as exc:
        if offline or group != settings.app_id or not settings.database_url:
            why = (
                "--offline"
                if offline
                else f"--group {group!r} is not the worker's group ({settings.app_id!r})"
                if group != settings.app_id
                else "SKYREEL_DATABASE_URL is not set (the live replay reads its outcome there)"
            )
            print(
                f"replay refused: {exc}; the live replay (the worker rewinds itself) is not "
                f"possible: {why}. Stop the group's consumers and run it again, or run it "
                "without --offline with SKYREEL_DATABASE_URL set for the worker's group"
            )
            return 1
        return live_replay(settings, full, exc.targets)
    except (ReplayError, ValueError) as exc:
        print(f"replay refused: {exc}")
        return 1
    for r in rewinds:
        print(f"{full}[{r.partition}] {group}: {r.old} -> {r.new}")
    return 0


def live_replay(settings: Settings, topic: str, targets: dict[int, int]) -> int:
    """Ask the running worker to rewind itself (a ``replay`` operator command)."""
    cmd = commands.new_command(
        CommandAction.REPLAY, f"cli:{getpass.getuser()}", topic=topic, offsets=targets
    )
    print(f"group {settings.app_id!r} is in use: asking the running worker to rewind {topic}")
    found = send_command(settings, cmd)
    if found is None:
        print(
            "no worker answered: the replay applies when the worker starts "
            "(`skyreel status` shows whether it runs)"
        )
        return 0
    if not found.ok:
        print(f"replay refused by the worker: {found.message}")
        return 1
    rewound = found.result.get("rewound") or {}
    for p, span in sorted(rewound.items(), key=lambda kv: int(kv[0])):
        print(f"{topic}[{p}] {settings.app_id} (live): {span[0]} -> {span[1]}")
    for p in found.result.get("unchanged") or []:
        print(f"{topic}[{p}] {settings.app_id} (live): nothing before the target to read again")
    for p in found.result.get("not_assigned") or []:
        print(
            f"{topic}[{p}] not rewound: another worker holds it; run the replay again to reach it"
        )
    return 0
