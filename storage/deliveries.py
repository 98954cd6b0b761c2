"""Deliveries (issue 16): one `delivery` row per passenger email, claimed before it is sent.

The `idempotency_key` is unique: :func:`claim` inserts it as ``sending`` (or takes over a
``failed`` row, or a ``sending`` row older than `stale_after_s` whose sender died) and answers
whether the caller may send. A key already ``sent`` is never claimed again, which is what makes
the email exactly once whatever redelivers, replays or retries the step
(agents/jobs/deliver_step.py). The dashboard's outbox list and the operator's resend read here.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

logger = logging.getLogger(__name__)

_COLUMNS = (
    "id, booking_id, deliverable_set, idempotency_key, recipient, status, attempts, last_error, "
    "message_id, link_id, outbox_file, session_key, requested_by, request_id, created_at, "
    "updated_at, sent_at"
)


class DeliveryStatus(enum.StrEnum):
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"


@dataclass(frozen=True)
class DeliveryRow:
    id: int
    booking_id: str
    deliverable_set: str
    idempotency_key: str
    recipient: str
    status: DeliveryStatus
    attempts: int
    last_error: str
    message_id: str
    link_id: int | None
    outbox_file: str | None
    session_key: str | None
    requested_by: str
    request_id: str
    created_at: datetime
    updated_at: datetime
    sent_at: datetime | None

    @classmethod
    def of(cls, row: RowMapping) -> DeliveryRow:
        values = {k: row[k] for k in cls.__dataclass_fields__}
        values["status"] = DeliveryStatus(str(values["status"]))
        return cls(**values)


@dataclass(frozen=True)
class Claim:
    """What :func:`claim` found: `send` when the caller now owns the key and must send."""

    row: DeliveryRow
    send: bool


async def claim(
    conn: AsyncConnection,
    *,
    key: str,
    booking_id: str,
    deliverable_set: str,
    recipient: str,
    message_id: str,
    session_key: str | None,
    actor: str,
    request_id: str = "",
    stale_after_s: float,
) -> Claim:
    """Claim `key` for sending (a new key, a failed one, or a `sending` one gone stale)."""
    row = (
        (
            await conn.execute(
                text(
                    "INSERT INTO delivery (booking_id, deliverable_set, idempotency_key, "
                    "recipient, status, attempts, message_id, session_key, requested_by, "
                    "request_id) VALUES (:b, :d, :k, :r, 'sending', 1, :m, :s, :a, :q) "
                    "ON CONFLICT (idempotency_key) DO UPDATE SET status = 'sending', "
                    "attempts = delivery.attempts + 1, recipient = EXCLUDED.recipient, "
                    "updated_at = clock_timestamp() "
                    "WHERE delivery.status = 'failed' OR (delivery.status = 'sending' AND "
                    "delivery.updated_at < clock_timestamp() - make_interval(secs => :stale)) "
                    f"RETURNING {_COLUMNS}"
                ),
                {
                    "b": booking_id,
                    "d": deliverable_set[:64],
                    "k": key[:200],
                    "r": recipient[:254],
                    "m": message_id[:300],
                    "s": session_key,
                    "a": actor[:200],
                    "q": request_id[:64],
                    "stale": float(stale_after_s),
                },
            )
        )
        .mappings()
        .first()
    )
    if row is not None:
        return Claim(DeliveryRow.of(row), send=True)
    found = await by_key(conn, key)
    if found is None:  # deleted meanwhile: nothing sensible to do but let the caller retry
        raise LookupError(f"delivery {key!r} vanished while being claimed")
    return Claim(found, send=False)


async def by_key(conn: AsyncConnection, key: str) -> DeliveryRow | None:
    row = (
        (
            await conn.execute(
                text(f"SELECT {_COLUMNS} FROM delivery WHERE idempotency_key = :k"), {"k": key}
            )
        )
        .mappings()
        .first()
    )
    return DeliveryRow.of(row) if row is not None else None


async def get(conn: AsyncConnection, delivery_id: int) -> DeliveryRow | None:
    row = (
        (
            await conn.execute(
                text(f"SELECT {_COLUMNS} FROM delivery WHERE id = :i"), {"i": delivery_id}
            )
        )
        .mappings()
        .first()
    )
    return DeliveryRow.of(row) if row is not None else None


async def mark_sent(
    conn: AsyncConnection, delivery_id: int, *, link_id: int | None, outbox_file: str | None
) -> None:
    await conn.execute(
        text(
            "UPDATE delivery SET status = 'sent', sent_at = clock_timestamp(), "
            "updated_at = clock_timestamp(), last_error = '', link_id = :l, outbox_file = :o "
            "WHERE id = :i"
        ),
        {"i": delivery_id, "l": link_id, "o": outbox_file},
    )
    logger.info("delivery %d sent", delivery_id)


async def mark_failed(conn: AsyncConnection, delivery_id: int, error: str) -> None:
    await conn.execute(
        text(
            "UPDATE delivery SET status = 'failed', last_error = :e, "
            "updated_at = clock_timestamp() WHERE id = :i AND status <> 'sent'"
        ),
        {"i": delivery_id, "e": error[:2000]},
    )
    logger.warning("delivery %d failed: %s", delivery_id, error)


async def recent(conn: AsyncConnection, limit: int = 50) -> list[DeliveryRow]:
    rows = (
        await conn.execute(
            text(f"SELECT {_COLUMNS} FROM delivery ORDER BY created_at DESC, id DESC LIMIT :n"),
            {"n": limit},
        )
    ).mappings()
    return [DeliveryRow.of(r) for r in rows]


async def of_booking(conn: AsyncConnection, booking_id: str) -> list[DeliveryRow]:
    rows = (
        await conn.execute(
            text(f"SELECT {_COLUMNS} FROM delivery WHERE booking_id = :b ORDER BY id"),
            {"b": booking_id},
        )
    ).mappings()
    return [DeliveryRow.of(r) for r in rows]


async def resend_key(conn: AsyncConnection, booking_id: str, request_id: str) -> str:
    """The key of an operator's resend: the one this request got already (a redelivered
    command), else ``<booking>/resend-<n>`` with the next n of the booking."""
    await conn.execute(
        text("SELECT pg_advisory_xact_lock(hashtext('delivery-resend:' || :b))"), {"b": booking_id}
    )
    same = await conn.scalar(
        text("SELECT idempotency_key FROM delivery WHERE booking_id = :b AND request_id = :q"),
        {"b": booking_id, "q": request_id},
    )
    if same:
        return str(same)
    n = await conn.scalar(
        text(
            "SELECT count(*) FROM delivery WHERE booking_id = :b "
            "AND idempotency_key LIKE :b || '/resend-%'"
        ),
        {"b": booking_id},
    )
    return f"{booking_id}/resend-{int(n or 0) + 1}"


async def booking_contact(conn: AsyncConnection, booking_id: str) -> tuple[str, str, str] | None:
    """(session key, passenger, email) of the booking's latest jump with an email, if any."""
    row = (
        await conn.execute(
            text(
                "SELECT key, coalesce(passenger, ''), email FROM jump_session "
                "WHERE booking_id = :b AND email IS NOT NULL AND email <> '' "
                "ORDER BY created_at DESC, key DESC LIMIT 1"
            ),
            {"b": booking_id},
        )
    ).first()
    return (str(row[0]), str(row[1]), str(row[2])) if row is not None else None


