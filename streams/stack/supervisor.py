"""Supervision of the processes ``skyreel run`` keeps alive.

:class:`Supervisor` starts the application children in their own process groups, restarts a
crashed one with backoff, and stops them in reverse order (SIGTERM to the whole group, SIGKILL
after a timeout); given a ``log_dir``, each child's output goes through a pipe into
``<log_dir>/<name>.log`` (streams/stack/logfiles.py), its warnings and errors to a console.
:class:`ServiceSupervisor` does the same for the embedded PostgreSQL, Redis and broker: a dead
one is reaped and logged at once and restarted with backoff on the same data directory and
port, without blocking (each :meth:`ServiceSupervisor.poll` moves it one state on), and the
children whose state lives in it are restarted once it is back.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from streams.service_state import write_service_states
from streams.stack.logfiles import Console, Pump, RotatingLog
from streams.stack.services import ChildService, die_with_parent

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ChildSpec:
    """An application process ``skyreel run`` keeps alive."""

    name: str
    argv: tuple[str, ...]
    # Embedded services whose restart this child does not survive on its own (restarted too).
    restart_with: tuple[str, ...] = ()


@dataclass
class _Child:
    spec: ChildSpec
    process: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    crashes: int = 0  # consecutive quick crashes, for the backoff
    restart_at: float | None = None
    restarts: int = 0
    bounce_deadline: float | None = None  # asked to stop for a restart; SIGKILL after this
    frozen: bool = False  # SIGSTOPped by Supervisor.freeze


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
        console: Console | None = None,
    ):
        self.children = [_Child(s) for s in specs]
        self.env = env
        self.stop_timeout = stop_timeout
        # None: children share our stdout/stderr. Else each writes <log_dir>/<name>.log through
        # a pump, which shows its warnings and errors on ``console`` (None: nothing shown).
        self.log_dir = log_dir
        self.console = console
        self._logs: dict[str, RotatingLog] = {}
        self._pumps: list[Pump] = []

    def log_path(self, name: str) -> Path | None:
        return None if self.log_dir is None else self.log_dir / f"{name}.log"

    def start_all(self) -> None:
        for child in self.children:
            self._spawn(child)

    def _spawn(self, child: _Child) -> None:
        # Own session: a terminal's Ctrl-C reaches only us, and we stop children in order.
        name = child.spec.name
        piped = self.log_dir is not None
        child.process = subprocess.Popen(
            child.spec.argv,
            env=self.env,
            start_new_session=True,
            preexec_fn=die_with_parent(),
            stdout=subprocess.PIPE if piped else None,
            stderr=subprocess.STDOUT if piped else None,
        )
        if piped and child.process.stdout is not None:
            path = self.log_path(name)
            assert path is not None
            sink = self._logs.setdefault(name, RotatingLog(path))
            pump = Pump(name, child.process.stdout, sink, self.console)
            pump.start()
            self._pumps = [p for p in self._pumps if p.is_alive()] + [pump]
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
            if child.process is None:
                continue
            if (code := child.process.poll()) is None:
                if child.bounce_deadline is not None and now >= child.bounce_deadline:
                    _signal_group(child.process.pid, signal.SIGKILL)
                continue
            if child.bounce_deadline is not None:  # stopped on purpose: back at once
                child.bounce_deadline = None
                child.restarts += 1
                self._spawn(child)
                continue
            ran = now - child.started
            child.crashes = 1 if ran >= self.STABLE_AFTER else child.crashes + 1
            delay = backoff(child.crashes)
            logger.warning("%s (pid %d) exited with %s after %.1fs; restarting in %.0fs",
                           child.spec.name, child.process.pid, code, ran, delay)  # fmt: skip
            child.restart_at = now + delay

    def restart_dependants(self, service: str) -> None:
        """Restart (SIGTERM, then SIGKILL after ``stop_timeout``) the children that declared
        ``restart_with=(service, ...)``; :meth:`poll` starts them again without backoff."""
        deadline = time.monotonic() + self.stop_timeout
        for child in self.children:
            proc = child.process
            if service not in child.spec.restart_with or proc is None or proc.poll() is not None:
                continue
            logger.warning("%s (pid %d): restarting, %s came back without the state it held",
                           child.spec.name, proc.pid, service)  # fmt: skip
            child.bounce_deadline = deadline
            _signal_group(proc.pid, signal.SIGTERM)

    def freeze(self) -> None:
        """SIGSTOP every running child's process group (see :meth:`thaw`)."""
        for child in self.children:
            if child.process is not None and child.process.poll() is None:
                _signal_group(child.process.pid, signal.SIGSTOP)
                child.frozen = True
        logger.info("children paused while a service restarts")

    def thaw(self) -> None:
        for child in self.children:
            if child.frozen and child.process is not None:
                _signal_group(child.process.pid, signal.SIGCONT)
            child.frozen = False

    def hurry(self) -> None:
        """A service is back: children waiting out a crash backoff start now (they most likely
        crashed because it was down) and their backoff starts afresh."""
        now = time.monotonic()
        for child in self.children:
            if child.restart_at is not None and child.restart_at > now:
                child.restart_at = now
                child.crashes = 0

    def stop_all(self) -> None:
        """SIGTERM each child's process group, newest first; SIGKILL what is left after
        ``stop_timeout``. Process groups, so a child's own children (FFmpeg) go too."""
        self.thaw()
        for child in reversed(self.children):
            proc = child.process
            child.restart_at = child.bounce_deadline = None
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
        for pump in self._pumps:  # the last lines into the files
            pump.join(2.0)
        for sink in self._logs.values():
            sink.close()


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


