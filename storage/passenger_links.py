"""Passenger links and what a passenger page shows: the SQL behind /p/<token>.

A link (`passenger_link`) is issued to a booking; its signed token (streams/hub/passenger_links.py)
names the row, which says whether an operator revoked it. :func:`booking_deliverables` is the one
read the page makes: every jump session of the booking with its `publish` step (the video and
poster) and its `photos` step (the stills), in one query whatever the number of sessions.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from storage.enums import StepStatus

logger = logging.getLogger(__name__)

#: Sessions one page shows at most (a booking is one passenger: a few jumps, a few cameras).
MAX_SESSIONS = 20

_LINK_COLUMNS = "id, booking_id, created_by, created_at, expires_at, revoked_at, revoked_by"


@dataclass(frozen=True)
class LinkRow:
    """One `passenger_link` row."""

    id: int
    booking_id: str
    created_by: str
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None
    revoked_by: str | None

    @classmethod
    def of(cls, row: RowMapping) -> LinkRow:
        return cls(**{k: row[k] for k in cls.__dataclass_fields__})


@dataclass(frozen=True)
class SessionDeliverables:
    """One jump of a booking as the page needs it: the steps that make what the passenger gets.

    `video_status`/`photos_status` are the `publish`/`photos` step's status, None when the
    execution has no such step (a pipeline without photos, a jump not started yet)."""

    key: str
    passenger: str | None
    product: str | None
    session_status: str
    output_name: str | None
    execution_status: str | None
    video_status: StepStatus | None
    video_output: dict[str, Any] | None
    photos_status: StepStatus | None
    photos_output: dict[str, Any] | None


async def create_link(
    conn: AsyncConnection, booking_id: str, expires_at: datetime, actor: str
) -> LinkRow:
    row = (
        (
            await conn.execute(
                text(
                    "INSERT INTO passenger_link (booking_id, created_by, expires_at) "
                    f"VALUES (:b, :a, :x) RETURNING {_LINK_COLUMNS}"
                ),
                {"b": booking_id, "a": actor[:200], "x": expires_at},
            )
        )
        .mappings()
        .one()
    )
    logger.info("passenger link %d issued for booking %s by %s", row["id"], booking_id, actor)
    return LinkRow.of(row)


async def get_link(conn: AsyncConnection, link_id: int) -> LinkRow | None:
    row = (
        (
            await conn.execute(
                text(f"SELECT {_LINK_COLUMNS} FROM passenger_link WHERE id = :i"), {"i": link_id}
            )
        )
        .mappings()
        .first()
    )
    return LinkRow.of(row) if row is not None else None


async def open_link_of(
    conn: AsyncConnection, booking_id: str, valid_after: datetime, link_id: int | None = None
) -> LinkRow | None:
    """A link of the booking neither revoked nor expiring before `valid_after` (issue 16: the
    email reuses it); `link_id` first when given, else the one issued last."""
    row = (
        (
            await conn.execute(
                text(
                    f"SELECT {_LINK_COLUMNS} FROM passenger_link WHERE booking_id = :b "
                    "AND revoked_at IS NULL AND expires_at > :t "
                    "ORDER BY (id = :i) DESC, id DESC LIMIT 1"
                ),
                {"b": booking_id, "t": valid_after, "i": link_id or 0},
            )
        )
        .mappings()
        .first()
    )
    return LinkRow.of(row) if row is not None else None


async def revoke_link(conn: AsyncConnection, link_id: int, actor: str) -> LinkRow | None:
    """Revoke a link (idempotent: a revoked link keeps its first revocation); None if unknown."""
    row = (
        (
            await conn.execute(
                text(
                    "UPDATE passenger_link SET revoked_at = coalesce(revoked_at, now()), "
                    "revoked_by = coalesce(revoked_by, :a) WHERE id = :i "
                    f"RETURNING {_LINK_COLUMNS}"
                ),
                {"i": link_id, "a": actor[:200]},
            )
        )
        .mappings()
        .first()
    )
    if row is None:
        return None
    logger.info("passenger link %d (booking %s) revoked by %s", link_id, row["booking_id"], actor)
    return LinkRow.of(row)


async def booking_known(conn: AsyncConnection, booking_id: str) -> bool:
    """Whether any jump session carries this booking."""
    found = await conn.scalar(
        text("SELECT EXISTS (SELECT 1 FROM jump_session WHERE booking_id = :b)"), {"b": booking_id}
    )
    return bool(found)


_DELIVERABLES = text(
    "SELECT s.key, s.passenger, s.product, s.status AS session_status, s.output_name, "
    "e.status AS execution_status, pub.status AS video_status, pub.output AS video_output, "
    "ph.status AS photos_status, ph.output AS photos_output "
    "FROM jump_session s "
    "LEFT JOIN pipeline_execution e ON e.id = s.execution_id "
    "LEFT JOIN LATERAL (SELECT status, output FROM pipeline_step "
    "  WHERE execution_id = s.execution_id AND kind = 'publish' ORDER BY id LIMIT 1) pub ON true "
    "LEFT JOIN LATERAL (SELECT status, output FROM pipeline_step "
    "  WHERE execution_id = s.execution_id AND kind = 'photos' ORDER BY id LIMIT 1) ph ON true "
    "WHERE s.booking_id = :b "
    "ORDER BY s.capture_start NULLS LAST, s.created_at, s.key LIMIT :n"
)


def _status(value: object) -> StepStatus | None:
    return StepStatus(str(value)) if value is not None else None


async def booking_deliverables(conn: AsyncConnection, booking_id: str) -> list[SessionDeliverables]:
    """The booking's jumps, first recorded first, each with its publish and photos steps."""
    rows = (await conn.execute(_DELIVERABLES, {"b": booking_id, "n": MAX_SESSIONS})).mappings()
    return [
        SessionDeliverables(
            key=str(r["key"]),
            passenger=r["passenger"],
            product=r["product"],
            session_status=str(r["session_status"]),
            output_name=r["output_name"],
            execution_status=r["execution_status"],
            video_status=_status(r["video_status"]),
            video_output=r["video_output"],
            photos_status=_status(r["photos_status"]),
            photos_output=r["photos_output"],
        )
        for r in rows
    ]
