"""`skyreel logs [PROCESS] [-f] [-n N]`: the log files of `skyreel run` under
``<data_dir>/logs/`` — the last lines of one process (or of all, each line prefixed with its
name), and with ``-f`` what they write from then on (rotations are followed)."""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from streams.settings import Settings
from streams.stack.discovery import read_stack

#: Other names an operator may reach for.
ALIASES = {
    "postgresql": "postgres",
    "database": "postgres",
    "db": "postgres",
    "kafka": "tansu",
    "broker": "tansu",
    "run": "skyreel",
    "supervisor": "skyreel",
}


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "logs",
        help="print (-f: follow) the logs of skyreel run's processes",
        description="Every process of `skyreel run` logs to SKYREEL_DATA_DIR/logs/<name>.log "
        "(hub, worker, render-worker-N, detector, postgres, redis, tansu, and skyreel: the run "
        "itself). Without PROCESS: all of them, each line prefixed with its name.",
    )
    p.add_argument("process", nargs="?", help="e.g. hub, worker, render-worker (all of them)")
    p.add_argument("-f", "--follow", action="store_true", help="keep printing new lines")
    p.add_argument("-n", "--lines", type=int, default=20, help="last lines to print (20)")
    p.set_defaults(handler=logs_cli)


def available(log_dir: Path, known: tuple[str, ...] = ()) -> list[str]:
    """The process names with a log file (and those the running stack names)."""
    names = {p.name.removesuffix(".log") for p in log_dir.glob("*.log")}
    return sorted(names | set(known))


def select(name: str | None, names: list[str]) -> list[str] | None:
    """The processes ``name`` means (pure): itself, its alias, or a group (``render-worker``
    -> ``render-worker-1``, ``render-worker-2``); every one for None; None when unknown."""
    if name is None:
        return list(names)
    name = ALIASES.get(name, name)
    if name in names:
        return [name]
    group = [n for n in names if n.startswith(f"{name}-") and n[len(name) + 1 :].isdigit()]
    return group or None


def last_lines(path: Path, n: int, block: int = 64 * 1024) -> tuple[list[bytes], int]:
    """The last ``n`` lines of ``path`` and its size (read backwards, never the whole file)."""
    try:
        with path.open("rb") as fh:
            size = fh.seek(0, os.SEEK_END)
            data = b""
            pos = size
            while pos > 0 and data.count(b"\n") <= n:
                step = min(block, pos)
                pos -= step
                fh.seek(pos)
                data = fh.read(step) + data
    except FileNotFoundError:
        return [], 0
    lines = data.splitlines(keepends=True)
    return (lines[-n:] if n > 0 else []), size


@dataclass
class _Followed:
    name: str
    path: Path
    offset: int
    inode: int
    partial: bytes = b""


def _inode(path: Path) -> int:
    try:
        return path.stat().st_ino
    except FileNotFoundError:
        return -1


def _emit(prefix: str, line: bytes) -> None:
    sys.stdout.write(prefix + line.decode(errors="replace").rstrip("\n") + "\n")


def _read_new(f: _Followed) -> list[bytes]:
    inode = _inode(f.path)
    try:
        size = f.path.stat().st_size
    except FileNotFoundError:
        return []
    if inode != f.inode or size < f.offset:  # rotated or truncated: the new file from its start
        f.inode, f.offset, f.partial = inode, 0, b""
    if size == f.offset:
        return []
    with f.path.open("rb") as fh:
        fh.seek(f.offset)
        data = fh.read(size - f.offset)
    f.offset += len(data)
    data = f.partial + data
    lines = data.splitlines(keepends=True)
    f.partial = lines.pop() if lines and not lines[-1].endswith(b"\n") else b""
    return lines


def logs_cli(settings: Settings, args: argparse.Namespace) -> int:
    found = read_stack(settings.data_dir)
    log_dir = found.data_dir / "logs"
    known = found.info.processes if found.info is not None else ()
    names = available(log_dir, known)
    if not names:
        note = f"; {found.note}" if found.note else ""
        print(
            f"skyreel logs: no logs in {log_dir} (start a stack with `skyreel run`{note})",
            file=sys.stderr,
        )
        return 1
    chosen = select(args.process, names)
    if chosen is None:
        print(
            f"skyreel logs: no process {args.process!r}; valid: {', '.join(names)}",
            file=sys.stderr,
        )
        return 2
    if args.lines < 0:
        print("skyreel logs: -n must be 0 or more", file=sys.stderr)
        return 2
    width = max(len(n) for n in chosen) + 1
    prefix = {n: "" if len(chosen) == 1 else f"{n:<{width}}| " for n in chosen}
    followed = []
    for name in chosen:
        path = log_dir / f"{name}.log"
        lines, size = last_lines(path, args.lines)
        for line in lines:
            _emit(prefix[name], line)
        followed.append(_Followed(name, path, size, _inode(path)))
    sys.stdout.flush()
    if not args.follow:
        return 0
    try:
        while True:
            for f in followed:
                for line in _read_new(f):
                    _emit(prefix[f.name], line)
            sys.stdout.flush()
            time.sleep(0.25)
    except KeyboardInterrupt:
        return 0
