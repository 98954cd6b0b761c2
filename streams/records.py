"""Records on the Kafka topics: the contract between hub, agents and render workers.

Every record is a pydantic model and carries ``v`` (schema version); statuses and kinds are the
enums of :mod:`storage.enums`. The topics carry raw bytes: :func:`encode` writes a record as
compact JSON and :func:`decode` validates one back (a ``pydantic.ValidationError``, a
``ValueError``, on anything that is not the record), so the hub, the Faust agents and the tools
all read and write the same thing without Faust's type metadata. Fields a newer writer adds are
ignored by an older reader.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from storage.enums import CommandAction, CopyStatus, DetectorEventKind, ResultStatus, StatusKind
from storage.imports import PlannedCopy

SCHEMA_VERSION = 1
_REQUEST_ID = re.compile(r"f([1-9][0-9]{0,17})")


class _Base(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=False, use_enum_values=False)

    v: int = SCHEMA_VERSION


class DetectorEvent(_Base):
    """A card was inserted, listed or removed at a detector (key: card id)."""

    event_id: str
    event: DetectorEventKind
    detector_id: str
    card_id: str
    label: str = ""
    # file_list only: [{"path", "size", "mtime", "kind", "duration"?}], validated by the hub
    files: list[dict[str, Any]] | None = None


def copy_request_id(file_id: int) -> str:
    """The request id of a file's copy (one per file: a re-request replaces, never adds)."""
    return f"f{file_id}"


def file_of_request(request_id: str) -> int | None:
    """The file id a copy request id names, or None if it is not one of ours."""
    match = _REQUEST_ID.fullmatch(request_id)
    return int(match.group(1)) if match else None


class CopyRequest(_Base):
    """Ask a detector to copy one card file to the share (key: detector id).

    Built only by :meth:`for_file`: the one place a copy request is made."""

    request_id: str
    detector_id: str
    card_id: str
    file_id: int
    path: str
    size: int
    mtime: float
    destination: str
    priority: int

    @classmethod
    def for_file(cls, detector_id: str, card_id: str, f: PlannedCopy) -> CopyRequest:
        return cls(
            request_id=copy_request_id(f.file_id),
            detector_id=detector_id,
            card_id=card_id,
            file_id=f.file_id,
            path=f.path,
            size=f.size,
            mtime=f.mtime_ms / 1000,
            destination=f.destination,
            priority=f.priority,
        )


class CopyResult(_Base):
    """What a detector reported for a copy request (key: detector id)."""

    request_id: str
    detector_id: str
    file_id: int
    status: CopyStatus
    destination: str = ""
    size: int = 0
    hash: str = ""
    hash_algo: str = ""
    reason: str = ""
    # why a copy failed, as a kind (detector.protocol.FAILURE_KINDS: no_space, source,
    # destination, ...); '' for a copy, or a detector too old to say
    failure: str = ""


class StepRequest(_Base):
    """Run one step attempt (key: ``<execution>:<step>``).

    ``more`` carries further steps of the same execution that became ready at the same moment
    ({"step", "kind", "attempt", "input"}): a fan-out of a thousand steps travels as a few dozen
    messages, each claimed in one transaction.
    """

    execution_id: int
    step: str
    kind: str
    attempt: int
    input: dict[str, Any] | None = None
    more: list[Any] | None = None  # entries checked by expand(): a bad one fails alone

    def expand(self) -> list[StepRequest]:
        """This request and the ones it carries, one per step (``more`` is validated)."""
        out = [
            StepRequest(
                execution_id=self.execution_id,
                step=self.step,
                kind=self.kind,
                attempt=self.attempt,
                input=self.input,
            )
        ]
        for m in self.more or []:
            if not (
                isinstance(m, dict)
                and isinstance(m.get("step"), str)
                and isinstance(m.get("kind"), str)
                and isinstance(m.get("attempt"), int)
            ):
                raise ValueError(f"bad step in a batched request: {m!r}")
            step_input = m.get("input")
            out.append(
                StepRequest(
                    execution_id=self.execution_id,
                    step=m["step"],
                    kind=m["kind"],
                    attempt=m["attempt"],
                    input=step_input if isinstance(step_input, dict) else None,
                )
            )
        return out


