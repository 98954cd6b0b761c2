"""REST latency of the hub while it is being abused (issue 14, red-team D4), against idle.

    python -m benchmarks.hub_abuse [--idle 5000] [--loris 500] [--progress-rate 5000]
                                   [--rounds 3] [--phase-s 10]

Runs `skyreel hub` as a child process (its descriptors and RSS are read from /proc) on a free
loopback port with its default connection limits, against a scratch PostgreSQL database, Redis
(SKYREEL_REDIS_URL, else the local one on 6379, else an embedded one) and Kafka
(SKYREEL_KAFKA_URL, else an embedded Tansu). Rounds alternate *idle* and *abuse* (idle first,
then abuse first, ...: benchmarks/_compare.py); in each, this
process sends ``GET /api/executions?limit=50`` once every 20 ms over one keep-alive connection,
like a dashboard, and records the latencies. During an abuse round an attacker process (so its
work does not slow the measuring loop) keeps, all on loopback:

- ``--idle`` idle TCP connections (from 127.1.x.y, 100 per source address, under the per-peer
  limit, so the overall limit is what holds them), each reopened a second after the hub closes
  it;
- ``--loris`` slow-loris clients (from 127.2.0.x) sending one header line a second, reopened
  likewise;
- one authenticated detector socket sending ``copy_progress`` frames for made-up request ids at
  ``--progress-rate`` frames per second.

The figures are the median over rounds of each round's p50/p95, the hub's most open descriptors
and its RSS growth from the end of warm-up to the most seen. The last line is:

    hub_abuse: idle_p95_ms=<a> abuse_p95_ms=<b> ratio=<b/a> open_fds_max=<n> rss_growth_mb=<m>
    ratio_min=<x> ratio_max=<y>

(one line; ratio_min/max: the spread of each round's abuse p95 over its idle p95).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import resource
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from multiprocessing.synchronize import Event as EventType
from pathlib import Path

import asyncpg
import httpx

from benchmarks._compare import side_order, spread
from benchmarks._services import CACHE, scratch_database
from storage.db import make_engine, make_sessionmaker, plain_url
from storage.detectors import register_detector
from streams.service_state import redis_answers
from streams.settings import Settings
from streams.stack.local import child_environ
from streams.stack.services import free_port

ROOT = Path(__file__).resolve().parent.parent
#: Loopback source addresses of the attackers (Linux routes all of 127.0.0.0/8 to lo).
IDLE_PER_SOURCE = 100
REQUEST_EVERY_S = 0.02
#: An attacker's connection the hub closed is opened again this long after (``--reopen-s``).
REOPEN_AFTER_S = 2.0
OPEN_AT_ONCE = 200
EXECUTIONS = 2_000


@dataclass(frozen=True)
class Attack:
    port: int
    token: str
    idle: int
    loris: int
    progress_rate: int
    reopen_s: float


def _raise_fd_limit() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def _source(network: str, i: int) -> str:
    """The loopback source address of attacker ``i``: IDLE_PER_SOURCE share one."""
    k = i // IDLE_PER_SOURCE
    return f"{network}.{k // 250}.{1 + k % 250}"


@dataclass
class _Opening:
    """Bounds the connections being opened at once; counts those opened."""

    gate: asyncio.Semaphore
    reopen_s: float
    opened: int = 0

    async def open(
        self, port: int, source: str
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        async with self.gate:
            pair = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
        self.opened += 1
        return pair


async def _hold_idle(port: int, source: str, opening: _Opening, stop: EventType) -> None:
    """One idle connection, reopened after the hub closes it."""
    while not stop.is_set():
        try:
            reader, writer = await opening.open(port, source)
            await reader.read()  # until the hub closes it
            writer.close()
        except OSError:
            pass
        await asyncio.sleep(opening.reopen_s)


async def _slow_loris(port: int, source: str, opening: _Opening, stop: EventType) -> None:
    """Request headers that never end, one line a second; reopened after each close."""
    while not stop.is_set():
        try:
            reader, writer = await opening.open(port, source)
            writer.write(b"GET /api/executions HTTP/1.1\r\nHost: hub\r\n")
            while not reader.at_eof() and not stop.is_set():
                await asyncio.sleep(1.0)
                writer.write(b"X-Slow: a\r\n")
                await writer.drain()
            writer.close()
        except OSError:
            pass
        await asyncio.sleep(opening.reopen_s)


async def _progress_flood(attack: Attack, stop: EventType, sent: list[int]) -> None:
    """copy_progress frames for made-up request ids from one authenticated detector."""
    from websockets.asyncio.client import connect
    from websockets.exceptions import WebSocketException

    url = f"ws://127.0.0.1:{attack.port}/ws/detector"
    headers = {"Authorization": f"Bearer {attack.token}"}
    batch = max(1, attack.progress_rate // 100)  # frames per 10 ms tick
    while not stop.is_set():
        try:
            async with connect(url, additional_headers=headers, open_timeout=10) as ws:
                await ws.recv()  # welcome
                n = 0
                while not stop.is_set():
                    for _ in range(batch):
                        n += 1
                        frame = {
                            "v": 1,
                            "type": "copy_progress",
                            "request_id": f"f{n % 1_000_000}",
                            "bytes_done": 1,
                            "bytes_total": 2,
                        }
                        await ws.send(json.dumps(frame))
                        sent[0] += 1
                    await asyncio.sleep(0.01)
        except (OSError, WebSocketException):
            await asyncio.sleep(attack.reopen_s)


async def _attack(attack: Attack, ready: EventType, stop: EventType) -> None:
    opening = _Opening(asyncio.Semaphore(OPEN_AT_ONCE), attack.reopen_s)
    sent = [0]
    tasks = [
        asyncio.create_task(_hold_idle(attack.port, _source("127.1", i), opening, stop))
        for i in range(attack.idle)
    ]
    tasks += [
        asyncio.create_task(_slow_loris(attack.port, _source("127.2", i), opening, stop))
        for i in range(attack.loris)
    ]
    if attack.progress_rate:
        tasks.append(asyncio.create_task(_progress_flood(attack, stop, sent)))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and (
        opening.opened < attack.idle + attack.loris or (attack.progress_rate and not sent[0])
    ):  # until the first wave is open and the flood runs
        await asyncio.sleep(0.1)
    print(f"  attacker: {opening.opened} connections opened, flood running", flush=True)
    ready.set()
    opened, t0 = opening.opened, time.monotonic()
    while not stop.is_set():
        await asyncio.sleep(0.1)
    rate = (opening.opened - opened) / (time.monotonic() - t0)
    print(f"  attacker: {rate:.0f} connections opened a second while measured", flush=True)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    print(f"  attacker: {sent[0]} progress frames sent", flush=True)


def attacker_main(attack: Attack, ready: EventType, stop: EventType) -> None:
    """The attacker process: its own loop and its own descriptors."""
    _raise_fd_limit()
    asyncio.run(_attack(attack, ready, stop))


class ProcWatch:
    """Samples a process's open descriptors and RSS from /proc every 0.2 s."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.fds_max = 0
        self.rss_max = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def fds(self) -> int:
        with contextlib.suppress(OSError):
            return len(os.listdir(f"/proc/{self.pid}/fd"))
        return 0

    def rss(self) -> int:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        return 0

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            self.fds_max = max(self.fds_max, self.fds())
            self.rss_max = max(self.rss_max, self.rss())

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