async def outbox_count(conn: AsyncConnection) -> int:
    """Messages written to the outbox (no SMTP configured) and recorded as sent."""
    return int(
        await conn.scalar(
            text("SELECT count(*) FROM delivery WHERE status = 'sent' AND outbox_file IS NOT NULL")
        )
        or 0
    )


async def step_outcomes(
    conn: AsyncConnection, execution_id: int, names: list[str]
) -> dict[str, tuple[str, object]]:
    """name -> (status, output) of the execution's steps among `names` (the ones it has)."""
    rows = await conn.execute(
        text(
            "SELECT name, status, output FROM pipeline_step WHERE execution_id = :e "
            "AND name = ANY(CAST(:n AS text[]))"
        ),
        {"e": execution_id, "n": names},
    )
    return {str(r[0]): (str(r[1]), r[2]) for r in rows}


async def deliver_steps_open(conn: AsyncConnection) -> int:
    """`deliver` steps about to run or running (the demo waits for them before its summary);
    one whose jump still waits for something (a booking, a person) is not counted."""
    return int(
        await conn.scalar(
            text(
                "SELECT count(*) FROM pipeline_step d WHERE d.kind = 'deliver' "
                "AND d.status NOT IN ('succeeded', 'failed', 'cancelled', 'skipped') "
                "AND NOT EXISTS (SELECT 1 FROM pipeline_step o WHERE o.execution_id = "
                "d.execution_id AND o.name IN ('booking', 'publish', 'photos') "
                "AND o.status NOT IN ('succeeded', 'failed', 'cancelled', 'skipped'))"
            )
        )
        or 0
    )


async def bookings(conn: AsyncConnection, limit: int = 200) -> list[tuple[str, str, bool]]:
    """(booking id, passenger, has an email) of every booking with a jump, first seen first."""
    rows = await conn.execute(
        text(
            "SELECT booking_id, coalesce(max(passenger), ''), bool_or(coalesce(email, '') <> '') "
            "FROM jump_session WHERE booking_id IS NOT NULL GROUP BY booking_id "
            "ORDER BY min(created_at), booking_id LIMIT :n"
        ),
        {"n": limit},
    )
    return [(str(r[0]), str(r[1]), bool(r[2])) for r in rows]


async def set_depends_on(
    conn: AsyncConnection, execution_id: int, name: str, depends_on: list[str]
) -> None:
    """A step's dependencies widened (a deliverable bought after the pipeline was made: the
    `deliver` step waits for its new steps too; agents/jobs/bought_later.py)."""
    await conn.execute(
        text(
            "UPDATE pipeline_step SET depends_on = CAST(:d AS text[]) "
            "WHERE execution_id = :e AND name = :n"
        ),
        {"e": execution_id, "n": name, "d": sorted(depends_on)},
    )
