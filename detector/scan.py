"""Metadata-only scan of a card's ``DCIM/`` tree, and GoPro chapter recognition.

Nothing is read from file contents here: a card can hold hundreds of GB and most files were
imported on an earlier day; the backend decides what is new from (path, size, mtime, card id)
alone. (The listing then reads each clip's duration from its container header, a few hundred
bytes per file: detector/listing.py.)
Symlinks are not followed and dot files (macOS ``._GX010042.MP4`` AppleDouble files, which carry
a video extension but hold no video) are skipped. Results are sorted by path so the same card
always gives the same list.

A name that cannot be sent (not valid Unicode: on Linux ``os.scandir`` hands undecodable bytes
over as lone surrogates; or too long) is not listed: :func:`scan_card_report` returns it among
``skipped``, in printable form with the reason, so the client can log it and tell the hub; the
rest of the card is listed as usual.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from detector.protocol import (
    SkippedFile,
    check_relative_path,
    classify,
    is_valid_unicode,
    printable,
)

logger = logging.getLogger(__name__)

Kind = Literal["video", "proxy"]


@dataclass(frozen=True)
class ScannedFile:
    path: str  # relative to the card root, '/'-separated, e.g. "DCIM/100GOPRO/GX010042.MP4"
    size: int
    mtime: float
    kind: Kind
    # seconds, from the container's header (detector/mp4_duration.py); None: unknown or not read
    duration: float | None = None


@dataclass(frozen=True, order=True)
class RecordingKey:
    recording: str  # files with the same recording id are chapters of one recording
    chapter: int  # 1-based order of the chapter within the recording


# GoPro HERO5+: GH/GX (AVC/HEVC) + 2-digit chapter + 4-digit file number; HERO2-4/5 legacy:
# GOPRnnnn is the first chapter and GPccnnnn the following ones.
_GOPRO_NEW = re.compile(r"^(G[HX])(\d{2})(\d{4})$", re.I)
_GOPRO_OLD_FIRST = re.compile(r"^GOPR(\d{4})$", re.I)
_GOPRO_OLD_NEXT = re.compile(r"^GP(\d{2})(\d{4})$", re.I)


def recording_key(name: str) -> RecordingKey:
    """Which recording a file name belongs to, and which chapter it is (pure).

    ``GX010042.MP4``/``GX020042.MP4`` -> (GX0042, 1)/(GX0042, 2); ``GOPR0042.MP4``/``GP010042.MP4``
    -> (GOPR0042, 1)/(GOPR0042, 2); anything else (DJI, Insta360, phones) is its own recording.
    """
    base = name.rsplit("/", 1)[-1]
    stem = base.rsplit(".", 1)[0] if "." in base else base
    if m := _GOPRO_NEW.match(stem):
        prefix, chapter, number = m.groups()
        return RecordingKey(f"{prefix.upper()}{number}", int(chapter))
    if m := _GOPRO_OLD_FIRST.match(stem):
        return RecordingKey(f"GOPR{m.group(1)}", 1)
    if m := _GOPRO_OLD_NEXT.match(stem):
        chapter, number = m.groups()
        return RecordingKey(f"GOPR{number}", int(chapter) + 1)
    return RecordingKey(stem, 1)


def find_dcim(card_root: Path) -> Path | None:
    """The card's DCIM directory (FAT is case-insensitive, so match the name that way)."""
    try:
        with os.scandir(card_root) as entries:
            for entry in entries:
                if entry.name.upper() == "DCIM" and entry.is_dir(follow_symlinks=False):
                    return Path(entry.path)
    except OSError:
        return None
    return None


@dataclass(frozen=True)
class CardScan:
    files: list[ScannedFile]
    skipped: list[SkippedFile]  # not listed, with the reason (sorted by path)


def scan_card(card_root: Path) -> list[ScannedFile]:
    """Every video and proxy file under the card's DCIM/ tree, sorted by path."""
    return scan_card_report(card_root).files


def scan_card_report(card_root: Path) -> CardScan:
    """The card's files (as :func:`scan_card`) and the ones that could not be listed."""
    dcim = find_dcim(card_root)
    if dcim is None:
        return CardScan([], [])
    found: list[ScannedFile] = []
    skipped: list[SkippedFile] = []
    _walk(dcim, dcim.name, found, skipped)
    found.sort(key=lambda f: f.path)
    skipped.sort(key=lambda f: f.path)
    return CardScan(found, skipped)


def _walk(directory: Path, rel: str, out: list[ScannedFile], skipped: list[SkippedFile]) -> None:
    try:
        with os.scandir(directory) as it:
            entries = list(it)
    except OSError as exc:
        # A flaky card: report what could be read rather than nothing.
        logger.warning("cannot list %s: %s", directory, exc)
        return
    for entry in entries:
        if entry.name.startswith("."):
            continue
        path = f"{rel}/{entry.name}"
        try:
            if entry.is_dir(follow_symlinks=False):
                if not is_valid_unicode(entry.name):  # nothing under it could be sent
                    skipped.append(
                        SkippedFile(path=printable(path), reason="folder name is not valid Unicode")
                    )
                    continue
                _walk(Path(entry.path), path, out, skipped)
                continue
            if not entry.is_file(follow_symlinks=False):
                continue
            kind = classify(entry.name)
            if kind == "other":
                continue
            check_relative_path(path)
            st = entry.stat(follow_symlinks=False)
        except ValueError as exc:
            skipped.append(SkippedFile(path=printable(path), reason=str(exc)[:200]))
            continue
        except OSError as exc:
            logger.warning("cannot stat %s: %s", printable(path), exc)
            continue
        out.append(ScannedFile(path, st.st_size, max(st.st_mtime, 0.0), kind))


def recordings(files: list[ScannedFile]) -> dict[str, list[ScannedFile]]:
    """Video files grouped by (directory, recording id), chapters in order (pure)."""
    groups: dict[str, list[ScannedFile]] = {}
    for f in files:
        if f.kind != "video":
            continue
        directory = f.path.rsplit("/", 1)[0]
        key = recording_key(f.path)
        groups.setdefault(f"{directory}/{key.recording}", []).append(f)
    for chapters in groups.values():
        chapters.sort(key=lambda f: recording_key(f.path))
    return groups
