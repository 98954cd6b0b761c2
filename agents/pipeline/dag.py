"""The pure core of the pipeline framework, whole-execution part: readiness, blocking, spawning.

No I/O here. The orchestrator loads an execution's steps, calls these functions, persists what
they return and sends step requests; everything below is tested without Kafka or a database.
One step's state and transitions live in `agents/pipeline/step.py`; they are re-exported here so
callers can keep using `dag.StepState`, `dag.start`, `dag.apply_result` and so on.

Dependencies. `depends_on` entries are exact step names or prefix patterns ending in `*`
(`"probe:*"`). A step is *done* when it succeeded or was skipped. An exact dependency is
satisfied when that step is done. A pattern dependency is satisfied when
  1. every step whose name starts with the prefix is done, and
  2. every step that may still spawn such a step is done.
A step may only spawn names matching its own `spawns` patterns, and the patterns it hands to the
steps it spawns must be narrower than (start with) one of its own; `spawn` enforces both. So the
only steps that can ever add a match for `P*` are those with a `spawns` pattern overlapping `P*`
(one prefix starts with the other), and once they are done, and only a running step can spawn,
the set of matches is final. Example: `diff` spawns `copy:*` and `probe:*`, each `copy:f` spawns
`probe:f`, and `render` depends on `probe:*`: render waits for diff, every copy and every probe.

Settled dependencies. A dependency written with a leading `?` (`"?probe:*"`, `"?probe:17"`) asks
only that the steps it names have *finished*: succeeded, skipped, failed or cancelled. It is how
"render what could be read" is said: one unreadable clip fails its own probe and the render goes
on without it. The steps that may still spawn a match must be done all the same (a failed copy
means the clip may yet come). Retrying a failed step that a settled dependency let past
(`retry_execution`, `rerun_after_retry`) runs the steps that went on without it again, so the
clip comes back once it can be read.

Attempts and redelivery: see `agents/pipeline/step.py`.

Failure. A failed (or cancelled) step blocks only what depends on it, transitively; blocked steps
stay PENDING so that `retry_execution`, which never touches what succeeded, lets them run later.

Rerun. `rerun_from(steps, name)` is the one operation that runs what succeeded again: `name` and
everything depending on it, transitively, go back to PENDING whatever their status (an operator
changed what `name` reads); promotion then opens their new attempts in dependency order.
"""

from __future__ import annotations

import bisect
import dataclasses
from collections.abc import Iterable

from agents.pipeline.errors import CycleError, InvalidDag, SpawnConflict, UnknownDependency
from agents.pipeline.step import (
    DONE,
    TERMINAL,
    BackoffPolicy,
    Failure,
    Outcome,
    StepState,
    StepStatus,
    Success,
    Waiting,
    apply_result,
    backoff_delay,
    cancel,
    fail,
    mark_ready,
    operator_retry,
    redo,
    requeue,
    rerun,
    resume,
    retry,
    retry_running,
    skip,
    start,
    succeed,
    wait,
)
from storage.deps import is_pattern, is_settled, matches, overlaps, target
from storage.enums import ExecutionStatus

__all__ = [
    "DONE",
    "TERMINAL",
    "BackoffPolicy",
    "ExecutionStatus",
    "Failure",
    "Outcome",
    "StepState",
    "StepStatus",
    "Success",
    "Waiting",
    "apply_result",
    "backoff_delay",
    "blocked_by_failure",
    "cancel",
    "cancel_execution",
    "execution_status",
    "fail",
    "index",
    "is_pattern",
    "is_settled",
    "mark_ready",
    "matches",
    "operator_retry",
    "overlaps",
    "promote_ready",
    "ready_steps",
    "redo",
    "requeue",
    "rerun",
    "rerun_after_retry",
    "rerun_from",
    "resume",
    "resume_execution",
    "retry",
    "retry_execution",
    "retry_running",
    "skip",
    "spawn",
    "start",
    "succeed",
    "target",
    "validate_dag",
    "wait",
]


_BROKEN = frozenset({StepStatus.FAILED, StepStatus.CANCELLED})


