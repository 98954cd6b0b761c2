"""Supervision of the application processes ``skyreel run`` keeps alive.

Starts child processes in their own process groups, restarts a crashed one with backoff, and
stops them in reverse order (SIGTERM to the whole group, SIGKILL after a timeout).
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from streams.embedded import die_with_parent

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ChildSpec:
    """An application process ``skyreel run`` keeps alive."""

    name: str
    argv: tuple[str, ...]
    requires_module: str = ""  # skipped (with a log line) when this module is not installed


@dataclass
class _Child:
    spec: ChildSpec
    process: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    crashes: int = 0  # consecutive quick crashes, for the backoff
    restart_at: float | None = None
    restarts: int = 0


def module_available(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


def backoff(crashes: int, base: float = 1.0, cap: float = 30.0) -> float:
    """Seconds before restarting a child after its ``crashes``-th quick crash in a row."""
    return min(cap, base * 2 ** max(0, crashes - 1))


class Supervisor:
    """Starts child processes, restarts crashed ones with backoff, stops them in reverse order."""

    STABLE_AFTER = 30.0  # a child that ran this long before crashing starts its backoff afresh

    def __init__(
        self,
        specs: Sequence[ChildSpec],
        env: dict[str, str],
        *,
        stop_timeout: float = 10,
        log_dir: Path | None = None,
    ):
        self.children = [_Child(s) for s in specs]
        self.env = env
        self.stop_timeout = stop_timeout
        self.log_dir = log_dir  # None: children share our stdout/stderr

    def start_all(self) -> None:
        for child in self.children:
            self._spawn(child)

    def _spawn(self, child: _Child) -> None:
        # Own session: a terminal's Ctrl-C reaches only us, and we stop children in order.
        out = None
        if self.log_dir is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            out = (self.log_dir / f"{child.spec.name}.log").open("ab")
        try:
            child.process = subprocess.Popen(
                child.spec.argv,
                env=self.env,
                start_new_session=True,
                preexec_fn=die_with_parent(),
                stdout=out,
                stderr=subprocess.STDOUT if out is not None else None,
            )
        finally:
            if out is not None:
                out.close()
        child.started = time.monotonic()
        child.restart_at = None
        logger.info("%s started (pid %d)", child.spec.name, child.process.pid)

    def poll(self) -> None:
        """Notice exited children and restart them when their backoff is over."""
        now = time.monotonic()
        for child in self.children:
            if child.restart_at is not None:
                if now >= child.restart_at:
                    child.restarts += 1
                    self._spawn(child)
                continue
            if child.process is None or (code := child.process.poll()) is None:
                continue
            ran = now - child.started
            child.crashes = 1 if ran >= self.STABLE_AFTER else child.crashes + 1
            delay = backoff(child.crashes)
            logger.warning("%s (pid %d) exited with %s after %.1fs; restarting in %.0fs",
                           child.spec.name, child.process.pid, code, ran, delay)  # fmt: skip
            child.restart_at = now + delay

    def stop_all(self) -> None:
        """SIGTERM each child's process group, newest first; SIGKILL what is left after
        ``stop_timeout``. Process groups, so a child's own children (FFmpeg) go too."""
        for child in reversed(self.children):
            proc = child.process
            child.restart_at = None
            if proc is None:
                continue
            if proc.poll() is None:
                _signal_group(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(self.stop_timeout)
                except subprocess.TimeoutExpired:
                    logger.warning("%s did not stop in %.0fs; killing it", child.spec.name,
                                   self.stop_timeout)  # fmt: skip
                    proc.kill()
                    proc.wait(5)
                logger.info("%s stopped (pid %d, exit %s)", child.spec.name, proc.pid,
                            proc.returncode)  # fmt: skip
            _signal_group(proc.pid, signal.SIGKILL)  # stragglers of the group, if any
            _wait_group_gone(proc.pid, 2.0)


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _wait_group_gone(pgid: int, timeout: float) -> None:
    import psutil

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        members = []
        for proc in psutil.process_iter(["status"]):
            with contextlib.suppress(psutil.Error, OSError):
                if proc.info["status"] != psutil.STATUS_ZOMBIE and os.getpgid(proc.pid) == pgid:
                    members.append(proc.pid)
        if not members:
            return
        time.sleep(0.05)
    logger.warning("process group %d still has members after SIGKILL", pgid)
