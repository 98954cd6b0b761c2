"""The files of a purge (issue 16, item 5), blocking: run them in a thread.

Only what resolves inside the given roots (the output folder, the share) is deleted; a folder is
walked only when it is named as one (a session's own output folder), never because a step output
named it. A file that cannot be deleted is an error with its path and what to do; the rest goes
on. :class:`Tally` is what a purge did and could not do.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

_OUTBOX_READ = 64 * 1024  # an outbox message's headers are in its first bytes


@dataclass
class Tally:
    """What the purgers did (counts) and could not do (errors)."""

    counts: dict[str, int] = field(default_factory=dict)
    errors: list[dict[str, str]] = field(default_factory=list)

    def add(self, what: str, n: int = 1) -> None:
        if n:
            self.counts[what] = self.counts.get(what, 0) + n

    def error(self, path: Path | str, error: str, action: str) -> None:
        self.errors.append({"path": str(path), "error": error, "action": action})


def inside(path: Path, roots: Iterable[Path]) -> bool:
    real = path.resolve()
    return any(real != r and real.is_relative_to(r) for r in (x.resolve() for x in roots))


def paths_named(value: object) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        for v in value:
            yield from paths_named(v)
    elif isinstance(value, dict):
        for v in value.values():
            yield from paths_named(v)


def unlink(path: Path, tally: Tally, what: str, again: str) -> None:
    if any(e["path"] == str(path) for e in tally.errors):
        return  # said already (a file named by a step and found in its folder too)
    try:
        size = path.stat().st_size
        path.unlink()
    except FileNotFoundError:
        return
    except OSError as exc:
        tally.error(
            path, f"{type(exc).__name__}: {exc.strerror or exc}", f"delete it by hand, {again}"
        )
        return
    tally.add(what)
    tally.add("bytes_deleted", size)


def delete_files(
    paths: list[Path],
    roots: list[Path],
    tally: Tally,
    again: str,
    folders: Sequence[Path] = (),
) -> None:
    """Blocking: delete the files, then the folders (their files, then themselves); only what
    resolves inside the roots. A folder among `paths` is never walked: only `folders` are."""
    for p in paths:
        if not inside(p, roots):
            if p.exists():
                tally.add("outside_roots_kept")
            continue
        if p.is_file() or p.is_symlink():
            unlink(p, tally, "files_deleted", again)
            parent = p.parent
            with contextlib.suppress(OSError):  # a staging folder left empty
                if inside(parent, roots) and parent not in folders and not any(parent.iterdir()):
                    parent.rmdir()
                    tally.add("folders_deleted")
    for folder in folders:
        if not inside(folder, roots) or not folder.is_dir() or folder.is_symlink():
            continue
        for sub, _dirs, names in os.walk(folder, topdown=False):
            for f in names:
                unlink(Path(sub) / f, tally, "files_deleted", again)
            try:
                Path(sub).rmdir()
                tally.add("folders_deleted")
            except OSError as exc:
                said = any(e["path"].startswith(f"{sub}{os.sep}") for e in tally.errors)
                if Path(sub).exists() and not said:  # a file in it said why already
                    tally.error(sub, str(exc), f"delete the folder by hand, {again}")


def _whole(mark: str) -> re.Pattern[str]:
    """`mark` as a whole word: booking B1 is not in B12's message."""
    return re.compile(rf"(?<![A-Za-z0-9]){re.escape(mark)}(?![A-Za-z0-9])")


def _outbox_names(path: Path, marks: list[re.Pattern[str]]) -> bool:
    try:
        with path.open("rb") as f:
            head = f.read(_OUTBOX_READ).decode("utf-8", "replace")
    except OSError:
        return False
    return any(m.search(head) for m in marks)


def purge_outbox(outbox: Path, marks: list[str], token: str, tally: Tally, again: str) -> None:
    """Delete the messages in `outbox` whose file name holds `token` or whose first bytes hold
    one of `marks` (each as a whole word)."""
    if not outbox.is_dir():
        return
    named = _whole(token) if token else None
    found = [_whole(m) for m in marks if m]
    for p in sorted(outbox.iterdir()):
        if p.is_file() and ((named and named.search(p.name)) or _outbox_names(p, found)):
            unlink(p, tally, "outbox_deleted", again)