class StepResult(_Base):
    """The outcome or progress of one step attempt (key: execution id)."""

    execution_id: int
    step: str
    attempt: int
    status: ResultStatus
    output: dict[str, Any] | None = None
    error: str = ""
    retryable: bool = False
    progress: float | None = None
    worker: str = ""
    spawn: list[dict[str, Any]] | None = None

    def message(self) -> tuple[bytes, bytes]:
        """(key, value) to send on the step-results topic: keyed by the execution."""
        return str(self.execution_id).encode(), encode(self)


class StatusEvent(_Base):
    """Something the dashboard should show changed (key: execution id or detector id)."""

    kind: StatusKind
    id: str
    data: dict[str, Any] | None = None


class DeadLetter(_Base):
    """A message an agent could not process, with the error (key: original key)."""

    topic: str
    key: str
    payload: str
    error: str


R = TypeVar("R", bound=_Base)


def encode(record: _Base) -> bytes:
    """Compact JSON bytes for the wire."""
    return record.model_dump_json(fallback=str).encode()


def decode(cls: type[R], raw: bytes | str) -> R:
    """The record in ``raw``; raises ``ValueError`` (pydantic's ValidationError) if it is not."""
    return cls.model_validate_json(raw)


def as_dict(record: _Base) -> dict[str, Any]:
    """The record as plain JSON values (enums as their strings)."""
    return record.model_dump(mode="json")


# --- operator commands (issue 13) ---------------------------------------------------------------


class EditMarks(BaseModel):
    """Marks an operator sets on a jump's recording (seconds on the recording's timeline, the
    clips end to end): ``exit < opening < landing``, none negative; ``landing`` may be None (the
    edit then runs to the end). Whether they lie within the recording is checked against it
    (:meth:`beyond`) by the API and by the engine."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    exit: float = Field(ge=0, allow_inf_nan=False)
    opening: float = Field(ge=0, allow_inf_nan=False)
    landing: float | None = Field(default=None, ge=0, allow_inf_nan=False)

    @field_validator("exit", "opening", "landing", mode="before")
    @classmethod
    def _number(cls, value: object) -> object:
        # a JSON number only: "12.5" or true would otherwise be coerced
        if value is None or (isinstance(value, int | float) and not isinstance(value, bool)):
            return value
        raise ValueError("must be a number of seconds")

    @model_validator(mode="after")
    def _ordered(self) -> EditMarks:
        if not self.exit < self.opening:
            raise ValueError(f"exit ({self.exit} s) must come before opening ({self.opening} s)")
        if self.landing is not None and not self.opening < self.landing:
            raise ValueError(
                f"opening ({self.opening} s) must come before landing ({self.landing} s)"
            )
        return self

    def beyond(self, recording_s: float) -> str:
        """Why the marks do not fit a recording of `recording_s` seconds ('' when they do)."""
        last = self.landing if self.landing is not None else self.opening
        name = "landing" if self.landing is not None else "opening"
        if last > recording_s:
            return f"{name} at {last} s is beyond the end of the recording ({recording_s:.1f} s)"
        return ""

    def as_dict(self) -> dict[str, float | None]:
        return {"exit": self.exit, "opening": self.opening, "landing": self.landing}


class OperatorCommand(_Base):
    """An operator action for the engine to apply (key: execution id, or the session key).

    retry: ``execution_id``, ``step`` (None: every failed step), ``force``; resume and cancel:
    ``execution_id``; assign: ``session_key``, ``booking_id``, ``passenger`` (and ``email``,
    ``product``); resend: ``booking_id``; edit: ``session_key``, ``marks``; purge: ``booking_id``;
    replay: ``topic``, ``offsets``. The engine
    stores the outcome once per ``command_id`` (storage/commands.py).
    """

    command_id: str
    action: CommandAction
    actor: str
    issued_at: datetime
    execution_id: int | None = None
    step: str | None = None
    force: bool = False
    session_key: str | None = None
    booking_id: str | None = None
    passenger: str | None = None
    marks: EditMarks | None = None  # edit: the operator's marks (issue 15)
    # issue 16: assign may set the passenger's email and the product; resend names the booking
    email: str | None = None
    product: str | None = None
    # replay (issue 17): the topic and the offset to rewind each partition to
    topic: str | None = None
    offsets: dict[int, int] | None = None

    @property
    def key(self) -> bytes:
        return (
            self.session_key or self.booking_id or self.topic or str(self.execution_id)
        ).encode()
