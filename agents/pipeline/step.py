"""One pipeline step: its state, the outcome of running it, and every transition it can make.

No I/O here; `agents/pipeline/dag.py` builds readiness, failure blocking and spawning of a whole
execution on top of these functions (and re-exports them, so `dag.start` etc. keep working).

A step is *done* when it succeeded or was skipped (a skip is a deliberate "nothing to do here",
so dependents go on); `DONE` and `TERMINAL` name those sets of statuses.

Attempts. `attempt` counts dispatches: 0 while pending, and every move into READY opens a new one
(`mark_ready`, an automatic retry, `retry`, `requeue`). A step request and every result carry the
attempt they belong to, which makes redelivery harmless:
  - a worker claims a step with `start(step, attempt)`; a second claim of the same attempt
    returns the step unchanged (`new is step`), so the caller knows not to run it;
  - `apply_result` ignores (returns the step unchanged) results of another attempt and results
    for a step that already finished;
  - reconciliation re-sends READY steps as they are (claims dedupe) and `requeue`s RUNNING steps
    whose work was lost, so a late result of the lost attempt is stale and ignored.
A function returns its input object unchanged exactly when nothing changed; callers test
`new is step` to skip writes.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Protocol, TypeAlias

from agents.pipeline.errors import InvalidDag, InvalidTransition, StepFailed
from storage.enums import StepStatus
from storage.step_fields import StepFields

DONE = frozenset({StepStatus.SUCCEEDED, StepStatus.SKIPPED})
TERMINAL = frozenset({*DONE, StepStatus.FAILED, StepStatus.CANCELLED})


@dataclass(frozen=True, slots=True)
class StepState(StepFields):
    """One node of an execution's DAG as the pure core sees it (a `pipeline_step` row's fields,
    validated)."""

    def __post_init__(self) -> None:
        # Rows come back with lists and plain strings; normalise so equality is by value.
        object.__setattr__(self, "depends_on", frozenset(self.depends_on))
        object.__setattr__(self, "spawns", frozenset(self.spawns))
        object.__setattr__(self, "status", StepStatus(self.status))
        if not self.name or "*" in self.name or self.name.startswith("?"):
            raise InvalidDag(
                self.name, "a step name must be non-empty, contain no '*' and not start with '?'"
            )
        for ref in self.depends_on | self.spawns:
            # a dependency may start with '?' (settled: see dag.py); a spawn pattern may not
            bare = ref[1:] if ref.startswith("?") and ref in self.depends_on else ref
            if not bare or "*" in bare[:-1] or bare.startswith("?"):
                raise InvalidDag(
                    self.name, f"bad {ref!r}: '*' is allowed only as the last character"
                )
        if not all(p.endswith("*") for p in self.spawns):  # dag.is_pattern
            raise InvalidDag(self.name, f"spawns patterns must end in '*': {sorted(self.spawns)}")
        if self.attempt < 0 or self.max_attempts < 1:
            raise InvalidDag(self.name, "attempt must be >= 0 and max_attempts >= 1")

    @property
    def done(self) -> bool:
        return self.status in DONE

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL

    @property
    def definition(self) -> tuple[str, str, frozenset[str], frozenset[str], str | None]:
        """What describes the work, as opposed to its progress (what idempotent spawns compare)."""
        return (self.name, self.kind, self.depends_on, self.spawns, self.spawned_by)


class BackoffPolicy(Protocol):
    """What `backoff_delay` needs; `registry.StepKind` provides it."""

    @property
    def backoff_base_s(self) -> float: ...

    @property
    def backoff_cap_s(self) -> float: ...


def capped_backoff(base_s: float, cap_s: float, attempt: int) -> float:
    """Seconds to wait after attempt number `attempt` (1-based) failed: base * 2^(n-1), capped.

    The one backoff formula: step retries (`backoff_delay`) and the agents' outage retries
    (agents/guard.py) both use it."""
    if attempt < 1:
        raise ValueError(f"attempt must be >= 1, got {attempt}")
    # Clamp the exponent so a huge attempt number cannot overflow the float.
    return float(min(cap_s, base_s * 2.0 ** min(attempt - 1, 64)))


def backoff_delay(policy: BackoffPolicy, attempt: int) -> float:
    """The step kind's backoff after attempt number `attempt` (1-based) failed."""
    return capped_backoff(policy.backoff_base_s, policy.backoff_cap_s, attempt)


