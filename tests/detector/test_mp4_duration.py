"""A clip's duration from its MP4/MOV header (detector/mp4_duration.py): real GoPro files,
files written by PyAV, hand-built boxes, a sparse 4 GB chapter (bytes read counted), garbage."""

from __future__ import annotations

import os
import struct
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from detector.listing import read_card, valid_entries
from detector.mp4_duration import duration_of, read_duration
from detector.volume import Volume

GOPRO = Path(__file__).resolve().parents[3] / "shared" / "media" / "gopro"
GIB = 1 << 30


def _gopro(name: str) -> Path:
    path = GOPRO / name
    if not path.exists():
        pytest.skip(f"{path} is not here (the shared GoPro media)")
    return path


# --- hand-built boxes ---------------------------------------------------------------------


def box(kind: bytes, body: bytes = b"", *, large: bool = False) -> bytes:
    if large:
        return struct.pack(">I4sQ", 1, kind, 16 + len(body)) + body
    return struct.pack(">I4s", 8 + len(body), kind) + body


def mvhd(timescale: int, duration: int, version: int = 0) -> bytes:
    if version == 1:
        body = struct.pack(">B3xQQIQ", 1, 0, 0, timescale, duration)
    else:
        body = struct.pack(">B3xIIII", version, 0, 0, timescale, duration)
    return box(b"mvhd", body + b"\x00" * 80)  # rate, volume, matrix, next track id...


def tkhd(duration: int, version: int = 0) -> bytes:
    if version == 1:
        body = struct.pack(">B3xQQIIQ", 1, 0, 0, 1, 0, duration)
    else:
        body = struct.pack(">B3xIIIII", 0, 0, 0, 1, 0, duration)
    return box(b"tkhd", body + b"\x00" * 60)


def trak(duration: int, version: int = 0) -> bytes:
    return box(b"trak", tkhd(duration, version) + box(b"mdia", b"\x00" * 40))


FTYP = box(b"ftyp", b"isom\x00\x00\x02\x00isomiso2avc1mp41")


def moov(timescale: int = 1000, duration: int = 12_500, *tracks: bytes, version: int = 0) -> bytes:
    body = mvhd(timescale, duration, version) + box(b"udta", b"x" * 30) + b"".join(tracks)
    return box(b"moov", body)


def parse(data: bytes) -> float | None:
    import io

    return duration_of(io.BytesIO(data), len(data))


def test_the_two_real_gopro_files_read_as_ffprobe_reads_them() -> None:
    # ffprobe's format duration: the longest track (GoPro's telemetry outlasts the video).
    assert read_duration(_gopro("karma.mp4")) == pytest.approx(13.013, abs=1e-3)
    assert read_duration(_gopro("max-heromode.mp4")) == pytest.approx(10.543, abs=1e-3)


def test_moov_after_mdat_and_moov_before_mdat() -> None:
    mdat = box(b"mdat", b"\x00" * 5000)
    assert parse(FTYP + mdat + moov(1000, 12_500)) == 12.5
    assert parse(FTYP + moov(1000, 12_500) + mdat) == 12.5
    assert parse(FTYP + box(b"free", b"\x00" * 7) + moov(600, 300)) == 0.5


def test_versions_and_the_longest_track() -> None:
    assert parse(FTYP + moov(90_000, 90_000 * 61, version=1)) == 61.0
    longer_track = moov(1000, 12_078, trak(12_078), trak(13_013))
    assert parse(FTYP + longer_track) == 13.013
    assert parse(FTYP + moov(1000, 5_000, trak(5_500, version=1))) == 5.5
    # a track of unknown duration (all ones) does not count
    assert parse(FTYP + moov(1000, 5_000, trak(0xFFFFFFFF))) == 5.0


def test_64_bit_sizes_and_a_last_box_to_the_end_of_the_file() -> None:
    mdat64 = box(b"mdat", b"\x00" * 100, large=True)
    assert parse(FTYP + mdat64 + moov(1000, 2_000)) == 2.0
    to_end = struct.pack(">I4s", 0, b"moov") + mvhd(1000, 3_000)  # size 0: runs to the end
    assert parse(FTYP + to_end) == 3.0


def test_a_file_written_by_pyav_reads_as_pyav_reads_it(tmp_path: Path) -> None:
    for name, options in (("clip.mp4", {}), ("clip.mov", {"movflags": "faststart"})):
        path = tmp_path / name
        with av.open(str(path), mode="w", options=options) as out:
            stream = out.add_stream("libx264", rate=25)
            stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
            stream.time_base = Fraction(1, 25)
            for i in range(50):  # 2 s
                frame = av.VideoFrame.from_ndarray(np.full((48, 64), i * 4, np.uint8), "gray")
                frame.pts = i
                out.mux(stream.encode(frame))
            out.mux(stream.encode(None))
        with av.open(str(path)) as probe:
            expected = probe.duration / 1e6 if probe.duration else None
        assert expected is not None
        assert read_duration(path) == pytest.approx(expected, abs=0.05), name
        assert read_duration(path) == pytest.approx(2.0, abs=0.1)


class Counting:
    """A binary file that counts the bytes and reads asked of it."""

    def __init__(self, path: Path) -> None:
        self.f = open(path, "rb", buffering=0)  # noqa: SIM115 - closed by the test
        self.bytes = 0
        self.reads = 0

    def seek(self, offset: int, whence: int = 0, /) -> int:
        return self.f.seek(offset, whence)

    def read(self, size: int = -1, /) -> bytes | None:
        data = self.f.read(size)
        self.reads += 1
        self.bytes += len(data or b"")
        return data


