"""Reconciliation: PostgreSQL is the truth, Kafka only the transport.

On worker start and then every `interval_s`, for every unfinished execution (one transaction
each, under the execution lock):
  - PENDING steps whose dependencies are done are promoted (the full pure check: a safety net
    under the orchestrator's incremental one);
  - READY steps that are due (`not_before` passed) and have waited longer than `grace_s` are
    sent again as they are: a claim dedupes, so a request that was not lost costs nothing;
  - RUNNING steps (not waiting on a human) whose attempt started longer ago than their kind's
    `timeout_s` are requeued (`dag.requeue`: a new attempt; the lost one's row is closed as
    `lost` and its late result, if any, is stale); so are the RUNNING agent steps of a worker
    that stopped heart-beating (storage/workers.py) — at once, not after the timeout — and
    this worker's own RUNNING agent steps that its runner no longer holds: their result was
    lost on the way (agents/pipeline/held.py), so they are requeued a minute after it was sent;
  - the execution status is recomputed.
Before that, the re-derivation rules the real pipelines registered (`Registry.add_check`) run:
they look at what PostgreSQL (and the render queue) say happened and send what a lost message
would have sent — a copy that landed, a render that finished — or requeue what is gone
(agents/jobs/landing.py, render.py, sessions.py).
So after a crashed worker or a broker that came back empty (the embedded one keeps topics in
memory), every execution still completes. A step kind's `timeout_s` must exceed its longest
honest attempt. Render-queue steps are not requeued for a dead Faust worker: their work runs on
a render worker; the render rule (agents/jobs/render.py) checks them against the saq job (its
heartbeat, result or absence) instead.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncEngine

from agents.pipeline import dag
from agents.pipeline import operations as ops
from agents.pipeline.dag import StepStatus
from agents.pipeline.dispatch import Emitter, send_requests
from agents.pipeline.held import RELEASED_S, Held
from agents.pipeline.host import AgentHost
from agents.pipeline.orchestrator import policy_for
from agents.pipeline.registry import Registry
from storage import pipeline as repo
from storage import workers

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReconcileReport:
    executions: int = 0
    promoted: int = 0
    resent: int = 0
    requeued: int = 0
    rederived: int = 0


# A worker not heard of for DEAD_AFTER_S is taken for dead (it beats every HEARTBEAT_S).
HEARTBEAT_S = workers.HEARTBEAT_S
DEAD_AFTER_S = workers.DEAD_AFTER_S


#: Whether this worker holds (step name, attempt) of the execution at hand (agents/pipeline/held.py)
Holds = Callable[[str, int], bool]


@dataclass(frozen=True)
class Own:
    """This worker's name and what its runner holds: its RUNNING agent steps that it does not
    hold lost their result (agents/pipeline/held.py)."""

    worker: str
    held: Held


def _lost_reason(
    registry: Registry,
    r: repo.StepRow,
    now: datetime,
    live: set[str] | None,
    holds: Holds | None = None,
    worker: str = "",
) -> str | None:
    """Why a RUNNING step's attempt counts as lost, or None (pure)."""
    s = r.state
    if s.status is not StepStatus.RUNNING or s.waiting_for or r.started_at is None:
        return None
    kind = policy_for(registry, s.kind)
    if r.started_at < now - timedelta(seconds=kind.timeout_s):
        return f"no result after {kind.timeout_s:.0f}s: attempt lost, requeued"
    if (
        live is not None
        and kind.runs_on == "agent"
        and r.worker
        and r.worker not in live
        and r.started_at < now - timedelta(seconds=DEAD_AFTER_S)
    ):
        return f"worker {r.worker} stopped heart-beating: attempt lost, requeued"
    if (
        holds is not None
        and kind.runs_on == "agent"
        and worker
        and r.worker == worker
        and r.started_at < now - timedelta(seconds=RELEASED_S)
        and not holds(s.name, s.attempt)
    ):
        return f"its result never arrived (worker {worker} is done with it): attempt lost, requeued"
    return None


