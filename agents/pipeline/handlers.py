"""Step handlers: what runs an "agent"-kind step, registered next to its `StepKind`.

A handler is `async (ctx, request) -> StepOutput`. It raises `RetryableStepError` /
`PermanentStepError` (agents/pipeline/errors.py) to fail; anything else it raises counts as a
retryable failure (a bug is reported, not hidden, and another attempt may hit a fixed worker).
Heavy CPU work goes through `ctx.run_blocking` (an executor), never on the event loop.

Test kinds (`noop`, `fail`, `slow`, `spawner`) are ALWAYS registered. They are harmless: nothing
creates steps of these kinds except tests and benchmarks, a handler only touches its own step's
input and output, and having them in every worker means an integration test or benchmark can
drive the real `skyreel worker` without a special build or environment switch.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import TypeVar

from agents.pipeline.errors import PermanentStepError, RetryableStepError
from agents.pipeline.registry import Registry, StepKind
from streams.records import StepRequest

logger = logging.getLogger(__name__)

T = TypeVar("T")
JsonDict = dict[str, object]


@dataclass
class StepContext:
    """What a handler may use: its identity, a log for this attempt, an executor."""

    execution_id: int
    step: str
    attempt: int
    worker: str
    executor: Executor | None = None
    logs: list[tuple[str, str]] = field(default_factory=list)  # (level, message)

    def log(self, message: str, level: str = "info") -> None:
        """A line kept with this attempt (pipeline_step_log)."""
        self.logs.append((level, message[:4000]))

    async def run_blocking(self, fn: Callable[..., T], *args: object) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)


@dataclass(frozen=True)
class StepOutput:
    output: JsonDict = field(default_factory=dict)
    # step definitions to add: {"name", "kind", "depends_on"?, "spawns"?, "input"?}
    spawn: list[JsonDict] = field(default_factory=list)
    # non-empty: the step stays RUNNING, waiting on something outside (a copy landing, a booking
    # assigned by hand); whoever resolves it sends the step's result for the same attempt
    waiting: str = ""


Handler = Callable[[StepContext, StepRequest], Awaitable[StepOutput]]


class Handlers:
    """Kinds and their handlers (agent kinds); render-queue kinds have no handler here."""

    def __init__(self, registry: Registry | None = None) -> None:
        self.registry = registry or Registry()
        self._handlers: dict[str, Handler] = {}

    def add(self, kind: StepKind, handler: Handler | None = None) -> None:
        self.registry.register(kind)
        if kind.runs_on == "agent":
            if handler is None:
                raise ValueError(f"agent step kind {kind.name!r} needs a handler")
            self._handlers[kind.name] = handler

    def handler(self, kind: str) -> Handler:
        return self._handlers[kind]

    @property
    def handled(self) -> Mapping[str, Handler]:
        return dict(self._handlers)


# --- test kinds -------------------------------------------------------------------------------


def _input(request: StepRequest) -> JsonDict:
    return dict(request.input or {})


def _number(data: JsonDict, key: str, default: float) -> float:
    value = data.get(key, default)
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise PermanentStepError(f"input {key!r} must be a number, got {value!r}")
    return float(value)


async def noop(ctx: StepContext, request: StepRequest) -> StepOutput:
    return StepOutput({"step": request.step})


async def fail(ctx: StepContext, request: StepRequest) -> StepOutput:
    """Fails while `attempt <= fail_times` (input), permanently if input `permanent` is true."""
    data = _input(request)
    fail_times = int(_number(data, "fail_times", 1))
    if request.attempt <= fail_times:
        reason = f"{request.step}: planned failure {request.attempt}/{fail_times}"
        ctx.log(reason, "error")
        if data.get("permanent"):
            raise PermanentStepError(reason)
        raise RetryableStepError(reason)
    ctx.log(f"{request.step}: succeeded at attempt {request.attempt}")
    return StepOutput({"attempt": request.attempt})


async def slow(ctx: StepContext, request: StepRequest) -> StepOutput:
    seconds = _number(_input(request), "seconds", 0.5)
    ctx.log(f"sleeping {seconds:.3f}s")
    await asyncio.sleep(seconds)
    return StepOutput({"slept": seconds})


async def spawner(ctx: StepContext, request: StepRequest) -> StepOutput:
    """Spawns `count` steps named `<prefix><i>` of `child_kind` with `child_input`."""
    data = _input(request)
    count = int(_number(data, "count", 0))
    prefix = str(data.get("prefix", f"{request.step}/"))
    kind = str(data.get("child_kind", "noop"))
    child_input = data.get("child_input") or {}
    spawn: list[JsonDict] = [
        {"name": f"{prefix}{i:04d}", "kind": kind, "input": dict(child_input)}  # type: ignore[call-overload]
        for i in range(count)
    ]
    ctx.log(f"spawning {count} steps {prefix}*")
    return StepOutput({"spawned": count}, spawn)


TEST_KINDS: tuple[tuple[StepKind, Handler], ...] = (
    (StepKind("noop", max_attempts=3, backoff_base_s=0.2, backoff_cap_s=2.0, timeout_s=10), noop),
    (StepKind("fail", max_attempts=3, backoff_base_s=0.3, backoff_cap_s=2.0, timeout_s=10), fail),
    (StepKind("slow", max_attempts=3, backoff_base_s=0.2, backoff_cap_s=2.0, timeout_s=8), slow),
    (
        StepKind("spawner", max_attempts=3, backoff_base_s=0.2, backoff_cap_s=2.0, timeout_s=10),
        spawner,
    ),
)


def default_handlers() -> Handlers:
    """Every step kind this codebase knows, with the agent handlers (see module docstring)."""
    handlers = Handlers()
    for kind, handler in TEST_KINDS:
        handlers.add(kind, handler)
    return handlers
