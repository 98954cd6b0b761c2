from __future__ import annotations

import os
from pathlib import Path

import pytest

from detector.scan import RecordingKey, recording_key, recordings, scan_card


def _file(path: Path, size: int, mtime: float = 1_700_000_000.0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)
    os.utime(path, (mtime, mtime))


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("GX010042.MP4", RecordingKey("GX0042", 1)),
        ("GX020042.MP4", RecordingKey("GX0042", 2)),
        ("gh030007.mp4", RecordingKey("GH0007", 3)),
        ("GOPR0042.MP4", RecordingKey("GOPR0042", 1)),
        ("GP010042.MP4", RecordingKey("GOPR0042", 2)),
        ("DCIM/100GOPRO/GP020042.MP4", RecordingKey("GOPR0042", 3)),
        ("DJI_0001.MP4", RecordingKey("DJI_0001", 1)),
        ("VID_20240101.mov", RecordingKey("VID_20240101", 1)),
    ],
)
def test_recording_key(name: str, key: RecordingKey) -> None:
    assert recording_key(name) == key


def test_gopro_hevc_and_avc_with_same_number_are_different_recordings() -> None:
    assert recording_key("GX010042.MP4").recording != recording_key("GH010042.MP4").recording


def test_scan_lists_videos_and_proxies_under_dcim_only(tmp_path: Path) -> None:
    card = tmp_path / "card"
    _file(card / "DCIM/100GOPRO/GX010042.MP4", 30, 1_700_000_100)
    _file(card / "DCIM/100GOPRO/GX020042.MP4", 20)
    _file(card / "DCIM/100GOPRO/GL010042.LRV", 5)
    _file(card / "DCIM/100GOPRO/GX010042.THM", 2)
    _file(card / "DCIM/101GOPRO/nested/deeper/DJI_0001.MOV", 7)
    _file(card / "DCIM/100GOPRO/notes.txt", 3)  # other -> skipped
    _file(card / "DCIM/100GOPRO/._GX010042.MP4", 4)  # macOS AppleDouble -> skipped
    _file(card / "MISC/outside.MP4", 9)  # not under DCIM -> skipped
    _file(card / "top.MP4", 9)
    os.symlink(card / "top.MP4", card / "DCIM/100GOPRO/link.MP4")  # symlinks are not followed

    files = scan_card(card)

    assert [(f.path, f.size, f.kind) for f in files] == [
        ("DCIM/100GOPRO/GL010042.LRV", 5, "proxy"),
        ("DCIM/100GOPRO/GX010042.MP4", 30, "video"),
        ("DCIM/100GOPRO/GX010042.THM", 2, "proxy"),
        ("DCIM/100GOPRO/GX020042.MP4", 20, "video"),
        ("DCIM/101GOPRO/nested/deeper/DJI_0001.MOV", 7, "video"),
    ]
    assert files[1].mtime == 1_700_000_100
    groups = recordings(files)
    assert [f.path for f in groups["DCIM/100GOPRO/GX0042"]] == [
        "DCIM/100GOPRO/GX010042.MP4",
        "DCIM/100GOPRO/GX020042.MP4",
    ]


def test_scan_of_a_card_without_dcim_is_empty(tmp_path: Path) -> None:
    _file(tmp_path / "Videos/GX010001.MP4", 3)
    assert scan_card(tmp_path) == []


def test_scan_finds_lowercase_dcim_and_does_not_read_contents(tmp_path: Path) -> None:
    path = tmp_path / "dcim/100MEDIA/DJI_0002.MP4"
    _file(path, 11)
    path.chmod(0o000)  # unreadable contents: a metadata-only scan still lists it
    try:
        assert [f.path for f in scan_card(tmp_path)] == ["dcim/100MEDIA/DJI_0002.MP4"]
    finally:
        path.chmod(0o644)


def test_a_name_that_is_not_valid_unicode_is_skipped_with_its_reason(tmp_path: Path) -> None:
    """Regression (issue 11): such a name reached the wire and 'surrogates not allowed' killed
    the detector; now it is reported and the rest of the card is listed."""
    from detector.protocol import SkippedFile
    from detector.scan import scan_card_report

    _file(tmp_path / "DCIM/100GOPRO/GX010001.MP4", 3)
    folder = os.fsencode(tmp_path / "DCIM/100GOPRO")
    with open(os.path.join(folder, b"GX01\xff01.MP4"), "wb") as fh:
        fh.write(b"x")
    os.mkdir(os.path.join(os.fsencode(tmp_path / "DCIM"), b"1\xfe1GOPRO"))
    report = scan_card_report(tmp_path)
    assert [f.path for f in report.files] == ["DCIM/100GOPRO/GX010001.MP4"]
    assert report.skipped == [
        SkippedFile(path="DCIM/100GOPRO/GX01\\xff01.MP4", reason="name is not valid Unicode"),
        SkippedFile(path="DCIM/1\\xfe1GOPRO", reason="folder name is not valid Unicode"),
    ]
