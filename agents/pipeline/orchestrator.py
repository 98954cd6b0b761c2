"""The orchestrator: records step results, promotes what became ready, sends step requests.

A Faust agent on `step-results` (key: execution id, so one execution's results arrive in order
at one consumer) takes results in small batches; per execution and batch it runs ONE transaction
that locks the execution row, applies every result through the pure core (`dag.apply_result`,
`dag.spawn`), writes the changes set-based, promotes the steps that became ready (an incremental
"dependents of what finished" query, the pure core deciding), and updates the execution status.
After the commit it sends the READY steps on (agents/pipeline/dispatch.py: to this worker's own
runner first, the rest as batched `StepRequest`s on `step-requests`) and `StatusEvent`s.

A retryable failure comes back READY with a backoff: its request is sent once `not_before` has
passed (a timer here; reconciliation re-sends it if this process dies first).

`start_execution`, `retry`, `resume` and `cancel` are what the real pipelines, the API and the
CLI call.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from agents.pipeline import dag, trace
from agents.pipeline import operations as ops
from agents.pipeline.dag import ExecutionStatus, StepState, StepStatus
from agents.pipeline.dispatch import Emitter, send_requests
from agents.pipeline.errors import InvalidTransition, PipelineError, UnknownStepKind
from agents.pipeline.host import AgentHost, attach_batched
from agents.pipeline.registry import Registry, StepKind
from storage import pipeline as repo
from storage import workers
from storage.enums import ResultStatus
from streams import records

logger = logging.getLogger(__name__)

STALE_RETRIES = 5


@dataclass(frozen=True)
class StepDef:
    """A step to add to an execution (at start, or spawned by a running step)."""

    name: str
    kind: str
    depends_on: tuple[str, ...] = ()
    spawns: tuple[str, ...] = ()
    input: Mapping[str, object] = field(default_factory=dict)

    def state(self, registry: Registry) -> StepState:
        return registry.new_step(
            self.name, self.kind, depends_on=self.depends_on, spawns=self.spawns
        )

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> StepDef:
        """Validate an untrusted definition (a spawn list in a StepResult); ValueError if bad."""
        name, kind = data.get("name"), data.get("kind")
        if not isinstance(name, str) or not isinstance(kind, str):
            raise ValueError(f"a step definition needs string name and kind: {dict(data)!r}")
        lists = {}
        for key in ("depends_on", "spawns"):
            value = data.get(key) or []
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ValueError(f"step {name!r}: {key} must be a list of strings")
            lists[key] = tuple(value)
        value = data.get("input") or {}
        if not isinstance(value, dict):
            raise ValueError(f"step {name!r}: input must be an object")
        return cls(name, kind, lists["depends_on"], lists["spawns"], value)


def policy_for(registry: Registry, kind: str) -> StepKind:
    try:
        return registry.get(kind)
    except UnknownStepKind:
        return StepKind(kind)  # a step stored before its kind was removed: default policy


async def _status_event(emitter: Emitter, kind: str, id_: str, data: dict[str, object]) -> None:
    if emitter.send_status is None:
        return
    event = records.StatusEvent(kind=kind, id=id_, data=data)
    await emitter.send_status(id_.encode(), records.encode(event))


# --- entry points for pipelines, API, CLI -----------------------------------------------------


async def start_execution(
    engine: AsyncEngine,
    emitter: Emitter,
    registry: Registry,
    *,
    key: str,
    pipeline: str,
    subject_type: str,
    subject_id: str,
    steps: Sequence[StepDef],
    context: Mapping[str, object] | None = None,
) -> int:
    """Create (idempotently, by `key`) an execution with its steps and dispatch what is ready."""
    async with engine.begin() as conn:
        eid, created = await repo.create_execution(
            conn,
            key=key,
            pipeline=pipeline,
            subject_type=subject_type,
            subject_id=subject_id,
            context=context,
        )
        await repo.lock_execution(conn, eid)
        existing = await ops.load_states(conn, eid)
        added = dag.spawn(existing.values(), [d.state(registry) for d in steps])
        await repo.add_steps(conn, eid, added, {d.name: d.input for d in steps})
        ready = await ops.promote_all(conn, eid)
        status = await ops.refresh_execution_status(conn, eid)
    logger.info(
        "execution %d (%s) %s: %d steps added, %d dispatched",
        eid,
        key,
        "created" if created else "exists",
        len(added),
        len(ready),
    )
    await send_requests(emitter, ready, None)
    if status is not None:
        await _status_event(emitter, "execution", str(eid), {"status": str(status)})
    return eid


async def retry(
    engine: AsyncEngine,
    emitter: Emitter,
    execution_id: int,
    *,
    step: str | None,
    actor: str,
    force: bool = False,
) -> list[str]:
    """Retry one failed step, or every failed step of an execution; returns what was retried.

    A RUNNING step is moved (a new attempt) when the worker running it stopped heart-beating,
    or always with `force`; otherwise retrying it is refused (InvalidTransition)."""
    async with engine.begin() as conn:
        live = await workers.live_workers(conn, workers.DEAD_AFTER_S)
        if step is None:
            ready = await ops.retry_execution(conn, execution_id, actor, force=force, live=live)
        else:
            ready = await ops.retry_step(conn, execution_id, step, actor, force=force, live=live)
    await send_requests(emitter, ready, None)
    if ready:
        await _status_event(emitter, "execution", str(execution_id), {"status": "running"})
    return [s.name for s in ready]


async def resume(
    engine: AsyncEngine, emitter: Emitter, execution_id: int, *, actor: str
) -> list[str]:
    """Resume a cancelled execution: its cancelled steps run again, nothing that succeeded."""
    async with engine.begin() as conn:
        ready = await ops.resume_execution(conn, execution_id, actor)
    await send_requests(emitter, ready, None)
    await _status_event(emitter, "execution", str(execution_id), {"action": "resume"})
    return [s.name for s in ready]


async def rerun(
    engine: AsyncEngine, emitter: Emitter, execution_id: int, *, step: str, actor: str, reason: str
) -> list[str]:
    """Run `step` and every step depending on it again (a new attempt each), whatever their
    status (`operations.rerun_step`); returns what was dispatched. Raises InvalidDag for an
    unknown step, ExecutionNotFound for an unknown execution."""
    async with engine.begin() as conn:
        ready = await ops.rerun_step(conn, execution_id, step, actor, reason)
    await send_requests(emitter, ready, None)
    await _status_event(emitter, "execution", str(execution_id), {"status": "running"})
    return [s.name for s in ready]


async def cancel(engine: AsyncEngine, emitter: Emitter, execution_id: int, *, actor: str) -> int:
    async with engine.begin() as conn:
        n = await ops.cancel_execution(conn, execution_id, actor)
    await _status_event(emitter, "execution", str(execution_id), {"status": "cancelled"})
    return n


# --- recording results -------------------------------------------------------------------------


def _outcome(result: records.StepResult) -> dag.Outcome | None:
    if result.status == ResultStatus.SUCCEEDED:
        return dag.Success()
    if result.status == ResultStatus.FAILED:
        return dag.Failure(result.error or "failed", bool(result.retryable))
    if result.status == ResultStatus.WAITING:
        return dag.Waiting(result.error or "waiting")
    return None  # running / progress: nothing for the DAG


@dataclass
class _Batch:
    """What one execution's batch produced, to send after the commit."""

    ready: list[repo.Saved] = field(default_factory=list)
    steps: dict[str, str] = field(default_factory=dict)
    status: ExecutionStatus | None = None


