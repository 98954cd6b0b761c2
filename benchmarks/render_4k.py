"""Render a 1080p edit of 4K60 HEVC camera footage, against rendering the whole recording.

    python -m benchmarks.render_4k [--rounds 3] [--chapters-s 120,60] [--bitrate-mbit 60]

The input is shaped like a GoPro recording (benchmarks/_camera_media.py: 3840x2160 HEVC ``hvc1``
60 fps yuv420p at a GoPro bitrate, AAC 48 kHz stereo, two chapters GX01nnnn.MP4 + GX02nnnn.MP4;
generated once and cached in .cache/render_4k/ under a key of its shape: only a 10 s span is
encoded, each chapter repeats it by stream copy). On its timeline sits a compressed jump (the
phases record a `phases` step would store: exit, a short freefall, opening, canopy, landing),
the edit is the shipped EDL builder's (agents/edit.py with the default settings: 10 s before the
exit to 8 s after the landing; its span crosses the chapter boundary, so it is two cuts, one in
each file), and it is rendered to 1080p30 through the production path
(`agents.render.job.render_session` with `cuts`, as the render worker calls it) with an intro,
the watermark and the title. The other side renders the whole recording (both chapters, no
cuts) with the same settings. The two are interleaved round by round (benchmarks/_compare.py;
`--rounds`, at least 3); figures are medians, the speedup each round's, with its spread. Both
outputs are checked (duration, 1920x1080, h264 + aac). Last line:

    render_4k: source_s=<s> edit_s=<e> wall_s=<w> realtime_x=<e/w> speedup_vs_full=<x>

(`wall_s` is the edit's median wall time, intro included; `speedup_vs_full` the median
per-round ratio full wall / edit wall.)

It is long: a default run renders 3 x (58 + 183) s of 4K60 HEVC, about 40 minutes at the ~0.3x
real time two quiet cores manage (decoding is most of it), over an hour on a busy machine.
`--chapters-s` shortens the recording, but the edit stays 55 s, so a speedup of 3 needs a
recording of at least ~165 s.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import shutil
import time
from pathlib import Path

from agents.edit import ClipSpan, EditSettings, build_edl
from agents.render.branding import Branding
from agents.render.job import SessionOutput, check_output, probe_clip, render_session
from agents.render.plan import Clip, Cut
from agents.render.worker import config_from
from agents.telemetry.marks import JumpPhases, Mark, MarkKind, Source
from benchmarks._camera_media import CameraShape, camera_recording
from benchmarks._compare import Round, check_rounds, figure_spread, interleave, ratio_spread
from benchmarks._render_media import make_clip, make_logo
from streams.settings import Settings

CACHE = Path(".cache/render_4k")
NAME = "Zoë O'Brien: 100%"
# the jump, relative to the end of the recording: the ride up is most of it
EXIT_BEFORE_END_S = 72.0
FREEFALL_S = 22.0
EXIT_TO_LANDING_S = 37.0


def jump_phases(total_s: float) -> JumpPhases:
    """A plausible compressed jump on a recording of `total_s` seconds (pure)."""
    exit_t = total_s - EXIT_BEFORE_END_S
    if exit_t < 10:
        raise ValueError(f"a {total_s:g} s recording is too short for the jump")

    def mark(kind: MarkKind, t: float) -> Mark:
        return Mark(kind, t, 0.95, Source.FUSED)

    return JumpPhases(
        mark(MarkKind.EXIT, exit_t),
        mark(MarkKind.OPENING, exit_t + FREEFALL_S),
        mark(MarkKind.LANDING, exit_t + EXIT_TO_LANDING_S),
        needs_review=False,
    )


def edit_cuts(clips: list[Clip]) -> list[Cut]:
    """The shipped edit of the jump, as the render's cuts (clip index per span)."""
    spans = [ClipSpan(c.path.name, c.duration) for c in clips]
    edl = build_edl(jump_phases(sum(c.duration for c in clips)), spans, EditSettings())
    index = {c.path.name: n for n, c in enumerate(clips)}
    return [Cut(index[s.clip], s.start, s.end, s.speed) for s in edl.spans]


