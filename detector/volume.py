"""A camera volume and its identity: what every platform's volume source returns (pure).

``detector/cards.py`` (Linux, watch directories, events) and ``detector/cards_windows.py``
(drive letters) both build on this; see ``detector/cards.py`` for why the fingerprint looks at
the oldest file.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import xxhash

from detector.scan import ScannedFile

__all__ = ["FINGERPRINT_FILES", "Volume", "VolumeSource", "card_fingerprint", "safe_id"]

# One file: with more, a freshly formatted card holding fewer than that many files would change
# its identity each time a jump is added (and its files would look new).
FINGERPRINT_FILES = 1
_UNSAFE_ID = re.compile(r"[^A-Za-z0-9._:\-]+")


@dataclass(frozen=True)
class Volume:
    card_id: str
    root: Path
    label: str = ""


class VolumeSource(Protocol):
    def scan(self) -> list[Volume]: ...


def safe_id(text: str) -> str:
    """``text`` reduced to the protocol's card-id alphabet (pure)."""
    cleaned = _UNSAFE_ID.sub("-", text).strip("-._:")
    return cleaned[:60] or "card"


def card_fingerprint(label: str, files: Sequence[ScannedFile]) -> str:
    """A stable id for a card without a serial: label + the oldest file's metadata (pure)."""
    oldest = sorted(files, key=lambda f: (f.mtime, f.path))[:FINGERPRINT_FILES]
    h = xxhash.xxh3_64()
    h.update(label.encode("utf-8", "surrogateescape"))
    for f in sorted(oldest, key=lambda f: f.path):
        h.update(f"\0{f.path}\0{f.size}\0{int(f.mtime)}".encode("utf-8", "surrogateescape"))
    return h.hexdigest()
