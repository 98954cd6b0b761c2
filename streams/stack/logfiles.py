"""The log files of ``skyreel run``: one per process under ``<data_dir>/logs/``, size-capped.

Each application child (hub, worker, render workers, detector) writes into a pipe; a
:class:`Pump` thread copies its lines into a :class:`RotatingLog` (``hub.log`` and, once it
passes :data:`MAX_BYTES`, ``hub.log.1`` and ``hub.log.2``), and hands the lines worth a look —
warnings, errors, tracebacks, anything that is not a log line — to the merged console
(:class:`ConsoleFilter`, pure). The embedded services write their own files (``postgres.log``,
``redis.log``, ``tansu.log``); those are rotated before each start and copied-and-truncated
when they grow past the cap while running (:func:`cap_running_log`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO

MAX_BYTES = 10 * 1024 * 1024  # per file; with BACKUPS older ones, at most ~30 MB a process
BACKUPS = 2

_LEVEL = re.compile(rb"\b(DEBUG|INFO|WARNING|WARN|ERROR|CRITICAL)\b")
_QUIET = (b"DEBUG", b"INFO")
_MAX_LINE = 64 * 1024  # a longer "line" (no newline in sight) is cut into pieces


def backup(path: Path, n: int) -> Path:
    return path.with_name(f"{path.name}.{n}")


def shift_backups(path: Path, backups: int = BACKUPS) -> None:
    """``x.log.1`` -> ``x.log.2`` ..., the oldest dropped (``x.log`` itself is left alone)."""
    backup(path, backups).unlink(missing_ok=True)
    for n in range(backups - 1, 0, -1):
        if backup(path, n).exists():
            backup(path, n).replace(backup(path, n + 1))


def rotate_if_large(path: Path, max_bytes: int = MAX_BYTES, backups: int = BACKUPS) -> bool:
    """Before a service starts (nobody has the file open): ``x.log`` -> ``x.log.1`` when big."""
    try:
        if path.stat().st_size < max_bytes:
            return False
    except FileNotFoundError:
        return False
    shift_backups(path, backups)
    path.replace(backup(path, 1))
    return True


def cap_running_log(path: Path, max_bytes: int = MAX_BYTES, backups: int = BACKUPS) -> bool:
    """A file a running service appends to (O_APPEND): copy it to ``x.log.1`` and truncate it;
    the service's next write lands at the new end. Lines written during the copy are lost."""
    try:
        if path.stat().st_size < max_bytes:
            return False
        shift_backups(path, backups)
        shutil.copyfile(path, backup(path, 1))
        os.truncate(path, 0)
    except OSError:
        return False
    return True


class RotatingLog:
    """An append-only file capped at ``max_bytes``: rotated to ``.1``, ``.2`` at a line end.
    Thread-safe: a restarted child's new pump and its predecessor's may write at once."""

    def __init__(self, path: Path, max_bytes: int = MAX_BYTES, backups: int = BACKUPS) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.backups = backups
        self._lock = threading.Lock()
        self._fh: IO[bytes] | None = None
        self._size = 0
        with contextlib.suppress(OSError):  # there from the start: `skyreel logs` finds it
            self._open()

    def _open(self) -> IO[bytes]:
        if self._fh is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = self.path.open("ab")
            self._size = self._fh.tell()
        return self._fh

    def write(self, data: bytes) -> None:
        with self._lock:
            fh = self._open()
            if self._size and self._size + len(data) > self.max_bytes:
                fh.close()
                self._fh = None
                shift_backups(self.path, self.backups)
                with contextlib.suppress(FileNotFoundError):
                    self.path.replace(backup(self.path, 1))
                fh = self._open()
            fh.write(data)
            fh.flush()
            self._size += len(data)

    def close(self) -> None:
        with self._lock:
            if self._fh is not None:
                self._fh.close()
                self._fh = None


class ConsoleFilter:
    """Which of one process's lines the merged console shows (pure): warnings and worse, the
    lines that follow them (a traceback), and lines that are no log line at all (a crash's
    own message); its INFO and DEBUG lines stay in its file."""

    def __init__(self) -> None:
        self.showing = True

    def show(self, line: bytes) -> bool:
        if (m := _LEVEL.search(line[:80])) is not None:
            self.showing = m.group(1) not in _QUIET
        elif line.startswith(b"Traceback"):
            self.showing = True
        return self.showing


Console = Callable[[str, bytes], None]


class ConsolePrinter:
    """Writes the shown lines of every process to our stdout, ``name | line``."""

    def __init__(self, width: int = 14, out: IO[str] | None = None) -> None:
        self.width = width
        self.out = out or sys.stdout
        self._lock = threading.Lock()

    def __call__(self, name: str, line: bytes) -> None:
        text = line.decode(errors="replace").rstrip("\n")
        with self._lock:
            print(f"{name:<{self.width}}| {text}", file=self.out, flush=True)


class Pump(threading.Thread):
    """Copies one child's output (a pipe) into its log and, filtered, to the console."""

    def __init__(
        self, name: str, stream: IO[bytes], sink: RotatingLog, console: Console | None
    ) -> None:
        super().__init__(name=f"log-{name}", daemon=True)
        self.process_name = name
        self.stream = stream
        self.sink = sink
        self.console = console
        self.filter = ConsoleFilter()
        self.write_failed = False

    def run(self) -> None:
        try:
            for line in iter(lambda: self.stream.readline(_MAX_LINE), b""):
                try:
                    self.sink.write(line)
                    self.write_failed = False
                except OSError as exc:  # a full disk: keep the child's pipe drained anyway
                    if self.console is not None and not self.write_failed:
                        note = f"cannot write {self.sink.path}: {exc}\n".encode()
                        self.console(self.process_name, note)
                    self.write_failed = True
                if self.console is not None and self.filter.show(line):
                    self.console(self.process_name, line)
        except (OSError, ValueError):
            pass
        finally:
            with contextlib.suppress(OSError):
                self.stream.close()


def attach_own_log(path: Path) -> logging.Handler | None:
    """``skyreel run``'s own lines (the supervisor's) into ``path`` too, capped the same way."""
    from logging.handlers import RotatingFileHandler

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handler = RotatingFileHandler(path, maxBytes=MAX_BYTES, backupCount=BACKUPS)
    except OSError:
        return None
    root = logging.getLogger()
    template = next((h for h in root.handlers if h.formatter is not None), None)
    handler.setFormatter(
        template.formatter
        if template is not None and template.formatter is not None
        else logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s")
    )
    for flt in template.filters if template is not None else []:
        handler.addFilter(flt)  # the token redaction
    root.addHandler(handler)
    return handler


def detach_own_log(handler: logging.Handler | None) -> None:
    if handler is not None:
        logging.getLogger().removeHandler(handler)
        handler.close()
