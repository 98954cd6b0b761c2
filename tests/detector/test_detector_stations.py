"""Two stations, one share: temp names of their own, and a failed rename named for what it is."""

from __future__ import annotations

import errno
import io
from collections.abc import Iterator
from pathlib import Path

import pytest
from copy_harness import RealFile, write_file
from hypothesis import given
from hypothesis import strategies as st
from support import small_disk

from detector.copy import (
    MAX_NAME_BYTES,
    CopyFailed,
    RawSink,
    copy_file,
    is_no_space,
    open_partial,
    partial_path,
    station_tag,
)


@given(st.text(min_size=1, max_size=300), st.text(max_size=80), st.text(max_size=80))
def test_partial_names_are_per_station_and_fit_a_file_name(name: str, one: str, two: str) -> None:
    name = name.replace("/", "_").replace("\0", "_")
    final = Path("/share/cards/c") / (name if name not in (".", "..") else "x")
    a, b = partial_path(final, one), partial_path(final, two)
    assert a.parent == b.parent == final.parent
    assert len(a.name.encode(errors="surrogatepass")) <= MAX_NAME_BYTES + 60
    assert a.name.startswith(".") and a.name.endswith(".skyreel-partial")
    if station_tag(one) != station_tag(two):
        assert a != b
    assert partial_path(final, one) == a  # the same station, the same name: stale ones replaced


def test_station_tags_are_file_name_safe() -> None:
    assert station_tag("hangar-1") == "hangar-1"
    assert station_tag("../evil/x y") == "_evil_x_y"
    assert len(station_tag("s" * 500)) == 40
    assert is_no_space(OSError(errno.ENOSPC, "full"))
    assert is_no_space(OSError(errno.EDQUOT, "quota"))
    assert not is_no_space(OSError(errno.EIO, "io"))


def test_a_station_never_touches_another_stations_partial(tmp_path: Path) -> None:
    card, share = tmp_path / "card", tmp_path / "share"
    data = write_file(card / "a.MP4", 3 * 1024 * 1024)
    final = share / "x/a.MP4"
    final.parent.mkdir(parents=True)
    theirs = partial_path(final, "hangar-2")
    theirs.write_bytes(b"in flight at the other station")
    ours_stale = partial_path(final, "hangar-1")
    ours_stale.write_bytes(b"left by our own killed copy")
    copy_file(card / "a.MP4", share, "x/a.MP4", len(data), station="hangar-1")
    assert final.read_bytes() == data
    assert theirs.read_bytes() == b"in flight at the other station"
    assert not ours_stale.exists()


class VanishingSink(RealFile):
    """The real temp file, unlinked when it is closed (another process removed it)."""

    def __init__(self, path: Path) -> None:
        super().__init__(open_partial(path))
        self.path = path

    def write(self, data: memoryview) -> int:  # type: ignore[override]
        return self.raw.write(data) or 0

    def close(self) -> None:
        if not self.closed:
            self.raw.close()
            self.path.unlink(missing_ok=True)
        super().close()


def test_temp_file_gone_at_the_rename_is_a_destination_error(tmp_path: Path) -> None:
    card, share = tmp_path / "card", tmp_path / "share"
    share.mkdir()
    write_file(card / "a.MP4", 100_000)

    def writer(path: Path) -> RawSink:
        return VanishingSink(path)

    with pytest.raises(CopyFailed) as info:
        copy_file(card / "a.MP4", share, "x/a.MP4", 100_000, writer=writer, station="s1")
    assert info.value.kind == "destination"
    assert "destination error (ENOENT)" in info.value.reason
    assert "temp file was gone" in info.value.reason
    assert "source disappeared" not in info.value.reason


def test_rename_onto_a_directory_is_a_destination_error(tmp_path: Path) -> None:
    card, share = tmp_path / "card", tmp_path / "share"
    write_file(card / "a.MP4", 100_000)
    (share / "x/a.MP4/inside").mkdir(parents=True)  # something else holds the final name
    with pytest.raises(CopyFailed) as info:
        copy_file(card / "a.MP4", share, "x/a.MP4", 100_000, station="s1")
    assert info.value.kind == "destination"
    assert info.value.reason.startswith("destination error (")
    assert [p for p in share.rglob("*") if ".skyreel-partial" in p.name] == []


@pytest.fixture
def tiny_share(tmp_path: Path) -> Iterator[Path]:
    """A real 4 MiB file system."""
    with small_disk(tmp_path / "tiny", "4m") as mnt:
        yield mnt


class FillingSink(io.RawIOBase):
    """The real temp file; after its first write another writer fills the file system."""

    def __init__(self, path: Path, filler: Path) -> None:
        self.raw = open_partial(path)
        self.filler = filler

    def write(self, data: memoryview) -> int:  # type: ignore[override]
        n = self.raw.write(data) or 0
        if not self.filler.exists():
            with self.filler.open("wb") as fh, pytest.raises(OSError) as full:
                while True:
                    fh.write(b"\0" * 65536)
            assert full.value.errno == errno.ENOSPC
        return n

    def fileno(self) -> int:
        return self.raw.fileno()

    def close(self) -> None:
        self.raw.close()
        super().close()


def test_share_filling_up_mid_copy_is_no_space_and_leaves_no_partial(
    tmp_path: Path, tiny_share: Path
) -> None:
    card = tmp_path / "card"
    write_file(card / "a.MP4", 2 * 1024 * 1024)
    filler = tiny_share / "other-writer"

    def writer(path: Path) -> RawSink:
        return FillingSink(path, filler)

    with pytest.raises(CopyFailed) as info:
        copy_file(
            card / "a.MP4",
            tiny_share,
            "x/a.MP4",
            2 * 1024 * 1024,
            chunk_size=256 * 1024,
            writer=writer,
            station="s1",
        )
    assert info.value.kind == "no_space" and info.value.retryable
    assert info.value.reason.startswith("destination full (ENOSPC)")
    assert [p for p in tiny_share.rglob("*") if ".skyreel-partial" in p.name] == []
    assert not (tiny_share / "x/a.MP4").exists()


def test_a_copy_that_cannot_fit_is_refused_before_writing(tmp_path: Path, tiny_share: Path) -> None:
    card = tmp_path / "card"
    write_file(card / "a.MP4", 6 * 1024 * 1024)
    with pytest.raises(CopyFailed) as info:
        copy_file(card / "a.MP4", tiny_share, "x/a.MP4", 6 * 1024 * 1024, station="s1")
    assert info.value.kind == "no_space"
    assert "bytes free" in info.value.reason
    assert not (tiny_share / "x/a.MP4").exists()
