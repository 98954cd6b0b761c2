"""`skyreel replay`: rewinding the worker's group on step topics re-drives the agents, and since
every handler is idempotent no row is added; a live group is refused."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable

import asyncpg
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from support import Proc, Rig, settings_env, wait_for

from agents.pipeline.dispatch import Emitter
from agents.pipeline.handlers import default_handlers
from agents.pipeline.orchestrator import StepDef, start_execution
from streams.cli.replay import lag, parse_since, resolve_topic
from streams.kafka import ensure_topics, make_producer
from streams.settings import Settings
from streams.topics import Names

COUNTS = {
    "executions": "SELECT count(*) FROM pipeline_execution",
    "steps": "SELECT count(*) FROM pipeline_step",
    "attempts": "SELECT count(*) FROM pipeline_step_attempt",
    "logs": "SELECT count(*) FROM pipeline_step_log",
    "dead_letters": "SELECT count(*) FROM dead_letter",
    "counters": "SELECT coalesce(sum(value), 0) FROM counter",
    "states": "SELECT string_agg(name || status || attempt, ',' ORDER BY name) FROM pipeline_step",
}


async def snapshot(pg: asyncpg.Connection) -> dict[str, object]:
    return {k: await pg.fetchval(sql) for k, sql in COUNTS.items()}


async def caught_up(bootstrap: str, group: str, topics: list[str]) -> bool:
    """True when the group's committed offsets reach the end of every partition."""
    behind = await lag(bootstrap, group, topics)
    return bool(behind) and not any(behind.values())


async def run_execution(engine: AsyncEngine, settings: Settings, names: Names) -> int:
    await ensure_topics(settings.kafka_url, names.source_topics(), settings.topic_partitions)
    producer = make_producer(settings.kafka_url)
    await producer.start()

    async def send(key: bytes, value: bytes) -> object:
        return await producer.send_and_wait(names.step_requests, value=value, key=key)

    plan = [
        StepDef("gen", "spawner", spawns=("c:*",), input={"count": 5, "prefix": "c:"}),
        StepDef("flaky", "fail", input={"fail_times": 1}),
        StepDef("end", "noop", depends_on=("c:*", "flaky")),
    ]
    try:
        return await start_execution(
            engine,
            Emitter(send),
            default_handlers().registry,
            key="replayed",
            pipeline="test",
            subject_type="test",
            subject_id="r",
            steps=plan,
        )
    finally:
        await producer.stop()


def run_cli(spawn: Callable[..., Proc], settings: Settings, *args: str) -> tuple[int, str]:
    proc = spawn("streams.cli", *args, env=settings_env(settings), name="replay")
    code = proc.popen.wait(60)
    return code, proc.output()


def test_topic_names_and_times_resolve() -> None:
    names = Names("p")
    assert resolve_topic("step-results", names) == "p.step-results"
    assert resolve_topic("other.topic", names) == "other.topic"
    assert parse_since("2024-05-01T10:00:00") == dt.datetime(2024, 5, 1, 10, tzinfo=dt.UTC)
    assert parse_since("2024-05-01T10:00:00Z").tzinfo is not None


@pytest.mark.slow
async def test_replay_of_step_topics_changes_no_row_counts(
    rig: Rig, pg: asyncpg.Connection
) -> None:
    topics = [rig.names.step_requests, rig.names.step_results]
    group = rig.settings.app_id
    worker = rig.spawn("streams.cli", "worker", env=settings_env(rig.settings), name="worker")
    eid = await run_execution(rig.db, rig.settings, rig.names)

    async def succeeded() -> bool:
        assert worker.popen.poll() is None, worker.output()[-3000:]
        status = await pg.fetchval("SELECT status FROM pipeline_execution WHERE id = $1", eid)
        return bool(status == "succeeded")

    await wait_for(succeeded, timeout=60, what="execution succeeded")
    await wait_for(
        lambda: caught_up(rig.settings.kafka_url, group, topics), what="offsets committed"
    )

    offline = ("replay", "step-results", "--offset", "0", "--offline")
    code, out = run_cli(rig.spawn, rig.settings, *offline)
    assert code == 1 and "Stop the group's consumers" in out, out  # refused: worker in group

    worker.stop()
    before = await snapshot(pg)
    # Tansu refuses outside commits to a group that ever had members (streams/cli/replay.py), so
    # the rewound group is a fresh one: requests at their end, results from the beginning.
    replayed = rig.settings.model_copy(update={"app_id": f"{group}-replay"})
    future = (dt.datetime.now(dt.UTC) + dt.timedelta(days=1)).isoformat()
    code, out = run_cli(rig.spawn, replayed, "replay", "step-requests", "--since", future)
    assert code == 0, out
    code, out = run_cli(rig.spawn, replayed, "replay", "step-results", "--offset", "0")
    assert code == 0, out
    assert f"{rig.names.step_results}[0] {replayed.app_id}: None -> 0" in out
    behind = await lag(rig.settings.kafka_url, replayed.app_id, topics)
    assert sum(n for tp, n in behind.items() if tp.topic == rig.names.step_results) > 0
    assert sum(n for tp, n in behind.items() if tp.topic == rig.names.step_requests) == 0

    again = rig.spawn("streams.cli", "worker", env=settings_env(replayed), name="worker-replay")
    await wait_for(
        lambda: caught_up(rig.settings.kafka_url, replayed.app_id, topics),
        timeout=60,
        what="replay consumed",
    )
    await asyncio.sleep(1.0)  # let any (wrong) follow-up work land before comparing
    assert again.popen.poll() is None
    assert await snapshot(pg) == before
