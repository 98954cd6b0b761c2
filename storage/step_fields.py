"""The DAG columns of a `pipeline_step` row as a plain value (no I/O, no rules).

Storage loads rows as `StepFields` and writes whatever has these fields; the pure core's
`agents.pipeline.step.StepState` is a `StepFields` that validates them and adds the rules.
"""

from __future__ import annotations

from dataclasses import dataclass

from storage.enums import StepStatus


@dataclass(frozen=True, slots=True)
class StepFields:
    """The DAG columns of a `pipeline_step` row, as stored (no rules: the core validates)."""

    name: str
    kind: str
    depends_on: frozenset[str] = frozenset()
    spawns: frozenset[str] = frozenset()  # patterns of names this step may spawn
    status: StepStatus = StepStatus.PENDING
    attempt: int = 0
    max_attempts: int = 1
    spawned_by: str | None = None
    error: str = ""  # last failure, kept until the step succeeds or is retried by hand
    waiting_for: str = ""  # non-empty: running but blocked on an outside condition
    backoff_s: float = 0.0  # delay before dispatching the current attempt