async def _latencies(client: httpx.AsyncClient, url: str, seconds: float) -> list[float]:
    out: list[float] = []
    failed = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        t0 = time.perf_counter()
        try:
            response = await client.get(url, timeout=10)
            response.raise_for_status()
            out.append((time.perf_counter() - t0) * 1000)
        except httpx.HTTPError:
            failed += 1
        await asyncio.sleep(REQUEST_EVERY_S)
    if failed:
        print(f"  {failed} request(s) failed", flush=True)
    return out


def _p95(ms: list[float]) -> float:
    ordered = sorted(ms)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]


async def _measure(port: int, phase_s: float, attack: Attack, rounds: int, watch: ProcWatch) -> str:
    url = f"http://127.0.0.1:{port}/api/executions?limit=50"
    ctx = multiprocessing.get_context("spawn")
    figures: dict[str, list[tuple[float, float]]] = {"idle": [], "abuse": []}
    async with httpx.AsyncClient() as client:
        await _latencies(client, url, 2.0)  # warm-up
        rss_start = watch.rss()
        for n in range(rounds):
            for kind in side_order(("idle", "abuse"), n):  # idle first, then abuse first, ...
                proc = None
                stop = ctx.Event()
                if kind == "abuse":
                    ready = ctx.Event()
                    proc = ctx.Process(target=attacker_main, args=(attack, ready, stop))
                    proc.start()
                    deadline = time.monotonic() + 60
                    while not ready.is_set() and time.monotonic() < deadline:
                        await _latencies(client, url, 0.5)  # keep polling, like a dashboard
                ms = await _latencies(client, url, phase_s)
                if proc is not None:
                    stop.set()
                    await asyncio.to_thread(proc.join, 30)
                    await asyncio.sleep(1.0)  # the hub sees the attacker's sockets close
                p50, p95 = statistics.median(ms), _p95(ms)
                figures[kind].append((p50, p95))
                print(
                    f"  round {n + 1} {kind:>5}: {len(ms)} requests, p50 {p50:.1f} ms, "
                    f"p95 {p95:.1f} ms, max {max(ms):.0f} ms, hub fds now {watch.fds()} "
                    f"(max {watch.fds_max})",
                    flush=True,
                )
        health = (await client.get(f"http://127.0.0.1:{port}/api/health")).json()
    print(f"  hub connection counters: {health.get('connections')}", flush=True)
    idle_p95 = statistics.median(p95 for _, p95 in figures["idle"])
    abuse_p95 = statistics.median(p95 for _, p95 in figures["abuse"])
    idle_p50 = statistics.median(p50 for p50, _ in figures["idle"])
    abuse_p50 = statistics.median(p50 for p50, _ in figures["abuse"])
    print(f"  p50: idle {idle_p50:.1f} ms, abuse {abuse_p50:.1f} ms", flush=True)
    growth = max(0, watch.rss_max - rss_start) / 1024**2
    ratio = spread(a[1] / i[1] for i, a in zip(figures["idle"], figures["abuse"], strict=True))
    return (
        f"hub_abuse: idle_p95_ms={idle_p95:.1f} abuse_p95_ms={abuse_p95:.1f} "
        f"ratio={abuse_p95 / idle_p95:.2f} open_fds_max={watch.fds_max} "
        f"rss_growth_mb={growth:.1f} ratio_min={ratio.low:.2f} ratio_max={ratio.high:.2f}"
    )


