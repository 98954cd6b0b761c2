"""The pure core of the pipeline framework: step states, readiness, transitions and spawning.

No I/O here. The orchestrator loads an execution's steps, calls these functions, persists what
they return and sends step requests; everything below is tested without Kafka or a database.

Dependencies. `depends_on` entries are exact step names or prefix patterns ending in `*`
(`"probe:*"`). A step is *done* when it succeeded or was skipped (a skip is a deliberate "nothing
to do here", so dependents go on). An exact dependency is satisfied when that step is done. A
pattern dependency is satisfied when
  1. every step whose name starts with the prefix is done, and
  2. every step that may still spawn such a step is done.
A step may only spawn names matching its own `spawns` patterns, and the patterns it hands to the
steps it spawns must be narrower than (start with) one of its own; `spawn` enforces both. So the
only steps that can ever add a match for `P*` are those with a `spawns` pattern overlapping `P*`
(one prefix starts with the other), and once they are done, and only a running step can spawn,
the set of matches is final. Example: `diff` spawns `copy:*` and `probe:*`, each `copy:f` spawns
`probe:f`, and `render` depends on `probe:*`: render waits for diff, every copy and every probe.

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

Failure. A failed (or cancelled) step blocks only what depends on it, transitively; blocked steps
stay PENDING so that `retry_execution`, which never touches what succeeded, lets them run later.
"""

from __future__ import annotations

import bisect
import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol, TypeAlias

from agents.pipeline.errors import (
    CycleError,
    InvalidDag,
    InvalidTransition,
    SpawnConflict,
    StepFailed,
    UnknownDependency,
)


class StepStatus(StrEnum):
    PENDING = "pending"
    READY = "ready"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"


class ExecutionStatus(StrEnum):
    PENDING = "pending"  # nothing dispatched yet
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # a step failed and nothing else can run
    CANCELLED = "cancelled"
    WAITING = "waiting"  # nothing can run until an outside condition is met (e.g. a human)


DONE = frozenset({StepStatus.SUCCEEDED, StepStatus.SKIPPED})
TERMINAL = frozenset({*DONE, StepStatus.FAILED, StepStatus.CANCELLED})
_BROKEN = frozenset({StepStatus.FAILED, StepStatus.CANCELLED})


def is_pattern(ref: str) -> bool:
    return ref.endswith("*")


def matches(pattern: str, name: str) -> bool:
    return name.startswith(pattern[:-1])


def overlaps(a: str, b: str) -> bool:
    """Whether two prefix patterns can match a common name."""
    pa, pb = a[:-1], b[:-1]
    return pa.startswith(pb) or pb.startswith(pa)


@dataclass(frozen=True, slots=True)
class StepState:
    """One node of an execution's DAG as the pure core sees it (a `pipeline_step` row)."""

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

    def __post_init__(self) -> None:
        # Rows come back with lists and plain strings; normalise so equality is by value.
        object.__setattr__(self, "depends_on", frozenset(self.depends_on))
        object.__setattr__(self, "spawns", frozenset(self.spawns))
        object.__setattr__(self, "status", StepStatus(self.status))
        if not self.name or "*" in self.name:
            raise InvalidDag(self.name, "a step name must be non-empty and contain no '*'")
        for ref in self.depends_on | self.spawns:
            if not ref or "*" in ref[:-1]:
                raise InvalidDag(
                    self.name, f"bad {ref!r}: '*' is allowed only as the last character"
                )
        if not all(map(is_pattern, self.spawns)):
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


def backoff_delay(policy: BackoffPolicy, attempt: int) -> float:
    """Seconds to wait after attempt number `attempt` (1-based) failed: base * 2^(n-1), capped."""
    if attempt < 1:
        raise ValueError(f"attempt must be >= 1, got {attempt}")
    # Clamp the exponent so a huge attempt number cannot overflow the float.
    return float(min(policy.backoff_cap_s, policy.backoff_base_s * 2.0 ** min(attempt - 1, 64)))


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


def requeue(step: StepState) -> StepState:
    """RUNNING -> READY with a new attempt: its work was lost, or its wait is over."""
    if step.status is not StepStatus.RUNNING:
        raise _reject(step, "requeue", "only a running step can be requeued")
    return _next_attempt(step)


# --- the whole execution ------------------------------------------------------------------------


