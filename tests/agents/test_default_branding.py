"""Default branding (agents/render/default_branding.py): an intro card and a text watermark made
from the dropzone name with real FFmpeg, cached on the share; renders get them by default."""

from __future__ import annotations

import logging
import os
from datetime import UTC, datetime
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from agents.render.branding import Branding
from agents.render.default_branding import (
    CardInputs,
    branding_mapping,
    intro_args,
    job_branding,
    log_branding,
    prepare_branding,
    prepared_for,
)
from agents.render.identity import output_name
from agents.render.job import SessionOutput, probe_clip, render_session
from agents.render.worker import config_from
from benchmarks._render_media import make_clip, make_logo
from streams.settings import Settings

W, H = 320, 180
FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")


def branded(tmp_path: Path, **extra: object) -> Settings:
    """Settings with the defaults on (the suite turns them off in conftest)."""
    values: dict[str, object] = {
        "share_root": tmp_path / "share",
        "data_dir": tmp_path / "data",
        "dropzone_name": "Skydive Fjord",
        "render_width": W,
        "render_height": H,
        "render_fps": 15,
        "render_preset": "ultrafast",
        "branding_intro": None,
        "branding_logo": None,
    }
    values.update(extra)
    return Settings(**values)  # type: ignore[arg-type]


def frame_at(path: Path, seconds: float) -> np.ndarray:
    with av.open(str(path)) as c:
        for frame in c.decode(video=0):
            if frame.time is not None and frame.time >= seconds:
                return frame.to_ndarray(format="rgb24").astype(np.int16)
    raise AssertionError(f"no frame at {seconds}s in {path}")


def duration_of(path: Path) -> float:
    with av.open(str(path)) as c:
        return float(c.duration or 0) / 1e6


# --- settings and words (pure) --------------------------------------------------------------


def test_off_words_and_unset_in_settings() -> None:
    s = Settings(branding_intro="false", branding_logo="off")
    assert s.branding_intro is False and s.branding_logo is False
    assert "intro_path" not in s.branding() and "logo_path" not in s.branding()
    assert Settings(branding_intro="", branding_logo=None).branding_intro is None
    assert Settings(branding_intro="/x/intro.mp4").branding_intro == Path("/x/intro.mp4")


def test_summary_line_says_which_branding_is_used() -> None:
    line = Settings(dropzone_name="Sky Voss", branding_intro=None, branding_logo=None)
    assert line.branding_summary() == (
        "branding: intro generated from dropzone name 'Sky Voss', "
        "watermark generated from dropzone name 'Sky Voss', title on"
    )
    other = Settings(branding_intro=False, branding_logo=Path("/b/logo.png"), branding_title=False)
    assert other.branding_summary() == (
        "branding: intro off, watermark file /b/logo.png, title off"
    )


def test_card_key_follows_its_inputs(tmp_path: Path) -> None:
    base = CardInputs("intro", "Sky", 320, 180, 15, 2.5, FONT)
    assert base.key() == CardInputs("intro", "Sky", 320, 180, 15, 2.5, FONT).key()
    for other in (
        CardInputs("intro", "Sky 2", 320, 180, 15, 2.5, FONT),
        CardInputs("intro", "Sky", 640, 360, 15, 2.5, FONT),
        CardInputs("intro", "Sky", 320, 180, 15, 3.0, FONT),
        CardInputs("watermark", "Sky", 320, 180, 15, 2.5, FONT),
    ):
        assert other.key() != base.key()
    logo = make_logo(tmp_path / "logo.png")
    with_logo = CardInputs("intro", "Sky", 320, 180, 15, 2.5, FONT, logo)
    before = with_logo.key()
    os.utime(logo, ns=(1, 1))  # a replaced logo makes a new card
    assert with_logo.key() != before != base.key()


def test_intro_args_keep_the_name_out_of_the_filter_graph(tmp_path: Path) -> None:
    card = CardInputs("intro", "Tom's: [Sky], Co; 100%", 320, 180, 15, 2.5, FONT)
    args = intro_args(card, tmp_path / "t.txt", tmp_path / "o.mp4")
    graph = args[args.index("-filter_complex") + 1]
    assert "Tom" not in graph and "expansion=none" in graph and "textfile=" in graph
    assert "gradients=s=320x180:r=15:d=2.5" in args[args.index("-i") + 1]