async def _seed(url: str) -> str:
    """Some executions to list, and the flooding detector's token."""
    conn = await asyncpg.connect(plain_url(url))
    try:
        await conn.execute(
            "INSERT INTO pipeline_execution (key, pipeline, subject_type, subject_id, status, "
            "context, created_at) SELECT 'bench:' || i, 'jump', 'session', 'card:' || i, "
            "'succeeded', '{}'::jsonb, now() - (i || ' minutes')::interval "
            "FROM generate_series(1, $1) i",
            EXECUTIONS,
        )
    finally:
        await conn.close()
    engine = make_engine(url)
    try:
        async with make_sessionmaker(engine)() as session, session.begin():
            return (await register_detector(session, "flooder", "flooder")).token
    finally:
        await engine.dispose()


@contextlib.contextmanager
def _services() -> Iterator[tuple[str, str]]:
    """(redis url, kafka bootstrap): the configured ones, else local or embedded ones."""
    from streams.stack.services import start_redis, start_tansu

    with contextlib.ExitStack() as stack:
        redis = os.environ.get("SKYREEL_REDIS_URL", "")
        if not redis and redis_answers("127.0.0.1", 6379):
            redis = "redis://127.0.0.1:6379/0"
        if not redis:
            svc = start_redis(CACHE / f"bench-abuse-redis-{os.getpid()}")
            stack.callback(svc.stop)
            redis = f"redis://{svc.address}/0"
        kafka = os.environ.get("SKYREEL_KAFKA_URL", "")
        if not kafka:
            tansu = start_tansu(CACHE / f"bench-abuse-tansu-{os.getpid()}")
            stack.callback(tansu.stop)
            kafka = tansu.address
        yield redis, kafka


def _wait_healthy(port: int, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the hub exited with {proc.returncode}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"http://127.0.0.1:{port}/api/health").status_code == 200:
                return
        time.sleep(0.2)
    raise SystemExit("the hub did not become healthy")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--idle", type=int, default=5000, help="idle TCP connections")
    parser.add_argument("--loris", type=int, default=500, help="slow-loris clients")
    parser.add_argument(
        "--progress-rate", type=int, default=5000, help="progress frames a second (0: none)"
    )
    parser.add_argument("--rounds", type=int, default=3, help="idle/abuse round pairs")
    parser.add_argument("--phase-s", type=float, default=10.0, help="seconds measured per phase")
    parser.add_argument(
        "--reopen-s", type=float, default=REOPEN_AFTER_S, help="attacker's pause before reopening"
    )
    args = parser.parse_args()
    _raise_fd_limit()
    prefix = f"abuse{uuid.uuid4().hex[:6]}"
    CACHE.mkdir(parents=True, exist_ok=True)
    with (
        scratch_database(f"skyreel_bench_abuse_{os.getpid()}") as db,
        _services() as (
            redis,
            kafka,
        ),
    ):
        token = asyncio.run(_seed(db))
        port = free_port()
        settings = Settings(
            database_url=db,
            redis_url=redis,
            kafka_url=kafka,
            kafka_local_tuning=not os.environ.get("SKYREEL_KAFKA_URL"),
            topic_prefix=prefix,
            hub_port=port,
            hub_id=f"{prefix}-hub",
            data_dir=CACHE / "bench-abuse",
            log_level="WARNING",
        )
        log_path = CACHE / f"{prefix}-hub.log"
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "streams.cli", "hub"],
                env=child_environ(settings),
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            watch = ProcWatch(proc.pid)
            try:
                _wait_healthy(port, proc)
                attack = Attack(
                    port, token, args.idle, args.loris, args.progress_rate, args.reopen_s
                )
                line = asyncio.run(_measure(port, args.phase_s, attack, args.rounds, watch))
            finally:
                watch.stop()
                proc.terminate()
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
        lines = log_path.read_text(errors="replace").splitlines()
        print(f"  hub log: {len(lines)} lines ({log_path})", flush=True)
        for text in lines[:20]:
            print(f"    {text}")
    print(line)


if __name__ == "__main__":
    main()
