"""Detector registration: ids validated, tokens shown once and stored only as SHA-256."""

from __future__ import annotations

import hashlib

import asyncpg
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from storage import detectors
from storage.detectors import DetectorError


@pytest.mark.parametrize("good", ["a", "hangar-1", "0station", "x" * 64])
def test_valid_detector_ids(good: str) -> None:
    assert detectors.validate_detector_id(good) == good


@pytest.mark.parametrize("bad", ["", "-a", "Hangar", "a_b", "a b", "x" * 65, "a/../b", "é"])
def test_invalid_detector_ids_are_refused(bad: str) -> None:
    with pytest.raises(DetectorError):
        detectors.validate_detector_id(bad)


async def test_register_authenticate_revoke(
    clean_db: AsyncEngine, sessions: async_sessionmaker[AsyncSession], pg: asyncpg.Connection
) -> None:
    async with sessions() as session, session.begin():
        reg = await detectors.register_detector(session, "hangar-1", "Hangar one")
    assert len(reg.token) >= 40
    stored = await pg.fetchrow("SELECT name, token_hash FROM detector WHERE id = 'hangar-1'")
    assert stored["name"] == "Hangar one"
    assert stored["token_hash"] == hashlib.sha256(reg.token.encode()).hexdigest()
    assert reg.token not in str(dict(stored))

    async with sessions() as session:
        assert await detectors.authenticate(session, reg.token) == "hangar-1"
        assert await detectors.authenticate(session, reg.token + "x") is None
        assert await detectors.authenticate(session, "") is None
        assert await detectors.authenticate(session, None) is None
        assert await detectors.authenticate(session, "a" * 10_000) is None
    async with sessions() as session, session.begin():
        assert await detectors.revoke(session, "hangar-1")
        assert not await detectors.revoke(session, "nobody")
    async with sessions() as session:
        assert await detectors.authenticate(session, reg.token) is None


async def test_each_registration_gets_a_different_token_and_ids_are_unique(
    clean_db: AsyncEngine, sessions: async_sessionmaker[AsyncSession]
) -> None:
    async with sessions() as session, session.begin():
        one = await detectors.register_detector(session, "one")
        two = await detectors.register_detector(session, "two")
    assert one.token != two.token
    with pytest.raises(DetectorError, match="already registered"):
        async with sessions() as session, session.begin():
            await detectors.register_detector(session, "one")


async def test_touch_and_clear_card(
    clean_db: AsyncEngine, sessions: async_sessionmaker[AsyncSession], pg: asyncpg.Connection
) -> None:
    async with sessions() as session, session.begin():
        await detectors.register_detector(session, "one")
    async with sessions() as session, session.begin():
        await detectors.touch(session, "one", "CARD-1")
    row = await pg.fetchrow("SELECT last_seen_at, current_card_id FROM detector")
    assert row["last_seen_at"] is not None and row["current_card_id"] == "CARD-1"
    async with sessions() as session, session.begin():
        await detectors.clear_card(session, "one", "OTHER")  # not its card: unchanged
    assert await pg.fetchval("SELECT current_card_id FROM detector") == "CARD-1"
    async with sessions() as session, session.begin():
        await detectors.clear_card(session, "one", "CARD-1")
    assert await pg.fetchval("SELECT current_card_id FROM detector") is None


def test_tokens_survive_the_detector_command_line() -> None:
    """Regression: a token starting with '-' (1 in 64) was taken by argparse for an option,
    and `skyreel-detector --token TOKEN` refused to start."""
    from detector.cli import build_parser
    from storage.detectors import new_token

    for _ in range(300):
        token = new_token()
        assert build_parser().parse_args(["--token", token]).token == token
