"""Helpers of the copy tests: card files of a known pattern, and real files that misbehave."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path


def write_file(path: Path, size: int, seed: int = 0) -> bytes:
    """A card file of ``size`` bytes of a pattern of ``seed``; returns its bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    block = hashlib.sha256(str(seed).encode()).digest() * 4096  # 128 KiB pattern
    data = (block * (size // len(block) + 1))[:size]
    path.write_bytes(data)
    return data


class RealFile(io.RawIOBase):
    """A real open file (``raw``) behind a wrapper that a test makes misbehave."""

    def __init__(self, raw: io.RawIOBase) -> None:
        self.raw = raw

    def fileno(self) -> int:
        return self.raw.fileno()

    def close(self) -> None:
        self.raw.close()
        super().close()
