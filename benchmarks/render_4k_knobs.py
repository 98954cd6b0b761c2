"""The knobs of a 4K HEVC → 1080p30 render, one at a time against the render before tuning.

    python -m benchmarks.render_4k_knobs [--span-s 8] [--rounds 3] [--only base,fps_first]

Renders one span of the cached camera recording (benchmarks/render_4k.py makes it) the way the
render plan does (seek, trim, scale + pad, fps, yuv420p; x264 + AAC, +faststart) in variants that
each change one knob from ``base`` (the plan before issue 18: decoder and x264 threads left to
FFmpeg, scale before fps, bicubic) and ``tuned`` (what was adopted, all at once). By default every
variant but ``preset_superfast`` and the ``decode_only`` ones (the span's video decoded and
nothing else: the ceiling of any render of it) runs; ``--only`` picks. All variants
run interleaved round by round (benchmarks/_compare.py), so load drift hits them alike; each
variant's wall and CPU seconds are medians, its ratio against ``base`` the per-round median with
its spread. CPU seconds (FFmpeg's user + system) are the steadier figure on a shared machine.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from agents.render.ffmpeg import locate_ffmpeg
from benchmarks._camera_media import CameraShape, camera_recording
from benchmarks._compare import Round, figure_spread, interleave, ratio_spread

CACHE = Path(".cache/render_4k")


@dataclass(frozen=True)
class Knobs:
    decode_threads: int | None = None  # -threads before -i; None: FFmpeg's default
    fps_first: bool = False  # drop 60 -> 30 fps before scaling
    scale_flags: str = "bicubic"
    sws_threads: int | None = None  # scale=...:threads=N
    encode_threads: int = 0  # x264 -threads (0: auto)
    preset: str = "veryfast"
    skip_loop_filter: str | None = None  # decoder -skip_loop_filter (noref: non-reference)
    skip_frame: str | None = None  # decoder -skip_frame
    filter_threads: int | None = None  # -filter_complex_threads
    decode_only: bool = False  # decode the span's video and nothing else (the ceiling)


def args_for(k: Knobs, src: Path, start: float, span: float, out: Path) -> list[str]:
    """The FFmpeg arguments of one variant (pure)."""
    args: list[str] = []
    if k.filter_threads is not None:
        args += ["-filter_complex_threads", str(k.filter_threads)]
    if k.decode_threads is not None:
        args += ["-threads", str(k.decode_threads)]
    if k.skip_loop_filter is not None:
        args += ["-skip_loop_filter", k.skip_loop_filter]
    if k.skip_frame is not None:
        args += ["-skip_frame", k.skip_frame]
    args += ["-ss", f"{start:g}", "-t", f"{span:g}", "-i", f"file:{src.absolute()}"]
    if k.decode_only:
        return [*args, "-map", "0:v:0", "-f", "null", "-"]
    sws = f":threads={k.sws_threads}" if k.sws_threads is not None else ""
    scale = [
        f"scale=1920:1080:force_original_aspect_ratio=decrease:flags={k.scale_flags}{sws}",
        "pad=1920:1080:(ow-iw)/2:(oh-ih)/2:color=black",
    ]
    steps = [f"trim=duration={span:g}", "setpts=PTS-STARTPTS"]
    steps += ["fps=30", *scale] if k.fps_first else [*scale, "fps=30"]
    steps += ["setsar=1", "format=yuv420p"]
    audio = (
        f"atrim=duration={span:g},asetpts=PTS-STARTPTS,aresample=48000,"
        f"aformat=sample_fmts=fltp:sample_rates=48000:channel_layouts=stereo,"
        f"apad=whole_dur={span:g}"
    )
    graph = f"[0:v:0]{','.join(steps)}[v];[0:a:0]{audio}[a]"
    args += ["-filter_complex", graph, "-map", "[v]", "-map", "[a]"]
    args += ["-c:v", "libx264", "-preset", k.preset, "-crf", "22", "-pix_fmt", "yuv420p"]
    args += ["-threads", str(k.encode_threads)]
    args += ["-c:a", "aac", "-b:a", "160k", "-ar", "48000", "-ac", "2"]
    args += ["-movflags", "+faststart", "-f", "mp4", f"file:{out.absolute()}"]
    return args


BASE = Knobs()
TUNED = Knobs(decode_threads=2, fps_first=True, encode_threads=2)
VARIANTS: Mapping[str, Knobs] = {
    "base": BASE,
    "fps_first": replace(BASE, fps_first=True),
    "decode_threads_1": replace(BASE, decode_threads=1),
    "decode_threads_2": replace(BASE, decode_threads=2),
    "encode_threads_2": replace(BASE, encode_threads=2),
    "bilinear": replace(BASE, scale_flags="bilinear"),
    "fast_bilinear": replace(BASE, scale_flags="fast_bilinear"),
    "sws_threads_2": replace(BASE, sws_threads=2),
    "skip_loop_filter_noref": replace(BASE, skip_loop_filter="noref"),
    "skip_frame_noref": replace(BASE, skip_frame="noref", fps_first=True),
    "preset_superfast": replace(BASE, preset="superfast"),
    "tuned": TUNED,
    "decode_only": replace(BASE, decode_threads=2, decode_only=True),
    "decode_only_skip_frame_noref": replace(
        BASE, decode_threads=2, decode_only=True, skip_frame="noref"
    ),
}


def _child_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _side(name: str, k: Knobs, src: Path, start: float, span: float) -> Callable[[], dict]:
    out = CACHE / "knobs" / f"{name}.mp4"

    def run() -> dict[str, float]:
        out.parent.mkdir(parents=True, exist_ok=True)
        cmd = [locate_ffmpeg(), "-hide_banner", "-loglevel", "error", "-nostdin", "-y"]
        cpu0, t0 = _child_cpu_s(), time.perf_counter()
        subprocess.run([*cmd, *args_for(k, src, start, span, out)], check=True)
        return {f"{name}_wall_s": time.perf_counter() - t0, f"{name}_cpu_s": _child_cpu_s() - cpu0}

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--span-s", type=float, default=6.0)
    parser.add_argument("--start-s", type=float, default=30.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--only", default="", help=f"comma-separated variants (base is added): {','.join(VARIANTS)}"
    )
    opts = parser.parse_args()
    src = camera_recording(CACHE, CameraShape())[0]
    names = [n for n in opts.only.split(",") if n] or [
        n for n in VARIANTS if not VARIANTS[n].decode_only and n != "preset_superfast"
    ]
    names = ["base", *[n for n in names if n != "base"]]
    sides = {n: _side(n, VARIANTS[n], src, opts.start_s, opts.span_s) for n in names}

    def report(r: Round) -> None:
        cells = [f"{n} {r.figures[f'{n}_wall_s']:.1f}s" for n in r.order]
        print(f"round {r.index}: " + ", ".join(cells), flush=True)

    rounds = interleave(sides, opts.rounds, report=report)
    print(f"span: {opts.span_s:g} s of {src.name} from {opts.start_s:g} s ({opts.rounds} rounds)")
    for n in names:
        wall, cpu = figure_spread(rounds, f"{n}_wall_s"), figure_spread(rounds, f"{n}_cpu_s")
        line = f"{n}: wall_s={wall.median:.2f} cpu_s={cpu.median:.2f}"
        if n != "base":
            w = ratio_spread(rounds, "base_wall_s", f"{n}_wall_s")
            c = ratio_spread(rounds, "base_cpu_s", f"{n}_cpu_s")
            line += f" {w.fields('wall_speedup', 2)} {c.fields('cpu_saving_x', 2)}"
        print(line, flush=True)


if __name__ == "__main__":
    main()
