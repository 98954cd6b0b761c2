"""When reconciliation takes a RUNNING attempt for lost (pure rule) and the heartbeat store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncEngine

from agents.pipeline.reconcile import DEAD_AFTER_S, _lost_reason
from agents.pipeline.registry import Registry, StepKind
from agents.pipeline.step import StepState, StepStatus
from storage import workers
from storage.pipeline import StepRow

NOW = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
REGISTRY = Registry(
    [StepKind("probe", timeout_s=30), StepKind("render", "render_queue", timeout_s=3600)]
)


def running(kind: str, started_s_ago: float, worker: str = "w1", waiting: str = "") -> StepRow:
    state = StepState(
        name=f"{kind}:1",
        kind=kind,
        status=StepStatus.RUNNING,
        attempt=1,
        max_attempts=3,
        waiting_for=waiting,
    )
    return StepRow(
        1, 1, state, {}, started_at=NOW - timedelta(seconds=started_s_ago), worker=worker
    )


def test_a_dead_workers_step_is_lost_before_its_timeout() -> None:
    late = DEAD_AFTER_S + 1
    assert "stopped heart-beating" in (
        _lost_reason(REGISTRY, running("probe", late), NOW, set()) or ""
    )
    assert _lost_reason(REGISTRY, running("probe", late), NOW, {"w1"}) is None
    # just claimed: the new worker may not have beaten yet
    assert _lost_reason(REGISTRY, running("probe", 1), NOW, set()) is None


def test_timeouts_waiting_steps_and_render_steps() -> None:
    assert "no result after 30s" in (
        _lost_reason(REGISTRY, running("probe", 31), NOW, {"w1"}) or ""
    )
    assert _lost_reason(REGISTRY, running("probe", 999, waiting="a booking"), NOW, set()) is None
    # render work lives on a render worker: a dead Faust worker does not lose it
    assert _lost_reason(REGISTRY, running("render", 60), NOW, set()) is None
    assert _lost_reason(REGISTRY, running("render", 3601), NOW, set()) is not None


async def test_heartbeats_mark_workers_live(clean_db: AsyncEngine) -> None:
    async with clean_db.begin() as conn:
        await workers.beat(conn, "host-1")
        await workers.beat(conn, "host-1")
        assert await workers.live_workers(conn, 5) == {"host-1"}
        assert await workers.live_workers(conn, 0) == set()
