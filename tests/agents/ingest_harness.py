"""Helpers of the copy-result tests of ingest: one listed and requested file, the ingest deps
that record what the copy steps are told, the copy landing on the share."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine

from agents.ingest import IngestDeps
from storage import imports
from storage.imports import CopyOutcome, ListedFile
from streams.settings import Settings

NAME = "GX010001.MP4"


async def requested_file(engine: AsyncEngine, size: int) -> int:
    """A file of card-1 listed by det-1 and asked for; its id."""
    f = ListedFile(NAME, f"DCIM/100GOPRO/{NAME}", size, 1_000, "footage")
    async with engine.begin() as conn:
        (row,) = await imports.record_listing(conn, "card-1", "det-1", [f])
        await imports.mark_requested(conn, "det-1", [row.file_id])
    return row.file_id


async def send_nothing(key: bytes, value: bytes) -> None:
    return None


def telling_deps(settings: Settings, engine: AsyncEngine) -> tuple[IngestDeps, list[CopyOutcome]]:
    """Ingest deps, and the list of the copy outcomes they tell (in order)."""
    told: list[CopyOutcome] = []

    async def tell(outcome: CopyOutcome) -> None:
        told.append(outcome)

    return IngestDeps(settings, engine, send_nothing, on_copy_outcome=tell), told


def land(settings: Settings, file_id: int, data: bytes = b"12345") -> str:
    """The copy of the file at its destination on the share, as a detector leaves it; the
    destination."""
    dest = imports.destination_for("card-1", file_id, NAME)
    path = Path(settings.share_root) / dest
    path.parent.mkdir(parents=True)
    path.write_bytes(data)
    return dest