def test_a_4_gb_chapter_costs_a_few_hundred_bytes_of_io(tmp_path: Path) -> None:
    """A sparse 4 GB file laid out like a GoPro chapter: ftyp, a 64-bit mdat, moov at the end."""
    path = tmp_path / "GX010042.MP4"
    tail = moov(90_000, 90_000 * 530, *(trak(90_000 * 530) for _ in range(5)))
    mdat_size = 4 * GIB
    with open(path, "wb") as f:
        f.write(FTYP)
        f.write(struct.pack(">I4sQ", 1, b"mdat", mdat_size))
        f.seek(len(FTYP) + mdat_size)
        f.write(tail)
    size = path.stat().st_size
    assert size > 4 * GIB
    counting = Counting(path)
    try:
        started = time.perf_counter()
        assert duration_of(counting, size) == 530.0
        elapsed_ms = (time.perf_counter() - started) * 1000
    finally:
        counting.f.close()
    assert counting.bytes < 1024, counting.bytes
    assert counting.reads < 40, counting.reads
    print(f"4 GB chapter: {counting.reads} reads, {counting.bytes} bytes, {elapsed_ms:.3f} ms")
    assert read_duration(path) == 530.0


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x00" * 4096,
        os.urandom(4096),
        b"this is a text file, not a video at all\n" * 50,
        FTYP,  # no moov
        FTYP + box(b"mdat", b"\x00" * 64),  # no moov
        FTYP + box(b"mdat", b"\x00" * 64)[:-20],  # mdat runs past the end: truncated
        FTYP + struct.pack(">I4s", 1_000_000, b"mdat") + b"\x00" * 100,  # card pulled mid-clip
        FTYP + moov(1000, 2_000)[:-10],  # moov cut short
        FTYP + moov(1000, 2_000)[:30],  # mvhd cut short
        FTYP + struct.pack(">I4s", 4, b"mdat") + moov(),  # a box smaller than its header
        FTYP + struct.pack(">I4sQ", 1, b"mdat", 3) + moov(),  # 64-bit size under its header
        FTYP + moov(0, 2_000),  # timescale 0
        FTYP + moov(1000, 0),  # zero duration
        FTYP + moov(1000, 0xFFFFFFFF),  # "unknown"
        FTYP + moov(1000, 0xFFFFFFFFFFFFFFFF, version=1),  # "unknown", 64-bit
        FTYP + moov(1, 90_000_000),  # over 24 h: a corrupt header
        FTYP + box(b"moov", box(b"mvhd", b"\x02" + b"\x00" * 100)),  # mvhd version 2
        FTYP + box(b"moov", box(b"udta", b"x")),  # moov without mvhd
        box(b"moov", b"\x00\x00\x00\x00\xff\xff\xff\xff"),  # child box of no type
        b"\x00\x00\x00\x10\x00\x01\x02\x03" + b"\x00" * 100,  # first "box" is no box type
    ],
)
def test_garbage_and_truncated_files_are_unknown(data: bytes, tmp_path: Path) -> None:
    assert parse(data) is None
    path = tmp_path / "GX010001.MP4"
    path.write_bytes(data)
    assert read_duration(path) is None


def test_a_real_clip_cut_anywhere_is_unknown_or_its_duration(tmp_path: Path) -> None:
    data = _gopro("karma.mp4").read_bytes()
    for cut in (0, 7, 20, 28, 4096, len(data) // 2, len(data) - 18_663, len(data) - 1):
        path = tmp_path / f"cut{cut}.MP4"
        path.write_bytes(data[:cut])
        assert read_duration(path) is None, cut


def test_unreadable_paths_and_other_containers_are_unknown(tmp_path: Path) -> None:
    assert read_duration(tmp_path / "missing.MP4") is None
    folder = tmp_path / "folder.MP4"
    folder.mkdir()
    assert read_duration(folder) is None
    avi = tmp_path / "clip.AVI"
    avi.write_bytes(FTYP + moov(1000, 2_000))
    assert read_duration(avi) is None  # not an ISO-BMFF container by its extension
    upper = tmp_path / "CLIP.MOV"
    upper.write_bytes(FTYP + moov(1000, 2_000))
    assert read_duration(upper) == 2.0


def test_the_card_listing_sends_each_video_s_duration(tmp_path: Path) -> None:
    root = tmp_path / "card"
    folder = root / "DCIM" / "100GOPRO"
    folder.mkdir(parents=True)
    (folder / "GX010001.MP4").write_bytes(_gopro("karma.mp4").read_bytes())
    (folder / "GX010002.MP4").write_bytes(FTYP + box(b"mdat", b"\x00" * 64))  # no moov
    (folder / "GL010001.LRV").write_bytes(FTYP + moov(1000, 13_000))  # a proxy: not read
    card = read_card(Volume("card-1", root))
    entries, skipped = valid_entries(card.files)
    assert skipped == []
    got = {e.path.rsplit("/", 1)[-1]: e.duration for e in entries}
    assert got["GX010001.MP4"] == pytest.approx(13.013, abs=1e-3)
    assert got["GX010002.MP4"] is None
    assert got["GL010001.LRV"] is None
