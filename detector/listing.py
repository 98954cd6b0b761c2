"""What goes into a card's listing: the files the protocol can carry, the ones it cannot (with
the reason), and the card's free and total bytes. Blocking (it reads the card): the client runs
:func:`read_card` in a thread.

Each video's duration is read from its container header (``moov/mvhd``, a few hundred bytes
however large the file: detector/mp4_duration.py) and sent as the entry's optional
``duration``: the hub picks QR candidates by it (a ticket clip is short). Unknown (a truncated
clip, not an MP4/MOV) is left out, and the hub falls back to the file's size.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from pydantic import ValidationError

from detector import protocol
from detector.cards import Volume
from detector.mp4_duration import read_duration
from detector.protocol import FileEntry, SkippedFile, printable
from detector.requests import Card
from detector.scan import ScannedFile, scan_card_report

logger = logging.getLogger(__name__)


def file_entries(files: Sequence[ScannedFile]) -> list[FileEntry]:
    return valid_entries(files)[0]


def valid_entries(files: Sequence[ScannedFile]) -> tuple[list[FileEntry], list[SkippedFile]]:
    """Wire entries for the scanned files, and the ones the protocol cannot carry (pure)."""
    entries: list[FileEntry] = []
    skipped: list[SkippedFile] = []
    for f in files:
        try:
            entries.append(
                FileEntry(path=f.path, size=f.size, mtime=f.mtime, kind=f.kind, duration=f.duration)
            )
        except ValidationError as exc:
            reason = exc.errors()[0]["msg"][: protocol.MAX_SKIP_REASON_CHARS]
            skipped.append(SkippedFile(path=printable(f.path), reason=reason))
    return entries, skipped


def disk_space(root: Path) -> tuple[int | None, int | None]:
    """(free, total) bytes of the filesystem at ``root``; (None, None) when unknown."""
    try:
        usage = shutil.disk_usage(root)
    except OSError as exc:
        logger.warning("free space of %s unknown: %s", root, exc)
        return None, None
    return usage.free, usage.total


def with_duration(root: Path, f: ScannedFile) -> ScannedFile:
    """``f`` with its duration read from the card (videos only; None when unknown)."""
    if f.kind != "video":
        return f
    return replace(f, duration=read_duration(root / f.path))


def read_card(volume: Volume) -> Card:
    """Scan a card and measure its space (blocking: runs in a thread). ``files`` holds what
    can be listed; ``skipped`` the rest, with the reason."""
    scan = scan_card_report(volume.root)
    skipped = list(scan.skipped)
    files: list[ScannedFile] = []
    for f in scan.files:
        unsendable = valid_entries([f])[1]
        skipped.extend(unsendable)
        if not unsendable:
            files.append(with_duration(volume.root, f))
    skipped.sort(key=lambda f: f.path)
    free, total = disk_space(volume.root)
    return Card(volume, files, skipped, free, total)
