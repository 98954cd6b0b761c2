"""The local hand-off (issue 18): steps a worker's own orchestrator makes READY are claimed and
run by that worker's runner at once, without the broker hop; what it does not take is sent on
step-requests as before (agents/pipeline/runner.py `Runner.hand_off`, orchestrator.py
`send_requests`). Real PostgreSQL; the topics are the test's lists."""

from __future__ import annotations

import asyncio

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from support import wait_for

from agents.pipeline.dispatch import Emitter
from agents.pipeline.handlers import Handlers, StepContext, StepOutput, noop
from agents.pipeline.orchestrator import Orchestrator, StepDef, start_execution
from agents.pipeline.registry import StepKind
from agents.pipeline.runner import Runner
from streams import records


class Topics:
    """What would have gone on step-requests and step-results."""

    def __init__(self) -> None:
        self.requests: list[records.StepRequest] = []
        self.results: list[records.StepResult] = []

    async def send_request(self, key: bytes, value: bytes) -> object:
        self.requests.extend(records.decode(records.StepRequest, value).expand())
        return None

    async def send_result(self, key: bytes, value: bytes) -> object:
        self.results.append(records.decode(records.StepResult, value))
        return None


def handlers() -> Handlers:
    h = Handlers()
    h.add(StepKind("noop"), noop)
    h.add(StepKind("render", "render_queue"), noop)
    return h


async def run_to_end(orch: Orchestrator, runner: Runner, topics: Topics, eid: int) -> None:
    """Feed the runner's results to the orchestrator until the execution has finished."""

    async def finished() -> bool:
        if topics.results:
            batch, topics.results[:] = list(topics.results), []
            await orch.record(batch)
        async with orch.engine.connect() as conn:
            status = await conn.scalar(
                text("SELECT status FROM pipeline_execution WHERE id = :e"), {"e": eid}
            )
        return status == "succeeded" and not runner._local_tasks

    await wait_for(finished, timeout=30, what="the execution to succeed")


async def start(engine: AsyncEngine, em: Emitter, key: str, steps: list[StepDef]) -> int:
    return await start_execution(
        engine, em, handlers().registry, key=key, pipeline="test", subject_type="test",
        subject_id=key, steps=steps,
    )  # fmt: skip


FAN_OUT = [
    StepDef("root", "noop"),
    *(StepDef(f"n:{i}", "noop", depends_on=("root",)) for i in range(40)),
    StepDef("join", "noop", depends_on=("n:*",)),
]


async def test_a_fan_out_runs_on_the_worker_that_made_it_ready_without_a_request(
    clean_db: AsyncEngine,
) -> None:
    topics = Topics()
    h = handlers()
    runner = Runner(clean_db, h, topics.send_result, worker="w-local")
    em = Emitter(topics.send_request, None, runner.hand_off)
    orch = Orchestrator(clean_db, h.registry, em)
    eid = await start(clean_db, em, "hand-off-1", FAN_OUT)
    await run_to_end(orch, runner, topics, eid)
    assert topics.requests == []  # nothing went through the broker
    async with clean_db.connect() as conn:
        rows = (
            await conn.execute(
                text(
                    "SELECT s.name, s.status, s.attempt, s.worker, count(a.attempt) "
                    "FROM pipeline_step s JOIN pipeline_step_attempt a ON a.step_id = s.id "
                    "WHERE s.execution_id = :e GROUP BY s.id"
                ),
                {"e": eid},
            )
        ).all()
    assert len(rows) == 42
    assert {tuple(r[1:]) for r in rows} == {("succeeded", 1, "w-local", 1)}
    assert not runner.held._taken  # every attempt released once its result was sent


async def test_render_queue_steps_and_steps_past_the_limit_are_sent(
    clean_db: AsyncEngine,
) -> None:
    topics = Topics()
    h = handlers()
    runner = Runner(clean_db, h, topics.send_result, worker="w-local", max_local=3)
    em = Emitter(topics.send_request, None, runner.hand_off)
    steps = [StepDef("render", "render"), *(StepDef(f"n:{i}", "noop") for i in range(5))]
    await start(clean_db, em, "hand-off-2", steps)
    # the render step is the render queue's; five noop steps are more than max_local=3
    assert sorted(r.step for r in topics.requests) == ["n:0", "n:1", "n:2", "n:3", "n:4", "render"]
    async with clean_db.connect() as conn:
        statuses = set((await conn.execute(text("SELECT status FROM pipeline_step"))).scalars())
    assert statuses == {"ready"}


async def test_a_hand_off_whose_claim_fails_sends_everything(clean_db: AsyncEngine) -> None:
    topics = Topics()
    h = handlers()
    broken = create_async_engine("postgresql+asyncpg://postgres@127.0.0.1:1/none")
    try:
        runner = Runner(broken, h, topics.send_result, worker="w-local")
        em = Emitter(topics.send_request, None, runner.hand_off)
        await start(clean_db, em, "hand-off-3", [StepDef(f"n:{i}", "noop") for i in range(3)])
    finally:
        await broken.dispose()
    assert sorted(r.step for r in topics.requests) == ["n:0", "n:1", "n:2"]
    assert not runner.held._taken


async def test_closing_the_runner_stops_a_handed_off_step_and_lets_it_go(
    clean_db: AsyncEngine,
) -> None:
    started = asyncio.Event()

    async def hang(ctx: StepContext, request: records.StepRequest) -> StepOutput:
        started.set()
        await asyncio.sleep(3600)
        return StepOutput({})

    topics = Topics()
    h = Handlers()
    h.add(StepKind("hang"), hang)
    runner = Runner(clean_db, h, topics.send_result, worker="w-local")
    em = Emitter(topics.send_request, None, runner.hand_off)
    await start_execution(
        clean_db, em, h.registry, key="hand-off-4", pipeline="test", subject_type="test",
        subject_id="hand-off-4", steps=[StepDef("hang", "hang")],
    )  # fmt: skip
    await asyncio.wait_for(started.wait(), 10)
    assert runner.held._taken  # executing here
    await runner.close()
    assert not runner._local_tasks and not runner.held._taken  # released: requeued as lost
    assert topics.requests == [] and topics.results == []
