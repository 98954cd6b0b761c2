"""The fixture of the hub tests that drive a hub in their own loop: its settings (a free hub
port), the test's topic names, sessions and an emptied database, as one value."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from streams.settings import Settings
from streams.topics import Names


@dataclass(frozen=True)
class HubCase:
    settings: Settings
    names: Names
    sessions: async_sessionmaker[AsyncSession]
    db: AsyncEngine


@pytest.fixture
def hub_case(
    hub_settings: Settings,
    names: Names,
    clean_db: AsyncEngine,
    sessions: async_sessionmaker[AsyncSession],
) -> HubCase:
    """Needs ``hub_settings`` (hub_harness) imported beside it."""
    return HubCase(hub_settings, names, sessions, clean_db)
