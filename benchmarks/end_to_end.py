"""Benchmark: a 10-jump SD card from insertion to the last finished video.

Runs the real system — hub, Faust worker, N render workers and a detector watching a folder —
on the configured services, else embedded ones (streams.stack.local.Stack). The card (agents/
demo_card.py, 10 readable jumps + an unreadable one + pre-QR footage; each jump a ~70 s synthetic
tandem jump with its telemetry) is written first, then "inserted" by moving it into the watched
folder; the clock runs until the last readable jump is published, edited (the `phases` step: the
edit is on by default). In the same run it measures an ideal: the time ``cp`` takes to copy the
card (with ``sync``) plus the render jobs' own FFmpeg seconds divided by the number of render
workers (the phase detection counts as overhead).

    python -m benchmarks.end_to_end [--jumps 10] [--workers 2] [--rounds 3]

The ``cp`` and the system runs are interleaved round by round (benchmarks/_compare.py: cp then
system, system then cp, ...), each system run on a fresh stack (its own data dir; a configured
PostgreSQL gets a fresh database per round), the page cache dropped before every run; each
round's ratio is its wall time over its own ideal.

Last line: end_to_end: jumps=<n> workers=<w> edited=<e> wall_s=<w> ideal_s=<i> ratio=<w/i>
ratio_min=<a> ratio_max=<b> rounds=<k> (one line; medians over the rounds, edited the fewest)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg

from agents.demo_card import write_demo_card
from benchmarks._compare import (
    CacheMethod,
    Round,
    drop_cache,
    figure_spread,
    interleave,
    spread,
    weakest,
)
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
    copied = [str(p) for p in (dest / "card").rglob("*")]
    subprocess.run(["sync", *copied, str(dest / "card")], check=True)  # these files, not all
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


def _base_settings(work: Path, tag: str) -> Settings:
    from streams.stack.services import free_port

    env_urls = {
        k: os.environ.get(f"SKYREEL_{k.upper()}", "")
        for k in ("database_url", "redis_url", "kafka_url")
    }
    return Settings(
        data_dir=work / "data",
        share_root=work / "data/share",
        output_dir=work / "data/output",
        hub_port=free_port(),
        topic_prefix=f"e2e{os.getpid()}{tag}",
        app_id=f"e2e{os.getpid()}{tag}",
        log_level="WARNING",
        **env_urls,
    )  # type: ignore[arg-type]


@contextlib.contextmanager
def _round_database(tag: str) -> Iterator[dict[str, str]]:
    """A configured PostgreSQL gets a fresh database per round (the stack migrates it); an
    embedded one is fresh anyway (a new data dir each round)."""
    if not os.environ.get("SKYREEL_DATABASE_URL"):
        yield {}
        return
    from benchmarks._services import new_database, postgres_admin_url

    with (
        postgres_admin_url() as admin,
        new_database(admin, f"skyreel_bench_e2e_{os.getpid()}_{tag}", migrate=False) as url,
    ):
        yield {"database_url": url}


def run_system(template: Path, expected: int, workers: int, tag: str) -> dict[str, float]:
    """One run of the real system on a fresh stack: the card inserted, the clock stopped at the
    last published jump. Returns wall_s, the render jobs' FFmpeg seconds and the edited count."""
    work = Path(tempfile.mkdtemp(prefix=f"e2e-{tag}-", dir=CACHE))
    staging = work / "staging" / f"CARD-E2E-{tag}"
    shutil.copytree(template, staging)
    sup: Supervisor | None = None
    with _round_database(tag) as db:
        stack = Stack(_base_settings(work, tag).model_copy(update=db))
        effective = demo_settings(stack.start())
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
                [*default_children(workers), detector],
                child_environ(effective),
                log_dir=work / "logs",
            )
            sup.start_all()
            asyncio.run(wait_health(effective.hub_port))
            time.sleep(3)  # workers join their groups; the detector connects
            drop_cache([staging])  # the detector reads the card cold, as cp does
            t0 = time.perf_counter()
            shutil.move(str(staging), str(watched / staging.name))
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
    shutil.rmtree(work, ignore_errors=True)
    return {"wall_s": wall, "ffmpeg_s": ffmpeg_s, "edited": float(edited)}


def run(jumps: int, workers: int, rounds: int = 3) -> str:
    CACHE.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="e2e-", dir=CACHE))
    template = work / "card"
    print(f"writing a {jumps}-jump card ...", flush=True)
    card = write_demo_card(template, jumps)
    expected = len(card.readable_jumps)
    methods: list[CacheMethod] = []

    def ideal(r: Round) -> float:
        return r.figures["cp_s"] + r.figures["ffmpeg_s"] / workers

    def report(r: Round) -> None:
        f = r.figures
        print(
            f"round {r.index} ({' then '.join(r.order)}): cp_s={f['cp_s']:.2f} "
            f"ffmpeg_s={f['ffmpeg_s']:.1f} wall_s={f['wall_s']:.1f} ideal_s={ideal(r):.1f} "
            f"ratio={f['wall_s'] / ideal(r):.2f}",
            flush=True,
        )

    tags = iter(range(1, rounds + 1))
    try:
        done = interleave(
            {
                "cp": lambda: {"cp_s": cp_seconds(template)},
                "system": lambda: run_system(template, expected, workers, f"r{next(tags)}"),
            },
            rounds,
            before=lambda _side: methods.append(drop_cache([template])),
            report=report,
            minimum=1,
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    ratio = spread(r.figures["wall_s"] / ideal(r) for r in done)
    wall = figure_spread(done, "wall_s")
    ideal_s = spread(ideal(r) for r in done)
    edited = min(int(r.figures["edited"]) for r in done)
    print(f"page cache: method={weakest(methods)} (dropped before every cp and every insertion)")
    return (
        f"end_to_end: jumps={jumps} workers={workers} edited={edited} wall_s={wall.median:.1f} "
        f"ideal_s={ideal_s.median:.1f} ratio={ratio.median:.2f} "
        f"ratio_min={ratio.low:.2f} ratio_max={ratio.high:.2f} rounds={len(done)}"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jumps", type=int, default=10)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved cp / system rounds")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1 (3 or more for a comparison)")
    print(run(args.jumps, args.workers, args.rounds))


if __name__ == "__main__":
    main()
