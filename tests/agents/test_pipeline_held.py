"""A result lost on its way (sent into a broker that died): the worker that ran the step no
longer holds it, and its own reconciliation requeues it a minute after the result was sent,
instead of waiting for the kind's timeout (agents/pipeline/held.py, reconcile.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from agents.pipeline.dispatch import Emitter
from agents.pipeline.handlers import Handlers, noop
from agents.pipeline.held import RELEASED_S, Held
from agents.pipeline.orchestrator import StepDef, start_execution
from agents.pipeline.reconcile import Own, _lost_reason, reconcile
from agents.pipeline.registry import Registry, StepKind
from agents.pipeline.runner import Runner
from agents.pipeline.step import StepState, StepStatus
from storage import workers
from storage.pipeline import StepRow
from streams import records

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
REGISTRY = Registry([StepKind("phases", timeout_s=900), StepKind("render", "render_queue")])


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_held_while_executing_and_a_minute_after_the_result_is_sent() -> None:
    clock = Clock()
    held = Held(clock)
    a, b = (1, "phases", 1), (1, "qr:7", 1)
    held.take([a, b])
    held.drop([b])  # another worker won b
    assert held.holds(a) and not held.holds(b)
    clock.t += 3600
    assert held.holds(a)  # still executing, however long
    held.release([a])
    clock.t += RELEASED_S - 1
    assert held.holds(a)  # its result may still be on its way
    clock.t += 2
    assert not held.holds(a)


def row(worker: str, started_s_ago: float, kind: str = "phases", waiting: str = "") -> StepRow:
    state = StepState(
        name=kind, kind=kind, status=StepStatus.RUNNING, attempt=1, max_attempts=2,
        waiting_for=waiting,
    )  # fmt: skip
    return StepRow(
        1, 1, state, {}, started_at=NOW - timedelta(seconds=started_s_ago), worker=worker
    )


def test_only_this_workers_unheld_agent_steps_count_as_lost() -> None:
    def never(name: str, attempt: int) -> bool:
        return False

    def always(name: str, attempt: int) -> bool:
        return True

    live = {"me", "other"}
    old = RELEASED_S + 1
    reason = _lost_reason(REGISTRY, row("me", old), NOW, live, never, "me")
    assert reason is not None and "its result never arrived" in reason
    assert _lost_reason(REGISTRY, row("me", old), NOW, live, always, "me") is None
    assert _lost_reason(REGISTRY, row("other", old), NOW, live, never, "me") is None
    assert _lost_reason(REGISTRY, row("me", 5), NOW, live, never, "me") is None  # just claimed
    assert (
        _lost_reason(REGISTRY, row("me", old, waiting="a person"), NOW, live, never, "me") is None
    )
    assert _lost_reason(REGISTRY, row("me", old, kind="render"), NOW, live, never, "me") is None
    assert _lost_reason(REGISTRY, row("me", old), NOW, live) is None  # without the runner's view


async def test_a_step_whose_result_was_lost_is_requeued_and_runs_again(
    clean_db: AsyncEngine,
) -> None:
    requests: list[records.StepRequest] = []
    results: list[records.StepResult] = []

    async def send_request(key: bytes, value: bytes) -> object:
        requests.extend(records.decode(records.StepRequest, value).expand())
        return None

    async def lose_result(key: bytes, value: bytes) -> object:
        results.append(records.decode(records.StepResult, value))  # ... into a broker that died
        return None

    handlers = Handlers()
    handlers.add(StepKind("long", max_attempts=2, timeout_s=1800), noop)  # like photos
    registry = handlers.registry
    await start_execution(
        clean_db, Emitter(send_request), registry, key="held-1", pipeline="test",
        subject_type="test", subject_id="held-1", steps=[StepDef("root", "long")],
    )  # fmt: skip
    runner = Runner(clean_db, handlers, lose_result, worker="w-held")
    await runner.run([requests.pop()])
    assert [r.status for r in results] == ["succeeded"]  # sent, never recorded
    own = Own("w-held", runner.held)

    # a minute later nothing would finish it but the 30-minute timeout; the runner is done
    # with it, so its own worker's reconciliation requeues it
    await reconcile(clean_db, registry, Emitter(send_request), grace_s=60, own=own)
    assert not requests  # its result was sent a moment ago: still waited for
    async with clean_db.begin() as conn:
        await conn.execute(
            text("UPDATE pipeline_step SET started_at = started_at - interval '2 minutes'"),
        )
        await workers.beat(conn, "w-held")  # the worker is alive: this is not a dead worker's step
    runner.held = Held(lambda: 1e12)  # ... and a minute went by for the runner too
    report = await reconcile(
        clean_db, registry, Emitter(send_request), grace_s=60, own=Own("w-held", runner.held)
    )
    assert report.requeued == 1
    [again] = requests
    assert (again.step, again.attempt) == ("root", 2)
    async with clean_db.connect() as conn:
        step = (await conn.execute(text("SELECT status, attempt FROM pipeline_step"))).one()
        lost = await conn.scalar(
            text("SELECT message FROM pipeline_step_log WHERE message LIKE '%never arrived%'")
        )
    assert tuple(step) == ("ready", 2)
    assert lost is not None and "w-held" in lost
