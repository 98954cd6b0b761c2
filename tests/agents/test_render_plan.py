"""Render plan: pure argument-list construction, escaping and title sanitising (no FFmpeg run)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agents.render.branding import Branding, BrandingError
from agents.render.plan import (
    Clip,
    PlanError,
    RenderTargets,
    build_plan,
    escape_option,
    sanitize_title,
)

TARGETS = RenderTargets(
    Path("/out/.v.mp4.partial-1"), Path("/out/.v.jpg.partial-1"), Path("/t/x.txt")
)
FONT = Path("/fonts/Dejavu.ttf")


def clip(name: str, **kw: object) -> Clip:
    facts: dict[str, object] = {
        "duration": 2.0,
        "width": 1920,
        "height": 1080,
        "fps": 30.0,
        "has_audio": True,
    }
    facts.update(kw)
    return Clip(path=Path(f"/media/{name}"), **facts)  # type: ignore[arg-type]


def graph(args: tuple[str, ...]) -> str:
    return args[args.index("-filter_complex") + 1]


def unescape_graph_then_option(value: str) -> str:
    """What FFmpeg's two parsing levels make of an escaped option value."""
    out = value
    for _ in range(2):
        chars, i = [], 0
        while i < len(out):
            if out[i] == "\\" and i + 1 < len(out):
                chars.append(out[i + 1])
                i += 2
            else:
                chars.append(out[i])
                i += 1
        out = "".join(chars)
    return out


def test_plan_orders_inputs_intro_clips_logo_and_sums_duration() -> None:
    b = Branding(intro_path=Path("/b/intro.mp4"), logo_path=Path("/b/logo.png"))
    intro = replace(clip("intro.mp4", duration=3.0), path=Path("/b/intro.mp4"))
    plan = build_plan(
        [clip("GX010042.MP4"), clip("GX020042.MP4", duration=1.5)],
        b,
        "Ann",
        TARGETS,
        intro=intro,
        font=FONT,
    )
    inputs = [plan.args[i + 1] for i, a in enumerate(plan.args) if a == "-i"]
    assert inputs == [
        "file:/b/intro.mp4",
        "file:/media/GX010042.MP4",
        "file:/media/GX020042.MP4",
        "file:/b/logo.png",
    ]
    assert plan.total_duration == pytest.approx(6.5)
    g = graph(plan.args)
    assert "[v0][a0][v1][a1]concat=n=2:v=1:a=1" in g
    assert "[iv][ia][fvm][fa]concat=n=2:v=1:a=1[vout][aout]" in g
    assert "colorchannelmixer=aa=0.8" in g and "overlay=" in g


def test_plan_is_one_encode_with_faststart_and_a_poster_output() -> None:
    plan = build_plan([clip("a.mp4")], Branding(), "Ann", TARGETS, font=FONT)
    args = plan.args
    assert args.count("libx264") == 1 and args.count("-filter_complex") == 1
    assert args[args.index("-movflags") + 1] == "+faststart"
    assert args[args.index("-preset") + 1] == "veryfast"
    assert "file:/out/.v.mp4.partial-1" in args and "file:/out/.v.jpg.partial-1" in args
    assert args[args.index("-frames:v") + 1] == "1"


def test_matching_clip_is_not_scaled_but_odd_ones_are_normalised() -> None:
    b = Branding()
    same = graph(build_plan([clip("a.mp4")], b, "", TARGETS).args)
    assert "scale=" not in same.split("[v0]")[0] and "fps=" not in same
    odd = graph(build_plan([clip("b.mp4", width=1280, height=960, fps=25.0)], b, "", TARGETS).args)
    assert "scale=1920:1080:force_original_aspect_ratio=decrease" in odd
    assert "pad=1920:1080:(ow-iw)/2:(oh-ih)/2" in odd and "fps=30" in odd


def test_rotated_portrait_clip_is_padded() -> None:
    rotated = clip("r.mp4", rotation=90)  # 1920x1080 coded, shown as 1080x1920
    assert "pad=1920:1080" in graph(build_plan([rotated], Branding(), "", TARGETS).args)


