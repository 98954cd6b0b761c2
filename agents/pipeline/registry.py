"""Step kinds, registered in one place.

A `StepKind` says where a step runs (`agent`: a Faust agent, for light work; `render_queue`: the
Redis render queue, for FFmpeg), how often and how patiently a transient failure is retried, and
how long an attempt may take. The registry is plain data: the agent layer keeps its own mapping of
kind name -> async handler and checks it against the registry at start, so this module imports
neither Faust nor Redis.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Literal, get_args

from agents.pipeline.errors import StepKindConflict, UnknownStepKind
from agents.pipeline.step import StepState

logger = logging.getLogger(__name__)

RunsOn = Literal["agent", "render_queue"]
#: A re-derivation rule the reconciler runs every pass (see agents/pipeline/reconcile.py):
#: it looks at PostgreSQL (and the render queue) and re-sends what a lost message would have
#: done; returns how many things it moved.
Check = Callable[[], Awaitable[int]]
RUNS_ON: frozenset[str] = frozenset(get_args(RunsOn))


@dataclass(frozen=True, slots=True)
class StepKind:
    name: str
    runs_on: RunsOn = "agent"
    max_attempts: int = 3
    backoff_base_s: float = 1.0
    backoff_cap_s: float = 60.0
    timeout_s: float = 300.0  # one attempt; past it the orchestrator treats the work as lost

    def __post_init__(self) -> None:
        if not self.name or "*" in self.name:
            raise ValueError(f"bad step kind name {self.name!r}")
        if self.runs_on not in RUNS_ON:
            raise ValueError(f"step kind {self.name!r}: runs_on must be one of {sorted(RUNS_ON)}")
        if self.max_attempts < 1:
            raise ValueError(f"step kind {self.name!r}: max_attempts must be >= 1")
        if not 0 <= self.backoff_base_s <= self.backoff_cap_s:
            raise ValueError(f"step kind {self.name!r}: need 0 <= backoff_base_s <= backoff_cap_s")
        if self.timeout_s <= 0:
            raise ValueError(f"step kind {self.name!r}: timeout_s must be > 0")


class Registry:
    """The step kinds a process knows. Registering the same kind twice is a no-op."""

    def __init__(self, kinds: Iterable[StepKind] = ()) -> None:
        self._kinds: dict[str, StepKind] = {}
        self._checks: dict[str, Check] = {}
        for kind in kinds:
            self.register(kind)

    def register(self, kind: StepKind) -> StepKind:
        known = self._kinds.get(kind.name)
        if known is not None:
            if known != kind:
                raise StepKindConflict(kind.name)
            return known
        self._kinds[kind.name] = kind
        logger.debug("step kind %s registered (runs on %s)", kind.name, kind.runs_on)
        return kind

    def get(self, name: str) -> StepKind:
        try:
            return self._kinds[name]
        except KeyError:
            raise UnknownStepKind(name, list(self._kinds)) from None

    def __contains__(self, name: object) -> bool:
        return name in self._kinds

    def __iter__(self) -> Iterator[StepKind]:
        return iter(sorted(self._kinds.values(), key=lambda k: k.name))

    def __len__(self) -> int:
        return len(self._kinds)

    def names(self) -> list[str]:
        return sorted(self._kinds)

    def running_on(self, runs_on: RunsOn) -> list[StepKind]:
        return [k for k in self if k.runs_on == runs_on]

    def add_check(self, name: str, check: Check) -> None:
        """Register a reconciliation rule of the pipelines that own these kinds (by name:
        registering a name again replaces it)."""
        self._checks[name] = check

    def checks(self) -> list[tuple[str, Check]]:
        return sorted(self._checks.items(), key=lambda item: item[0])

    def check(self, steps: Iterable[StepState]) -> None:
        """Raise UnknownStepKind for the first step whose kind is not registered."""
        for step in steps:
            self.get(step.kind)

    def check_handlers(self, handled: Iterable[str], runs_on: RunsOn) -> None:
        """Raise if the handlers a process attaches do not cover exactly its kinds."""
        handled_set = set(handled)
        for name in sorted(handled_set):
            self.get(name)
        missing = [k.name for k in self.running_on(runs_on) if k.name not in handled_set]
        if missing:
            raise UnknownStepKind(missing[0], sorted(handled_set))

    def new_step(
        self,
        name: str,
        kind: str,
        *,
        depends_on: Iterable[str] = (),
        spawns: Iterable[str] = (),
    ) -> StepState:
        """A fresh PENDING step whose retry budget comes from its kind."""
        return StepState(
            name=name,
            kind=kind,
            depends_on=frozenset(depends_on),
            spawns=frozenset(spawns),
            max_attempts=self.get(kind).max_attempts,
        )