class _Graph:
    """Lookups over one snapshot of an execution's steps."""

    def __init__(self, steps: Iterable[StepState]) -> None:
        self.by_name: dict[str, StepState] = {}
        for step in steps:
            if step.name in self.by_name:
                raise InvalidDag(step.name, "duplicate step name")
            self.by_name[step.name] = step
        self.names = sorted(self.by_name)
        self.spawners = [self.by_name[n] for n in self.names if self.by_name[n].spawns]

    def matching(self, pattern: str) -> list[str]:
        prefix = pattern[:-1]
        i = bisect.bisect_left(self.names, prefix)
        found = []
        while i < len(self.names) and self.names[i].startswith(prefix):
            found.append(self.names[i])
            i += 1
        return found

    def upstream(self, step: StepState) -> list[str]:
        """Every name `step` waits for (exact names may be unknown; see `validate_dag`)."""
        waits: list[str] = []
        for ref in sorted(step.depends_on):
            if not is_pattern(ref):
                waits.append(ref)
                continue
            waits.extend(self.matching(ref))
            waits.extend(s.name for s in self.spawners if any(overlaps(p, ref) for p in s.spawns))
        return waits

    def satisfied(self, step: StepState) -> bool:
        for name in self.upstream(step):
            dep = self.by_name.get(name)
            if dep is None or not dep.done:
                return False
        return True

    def pending_satisfied(self) -> list[StepState]:
        pending = (self.by_name[n] for n in self.names)
        return [s for s in pending if s.status is StepStatus.PENDING and self.satisfied(s)]

    def topo_order(self) -> list[str]:
        """Names, every step after what it waits for; raises CycleError."""
        ups = {
            n: [u for u in self.upstream(self.by_name[n]) if u in self.by_name] for n in self.names
        }
        downs: dict[str, list[str]] = {n: [] for n in self.names}
        missing = {n: len(ups[n]) for n in self.names}
        for n in self.names:
            for u in ups[n]:
                downs[u].append(n)
        order = [n for n in self.names if missing[n] == 0]
        for n in order:  # grows while iterating: Kahn's algorithm
            for d in downs[n]:
                missing[d] -= 1
                if missing[d] == 0:
                    order.append(d)
        if len(order) < len(self.names):
            raise CycleError(_find_cycle(ups, set(self.names) - set(order)))
        return order


def _find_cycle(ups: dict[str, list[str]], stuck: set[str]) -> list[str]:
    # Every stuck step waits for another stuck step, so walking upstream must revisit one.
    node = min(stuck)
    path: list[str] = []
    seen: dict[str, int] = {}
    while node not in seen:
        seen[node] = len(path)
        path.append(node)
        node = next(u for u in ups[node] if u in stuck)
    return [*path[seen[node] :], node]


def index(steps: Iterable[StepState]) -> dict[str, StepState]:
    """Steps by name; raises InvalidDag on a duplicate name."""
    return dict(_Graph(steps).by_name)


def validate_dag(steps: Iterable[StepState]) -> None:
    """Raise UnknownDependency, InvalidDag (bad spawn lineage) or CycleError."""
    graph = _Graph(steps)
    for name in graph.names:
        step = graph.by_name[name]
        for ref in sorted(step.depends_on):
            if not is_pattern(ref) and ref not in graph.by_name:
                raise UnknownDependency(name, ref)
        if step.spawned_by is not None:
            parent = graph.by_name.get(step.spawned_by)
            if parent is None:
                raise InvalidDag(name, f"spawned by unknown step {step.spawned_by!r}")
            _check_lineage(parent, step, InvalidDag)
    graph.topo_order()


def _check_lineage(
    parent: StepState, child: StepState, error: type[InvalidDag] | type[SpawnConflict]
) -> None:
    if not any(matches(p, child.name) for p in parent.spawns):
        raise error(child.name, f"{parent.name!r} may only spawn {sorted(parent.spawns)}")
    for ref in child.spawns:
        if not any(ref[:-1].startswith(p[:-1]) for p in parent.spawns):
            raise error(child.name, f"spawns {ref!r}, wider than {sorted(parent.spawns)}")


def ready_steps(steps: Iterable[StepState]) -> list[str]:
    """Names of PENDING steps whose dependencies are all done, sorted."""
    return [s.name for s in _Graph(steps).pending_satisfied()]


def promote_ready(steps: Iterable[StepState]) -> list[StepState]:
    """The new states of every step that just became READY (what to persist and dispatch)."""
    return [mark_ready(s) for s in _Graph(steps).pending_satisfied()]


