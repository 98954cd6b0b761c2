"""Test helpers shared by the suite (import as `from support import ...`)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from streams.settings import Settings


def settings_env(s: Settings) -> dict[str, str]:
    """Environment for a child process that should see the same settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SKYREEL_")}
    for name, value in s.model_dump().items():
        if value is None:
            continue
        if hasattr(value, "get_secret_value"):
            value = value.get_secret_value()
        env[f"SKYREEL_{name.upper()}"] = (
            str(value).lower() if isinstance(value, bool) else str(value)
        )
    env["PYTHONUNBUFFERED"] = "1"
    return env


@dataclass
class Proc:
    """A child process of a test, with its output in a log file."""

    args: list[str]
    popen: subprocess.Popen[bytes]
    log: Path
    env: dict[str, str] = field(repr=False, default_factory=dict)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        self.popen.wait(10)

    def stop(self, timeout: float = 15) -> int:
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.popen.returncode


async def wait_for(
    predicate: Callable[[], object],
    timeout: float = 30.0,
    interval: float = 0.1,
    what: str = "condition",
) -> None:
    """Poll an (async or sync) predicate until it is truthy."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        await asyncio.sleep(interval)


@contextlib.contextmanager
def small_disk(where: Path, size: str) -> Iterator[Path]:
    """A real file system of ``size`` (``"4m"``) mounted at ``where`` (tmpfs: the suite runs as
    root in CI), for a full disk caused, not faked. In CI a mount that fails is an error; only
    elsewhere (not root) does the test skip."""
    import pytest  # test-only helper: keep this module importable without pytest's plugins

    where.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], capture_output=True
    )
    if done.returncode != 0:
        reason = f"cannot mount a tmpfs here: {done.stderr.decode().strip()}"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def small_system(settings: Settings, **extra: object) -> Settings:
    """Settings for a whole system in a test: its own hub port, small fast renders, frequent
    reconciliation; ``extra`` adds or overrides fields."""
    from streams.stack.services import free_port

    return settings.model_copy(
        update={
            "hub_port": free_port(),
            "render_width": 320,
            "render_height": 180,
            "render_fps": 15,
            "render_preset": "ultrafast",
            "reconcile_interval_s": 5.0,
            "render_heartbeat_s": 6,
            **extra,
        }
    )
