"""Benchmark: a 10-jump SD card from insertion to the last finished video.

Runs the real system — hub, Faust worker, N render workers and a detector watching a folder —
on the configured services, else embedded ones (streams.stack.local.Stack). The card (agents/
demo_card.py, 10 readable jumps + an unreadable one + pre-QR footage; each jump a ~70 s synthetic
tandem jump with its telemetry) is written first, then "inserted" by moving it into the watched
folder; the clock runs until the last readable jump is published, edited (the `phases` step: the
edit is on by default). In the same run it measures an ideal: the time ``cp`` takes to copy the
card (with ``sync``) plus the render jobs' own FFmpeg seconds divided by the number of render
workers (the phase detection counts as overhead).

    python -m benchmarks.end_to_end [--jumps 10] [--workers 2]

Last line: end_to_end: jumps=<n> workers=<w> edited=<e> wall_s=<w> ideal_s=<i> ratio=<w/i>
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import asyncpg

from agents.demo_card import write_demo_card
from benchmarks._services import CACHE
from storage.db import plain_url
from streams.settings import Settings
from streams.stack.demo import _detector_token, demo_settings
from streams.stack.local import Stack, child_environ, default_children
from streams.stack.supervisor import ChildSpec, Supervisor


def cp_seconds(card: Path) -> float:
    dest = Path(tempfile.mkdtemp(prefix="e2e-cp-", dir=CACHE))
    t0 = time.perf_counter()
    subprocess.run(["cp", "-r", str(card), str(dest / "card")], check=True)
    subprocess.run(["sync"], check=True)
    took = time.perf_counter() - t0
    shutil.rmtree(dest, ignore_errors=True)
    return took


async def progress(url: str) -> tuple[int, float, int]:
    conn = await asyncpg.connect(plain_url(url))
    try:
        done = await conn.fetchval(
            "SELECT count(*) FROM pipeline_execution WHERE pipeline = 'jump' "
            "AND status = 'succeeded'"
        )
        rows = await conn.fetch(
            "SELECT output FROM pipeline_step WHERE name = 'render' AND status = 'succeeded'"
        )
        imported = await conn.fetchval(
            "SELECT count(*) FROM imported_file WHERE status = 'imported'"
        )
    finally:
        await conn.close()
    ffmpeg_s = 0.0
    for r in rows:
        out = r["output"]
        out = json.loads(out) if isinstance(out, str) else out
        ffmpeg_s += float(out.get("elapsed_s", 0.0))
    return int(done), ffmpeg_s, int(imported)


async def edited_jumps(url: str) -> int:
    """How many published jumps the `phases` step edited without a person."""
    conn = await asyncpg.connect(plain_url(url))
    try:
        return int(
            await conn.fetchval(
                "SELECT count(*) FROM pipeline_step s JOIN pipeline_execution e "
                "ON e.id = s.execution_id WHERE s.name = 'phases' AND s.status = 'succeeded' "
                "AND e.status = 'succeeded' AND (s.output->>'needs_review') = 'false'"
            )
        )
    finally:
        await conn.close()


async def breakdown(url: str) -> None:
    """Where the time went, from the pipeline's own timestamps (relative to the first listing)."""
    conn = await asyncpg.connect(plain_url(url))
    try:
        row = await conn.fetchrow(
            "SELECT min(first_listed_at) AS t0, "
            "(SELECT max(imported_at) FROM imported_file WHERE kind = 'qr_candidate') AS qr_in, "
            "(SELECT max(imported_at) FROM imported_file) AS all_in, "
            "(SELECT max(finished_at) FROM pipeline_step WHERE kind = 'qr') AS qr_done, "
            "(SELECT max(finished_at) FROM pipeline_step WHERE kind = 'group') AS grouped, "
            "(SELECT min(started_at) FROM pipeline_step WHERE kind = 'render') AS render1, "
            "(SELECT max(finished_at) FROM pipeline_step WHERE kind = 'publish') AS last "
            "FROM imported_file"
        )
    finally:
        await conn.close()
    t0 = row["t0"]
    parts = [
        f"{k}={(row[k] - t0).total_seconds():.1f}s"
        for k in ("qr_in", "qr_done", "grouped", "all_in", "render1", "last")
        if row[k]
    ]
    print("  after the listing: " + " ".join(parts), flush=True)


