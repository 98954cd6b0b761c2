"""Reconciliation: PostgreSQL is the truth, Kafka only the transport.

On worker start and then every `interval_s`, for every unfinished execution (one transaction
each, under the execution lock):
  - PENDING steps whose dependencies are done are promoted (the full pure check: a safety net
    under the orchestrator's incremental one);
  - READY steps that are due (`not_before` passed) and have waited longer than `grace_s` are
    sent again as they are: a claim dedupes, so a request that was not lost costs nothing;
  - RUNNING steps (not waiting on a human) whose attempt started longer ago than their kind's
    `timeout_s` are requeued (`dag.requeue`: a new attempt; the lost one's row is closed as
    `lost` and its late result, if any, is stale);
  - the execution status is recomputed.
So after a crashed worker or a broker that came back empty (the embedded one keeps topics in
memory), every execution still completes. Requeue has no heartbeat to go by: a step kind's
`timeout_s` must exceed its longest honest attempt.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncEngine

from agents.pipeline import dag
from agents.pipeline.dag import StepStatus
from agents.pipeline.orchestrator import Emitter, policy_for, send_requests
from agents.pipeline.registry import Registry
from storage import pipeline as repo

if TYPE_CHECKING:
    from agents.worker import WorkerApp

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReconcileReport:
    executions: int = 0
    promoted: int = 0
    resent: int = 0
    requeued: int = 0


async def _reconcile_execution(
    engine: AsyncEngine, registry: Registry, eid: int, grace_s: float
) -> tuple[list[repo.Saved], list[repo.Saved], int]:
    now = datetime.now(UTC)
    async with engine.begin() as conn:
        await repo.lock_execution(conn, eid)
        promoted = await repo.promote_all(conn, eid)
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
            s = r.state
            if s.status is not StepStatus.RUNNING or s.waiting_for or r.started_at is None:
                continue
            timeout = policy_for(registry, s.kind).timeout_s
            if r.started_at < now - timedelta(seconds=timeout):
                lost.append(
                    repo.Change(
                        s,
                        dag.requeue(s),
                        attempt_status="lost",
                        level="warning",
                        log=f"no result after {timeout:.0f}s: attempt lost, requeued",
                    )
                )
        requeued = await repo.save_changes(conn, eid, lost)
        await repo.refresh_execution_status(conn, eid)
    return promoted + repo.ready_only(requeued), resend, len(lost)


async def reconcile(
    engine: AsyncEngine, registry: Registry, emitter: Emitter, *, grace_s: float
) -> ReconcileReport:
    """One pass over every unfinished execution; see the module docstring."""
    async with engine.begin() as conn:
        eids = await repo.active_executions(conn)
    promoted = resent = requeued = 0
    for eid in eids:
        try:
            new, again, lost = await _reconcile_execution(engine, registry, eid, grace_s)
        except repo.StaleWrite:
            logger.info("execution %d changed while reconciling; next pass", eid)
            continue
        await send_requests(emitter, [*new, *again], None)
        promoted += len(new) - lost
        resent += len(again)
        requeued += lost
    report = ReconcileReport(len(eids), promoted, resent, requeued)
    if promoted or resent or requeued:
        logger.info("reconciled: %s", report)
    return report


def attach(
    wa: WorkerApp, registry: Registry, emitter: Emitter, *, interval_s: float = 30.0
) -> None:
    """Reconcile at start (everything READY is re-sent) and every `interval_s` after."""

    async def loop() -> None:
        grace = 0.0  # first pass: whatever is READY may have been lost with the broker
        while True:
            try:
                await reconcile(wa.engine, registry, emitter, grace_s=grace)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("reconciliation pass failed; next in %.0fs", interval_s)
            grace = interval_s
            await asyncio.sleep(interval_s)

    wa.app.task(loop)