def _child_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _bitrate_mbit(paths: list[Path], seconds: float) -> float:
    return sum(p.stat().st_size for p in paths) * 8 / seconds / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (at least 3)")
    parser.add_argument(
        "--chapters-s", default="120,60", help="seconds of each chapter (total at least 100)"
    )
    parser.add_argument("--bitrate-mbit", type=int, default=60)
    parser.add_argument("--unique-s", type=float, default=10.0, help="the span encoded once")
    parser.add_argument("--preset", default="veryfast", help="x264 preset (the branding's)")
    opts = parser.parse_args()
    try:
        check_rounds(opts.rounds)
        chapters_s = tuple(float(s) for s in opts.chapters_s.split(","))
    except ValueError as exc:
        parser.error(str(exc))
    shape = CameraShape(
        bitrate_mbit=opts.bitrate_mbit, chapters_s=chapters_s, unique_s=opts.unique_s
    )
    chapters = camera_recording(CACHE, shape)
    clips = [probe_clip(p) for p in chapters]
    source_s = sum(c.duration for c in clips)
    first = clips[0]
    print(
        f"source: {' + '.join(f'{c.path.name} {c.duration:.1f}s' for c in clips)} = "
        f"{source_s:.1f} s, {first.width}x{first.height} {first.fps:g} fps HEVC, "
        f"{_bitrate_mbit(chapters, source_s):.1f} Mbit/s",
        flush=True,
    )
    intro, logo = CACHE / "intro.mp4", CACHE / "logo.png"
    if not intro.exists():
        make_clip(intro, seconds=3, width=1920, height=1080, fps=30, preset="veryfast", tone_hz=660)
    if not logo.exists():
        make_logo(logo)
    branding = Branding(intro_path=intro, logo_path=logo, preset=opts.preset)
    intro_s = probe_clip(intro).duration
    cuts = edit_cuts(clips)
    edit_s = sum(c.output_s for c in cuts)
    print(
        "edit: "
        + ", ".join(f"{clips[c.clip].path.name} {c.start:.1f}-{c.end:.1f}s" for c in cuts)
        + f" = {edit_s:.1f} s (+ {intro_s:.1f} s intro)",
        flush=True,
    )
    out_root = CACHE / "out"
    worker = config_from(Settings())  # the render worker's tuning, as it runs in production
    print(
        f"render worker: decode_threads={worker.tuning.decode_threads} "
        f"encode_threads={worker.encode_threads} drop_frames_first="
        f"{worker.tuning.drop_frames_first} skip_nonref={worker.tuning.skip_nonref} "
        f"preset={branding.preset} crf={branding.crf}",
        flush=True,
    )

    def side(name: str, side_cuts: list[Cut] | None, footage_s: float) -> dict[str, float]:
        shutil.rmtree(out_root / name, ignore_errors=True)
        cpu0, t0 = _child_cpu_s(), time.perf_counter()
        result = asyncio.run(
            render_session(
                clips,
                branding,
                output=SessionOutput(f"bench:{name}", f"BENCH-{name.upper()}"),
                passenger_name=NAME,
                output_root=out_root / name,
                cuts=side_cuts,
                stall_timeout=300.0,
                tuning=worker.tuning,
                encode_threads=worker.encode_threads,
            )
        )
        wall, cpu = time.perf_counter() - t0, _child_cpu_s() - cpu0
        # render_session checked it already; checked again here against what we expect
        problems = check_output(
            result.video, duration=footage_s + intro_s, width=branding.width, height=branding.height
        )
        if problems:
            raise SystemExit(f"{name}: output problems: {'; '.join(problems)}")
        return {f"{name}_wall_s": wall, f"{name}_cpu_s": cpu}

    def report(r: Round) -> None:
        f = r.figures
        print(
            f"round {r.index} ({' then '.join(r.order)}): edit {f['edit_wall_s']:.1f}s wall "
            f"{f['edit_cpu_s']:.1f}s cpu, full {f['full_wall_s']:.1f}s wall "
            f"{f['full_cpu_s']:.1f}s cpu, speedup {f['full_wall_s'] / f['edit_wall_s']:.2f}",
            flush=True,
        )

    rounds = interleave(
        {
            "edit": lambda: side("edit", cuts, edit_s),
            "full": lambda: side("full", None, source_s),
        },
        opts.rounds,
        report=report,
    )
    edit_wall = figure_spread(rounds, "edit_wall_s")
    full_wall = figure_spread(rounds, "full_wall_s")
    speedup = ratio_spread(rounds, "full_wall_s", "edit_wall_s")
    cpu = ratio_spread(rounds, "full_cpu_s", "edit_cpu_s")
    print(f"edit wall: {edit_wall.fields('wall_s', 2)}")
    print(
        f"full wall: {full_wall.fields('wall_s', 2)} realtime_x={source_s / full_wall.median:.3f}"
    )
    print(f"speedup_vs_full spread: {speedup.fields('speedup', 2)}; cpu ratio {cpu.median:.2f}")
    print(
        f"render_4k: source_s={source_s:.2f} edit_s={edit_s:.2f} wall_s={edit_wall.median:.2f}"
        f" realtime_x={edit_s / edit_wall.median:.3f} speedup_vs_full={speedup.median:.2f}"
    )


if __name__ == "__main__":
    main()
