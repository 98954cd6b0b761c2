"""Benchmark: diffing a card's file list against a large ``imported_file`` ledger.

Seeds 1,000,000 imported files, then diffs a 2,000-file list (half new) with the shipped
set-based query (storage.imports.diff_listing) and, as a baseline in the same run, with one
query per file. The cost of then recording the new files (one INSERT) is printed on its own
line. Each diff runs in a transaction that is rolled back, so every repetition sees the same
ledger.

    python -m benchmarks.ingest_diff [--rows N] [--list N] [--repeat N] [--rounds 5]

The two diffs are interleaved round by round (set then per-file, per-file then set, ...).
Last line: ingest_diff: rows=<n> list=<n> set_ms=<median> per_file_ms=<median> speedup=<x>
speedup_min=<a> speedup_max=<b> (one line; the speedup is each round's, its median and spread)
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from benchmarks._compare import Round, check_rounds, figure_spread, interleave, ratio_spread
from benchmarks._services import scratch_database
from storage import imports
from storage.db import make_engine
from storage.imports import ListedFile

CARD = "card-0007"
CARDS = 1000


async def seed(conn: AsyncConnection, rows: int) -> None:
    await conn.execute(
        text(
            "INSERT INTO imported_file (card_id, name, path, size, mtime_ms, kind, status, "
            "stored_path, content_hash, hash_algo, imported_at) "
            "SELECT 'card-' || lpad((g % :cards)::text, 4, '0'), "
            "'GX' || lpad(g::text, 8, '0') || '.MP4', "
            "'DCIM/100GOPRO/GX' || lpad(g::text, 8, '0') || '.MP4', "
            "400000000 + g, 1700000000000 + g * 1000, 'footage', 'imported', "
            "'cards/x/' || g, md5(g::text), 'xxh3_128', now() "
            "FROM generate_series(1, :rows) AS g"
        ),
        {"rows": rows, "cards": CARDS},
    )
    await conn.execute(text("ANALYZE imported_file"))


def listing(rows: int, size: int) -> list[ListedFile]:
    """Half of the list already in the ledger (on CARD), half new."""
    old = [g for g in range(7, rows + 1, CARDS)][: size // 2]
    files = [
        ListedFile(
            f"GX{g:08d}.MP4",
            f"DCIM/100GOPRO/GX{g:08d}.MP4",
            400_000_000 + g,
            1_700_000_000_000 + g * 1000,
            "footage",
        )
        for g in old
    ]
    for i in range(size - len(files)):
        g = rows + 1 + i
        files.append(
            ListedFile(
                f"GX{g:08d}.MP4",
                f"DCIM/100GOPRO/GX{g:08d}.MP4",
                400_000_000 + g,
                1_800_000_000_000 + i * 1000,
                "footage",
            )
        )
    return files


_ONE = text(
    "SELECT id, status FROM imported_file "
    "WHERE card_id = :c AND name = :n AND size = :s AND mtime_ms = :m"
)


async def per_file_diff(conn: AsyncConnection, files: list[ListedFile]) -> int:
    new = 0
    for f in files:
        row = (
            await conn.execute(_ONE, {"c": CARD, "n": f.name, "s": f.size, "m": f.mtime_ms})
        ).first()
        if row is None:
            new += 1
    return new


async def _timed_rolled_back(
    engine_url: str, repeat: int, run: Callable[[AsyncConnection], Awaitable[None]]
) -> list[float]:
    """Milliseconds of each of ``repeat`` runs of ``run``, each in a transaction rolled back."""
    engine = make_engine(engine_url, pool_size=1)
    out: list[float] = []
    try:
        async with engine.connect() as conn:
            for _ in range(repeat):
                tx = await conn.begin()
                t0 = time.perf_counter()
                await run(conn)
                out.append((time.perf_counter() - t0) * 1000)
                await tx.rollback()
    finally:
        await engine.dispose()
    return out


async def timed(
    engine_url: str, files: list[ListedFile], repeat: int, per_file: bool
) -> list[float]:
    found: list[int] = []

    async def diff(conn: AsyncConnection) -> None:
        if per_file:
            found.append(await per_file_diff(conn, files))
        else:
            _known, new_files = await imports.diff_listing(conn, CARD, files)
            found.append(len(new_files))

    out = await _timed_rolled_back(engine_url, repeat, diff)
    for new in found:
        assert new == len(files) - len(files) // 2, new
    return out


async def timed_record(engine_url: str, files: list[ListedFile], repeat: int) -> list[float]:
    """What ingest really runs per list: the diff plus one INSERT of the new files."""

    async def record(conn: AsyncConnection) -> None:
        await imports.record_listing(conn, CARD, "bench", files)

    return await _timed_rolled_back(engine_url, repeat, record)


async def seed_ledger(url: str, rows: int) -> None:
    engine = make_engine(url, pool_size=1)
    t0 = time.perf_counter()
    async with engine.begin() as conn:
        await seed(conn, rows)
    await engine.dispose()
    print(f"seeded {rows:,} imported files in {time.perf_counter() - t0:.1f}s")


def run(url: str, rows: int, size: int, repeat: int, rounds: int) -> str:
    """Set-based and per-file diffs interleaved round by round (benchmarks/_compare.py); each
    round's set figure is the median of ``repeat`` runs, its per-file one of ``repeat // 8``
    (at least 2); the speedup is per round. The database's caches are warm for both sides by
    design (a warm-up first): the ledger is what PostgreSQL keeps hot in production."""
    asyncio.run(seed_ledger(url, rows))
    files = listing(rows, size)
    asyncio.run(timed(url, files, 2, per_file=False))  # warm-up: plans, caches
    per_repeat = max(2, repeat // 8)

    def side(per_file: bool, n: int, key: str) -> dict[str, float]:
        return {key: statistics.median(asyncio.run(timed(url, files, n, per_file=per_file)))}

    def report(r: Round) -> None:
        f = r.figures
        print(
            f"round {r.index} ({' then '.join(r.order)}): set_ms={f['set_ms']:.2f} "
            f"per_file_ms={f['per_file_ms']:.2f} speedup={f['per_file_ms'] / f['set_ms']:.1f}",
            flush=True,
        )

    done = interleave(
        {
            "set": lambda: side(False, repeat, "set_ms"),
            "per_file": lambda: side(True, per_repeat, "per_file_ms"),
        },
        rounds,
        report=report,
    )
    rec_ms = asyncio.run(timed_record(url, files, max(3, repeat // 4)))
    s, p = figure_spread(done, "set_ms"), figure_spread(done, "per_file_ms")
    speedup = ratio_spread(done, "per_file_ms", "set_ms")
    print(f"set-based: median {s.median:.2f} ms  min {s.low:.2f}  max {s.high:.2f} (round medians)")
    print(
        f"recording the {size - size // 2} new files too (one more INSERT): median "
        f"{statistics.median(rec_ms):.2f} ms"
    )
    print(f"per-file:  median {p.median:.2f} ms  min {p.low:.2f}  max {p.high:.2f} (round medians)")
    return (
        f"ingest_diff: rows={rows} list={size} set_ms={s.median:.2f} "
        f"per_file_ms={p.median:.2f} speedup={speedup.median:.1f} "
        f"speedup_min={speedup.low:.1f} speedup_max={speedup.high:.1f}"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--list", type=int, default=2000, dest="size")
    parser.add_argument("--repeat", type=int, default=21, help="set-based runs per round")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (at least 3)")
    args = parser.parse_args(argv)
    try:
        check_rounds(args.rounds)
    except ValueError as exc:
        parser.error(str(exc))
    with scratch_database("skyreel_bench_ingest") as url:
        line = run(url, args.rows, args.size, args.repeat, args.rounds)
    print(line)


if __name__ == "__main__":
    main()