async def _reconcile_execution(
    engine: AsyncEngine,
    registry: Registry,
    eid: int,
    grace_s: float,
    live: set[str] | None,
    own: Own | None = None,
) -> tuple[list[repo.Saved], list[repo.Saved], int]:
    now = datetime.now(UTC)
    holds: Holds | None = None
    if own is not None:
        held = own.held
        holds = lambda name, attempt: held.holds((eid, name, attempt))  # noqa: E731
    async with engine.begin() as conn:
        await repo.lock_execution(conn, eid)
        promoted = await ops.promote_all(conn, eid)
        rows = await repo.load_steps(conn, eid)
        fresh = {p.name for p in promoted}
        resend = [
            repo.Saved(
                eid,
                r.id,
                r.state.name,
                r.state.kind,
                r.state.status,
                r.state.attempt,
                r.input,
                r.not_before,
            )
            for r in rows
            if r.state.status is StepStatus.READY
            and r.state.name not in fresh
            and (r.not_before or now) <= now
            and (r.ready_at or now) <= now - timedelta(seconds=grace_s)
        ]
        lost = []
        for r in rows:
            reason = _lost_reason(registry, r, now, live, holds, own.worker if own else "")
            if reason is not None:
                old = ops.state_of(r)
                lost.append(
                    repo.Change(
                        old,
                        dag.requeue(old),
                        attempt_status="lost",
                        level="warning",
                        log=reason,
                    )
                )
        requeued = await repo.save_changes(conn, eid, lost)
        await ops.refresh_execution_status(conn, eid)
    return promoted + repo.ready_only(requeued), resend, len(lost)


async def reconcile(
    engine: AsyncEngine,
    registry: Registry,
    emitter: Emitter,
    *,
    grace_s: float,
    heartbeats: bool = True,
    own: Own | None = None,
) -> ReconcileReport:
    """One pass over every unfinished execution; see the module docstring."""
    rederived = await run_checks(registry)
    async with engine.begin() as conn:
        eids = await repo.active_executions(conn)
        live = await workers.live_workers(conn, DEAD_AFTER_S) if heartbeats else None
    promoted = resent = requeued = 0
    for eid in eids:
        try:
            new, again, lost = await _reconcile_execution(engine, registry, eid, grace_s, live, own)
        except repo.StaleWrite:
            logger.info("execution %d changed while reconciling; next pass", eid)
            continue
        await send_requests(emitter, [*new, *again], None)
        promoted += len(new) - lost
        resent += len(again)
        requeued += lost
    report = ReconcileReport(len(eids), promoted, resent, requeued, rederived)
    if promoted or resent or requeued or rederived:
        logger.info("reconciled: %s", report)
    return report


async def run_checks(registry: Registry) -> int:
    """Run every registered re-derivation rule; one that fails is logged and the rest go on."""
    total = 0
    for name, check in registry.checks():
        try:
            moved = await check()
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("reconcile rule %s failed; next pass", name)
            continue
        if moved:
            logger.info("reconcile rule %s: %d re-derived", name, moved)
        total += moved
    return total


async def requeue_dead(engine: AsyncEngine, registry: Registry, emitter: Emitter) -> int:
    """Requeue the RUNNING agent steps of workers that stopped heart-beating; returns how many."""
    async with engine.begin() as conn:
        live = await workers.live_workers(conn, DEAD_AFTER_S)
        eids = await repo.executions_of_dead_workers(conn, live, DEAD_AFTER_S)
    total = 0
    for eid in eids:
        try:
            new, _again, lost = await _reconcile_execution(engine, registry, eid, 1e9, live)
        except repo.StaleWrite:
            continue
        await send_requests(emitter, new, None)
        total += lost
    if total:
        logger.info("requeued %d step(s) of stopped workers", total)
    return total


def attach(
    wa: AgentHost,
    registry: Registry,
    emitter: Emitter,
    *,
    worker: str,
    interval_s: float = 30.0,
    held: Held | None = None,
) -> None:
    """Reconcile at start (everything READY is re-sent) and every `interval_s` after; beat
    this worker's heartbeat every HEARTBEAT_S, and look for dead workers' steps as often."""

    async def heartbeat() -> None:
        while True:
            try:
                async with wa.engine.begin() as conn:
                    await workers.beat(conn, worker)
                    await workers.forget_stale(conn, 24 * 3600)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.warning("heartbeat of %s not recorded: %s", worker, exc)
            await asyncio.sleep(HEARTBEAT_S)

    wa.app.task(heartbeat)

    async def loop() -> None:
        grace = 0.0  # first pass: whatever is READY may have been lost with the broker
        while True:
            try:
                own = Own(worker, held) if held is not None else None
                await reconcile(wa.engine, registry, emitter, grace_s=grace, own=own)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("reconciliation pass failed; next in %.0fs", interval_s)
            grace = interval_s
            # between full passes, a cheap check for steps of workers that died
            slept = 0.0
            while slept < interval_s:
                step = min(DEAD_AFTER_S / 2, interval_s - slept)
                await asyncio.sleep(step)
                slept += step
                if slept < interval_s:
                    try:
                        await requeue_dead(wa.engine, registry, emitter)
                    except asyncio.CancelledError:
                        raise
                    except Exception:
                        logger.exception("dead-worker check failed")

    wa.app.task(loop)