# --- real FFmpeg ----------------------------------------------------------------------------


@pytest.mark.slow
def test_cards_are_made_once_and_cached_by_their_inputs(tmp_path: Path) -> None:
    s = branded(tmp_path)
    first = prepare_branding(s)
    assert not first.failed and first.intro is not None and first.logo is not None
    assert first.intro.parent == (tmp_path / "share" / "branding").resolve()
    facts = probe_clip(first.intro)
    assert (facts.width, facts.height) == (W, H) and facts.has_audio
    assert facts.duration == pytest.approx(2.5, abs=0.15)
    stamps = {p: p.stat().st_mtime_ns for p in (first.intro, first.logo)}

    again = prepare_branding(s)
    assert (again.intro, again.logo) == (first.intro, first.logo)
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps  # not made again

    renamed = prepare_branding(branded(tmp_path, dropzone_name="Other Zone"))
    assert renamed.intro != first.intro and renamed.logo != first.logo
    assert not list((tmp_path / "share" / "branding").glob(".*"))  # no temporary files left


@pytest.mark.slow
def test_watermark_is_the_name_on_transparent_pixels(tmp_path: Path) -> None:
    prepared = prepare_branding(branded(tmp_path, branding_intro=False))
    assert prepared.intro is None and prepared.intro_how == "off"
    assert prepared.logo is not None
    image = cv2.imread(str(prepared.logo), cv2.IMREAD_UNCHANGED)
    assert image is not None and image.shape[2] == 4
    alpha = image[:, :, 3]
    assert alpha[0, 0] == 0 and alpha[-1, -1] == 0  # the corners are see-through
    assert (alpha == 255).mean() > 0.05  # the letters are solid
    assert image.shape[1] > 3 * image.shape[0]  # cropped to a line of text
    # the text is WATERMARK_TEXT_FRAC of the output height, whatever the name's length
    assert prepared.logo_width_frac is not None
    shown_h = prepared.logo_width_frac * W * image.shape[0] / image.shape[1]
    assert shown_h == pytest.approx(0.05 * H, rel=0.05)


@pytest.mark.slow
def test_a_logo_file_is_the_watermark_and_on_the_intro_card(tmp_path: Path) -> None:
    logo = make_logo(tmp_path / "logo.png")
    s = branded(tmp_path, branding_logo=logo)
    prepared = prepare_branding(s)
    assert prepared.logo == logo and prepared.logo_width_frac is None
    assert prepared.watermark_how == f"file {logo}"
    assert prepared.intro is not None and "and logo logo.png" in prepared.intro_how
    plain = prepare_branding(branded(tmp_path))
    assert plain.intro is not None
    assert np.abs(frame_at(prepared.intro, 1.2) - frame_at(plain.intro, 1.2)).mean() > 1.0


@pytest.mark.slow
def test_start_up_line_says_what_renders_get(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="agents.render.default_branding"):
        log_branding(branded(tmp_path, dropzone_name="Sky Voss"))
        log_branding(branded(tmp_path, branding_intro=False, branding_logo=False))
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("branding: intro")]
    assert lines[0].startswith("branding: intro generated from dropzone name 'Sky Voss' (intro-")
    assert ", watermark generated from dropzone name 'Sky Voss' (watermark-" in lines[0]
    assert lines[0].endswith(", title on")
    assert lines[1] == "branding: intro off, watermark off, title on"


@pytest.mark.slow
async def test_dispatcher_mapping_points_at_the_cards_and_workers_may_read_them(
    tmp_path: Path,
) -> None:
    s = branded(tmp_path)
    mapping = await job_branding(s)
    branding = Branding.from_mapping(mapping)
    assert branding.intro_path is not None and branding.intro_path.is_file()
    assert branding.logo_path is not None and branding.logo_path.is_file()
    roots = config_from(s).media_roots
    for path in (branding.intro_path, branding.logo_path):
        assert any(path.resolve().is_relative_to(r.resolve()) for r in roots)
    off = branded(tmp_path, branding_intro=False, branding_logo=False)
    assert "intro_path" not in await job_branding(off)
    assert config_from(off).media_roots == (off.share_root,)


