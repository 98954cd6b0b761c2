"""Copy requests as PostgreSQL knows them.

PostgreSQL is the truth, Kafka the transport: when a detector (re)connects, the hub asks here
for every file still waiting to be copied by it and sends those requests again, so nothing
depends on a socket having been up when the request went by on the topic.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import case, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.imports import PlannedCopy, destination_for, priority_for
from storage.models import ImportedFile

PENDING_STATUSES = ("requested", "copying")


@dataclass(frozen=True)
class PendingCopy(PlannedCopy):
    """A file a detector was asked to copy and has not delivered yet (a planned copy of a card)."""

    card_id: str


async def pending_copy_requests(session: AsyncSession, detector_id: str) -> list[PendingCopy]:
    """Files in status requested/copying for this detector, QR candidates first."""
    qr_first = case((ImportedFile.kind == "qr_candidate", 0), else_=1)
    rows = await session.execute(
        select(
            ImportedFile.id,
            ImportedFile.card_id,
            ImportedFile.name,
            ImportedFile.path,
            ImportedFile.size,
            ImportedFile.mtime_ms,
            ImportedFile.kind,
        )
        .where(
            ImportedFile.detector_id == detector_id,
            ImportedFile.status.in_(PENDING_STATUSES),
        )
        .order_by(qr_first, ImportedFile.mtime_ms, ImportedFile.path)
    )
    return [
        PendingCopy(
            file_id=file_id,
            card_id=card_id,
            path=path,
            size=size,
            mtime_ms=mtime_ms,
            destination=destination_for(card_id, file_id, name),
            priority=priority_for(kind),
        )
        for file_id, card_id, name, path, size, mtime_ms, kind in rows
    ]
