"""Benchmark: how long `skyreel run` takes to finish every jump after a service is SIGKILLed.

For each fault it starts ``skyreel run --jumps N`` on a fresh embedded stack (its own data dir and
ports), waits for the fault's point, SIGKILLs the service, and measures the seconds from the
service being back (the supervisor's "is back" line: the fault's end) to the last video. Then it
counts what a fault must never cause: a readable jump that was not rendered (lost) and a jump
with more than one output or a render that succeeded twice (duplicated). The demo card's jumps
carry telemetry and the edit is on by default: each line also says how many were edited.

    python -m benchmarks.fault_recovery [--jumps 2] [--faults database,broker,redis]

One line per fault, then:
fault_recovery: faults=<n> recovered=<n> lost=0 duplicated=0 max_recover_s=<s> median_recover_s=<s>
Goal (issue 12): all recovered, nothing lost or duplicated, max under 60 s.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import psutil

from agents.demo_card import DemoCard, write_demo_card
from benchmarks._services import CACHE
from streams.stack.services import free_port

ROOT = Path(__file__).resolve().parent.parent
PROCESS = {"database": "postgres", "broker": "tansu", "redis": "redis-server"}
# what "the fault's point" is for each service
POINT_SQL = {
    "database": "SELECT count(*) > 0 FROM imported_file WHERE status = 'imported'",
    "broker": "SELECT count(*) > 0 FROM imported_file WHERE status = 'imported'",
    "redis": "SELECT count(*) > 0 FROM pipeline_step WHERE name = 'render' AND status = 'running'",
}
REVIEW = (
    "SELECT execution_id FROM jump_session WHERE status IN ('needs_review', 'unassigned') "
    "AND execution_id IS NOT NULL"
)


@dataclass
class Outcome:
    fault: str
    recovered: bool
    recover_s: float
    lost: int
    duplicated: int


class Run:
    def __init__(self, data: Path, jumps: int) -> None:
        self.data = data
        self.jumps = jumps
        self.ports = {name: free_port() for name in ("postgres", "redis", "kafka")}
        for name, port in self.ports.items():
            (data / f"{name}.port").write_text(f"{port}\n")
        self.card: DemoCard = write_demo_card(
            data / "demo" / "cards" / "CARD-DEMO",
            jumps,
            footage_seconds=1.5,
            qr_seconds=1.5,
            size=(320, 180),
        )
        self.log = data / "bench-run.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("SKYREEL_")}
        env |= {
            "SKYREEL_DATA_DIR": str(data),
            "SKYREEL_HUB_PORT": str(free_port()),
            "SKYREEL_RENDER_WIDTH": "320",
            "SKYREEL_RENDER_HEIGHT": "180",
            "SKYREEL_RENDER_FPS": "15",
            "SKYREEL_RENDER_PRESET": "ultrafast",
            "SKYREEL_RECONCILE_INTERVAL_S": "5",
            "PYTHONUNBUFFERED": "1",
        }
        with self.log.open("ab") as fh:
            self.popen = subprocess.Popen(
                [sys.executable, "-m", "streams.cli", "run", "--jumps", str(jumps)],
                stdout=fh,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=ROOT,
                start_new_session=True,
            )

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.ports['postgres']}/skyreel"

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    async def scalar(self, sql: str) -> Any:
        try:
            conn = await asyncpg.connect(self.url, timeout=5)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            return None
        try:
            return await conn.fetchval(sql)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            return None
        finally:
            await conn.close()

    def service_pid(self, fault: str) -> int | None:
        for child in psutil.Process(self.popen.pid).children():
            if child.name().startswith(PROCESS[fault]) and child.status() != "zombie":
                return child.pid
        return None

    async def until(self, check: object, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                return False
            if callable(check):
                ok = check()
                ok = await ok if asyncio.iscoroutine(ok) else ok
                if ok:
                    return True
            await asyncio.sleep(0.1)
        return False

    async def finished(self) -> bool:
        done = await self.scalar(
            "SELECT count(*) FROM pipeline_execution WHERE pipeline = 'jump' "
            "AND status = 'succeeded'"
        )
        busy = await self.scalar(
            "SELECT count(*) FROM pipeline_step s JOIN pipeline_execution e "
            "ON e.id = s.execution_id WHERE s.status IN ('pending', 'ready', 'running') "
            f"AND e.id NOT IN ({REVIEW})"
        )
        return done == len(self.card.readable_jumps) and busy == 0

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(90)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(30)


def _data_dir(fault: str) -> Path:
    data = Path(tempfile.mkdtemp(prefix=f"fault-{fault}-", dir=CACHE))
    data.chmod(0o755)  # embedded PostgreSQL runs as an unprivileged user when we are root
    return data


async def one_fault(fault: str, jumps: int, timeout: float) -> Outcome:
    data = await asyncio.to_thread(_data_dir, fault)
    run = await asyncio.to_thread(Run, data, jumps)  # writes the card: not on the loop
    try:
        up = await run.until(lambda: "skyreel is up" in run.output(), 240)
        point = up and await run.until(lambda: run.scalar(POINT_SQL[fault]), 240)
        pid = run.service_pid(fault) if point else None
        if pid is None:
            print(f"fault {fault}: never reached its point\n{run.output()[-3000:]}")
            return Outcome(fault, False, float("nan"), len(run.card.readable_jumps), 0)
        os.kill(pid, signal.SIGKILL)
        back_line = re.compile(rf"{fault} is back on \S+ after ([0-9.]+)s")
        if not await run.until(lambda: back_line.search(run.output()), 120):
            print(f"fault {fault}: the service never came back\n{run.output()[-3000:]}")
            return Outcome(fault, False, float("nan"), len(run.card.readable_jumps), 0)
        back = time.monotonic()
        recovered = await run.until(run.finished, timeout)
        recover_s = time.monotonic() - back
        done = int(
            await run.scalar(
                "SELECT count(*) FROM pipeline_execution WHERE pipeline = 'jump' "
                "AND status = 'succeeded'"
            )
            or 0
        )
        twice = int(
            await run.scalar(
                "SELECT count(*) FROM (SELECT step_id FROM pipeline_step_attempt a "
                "JOIN pipeline_step s ON s.id = a.step_id WHERE s.name = 'render' "
                "AND a.status = 'succeeded' GROUP BY step_id HAVING count(*) > 1) d"
            )
            or 0
        )
        edited = await run.scalar(
            "SELECT count(*) FROM pipeline_step s JOIN pipeline_execution e "
            "ON e.id = s.execution_id WHERE s.name = 'phases' AND s.status = 'succeeded' "
            "AND e.status = 'succeeded' AND (s.output->>'needs_review') = 'false'"
        )
        videos = len(list((data / "output").glob("*/*.mp4")))
        lost = max(0, len(run.card.readable_jumps) - done)
        duplicated = twice + max(0, videos - len(run.card.readable_jumps))
        print(
            f"fault {fault}: back_after_kill_s={back_line.findall(run.output())[-1]} "
            f"recover_s={recover_s:.1f} rendered={done}/{len(run.card.readable_jumps)} "
            f"edited={edited} duplicated={duplicated}",
            flush=True,
        )
        return Outcome(fault, recovered, recover_s, lost, duplicated)
    finally:
        run.stop()
        shutil.rmtree(data, ignore_errors=True)


async def main_async(faults: list[str], jumps: int, timeout: float) -> list[Outcome]:
    return [await one_fault(f, jumps, timeout) for f in faults]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jumps", type=int, default=2)
    parser.add_argument("--faults", default="database,broker,redis")
    parser.add_argument("--timeout", type=float, default=240, help="seconds to recover")
    args = parser.parse_args(argv)
    faults = [f.strip() for f in args.faults.split(",") if f.strip()]
    unknown = sorted(set(faults) - set(PROCESS))
    if unknown:
        parser.error(f"unknown fault(s) {unknown}; choose from {sorted(PROCESS)}")
    CACHE.mkdir(parents=True, exist_ok=True)
    outcomes = asyncio.run(main_async(faults, args.jumps, args.timeout))
    times = [o.recover_s for o in outcomes if o.recovered]
    print(
        f"fault_recovery: faults={len(outcomes)} "
        f"recovered={sum(o.recovered for o in outcomes)} "
        f"lost={sum(o.lost for o in outcomes)} "
        f"duplicated={sum(o.duplicated for o in outcomes)} "
        f"max_recover_s={max(times) if times else float('nan'):.1f} "
        f"median_recover_s={statistics.median(times) if times else float('nan'):.1f}"
    )


if __name__ == "__main__":
    main()