# The dependency language (names, `probe:*` patterns, `?` settled) is the format of the stored
# `depends_on` column: one implementation in storage/deps.py, which the status API draws from too.


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

    def waits(self, step: StepState) -> list[tuple[str, bool]]:
        """Every name `step` waits for, and whether finishing in any way is enough (settled)."""
        out: list[tuple[str, bool]] = []
        for ref in sorted(step.depends_on):
            settled, name = is_settled(ref), target(ref)
            if not is_pattern(name):
                out.append((name, settled))
                continue
            out.extend((m, settled) for m in self.matching(name))
            out.extend(
                (s.name, False) for s in self.spawners if any(overlaps(p, name) for p in s.spawns)
            )
        return out

    def upstream(self, step: StepState) -> list[str]:
        """Every name `step` waits for (exact names may be unknown; see `validate_dag`)."""
        return [name for name, _ in self.waits(step)]

    def satisfied(self, step: StepState) -> bool:
        for name, settled in self.waits(step):
            dep = self.by_name.get(name)
            if dep is None or not (dep.terminal if settled else dep.done):
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
            if not is_pattern(ref) and target(ref) not in graph.by_name:
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
            step.status is StepStatus.PENDING
            and any(u in broken and not settled for u, settled in graph.waits(step))
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


def retry_execution(steps: Iterable[StepState], running: Iterable[str] = ()) -> list[StepState]:
    """New states of every FAILED step, retried; what they blocked follows once they succeed,
    and what went on without them (settled dependencies) runs again after them.

    `running`: RUNNING steps the operator may move too (their worker is gone, or forced); they
    get a new attempt (`retry_running`). Other running steps are left alone."""
    graph = _Graph(steps)
    failed = [n for n in graph.names if graph.by_name[n].status is StepStatus.FAILED]
    moved = sorted(
        n
        for n in set(running)
        if n in graph.by_name and graph.by_name[n].status is StepStatus.RUNNING
    )
    return (
        [retry(graph.by_name[n]) for n in failed]
        + [retry_running(graph.by_name[n]) for n in moved]
        + rerun_after_retry(graph.by_name.values(), failed)
    )


def resume_execution(steps: Iterable[StepState]) -> list[StepState]:
    """New (PENDING) states of every CANCELLED step: a cancelled execution resumed. What
    succeeded stays; the pending steps are promoted as usual once their dependencies are done."""
    graph = _Graph(steps)
    return [
        resume(graph.by_name[n])
        for n in graph.names
        if graph.by_name[n].status is StepStatus.CANCELLED
    ]


def rerun_after_retry(steps: Iterable[StepState], retried: Iterable[str]) -> list[StepState]:
    """New (PENDING) states of the finished steps that went on without `retried` through a
    settled dependency, and of everything downstream of them that finished: so the retried
    step's work (a clip readable after all) reaches the output."""
    graph = _Graph(steps)
    again = set(retried)
    rerun: set[str] = set()
    for name in graph.topo_order():
        step = graph.by_name[name]
        if name in again or not step.done:
            continue
        if any(u in again and (settled or u in rerun) for u, settled in graph.waits(step)):
            rerun.add(name)
            again.add(name)
    return [redo(graph.by_name[n]) for n in sorted(rerun)]


def rerun_from(steps: Iterable[StepState], name: str) -> list[StepState]:
    """New (PENDING) states of step `name` and of every step depending on it, transitively (in
    any way: an exact name, a pattern, a settled `?` dependency), whatever their status: what an
    operator asks for when they changed what `name` reads (the marks of a jump's edit). Steps
    already PENDING are left out; promotion then runs `name` again (a new attempt) and the rest
    after it. Raises InvalidDag for an unknown step."""
    graph = _Graph(steps)
    if name not in graph.by_name:
        raise InvalidDag(name, "no such step in this execution")
    again = {name}
    for n in graph.topo_order():
        if n not in again and any(u in again for u in graph.upstream(graph.by_name[n])):
            again.add(n)
    return [
        rerun(graph.by_name[n])
        for n in sorted(again)
        if graph.by_name[n].status is not StepStatus.PENDING
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
    for ref in (target(r) for r in step.depends_on if is_pattern(r)):
        for new in added:
            if matches(ref, new.name) or any(overlaps(p, ref) for p in new.spawns):
                raise SpawnConflict(
                    new.name, f"{step.name!r} ({step.status}) already waited for all of {ref!r}"
                )
