"""`skyreel register-detector ID [--name N]`: registers a station PC and prints its token once
(the repository is storage/detectors.py)."""

from __future__ import annotations

import asyncio
import sys

from storage.db import make_engine, make_sessionmaker
from storage.detectors import DetectorError, Registration, register_detector
from streams.settings import Settings


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