class Orchestrator:
    """Records results; owns the timers of backoff dispatches."""

    def __init__(self, engine: AsyncEngine, registry: Registry, emitter: Emitter) -> None:
        self.engine = engine
        self.registry = registry
        self.emitter = emitter
        self._timers: set[asyncio.Task[None]] = set()

    def later(self, delay: float, saved: repo.Saved) -> None:
        async def send() -> None:
            await asyncio.sleep(delay)
            try:
                await send_requests(self.emitter, [saved], None)
            except Exception:  # reconciliation re-sends it; never crash the loop
                logger.exception("delayed dispatch of %s/%s failed", saved.execution_id, saved.name)

        task = asyncio.ensure_future(send())
        self._timers.add(task)
        task.add_done_callback(self._timers.discard)

    async def record(self, results: Sequence[records.StepResult]) -> None:
        """Record a batch of results (any executions); sends what they made ready."""
        by_execution: dict[int, list[records.StepResult]] = defaultdict(list)
        progress: list[records.StepResult] = []
        for r in results:
            if _outcome(r) is not None:
                by_execution[r.execution_id].append(r)
            elif r.status == ResultStatus.PROGRESS and r.progress is not None:
                progress.append(r)
        if progress:
            await self._record_progress(progress)
        for eid, rs in by_execution.items():
            for attempt in range(1, STALE_RETRIES + 1):
                try:
                    async with self.engine.begin() as conn:
                        batch = await self._record_execution(conn, eid, rs)
                    if trace.ON:
                        trace.mark("o.commit", eid, [s.name for s in batch.ready])
                    break
                except repo.StaleWrite:
                    if attempt == STALE_RETRIES:
                        raise
                    logger.info("execution %d: concurrent change, recomputing", eid)
                except repo.ExecutionNotFound:
                    logger.warning("results for unknown execution %d ignored", eid)
                    batch = _Batch()
                    break
            await send_requests(self.emitter, batch.ready, self.later)
            if batch.steps:
                await _status_event(self.emitter, "step", str(eid), {"steps": batch.steps})
            if batch.status is not None:
                await _status_event(self.emitter, "execution", str(eid), {"status": batch.status})

    async def _record_progress(self, results: Sequence[records.StepResult]) -> None:
        """Progress of running attempts (render jobs): kept on the step, pushed to dashboards."""
        latest = {(r.execution_id, r.step, r.attempt): r for r in results}
        async with self.engine.begin() as conn:
            await repo.set_progress(
                conn,
                [
                    (eid, step, attempt, float(r.progress or 0.0))
                    for (eid, step, attempt), r in latest.items()
                ],
            )
        for (eid, step, _attempt), r in latest.items():
            await _status_event(
                self.emitter, "step", str(eid), {"progress": {step: round(r.progress or 0, 4)}}
            )

    async def _record_execution(
        self, conn: AsyncConnection, eid: int, results: Sequence[records.StepResult]
    ) -> _Batch:
        await repo.lock_execution(conn, eid)
        names = sorted({r.step for r in results})
        first = await ops.load_states(conn, eid, names)
        cur = dict(first)
        changes: dict[str, repo.Change] = {}
        everything: dict[str, StepState] | None = None  # loaded only when a result spawns
        added: list[str] = []
        for r in results:
            step = cur.get(r.step)
            outcome = _outcome(r)
            if step is None or outcome is None:
                logger.warning("execution %d: result for unknown step %r ignored", eid, r.step)
                continue
            policy = policy_for(self.registry, step.kind)
            try:
                new = dag.apply_result(step, r.attempt, outcome, policy)
            except InvalidTransition as exc:
                logger.warning("execution %d: result ignored: %s", eid, exc)
                continue
            if new is step:
                logger.debug("execution %d: stale result for %s/%d", eid, r.step, r.attempt)
                continue
            if isinstance(outcome, dag.Success) and r.spawn:
                if everything is None:
                    everything = await ops.load_states(conn, eid)
                everything.update(cur)
                try:
                    defs = [StepDef.from_dict(d) for d in r.spawn]
                    new_steps = dag.spawn(
                        everything.values(),
                        [d.state(self.registry) for d in defs],
                        spawner=step.name,
                    )
                except (PipelineError, ValueError) as exc:
                    new = dag.fail(
                        step, r.attempt, f"spawn rejected: {exc}", retryable=False, policy=policy
                    )
                else:
                    added += await repo.add_steps(
                        conn, eid, new_steps, {d.name: d.input for d in defs}
                    )
                    everything.update({s.name: s for s in new_steps})
            cur[r.step] = new
            changes[r.step] = self._change(first[r.step], new, r, outcome)
        saved = await repo.save_changes(conn, eid, list(changes.values()))
        finished = [n for n in changes if cur[n].terminal]  # settled dependencies go on at failure
        spawns = [p for n in finished if cur[n].done for p in cur[n].spawns]
        promoting = await ops.promotions(conn, eid, finished, spawns, added)
        status: ExecutionStatus | None = None
        if promoting:
            # READY steps will exist: RUNNING, as refresh_execution_status would say; set first
            # so the promotion (it stamps ready_at) is the transaction's last statement.
            if await repo.set_execution_status(conn, eid, ExecutionStatus.RUNNING):
                status = ExecutionStatus.RUNNING
            promoted = await repo.save_promotions(conn, eid, promoting)
        else:
            promoted = []
            if changes or added:
                status = await ops.refresh_execution_status(conn, eid)
        batch = _Batch(ready=repo.ready_only(saved) + promoted, status=status)
        batch.steps = {s.name: str(s.status) for s in [*saved, *promoted]}
        return batch

    @staticmethod
    def _change(
        old: StepState, new: StepState, r: records.StepResult, outcome: dag.Outcome
    ) -> repo.Change:
        if isinstance(outcome, dag.Waiting):
            return repo.Change(old, new, worker=r.worker, log=f"waiting: {outcome.reason}")
        if new.status is StepStatus.SUCCEEDED:
            return repo.Change(
                old,
                new,
                output=dict(r.output or {}),
                worker=r.worker,
                attempt_status="succeeded",
                log="succeeded",
            )
        retrying = new.status is StepStatus.READY
        log = f"failed: {new.error}" + (f" (retry in {new.backoff_s:.1f}s)" if retrying else "")
        return repo.Change(
            old, new, worker=r.worker, attempt_status="failed", log=log, level="error"
        )


# --- the Faust agent ---------------------------------------------------------------------------


def attach(wa: AgentHost, orchestrator: Orchestrator, *, batch: int = 200) -> None:
    """The agent on step-results: small batches; a batch that fails is redone one by one."""
    attach_batched(
        wa,
        wa.topics.step_results,
        agent="orchestrator",
        decode=lambda payload: [records.decode(records.StepResult, payload)],
        what="StepResult",
        process=orchestrator.record,
        batch=batch,
        within=0.003,
    )
