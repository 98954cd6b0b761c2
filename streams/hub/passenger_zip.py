"""A ZIP of files written as it is sent: never the whole archive (or a whole file) in memory.

:func:`zip_chunks` is a plain generator over `zipfile` writing to a sink that hands each written
piece on; the archive is unseekable, so each entry carries a data descriptor (zipfile's own
streaming mode, read by every unzip tool). JPEGs are already compressed: entries are stored.
Blocking reads: Starlette's StreamingResponse runs a sync iterator in its thread pool.
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path

CHUNK = 256 * 1024


class _Sink:
    """A write-only file object that keeps what was written until it is taken."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def write(self, data: bytes) -> int:
        self._parts.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        return None

    def take(self) -> bytes:
        out = b"".join(self._parts)
        self._parts.clear()
        return out


def zip_chunks(files: Sequence[tuple[Path, str]], chunk: int = CHUNK) -> Iterator[bytes]:
    """The bytes of a ZIP holding each (path, name in the archive), stored, piece by piece."""
    sink = _Sink()
    with zipfile.ZipFile(sink, mode="w", compression=zipfile.ZIP_STORED) as archive:  # type: ignore[call-overload]
        for path, name in files:
            info = zipfile.ZipInfo.from_file(path, arcname=name)
            info.compress_type = zipfile.ZIP_STORED
            with path.open("rb") as src, archive.open(info, mode="w") as dest:
                while block := src.read(chunk):
                    dest.write(block)
                    if data := sink.take():
                        yield data
            if data := sink.take():
                yield data
    if data := sink.take():
        yield data
