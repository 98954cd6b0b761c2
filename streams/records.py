"""Records on the Kafka topics: the contract between hub, agents and render workers.

Every record carries ``v`` (schema version). Records are plain JSON on the wire (Faust's json
serializer), so the hub, which is not a Faust worker, produces and consumes them with aiokafka
through :func:`encode` / :func:`decode`.
"""

from __future__ import annotations

import json
from typing import Any, TypeVar

import faust

SCHEMA_VERSION = 1


class _Base(faust.Record, serializer="json", isodates=True):
    v: int = SCHEMA_VERSION


class DetectorEvent(_Base):
    """A card was inserted, listed or removed at a detector (key: card id)."""

    event_id: str
    event: str  # card_inserted | file_list | card_removed
    detector_id: str
    card_id: str
    label: str = ""
    # file_list only: [{"path", "size", "mtime", "kind"}], validated by the hub
    files: list[dict[str, Any]] | None = None


class CopyRequest(_Base):
    """Ask a detector to copy one card file to the share (key: detector id)."""

    request_id: str
    detector_id: str
    card_id: str
    file_id: int
    path: str
    size: int
    mtime: float
    destination: str
    priority: int


class CopyResult(_Base):
    """What a detector reported for a copy request (key: detector id)."""

    request_id: str
    detector_id: str
    file_id: int
    status: str  # copied | failed
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
    more: list[dict[str, Any]] | None = None

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
    status: str  # running | progress | succeeded | failed
    output: dict[str, Any] | None = None
    error: str = ""
    retryable: bool = False
    progress: float | None = None
    worker: str = ""
    spawn: list[dict[str, Any]] | None = None


class StatusEvent(_Base):
    """Something the dashboard should show changed (key: execution id or detector id)."""

    kind: str  # step | execution | detector | file | session
    id: str
    data: dict[str, Any] | None = None


class DeadLetter(_Base):
    """A message an agent could not process, with the error (key: original key)."""

    topic: str
    key: str
    payload: str
    error: str


R = TypeVar("R", bound=faust.Record)


def encode(record: faust.Record) -> bytes:
    """JSON bytes for the wire, without Faust's type metadata."""
    return json.dumps(record.asdict(), default=str, separators=(",", ":")).encode()


def decode(cls: type[R], raw: bytes) -> R:
    data = json.loads(raw)
    if isinstance(data, dict):
        data.pop("__faust", None)
    return cls.from_data(data)
