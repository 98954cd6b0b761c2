"""The engine's transactions on one execution: load its steps, apply the pure core, save.

Storage (`storage/pipeline.py`) loads rows as plain `StepFields` and saves `Change`s guarded by
the state they were computed from; the rules (readiness, retry, resume, cancel, requeue) are the
pure core's (`agents/pipeline/dag.py`). Every function here runs inside the caller's
transaction and, where it changes steps, locks the execution row first.

`retry_step`, `retry_execution`, `resume_execution` and `cancel_execution` are the operator
actions the orchestrator's `retry`/`resume`/`cancel` run; they record the actor in the step log
and return the steps to dispatch. A retry moves a RUNNING step only when its worker is gone (not
in the live set the caller passes) or when forced.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence

from sqlalchemy.ext.asyncio import AsyncConnection

from agents.pipeline import dag
from agents.pipeline.dag import ExecutionStatus, StepState, StepStatus
from agents.pipeline.errors import InvalidDag
from storage import pipeline as repo
from storage.pipeline import Change, Saved, StepRow

logger = logging.getLogger(__name__)


def state_of(row: StepRow) -> StepState:
    """The core's (validated) state of a stored step."""
    f = row.state
    return StepState(
        name=f.name,
        kind=f.kind,
        depends_on=f.depends_on,
        spawns=f.spawns,
        status=f.status,
        attempt=f.attempt,
        max_attempts=f.max_attempts,
        spawned_by=f.spawned_by,
        error=f.error,
        waiting_for=f.waiting_for,
        backoff_s=f.backoff_s,
    )


async def load_states(
    conn: AsyncConnection, execution_id: int, names: Sequence[str] | None = None
) -> dict[str, StepState]:
    """The core's states of an execution's steps (or only the named ones), by name."""
    return {
        s.name: s for s in (state_of(r) for r in await repo.load_steps(conn, execution_id, names))
    }


# --- readiness and status ----------------------------------------------------------------------


async def promote(
    conn: AsyncConnection,
    execution_id: int,
    done: Sequence[str],
    done_spawns: Iterable[str] = (),
    added: Sequence[str] = (),
) -> list[Saved]:
    """Move what became ready after `done` finished / `added` appeared to READY (returned)."""
    changes = await promotions(conn, execution_id, done, done_spawns, added)
    return await repo.save_changes(conn, execution_id, changes)


async def promotions(
    conn: AsyncConnection,
    execution_id: int,
    done: Sequence[str],
    done_spawns: Iterable[str] = (),
    added: Sequence[str] = (),
) -> list[Change]:
    """What `promote` would write (PENDING -> READY changes), not written yet."""
    candidates = await repo.promotion_candidates(conn, execution_id, done, done_spawns, added)
    if not candidates:
        return []
    wanted = set(candidates)
    graph = await repo.load_upstream(conn, execution_id, candidates)
    olds = {s.name: s for s in map(state_of, graph)}
    return [Change(olds[s.name], s) for s in dag.promote_ready(olds.values()) if s.name in wanted]


async def promote_all(conn: AsyncConnection, execution_id: int) -> list[Saved]:
    """The full check (start, reconciliation): every PENDING step whose dependencies are done."""
    olds = await load_states(conn, execution_id)
    return await repo.save_promotions(
        conn, execution_id, [Change(olds[s.name], s) for s in dag.promote_ready(olds.values())]
    )


async def refresh_execution_status(
    conn: AsyncConnection, execution_id: int
) -> ExecutionStatus | None:
    """Recompute and store the execution's status; returns it when it changed.

    Counts decide the common cases; only a quiescent execution (nothing ready or running) is
    loaded whole for the core's `execution_status`.
    """
    c = await repo.status_counts(conn, execution_id)
    total = sum(c.values())
    if total and c.get(StepStatus.SUCCEEDED, 0) + c.get(StepStatus.SKIPPED, 0) == total:
        status = ExecutionStatus.SUCCEEDED
    elif c.get(StepStatus.READY, 0) or c.get(StepStatus.RUNNING, 0):
        status = ExecutionStatus.RUNNING
    else:
        status = dag.execution_status((await load_states(conn, execution_id)).values())
    return status if await repo.set_execution_status(conn, execution_id, status) else None


