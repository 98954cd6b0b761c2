"""The API's action models: what the mutating endpoints (retry, cancel, assign, edit, purge,
revoke) take and answer, the assign form's booking lookup and the dashboard login. The read
models are in streams/hub/api_models.py; both are served in the OpenAPI document
(streams/hub/openapi.py)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RetryResult(_Model):
    execution_id: int
    retried: list[str] = Field(description="Steps made ready again.")


class CancelResult(_Model):
    execution_id: int
    cancelled_steps: int


class AssignRequest(_Model):
    booking_id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
    passenger: str = Field(
        min_length=1,
        max_length=120,
        pattern=r"^[^\x00-\x1f\x7f]*[^\s\x00-\x1f\x7f][^\x00-\x1f\x7f]*$",
        description="Shown in the video title: no control characters, not blank.",
    )
    # issue 16: where the passenger link is emailed, and what the booking bought
    email: str | None = Field(
        None,
        max_length=254,
        pattern=r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]{1,64}@([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}$",
        description="The passenger's email: the link is sent there once the jump is ready.",
    )
    product: str | None = Field(
        None,
        min_length=1,
        max_length=60,
        pattern=r"^[^\x00-\x1f\x7f]+$",
        description="What the booking bought (e.g. 'video+photos'); see agents/deliverables.py.",
    )


class AssignResult(_Model):
    key: str
    status: str
    booking_id: str
    passenger: str
    execution_id: int | None
    actor: str
    email: str | None = None  # issue 16
    product: str | None = None


class DetectorRevoked(_Model):
    """A detector's token revoked: new handshakes are refused, its live socket closed."""

    detector_id: str
    revoked: bool
    connected_hub: str | None = Field(
        description="The hub replica that held its socket when it was revoked (None: offline)."
    )
    closed: bool | None = Field(
        description="Its live connection went away (None: it was not connected, or the hubs "
        "could not be told at once)."
    )
    hubs_told: int | None = Field(
        description="Hub replicas that heard the announcement (None: Redis was unreachable; "
        "each hub still closes a revoked socket at its next token re-check, within seconds)."
    )
    message: str


class PurgeResult(_Model):
    """A booking purged (issue 16, item 5): what the purge record says it did."""

    record_id: int
    booking_id: str
    reason: str = Field(description="request | retention-media | retention-personal.")
    what: dict[str, Any] = Field(
        description="Counts: files_deleted, bytes_deleted, copies_marked_purged, "
        "rows_anonymised, links_revoked, ...; nothing_left: true when there was nothing to do."
    )
    errors: list[dict[str, str]] = Field(
        description="What could not be done: {path, error, action}; the rest was done."
    )


class CommandQueued(_Model):
    """202: the engine did not answer in time; the command applies when a worker runs."""

    command_id: str
    status: str = Field(description="'queued: applies when the worker runs'.")


# --- issue 15, item 7: operator marks (POST /api/sessions/{key}/edit) ---------------------------


class EditRequest(_Model):
    """Marks set by hand, in seconds on the recording's timeline (the clips end to end):
    exit < opening < landing, within the recording; landing null: the edit runs to the end."""

    exit: float = Field(ge=0)
    opening: float = Field(ge=0)
    landing: float | None = Field(default=None, ge=0)


class EditResult(_Model):
    """202: the marks are stored and the session's phases step, render and publish run again."""

    key: str
    status: str = Field(description="The session's status (assigned when the marks approved it).")
    execution_id: int
    marks: dict[str, float | None]
    rerun: list[str] = Field(description="Steps dispatched now; render and publish follow.")
    approved: bool = Field(description="The session waited for a person because of its edit.")
    applied_before: bool = Field(description="This command was applied already: nothing redone.")
    actor: str


# --- end issue 15, item 7 -------------------------------------------------------------------------


# --- issue 17: the review form's booking lookup (GET /api/bookings/recent) ---


class RecentBooking(_Model):
    booking_id: str
    passenger: str | None
    product: str | None
    jumps: int = Field(description="Jumps that carry this booking.")
    last_seen_at: datetime


class RecentBookings(_Model):
    items: list[RecentBooking]


# --- issue 17: the dashboard login (POST/GET /api/login, POST /api/logout) ---


class LoginRequest(BaseModel):
    """The hub's admin token, typed once per browser (`skyreel run` prints it). Other keys are
    ignored."""

    model_config = ConfigDict(extra="ignore")

    token: str = Field(min_length=1, max_length=1024, description="Not only whitespace.")


class LoginState(_Model):
    """Whether this browser has a dashboard session, and whether reads need none (LAN)."""

    logged_in: bool
    reads_open: bool


class LoginResult(LoginState):
    """Logged in: the session cookie is set (HttpOnly, SameSite=Strict) and expires then."""

    expires_at: datetime


#: In the OpenAPI document beside `api_models.RESPONSE_MODELS`.
LOGIN_MODELS: tuple[type[BaseModel], ...] = (LoginRequest, LoginState, LoginResult)
