"""The documented operator path end to end (issue 17), inside a real `skyreel run`, every step from
the CLI with nothing but SKYREEL_DATA_DIR in its environment:

status → assign a needs-review jump → it renders and publishes → a failed step (a render that
failed on a broken music bed, the file then replaced) retried → a topic replayed live, nothing
rendered or published twice → the run stopped, and status says no stack runs.

The demo card (`--jumps 1`) holds one readable jump and one with an unreadable QR. The run is
configured with a music bed that is not audio, so the readable jump's render fails for a reason
an operator can fix; the test replaces the file with real sound before assigning the other jump.
"""

from __future__ import annotations

import math
import os
import re
import signal
import struct
import subprocess
import sys
import time
import wave
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psutil
import pytest

from agents.demo_card import load_demo_card
from streams.stack.services import free_port

ROOT = Path(__file__).resolve().parents[2]
UP = "skyreel is up"
REREAD = re.compile(r"replay \S+: skyreel\.step-results\[(\d+)\] re-read (\d+) messages")


def cli(data_dir: Path, *argv: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    """`skyreel ARGV` with SKYREEL_DATA_DIR its only setting, run outside the repo (no .env)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SKYREEL_")}
    env["SKYREEL_DATA_DIR"] = str(data_dir)
    return subprocess.run(
        [sys.executable, "-m", "streams.cli", *argv],
        env=env,
        cwd=data_dir.parent,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def ok(data_dir: Path, *argv: str) -> str:
    done = cli(data_dir, *argv)
    assert done.returncode == 0, f"skyreel {' '.join(argv)}: {done.stdout}\n{done.stderr}"
    assert "Traceback" not in done.stderr, done.stderr
    return done.stdout


def wait_until(
    check: Callable[[], str | None], what: str, run: subprocess.Popen[bytes], log: Path,
    timeout: float = 150,
) -> str:  # fmt: skip
    """Poll `check` (a CLI read) until it returns text; the run must stay up meanwhile."""
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found is not None:
            return found
        if run.poll() is not None:
            raise AssertionError(f"skyreel run exited ({run.returncode}) while waiting for {what}")
        if time.monotonic() > deadline:
            tail = log.read_text(errors="replace")[-3000:]
            raise AssertionError(f"timed out waiting for {what}; run output:\n{tail}")
        time.sleep(1.0)


def write_sound(path: Path, seconds: float = 3.0, rate: int = 44100) -> None:
    """A real audio file (a 330 Hz tone, 16-bit stereo WAV), written beside and moved in."""
    tmp = path.with_name(path.name + ".part")
    frames = bytearray()
    for i in range(int(seconds * rate)):
        v = int(8000 * math.sin(2 * math.pi * 330 * i / rate))
        frames += struct.pack("<hh", v, v)
    with wave.open(str(tmp), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(bytes(frames))
    tmp.replace(path)


def published(output: Path) -> list[Path]:
    return sorted(p for p in output.rglob("*.mp4") if not p.name.startswith("."))


def counter(status: str, name: str) -> int:
    found = re.search(rf"\b{name}=(\d+)", status)
    return int(found[1]) if found else 0


def line_of(text: str, *words: str) -> str | None:
    return next((ln for ln in text.splitlines() if all(w in ln for w in words)), None)


@pytest.mark.slow
@pytest.mark.timeout(420)
def test_the_operator_path_from_the_cli_inside_skyreel_run(
    tmp_path: Path, embedded_data_dir: Path
) -> None:
    started = time.monotonic()

    def mark(what: str) -> None:
        print(f"{time.monotonic() - started:6.1f}s {what}", flush=True)

    since = (datetime.now(UTC) - timedelta(seconds=5)).isoformat()
    data = embedded_data_dir
    data.mkdir(exist_ok=True)
    for name in ("postgres", "redis", "kafka"):
        (data / f"{name}.port").write_text(f"{free_port()}\n")
    music = tmp_path / "music" / "bed.wav"
    music.parent.mkdir()
    music.write_bytes(b"this is not a sound file\n" * 64)  # an operator's mistake, fixable
    hub_port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SKYREEL_")}
    env |= {
        "SKYREEL_DATA_DIR": str(data),
        "SKYREEL_HUB_PORT": str(hub_port),
        "SKYREEL_EDIT_MUSIC_PATH": str(music),
        "SKYREEL_RENDER_WIDTH": "640",  # the demo's 720p costs this shared machine a minute
        "SKYREEL_RENDER_HEIGHT": "360",
        "PYTHONUNBUFFERED": "1",
    }
    log = tmp_path / "run.log"
    with log.open("wb") as fh:
        run = subprocess.Popen(
            [sys.executable, "-m", "streams.cli", "run", "--jumps", "1", "--render-workers", "1"],
            stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=ROOT, start_new_session=True,
        )  # fmt: skip
    try:
        wait_until(
            lambda: "" if UP in log.read_text(errors="replace") else None, "the stack", run, log
        )
        mark("up")
        card = load_demo_card(data / "demo" / "cards" / "CARD-DEMO")
        (good,) = card.readable_jumps
        (bad,) = [j for j in card.jumps if j.unreadable]

        # 1. status: the jumps by booking and passenger, the failed render with its reason and
        # the command to retry it, the needs-review jump with its reason and the assign command.
        def both_shown() -> str | None:
            out = ok(data, "status")
            failed = "step render" in out and "failed: the music bed" in out
            return out if failed and re.search(r"jump \S+ needs review: .*QR", out) else None

        status = wait_until(both_shown, "the failed render and the needs-review jump", run, log)
        row = line_of(status, good.booking_id, good.passenger)
        assert row is not None and "failed" in row, status
        assert "replace it or unset SKYREEL_EDIT_MUSIC_PATH" in status, status
        retry = re.search(r"retry: skyreel retry (\d+) --step (render\S*)", status)
        assert retry is not None, status
        execution, step = retry[1], retry[2]
        review = re.search(r"\[action\] jump (\S+) needs review: (.*QR.*)", status)
        assert review is not None, status
        session = review[1]
        assert "the QR clip could not be read: assign the booking" in review[2], status
        print(status, flush=True)
        assert "skyreel assign KEY --booking B --passenger NAME" in status
        executions = ok(data, "executions")
        row = line_of(executions, good.booking_id, good.passenger)
        assert row is not None and "failed" in row and "failed=" in row, executions

        mark("status shown")
        # 2. fix the music bed, assign the unreadable jump: it renders and publishes.
        write_sound(music)
        assigned = ok(data, "assign", session, "--booking", bad.booking_id, "--passenger",
                      bad.passenger)  # fmt: skip
        assert f"session {session} assigned to booking {bad.booking_id}" in assigned, assigned

        def rendered(booking: str, passenger: str) -> Callable[[], str | None]:
            def check() -> str | None:
                out = ok(data, "executions")
                found = line_of(out, booking, passenger)
                # the execution's own status (the second column), not a step count
                return out if found is not None and found.split()[1] == "succeeded" else None

            return check

        wait_until(rendered(bad.booking_id, bad.passenger), "the assigned jump", run, log)
        status = ok(data, "status")
        assert not re.search(rf"jump {re.escape(session)} \S* ?needs review", status), status
        assert counter(status, "videos_published") >= 1, status
        assert any(bad.booking_id in p.parent.name for p in published(data / "output"))

        mark("assigned jump published")
        # 3. the failed render, retried now its cause is fixed: it renders and publishes.
        retried = ok(data, "retry", execution, "--step", step)
        assert f"execution {execution}: retried {step}" in retried, retried
        wait_until(rendered(good.booking_id, good.passenger), "the retried render", run, log)
        status = ok(data, "status")
        assert "failed steps" not in status, status
        videos = published(data / "output")
        assert any(good.booking_id in p.parent.name for p in videos), videos
        before = (counter(status, "videos_published"), videos)
        assert before[0] == 2, status

        mark("retried render published")
        # 4. replay a topic live: the worker re-reads it, nothing is rendered or published twice.
        worker_log = data / "logs" / "worker.log"
        replayed = ok(data, "replay", "step-results", "--since", since)
        assert "asking the running worker" in replayed and "(live)" in replayed, replayed
        wait_until(
            lambda: "" if REREAD.search(worker_log.read_text(errors="replace")) else None,
            "the worker's re-read",
            run,
            log,
            timeout=60,
        )
        time.sleep(3.0)  # let any (wrong) follow-up work land
        status = ok(data, "status")
        assert (counter(status, "videos_published"), published(data / "output")) == before
        assert "failed steps" not in status, status

        mark("replayed")
        # 5. stop the run; afterwards no stack runs.
        pids = [p.pid for p in psutil.Process(run.pid).children(recursive=True)]
        run.send_signal(signal.SIGTERM)
        assert run.wait(90) == 0, log.read_text(errors="replace")[-3000:]
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
    assert not [p for p in pids if psutil.pid_exists(p) and psutil.Process(p).status() != "zombie"]
    gone = cli(data, "status")
    assert gone.returncode == 2, gone.stdout + gone.stderr
    assert f"no running skyreel stack found in {data.resolve()}" in gone.stderr, gone.stderr
    assert "start one with `skyreel run`" in gone.stderr
    print(f"operator path: {time.monotonic() - started:.0f}s")