# --- operator actions (orchestrator.retry / resume / cancel) ------------------------------------


def _gone(r: StepRow, live: set[str]) -> bool:
    return r.state.status is StepStatus.RUNNING and (not r.worker or r.worker not in live)


async def retry_step(
    conn: AsyncConnection,
    execution_id: int,
    name: str,
    actor: str,
    *,
    force: bool = False,
    live: set[str] | None = None,
) -> list[Saved]:
    """Retry one FAILED step (beyond max_attempts: a human asked), or a RUNNING one whose worker
    is not in `live` (or any with `force`); raises InvalidTransition when refused."""
    await repo.lock_execution(conn, execution_id)
    rows = await repo.load_steps(conn, execution_id, [name])
    if not rows:
        raise InvalidDag(name, f"no step {name!r} in execution {execution_id}")
    row = rows[0]
    old = state_of(row)
    gone = live is not None and _gone(row, live)
    new = dag.operator_retry(old, worker_gone=gone, force=force)
    changes = [_retry_change(row, old, new, actor, force=force, gone=gone)]
    everything = await load_states(conn, execution_id)
    if old.status is StepStatus.FAILED:
        changes += [
            Change(
                everything[s.name],
                s,
                log=f"runs again after {name} (retry by {actor})",
                actor=actor,
            )
            for s in dag.rerun_after_retry(everything.values(), [name])
        ]
    out = repo.ready_only(await repo.save_changes(conn, execution_id, changes))
    await refresh_execution_status(conn, execution_id)
    logger.info("execution %d: step %s retried by %s", execution_id, name, actor)
    return out


def _retry_change(
    row: StepRow, old: StepState, new: StepState, actor: str, *, force: bool, gone: bool
) -> Change:
    if old.status is not StepStatus.RUNNING:
        return Change(old, new, log=f"retry requested by {actor}", actor=actor)
    on = f" on {row.worker}" if row.worker else ""
    why = f"its worker{on} is gone" if gone else f"forced while running{on}"
    return Change(
        old,
        new,
        attempt_status="lost" if gone else "cancelled",
        level="warning",
        log=f"retry requested by {actor}: {why}; attempt {old.attempt} abandoned",
        actor=actor,
    )


async def retry_execution(
    conn: AsyncConnection,
    execution_id: int,
    actor: str,
    *,
    force: bool = False,
    live: set[str] | None = None,
) -> list[Saved]:
    """Retry every FAILED step (and every RUNNING one whose worker is not in `live`, or with
    `force` every running one); what they blocked runs once they succeed; succeeded stays."""
    await repo.lock_execution(conn, execution_id)
    rows = {r.state.name: r for r in await repo.load_steps(conn, execution_id)}
    olds = {n: state_of(r) for n, r in rows.items()}
    movable = [
        n
        for n, r in rows.items()
        if r.state.status is StepStatus.RUNNING and (force or (live is not None and _gone(r, live)))
    ]
    changes = []
    for s in dag.retry_execution(olds.values(), movable):
        old = olds[s.name]
        if old.status is StepStatus.RUNNING:
            gone = live is not None and _gone(rows[s.name], live)
            changes.append(_retry_change(rows[s.name], old, s, actor, force=force, gone=gone))
            continue
        what = "retry" if old.status is StepStatus.FAILED else "run again"
        changes.append(Change(old, s, log=f"{what} requested by {actor}", actor=actor))
    out = repo.ready_only(await repo.save_changes(conn, execution_id, changes))
    await refresh_execution_status(conn, execution_id)
    logger.info("execution %d: %d steps retried by %s", execution_id, len(out), actor)
    return out


