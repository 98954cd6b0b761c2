"""The runner: the Faust agent on `step-requests` that runs "agent"-kind steps.

For a batch of requests it claims the steps in one transaction (`dag.start`, written guarded:
a duplicate or stale request, or one another worker already claimed, is dropped), runs their
handlers concurrently, stores their log lines and sends a `StepResult` per step on
`step-results` (key: execution id). A handler never crashes the agent: `StepFailed` errors keep
their retryable flag, a timeout is retryable, and any other exception is a retryable failure
with its type and message.

"render_queue"-kind steps are not run here: `dispatch_render(request, claim)` is called instead
(the worker passes agents/jobs/render.py's dispatcher, which claims the step with `claim` and
enqueues its job on the Redis render queue). A runner built without one (a test rig) only logs:
the step stays READY and reconciliation re-sends it.

`hand_off` is the same claim-and-run for steps this worker's own orchestrator just made READY,
called directly instead of through the broker (issue 18: produce, the broker's fetch wait and
Faust's stream were most of a step's ready -> start). The steps then run on the worker that
recorded their dependency's result, not spread over workers by step; the setting `step_hand_off`
turns it off.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from agents.pipeline import dag, trace
from agents.pipeline import operations as ops
from agents.pipeline.dispatch import step_request
from agents.pipeline.errors import InvalidTransition, StepFailed, UnknownStepKind
from agents.pipeline.handlers import Handlers, StepContext
from agents.pipeline.held import Held, Key
from agents.pipeline.host import AgentHost, attach_batched
from storage import pipeline as repo
from storage import pipeline_claims as claims
from streams import records
from streams.kafka import Send

logger = logging.getLogger(__name__)


#: Handed-off steps a worker runs at most at once; beyond, ready steps go through the broker.
MAX_LOCAL = 1024


#: (execution id, step name)
Step = tuple[int, str]


def _key(r: records.StepRequest) -> Key:
    return (r.execution_id, r.step, r.attempt)


def worker_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


@dataclass
class Claimed:
    request: records.StepRequest
    step_id: int


#: Claims step requests for this worker (one transaction); returns those it won.
Claim = Callable[[Sequence[records.StepRequest]], Awaitable[list[Claimed]]]
#: Hands a "render_queue"-kind request on; claims it with the `Claim` it is given.
RenderDispatch = Callable[[records.StepRequest, Claim], Awaitable[None]]


class Runner:
    def __init__(
        self,
        engine: AsyncEngine,
        handlers: Handlers,
        send_result: Send,
        *,
        dispatch_render: RenderDispatch | None = None,
        executor: Executor | None = None,
        worker: str | None = None,
        max_local: int = MAX_LOCAL,
    ) -> None:
        self.engine = engine
        self.handlers = handlers
        self.send_result = send_result
        self.dispatch_render = dispatch_render
        self.executor = executor
        self.worker = worker or worker_name()
        self.held = Held()  # what this worker is executing (agents/pipeline/held.py)
        self.max_local = max_local
        self._local_steps = 0  # handed-off steps running
        self._local_tasks: set[asyncio.Task[None]] = set()

    def _runs_on(self, kind: str) -> str:
        try:
            return self.handlers.registry.get(kind).runs_on
        except UnknownStepKind:
            return "agent"  # claimed, then failed permanently with the reason

    async def run(self, requests: Sequence[records.StepRequest]) -> None:
        agent_requests = []
        for request in requests:
            if self._runs_on(request.kind) != "render_queue":
                agent_requests.append(request)
            elif self.dispatch_render is not None:
                await self.dispatch_render(request, self.claim)
            else:
                logger.warning(
                    "execution %d: step %s (kind %s) needs the render queue; this runner has "
                    "no render dispatcher",
                    request.execution_id,
                    request.step,
                    request.kind,
                )
        keys = {_key(r) for r in agent_requests}
        self.held.take(keys)
        won: set[Key] = set()
        try:
            claimed = await self.claim(agent_requests)
            won = {_key(c.request) for c in claimed}
            self.held.drop(keys - won)
            await self._run_claimed(claimed)
        finally:
            self.held.drop(keys - won)
            self.held.release(won)

    async def hand_off(self, ready: Sequence[repo.Saved]) -> set[tuple[int, str]]:
        """Take steps this worker's orchestrator just made READY, to run here without the
        broker hop (issue 18; `dispatch.Emitter.hand_off`).

        The agent-kind ones are claimed now (one transaction, as a batch from step-requests
        would be) and run in the background; returns the (execution id, step) taken, claimed or
        found not claimable any more (what a runner would drop: there is nothing to send). The
        rest, render-queue kinds or all of them once `max_local` steps run handed off, the
        caller sends on step-requests. A claim that fails raises: the caller sends them all.
        A result that never leaves (the worker dies) is recovered as on the broker path: the
        worker's heartbeat stops, or its reconciliation finds the step RUNNING and not held.

        Every step waits for what runs here before its claim, so the rows are claimed as they
        are and their requests made only for the steps won, after the claim."""
        runs_on = {kind: self._runs_on(kind) for kind in {s.kind for s in ready}}
        local = [s for s in ready if runs_on[s.kind] == "agent"]
        if not local or self._local_steps + len(local) > self.max_local:
            return set()
        wanted: dict[int, dict[str, int]] = defaultdict(dict)
        for s in local:
            wanted[s.execution_id][s.name] = s.attempt
        if trace.ON:
            for eid, steps in wanted.items():  # one line per execution: a mark costs a write
                trace.mark("h.take", eid, steps)
        keys = {(s.execution_id, s.name, s.attempt) for s in local}
        self.held.take(keys)
        try:
            ids = await self._claim_attempts(wanted)
        except BaseException:
            self.held.drop(keys)
            raise
        claimed = [
            Claimed(step_request(s), ids[(s.execution_id, s.name)])
            for s in local
            if (s.execution_id, s.name) in ids
        ]
        won = {_key(c.request) for c in claimed}
        self.held.drop(keys - won)
        if claimed:
            self._local_steps += len(claimed)
            task = asyncio.ensure_future(self._run_handed_off(claimed, won))
            self._local_tasks.add(task)
            task.add_done_callback(self._local_tasks.discard)
        return {(s.execution_id, s.name) for s in local}

    async def _run_handed_off(self, claimed: list[Claimed], won: set[Key]) -> None:
        try:
            await self._run_claimed(claimed)
        except Exception:  # never escapes; reconciliation requeues what did not finish
            logger.exception(
                "%d handed-off steps did not finish here; reconciliation requeues them",
                len(claimed),
            )
        finally:
            self._local_steps -= len(claimed)
            self.held.release(won)

    async def close(self) -> None:
        """Stop the handed-off steps still running (their steps are requeued as lost)."""
        tasks = list(self._local_tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _run_claimed(self, claimed: Sequence[Claimed]) -> None:
        """Execute claimed steps concurrently, store their log lines, send their results."""
        done = await asyncio.gather(*(self._execute(c) for c in claimed))
        lines = [line for _, logs in done for line in logs]
        if lines:
            async with self.engine.begin() as conn:
                await repo.add_logs(conn, lines)
        # all at once: one after another, 998 results took 1.4 s to reach the producer; 0.4 s so
        await asyncio.gather(*(self.send_result(*result.message()) for result, _ in done))

    async def claim(self, requests: Sequence[records.StepRequest]) -> list[Claimed]:
        """Claim the requested attempts (one transaction); returns those this worker won.

        The common case, a READY step at the requested attempt, is one statement per execution
        (`storage.pipeline_claims`); what it leaves goes through the pure core (`dag.start`):
        a duplicate or stale request is dropped, an invalid one logged."""
        by_execution: dict[int, dict[str, records.StepRequest]] = defaultdict(dict)
        for r in requests:
            by_execution[r.execution_id][r.step] = r
        ids = await self._claim_attempts(
            {eid: {n: r.attempt for n, r in rs.items()} for eid, rs in by_execution.items()}
        )
        return [Claimed(by_execution[eid][name], step_id) for (eid, name), step_id in ids.items()]

    async def _claim_attempts(self, wanted: dict[int, dict[str, int]]) -> dict[Step, int]:
        """Claim {execution: {step: attempt}} in one transaction; the step ids of those won."""
        won: dict[Step, int] = {}
        if not wanted:
            return won
        if trace.ON:
            for eid, attempts in wanted.items():
                trace.mark("r.claim", eid, attempts)
        async with self.engine.begin() as conn:
            for eid, attempts in wanted.items():
                ids = await claims.claim_ready(conn, eid, list(attempts.items()), self.worker)
                rest = {n: a for n, a in attempts.items() if n not in ids}
                if rest:
                    ids |= await self._claim_rest(conn, eid, rest)
                won.update(((eid, name), step_id) for name, step_id in ids.items())
        if trace.ON:
            for eid, attempts in wanted.items():
                trace.mark("r.claimed", eid, attempts)
        return won

    async def _claim_rest(
        self, conn: AsyncConnection, eid: int, attempts: dict[str, int]
    ) -> dict[str, int]:
        """The general claim: load the steps and let `dag.start` decide each one."""
        now = datetime.now(UTC)
        changes = []
        for row in await repo.load_steps(conn, eid, sorted(attempts)):
            if row.not_before is not None and row.not_before > now:
                continue  # early (a re-send during backoff); it is sent again when due
            old = ops.state_of(row)
            try:
                new = dag.start(old, attempts[row.state.name])
            except InvalidTransition as exc:
                logger.warning("execution %d: request not claimed: %s", eid, exc)
                continue
            if new is not old:
                changes.append(repo.Change(old, new, worker=self.worker))
        saved = await repo.save_changes(conn, eid, changes, strict=False)
        await repo.open_attempts(conn, [(s.step_id, s.attempt) for s in saved], self.worker)
        return {s.name: s.step_id for s in saved}

    async def _execute(
        self, claimed: Claimed
    ) -> tuple[records.StepResult, list[tuple[int, int, str, str, str]]]:
        request = claimed.request
        ctx = StepContext(
            request.execution_id, request.step, request.attempt, self.worker, self.executor
        )
        result = await self._result(ctx, request)
        actor = f"worker:{self.worker}"
        logs = [(claimed.step_id, request.attempt, lvl, msg, actor) for lvl, msg in ctx.logs]
        return result, logs

    async def _result(self, ctx: StepContext, request: records.StepRequest) -> records.StepResult:
        def failed(error: str, retryable: bool) -> records.StepResult:
            return records.StepResult(
                execution_id=request.execution_id,
                step=request.step,
                attempt=request.attempt,
                status="failed",
                error=error[:4000],
                retryable=retryable,
                worker=self.worker,
            )

        try:
            kind = self.handlers.registry.get(request.kind)
            handler = self.handlers.handler(request.kind)
        except (UnknownStepKind, KeyError):
            return failed(f"no handler for step kind {request.kind!r}", False)
        try:
            out = await asyncio.wait_for(handler(ctx, request), kind.timeout_s)
        except StepFailed as exc:
            return failed(exc.reason, exc.retryable)
        except TimeoutError:
            ctx.log(f"timed out after {kind.timeout_s:.0f}s", "error")
            return failed(f"timed out after {kind.timeout_s:.0f}s", True)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            logger.exception("execution %d: step %s crashed", request.execution_id, request.step)
            ctx.log(f"{type(exc).__name__}: {exc}", "error")
            return failed(f"{type(exc).__name__}: {exc}", True)
        if out.waiting:
            return records.StepResult(
                execution_id=request.execution_id,
                step=request.step,
                attempt=request.attempt,
                status="waiting",
                error=out.waiting[:4000],
                worker=self.worker,
            )
        return records.StepResult(
            execution_id=request.execution_id,
            step=request.step,
            attempt=request.attempt,
            status="succeeded",
            output=out.output,
            worker=self.worker,
            spawn=out.spawn or None,
        )


def attach(wa: AgentHost, runner: Runner, *, concurrency: int = 4, batch: int = 64) -> None:
    """The agent on step-requests; `concurrency` actors each claim and run small batches."""
    attach_batched(
        wa,
        wa.topics.step_requests,
        agent="step_runner",
        decode=lambda payload: records.decode(records.StepRequest, payload).expand(),
        what="StepRequest",
        process=runner.run,
        batch=batch,
        within=0.002,
        concurrency=concurrency,
        traced=True,
    )