def exit_words(code: int) -> str:
    """``-9`` -> ``killed by SIGKILL``; ``1`` -> ``exited with 1``."""
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
    return f"exited with {code}"


@dataclass
class ServiceWatch:
    """An embedded service :class:`ServiceSupervisor` keeps alive, and how to bring it back."""

    key: str  # as in the stack: postgresql, redis, kafka
    label: str  # as health and the progress line say it: database, redis, broker
    service: ChildService
    respawn: Callable[[], ChildService]  # the process again: same data dir, same port
    ready: Callable[[str, int], bool]  # cheap: polled while it starts
    after_ready: Callable[[ChildService], None] | None = None  # e.g. re-create the topics
    # Around a restart, until it is up and set up (or failed): e.g. freeze the broker's clients
    # so that none auto-creates a topic before ``after_ready`` created it properly.
    before_start: Callable[[], None] = lambda: None
    after_start: Callable[[], None] = lambda: None
    start_timeout: float = 60.0
    state: str = "up"  # up | down (waiting out the backoff) | starting
    attempt: int = 0  # restarts tried since it went down
    down_since: float = 0.0  # time.time()
    down_at: float = 0.0  # time.monotonic()
    next_at: float = 0.0  # down: start it then; starting: give up then

    @property
    def note(self) -> str:
        """``restarting (attempt 3)``, or empty when it is up."""
        if self.state == "up":
            return ""
        return f"restarting (attempt {self.attempt + (self.state == 'down')})"


