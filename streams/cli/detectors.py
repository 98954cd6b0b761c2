"""`skyreel register-detector ID [--name N]`: registers a station PC and prints its token once;
`skyreel revoke-detector ID`: refuses its token from now on and closes its live connection on
whichever hub holds it (the repository is storage/detectors.py; the closing, through Redis,
streams/hub/revocation.py). Both need only SKYREEL_DATABASE_URL (and SKYREEL_REDIS_URL to close
a live connection at once)."""

from __future__ import annotations

import asyncio
import sys

from redis.asyncio import Redis

from storage.db import make_engine, make_sessionmaker
from storage.detectors import DetectorError, Registration, register_detector
from streams.hub.revocation import Revocation, revocation_message, revoke_detector
from streams.settings import Settings
from streams.topics import Names


async def _register(database_url: str, detector_id: str, name: str) -> Registration:
    engine = make_engine(database_url, pool_size=1)
    try:
        async with make_sessionmaker(engine)() as session, session.begin():
            return await register_detector(session, detector_id, name)
    finally:
        await engine.dispose()


def register_detector_cli(settings: Settings, detector_id: str, name: str) -> int:
    """Prints the token once; returns the exit code."""
    if not settings.database_url:
        print("SKYREEL_DATABASE_URL is not set", file=sys.stderr)
        return 2
    try:
        reg = asyncio.run(_register(settings.database_url, detector_id, name))
    except DetectorError as exc:
        print(f"skyreel: {exc}", file=sys.stderr)
        return 1
    print(f"detector {reg.detector_id} registered. Its token (shown only this once):")
    print(reg.token)
    print("Give it to the station as SKYREEL_DETECTOR_TOKEN; only its hash is stored.")
    return 0


async def _revoke(settings: Settings, detector_id: str) -> Revocation:
    engine = make_engine(settings.database_url, pool_size=1)
    redis = Redis.from_url(settings.redis_url) if settings.redis_url else None
    try:
        return await revoke_detector(
            make_sessionmaker(engine), redis, Names(settings.topic_prefix), detector_id
        )
    finally:
        if redis is not None:
            await redis.aclose()
        await engine.dispose()


def revoke_detector_cli(settings: Settings, detector_id: str) -> int:
    """Revokes the token and says what happened to its live connection; the exit code."""
    if not settings.database_url:
        print("SKYREEL_DATABASE_URL is not set", file=sys.stderr)
        return 2
    try:
        done = asyncio.run(_revoke(settings, detector_id))
    except DetectorError as exc:
        print(f"skyreel: {exc}", file=sys.stderr)
        return 1
    if not done.found:
        print(
            f"skyreel: no detector {detector_id!r} is registered (nothing revoked)",
            file=sys.stderr,
        )
        return 1
    print(revocation_message(done))
    return 0
