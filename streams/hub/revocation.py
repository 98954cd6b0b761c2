"""Revoking a detector ends its live socket, on whichever hub replica holds it.

:func:`revoke_detector` (used by ``skyreel revoke-detector ID`` and ``POST
/api/detectors/{id}/revoke``) marks the token revoked in PostgreSQL — every handshake with it is
refused from then on — notes where the detector is connected (its presence entry in Redis) and
publishes its id on the ``detector_revoked_channel``. Every replica subscribes in its lifespan
(:func:`follow_revocations`) and closes that detector's socket if it holds it, with 1008
"detector token revoked"; the detector client stops on 1008 instead of reconnecting.

A message can be missed (Redis away, a replica restarting), so each replica also re-checks the
detectors it holds every :data:`RECHECK_INTERVAL` seconds, one query for all of them
(:func:`sweep_revoked`), and closes the revoked ones: a revoked socket lives a few seconds at
most either way.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storage import detectors
from streams.hub.detector_ws import Gateway
from streams.hub.presence import Presence, presence_of
from streams.topics import Names

logger = logging.getLogger(__name__)

#: Seconds between two re-checks of the connected detectors' tokens on one replica (the
#: backstop for a missed announcement).
RECHECK_INTERVAL = 5.0
#: Seconds before subscribing again after Redis went away.
RESUBSCRIBE_DELAY = 2.0
#: Seconds revoking waits for the live connection to go away before it says it did not.
CLOSE_WAIT = 10.0
#: Seconds one wait for an announcement may block (so a cancel is noticed).
_LISTEN_TIMEOUT = 1.0


@dataclass(frozen=True)
class Revocation:
    """What revoking did: whether the detector exists, where it was connected, how many hub
    replicas heard the announcement (None: it could not be published) and whether its
    connection went away (None: it was not connected, or nobody could be told)."""

    detector_id: str
    found: bool
    connected: Presence | None = None
    hubs_told: int | None = None
    closed: bool | None = None
    announce_error: str = ""


def revocation_message(done: Revocation, wait: float = CLOSE_WAIT) -> str:
    """The outcome in words, the same for the CLI and the API (pure)."""
    head = f"revoked {done.detector_id}"
    if done.announce_error:
        return (
            f"{head}; the hubs could not be told at once ({done.announce_error}): a live "
            f"connection is closed at its hub's next token re-check, within "
            f"{RECHECK_INTERVAL:.0f} s"
        )
    if done.connected is None:
        return f"{head}; it was not connected"
    hub = done.connected.hub
    if done.closed:
        return f"{head}; its live connection on hub {hub} was closed"
    return (
        f"{head}; its connection on hub {hub} did not close within {wait:.0f} s — is that hub "
        f"running? (its presence entry expires by itself; running hubs re-check tokens every "
        f"{RECHECK_INTERVAL:.0f} s)"
    )


async def revoke_detector(
    sessions: async_sessionmaker[AsyncSession],
    redis: Redis | None,
    names: Names,
    detector_id: str,
    wait: float = CLOSE_WAIT,
) -> Revocation:
    """Revoke in PostgreSQL, tell every hub, and wait up to ``wait`` seconds for the live
    connection (if any) to go away; raises DetectorError for a malformed id."""
    detectors.validate_detector_id(detector_id)
    async with sessions() as session, session.begin():
        found = await detectors.revoke(session, detector_id)
    if not found:
        return Revocation(detector_id, found=False)
    if redis is None:
        return Revocation(detector_id, True, announce_error="no Redis URL is configured")
    try:
        where = await presence_of(redis, names, detector_id)
        told = int(await redis.publish(names.detector_revoked_channel, detector_id))
        closed = await wait_disconnected(redis, names, detector_id, where, wait) if where else None
    except (RedisError, OSError) as exc:
        logger.warning("revocation of detector %s not announced: %s", detector_id, exc)
        return Revocation(detector_id, True, announce_error=f"Redis: {exc}")
    done = Revocation(detector_id, True, where, told, closed)
    logger.info("%s (announced to %d hub(s))", revocation_message(done, wait), told)
    return done


async def wait_disconnected(
    redis: Redis, names: Names, detector_id: str, connection: Presence, timeout: float
) -> bool:
    """Whether that connection's presence entry went away (its hub closed the socket and
    forgot it) within ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        now = await presence_of(redis, names, detector_id)
        if now is None or now.connection != connection.connection:
            return True
        if loop.time() >= deadline:
            return False
        await asyncio.sleep(0.1)


async def follow_revocations(redis: Redis, names: Names, gateway: Gateway) -> None:
    """Close the socket of every detector announced as revoked (run as a task; cancel to stop).
    Subscribes again after Redis went away, logging once per outage."""
    channel = names.detector_revoked_channel
    down = False
    while True:
        pubsub = redis.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.subscribe(channel)
            if down:
                logger.info("hub %s hears detector revocations again", gateway.hub_id)
                down = False
            while True:
                message = await pubsub.get_message(timeout=_LISTEN_TIMEOUT)
                if message is None or message.get("type") != "message":
                    continue
                data = message.get("data")
                detector_id = data.decode() if isinstance(data, bytes) else str(data)
                await gateway.close_revoked(detector_id)
        except (RedisError, OSError) as exc:
            if not down:
                logger.warning(
                    "hub %s cannot hear detector revocations (%s); tokens are still re-checked "
                    "every %.0f s",
                    gateway.hub_id,
                    exc,
                    RECHECK_INTERVAL,
                )
                down = True
            await asyncio.sleep(RESUBSCRIBE_DELAY)
        finally:
            try:
                await pubsub.aclose()
            except (RedisError, OSError):
                pass


async def sweep_revoked(gateway: Gateway, interval: float = RECHECK_INTERVAL) -> None:
    """Every ``interval`` seconds close the sockets of connected detectors that are revoked or
    gone from the database (run as a task; cancel to stop). Logs once per database outage."""
    failing = False
    while True:
        await asyncio.sleep(interval)
        held = gateway.registry.ids()
        if not held:
            continue
        try:
            async with gateway.sessions() as session:
                active = await detectors.active_among(session, held)
        except Exception as exc:  # the database is away: the next round tries again
            if not failing:
                logger.warning("hub %s cannot re-check detector tokens: %s", gateway.hub_id, exc)
                failing = True
            continue
        if failing:
            logger.info("hub %s re-checks detector tokens again", gateway.hub_id)
            failing = False
        for detector_id in sorted(set(held) - active):
            await gateway.close_revoked(detector_id)