class ServiceSupervisor:
    """Restarts dead embedded services with backoff; never blocks for a service's start.

    Every change of state is one log line and a rewrite of ``status_file`` (read by the hub's
    ``/api/health``). ``on_back(key)`` runs once a restarted service answers again.
    """

    QUICK_START = 2.0  # seconds a restart may wait inline for the service to answer

    def __init__(
        self,
        watches: Sequence[ServiceWatch],
        *,
        status_file: Path | None = None,
        on_back: Callable[[str], None] = lambda key: None,
        base_delay: float = 0.5,
    ):
        self.watches = list(watches)
        self.status_file = status_file
        self.on_back = on_back
        self.base_delay = base_delay
        self._write()

    def poll(self) -> None:
        changed = False
        for w in self.watches:
            changed |= self._step(w)
        if changed:
            self._write()

    def down(self) -> dict[str, str]:
        """label -> ``restarting (attempt N)`` for every service that is not up."""
        return {w.label: w.note for w in self.watches if w.state != "up"}

    def states(self) -> dict[str, dict[str, object]]:
        return {
            w.label: {
                "state": "up" if w.state == "up" else "restarting",
                "address": w.service.address,
                "attempt": w.attempt,
                "down_since": w.down_since if w.state != "up" else None,
                "note": w.note,
                "log": str(w.service.log_path),
            }
            for w in self.watches
        }

    def _write(self) -> None:
        if self.status_file is not None:
            try:
                write_service_states(self.status_file, self.states())
            except OSError as exc:  # a full disk must not stop the supervision
                logger.warning("cannot write %s: %s", self.status_file, exc)

    def _step(self, w: ServiceWatch) -> bool:
        now = time.monotonic()
        svc = w.service
        if w.state == "up":
            if (code := svc.process.poll()) is None:  # poll() also reaps it
                return False
            w.attempt, w.down_at, w.down_since = 0, now, time.time()
            self._retry_later(w, f"(pid {svc.process.pid}) {exit_words(code)}", first=True)
            return True
        if w.state == "down":
            if now < w.next_at:
                return False
            w.attempt += 1
            w.before_start()
            try:
                w.service = w.respawn()
            except Exception as exc:  # leftovers it could not clear, a binary gone, ...
                self._retry_later(w, f"could not be started ({exc})")
                return True
            w.state, w.next_at = "starting", now + w.start_timeout
            logger.info("%s: starting again on %s (attempt %d, pid %d)", w.label,
                        w.service.address, w.attempt, w.service.process.pid)  # fmt: skip
            # Most come back in milliseconds: finish now rather than at the next poll.
            quick = time.monotonic() + self.QUICK_START
            while w.state == "starting" and time.monotonic() < quick:
                if self._starting(w, time.monotonic()):
                    break
                time.sleep(0.02)
            return True
        return self._starting(w, now)

    def _starting(self, w: ServiceWatch, now: float) -> bool:
        """One look at a starting service; True when its state changed."""
        svc = w.service
        if (code := svc.process.poll()) is not None:
            self._retry_later(w, f"{exit_words(code)} while starting")
            return True
        if not w.ready(svc.host, svc.port):
            if now > w.next_at:
                svc.kill()
                self._retry_later(w, f"did not answer in {w.start_timeout:.0f}s")
                return True
            return False
        if w.after_ready is not None:
            try:
                w.after_ready(svc)
            except Exception as exc:  # asked again at the next poll
                logger.warning("%s: up but not set up yet: %s", w.label, exc)
                return False
        w.state = "up"
        w.after_start()
        logger.warning("%s is back on %s after %.1fs (attempt %d, pid %d)", w.label,
                       svc.address, time.monotonic() - w.down_at, w.attempt,
                       svc.process.pid)  # fmt: skip
        self.on_back(w.key)
        return True

    def _retry_later(self, w: ServiceWatch, why: str, *, first: bool = False) -> None:
        if w.state == "starting" or not first:
            w.after_start()
        delay = backoff(w.attempt + 1, base=self.base_delay)
        w.state, w.next_at = "down", time.monotonic() + delay
        if first:
            logger.error("%s %s on %s; restarting it in %.1fs on the same data dir and port. "
                         "If it keeps failing, read %s (full disk? data dir permissions?) and "
                         "restart skyreel run", w.label, why, w.service.address, delay,
                         w.service.log_path)  # fmt: skip
        else:
            logger.error("%s: attempt %d failed: %s; next in %.1fs (see %s)", w.label,
                         w.attempt, why, delay, w.service.log_path)  # fmt: skip

    def stop(self) -> None:
        """Forget the state file (the services themselves are the stack's to stop)."""
        if self.status_file is not None:
            self.status_file.unlink(missing_ok=True)
