"""Fixtures of the telemetry tests: the real GoPro files and compressed synthetic jumps."""

from __future__ import annotations

from pathlib import Path

import pytest

from agents.telemetry.profile import JumpProfile, draw_params, generate

# The two real GoPro files (shared/media/gopro, beside the repository; see its README).
GOPRO_MEDIA = Path(__file__).resolve().parents[4] / "shared" / "media" / "gopro"


@pytest.fixture(scope="session")
def gopro_media() -> Path:
    assert (GOPRO_MEDIA / "karma.mp4").is_file(), f"the real GoPro files are missing: {GOPRO_MEDIA}"
    return GOPRO_MEDIA


@pytest.fixture(scope="session")
def short_jump() -> JumpProfile:
    """A jump compressed to ~2 minutes (the exit, opening and landing keep their real physics)."""
    return generate(draw_params(7, compress=0.2))
