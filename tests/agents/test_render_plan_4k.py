"""Render plan tuning for camera footage (4K HEVC, 60 fps): decoder threads per footage input,
frames dropped before they are scaled; pure argument checks (no FFmpeg run)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from agents.render.branding import Branding
from agents.render.plan import (
    Clip,
    Cut,
    PlanError,
    RenderTargets,
    RenderTuning,
    build_plan,
    input_url,
)
from agents.render.queue import RenderWorkerConfig
from agents.render.worker import config_from, machine_cores
from streams.settings import Settings

TARGETS = RenderTargets(Path("/o/.v.mp4.partial-1"), Path("/o/.v.jpg.partial-1"), Path("/t/x"))
GOPRO = [
    Clip(Path("/media/GX010042.MP4"), 120.0, 3840, 2160, 60.0, True),
    Clip(Path("/media/GX020042.MP4"), 60.0, 3840, 2160, 60.0, True),
]
INTRO = Clip(Path("/b/intro.mp4"), 3.0, 1920, 1080, 30.0, True)
BRANDING = Branding(intro_path=INTRO.path, logo_path=Path("/b/logo.png"))
CUTS = [Cut(0, 98.0, 120.0), Cut(1, 0.0, 33.0)]  # the jump, across the chapter boundary
SCALE = "scale=1920:1080:force_original_aspect_ratio=decrease:flags=bicubic"
PAD = "pad=1920:1080:(ow-iw)/2:(oh-ih)/2:color=black"


def plan_args(clips: list[Clip], tuning: RenderTuning | None, **kw: object) -> tuple[str, ...]:
    return build_plan(
        clips,
        BRANDING,
        "Zoë",
        TARGETS,
        intro=INTRO,
        tuning=tuning,
        **kw,  # type: ignore[arg-type]
    ).args


def graph(args: tuple[str, ...]) -> str:
    return args[args.index("-filter_complex") + 1]


def input_options(args: tuple[str, ...]) -> dict[str, list[str]]:
    """Each input's URL -> the options between the previous input and its -i."""
    out: dict[str, list[str]] = {}
    start = 0
    end = args.index("-filter_complex")
    for i in range(end):
        if args[i] == "-i":
            out[args[i + 1]] = list(args[start:i])
            start = i + 2
    return out


def chain(g: str, label: str) -> str:
    return next(part for part in g.split(";") if part.endswith(f"[{label}]"))


def test_each_footage_input_gets_its_decoder_threads_and_nothing_else_does() -> None:
    opts = input_options(plan_args(GOPRO, RenderTuning(decode_threads=2), cuts=CUTS))
    first, second = (input_url(c.path) for c in GOPRO)
    assert opts[first] == ["-threads", "2", "-ss", "98", "-t", "22"]
    assert opts[second] == ["-threads", "2", "-ss", "0", "-t", "33"]
    assert opts[input_url(INTRO.path)] == [] and opts[input_url(Path("/b/logo.png"))] == []


def test_a_whole_clip_input_gets_them_too() -> None:
    opts = input_options(plan_args(GOPRO, RenderTuning(decode_threads=3)))
    assert all(opts[input_url(c.path)] == ["-threads", "3"] for c in GOPRO)


def test_decode_threads_zero_leaves_the_decoder_to_ffmpeg() -> None:
    opts = input_options(plan_args(GOPRO, RenderTuning(decode_threads=0), cuts=CUTS))
    assert opts[input_url(GOPRO[0].path)] == ["-ss", "98", "-t", "22"]


def test_60_fps_footage_drops_to_30_before_it_is_scaled() -> None:
    g = graph(plan_args(GOPRO, RenderTuning(), cuts=CUTS))
    for n in (0, 1):
        steps = chain(g, f"v{n}").split("]", 1)[1].removesuffix(f"[v{n}]").split(",")
        assert steps[2:] == ["fps=30", SCALE, PAD, "setsar=1", "format=yuv420p"]


def test_without_tuning_the_plan_is_the_one_before_it() -> None:
    args = plan_args(GOPRO, None, cuts=CUTS)
    assert f"{SCALE},{PAD},fps=30,setsar=1" in graph(args)
    assert input_options(args)[input_url(GOPRO[0].path)] == ["-ss", "98", "-t", "22"]