async def resume_execution(conn: AsyncConnection, execution_id: int, actor: str) -> list[Saved]:
    """Resume a cancelled execution: cancelled steps go back to PENDING (and READY when their
    dependencies are done, returned); what succeeded never runs again."""
    await repo.lock_execution(conn, execution_id)
    olds = await load_states(conn, execution_id)
    changes = [
        Change(olds[s.name], s, log=f"resumed by {actor}", actor=actor)
        for s in dag.resume_execution(olds.values())
    ]
    await repo.save_changes(conn, execution_id, changes)
    ready = await promote_all(conn, execution_id)
    await refresh_execution_status(conn, execution_id)
    logger.info(
        "execution %d: resumed by %s (%d steps, %d ready)",
        execution_id,
        actor,
        len(changes),
        len(ready),
    )
    return ready


async def cancel_execution(conn: AsyncConnection, execution_id: int, actor: str) -> int:
    """Cancel every unfinished step; a running attempt's late result is then ignored."""
    await repo.lock_execution(conn, execution_id)
    olds = await load_states(conn, execution_id)
    changes = [
        Change(
            olds[s.name],
            s,
            attempt_status="cancelled" if olds[s.name].status is StepStatus.RUNNING else "",
            log=f"cancelled by {actor}",
            actor=actor,
        )
        for s in dag.cancel_execution(olds.values())
    ]
    await repo.save_changes(conn, execution_id, changes)
    await repo.set_execution_status(conn, execution_id, ExecutionStatus.CANCELLED)
    logger.info("execution %d: cancelled by %s (%d steps)", execution_id, actor, len(changes))
    return len(changes)


async def rerun_step(
    conn: AsyncConnection, execution_id: int, name: str, actor: str, reason: str
) -> list[Saved]:
    """Run step `name` and everything depending on it again (`dag.rerun_from`), whatever their
    status: running attempts are closed as `cancelled`. Returns what became READY (`name`, when
    its dependencies are done). Raises InvalidDag for an unknown step."""
    await repo.lock_execution(conn, execution_id)
    olds = await load_states(conn, execution_id)
    changes = [
        Change(
            olds[s.name],
            s,
            attempt_status="cancelled"
            if olds[s.name].status in (StepStatus.RUNNING, StepStatus.READY)
            else "",
            log=f"runs again: {reason}" if s.name == name else f"runs again after {name}: {reason}",
            actor=actor,
        )
        for s in dag.rerun_from(olds.values(), name)
    ]
    await repo.save_changes(conn, execution_id, changes)
    ready = await promote_all(conn, execution_id)
    await refresh_execution_status(conn, execution_id)
    logger.info(
        "execution %d: %s and %d dependant(s) run again (%s, by %s)",
        execution_id,
        name,
        max(len(changes) - 1, 0),
        reason,
        actor,
    )
    return ready


# --- reconciliation ----------------------------------------------------------------------------


async def requeue_step(
    conn: AsyncConnection, execution_id: int, name: str, attempt: int, reason: str
) -> list[Saved]:
    """Requeue a RUNNING step as a new attempt if it is still at `attempt` (the lost one is
    closed as `lost`); returns what became ready (nothing when it moved on meanwhile)."""
    await repo.lock_execution(conn, execution_id)
    old = (await load_states(conn, execution_id, [name])).get(name)
    if old is None or old.status is not StepStatus.RUNNING or old.attempt != attempt:
        return []
    change = Change(
        old, dag.requeue(old), attempt_status="lost", level="warning", log=reason, actor="system"
    )
    out = repo.ready_only(await repo.save_changes(conn, execution_id, [change]))
    await refresh_execution_status(conn, execution_id)
    logger.info("execution %d: %s requeued: %s", execution_id, name, reason)
    return out


async def redo_steps(
    conn: AsyncConnection, execution_id: int, names: Sequence[str], reason: str
) -> list[Saved]:
    """Run finished (succeeded/skipped) steps again: PENDING, then READY when their
    dependencies are done (returned). Steps not done are left as they are."""
    await repo.lock_execution(conn, execution_id)
    olds = await load_states(conn, execution_id, names)
    changes = [
        Change(old, dag.redo(old), log=reason, actor="system") for old in olds.values() if old.done
    ]
    if not changes:
        return []
    await repo.save_changes(conn, execution_id, changes)
    ready = await promote_all(conn, execution_id)
    await refresh_execution_status(conn, execution_id)
    logger.info("execution %d: %s run again: %s", execution_id, ", ".join(olds), reason)
    return ready
