"""Render throughput: the shipped single-pass plan against a naive three-pass render.

    python -m benchmarks.render_throughput [--footage-s 60] [--preset veryfast]

Generates (once, cached in .cache/render_bench/) a 3 s intro, 1080p30 footage with audio and
moving content, and a logo PNG. Renders intro + footage + watermark + title with the shipped plan
(`agents.render.job.render_session`), then the same with a naive baseline using equal x264
settings: pass 1 re-encodes the intro to the output format, pass 2 overlays watermark and title on
the footage, pass 3 concatenates the two by re-encoding. The two are interleaved round by round
(benchmarks/_compare.py: plan then naive, naive then plan, ...; `--rounds`, at least 3); wall
times are medians, the speedup each round's, with its spread. Last line (one line):

    render_throughput: video_s=<s> plan_wall_s=<a> naive_wall_s=<b> realtime_x=<s/a> speedup=<b/a>
    speedup_min=<x> speedup_max=<y>
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import shutil
import subprocess
import time
from pathlib import Path

from agents.render.branding import Branding, find_font
from agents.render.ffmpeg import locate_ffmpeg
from agents.render.job import SessionOutput, check_output, probe_clip, render_session
from agents.render.plan import escape_option
from benchmarks._compare import Round, check_rounds, figure_spread, interleave, ratio_spread
from benchmarks._render_media import make_clip, make_logo

CACHE = Path(".cache/render_bench")
NAME = "Zoë O'Brien: 100%"


def _media(footage_s: float) -> tuple[Path, Path, Path]:
    CACHE.mkdir(parents=True, exist_ok=True)
    intro, footage, logo = (
        CACHE / "intro.mp4",
        CACHE / f"footage_{footage_s:g}s.mp4",
        CACHE / "logo.png",
    )
    if not intro.exists():
        make_clip(intro, seconds=3, width=1920, height=1080, fps=30, preset="veryfast", tone_hz=660)
    if not footage.exists():
        print(f"generating {footage_s:g}s of 1080p30 footage (cached) ...", flush=True)
        make_clip(footage, seconds=footage_s, width=1920, height=1080, fps=30, preset="veryfast")
    if not logo.exists():
        make_logo(logo)
    return intro, footage, logo


def _ffmpeg(args: list[str]) -> None:
    subprocess.run(
        [locate_ffmpeg(), "-hide_banner", "-loglevel", "error", "-nostdin", "-y", *args], check=True
    )


def naive_render(intro: Path, footage: Path, logo: Path, b: Branding, work: Path) -> Path:
    """Three passes, two encodes of the footage: what a straightforward script would do."""
    work.mkdir(parents=True, exist_ok=True)
    font = find_font(None)
    title = work / "title.txt"
    title.write_text(NAME, encoding="utf-8")
    enc = ["-c:v", "libx264", "-preset", b.preset, "-crf", str(b.crf), "-pix_fmt", "yuv420p"]
    enc += ["-c:a", "aac", "-b:a", b.audio_bitrate, "-ar", str(b.audio_rate), "-ac", "2"]
    norm = f"scale={b.width}:{b.height},fps={b.fps},format=yuv420p"
    _ffmpeg(["-i", str(intro), "-vf", norm, *enc, str(work / "p1_intro.mp4")])
    logo_w = round(b.width * b.logo_width_frac / 2) * 2
    m = round(b.width * b.logo_margin_frac)
    size = round(b.height * b.title_size_frac)
    draw = (
        f"drawtext=fontfile={escape_option(str(font))}:textfile={escape_option(str(title))}"
        f":expansion=none:fontsize={size}:fontcolor=white:borderw={size // 16}"
        f":bordercolor=black@0.7:x=(w-text_w)/2:y=h-text_h-h/8:enable=lt(t\\,{b.title_seconds:g})"
    )
    graph = (
        f"[1:v]scale={logo_w}:-2,format=rgba,colorchannelmixer=aa={b.logo_opacity}[logo];"
        f"[0:v][logo]overlay=x=main_w-overlay_w-{m}:y=main_h-overlay_h-{m},{draw},{norm}[v]"
    )
    _ffmpeg(
        [
            "-i",
            str(footage),
            "-i",
            str(logo),
            "-filter_complex",
            graph,
            "-map",
            "[v]",
            "-map",
            "0:a",
            *enc,
            str(work / "p2_footage.mp4"),
        ]
    )
    out = work / "naive.mp4"
    concat = "[0:v][0:a][1:v][1:a]concat=n=2:v=1:a=1[v][a]"
    _ffmpeg(
        [
            "-i",
            str(work / "p1_intro.mp4"),
            "-i",
            str(work / "p2_footage.mp4"),
            "-filter_complex",
            concat,
            "-map",
            "[v]",
            "-map",
            "[a]",
            *enc,
            "-movflags",
            "+faststart",
            str(out),
        ]
    )
    return out


def _child_cpu_s() -> float:
    # CPU seconds of finished FFmpeg children: a steadier figure than wall time on a shared box.
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--footage-s", type=float, default=60.0)
    parser.add_argument("--preset", default="veryfast")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (at least 3)")
    opts = parser.parse_args()
    try:
        check_rounds(opts.rounds)
    except ValueError as exc:
        parser.error(str(exc))
    intro, footage, logo = _media(opts.footage_s)
    branding = Branding(intro_path=intro, logo_path=logo, preset=opts.preset)
    out_root = CACHE / "out"
    video_s = [0.0]

    def plan() -> dict[str, float]:
        shutil.rmtree(out_root / "plan", ignore_errors=True)
        cpu0, t0 = _child_cpu_s(), time.perf_counter()
        result = asyncio.run(
            render_session(
                [probe_clip(footage)],
                branding,
                output=SessionOutput("bench:1", "BENCH-1"),
                passenger_name=NAME,
                output_root=out_root / "plan",
            )
        )
        video_s[0] = result.duration
        return {"plan_wall_s": time.perf_counter() - t0, "plan_cpu_s": _child_cpu_s() - cpu0}

    def naive() -> dict[str, float]:
        shutil.rmtree(out_root / "naive", ignore_errors=True)
        cpu0, t0 = _child_cpu_s(), time.perf_counter()
        out = naive_render(intro, footage, logo, branding, out_root / "naive")
        wall, cpu = time.perf_counter() - t0, _child_cpu_s() - cpu0
        problems = check_output(
            out, duration=video_s[0], width=branding.width, height=branding.height
        )
        if problems:
            print(f"naive: problems: {'; '.join(problems)}", flush=True)
        return {"naive_wall_s": wall, "naive_cpu_s": cpu}

    def report(r: Round) -> None:
        f = r.figures
        print(
            f"round {r.index} ({' then '.join(r.order)}): plan {f['plan_wall_s']:.2f}s wall "
            f"{f['plan_cpu_s']:.2f}s cpu, naive {f['naive_wall_s']:.2f}s wall "
            f"{f['naive_cpu_s']:.2f}s cpu, speedup {f['naive_wall_s'] / f['plan_wall_s']:.2f}",
            flush=True,
        )

    # The plan runs first in round 1, so the naive run's output check knows the duration.
    rounds = interleave({"plan": plan, "naive": naive}, opts.rounds, report=report)
    plan_wall = figure_spread(rounds, "plan_wall_s")
    naive_wall = figure_spread(rounds, "naive_wall_s")
    speedup = ratio_spread(rounds, "naive_wall_s", "plan_wall_s")
    cpu = ratio_spread(rounds, "naive_cpu_s", "plan_cpu_s")
    print(f"cpu ratio naive/plan: {cpu.median:.2f} (min {cpu.low:.2f}, max {cpu.high:.2f})")
    print(
        f"render_throughput: video_s={video_s[0]:.2f} plan_wall_s={plan_wall.median:.2f}"
        f" naive_wall_s={naive_wall.median:.2f} realtime_x={video_s[0] / plan_wall.median:.2f}"
        f" speedup={speedup.median:.2f} speedup_min={speedup.low:.2f}"
        f" speedup_max={speedup.high:.2f}"
    )


if __name__ == "__main__":
    main()
