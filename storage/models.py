"""SQLAlchemy 2 models: PostgreSQL is the truth for files, sessions, executions, steps and logs.

The schema itself is created by Alembic (storage/migrations); tests build it the same way.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Double,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSONB, list[str]: ARRAY(Text)}


def _now() -> Mapped[datetime]:
    return mapped_column(DateTime(timezone=True), server_default=func.now(), nullable=False)


class Detector(Base):
    """A station PC allowed to connect; only the SHA-256 of its token is stored."""

    __tablename__ = "detector"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    revoked: Mapped[bool] = mapped_column(Boolean, default=False, server_default="false")
    created_at: Mapped[datetime] = _now()
    last_seen_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    current_card_id: Mapped[str | None] = mapped_column(String(128))


class Card(Base):
    """An SD card seen by a detector (identity: volume serial/UUID or fingerprint)."""

    __tablename__ = "card"
    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    label: Mapped[str] = mapped_column(String(200), default="", server_default="")
    detector_id: Mapped[str | None] = mapped_column(String(64))
    first_seen_at: Mapped[datetime] = _now()
    last_seen_at: Mapped[datetime] = _now()
    present: Mapped[bool] = mapped_column(Boolean, default=True, server_default="true")
    # from the latest listing: space left on the card and its size (None: not reported)
    free_bytes: Mapped[int | None] = mapped_column(BigInteger)
    capacity_bytes: Mapped[int | None] = mapped_column(BigInteger)
    # files the detector could not list (e.g. a name that is not valid Unicode): [{path, reason}]
    skipped: Mapped[list[dict[str, Any]]] = mapped_column(
        JSONB, default=list, server_default=text("'[]'::jsonb")
    )
    # non-empty when the camera's clock disagrees with its own recording order
    clock_warning: Mapped[str] = mapped_column(Text, default="", server_default="")
    # the station the card was at before it last moved to another one, and when it moved
    previous_detector_id: Mapped[str | None] = mapped_column(String(64))
    moved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class ImportedFile(Base):
    """One distinct footage file ever listed.

    Natural key (card, path, size, mtime): names repeat after a card is formatted and across
    DCIM folders (``100GOPRO/GX010001.MP4``, ``101GOPRO/GX010001.MP4``), so the name alone is no
    identity. Status: listed -> requested -> copying -> imported | failed (reason);
    proxies/thumbnails are recorded as ``ignored``.
    """

    __tablename__ = "imported_file"
    __table_args__ = (
        UniqueConstraint("card_id", "path", "size", "mtime_ms", name="uq_imported_file_natural"),
        Index("ix_imported_file_status", "status"),
        Index("ix_imported_file_session", "session_key"),
    )
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    card_id: Mapped[str] = mapped_column(String(128))
    name: Mapped[str] = mapped_column(Text)
    path: Mapped[str] = mapped_column(Text)
    size: Mapped[int] = mapped_column(BigInteger)
    mtime_ms: Mapped[int] = mapped_column(BigInteger)
    kind: Mapped[str] = mapped_column(String(16))  # qr_candidate | footage | proxy
    status: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(Text, default="", server_default="")
    detector_id: Mapped[str | None] = mapped_column(String(64))
    stored_path: Mapped[str | None] = mapped_column(Text)
    content_hash: Mapped[str | None] = mapped_column(String(128))
    hash_algo: Mapped[str | None] = mapped_column(String(16))
    request_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # media facts (probe step)
    duration_s: Mapped[float | None] = mapped_column(Double)
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)
    fps: Mapped[float | None] = mapped_column(Double)
    codec: Mapped[str | None] = mapped_column(String(32))
    has_audio: Mapped[bool | None] = mapped_column(Boolean)
    creation_time: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # why the probe could not read the clip ('' when it could): the clip fails only itself
    probe_error: Mapped[str] = mapped_column(Text, default="", server_default="")
    session_key: Mapped[str | None] = mapped_column(String(128))
    first_listed_at: Mapped[datetime] = _now()
    last_listed_at: Mapped[datetime] = _now()
    requested_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    imported_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class QrScan(Base):
    """The QR decode result of one candidate clip."""

    __tablename__ = "qr_scan"
    file_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("imported_file.id", ondelete="CASCADE"), primary_key=True
    )
    status: Mapped[str] = mapped_column(String(16))  # decoded | unreadable | no_qr | error
    payload: Mapped[str | None] = mapped_column(Text)
    booking_id: Mapped[str | None] = mapped_column(String(64))
    passenger: Mapped[str | None] = mapped_column(Text)
    product: Mapped[str | None] = mapped_column(String(64))
    # issue 16: the ticket's email, and why one it carried was ignored
    email: Mapped[str | None] = mapped_column(String(254))
    email_warning: Mapped[str] = mapped_column(Text, default="", server_default="")
    frame_s: Mapped[float | None] = mapped_column(Double)
    decoder: Mapped[str | None] = mapped_column(String(32))
    reason: Mapped[str] = mapped_column(Text, default="", server_default="")
    elapsed_ms: Mapped[float | None] = mapped_column(Double)
    scanned_at: Mapped[datetime] = _now()


class JumpSession(Base):
    """One passenger's jump: a QR clip and the footage after it (or unassigned/needs review)."""

    __tablename__ = "jump_session"
    __table_args__ = (Index("ix_session_status_created", "status", "created_at"),)
    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    card_id: Mapped[str] = mapped_column(String(128))
    status: Mapped[str] = mapped_column(
        String(16)
    )  # decoded | unassigned | needs_review | assigned
    booking_id: Mapped[str | None] = mapped_column(String(64))
    passenger: Mapped[str | None] = mapped_column(Text)
    product: Mapped[str | None] = mapped_column(String(64))
    email: Mapped[str | None] = mapped_column(String(254))  # issue 16: where the link is sent
    qr_file_id: Mapped[int | None] = mapped_column(BigInteger)
    file_ids: Mapped[list[str]] = mapped_column(ARRAY(Text), default=list, server_default="{}")
    execution_id: Mapped[int | None] = mapped_column(BigInteger)
    assigned_by: Mapped[str | None] = mapped_column(String(200))
    # what an operator must know: clips left out, clock trouble ([str, ...])
    warnings: Mapped[list[str]] = mapped_column(
        JSONB, default=list, server_default=text("'[]'::jsonb")
    )
    # why the session waits for a person (needs_review / unassigned), in words
    review_reason: Mapped[str] = mapped_column(Text, default="", server_default="")
    # the session's own output identity, stable across re-renders of it
    output_name: Mapped[str | None] = mapped_column(Text)
    capture_start: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = _now()
    updated_at: Mapped[datetime] = _now()


