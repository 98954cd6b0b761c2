"""Raw aiokafka helpers for the processes that are not Faust workers (the hub, tests, tools).

Topics are created explicitly with the configured partition count (an auto-created topic gets
the broker's default, which breaks co-partitioning). Producers wait for all in-sync replicas.
Consumer group timings are short only for a local single broker (Tansu holds JoinGroup for half
the session timeout); production keeps aiokafka's defaults.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from streams.settings import Settings

logger = logging.getLogger(__name__)

#: A producer's send as the processes pass it around: (key, value), awaited until written.
Send = Callable[[bytes, bytes], Awaitable[object]]

#: A full 20,000-file list is one record (~2.5 MB); leave room up to the largest frame.
MAX_RECORD_BYTES = 32 * 1024 * 1024


#: Fetch wait for a local single broker. Tansu holds every fetch for the full wait instead of
#: answering when data arrives (measured ~260 ms per hop at Faust's hard-coded 1500 ms).
LOCAL_FETCH_MAX_WAIT_MS = 10


def group_timings(settings: Settings) -> dict[str, int]:
    """Consumer-group session/heartbeat settings for this deployment (empty: library defaults)."""
    if settings.uses_local_kafka_tuning:
        # Tansu holds a fetch for the whole fetch_max_wait (see agents/app.py): keep it short.
        return {
            "session_timeout_ms": 2000,
            "heartbeat_interval_ms": 500,
            "fetch_max_wait_ms": LOCAL_FETCH_MAX_WAIT_MS,
        }
    return {}


class TopicError(RuntimeError):
    """The broker refused to create a topic (other than: it exists already)."""


_TOPIC_ALREADY_EXISTS = 36


async def ensure_topics(bootstrap: str, topics: Iterable[str], partitions: int) -> None:
    """Create the topics that do not exist yet (idempotent; existing ones are left alone, with a
    warning when their partition count differs from ``partitions``); raises TopicError."""
    wanted = list(topics)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=15_000)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [t for t in wanted if t not in existing]
        if missing:
            new = [NewTopic(t, num_partitions=partitions, replication_factor=1) for t in missing]
            try:
                resp = await admin.create_topics(new)
            except TopicAlreadyExistsError:
                resp = None  # another process created them between list and create
            for name, code, *_ in getattr(resp, "topic_errors", ()):
                if code not in (0, _TOPIC_ALREADY_EXISTS):
                    raise TopicError(f"cannot create topic {name} (error {code})")
            logger.info("created topics %s (%d partitions)", ", ".join(missing), partitions)
        for meta in await admin.describe_topics([t for t in wanted if t in existing]):
            if len(meta["partitions"]) != partitions:
                logger.warning("kafka: topic %s has %d partitions, settings say %d",
                               meta["topic"], len(meta["partitions"]), partitions)  # fmt: skip
    finally:
        await admin.close()


def make_producer(bootstrap: str) -> AIOKafkaProducer:
    """A producer that waits for all in-sync replicas (not idempotent: Tansu refuses that)."""
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", linger_ms=5, max_request_size=MAX_RECORD_BYTES
    )


def make_consumer(
    settings: Settings,
    bootstrap: str,
    *topics: str,
    group_id: str | None,
    auto_offset_reset: str = "earliest",
) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        *topics,
        bootstrap_servers=bootstrap,
        group_id=group_id,
        auto_offset_reset=auto_offset_reset,
        enable_auto_commit=group_id is not None,
        **group_timings(settings),
    )


async def producer_connected(producer: AIOKafkaProducer, timeout: float = 3.0) -> bool:
    """True when the broker answers a metadata request through this producer's client."""
    try:
        await asyncio.wait_for(producer.client.fetch_all_metadata(), timeout)
    except (KafkaError, OSError, TimeoutError):
        return False
    return True
