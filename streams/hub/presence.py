"""Detector presence in Redis: which hub replica holds a detector's socket, refreshed while it
is open, so the status API shows a detector online (and where) from any replica."""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
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


@dataclass(frozen=True)
class Presence:
    """Where a detector's socket is, as its hub recorded it."""

    hub: str
    connection: str


async def presence_of(redis: Redis, names: Names, detector_id: str) -> Presence | None:
    """The detector's presence entry, or None when it is not connected (raises RedisError)."""
    raw = await redis.get(names.detector_presence_key(detector_id))
    if raw is None:
        return None
    try:
        found = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(found, dict):
        return None
    return Presence(str(found.get("hub") or "?"), str(found.get("connection") or ""))


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
