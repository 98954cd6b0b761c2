from __future__ import annotations

import os
from pathlib import Path, PurePosixPath, PureWindowsPath

import pytest

from detector.paths import PathRefused, confine, native_relative


def test_windows_mapping_of_a_card_relative_path() -> None:
    rel = native_relative("DCIM/100GOPRO/GX010042.MP4", PureWindowsPath)
    assert PureWindowsPath("E:\\") / rel == PureWindowsPath("E:\\DCIM\\100GOPRO\\GX010042.MP4")
    assert str(native_relative("a/b.mp4", PurePosixPath)) == "a/b.mp4"


@pytest.mark.parametrize(
    "rel",
    ["../etc/passwd", "a/../../x", "/etc/passwd", "C:/x", "a\\b", "a//b", "./a", "", "a\x00b"],
)
def test_escaping_paths_are_refused_in_both_flavours(rel: str) -> None:
    for flavour in (PurePosixPath, PureWindowsPath):
        with pytest.raises(PathRefused):
            native_relative(rel, flavour)


@pytest.mark.parametrize("rel", ["CON.mp4", "a/nul", "a/b:stream", "a/b.", "a/b ", "a/c?d"])
def test_windows_special_names_are_refused_on_windows(rel: str) -> None:
    with pytest.raises(PathRefused):
        native_relative(rel, PureWindowsPath)


def test_confine_refuses_a_symlink_leading_out(tmp_path: Path) -> None:
    share = tmp_path / "share"
    outside = tmp_path / "outside"
    share.mkdir()
    outside.mkdir()
    os.symlink(outside, share / "evil")
    assert confine(share, "ok/file.mp4") == share.resolve() / "ok/file.mp4"
    with pytest.raises(PathRefused, match="outside"):
        confine(share, "evil/file.mp4")
    os.symlink(outside / "f.mp4", share / "link.mp4")
    with pytest.raises(PathRefused):
        confine(share, "link.mp4")
