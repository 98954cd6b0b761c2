"""Pipeline framework overhead: a 1,000-step DAG of no-op steps end to end.

    python -m benchmarks.pipeline_overhead [--steps 1000] [--runner-concurrency 4] [--trace]
        [--heap-settle-after-s 5]

One `root` step fans out to N-2 `n:<i>` steps, and a `join` step waits for all of them
(`depends_on=["n:*"]`). Everything is real: a `skyreel worker` subprocess, the Kafka-protocol
broker (embedded Tansu unless SKYREEL_KAFKA_URL is set) and a scratch PostgreSQL database. A
small warm-up execution runs first so the worker's start-up is not measured.

Figures: wall time from `start_execution` to the execution's `succeeded`, steps per second, and
ready-to-start latency per step (`started_at - ready_at`: from the orchestrator promoting a step
to a runner claiming it). The baseline to compare against is the goal in issue 5: >= 200 steps/s
and p50 < 50 ms on a 2-core machine. Last line:
`pipeline_overhead: steps=... wall_s=... steps_per_s=... p50_ready_to_start_ms=... p95_...`

`--trace` turns on the worker's latency trace (agents/pipeline/trace.py) and prints where the
fan-out's ready-to-start goes, part by part (p50/p95/max per step); see docs/architecture.md,
"Where the time goes". Issue 18's goal: p50 < 25 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg

from agents.pipeline.dispatch import Emitter
from agents.pipeline.handlers import default_handlers
from agents.pipeline.orchestrator import StepDef, start_execution
from benchmarks._pipeline_trace import breakdown
from benchmarks._services import CACHE, scratch_database
from storage.db import make_engine, plain_url
from streams.kafka import ensure_topics, make_producer
from streams.settings import Settings
from streams.topics import Names

ROOT = Path(__file__).resolve().parent.parent


@contextlib.contextmanager
def kafka() -> Iterator[tuple[str, bool]]:
    url = os.environ.get("SKYREEL_KAFKA_URL", "")
    if url:
        yield url, False
        return
    from streams.stack.services import start_tansu

    svc = start_tansu(CACHE / f"bench-tansu-{os.getpid()}")
    try:
        yield svc.address, True
    finally:
        svc.stop()


def fan_out_in(n: int) -> list[StepDef]:
    middle = [StepDef(f"n:{i:05d}", "noop", depends_on=("root",)) for i in range(n - 2)]
    return [StepDef("root", "noop"), *middle, StepDef("join", "noop", depends_on=("n:*",))]


def chain_of(n: int) -> list[StepDef]:
    return [
        StepDef(f"c:{i:03d}", "noop", depends_on=(f"c:{i - 1:03d}",) if i else ()) for i in range(n)
    ]


def worker_env(settings: Settings, concurrency: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SKYREEL_")}
    for name, value in settings.model_dump().items():
        if value is not None:
            text = value.get_secret_value() if hasattr(value, "get_secret_value") else value
            env[f"SKYREEL_{name.upper()}"] = (
                str(text).lower() if isinstance(text, bool) else str(text)
            )
    env["SKYREEL_RUNNER_CONCURRENCY"] = str(concurrency)
    env["SKYREEL_LOG_LEVEL"] = "WARNING"
    return env


async def wait_done(pg: asyncpg.Connection, eid: int, proc: subprocess.Popen[bytes]) -> None:
    while True:
        status = await pg.fetchval("SELECT status FROM pipeline_execution WHERE id = $1", eid)
        if status in ("succeeded", "failed", "cancelled"):
            if status != "succeeded":
                raise SystemExit(f"execution {eid} ended {status}")
            return
        if proc.poll() is not None:
            raise SystemExit(f"worker exited with {proc.returncode}")
        await asyncio.sleep(0.01)


async def timeline(pg: asyncpg.Connection, eid: int) -> str:
    """Where the fan-out's wall time goes: seconds from the root's start, per phase."""
    r = await pg.fetchrow(
        "SELECT min(started_at) FILTER (WHERE name = 'root') AS t0, "
        "max(finished_at) FILTER (WHERE name = 'root') AS root_done, "
        "min(started_at) FILTER (WHERE name LIKE 'n:%') AS first_start, "
        "max(started_at) FILTER (WHERE name LIKE 'n:%') AS last_start, "
        "max(finished_at) FILTER (WHERE name LIKE 'n:%') AS last_done, "
        "max(ready_at) FILTER (WHERE name = 'join') AS join_ready, "
        "max(finished_at) FILTER (WHERE name = 'join') AS join_done "
        "FROM pipeline_step WHERE execution_id = $1",
        eid,
    )
    t0 = r["t0"]
    parts = ("root_done", "first_start", "last_start", "last_done", "join_ready", "join_done")
    return "timeline (s after the root started): " + " ".join(
        f"{k}={(r[k] - t0).total_seconds():.3f}" for k in parts
    )


async def measure(
    settings: Settings,
    names: Names,
    n: int,
    proc: subprocess.Popen[bytes],
    trace: Path | None = None,
    settle_after_s: float = 0.0,
) -> str:
    await ensure_topics(settings.kafka_url, names.source_topics(), settings.topic_partitions)
    engine = make_engine(settings.database_url, pool_size=2)
    producer = make_producer(settings.kafka_url)
    await producer.start()
    pg = await asyncpg.connect(plain_url(settings.database_url))
    registry = default_handlers().registry

    async def send(key: bytes, value: bytes) -> object:
        return await producer.send(names.step_requests, value=value, key=key)

    async def run(key: str, steps: list[StepDef]) -> int:
        return await start_execution(
            engine,
            Emitter(send),
            registry,
            key=key,
            pipeline="bench",
            subject_type="bench",
            subject_id=key,
            steps=steps,
        )

    try:
        warm = await run("warm-up", fan_out_in(12))
        await wait_done(pg, warm, proc)
        # measure the worker as it runs all day: after it has settled its heap (agents/heap.py;
        # its timer began when the worker started, before the warm-up could finish)
        await asyncio.sleep(settle_after_s)
        t0 = time.perf_counter()
        eid = await run("bench", fan_out_in(n))
        await wait_done(pg, eid, proc)
        wall = time.perf_counter() - t0
        lat = await pg.fetch(
            "SELECT extract(epoch FROM started_at - ready_at) * 1000 AS ms FROM pipeline_step "
            "WHERE execution_id = $1",
            eid,
        )
        if trace is not None:
            rows = await pg.fetch(
                "SELECT name, extract(epoch FROM ready_at) AS ready, "
                "extract(epoch FROM started_at) AS started FROM pipeline_step "
                "WHERE execution_id = $1",
                eid,
            )
            db = {r["name"]: (float(r["ready"]), float(r["started"])) for r in rows}
            for line in breakdown(trace, eid, db):
                print(line)
        print(await timeline(pg, eid))
        # The fan-out makes 998 steps ready at one instant, so its ready-to-start mostly
        # measures queueing behind them; a chain shows the framework's latency per hop.
        chain = await run("chain", chain_of(50))
        await wait_done(pg, chain, proc)
        hops = sorted(
            float(r["ms"])
            for r in await pg.fetch(
                "SELECT extract(epoch FROM started_at - ready_at) * 1000 AS ms "
                "FROM pipeline_step WHERE execution_id = $1",
                chain,
            )
        )
        print(
            f"50-step chain: ready-to-start p50 {statistics.median(hops):.1f} ms, "
            f"max {hops[-1]:.1f} ms (one step ready at a time)"
        )
    finally:
        await pg.close()
        await producer.stop()
        await engine.dispose()
    ms = sorted(float(r["ms"]) for r in lat)
    p50 = statistics.median(ms)
    p95 = ms[min(len(ms) - 1, int(len(ms) * 0.95))]
    print(f"steps: {len(ms)}; ready-to-start min {ms[0]:.1f} ms, max {ms[-1]:.1f} ms")
    return (
        f"pipeline_overhead: steps={len(ms)} wall_s={wall:.2f} steps_per_s={len(ms) / wall:.0f} "
        f"p50_ready_to_start_ms={p50:.1f} p95_ready_to_start_ms={p95:.1f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--runner-concurrency", type=int, default=4)
    parser.add_argument("--trace", action="store_true", help="print where the time goes")
    parser.add_argument(
        "--heap-settle-after-s",
        type=float,
        default=Settings().heap_settle_after_s,
        help="the worker's SKYREEL_HEAP_SETTLE_AFTER_S (-1: never, to see what it saves); "
        "measuring starts once it has passed",
    )
    args = parser.parse_args()
    prefix = f"bench{uuid.uuid4().hex[:6]}"
    with scratch_database(f"skyreel_bench_pipeline_{os.getpid()}") as db, kafka() as (url, local):
        settings = Settings(
            database_url=db,
            kafka_url=url,
            kafka_local_tuning=local,
            topic_prefix=prefix,
            app_id=f"{prefix}-app",
            data_dir=CACHE / "bench-pipeline",
        )
        log = (CACHE / f"{prefix}-worker.log").open("wb")
        env = worker_env(settings, args.runner_concurrency)
        trace = CACHE / f"{prefix}-trace.jsonl" if args.trace else None
        if trace is not None:
            env["SKYREEL_PIPELINE_TRACE"] = str(trace)
        env["SKYREEL_HEAP_SETTLE_AFTER_S"] = str(args.heap_settle_after_s)
        settle_after_s = max(0.0, args.heap_settle_after_s) + 1.0
        proc = subprocess.Popen(
            [sys.executable, "-m", "streams.cli", "worker"],
            env=env,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            line = asyncio.run(
                measure(settings, Names(prefix), args.steps, proc, trace, settle_after_s)
            )
        finally:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
            log.close()
    print(line)


if __name__ == "__main__":
    main()