@dataclass(frozen=True, slots=True)
class Success:
    pass


@dataclass(frozen=True, slots=True)
class Failure:
    error: str
    retryable: bool

    @classmethod
    def from_error(cls, exc: StepFailed) -> Failure:
        return cls(error=exc.reason, retryable=exc.retryable)


@dataclass(frozen=True, slots=True)
class Waiting:
    reason: str


Outcome: TypeAlias = Success | Failure | Waiting


# --- transitions of one step ------------------------------------------------------------------


def _reject(step: StepState, action: str, reason: str) -> InvalidTransition:
    return InvalidTransition(step.name, step.status, action, reason)


def _next_attempt(step: StepState, backoff_s: float = 0.0) -> StepState:
    return dataclasses.replace(
        step,
        status=StepStatus.READY,
        attempt=step.attempt + 1,
        waiting_for="",
        backoff_s=backoff_s,
    )


def mark_ready(step: StepState) -> StepState:
    """PENDING -> READY (new attempt). Call it for names `ready_steps` returned."""
    if step.status is StepStatus.READY:
        return step
    if step.status is not StepStatus.PENDING:
        raise _reject(step, "mark ready", "only a pending step can become ready")
    return _next_attempt(step)


def start(step: StepState, attempt: int) -> StepState:
    """Claim `attempt` of a READY step: -> RUNNING. Duplicate or stale claims return `step`."""
    if attempt > step.attempt:
        raise _reject(step, "start", f"attempt {attempt} was never dispatched ({step.attempt})")
    if attempt < step.attempt:
        return step
    if step.status is StepStatus.READY:
        return dataclasses.replace(step, status=StepStatus.RUNNING)
    if step.status is StepStatus.PENDING:
        raise _reject(step, "start", "its dependencies have not all succeeded")
    return step


def _require_running(step: StepState, attempt: int, action: str) -> None:
    if step.status is not StepStatus.RUNNING or attempt != step.attempt:
        raise _reject(step, action, f"attempt {attempt} is not running (current {step.attempt})")


def succeed(step: StepState, attempt: int) -> StepState:
    _require_running(step, attempt, "succeed")
    return dataclasses.replace(step, status=StepStatus.SUCCEEDED, error="", waiting_for="")


def fail(
    step: StepState, attempt: int, error: str, *, retryable: bool, policy: BackoffPolicy
) -> StepState:
    """Retryable with attempts left -> READY (next attempt, `backoff_s` set); else FAILED."""
    _require_running(step, attempt, "fail")
    if retryable and step.attempt < step.max_attempts:
        retried = _next_attempt(step, backoff_delay(policy, step.attempt))
        return dataclasses.replace(retried, error=error)
    return dataclasses.replace(step, status=StepStatus.FAILED, error=error, waiting_for="")


def wait(step: StepState, attempt: int, reason: str) -> StepState:
    """The running attempt is blocked on something outside (a human, a booking)."""
    _require_running(step, attempt, "wait")
    if not reason:
        raise _reject(step, "wait", "a reason is required")
    if step.waiting_for == reason:
        return step
    return dataclasses.replace(step, waiting_for=reason)