async def wait_health(port: int, timeout: float = 60) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient() as client:
        while time.monotonic() < deadline:
            try:
                if (await client.get(f"http://127.0.0.1:{port}/api/health")).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.2)
    raise RuntimeError("the hub did not become healthy")


def run(jumps: int, workers: int) -> str:
    from streams.stack.services import free_port

    CACHE.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="e2e-", dir=CACHE))
    env_urls = {
        k: os.environ.get(f"SKYREEL_{k.upper()}", "")
        for k in ("database_url", "redis_url", "kafka_url")
    }
    base = Settings(
        data_dir=work / "data",
        share_root=work / "data/share",
        output_dir=work / "data/output",
        hub_port=free_port(),
        topic_prefix=f"e2e{os.getpid()}",
        app_id=f"e2e{os.getpid()}",
        log_level="WARNING",
        **env_urls,
    )  # type: ignore[arg-type]
    staging = work / "staging" / "CARD-E2E"
    print(f"writing a {jumps}-jump card ...", flush=True)
    card = write_demo_card(staging, jumps)
    expected = len(card.readable_jumps)
    cp_s = cp_seconds(staging)
    stack = Stack(base)
    effective = demo_settings(stack.start())
    sup: Supervisor | None = None
    try:
        token = asyncio.run(_detector_token(effective.database_url))
        watched = work / "cards"
        watched.mkdir()
        detector = ChildSpec(
            "detector",
            (
                sys.executable,
                "-m",
                "detector",
                "--hub",
                f"ws://127.0.0.1:{effective.hub_port}/ws/detector",
                f"--token={token}",
                "--share",
                str(effective.share_root),
                "--watch",
                str(watched),
            ),
            "",
        )
        sup = Supervisor(
            [*default_children(workers), detector], child_environ(effective), log_dir=work / "logs"
        )
        sup.start_all()
        asyncio.run(wait_health(effective.hub_port))
        time.sleep(3)  # workers join their groups; the detector connects
        t0 = time.perf_counter()
        shutil.move(str(staging), str(watched / "CARD-E2E"))
        last = -1
        while True:
            sup.poll()
            done, ffmpeg_s, imported = asyncio.run(progress(effective.database_url))
            if done != last:
                print(
                    f"  {time.perf_counter() - t0:6.1f}s  files imported {imported}, "
                    f"jumps rendered {done}/{expected}",
                    flush=True,
                )
                last = done
            if done >= expected:
                break
            if time.perf_counter() - t0 > 900:
                raise RuntimeError(f"only {done}/{expected} jumps after 900 s; logs: {work}")
            time.sleep(0.25)
        wall = time.perf_counter() - t0
        asyncio.run(breakdown(effective.database_url))
        edited = asyncio.run(edited_jumps(effective.database_url))
    finally:
        if sup is not None:
            sup.stop_all()
        stack.stop()
    ideal = cp_s + ffmpeg_s / workers
    print(
        f"cp of the card: {cp_s:.2f}s; render jobs' FFmpeg time: {ffmpeg_s:.1f}s "
        f"over {workers} workers"
    )
    shutil.rmtree(work, ignore_errors=True)
    return (
        f"end_to_end: jumps={jumps} workers={workers} edited={edited} wall_s={wall:.1f} "
        f"ideal_s={ideal:.1f} ratio={wall / ideal:.2f}"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jumps", type=int, default=10)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    print(run(args.jumps, args.workers))


if __name__ == "__main__":
    main()
