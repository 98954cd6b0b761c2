"""Errors of the pipeline framework.

Two families live here. Framework errors (`InvalidTransition`, `InvalidDag`, `CycleError`,
`SpawnConflict`, `UnknownStepKind`, `StepKindConflict`) mean the orchestrator was asked to do
something the model forbids; they carry the step or kind they are about so the caller can log and
record them. Step errors (`RetryableStepError`, `PermanentStepError`) are what step handlers
raise; the orchestrator turns them into a `Failure` outcome, and only the retryable kind is
retried automatically.
"""

from __future__ import annotations

from collections.abc import Sequence


class PipelineError(Exception):
    """Base of every error the pipeline framework raises."""


class InvalidTransition(PipelineError):
    """A step was asked to move in a way its current state does not allow."""

    def __init__(self, step: str, status: str, action: str, reason: str) -> None:
        self.step = step
        self.status = status
        self.action = action
        self.reason = reason
        super().__init__(f"step {step!r} ({status}): cannot {action}: {reason}")


class InvalidDag(PipelineError):
    """The steps of an execution do not form a valid DAG."""

    def __init__(self, step: str, reason: str) -> None:
        self.step = step
        self.reason = reason
        super().__init__(f"step {step!r}: {reason}")


class UnknownDependency(InvalidDag):
    """A step depends on an exact name that is not a step of the execution."""

    def __init__(self, step: str, dependency: str) -> None:
        self.dependency = dependency
        super().__init__(step, f"depends on unknown step {dependency!r}")


class CycleError(InvalidDag):
    """The dependencies form a cycle; `cycle` lists it in dependency order, first == last."""

    def __init__(self, cycle: Sequence[str]) -> None:
        self.cycle = list(cycle)
        super().__init__(self.cycle[0], "dependency cycle: " + " -> ".join(self.cycle))


class SpawnConflict(PipelineError):
    """A spawn was refused: a name clash with a different definition, or a spawner not allowed."""

    def __init__(self, step: str, reason: str) -> None:
        self.step = step
        self.reason = reason
        super().__init__(f"cannot spawn {step!r}: {reason}")


class UnknownStepKind(PipelineError):
    """A step names a kind that nobody registered."""

    def __init__(self, kind: str, known: Sequence[str]) -> None:
        self.kind = kind
        self.known = sorted(known)
        super().__init__(f"unknown step kind {kind!r}; registered: {', '.join(self.known) or '-'}")


class StepKindConflict(PipelineError):
    """A kind was registered twice with different settings."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        super().__init__(f"step kind {kind!r} is already registered with other settings")


class StepFailed(PipelineError):
    """Raised by a step handler: the attempt failed. Prefer the two subclasses."""

    def __init__(self, reason: str, *, retryable: bool) -> None:
        self.reason = reason
        self.retryable = retryable
        super().__init__(reason)


class RetryableStepError(StepFailed):
    """A transient failure (timeout, lost connection, busy resource): retry with backoff."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason, retryable=True)


class PermanentStepError(StepFailed):
    """A failure another attempt cannot fix (bad input, corrupt file): fail at once."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason, retryable=False)
