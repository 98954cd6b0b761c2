"""Failure handling through the real worker: a failed step blocks only its dependents; retry
re-runs it and what it blocked, never what succeeded; transient errors back off up to the kind's
max_attempts, permanent ones fail at once; poison messages become dead letters."""

from __future__ import annotations

import datetime as dt
import itertools

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer
from pipeline_harness import (
    REGISTRY,
    attempts,
    emitter,
    execution_status,
    start,
    steps,
    wait_status,
)
from support import Rig, wait_for

from agents.pipeline.orchestrator import StepDef, retry
from streams.kafka import make_producer

pytestmark = pytest.mark.slow


async def test_failed_step_then_retry_reruns_only_it_and_its_dependents(
    rig: Rig, pg: asyncpg.Connection
) -> None:
    worker = rig.worker()
    dag_ = [
        StepDef("a", "noop"),
        StepDef("f", "fail", depends_on=("a",), input={"fail_times": 1, "permanent": True}),
        StepDef("g", "noop", depends_on=("f",)),
        StepDef("h", "noop", depends_on=("a",)),
        StepDef("i", "noop", depends_on=("h",)),
    ]
    async with emitter(rig.settings, rig.names) as em:
        eid = await start(rig.db, em, "retry-me", dag_)
        await wait_status(pg, eid, "failed", worker)
        before = await steps(pg, eid)
        assert {n: r["status"] for n, r in before.items()} == {
            "a": "succeeded",
            "f": "failed",
            "g": "pending",
            "h": "succeeded",
            "i": "succeeded",
        }
        assert "planned failure 1/1" in before["f"]["error"]

        assert await retry(rig.db, em, eid, step=None, actor="ops@test") == ["f"]
        await wait_status(pg, eid, "succeeded", worker)

    after = await steps(pg, eid)
    assert {n: r["attempt"] for n, r in after.items()} == {"a": 1, "f": 2, "g": 1, "h": 1, "i": 1}
    for name in ("a", "h", "i"):  # succeeded steps untouched: same attempt, same timings
        assert after[name]["started_at"] == before[name]["started_at"]
        assert after[name]["finished_at"] == before[name]["finished_at"]
    tries = [(r["name"], r["attempt"], r["status"]) for r in await attempts(pg, eid)]
    assert [t for t in tries if t[0] == "f"] == [("f", 1, "failed"), ("f", 2, "succeeded")]
    assert all(r["started_at"] and r["finished_at"] for r in await attempts(pg, eid))
    logs = await pg.fetch(
        "SELECT l.attempt, l.level, l.message, l.actor FROM pipeline_step_log l "
        "JOIN pipeline_step s ON s.id = l.step_id WHERE s.execution_id = $1 AND s.name = 'f' "
        "ORDER BY l.id",
        eid,
    )
    by_attempt = {a: [r["message"] for r in logs if r["attempt"] == a] for a in (1, 2)}
    assert any("planned failure 1/1" in m for m in by_attempt[1])
    assert "retry requested by ops@test" in by_attempt[2]
    assert any("succeeded at attempt 2" in m for m in by_attempt[2])
    counters = dict(await pg.fetch("SELECT name, value FROM counter"))
    assert counters["steps_failed"] == 1
    assert counters["steps_retried"] == 1


async def test_transient_errors_back_off_permanent_ones_fail_at_once(
    rig: Rig, pg: asyncpg.Connection
) -> None:
    worker = rig.worker()
    kind = REGISTRY.get("fail")
    dag_ = [
        StepDef("flaky", "fail", input={"fail_times": 2}),
        StepDef("hopeless", "fail", input={"fail_times": 99}),
        StepDef("broken", "fail", input={"fail_times": 99, "permanent": True}),
    ]
    async with emitter(rig.settings, rig.names) as em:
        eid = await start(rig.db, em, "transient", dag_)
        await wait_status(pg, eid, "failed", worker)
        await wait_for(
            lambda: pg.fetchval(
                "SELECT count(*) = 0 FROM pipeline_step WHERE execution_id = $1 "
                "AND status NOT IN ('succeeded', 'failed')",
                eid,
            ),
            what="every step finished",
        )
    s = await steps(pg, eid)
    assert (s["flaky"]["status"], s["flaky"]["attempt"]) == ("succeeded", 3)
    assert (s["hopeless"]["status"], s["hopeless"]["attempt"]) == ("failed", kind.max_attempts)
    assert (s["broken"]["status"], s["broken"]["attempt"]) == ("failed", 1)
    tries = await attempts(pg, eid)
    flaky = [r for r in tries if r["name"] == "flaky"]
    assert [r["status"] for r in flaky] == ["failed", "failed", "succeeded"]
    slack = dt.timedelta(milliseconds=50)  # the two timestamps come from one transaction
    for n, (prev, nxt) in enumerate(itertools.pairwise(flaky), start=1):
        backoff = dt.timedelta(seconds=kind.backoff_base_s * 2 ** (n - 1))
        assert nxt["started_at"] >= prev["finished_at"] + backoff - slack
    assert [r["status"] for r in tries if r["name"] == "broken"] == ["failed"]
    counters = dict(await pg.fetch("SELECT name, value FROM counter"))
    assert counters["steps_failed"] == 2
    assert counters["steps_retried"] == 2 + (kind.max_attempts - 1)


async def test_poison_messages_become_dead_letters(rig: Rig, pg: asyncpg.Connection) -> None:
    worker = rig.worker()
    async with emitter(rig.settings, rig.names) as em:
        producer = make_producer(rig.settings.kafka_url)
        await producer.start()
        try:
            await producer.send_and_wait(rig.names.step_results, b"\xff not json", key=b"1")
            await producer.send_and_wait(rig.names.step_requests, b'{"step": 3}', key=b"1:x")
        finally:
            await producer.stop()
        eid = await start(rig.db, em, "after-poison", [StepDef("a", "noop")])
        await wait_status(pg, eid, "succeeded", worker)
        await wait_for(
            lambda: pg.fetchval("SELECT count(*) = 2 FROM dead_letter"), what="2 dead letters"
        )
    rows = {r["topic"]: r for r in await pg.fetch("SELECT * FROM dead_letter")}
    assert "undecodable StepResult" in rows[rig.names.step_results]["error"]
    assert "undecodable StepRequest" in rows[rig.names.step_requests]["error"]
    assert rows[rig.names.step_requests]["payload"] == '{"step": 3}'
    assert await pg.fetchval("SELECT value FROM counter WHERE name = 'dead_lettered'") == 2
    assert await execution_status(pg, eid) == "succeeded"

    consumer = AIOKafkaConsumer(
        rig.names.dead_letter,
        bootstrap_servers=rig.settings.kafka_url,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        batch = await consumer.getmany(timeout_ms=5000)
        got = [m.value for msgs in batch.values() for m in msgs]
    finally:
        await consumer.stop()
    assert len(got) == 2
    assert all(b"undecodable" in v for v in got if v)