def test_drop_frames_first_off_keeps_scale_before_fps() -> None:
    tuning = RenderTuning(drop_frames_first=False)
    assert f"{SCALE},{PAD},fps=30" in graph(plan_args(GOPRO, tuning, cuts=CUTS))


def test_a_clip_with_fewer_frames_than_the_output_is_scaled_before_frames_are_repeated() -> None:
    slow = [Clip(Path("/media/a.mp4"), 10.0, 3840, 2160, 24.0, True)]
    assert f"{SCALE},{PAD},fps=30" in graph(plan_args(slow, RenderTuning()))


def test_a_slow_motion_span_of_60_fps_footage_drops_nothing_and_keeps_the_order() -> None:
    # 60 fps at half speed is 30 frames a second of output: nothing to drop
    g = graph(plan_args(GOPRO, RenderTuning(), cuts=[Cut(0, 100.0, 102.0, 0.5)]))
    assert f"setpts=(PTS-STARTPTS)/0.5,{SCALE},{PAD},fps=30" in g


def test_a_1080p30_clip_is_neither_scaled_nor_resampled() -> None:
    same = [Clip(Path("/media/a.mp4"), 10.0, 1920, 1080, 30.0, True)]
    v0 = chain(graph(plan_args(same, RenderTuning())), "v0")
    assert "scale=" not in v0 and "fps=" not in v0


def test_tuning_changes_no_output_option() -> None:
    def outputs(args: tuple[str, ...]) -> tuple[str, ...]:
        return args[args.index("-map") :]

    before = plan_args(GOPRO, None, cuts=CUTS, threads=2)
    after = plan_args(GOPRO, RenderTuning(), cuts=CUTS, threads=2)
    assert outputs(after) == outputs(before)
    tail = outputs(after)
    assert tail[tail.index("-c:v") : tail.index("-c:v") + 2] == ("-c:v", "libx264")
    assert tail[tail.index("-threads") + 1] == "2" and "+faststart" in tail


def test_tuning_is_checked() -> None:
    with pytest.raises(PlanError):
        RenderTuning(decode_threads=-1)


def test_the_worker_takes_its_tuning_from_the_settings() -> None:
    assert RenderWorkerConfig().tuning == RenderTuning(decode_threads=0, drop_frames_first=True)
    config = config_from(Settings(render_decode_threads=1, render_encode_threads=2))
    assert config.tuning == RenderTuning(decode_threads=1) and config.encode_threads == 2
    default = config_from(Settings())  # 0: one thread per core
    cores = machine_cores()
    assert default.tuning.decode_threads == cores and default.encode_threads == cores
    assert config_from(Settings(render_skip_nonref=False)).tuning.skip_nonref is False


SKIPPABLE = [replace(c, half_skippable=True) for c in GOPRO]


def test_a_clip_that_may_skip_half_its_frames_is_decoded_with_skip_frame_noref() -> None:
    opts = input_options(plan_args(SKIPPABLE, RenderTuning(), cuts=CUTS))
    for clip in SKIPPABLE:
        o = opts[input_url(clip.path)]
        assert o[o.index("-skip_frame") + 1] == "noref"
        assert o.index("-skip_frame") < o.index("-ss")  # an input option of that footage
    assert "-skip_frame" not in opts[input_url(INTRO.path)]


def test_skipping_needs_the_pattern_the_setting_and_an_even_frame_ratio() -> None:
    def skips(clips: list[Clip], tuning: RenderTuning | None, cuts: list[Cut]) -> list[bool]:
        opts = input_options(plan_args(clips, tuning, cuts=cuts))
        return ["-skip_frame" in o for url, o in opts.items() if url != input_url(INTRO.path)][
            : len(cuts)
        ]

    assert skips(GOPRO, RenderTuning(), CUTS) == [False, False]  # no pattern read
    assert skips(SKIPPABLE, RenderTuning(skip_nonref=False), CUTS) == [False, False]
    assert skips(SKIPPABLE, None, CUTS) == [False, False]  # the plan before tuning
    spans = [Cut(0, 10.0, 20.0), Cut(1, 30.0, 36.0, 0.5)]  # slow motion needs every frame
    assert skips(SKIPPABLE, RenderTuning(), spans) == [True, False]
    fifty = [replace(SKIPPABLE[0], fps=50.0)]  # 50 -> 30 keeps odd frames too
    assert skips(fifty, RenderTuning(), [Cut(0, 0.0, 10.0)]) == [False]
