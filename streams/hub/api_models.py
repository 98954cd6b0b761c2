"""Response and request bodies of the status API, as pydantic models.

Every endpoint builds its body through one of these, so a response that does not match the
documented schema fails in the hub (and in the tests) instead of surprising a client. The
OpenAPI document (`streams.hub.openapi`) is generated from the same classes.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from streams.hub.api_action_models import (
    AssignRequest,
    AssignResult,
    CancelResult,
    CommandQueued,
    DetectorRevoked,
    EditRequest,
    EditResult,
    PurgeResult,
    RecentBookings,
    RetryResult,
)
from streams.hub.api_edit_models import SessionEdit  # issue 15: the session's automatic edit


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _as_texts(value: object) -> object:
    # jsonb lists written by other processes: a stray non-string entry is shown, not a 500
    if value is None:
        return []
    if isinstance(value, list):
        return [v if isinstance(v, str) else json.dumps(v) for v in value if v is not None]
    return value


Texts = Annotated[list[str], BeforeValidator(_as_texts)]


class ErrorBody(_Model):
    code: str = Field(description="Machine-readable error code, e.g. not_found, invalid.")
    message: str = Field(description="What went wrong, for people.")


class ErrorResponse(_Model):
    error: ErrorBody


MediaKind = Literal["video", "poster", "file"]


class MediaLink(_Model):
    """A file the hub serves now; a file that is gone (a staged render after publish) has none."""

    kind: MediaKind = Field(description="video or poster of a render; file: a copied clip.")
    url: str = Field(
        description="Where the hub serves it: /media/share/... (footage, render staging) or "
        "/media/output/... (published)."
    )
    name: str


class ExecutionSummary(_Model):
    id: int
    key: str
    pipeline: str
    subject_type: str
    subject_id: str
    status: str
    card_id: str | None
    booking_id: str | None
    passenger: str | None
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None
    steps_total: int
    steps_done: int
    steps_failed: int
    steps_running: int
    progress: float = Field(ge=0, le=1, description="Done steps plus running steps' progress.")
    warnings: Texts = Field(
        description="A jump's session warnings (clips left out, clock trouble); [] otherwise."
    )
    review_reason: str = Field(
        description="Why the jump's session waits for a person; '' when it does not."
    )


class ExecutionList(_Model):
    items: list[ExecutionSummary]
    limit: int
    next_cursor: str | None = Field(description="Pass as ?cursor= for the next page; null: last.")


class StepAttempt(_Model):
    attempt: int
    status: str
    worker: str | None
    error: str
    started_at: datetime | None
    finished_at: datetime | None


class StepNode(_Model):
    id: int
    name: str
    kind: str
    status: str
    attempt: int
    max_attempts: int
    depends_on: list[str]
    spawns: list[str]
    spawned_by: str | None
    progress: float | None
    error: str
    worker: str | None
    waiting_for: str
    created_at: datetime
    ready_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    duration_s: float | None
    attempts: list[StepAttempt]


class Edge(_Model):
    source: str = Field(description="The step depended on.")
    target: str = Field(description="The step that waits for it.")


class ExecutionDetail(ExecutionSummary):
    context: dict[str, object]
    steps: list[StepNode]
    edges: list[Edge]
    media: list[MediaLink]


class LogLine(_Model):
    id: int
    attempt: int
    level: str
    message: str
    actor: str
    at: datetime


class StepLogs(_Model):
    execution_id: int
    step: str
    attempt: int | None
    lines: list[LogLine]
    next_after: int | None = Field(description="Pass as ?after= for more lines; null: no more.")


Severity = Literal["action", "warning", "info"]
NoteKind = Literal[
    "needs_review",
    "session_warning",
    "card_copying",
    "card_safe",
    "card_removed_early",
    "card_files_failed",
    "card_files_skipped",
    "card_nearly_full",
    "card_clock",
    "card_skipped_file",
]


class CardNote(_Model):
    kind: NoteKind
    severity: Severity = Field(
        description="action: a person must act; warning: worth knowing; info: all is well."
    )
    message: str = Field(description="For people, e.g. 'copying 3 files — do not remove'.")


class SkippedFile(_Model):
    path: str
    reason: str


class Card(_Model):
    id: str
    label: str
    detector_id: str | None
    present: bool
    first_seen_at: datetime
    last_seen_at: datetime
    previous_detector_id: str | None = Field(
        description="The station the card was at before it last moved to this one (null: "
        "never moved); only the files this station listed moved with it."
    )
    moved_at: datetime | None = Field(description="When the card last moved to this station.")
    files_total: int
    files_imported: int
    files_failed: int
    files_pending: int
    listed: int = Field(description="Footage files (proxies aside) ever listed from the card.")
    imported: int = Field(description="Of those, verified and imported.")
    outstanding: int = Field(description="Listed, requested or copying: still only on the card.")
    failed: int = Field(description="Gave up with a reason: still only on the card.")
    safe_to_remove: bool = Field(description="Pulling the card now loses nothing.")
    nearly_full: bool
    free_bytes: int | None = Field(description="Free space from the latest listing (null: none).")
    capacity_bytes: int | None
    skipped: list[SkippedFile] = Field(
        description="Files the detector or hub could not take (at most 100 here)."
    )
    skipped_total: int
    clock_warning: str = Field(description="'' unless the camera clock looks wrong.")
    notes: list[CardNote] = Field(
        description="The card in words, removal state first: safe to remove / copying N "
        "files — do not remove / ..., then nearly full, clock and skipped files."
    )


class CardList(_Model):
    items: list[Card]
    limit: int
    offset: int


class FileInfo(_Model):
    id: int
    card_id: str
    name: str
    path: str
    size: int
    mtime_ms: int
    kind: str
    status: str
    reason: str
    stored_path: str | None
    content_hash: str | None
    duration_s: float | None
    width: int | None
    height: int | None
    fps: float | None
    codec: str | None
    creation_time: datetime | None
    probe_error: str = Field(description="Why the clip could not be read; '' when it could.")
    session_key: str | None
    first_listed_at: datetime
    imported_at: datetime | None
    qr_status: str | None
    qr_booking_id: str | None
    qr_frame_s: float | None
    url: str | None = Field(
        description="The copied clip, under /media/share/...; null until it is imported or "
        "when its copy is no longer on the share."
    )
    frame_url: str | None = Field(
        description="A JPEG still of the clip; null whenever `url` is null."
    )


class FileList(_Model):
    card_id: str
    items: list[FileInfo]
    limit: int
    offset: int


class SessionSummary(_Model):
    key: str
    card_id: str
    status: str
    booking_id: str | None
    passenger: str | None
    product: str | None
    qr_file_id: int | None
    execution_id: int | None
    execution_status: str | None
    assigned_by: str | None
    created_at: datetime
    updated_at: datetime
    files: int
    warnings: Texts = Field(description="What an operator must know: clips left out, clock.")
    review_reason: str = Field(description="Why it waits for a person; '' when it does not.")
    purged_at: datetime | None = Field(
        None, description="When its footage was deleted (issue 16: retention or request)."
    )
    # issue 17 (dashboard): what an operator recognises a jump by besides the passenger
    card_label: str | None = Field(description="The card's label (its camera), if it has one.")
    station: str | None = Field(description="The station (detector) that read the card.")
    captured_at: datetime | None = Field(description="When the jump's first clip was recorded.")


class SessionList(_Model):
    items: list[SessionSummary]
    limit: int
    offset: int


class SessionDetail(SessionSummary):
    footage: list[FileInfo]
    qr_file: FileInfo | None
    frame_url: str | None = Field(description="Still frame of the QR clip for the review form.")
    media: list[MediaLink]
    # issue 15 (the automatic edit): the phases step's marks, EDL and timeline
    edit: SessionEdit | None = Field(
        default=None, description="The automatic edit; None: the session's pipeline has none."
    )


class CopyProgress(_Model):
    request_id: str
    bytes_done: int
    bytes_total: int


class DetectorInfo(_Model):
    id: str
    name: str
    revoked: bool
    online: bool
    hub: str | None
    remote: str | None
    since: str | None
    last_seen_at: datetime | None
    current_card_id: str | None
    copies: list[CopyProgress] = Field(description="Copies in flight seen by this hub replica.")


class DetectorList(_Model):
    items: list[DetectorInfo]


class QueueDepth(_Model):
    name: str
    queued: int
    active: int
    incomplete: int


class Counters(_Model):
    files_imported: int
    steps_failed: int
    steps_retried: int
    dead_letters: int
    queue: QueueDepth | None = Field(description="Render queue; null when Redis is down.")
    other: dict[str, int] = Field(description="Every other counter by name.")


class AttentionItem(_Model):
    kind: NoteKind
    severity: Severity
    subject: str = Field(description="What it is about, e.g. 'jump card-A:3 (Anna Berg)'.")
    detail: str = Field(description="The reason or warning itself.")
    message: str = Field(description="subject and detail in one line, for people.")
    card_id: str | None
    session_key: str | None
    execution_id: int | None


class Attention(_Model):
    items: list[AttentionItem] = Field(
        description="Actions first (review, cards pulled early or with failed files), then "
        "warnings; sessions newest first."
    )
    truncated: bool = Field(
        description="More sessions to review or warnings than ?limit=: the oldest were left out."
    )


class DeadLetterItem(_Model):
    id: int
    topic: str
    key: str
    payload: str
    error: str
    at: datetime


class DeadLetterList(_Model):
    items: list[DeadLetterItem]
    limit: int
    next_cursor: str | None


class ServiceHealth(BaseModel):
    up: bool = Field(description="It answered a real request within the health timeout.")
    address: str = Field(description="host:port checked (no credentials).")
    reason: str | None = Field(
        description="Why it counts as down, in words, with what `skyreel run` is doing about it "
        "('broker not answering at 127.0.0.1:19092: restarting (attempt 3)'); null when up."
    )


class DiskSpace(BaseModel):
    path: str
    free_bytes: int | None = Field(description="Null when the folder cannot be read.")
    total_bytes: int | None
    low_space: bool = Field(description="Free bytes below SKYREEL_LOW_SPACE_BYTES.")


class Health(BaseModel):
    """The hub and what it depends on. ``status`` is ``ok`` only when every dependency answers
    and neither folder is low on space; otherwise ``degraded`` (HTTP 503) with ``reasons``."""

    model_config = ConfigDict(extra="allow")
    status: str = Field(description="ok, degraded, or starting.")
    hub: str
    db: bool | None = None
    redis: bool | None = None
    kafka: bool | None = None
    copy_requests: bool | None = Field(None, description="The copy-request forwarder runs.")
    detectors: int | None = Field(None, description="Detectors connected to this replica.")
    services: dict[str, ServiceHealth] | None = Field(
        None, description="database, broker and redis, each checked for real."
    )
    disk: dict[str, DiskSpace] | None = Field(None, description="share and output.")
    low_space: bool | None = Field(None, description="The share or the output is low on space.")
    reasons: list[str] | None = Field(None, description="Why it is not ok, in words.")


RESPONSE_MODELS: tuple[type[BaseModel], ...] = (
    ErrorResponse,
    ExecutionList,
    ExecutionDetail,
    StepLogs,
    CardList,
    Card,
    FileList,
    SessionList,
    SessionDetail,
    DetectorList,
    Counters,
    Attention,
    DeadLetterList,
    ServiceHealth,
    DiskSpace,
    Health,
    RetryResult,
    CancelResult,
    AssignRequest,
    AssignResult,
    DetectorRevoked,
    CommandQueued,
    EditRequest,  # issue 15, item 7
    EditResult,
    PurgeResult,  # issue 16, item 5
    RecentBookings,  # issue 17
)
