"""`skyreel replay` while the worker runs (issue 17): the worker rewinds its own consumer (a
`replay` operator command, agents/replay.py), reads the messages again, and nothing is applied
twice; bad input is refused clearly; and inside a real `skyreel run` replay no longer refuses."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import asyncpg
import pytest
from support import Rig, wait_for
from test_replay import caught_up, run_cli, run_execution, snapshot
from test_stack_run import Run

from streams.stack.services import free_port

ROOT = Path(__file__).resolve().parents[2]
REREAD = re.compile(r"replay (\S+): (\S+)\[(\d+)\] re-read (\d+) messages \((\d+)\.\.(\d+)\)")


def rereads(log: str, topic: str) -> dict[int, tuple[int, int, int]]:
    """partition -> (messages re-read, first, last) per partition that caught up, from a log."""
    return {
        int(m[3]): (int(m[4]), int(m[5]), int(m[6])) for m in REREAD.finditer(log) if m[2] == topic
    }


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_live_replay_rereads_and_applies_nothing_twice(
    rig: Rig, pg: asyncpg.Connection
) -> None:
    names, group = rig.names, rig.settings.app_id
    topics = [names.step_requests, names.step_results]
    before_all = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=5)
    worker = rig.worker(name="worker")
    eid = await run_execution(rig.db, rig.settings, names)

    async def succeeded() -> bool:
        assert worker.popen.poll() is None, worker.output()[-3000:]
        status = await pg.fetchval("SELECT status FROM pipeline_execution WHERE id = $1", eid)
        return bool(status == "succeeded")

    await wait_for(succeeded, timeout=60, what="execution succeeded")
    await wait_for(lambda: caught_up(rig.settings.kafka_url, group, topics), what="committed")
    before = await snapshot(pg)
    results = await pg.fetchval("SELECT count(*) FROM pipeline_step_attempt")
    assert results and results > 5

    # The group has a live member: the offline commit is refused, the worker rewinds itself.
    code, out = run_cli(
        rig.spawn, rig.settings, "replay", "step-results", "--since", before_all.isoformat()
    )
    assert code == 0, out
    assert "asking the running worker" in out, out
    live = re.findall(
        rf"{re.escape(names.step_results)}\[(\d+)\] {group} \(live\): (\d+) -> 0", out
    )
    assert live, out
    ends = {int(p): int(end) for p, end in live}

    def reread_all() -> bool:
        assert worker.popen.poll() is None, worker.output()[-3000:]
        return set(rereads(worker.output(), names.step_results)) >= set(ends)

    await wait_for(reread_all, timeout=60, what="the worker re-read step-results")
    done = rereads(worker.output(), names.step_results)
    for p, end in ends.items():
        # every message from the start to where the consumer was, handled once more
        assert done[p] == (end, 0, end - 1), (p, done[p], end)

    # The operator commands topic too: the worker re-reads its own replay command (and the one
    # it answered first) and skips them, as their outcomes are stored.
    code, out = run_cli(rig.spawn, rig.settings, "replay", "commands", "--offset", "0")
    assert code == 0 and "(live)" in out, out
    await wait_for(
        lambda: rereads(worker.output(), names.commands), timeout=30, what="commands re-read"
    )
    assert "applied already" in worker.output()

    await wait_for(lambda: caught_up(rig.settings.kafka_url, group, topics), what="committed")
    await asyncio.sleep(1.0)  # let any (wrong) follow-up work land before comparing
    assert await snapshot(pg) == before
    outcomes = await pg.fetch(
        "SELECT ok, result FROM operator_command WHERE action = 'replay' ORDER BY applied_at"
    )
    assert [r["ok"] for r in outcomes] == [True, True]

    # A topic the worker does not read: refused by the worker, with what it does read.
    code, out = run_cli(rig.spawn, rig.settings, "replay", "status", "--offset", "0")
    assert code == 1 and "does not consume" in out and names.step_results in out, out
    # The old way stays: --offline refuses a group with members and says what to do.
    code, out = run_cli(
        rig.spawn, rig.settings, "replay", "step-results", "--offset", "0", "--offline"
    )
    assert code == 1 and "Stop the group's consumers" in out, out
    assert worker.popen.poll() is None


@pytest.mark.slow
async def test_replay_refuses_unknown_topic_and_bad_time(rig: Rig) -> None:
    code, out = run_cli(rig.spawn, rig.settings, "replay", "no-such-topic", "--offset", "0")
    assert code == 1 and "no topic" in out and "no-such-topic" in out, out
    code, out = run_cli(rig.spawn, rig.settings, "replay", "step-results", "--since", "yesterday")
    assert code == 1 and "not an ISO 8601 time" in out and "'yesterday'" in out, out


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_replay_inside_skyreel_run(tmp_path: Path, embedded_data_dir: Path) -> None:
    data = embedded_data_dir
    data.mkdir(exist_ok=True)
    for name in ("postgres", "redis", "kafka"):
        (data / f"{name}.port").write_text(f"{free_port()}\n")
    run = Run(data, free_port(), tmp_path / "run.log")
    try:
        run.wait_up()
        # only the data directory: the CLI finds the running stack's URLs (its stack.json)
        env = {k: v for k, v in os.environ.items() if not k.startswith("SKYREEL_")}
        env |= {"SKYREEL_DATA_DIR": str(data)}
        worker_log = data / "logs" / "worker.log"

        def worker_output() -> str:
            return worker_log.read_text(errors="replace") if worker_log.exists() else ""

        def cli(*args: str) -> tuple[int, str]:
            done = subprocess.run(
                [sys.executable, "-m", "streams.cli", *args],
                capture_output=True,
                text=True,
                env=env,
                cwd=ROOT,
                timeout=90,
            )
            return done.returncode, done.stdout + done.stderr

        # a command the worker answers (not found), once its consumer has joined
        deadline = time.monotonic() + 90
        while True:
            code, out = cli("retry", "999999")
            if "queued" not in out or time.monotonic() > deadline:
                break
        assert code == 1 and "not found" in out, out
        code, out = cli("replay", "commands", "--offset", "0")
        assert code == 0, out
        assert "refused" not in out and "(live)" in out, out
        deadline = time.monotonic() + 30
        while not rereads(worker_output(), "skyreel.commands"):
            assert time.monotonic() < deadline, worker_output()[-4000:]
            time.sleep(0.2)
        assert run.popen.poll() is None
        assert run.stop(signal.SIGTERM) == 0, run.output()[-3000:]
    finally:
        if run.popen.poll() is None:
            os.killpg(run.popen.pid, signal.SIGKILL)
