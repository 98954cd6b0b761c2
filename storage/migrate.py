"""Apply Alembic migrations programmatically (the run command and tests both use this).

CLI: ``skyreel migrate`` (or ``alembic -c storage/migrations/alembic.ini upgrade head``).
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

from storage.db import async_url

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def alembic_config(database_url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", async_url(database_url).replace("%", "%%"))
    return cfg


def upgrade(database_url: str, revision: str = "head") -> None:
    """Bring the schema to ``revision``; safe to call on every start (idempotent)."""
    command.upgrade(alembic_config(database_url), revision)