def test_clip_without_audio_gets_trimmed_silence() -> None:
    g = graph(
        build_plan([clip("mute.mp4", has_audio=False, duration=1.25)], Branding(), "", TARGETS).args
    )
    assert "anullsrc=channel_layout=stereo:sample_rate=48000,atrim=duration=1.25" in g
    assert "[0:a:0]" not in g


@pytest.mark.parametrize(
    ("corner", "xy"), [("tl", "x=48:y=48"), ("br", "x=main_w-overlay_w-48:y=main_h-overlay_h-48")]
)
def test_watermark_corner(corner: str, xy: str) -> None:
    b = Branding(logo_path=Path("/b/l.png"), logo_corner=corner, logo_width_frac=0.1)  # type: ignore[arg-type]
    g = graph(build_plan([clip("a.mp4")], b, "", TARGETS).args)
    assert f"overlay={xy}" in g and "scale=192:-2" in g


def test_title_uses_textfile_without_expansion_and_skips_without_font() -> None:
    plan = build_plan([clip("a.mp4")], Branding(), "Zoë 'Z' O:Neil", TARGETS, font=FONT)
    g = graph(plan.args)
    assert "textfile=/t/x.txt:expansion=none" in g and "Zoë" not in g
    assert plan.title_text == "Zoë 'Z' O:Neil" and plan.title_file == TARGETS.title_file
    no_font = build_plan([clip("a.mp4")], Branding(), "Zoë", TARGETS, font=None)
    assert "drawtext" not in graph(no_font.args) and no_font.title_text is None
    assert any("font" in w for w in no_font.warnings)
    off = build_plan([clip("a.mp4")], Branding(title_enabled=False), "Zoë", TARGETS, font=FONT)
    assert "drawtext" not in graph(off.args)


def test_hostile_paths_are_escaped_in_the_graph() -> None:
    targets = RenderTargets(TARGETS.video, TARGETS.poster, Path("/t/a'b:c,d[e];f\\g.txt"))
    g = graph(build_plan([clip("a.mp4")], Branding(), "x", targets, font=FONT).args)
    assert "textfile=/t/a\\\\\\'b\\\\:c\\,d\\[e\\]\\;f\\\\\\\\g.txt:" in g


@given(st.text())
def test_escape_option_round_trips_through_both_levels(value: str) -> None:
    escaped = escape_option(value)
    assert unescape_graph_then_option(escaped) == value
    # No unescaped graph separator can survive.
    stripped = escaped.replace("\\\\", "").replace("\\,", "").replace("\\;", "")
    stripped = stripped.replace("\\[", "").replace("\\]", "").replace("\\'", "")
    assert not set(stripped) & set(",;[]'")


@given(st.text())
def test_sanitized_title_has_no_control_characters(name: str) -> None:
    title = sanitize_title(name)
    assert "\n" not in title and "\r" not in title and "\x00" not in title
    assert len(title) <= 80 and title == title.strip()


def test_sanitize_keeps_visible_text_exactly() -> None:
    for name in ['O\'Brien: 100% \\ "x"', "José Ñúñez", "محمد", "שָׁלוֹם", "'; rm -rf /", "🪂 Sky"]:
        assert sanitize_title(name) == name
    assert sanitize_title("Ann\nLee\r\n\tX") == "Ann Lee X"


def test_plan_rejects_empty_or_broken_footage() -> None:
    with pytest.raises(PlanError):
        build_plan([], Branding(), "x", TARGETS)
    with pytest.raises(PlanError):
        build_plan([clip("a.mp4", duration=0.0)], Branding(), "x", TARGETS)


def test_branding_rejects_values_that_could_escape_the_graph() -> None:
    with pytest.raises(BrandingError):
        Branding(title_color="white:enable=0")
    with pytest.raises(BrandingError):
        Branding(preset="veryfast,drawtext")
    with pytest.raises(BrandingError):
        Branding(width=1919)
    with pytest.raises(BrandingError):
        Branding.from_mapping({"nonsense": 1})
    b = Branding.from_mapping({"logo_path": "/b/l.png", "logo_corner": "tl"})
    assert b.logo_path == Path("/b/l.png") and Branding.from_mapping(b.to_mapping()) == b