@pytest.mark.slow
async def test_a_default_render_opens_on_the_intro_card_and_carries_the_watermark(
    tmp_path: Path,
) -> None:
    # a still picture (bars), so any difference between the two renders is the branding's
    clip_path = make_clip(
        tmp_path / "GX010001.MP4", seconds=1.5, width=W, height=H, fps=15, pattern="smptebars"
    )
    clip = probe_clip(clip_path)
    s = branded(tmp_path, branding_title=False)
    default = Branding.from_mapping(branding_mapping(s, prepared_for(s)))
    bare = Branding.from_mapping(
        branding_mapping(
            branded(tmp_path, branding_intro=False, branding_logo=False, branding_title=False),
            prepared_for(branded(tmp_path, branding_intro=False, branding_logo=False)),
        )
    )
    assert bare.intro_path is None and bare.logo_path is None
    start = datetime(2026, 5, 1, 14, 0, tzinfo=UTC)

    async def render(branding: Branding, root: Path) -> Path:
        key = f"card:{root.name}"
        out = await render_session(
            [clip], branding, output=SessionOutput(key, output_name("BK1", "", start, key)),
            passenger_name="", output_root=root,
        )  # fmt: skip
        return out.video

    with_branding = await render(default, tmp_path / "a")
    without = await render(bare, tmp_path / "b")
    assert duration_of(with_branding) == pytest.approx(duration_of(without) + 2.5, abs=0.25)

    # the first second is the intro card, not the footage
    assert default.intro_path is not None
    card = frame_at(default.intro_path, 1.0)
    opening = frame_at(with_branding, 1.0)
    footage = frame_at(without, 0.0)
    assert np.abs(opening - card).mean() < 6
    assert np.abs(opening - footage).mean() > 40

    # in the footage, the bottom-right corner holds the watermark; the rest is the same picture
    branded_footage = frame_at(with_branding, 2.5 + 0.7)
    plain_footage = frame_at(without, 0.7)
    changed = np.abs(branded_footage - plain_footage).max(axis=2) > 60
    corner = changed[int(H * 0.8) :, int(W * 0.6) :]
    assert corner.sum() > 40  # the letters of the name
    assert changed.sum() - corner.sum() < 10  # and nothing else (x264 noise aside)


@pytest.mark.slow
async def test_a_card_removed_from_the_share_is_made_again(tmp_path: Path) -> None:
    s = branded(tmp_path)
    first = Branding.from_mapping(await job_branding(s))
    assert first.intro_path is not None and first.logo_path is not None
    first.intro_path.unlink()
    first.logo_path.unlink()
    again = Branding.from_mapping(await job_branding(s))
    assert again.intro_path == first.intro_path and again.intro_path.is_file()
    assert again.logo_path == first.logo_path and again.logo_path.is_file()


@pytest.mark.slow
async def test_a_card_that_cannot_be_made_is_left_off_saying_why(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    junk = tmp_path / "logo.png"
    junk.write_bytes(b"this is not a picture")
    s = branded(tmp_path, branding_logo=junk, dropzone_name="Broken Logo DZ")
    with caplog.at_level(logging.INFO, logger="agents.render.default_branding"):
        prepared = log_branding(s)
        mapping = await job_branding(s)  # remembered: not tried again on every render
    assert prepared.failed and prepared.intro is None
    assert prepared.intro_how.startswith("off (could not generate it: the logo ")
    assert "is not a picture" in prepared.intro_how
    warned = [r for r in caplog.records if r.levelname == "WARNING"]
    assert len(warned) == 1 and warned[0].getMessage().startswith("branding: intro off (")
    assert f"watermark file {junk}, which renders will fail on: " in warned[0].getMessage()
    assert "intro_path" not in mapping  # renders go on without it
