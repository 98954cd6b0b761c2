"""Fault suite, services: `skyreel run --jumps 2` on its own embedded PostgreSQL, Redis and Tansu;
one service is SIGKILLed at a defined point, and the run must bring it back by itself (same data
dir, same port) and end exactly where a run without the fault ends:

- every readable jump of the card edited without a person (the edit is on by default) and
  rendered exactly once (video duration = intro + the jump's edit);
- every listed footage file imported;
- no execution left running or waiting, except the demo's deliberate review sessions (the
  unreadable ticket and the camera check before the first ticket);
- no orphan in the render staging folder, no dead letter.

On a failure the test prints what is stuck (steps not succeeded, their logs, the run's log).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import av
import httpx
import psutil
import pytest
from support import wait_for
from system.dropzone import assert_edited

from agents.demo_card import DemoCard, write_demo_card
from streams.stack.services import free_port

pytestmark = [pytest.mark.slow, pytest.mark.timeout(420)]

ROOT = Path(__file__).resolve().parents[2]
JUMPS = 2
REVIEW_SESSIONS = 2  # the unreadable ticket's jump and the footage before the first ticket
UP = "skyreel is up"
#: The review sessions' executions: they wait for a person on purpose.
REVIEW_EXECUTIONS = (
    "SELECT execution_id FROM jump_session WHERE status IN ('needs_review', 'unassigned') "
    "AND execution_id IS NOT NULL"
)
PROCESS_NAMES = {"database": "postgres", "broker": "tansu", "redis": "redis-server"}


@dataclass
class DemoRun:
    """One ``python -m streams.cli run --jumps 2`` on a pinned data dir, output in a file."""

    popen: subprocess.Popen[bytes]
    log: Path
    data_dir: Path
    card: DemoCard
    hub_port: int
    pg_port: int

    @property
    def db_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.pg_port}/skyreel"

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def child_logs(self) -> str:
        parts = []
        for path in sorted((self.data_dir / "logs").glob("*.log")):
            text = path.read_text(errors="replace")
            parts.append(f"----- {path.name}\n{text[-3000:]}")
        return "\n".join(parts)

    def service_pid(self, label: str) -> int:
        """The pid of an embedded service: a direct child of the run with that name."""
        for child in psutil.Process(self.popen.pid).children():
            name = child.name()
            if name.startswith(PROCESS_NAMES[label]) and child.status() != psutil.STATUS_ZOMBIE:
                return child.pid
        raise AssertionError(f"no {label} process under the run:\n{self.output()}")

    async def wait_up(self, timeout: float = 180) -> None:
        def up() -> bool:
            if self.popen.poll() is not None:
                raise AssertionError(f"run exited {self.popen.returncode}:\n{self.output()}")
            return UP in self.output()

        await wait_for(up, timeout=timeout, interval=0.5, what="skyreel run to come up")

    def stop(self) -> int:
        self.popen.send_signal(signal.SIGTERM)
        try:
            return self.popen.wait(90)
        except subprocess.TimeoutExpired:
            os.killpg(self.popen.pid, signal.SIGKILL)
            raise


@pytest.fixture
def demo_run(embedded_data_dir: Path, tmp_path: Path) -> Iterator[Callable[[], DemoRun]]:
    runs: list[DemoRun] = []

    def start() -> DemoRun:
        data = embedded_data_dir
        data.mkdir(parents=True, exist_ok=True)
        ports = {name: free_port() for name in ("postgres", "redis", "kafka")}
        for name, port in ports.items():  # no race with parallel runs for the defaults
            (data / f"{name}.port").write_text(f"{port}\n")
        # A small card written beforehand: the demo reuses it (small, fast renders).
        card = write_demo_card(
            data / "demo" / "cards" / "CARD-DEMO",
            JUMPS,
            footage_seconds=1.5,
            qr_seconds=1.5,
            size=(320, 180),
        )
        hub_port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("SKYREEL_")}
        env |= {
            "SKYREEL_DATA_DIR": str(data),
            "SKYREEL_HUB_PORT": str(hub_port),
            "SKYREEL_RENDER_WIDTH": "320",
            "SKYREEL_RENDER_HEIGHT": "180",
            "SKYREEL_RENDER_FPS": "15",
            "SKYREEL_RENDER_PRESET": "ultrafast",
            "SKYREEL_RECONCILE_INTERVAL_S": "5",
            "SKYREEL_RENDER_HEARTBEAT_S": "6",
            "PYTHONUNBUFFERED": "1",
        }
        log = tmp_path / "run.log"
        with log.open("ab") as fh:
            popen = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "streams.cli",
                    "run",
                    "--jumps",
                    str(JUMPS),
                    "--render-workers",
                    "1",
                ],
                stdout=fh,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=ROOT,
                start_new_session=True,
            )
        run = DemoRun(popen, log, data, card, hub_port, ports["postgres"])
        runs.append(run)
        return run

    yield start
    for run in runs:
        if run.popen.poll() is None:
            os.killpg(run.popen.pid, signal.SIGKILL)
            run.popen.wait(30)


async def query(run: DemoRun, sql: str, *args: object) -> list[asyncpg.Record]:
    """One query on a fresh connection (the database may be restarting); retried until the
    database answers again."""
    deadline = time.monotonic() + 120
    while True:
        try:
            conn = await asyncpg.connect(run.db_url, timeout=5)
            try:
                return list(await conn.fetch(sql, *args))
            finally:
                await conn.close()
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)


async def scalar(run: DemoRun, sql: str, *args: object) -> Any:
    rows = await query(run, sql, *args)
    return rows[0][0] if rows else None


async def explain(run: DemoRun) -> str:
    """What is stuck: steps not succeeded (with their last log lines), files not imported,
    executions not finished, dead letters."""
    lines = ["steps not succeeded:"]
    for r in await query(
        run,
        "SELECT e.key, e.status AS execution, s.name, s.status, s.attempt, s.waiting_for, "
        "s.error FROM pipeline_step s JOIN pipeline_execution e ON e.id = s.execution_id "
        "WHERE s.status <> 'succeeded' ORDER BY e.id, s.name",
    ):
        lines.append(f"  {dict(r)}")
    for r in await query(
        run,
        "SELECT s.name, l.attempt, l.actor, l.message FROM pipeline_step_log l "
        "JOIN pipeline_step s ON s.id = l.step_id WHERE s.status <> 'succeeded' "
        "ORDER BY l.id DESC LIMIT 30",
    ):
        lines.append(f"  log {dict(r)}")
    for r in await query(
        run, "SELECT path, status, reason FROM imported_file WHERE status <> 'imported'"
    ):
        lines.append(f"  file {dict(r)}")
    for r in await query(run, "SELECT topic, error FROM dead_letter ORDER BY id"):
        lines.append(f"  dead letter {dict(r)}")
    return "\n".join(lines)


async def finished(run: DemoRun) -> bool:
    """The end state a run without faults reaches: every readable jump published, the two
    review sessions waiting, nothing else pending, running or waiting."""
    done = await scalar(
        run,
        "SELECT count(*) FROM pipeline_execution WHERE pipeline = 'jump' AND status = 'succeeded'",
    )
    busy = await scalar(
        run,
        "SELECT count(*) FROM pipeline_step s JOIN pipeline_execution e ON e.id = s.execution_id "
        "WHERE s.status IN ('pending', 'ready', 'running') AND e.id NOT IN ("
        f"{REVIEW_EXECUTIONS})",
    )
    return done == len(run.card.readable_jumps) and busy == 0


def duration(path: Path) -> float:
    with av.open(str(path)) as c:
        return float(c.duration or 0) / 1_000_000


async def assert_end_state(run: DemoRun) -> None:
    card = run.card
    # Every listed footage file imported (proxies are ignored, never copied).
    not_imported = await query(
        run,
        "SELECT path, status, reason FROM imported_file "
        "WHERE kind <> 'proxy' AND status <> 'imported'",
    )
    assert not_imported == [], f"files stuck: {[dict(r) for r in not_imported]}"
    imported = await scalar(run, "SELECT count(*) FROM imported_file WHERE status = 'imported'")
    assert imported == len(card.videos)

    # No execution waiting forever but the demo's deliberate review sessions.
    unfinished = await query(
        run,
        "SELECT e.key, e.status, s.status AS session FROM pipeline_execution e "
        "LEFT JOIN jump_session s ON s.execution_id = e.id WHERE e.status <> 'succeeded'",
    )
    review = [r for r in unfinished if r["status"] == "waiting"
              and r["session"] in ("needs_review", "unassigned")]  # fmt: skip
    others = [dict(r) for r in unfinished if r not in review]
    assert others == [], f"executions not finished: {others}"
    assert len(review) == REVIEW_SESSIONS, [dict(r) for r in unfinished]

    # Every readable jump edited without a person, rendered exactly once, as long as its edit.
    assert (
        await scalar(
            run,
            "SELECT count(*) FROM (SELECT step_id FROM pipeline_step_attempt "
            "WHERE status = 'succeeded' GROUP BY step_id HAVING count(*) > 1) twice",
        )
        == 0
    ), "a step succeeded twice"
    output = run.data_dir / "output"
    videos = sorted(output.glob("*/*.mp4"))
    assert len(videos) == len(card.readable_jumps), videos
    intro = duration(run.data_dir / "demo" / "branding" / "intro.mp4")
    rows = await query(
        run,
        "SELECT js.booking_id, s.output FROM pipeline_step s JOIN jump_session js "
        "ON js.execution_id = s.execution_id WHERE s.name = 'phases' AND s.status = 'succeeded' "
        "AND js.booking_id IS NOT NULL",
    )
    found = {r["booking_id"]: json.loads(r["output"]) for r in rows}
    assert_edited(card, found)
    for jump in card.readable_jumps:
        mine = [v for v in videos if v.parent.name.startswith(jump.booking_id)]
        assert len(mine) == 1, (jump.booking_id, videos)
        edl = found[jump.booking_id]["edl"]["total_s"]
        assert abs(duration(mine[0]) - (intro + edl)) < 0.6, (
            f"{mine[0].name}: {duration(mine[0]):.2f}s, expected intro {intro:.2f}s + "
            f"the edit {edl:.2f}s"
        )

    # Nothing half-done left behind, nothing dead-lettered.
    staging = run.data_dir / "share" / "renders"
    orphans = [p for p in staging.rglob("*") if p.is_file()] if staging.exists() else []
    assert orphans == [], f"orphans in render staging: {orphans}"
    partials = [p for p in output.rglob("*") if ".partial" in p.name]
    assert partials == []
    dead = await query(run, "SELECT topic, key, error FROM dead_letter")
    assert dead == [], f"dead letters: {[dict(r) for r in dead]}"


async def healthy(run: DemoRun) -> dict[str, Any]:
    """/api/health once it says ok again (every dependency answering)."""
    url = f"http://127.0.0.1:{run.hub_port}/api/health"
    seen: list[dict[str, Any]] = []

    async def ok() -> bool:
        async with httpx.AsyncClient(timeout=10) as client:
            try:
                seen.append((await client.get(url)).json())
            except httpx.HTTPError:
                return False
        return seen[-1].get("status") == "ok"

    started = time.monotonic()
    try:
        await wait_for(ok, timeout=90, interval=0.5, what="/api/health to say ok")
    except AssertionError:
        print(f"last health: {seen[-1:] or 'no answer'}")
        raise
    finally:
        reasons = sorted({r for body in seen for r in body.get("reasons") or ()})
        print(f"health ok after {time.monotonic() - started:.1f}s; said before: {reasons}")
    return seen[-1]


def seconds_back(run: DemoRun, label: str) -> float:
    found = re.findall(rf"{label} is back on \S+ after ([0-9.]+)s", run.output())
    assert found, f"no '{label} is back' line:\n{run.output()[-4000:]}"
    return float(found[-1])


async def kill_and_recover(
    run: DemoRun, label: str, when: Callable[[], Awaitable[bool]], what: str
) -> None:
    await run.wait_up()
    started = time.monotonic()
    await wait_for(when, timeout=180, interval=0.1, what=what)
    pid = run.service_pid(label)
    os.kill(pid, signal.SIGKILL)
    killed = time.monotonic()
    print(f"{label}: SIGKILLed pid {pid} {killed - started:.1f}s after the run was up ({what})")

    await wait_for(lambda: f"{label} is back on" in run.output(), timeout=120, what=f"{label} back")
    assert run.service_pid(label) != pid
    line = next(ln for ln in run.output().splitlines() if f"{label} (pid {pid})" in ln)
    assert "killed by SIGKILL" in line and "restarting it in" in line, line
    back = seconds_back(run, label)

    async def end() -> bool:
        return await finished(run)

    try:
        await wait_for(end, timeout=240, interval=1, what="every readable jump rendered")
        await assert_end_state(run)
    except AssertionError:
        print(await explain(run))
        print(f"----- skyreel run\n{run.output()[-8000:]}\n{run.child_logs()}")
        raise
    settled = time.monotonic() - killed
    body = await healthy(run)
    assert set(body["services"]) == {"database", "broker", "redis"}
    assert body["low_space"] is False and set(body["disk"]) == {"share", "output"}
    print(
        f"fault {label}: back after {back:.1f}s; every jump rendered {settled:.1f}s after the "
        f"kill ({settled + killed - started:.1f}s after the run was up)"
    )
    assert run.stop() == 0, run.output()[-4000:]


async def test_database_killed_after_the_first_import_comes_back(
    demo_run: Callable[[], DemoRun],
) -> None:
    run = demo_run()

    async def first_import() -> bool:
        n = await scalar(run, "SELECT count(*) FROM imported_file WHERE status = 'imported'")
        return bool(n)

    await kill_and_recover(run, "database", first_import, "the first file imported")


async def test_broker_killed_mid_import_comes_back_with_its_topics(
    demo_run: Callable[[], DemoRun],
) -> None:
    run = demo_run()

    async def mid_import() -> bool:
        n = await scalar(run, "SELECT count(*) FROM imported_file WHERE status = 'imported'")
        return 0 < int(n or 0) < len(run.card.videos)

    await kill_and_recover(run, "broker", mid_import, "mid-import")


async def test_redis_killed_with_renders_queued_comes_back(
    demo_run: Callable[[], DemoRun],
) -> None:
    run = demo_run()

    async def renders_queued() -> bool:
        n = await scalar(
            run, "SELECT count(*) FROM pipeline_step WHERE name = 'render' AND status = 'running'"
        )
        return bool(n)

    await kill_and_recover(run, "redis", renders_queued, "a render queued")