class PipelineExecution(Base):
    """One run of a pipeline (a card import, a jump render). ``key`` makes creation idempotent."""

    __tablename__ = "pipeline_execution"
    __table_args__ = (
        Index("ix_execution_status_created", "status", "created_at"),
        Index("ix_execution_status_id", "status", "id"),
    )
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    key: Mapped[str] = mapped_column(String(200), unique=True)
    pipeline: Mapped[str] = mapped_column(String(32))  # card_import | jump
    subject_type: Mapped[str] = mapped_column(String(16))  # card | session
    subject_id: Mapped[str] = mapped_column(String(128))
    status: Mapped[str] = mapped_column(String(16))
    context: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict, server_default="{}")
    created_at: Mapped[datetime] = _now()
    updated_at: Mapped[datetime] = _now()
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class PipelineStep(Base):
    """One node of an execution's DAG."""

    __tablename__ = "pipeline_step"
    __table_args__ = (
        UniqueConstraint("execution_id", "name", name="uq_step_execution_name"),
        # copy steps waiting for a file are found by name when its copy lands. No index covers
        # a column a step's life changes (status, times, worker), and the table's fillfactor
        # (50) keeps room on each page: its updates are heap-only (HOT), see migration 0012;
        # steps by status are found through their unfinished executions (storage/pipeline.py,
        # UNFINISHED_EXECUTIONS).
        Index("ix_step_name", "name"),
    )
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    execution_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("pipeline_execution.id", ondelete="CASCADE")
    )
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(32))
    depends_on: Mapped[list[str]] = mapped_column(ARRAY(Text), default=list, server_default="{}")
    status: Mapped[str] = mapped_column(String(16))
    attempt: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    max_attempts: Mapped[int] = mapped_column(Integer, default=3, server_default="3")
    input: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict, server_default="{}")
    output: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    error: Mapped[str] = mapped_column(Text, default="", server_default="")
    worker: Mapped[str | None] = mapped_column(String(200))
    progress: Mapped[float | None] = mapped_column(Double)
    spawned_by: Mapped[str | None] = mapped_column(String(200))
    # name patterns this step may spawn (agents/pipeline/dag.py: group dependencies wait for it)
    spawns: Mapped[list[str]] = mapped_column(ARRAY(Text), default=list, server_default="{}")
    # non-empty while a running step waits on something outside (e.g. a booking from a human)
    waiting_for: Mapped[str] = mapped_column(Text, default="", server_default="")
    created_at: Mapped[datetime] = _now()
    ready_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    not_before: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class PipelineStepAttempt(Base):
    """Timings and outcome of every attempt of a step (retries keep history)."""

    __tablename__ = "pipeline_step_attempt"
    step_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("pipeline_step.id", ondelete="CASCADE"), primary_key=True
    )
    attempt: Mapped[int] = mapped_column(Integer, primary_key=True)
    status: Mapped[str] = mapped_column(String(16))
    worker: Mapped[str | None] = mapped_column(String(200))
    error: Mapped[str] = mapped_column(Text, default="", server_default="")
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class PipelineStepLog(Base):
    """Append-only log lines per step and attempt (FFmpeg stderr tail, errors, actions)."""

    __tablename__ = "pipeline_step_log"
    __table_args__ = (Index("ix_step_log_step_attempt", "step_id", "attempt"),)
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    step_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("pipeline_step.id", ondelete="CASCADE")
    )
    attempt: Mapped[int] = mapped_column(Integer)
    level: Mapped[str] = mapped_column(String(8), default="info")
    message: Mapped[str] = mapped_column(Text)
    actor: Mapped[str] = mapped_column(String(200), default="system", server_default="system")
    at: Mapped[datetime] = _now()