def blocked_by_failure(steps: Iterable[StepState]) -> list[str]:
    """PENDING steps that cannot run because something they wait for failed or was cancelled."""
    graph = _Graph(steps)
    broken: set[str] = set()
    for name in graph.topo_order():
        step = graph.by_name[name]
        if step.status in _BROKEN or (
            step.status is StepStatus.PENDING and any(u in broken for u in graph.upstream(step))
        ):
            broken.add(name)
    return [n for n in graph.names if n in broken and graph.by_name[n].status is StepStatus.PENDING]


def execution_status(steps: Iterable[StepState]) -> ExecutionStatus:
    graph = _Graph(steps)
    all_steps = list(graph.by_name.values())
    if not all_steps:
        return ExecutionStatus.PENDING
    if all(s.done for s in all_steps):
        return ExecutionStatus.SUCCEEDED
    progressing = any(
        s.status is StepStatus.READY
        or (s.status is StepStatus.RUNNING and not s.waiting_for)
        or (s.status is StepStatus.PENDING and graph.satisfied(s))
        for s in all_steps
    )
    if progressing:
        untouched = all(
            s.status is StepStatus.PENDING or (s.status is StepStatus.READY and s.attempt == 1)
            for s in all_steps
        )
        return ExecutionStatus.PENDING if untouched else ExecutionStatus.RUNNING
    if any(s.status is StepStatus.RUNNING for s in all_steps):
        return ExecutionStatus.WAITING
    if any(s.status is StepStatus.CANCELLED for s in all_steps):
        return ExecutionStatus.CANCELLED
    # Failed steps, and/or pending ones that can never run: a human has to step in.
    return ExecutionStatus.FAILED


def retry_execution(steps: Iterable[StepState]) -> list[StepState]:
    """New states of every FAILED step, retried; what they blocked follows once they succeed."""
    graph = _Graph(steps)
    return [
        retry(graph.by_name[n]) for n in graph.names if graph.by_name[n].status is StepStatus.FAILED
    ]


def cancel_execution(steps: Iterable[StepState]) -> list[StepState]:
    """New states of every unfinished step, cancelled."""
    graph = _Graph(steps)
    return [cancel(graph.by_name[n]) for n in graph.names if not graph.by_name[n].terminal]


def spawn(
    steps: Iterable[StepState], new_steps: Iterable[StepState], *, spawner: str | None = None
) -> list[StepState]:
    """Add steps to an execution; returns only the ones not already there (what to insert).

    A step already present with the same definition is skipped, so a redelivered spawn adds
    nothing; one with a different definition raises SpawnConflict. With `spawner` the new steps
    get `spawned_by=spawner`; it must be RUNNING (unless there is nothing new) and may only spawn
    names within its `spawns`. The result is validated as a whole (unknown deps, cycles).
    """
    graph = _Graph(steps)
    parent = graph.by_name.get(spawner) if spawner is not None else None
    if spawner is not None and parent is None:
        raise SpawnConflict(spawner, "the spawner is not a step of this execution")
    added: dict[str, StepState] = {}
    for new in new_steps:
        if new.spawned_by not in (None, spawner):
            raise SpawnConflict(new.name, f"spawned_by {new.spawned_by!r} but spawner {spawner!r}")
        if new.status is not StepStatus.PENDING or new.attempt != 0:
            raise SpawnConflict(new.name, "a spawned step must be pending with attempt 0")
        new = dataclasses.replace(new, spawned_by=spawner)
        existing = graph.by_name.get(new.name) or added.get(new.name)
        if existing is not None:
            if existing.definition != new.definition:
                raise SpawnConflict(new.name, "a step of that name exists with another definition")
            continue
        if parent is not None:
            _check_lineage(parent, new, SpawnConflict)
        added[new.name] = new
    if not added:
        return []
    if parent is not None and parent.status is not StepStatus.RUNNING:
        raise SpawnConflict(parent.name, f"the spawner is {parent.status}, not running")
    for step in graph.by_name.values():
        # A step that already left PENDING was promised the full set of its pattern's matches.
        if step.status is not StepStatus.PENDING:
            _check_promise(step, added.values())
    validate_dag([*graph.by_name.values(), *added.values()])
    return list(added.values())


def _check_promise(step: StepState, added: Iterable[StepState]) -> None:
    for ref in (r for r in step.depends_on if is_pattern(r)):
        for new in added:
            if matches(ref, new.name) or any(overlaps(p, ref) for p in new.spawns):
                raise SpawnConflict(
                    new.name, f"{step.name!r} ({step.status}) already waited for all of {ref!r}"
                )
