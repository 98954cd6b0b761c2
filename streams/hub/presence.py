"""Detector presence in Redis: which hub replica holds a detector's socket, refreshed while it
is open, so the status API shows a detector online (and where) from any replica."""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import UTC, datetime

from redis.asyncio import Redis
from redis.exceptions import RedisError

from streams.hub.detector_sockets import DetectorSocket
from streams.topics import Names

logger = logging.getLogger(__name__)

#: Seconds a detector counts as online in Redis without news; refreshed every third of it.
PRESENCE_TTL = 30


async def keep_present(redis: Redis, names: Names, hub_id: str, sock: DetectorSocket) -> None:
    """Keep the detector's presence entry fresh while its socket is open (cancel to stop)."""
    key = names.detector_presence_key(sock.detector_id)
    value = json.dumps(
        {
            "hub": hub_id,
            "remote": sock.remote,
            "connection": sock.connection_id,
            "since": datetime.now(UTC).isoformat(),
        }
    )
    while True:
        try:
            await redis.set(key, value, ex=PRESENCE_TTL)
        except (RedisError, OSError) as exc:
            logger.warning("presence of detector %s not recorded: %s", sock.detector_id, exc)
        await asyncio.sleep(PRESENCE_TTL / 3)


async def forget_presence(redis: Redis, names: Names, sock: DetectorSocket) -> None:
    """Remove the presence entry, only our own: the detector may already be connected to
    another replica."""
    key = names.detector_presence_key(sock.detector_id)
    try:
        current = await redis.get(key)
        if current is not None and sock.connection_id in str(current):
            await redis.delete(key)
    except (RedisError, OSError) as exc:
        logger.warning("presence of detector %s not cleared: %s", sock.detector_id, exc)
