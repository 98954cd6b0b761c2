"""The render plan of an edit decision list: each kept span is its own input, seeked with
`-ss`/`-t` (pure: the exact arguments), and a real FFmpeg render of a synthetic jump through the
plan is as long as its EDL."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import av
import pytest

from agents.edit import ClipSpan, EditSettings, build_edl
from agents.render.branding import Branding
from agents.render.ffmpeg import run_ffmpeg
from agents.render.plan import Clip, Cut, PlanError, RenderTargets, build_plan
from agents.telemetry.gpmf_reader import read_recording
from agents.telemetry.phases import detect
from agents.telemetry.profile import draw_params, generate
from agents.telemetry.synthetic import VideoFormat, write_jump

TARGETS = RenderTargets(
    Path("/out/.v.mp4.partial-1"), Path("/out/.v.jpg.partial-1"), Path("/t/x.txt")
)


def clip(name: str, duration: float = 600.0, **kw: object) -> Clip:
    facts: dict[str, object] = {"width": 1920, "height": 1080, "fps": 30.0, "has_audio": True}
    facts.update(kw)
    return Clip(path=Path(f"/media/{name}"), duration=duration, **facts)  # type: ignore[arg-type]


def graph(args: tuple[str, ...]) -> str:
    return args[args.index("-filter_complex") + 1]


def input_options(args: tuple[str, ...]) -> list[list[str]]:
    """The options before each -i, with the -i and its URL."""
    out, current = [], []
    for i, a in enumerate(args):
        if a == "-filter_complex":
            break
        current.append(a)
        if i > 0 and args[i - 1] == "-i":
            out.append(current)
            current = []
    return out


def test_each_span_is_an_input_seeked_to_it() -> None:
    clips = [clip("GX010042.MP4", 600.0), clip("GX020042.MP4", 300.0)]
    cuts = [Cut(0, 590.0, 600.0), Cut(1, 0.0, 250.5), Cut(0, 599.0, 605.0, speed=0.5)]
    plan = build_plan(clips, Branding(), "", TARGETS, cuts=cuts)
    assert input_options(plan.args) == [
        ["-ss", "590", "-t", "10", "-i", "file:/media/GX010042.MP4"],
        ["-ss", "0", "-t", "250.5", "-i", "file:/media/GX020042.MP4"],
        # a span past the clip's probed end is clamped to it
        ["-ss", "599", "-t", "1", "-i", "file:/media/GX010042.MP4"],
    ]
    g = graph(plan.args)
    assert "[0:v:0]trim=duration=10,setpts=PTS-STARTPTS," in g
    assert "[1:a:0]atrim=duration=250.5,asetpts=PTS-STARTPTS,aresample=48000," in g
    # the slow-motion replay: stretched video resampled to the output rate, tempo'd audio
    assert "[2:v:0]trim=duration=1,setpts=(PTS-STARTPTS)/0.5,fps=30," in g
    assert "[2:a:0]atrim=duration=1,asetpts=PTS-STARTPTS,atempo=0.5,aresample=48000," in g
    assert "apad=whole_dur=2,atrim=duration=2[a2]" in g
    assert "[v0][a0][v1][a1][v2][a2]concat=n=3:v=1:a=1[fv0][fa]" in g
    assert plan.total_duration == pytest.approx(10 + 250.5 + 2)


def test_a_quarter_speed_replay_chains_atempo() -> None:
    plan = build_plan([clip("a.mp4")], Branding(), "", TARGETS, cuts=[Cut(0, 10.0, 12.0, 0.25)])
    assert "atempo=0.5,atempo=0.5," in graph(plan.args)
    assert plan.total_duration == pytest.approx(8.0)


def test_without_cuts_the_clips_render_whole_as_before() -> None:
    clips = [clip("a.mp4", 2.0), clip("b.mp4", 1.5)]
    plan = build_plan(clips, Branding(), "", TARGETS)
    assert "-ss" not in plan.args and "-t" not in plan.args
    assert input_options(plan.args) == [["-i", "file:/media/a.mp4"], ["-i", "file:/media/b.mp4"]]
    assert plan.total_duration == pytest.approx(3.5)


@pytest.mark.parametrize(
    ("cuts", "why"),
    [
        ([], "keeps nothing"),
        ([Cut(2, 0.0, 1.0)], "names clip 2"),
        ([Cut(0, 700.0, 710.0)], "outside the clip"),
        ([Cut(0, 5.0, 5.0)], "outside the clip"),
        ([Cut(0, 0.0, 1.0, speed=2.0)], "speed 2.0"),
    ],
)
def test_a_nonsense_edl_is_refused(cuts: list[Cut], why: str) -> None:
    with pytest.raises(PlanError, match=why):
        build_plan([clip("a.mp4")], Branding(), "", TARGETS, cuts=cuts)


@pytest.mark.slow
async def test_a_synthetic_jump_renders_as_long_as_its_edl(tmp_path: Path) -> None:
    params = dataclasses.replace(draw_params(11, compress=0.15), air_pocket_s=None, muffled=False)
    profile = generate(params)
    paths = write_jump(profile, tmp_path, chapter_s=40.0, video=VideoFormat(160, 96, 10))
    assert len(paths) >= 2  # the jump crosses a chapter boundary
    phases = detect(read_recording(paths), None)
    assert phases.exit is not None and not phases.needs_review, phases.reasons
    durations = []
    for p in paths:
        with av.open(str(p)) as c:
            durations.append((c.duration or 0) / 1e6)
    spans = [ClipSpan(p.name, d) for p, d in zip(paths, durations, strict=True)]
    edl = build_edl(phases, spans, EditSettings(door_s=3, after_landing_s=2, exit_replay_s=2))
    index = {p.name: i for i, p in enumerate(paths)}
    cuts = [Cut(index[s.clip], s.start, s.end, s.speed) for s in edl.spans]
    clips = [Clip(p, d, 160, 96, 10.0, True) for p, d in zip(paths, durations, strict=True)]
    targets = RenderTargets(tmp_path / "out.mp4", tmp_path / "out.jpg", tmp_path / "title.txt")
    branding = Branding(width=320, height=180, fps=15, preset="ultrafast", title_enabled=False)
    plan = build_plan(clips, branding, "", targets, cuts=cuts)
    assert plan.total_duration == pytest.approx(edl.total_s)
    assert edl.total_s < sum(durations) - 15  # the climb is left out
    await run_ffmpeg(plan.args, total_duration=plan.total_duration, stall_timeout=60)
    with av.open(str(targets.video)) as c:
        video = c.streams.video[0]
        got = float(video.duration * video.time_base) if video.duration else 0.0
        container = (c.duration or 0) / 1e6
    assert got == pytest.approx(edl.total_s, abs=0.5)
    assert container == pytest.approx(edl.total_s, abs=0.5)
