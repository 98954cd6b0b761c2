from __future__ import annotations

import errno
import io
import os
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import xxhash
from copy_harness import RealFile, write_file
from support import small_disk

from detector.copy import (
    CopyFailed,
    CopyRefused,
    RawSink,
    RawSource,
    copy_file,
    open_partial,
    open_source,
    partial_path,
)


def _leftovers(share: Path) -> list[str]:
    return sorted(p.name for p in share.rglob("*") if p.name.endswith(".skyreel-partial"))


@pytest.fixture
def dirs(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    card, share = tmp_path / "card", tmp_path / "share"
    card.mkdir()
    share.mkdir()
    yield card, share


@pytest.mark.parametrize("size", [0, 1, 5 * 1024 * 1024 + 3])
def test_copy_is_byte_identical_and_reports_xxh3(dirs: tuple[Path, Path], size: int) -> None:
    card, share = dirs
    data = write_file(card / "GX010001.MP4", size)
    seen: list[int] = []
    out = copy_file(
        card / "GX010001.MP4",
        share,
        "jumps/j1/GX010001.MP4",
        size,
        chunk_size=1024 * 1024,
        progress=lambda done, total: seen.append(done),
    )
    assert (share / "jumps/j1/GX010001.MP4").read_bytes() == data
    assert out.hash == xxhash.xxh3_128(data).hexdigest() and out.size == size
    assert not out.skipped and out.algo == "xxh3_128"
    assert seen == sorted(seen) and (size == 0 or seen[-1] == size)
    assert _leftovers(share) == []


@pytest.mark.slow
def test_copy_of_a_large_file_with_readback(dirs: tuple[Path, Path]) -> None:
    card, share = dirs
    size = 150 * 1024 * 1024 + 12345
    write_file(card / "GX010002.MP4", size, seed=2)
    out = copy_file(card / "GX010002.MP4", share, "big/GX010002.MP4", size)
    dest = share / "big/GX010002.MP4"
    assert dest.stat().st_size == size
    assert subprocess.run(["cmp", card / "GX010002.MP4", dest]).returncode == 0
    assert out.hash == xxhash.xxh3_128((card / "GX010002.MP4").read_bytes()).hexdigest()


def test_already_present_is_not_copied_again(dirs: tuple[Path, Path]) -> None:
    card, share = dirs
    write_file(card / "a.MP4", 100_000)
    first = copy_file(card / "a.MP4", share, "x/a.MP4", 100_000)
    inode = (share / "x/a.MP4").stat().st_ino
    second = copy_file(card / "a.MP4", share, "x/a.MP4", 100_000)
    assert second.skipped and second.hash == first.hash
    assert (share / "x/a.MP4").stat().st_ino == inode


def test_present_with_other_bytes_of_same_size_is_replaced(dirs: tuple[Path, Path]) -> None:
    card, share = dirs
    data = write_file(card / "a.MP4", 100_000, seed=1)
    write_file(share / "x/a.MP4", 100_000, seed=2)
    out = copy_file(card / "a.MP4", share, "x/a.MP4", 100_000)
    assert not out.skipped and (share / "x/a.MP4").read_bytes() == data


def test_preexisting_partial_temp_file_is_replaced(dirs: tuple[Path, Path], tmp_path: Path) -> None:
    card, share = dirs
    data = write_file(card / "a.MP4", 300_000)
    (share / "x").mkdir()
    partial_path(share / "x/a.MP4").write_bytes(b"stale" * 100_000)
    copy_file(card / "a.MP4", share, "x/a.MP4", 300_000)
    assert (share / "x/a.MP4").read_bytes() == data and _leftovers(share) == []


def test_partial_planted_as_symlink_does_not_write_outside(
    dirs: tuple[Path, Path], tmp_path: Path
) -> None:
    card, share = dirs
    write_file(card / "a.MP4", 1000)
    victim = tmp_path / "victim"
    victim.write_bytes(b"keep")
    (share / "x").mkdir()
    os.symlink(victim, partial_path(share / "x/a.MP4"))
    copy_file(card / "a.MP4", share, "x/a.MP4", 1000)
    assert victim.read_bytes() == b"keep"


@pytest.mark.parametrize("dest", ["../escape.MP4", "a/../../escape.MP4", "/tmp/abs.MP4", "evil/x"])
def test_destination_escaping_the_share_is_refused(
    dirs: tuple[Path, Path], tmp_path: Path, dest: str
) -> None:
    card, share = dirs
    write_file(card / "a.MP4", 10)
    os.symlink(tmp_path, share / "evil")
    with pytest.raises(CopyRefused, match="destination refused"):
        copy_file(card / "a.MP4", share, dest, 10)
    assert not (tmp_path / "escape.MP4").exists() and not (tmp_path / "x").exists()


def test_source_size_differing_from_the_request_is_refused(dirs: tuple[Path, Path]) -> None:
    card, share = dirs
    write_file(card / "a.MP4", 10)
    with pytest.raises(CopyRefused, match="card changed"):
        copy_file(card / "a.MP4", share, "a.MP4", 11)
    assert list(share.iterdir()) == []


def test_missing_source_fails_retryably(dirs: tuple[Path, Path]) -> None:
    card, share = dirs
    with pytest.raises(CopyFailed, match="card removed") as info:
        copy_file(card / "gone.MP4", share, "a.MP4", 10)
    assert info.value.retryable


def test_source_shrinking_mid_copy_fails_and_leaves_no_partial(dirs: tuple[Path, Path]) -> None:
    card, share = dirs
    src = card / "a.MP4"
    write_file(src, 4 * 1024 * 1024)

    def truncate_once(done: int, total: int) -> None:
        if done == 64 * 1024:
            os.truncate(src, 100 * 1024)  # the card's file changes under the reader

    with pytest.raises(CopyFailed, match="changed size"):
        copy_file(
            src, share, "a.MP4", 4 * 1024 * 1024, chunk_size=64 * 1024, progress=truncate_once
        )
    assert list(share.iterdir()) == []


class FailingSource(RealFile):
    """A real card file that raises EIO after ``limit`` bytes (the card was pulled)."""

    def __init__(self, path: Path, limit: int) -> None:
        super().__init__(open_source(path))
        self.limit = limit
        self.done = 0

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        if self.done >= self.limit:
            raise OSError(errno.EIO, "Input/output error")
        n = self.raw.readinto(buffer) or 0
        self.done += n
        return n


class FullSink(RealFile):
    """The real temp file, raising ENOSPC once ``limit`` bytes are written (disk full)."""

    def __init__(self, path: Path, limit: int) -> None:
        super().__init__(open_partial(path))
        self.limit = limit
        self.done = 0

    def write(self, data: memoryview) -> int:  # type: ignore[override]
        if self.done + len(data) > self.limit:
            raise OSError(errno.ENOSPC, "No space left on device")
        n = self.raw.write(data) or 0
        self.done += n
        return n


def test_eio_mid_copy_fails_and_removes_the_partial(dirs: tuple[Path, Path]) -> None:
    card, share = dirs
    write_file(card / "a.MP4", 2 * 1024 * 1024)

    def opener(path: Path) -> RawSource:
        return FailingSource(path, 512 * 1024)

    with pytest.raises(CopyFailed, match="I/O error") as info:
        copy_file(
            card / "a.MP4", share, "x/a.MP4", 2 * 1024 * 1024, chunk_size=128 * 1024, opener=opener
        )
    assert info.value.retryable
    assert _leftovers(share) == [] and not (share / "x/a.MP4").exists()


def test_enospc_from_the_writer_fails_and_removes_the_partial(dirs: tuple[Path, Path]) -> None:
    card, share = dirs
    write_file(card / "a.MP4", 2 * 1024 * 1024)

    def writer(path: Path) -> RawSink:
        return FullSink(path, 700 * 1024)

    with pytest.raises(CopyFailed, match="destination full"):
        copy_file(
            card / "a.MP4", share, "x/a.MP4", 2 * 1024 * 1024, chunk_size=128 * 1024, writer=writer
        )
    assert _leftovers(share) == [] and not (share / "x/a.MP4").exists()


@pytest.fixture
def tiny_share(tmp_path: Path) -> Iterator[Path]:
    """A real 5 MiB file system."""
    with small_disk(tmp_path / "tiny", "5m") as mnt:
        yield mnt


def test_really_full_disk_fails_cleanly_and_next_file_still_copies(
    dirs: tuple[Path, Path], tiny_share: Path
) -> None:
    card, _ = dirs
    write_file(card / "big.MP4", 8 * 1024 * 1024)
    small = write_file(card / "small.MP4", 1024 * 1024, seed=3)
    with pytest.raises(CopyFailed, match="destination full"):
        copy_file(card / "big.MP4", tiny_share, "j/big.MP4", 8 * 1024 * 1024, chunk_size=256 * 1024)
    assert _leftovers(tiny_share) == [] and not (tiny_share / "j/big.MP4").exists()
    copy_file(card / "small.MP4", tiny_share, "j/small.MP4", 1024 * 1024)
    assert (tiny_share / "j/small.MP4").read_bytes() == small


def test_cancel_stops_the_copy_and_removes_the_partial(dirs: tuple[Path, Path]) -> None:
    card, share = dirs
    write_file(card / "a.MP4", 2 * 1024 * 1024)
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(CopyFailed, match="cancelled"):
        copy_file(
            card / "a.MP4", share, "a.MP4", 2 * 1024 * 1024, chunk_size=64 * 1024, cancel=cancel
        )
    assert _leftovers(share) == [] and not (share / "a.MP4").exists()


def test_source_is_opened_read_only_and_left_untouched(dirs: tuple[Path, Path]) -> None:
    card, share = dirs
    data = write_file(card / "a.MP4", 50_000)
    os.utime(card / "a.MP4", (1_600_000_000, 1_600_000_000))
    raw = open_source(card / "a.MP4")
    try:
        with pytest.raises(io.UnsupportedOperation):
            raw.write(memoryview(b"x"))  # type: ignore[attr-defined]
    finally:
        raw.close()
    copy_file(card / "a.MP4", share, "a.MP4", 50_000)
    st = (card / "a.MP4").stat()
    assert (card / "a.MP4").read_bytes() == data and st.st_mtime == 1_600_000_000
    assert sorted(p.name for p in card.iterdir()) == ["a.MP4"]


class CorruptingSink(FullSink):
    """The real temp file, with one byte flipped on its way to the disk (bad RAM, bad share)."""

    def write(self, data: memoryview) -> int:  # type: ignore[override]
        chunk = bytearray(data)
        if self.done == 0 and chunk:
            chunk[0] ^= 0xFF
        n = self.raw.write(memoryview(chunk)) or 0
        self.done += n
        return n


def test_readback_catches_bytes_that_differ_on_the_share(dirs: tuple[Path, Path]) -> None:
    card, share = dirs
    write_file(card / "a.MP4", 300_000)

    def writer(path: Path) -> RawSink:
        return CorruptingSink(path, 1 << 40)

    with pytest.raises(CopyFailed, match="read-back hash"):
        copy_file(card / "a.MP4", share, "a.MP4", 300_000, writer=writer)
    assert list(share.iterdir()) == []