def apply_result(
    step: StepState, attempt: int, outcome: Outcome, policy: BackoffPolicy
) -> StepState:
    """Record a worker's result; results of another attempt or for a finished step are ignored."""
    if attempt > step.attempt:
        raise _reject(step, "apply result", f"attempt {attempt} was never dispatched")
    if attempt < step.attempt or step.terminal:
        return step
    if isinstance(outcome, Success):
        return succeed(step, attempt)
    if isinstance(outcome, Failure):
        return fail(step, attempt, outcome.error, retryable=outcome.retryable, policy=policy)
    return wait(step, attempt, outcome.reason)


def skip(step: StepState) -> StepState:
    """PENDING/READY -> SKIPPED: deliberately not run; dependents treat it as done."""
    if step.status is StepStatus.SKIPPED:
        return step
    if step.status not in (StepStatus.PENDING, StepStatus.READY):
        raise _reject(step, "skip", "only a step that has not started can be skipped")
    return dataclasses.replace(step, status=StepStatus.SKIPPED)


def cancel(step: StepState) -> StepState:
    """Any unfinished step -> CANCELLED; a finished one is returned unchanged."""
    if step.terminal:
        return step
    return dataclasses.replace(step, status=StepStatus.CANCELLED, waiting_for="")


def retry(step: StepState) -> StepState:
    """A FAILED step -> READY with a new attempt; allowed beyond `max_attempts` (a human asked).

    READY is safe: the step ran, so its dependencies were done, and done never reverts.
    """
    if step.status is not StepStatus.FAILED:
        raise _reject(step, "retry", "only a failed step can be retried")
    return dataclasses.replace(_next_attempt(step), error="")


def redo(step: StepState) -> StepState:
    """A done step -> PENDING, to run again (a new attempt) once its dependencies are done again:
    something it went on without (a settled dependency) is being retried."""
    if step.status is StepStatus.PENDING:
        return step
    if step.status not in DONE:
        raise _reject(step, "redo", "only a step that succeeded or was skipped can run again")
    return dataclasses.replace(step, status=StepStatus.PENDING, waiting_for="", backoff_s=0.0)


def rerun(step: StepState) -> StepState:
    """Any step -> PENDING, to run again (a new attempt, by promotion, once its dependencies are
    done): an operator changed what it reads (`dag.rerun`). A RUNNING or READY attempt is
    abandoned: its request and result are then stale. PENDING is returned unchanged."""
    if step.status is StepStatus.PENDING:
        return step
    return dataclasses.replace(
        step, status=StepStatus.PENDING, waiting_for="", backoff_s=0.0, error=""
    )


def retry_running(step: StepState) -> StepState:
    """A RUNNING step -> READY with a new attempt, because an operator asked: its worker is gone
    (or they forced it). The running attempt's result, if it ever comes, is then stale."""
    if step.status is not StepStatus.RUNNING:
        raise _reject(step, "retry running", "only a running step can be moved on this way")
    return dataclasses.replace(_next_attempt(step), error="")


def operator_retry(step: StepState, *, worker_gone: bool, force: bool) -> StepState:
    """What `retry` from the API or CLI does to one step: a FAILED step is retried; a RUNNING
    one only when the worker running it is gone or the operator forces it; anything else is
    refused (InvalidTransition says why)."""
    if step.status is StepStatus.RUNNING:
        if not (worker_gone or force):
            raise _reject(step, "retry", "it is running on a live worker (force it to move it)")
        return retry_running(step)
    return retry(step)


def resume(step: StepState) -> StepState:
    """CANCELLED -> PENDING: it runs again (a new attempt) once its dependencies are done."""
    if step.status is StepStatus.PENDING:
        return step
    if step.status is not StepStatus.CANCELLED:
        raise _reject(step, "resume", "only a cancelled step can be resumed")
    return dataclasses.replace(
        step, status=StepStatus.PENDING, waiting_for="", backoff_s=0.0, error=""
    )


def requeue(step: StepState) -> StepState:
    """RUNNING -> READY with a new attempt: its work was lost, or its wait is over."""
    if step.status is not StepStatus.RUNNING:
        raise _reject(step, "requeue", "only a running step can be requeued")
    return _next_attempt(step)