class DeadLetterRow(Base):
    """A message an agent could not process, kept with its error for the status API."""

    __tablename__ = "dead_letter"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    topic: Mapped[str] = mapped_column(String(200))
    key: Mapped[str] = mapped_column(Text, default="")
    payload: Mapped[str] = mapped_column(Text)
    error: Mapped[str] = mapped_column(Text)
    at: Mapped[datetime] = _now()


class WorkerHeartbeat(Base):
    """Faust workers beat here every few seconds; reconciliation requeues the RUNNING steps of a
    worker that stopped beating (SIGKILL, lost machine) without waiting for step timeouts."""

    __tablename__ = "worker_heartbeat"
    worker: Mapped[str] = mapped_column(String(200), primary_key=True)
    seen_at: Mapped[datetime] = _now()


class Counter(Base):
    """Monotonic counters shown on the status API (files imported, steps retried, ...)."""

    __tablename__ = "counter"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")


class OperatorCommandRow(Base):
    """An operator action (retry, resume, cancel, assign) as the engine applied it: stored once
    per command id, so a redelivered or replayed command is never applied twice."""

    __tablename__ = "operator_command"
    command_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    action: Mapped[str] = mapped_column(String(16))
    command: Mapped[dict[str, Any]] = mapped_column()
    actor: Mapped[str] = mapped_column(String(200))
    issued_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    ok: Mapped[bool] = mapped_column(Boolean)
    result: Mapped[dict[str, Any]] = mapped_column()
    error_kind: Mapped[str] = mapped_column(String(16), default="", server_default="")
    message: Mapped[str] = mapped_column(Text, default="", server_default="")
    applied_at: Mapped[datetime] = _now()


