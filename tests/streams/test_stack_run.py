"""`skyreel run` as a real process: it comes up on a fresh data dir, SIGTERM (or Ctrl-C) stops
it with exit 0 and nothing left running, and the next start on the same dir works."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from streams.stack.services import free_port

ROOT = Path(__file__).resolve().parents[2]
UP = "skyreel is up"


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


class Run:
    """One `python -m streams.cli run --no-demo` with its output in a file."""

    def __init__(self, data_dir: Path, hub_port: int, log: Path) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SKYREEL_")}
        env |= {
            "SKYREEL_DATA_DIR": str(data_dir),
            "SKYREEL_HUB_PORT": str(hub_port),
            "PYTHONUNBUFFERED": "1",
        }
        self.log = log
        self.offset = log.stat().st_size if log.exists() else 0
        with log.open("ab") as fh:
            self.popen = subprocess.Popen(
                [sys.executable, "-m", "streams.cli", "run", "--no-demo", "--render-workers", "1"],
                stdout=fh,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=ROOT,
                start_new_session=True,
            )

    def output(self) -> str:
        return self.log.read_bytes()[self.offset :].decode(errors="replace")

    def wait_up(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while UP not in self.output():
            if self.popen.poll() is not None:
                raise AssertionError(f"exited with {self.popen.returncode}:\n{self.output()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"not up after {timeout:.0f}s:\n{self.output()}")
            time.sleep(0.2)

    def descendants(self) -> list[int]:
        return [p.pid for p in psutil.Process(self.popen.pid).children(recursive=True)]

    def stop(self, sig: int) -> int:
        self.popen.send_signal(sig)  # the process only: it must stop its children itself
        try:
            return self.popen.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(self.popen.pid, signal.SIGKILL)
            raise


@pytest.fixture
def base_dir(embedded_data_dir: Path) -> Path:
    return embedded_data_dir


@pytest.fixture
def data_dir(base_dir: Path) -> Path:
    data = base_dir
    data.mkdir(exist_ok=True)
    for name in ("postgres", "redis", "kafka"):  # no race with parallel runs for the defaults
        (data / f"{name}.port").write_text(f"{free_port()}\n")
    return data


def assert_nothing_left(pids: list[int], data_dir: Path) -> None:
    left = [p for p in pids if alive(p)]
    assert not left, f"left running: {[psutil.Process(p).cmdline() for p in left if alive(p)]}"
    pgdata = data_dir / "postgres"
    assert not (pgdata / "postmaster.pid").exists()
    assert not list(pgdata.glob(".s.PGSQL.*"))


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_run_comes_up_stops_on_sigterm_and_starts_again(tmp_path: Path, data_dir: Path) -> None:
    hub_port = free_port()
    log = tmp_path / "run.log"
    run = Run(data_dir, hub_port, log)
    try:
        run.wait_up()
        out = run.output()
        assert "[demo]" not in out and "demo card" not in out  # --no-demo: services only
        assert "postgresql  embedded" in out and "kafka       embedded" in out
        assert f"dashboard: http://127.0.0.1:{hub_port}/" in out
        with socket.create_connection(("127.0.0.1", hub_port), timeout=5):
            pass
        pids = run.descendants()
        assert len(pids) >= 3, "postgres, redis and tansu at least"
        assert run.stop(signal.SIGTERM) == 0, run.output()
    finally:
        if run.popen.poll() is None:
            os.killpg(run.popen.pid, signal.SIGKILL)
    assert "skyreel stopped" in run.output()
    assert_nothing_left(pids, data_dir)

    # Ctrl-C this time, on the same data dir (remembered ports, existing cluster).
    again = Run(data_dir, hub_port, log)
    try:
        again.wait_up()
        pids = again.descendants()
        assert again.stop(signal.SIGINT) == 0, again.output()
    finally:
        if again.popen.poll() is None:
            os.killpg(again.popen.pid, signal.SIGKILL)
    assert_nothing_left(pids, data_dir)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_sigkilled_run_leaves_no_service_behind(tmp_path: Path, data_dir: Path) -> None:
    # Not a clean stop: the kernel's parent-death signal must still take the services down.
    run = Run(data_dir, free_port(), tmp_path / "run.log")
    try:
        run.wait_up()
        pids = run.descendants()
    finally:
        os.kill(run.popen.pid, signal.SIGKILL)
        run.popen.wait(10)
    deadline = time.monotonic() + 60
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert_nothing_left(pids, data_dir)
