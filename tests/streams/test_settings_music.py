"""The music bed's settings (issue 15): a configured music file must exist and be a file, or the
settings are refused at load with the setting's name and what to do; the level and fades are
bounded."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from streams.settings import Settings


def test_no_music_by_default() -> None:
    s = Settings()
    assert s.edit_music_path is None
    assert (s.edit_music_level_db, s.edit_music_fade_in_s, s.edit_music_fade_out_s) == (
        -18.0, 2.0, 3.0,
    )  # fmt: skip


def test_a_configured_music_file_is_taken(tmp_path: Path) -> None:
    bed = tmp_path / "bed.mp3"
    bed.write_bytes(b"ID3")
    s = Settings(edit_music_path=bed, edit_music_level_db=-24, edit_music_fade_out_s=0)
    assert s.edit_music_path == bed and s.edit_music_level_db == -24


def test_a_missing_music_file_is_refused_at_load(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = tmp_path / "no-such-bed.mp3"
    monkeypatch.setenv("SKYREEL_EDIT_MUSIC_PATH", str(missing))
    with pytest.raises(ValidationError) as caught:
        Settings()
    message = str(caught.value)
    assert f"SKYREEL_EDIT_MUSIC_PATH '{missing}' does not exist" in message
    assert "point it at an audio file" in message and "unset it" in message


def test_a_folder_as_music_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match=r"SKYREEL_EDIT_MUSIC_PATH .* is not a file"):
        Settings(edit_music_path=tmp_path)


@pytest.mark.parametrize(
    "field",
    [
        {"edit_music_level_db": 1.0},
        {"edit_music_level_db": -61.0},
        {"edit_music_fade_in_s": -0.5},
        {"edit_music_fade_out_s": 61.0},
    ],
)
def test_music_levels_and_fades_are_bounded(field: dict[str, float]) -> None:
    with pytest.raises(ValidationError):
        Settings(**field)  # type: ignore[arg-type]
