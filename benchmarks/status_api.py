"""Status API latency with 10,000 executions / 100,000 steps in PostgreSQL.

    python -m benchmarks.status_api [--requests 500] [--concurrency 8]

Seeds a scratch database, serves the status API routes (the same `StatusApi` the hub mounts;
only PostgreSQL is opened, since these two endpoints read nothing else) with uvicorn in a child
process on a free loopback port, and measures from this process with httpx: executions list
pages (newest first, some with a status filter, some deeper by cursor) and single-execution
details (10 steps each, with their attempts and DAG edges). The last line is:

    status_api: executions=10000 list_p50_ms=<a> list_p95_ms=<b> detail_p50_ms=<c> rps=<r>
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import httpx

from benchmarks._services import scratch_database
from storage.db import plain_url

EXECUTIONS = 10_000
STEPS_PER_EXECUTION = 10
ROOT = Path(__file__).resolve().parent.parent


async def seed(url: str) -> None:
    """10,000 executions with 10 steps each (a DAG: probes, then render after probe:*)."""
    conn = await asyncpg.connect(plain_url(url))
    try:
        await conn.execute(
            "INSERT INTO pipeline_execution (key, pipeline, subject_type, subject_id, status, "
            "context, created_at) SELECT 'bench:' || i, CASE WHEN i % 3 = 0 THEN 'card_import' "
            "ELSE 'jump' END, 'session', 'card-' || (i % 50) || ':' || i, "
            "(ARRAY['succeeded','succeeded','running','failed','waiting'])[1 + i % 5], "
            "jsonb_build_object('booking_id', 'BK' || i), "
            "now() - (i || ' minutes')::interval FROM generate_series(1, $1) i",
            EXECUTIONS,
        )
        await conn.execute(
            "INSERT INTO pipeline_step (execution_id, name, kind, depends_on, status, attempt, "
            "progress, started_at, finished_at) "
            "SELECT e.id, CASE WHEN s < $1 THEN 'probe:' || s ELSE 'render' END, "
            "CASE WHEN s < $1 THEN 'probe' ELSE 'render' END, "
            "CASE WHEN s < $1 THEN '{}'::text[] ELSE ARRAY['probe:*'] END, "
            "CASE WHEN e.status = 'running' AND s = $1 THEN 'running' "
            "     WHEN e.status = 'failed' AND s = $1 THEN 'failed' "
            "     WHEN e.status = 'waiting' AND s = $1 THEN 'pending' ELSE 'succeeded' END, "
            "1, CASE WHEN s = $1 THEN random() END, e.created_at, e.created_at + interval '1 min' "
            "FROM pipeline_execution e, generate_series(1, $1) s",
            STEPS_PER_EXECUTION,
        )
        await conn.execute(
            "INSERT INTO pipeline_step_attempt (step_id, attempt, status, started_at, finished_at) "
            "SELECT id, 1, status, started_at, finished_at FROM pipeline_step"
        )
        await conn.execute("ANALYZE")
    finally:
        await conn.close()


def serve_child(url: str, port: int) -> None:
    """The child: the status API routes under uvicorn, with only the database opened."""
    import uvicorn
    from starlette.applications import Starlette

    from storage.db import make_engine
    from streams.hub.api import StatusApi
    from streams.settings import Settings
    from streams.topics import Names

    @dataclass
    class Runtime:
        engine: object = None
        redis: object = None
        producer: object = None
        gateway: object = None
        extra: dict[str, object] = field(default_factory=dict)

    settings = Settings(database_url=url, redis_url="-", kafka_url="-")
    rt = Runtime()
    api = StatusApi(settings, Names(settings.topic_prefix), "bench", rt)  # type: ignore[arg-type]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        rt.engine = make_engine(url)
        yield
        await rt.engine.dispose()  # type: ignore[attr-defined]

    app = Starlette(routes=api.routes(), lifespan=lifespan)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def measure(
    base: str, requests: int, concurrency: int
) -> tuple[list[float], list[float], float]:
    rng = random.Random(7)
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        first = (await client.get("/api/executions?limit=50")).json()
        cursor_pool = [first["next_cursor"]]
        jobs: list[tuple[str, str]] = []
        for i in range(requests):
            kind = i % 4
            if kind == 0:
                url = "/api/executions?limit=50"
            elif kind == 1:
                url = "/api/executions?limit=50&status=" + rng.choice(
                    ["running", "failed", "succeeded"]
                )
            elif kind == 2:
                url = f"/api/executions?limit=50&cursor={rng.randint(100, EXECUTIONS)}"
            else:
                booking = f"BK{rng.randint(1, EXECUTIONS)}"
                url = f"/api/executions?limit=50&cursor={cursor_pool[0]}&booking={booking}"
            jobs.append(("list", url))
            jobs.append(("detail", f"/api/executions/{rng.randint(1, EXECUTIONS)}"))
        rng.shuffle(jobs)
        times: dict[str, list[float]] = {"list": [], "detail": []}
        queue: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
        for job in jobs:
            queue.put_nowait(job)

        async def worker() -> None:
            while not queue.empty():
                kind, url = queue.get_nowait()
                t0 = time.perf_counter()
                r = await client.get(url)
                times[kind].append((time.perf_counter() - t0) * 1000)
                if r.status_code != 200:
                    raise RuntimeError(f"{url}: {r.status_code} {r.text[:200]}")

        for _ in range(20):  # warm up connections and the pool
            await client.get("/api/executions?limit=50")
        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return times["list"], times["detail"], len(jobs) / elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--requests", type=int, default=500, help="list requests (and as many details)"
    )
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--serve", nargs=2, metavar=("URL", "PORT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve_child(args.serve[0], int(args.serve[1]))
        return 0
    with scratch_database("skyreel_bench_status_api") as url:
        t0 = time.perf_counter()
        asyncio.run(seed(url))
        print(
            f"seeded {EXECUTIONS} executions / {EXECUTIONS * STEPS_PER_EXECUTION} steps "
            f"in {time.perf_counter() - t0:.1f} s"
        )
        port = _free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("SKYREEL_")}
        child = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.status_api", "--serve", url, str(port)],
            cwd=ROOT,
            env=env,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    if httpx.get(f"{base}/api/executions?limit=1").status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline or child.poll() is not None:
                    raise RuntimeError("the API server did not start")
                time.sleep(0.1)
            lists, details, rps = asyncio.run(measure(base, args.requests, args.concurrency))
        finally:
            child.terminate()
            child.wait(10)
    print(
        f"list   n={len(lists)} p50={statistics.median(lists):.1f} ms "
        f"p95={_pct(lists, 0.95):.1f} ms"
    )
    print(
        f"detail n={len(details)} p50={statistics.median(details):.1f} ms "
        f"p95={_pct(details, 0.95):.1f} ms (concurrency {args.concurrency})"
    )
    print(
        f"status_api: executions={EXECUTIONS} list_p50_ms={statistics.median(lists):.1f} "
        f"list_p95_ms={_pct(lists, 0.95):.1f} detail_p50_ms={statistics.median(details):.1f} "
        f"rps={rps:.0f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
