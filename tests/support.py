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
from typing import TYPE_CHECKING, Any

from streams import records
from streams.settings import Settings

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

    from streams.topics import Names


def settings_env(s: Settings) -> dict[str, str]:
    """Environment for a child process that should see the same settings (the one the stack
    gives its children)."""
    from streams.stack.local import child_environ

    return child_environ(s)


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


def copy_request(
    file_id: int, detector_id: str, path: str = "", priority: int = 0
) -> records.CopyRequest:
    """A hub test's copy request: a 5-byte file of card C1 (``path`` defaults to DCIM/F<id>)."""
    return records.CopyRequest(
        request_id=records.copy_request_id(file_id),
        detector_id=detector_id,
        card_id="C1",
        file_id=file_id,
        path=path or f"DCIM/F{file_id}.MP4",
        size=5,
        mtime=1.7e9,
        destination=f"cards/C1/{file_id:08d}_F.MP4",
        priority=priority,
    )


@dataclass
class Rig:
    """What a test of the engine drives: an emptied database, its settings and topic names, and
    children it starts (the ``rig`` fixture)."""

    db: AsyncEngine
    settings: Settings
    names: Names
    spawn: Callable[..., Proc]

    def worker(
        self, *, reconcile_s: float = 30.0, name: str = "", settings: Settings | None = None
    ) -> Proc:
        """A Faust worker (``skyreel worker``) on these settings, or on ``settings``."""
        env = settings_env(settings or self.settings)
        env["SKYREEL_RECONCILE_INTERVAL_S"] = str(reconcile_s)
        return self.spawn("streams.cli", "worker", env=env, name=name or "worker")


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


def local_settings(
    root: Path, database_url: str, redis_url: str, broker: str, prefix: str, **extra: Any
) -> Settings:
    """Settings for the session's services under ``root`` (its share and output made here)."""
    for sub in ("share", "output"):
        (root / sub).mkdir()
    return Settings(
        data_dir=root / "data",
        database_url=database_url,
        redis_url=redis_url,
        kafka_url=broker,
        kafka_local_tuning=True,
        topic_prefix=prefix,
        share_root=root / "share",
        output_dir=root / "output",
        **extra,
    )