# --- issue 15: operator marks (migration 0007) ---------------------------------------------------


class SessionEditRow(Base):
    """The exit, opening and landing an operator set by hand on a jump's recording (seconds);
    the `phases` step builds the edit from them instead of detecting (storage/session_edit.py)."""

    __tablename__ = "session_edit"
    session_key: Mapped[str] = mapped_column(
        String(128), ForeignKey("jump_session.key"), primary_key=True
    )
    marks: Mapped[dict[str, Any]] = mapped_column()
    set_by: Mapped[str] = mapped_column(String(200))
    set_at: Mapped[datetime] = _now()
    command_id: Mapped[str] = mapped_column(String(64), default="", server_default="")


# --- passenger links (issue 16: the passenger page /p/<token>) ---------------------------------


class PassengerLink(Base):
    """A link issued to a booking's passenger page: the signed token names this row, which says
    whether it was revoked (the expiry is signed into the token as well)."""

    __tablename__ = "passenger_link"
    __table_args__ = (Index("ix_passenger_link_booking", "booking_id"),)
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    booking_id: Mapped[str] = mapped_column(String(64))
    created_by: Mapped[str] = mapped_column(String(200), default="", server_default="")
    created_at: Mapped[datetime] = _now()
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_by: Mapped[str | None] = mapped_column(String(200))


# --- retention and deletion (issue 16, item 5; migration 0010) --------------------------------
# Columns a purge sets on rows it keeps (the ledger row stays: a card inserted again copies
# nothing): jump_session.media_purged_at / personal_purged_at, imported_file.purged_at.
JumpSession.media_purged_at = mapped_column(DateTime(timezone=True))  # type: ignore[attr-defined]
JumpSession.personal_purged_at = mapped_column(DateTime(timezone=True))  # type: ignore[attr-defined]
ImportedFile.purged_at = mapped_column(DateTime(timezone=True))  # type: ignore[attr-defined]


class PurgeRecord(Base):
    """One purge of a booking: why, who, when, what it did and what it could not do."""

    __tablename__ = "purge_record"
    __table_args__ = (Index("ix_purge_record_booking", "booking_id", "at"),)
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    booking_id: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(
        String(32)
    )  # retention-media | retention-personal | request
    requested_by: Mapped[str] = mapped_column(String(200), default="", server_default="")
    at: Mapped[datetime] = _now()
    what: Mapped[dict[str, Any]] = mapped_column(
        JSONB, default=dict, server_default=text("'{}'::jsonb")
    )
    errors: Mapped[list[dict[str, Any]]] = mapped_column(
        JSONB, default=list, server_default=text("'[]'::jsonb")
    )


# --- deliveries (issue 16: the passenger's email, exactly once) -------------------------------


class Delivery(Base):
    """One email to a booking's passenger: `idempotency_key` is claimed before it is sent, so a
    redelivered, replayed or retried `deliver` step never sends it twice."""

    __tablename__ = "delivery"
    __table_args__ = (
        Index("ix_delivery_booking", "booking_id"),
        Index("ix_delivery_created", "created_at"),
    )
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    booking_id: Mapped[str] = mapped_column(String(64))
    deliverable_set: Mapped[str] = mapped_column(String(64))
    idempotency_key: Mapped[str] = mapped_column(String(200), unique=True)
    recipient: Mapped[str] = mapped_column(String(254))
    status: Mapped[str] = mapped_column(String(16))  # sending | sent | failed
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    last_error: Mapped[str] = mapped_column(Text, default="", server_default="")
    message_id: Mapped[str] = mapped_column(String(300))
    link_id: Mapped[int | None] = mapped_column(BigInteger)
    outbox_file: Mapped[str | None] = mapped_column(Text)
    session_key: Mapped[str | None] = mapped_column(String(128))
    requested_by: Mapped[str] = mapped_column(String(200), default="", server_default="")
    request_id: Mapped[str] = mapped_column(String(64), default="", server_default="")
    created_at: Mapped[datetime] = _now()
    updated_at: Mapped[datetime] = _now()
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
