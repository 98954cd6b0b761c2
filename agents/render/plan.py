"""Render planning: a pure function from probed footage + branding + passenger to FFmpeg arguments.

One FFmpeg invocation per passenger video, one decode and one encode: every clip is normalised
in the filter graph (resolution with aspect-preserving pad, frame rate, yuv420p, stereo audio at
the branding's sample rate, silence for clips without audio), the footage is concatenated,
watermarked and titled, then joined to the intro. A second output of the same command writes the
poster JPEG. Nothing here touches the disk: the caller writes the title text file the plan names.

With an edit decision list (`cuts`, from agents/edit.py through the render job), each kept span is
its own input, seeked with `-ss`/`-t` before `-i`: FFmpeg jumps to the keyframe before the span and
decodes only the span, so an edited video of a 15-minute recording costs about its own length.
A span played slower (the exit replay) is stretched with setpts/atempo and resampled to the
output frame rate. Without cuts every clip is rendered whole, in order (the behaviour before edits).
An optional music bed (agents/render/music.py) is one more input, mixed under the footage's sound.

Camera footage is often 4K HEVC at 50-60 fps (docs/architecture.md, "Rendering camera footage
(4K HEVC)"): with a :class:`RenderTuning` (the render job passes the worker's) each footage input
gets its own decoder thread count, and a clip with more frames than the output drops them
(`fps`) before it is scaled, so half of a 60 fps clip is never scaled. A clip whose every
other frame is a non-reference one (`Clip.half_skippable`, agents/media/refs.py), played where
the output keeps only even frames (60 -> 30 at normal speed), is decoded with `-skip_frame noref`:
the frames the output shows are the same, at a little over half the decoding. Without a tuning
the plan is the one before it, argument for argument.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from agents.render.branding import Branding
from agents.render.music import Music, mix_filters
from agents.render.music import input_args as music_input

MAX_TITLE_CHARS = 80
# Characters that must be escaped inside a filter option value ("'" ":" "\\") and then again
# at the filter-graph level ("'" "\\" "[" "]" "," ";"); see ffmpeg-filters(1) "Notes on filtergraph
# escaping".
_OPTION_SPECIAL = "\\':"
_GRAPH_SPECIAL = "\\'[],;"


class PlanError(ValueError):
    """Inputs that cannot be rendered (no footage, nonsense durations)."""


@dataclass(frozen=True)
class Clip:
    """One input file with the facts the probe step found."""

    path: Path
    duration: float
    width: int
    height: int
    fps: float
    has_audio: bool
    rotation: int = 0  # display rotation in degrees; FFmpeg applies it while decoding
    #: every even frame is a reference frame and the odd ones mostly not (agents/media/refs.py)
    half_skippable: bool = False

    @property
    def display_size(self) -> tuple[int, int]:
        if self.rotation % 180 == 90:
            return self.height, self.width
        return self.width, self.height


@dataclass(frozen=True)
class Cut:
    """Keep clips[clip] from `start` to `end` (seconds in that clip), played at `speed`."""

    clip: int
    start: float
    end: float
    speed: float = 1.0

    @property
    def output_s(self) -> float:
        return (self.end - self.start) / self.speed


@dataclass(frozen=True)
class RenderTuning:
    """How a render uses the machine (the worker's settings, not the dropzone's look).

    Nothing here changes a decoded frame; the x264 thread count (the plan's `threads`) is the
    only knob that changes the output's bytes, as it always did."""

    decode_threads: int = 0  # -threads before each footage input; 0: FFmpeg's choice (cores + 1)
    drop_frames_first: bool = True  # fps before scale when the clip has more frames than needed
    skip_nonref: bool = True  # -skip_frame noref where only the reference frames are shown

    def __post_init__(self) -> None:
        if not 0 <= self.decode_threads <= 64:
            raise PlanError(f"decode_threads must be within 0..64, got {self.decode_threads}")


DEFAULT_TUNING = RenderTuning()  # the render worker's sets the threads (worker.config_from)


@dataclass(frozen=True)
class _Segment:
    """One input of the footage: a whole clip (`start` None) or a span of it."""

    clip: Clip
    start: float | None
    duration: float  # seconds read from the input
    speed: float = 1.0

    @property
    def output_s(self) -> float:
        return self.duration / self.speed


@dataclass(frozen=True)
class RenderTargets:
    """Where this invocation writes (temporary names; the job renames them)."""

    video: Path
    poster: Path
    title_file: Path


@dataclass(frozen=True)
class RenderPlan:
    args: tuple[str, ...]  # everything after the ffmpeg binary and its global options
    total_duration: float
    width: int
    height: int
    title_text: str | None  # what the caller must write to targets.title_file (None: no title)
    title_file: Path | None
    warnings: tuple[str, ...] = ()


def sanitize_title(name: str) -> str:
    """Passenger name as shown: control characters (newlines too) become spaces, length capped.

    Everything printable is kept as is (quotes, %, accents, emoji, RTL scripts): the text reaches
    drawtext through a file with expansion off, so nothing in it is interpreted.
    """
    cleaned = "".join(
        " " if unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") else ch for ch in name
    )
    return " ".join(cleaned.split())[:MAX_TITLE_CHARS]


def escape_option(value: str) -> str:
    """Escape a string so it survives as one filter option value inside -filter_complex."""
    level1 = "".join("\\" + ch if ch in _OPTION_SPECIAL else ch for ch in value)
    return "".join("\\" + ch if ch in _GRAPH_SPECIAL else ch for ch in level1)


def input_url(path: Path) -> str:
    """A path as an FFmpeg URL that can never be read as a protocol ("pipe:", "http:") or option."""
    return "file:" + str(path.absolute())


def _num(value: float) -> str:
    return f"{value:.6f}".rstrip("0").rstrip(".") or "0"


def _atempo(speed: float) -> list[str]:
    """atempo steps for `speed` (each atempo takes 0.5..2, so slower speeds are chained)."""
    steps = []
    while speed < 0.5:
        steps.append("atempo=0.5")
        speed /= 0.5
    return [*steps, f"atempo={_num(speed)}"]


def skips_half(clip: Clip, speed: float, out_fps: float) -> bool:
    """Whether `clip`, played at `speed`, may skip its non-reference frames: it alternates
    (`half_skippable`) and the output keeps only even frames (its rate is an even multiple of
    the output's: 60 fps at normal speed for 30)."""
    if not clip.half_skippable or out_fps <= 0:
        return False
    ratio = clip.fps * speed / out_fps
    return ratio >= 1.99 and abs(ratio - round(ratio)) < 0.01 and round(ratio) % 2 == 0


def _video_chain(
    seg: Clip | _Segment,
    index: int,
    b: Branding,
    label: str,
    tuning: RenderTuning | None = None,
) -> str:
    if isinstance(seg, Clip):
        seg = _Segment(seg, None, seg.duration)
    clip = seg.clip
    pts = "PTS-STARTPTS" if seg.speed == 1.0 else f"(PTS-STARTPTS)/{_num(seg.speed)}"
    steps = [f"trim=duration={_num(seg.duration)}", f"setpts={pts}"]
    resize = []
    if clip.display_size != (b.width, b.height):
        resize.append(
            f"scale={b.width}:{b.height}:force_original_aspect_ratio=decrease:flags={b.scale_flags}"
        )
        resize.append(f"pad={b.width}:{b.height}:(ow-iw)/2:(oh-ih)/2:color=black")
    rate = []
    if abs(clip.fps - b.fps) > 0.01 or seg.speed != 1.0:
        rate.append(f"fps={b.fps}")
    # frames the output drops are dropped before they are scaled; frames it repeats are
    # repeated after (a 24 fps clip is scaled 24 times a second, not 30)
    dropping = clip.fps * seg.speed > b.fps + 0.01
    if tuning is not None and tuning.drop_frames_first and dropping:
        steps += rate + resize
    else:
        steps += resize + rate
    steps += ["setsar=1", "format=yuv420p"]
    return f"[{index}:v:0]" + ",".join(steps) + f"[{label}]"


def _audio_chain(seg: Clip | _Segment, index: int, b: Branding, label: str) -> str:
    if isinstance(seg, Clip):
        seg = _Segment(seg, None, seg.duration)
    dur = _num(seg.output_s)
    fmt = f"aformat=sample_fmts=fltp:sample_rates={b.audio_rate}:channel_layouts=stereo"
    if seg.clip.has_audio:
        # Trim then pad to exactly the video's length, so audio never drifts at clip joins.
        steps = [f"atrim=duration={_num(seg.duration)}", "asetpts=PTS-STARTPTS"]
        if seg.speed != 1.0:
            steps += _atempo(seg.speed)
        steps += [f"aresample={b.audio_rate}", fmt, f"apad=whole_dur={dur}"]
        if seg.speed != 1.0:
            steps.append(f"atrim=duration={dur}")  # atempo may overshoot by a frame
        return f"[{index}:a:0]" + ",".join(steps) + f"[{label}]"
    silence = f"anullsrc=channel_layout=stereo:sample_rate={b.audio_rate}"
    return f"{silence},atrim=duration={dur},{fmt}[{label}]"


def _overlay_xy(b: Branding) -> tuple[str, str]:
    m = round(b.width * b.logo_margin_frac)
    x = str(m) if b.logo_corner in ("tl", "bl") else f"main_w-overlay_w-{m}"
    y = str(m) if b.logo_corner in ("tl", "tr") else f"main_h-overlay_h-{m}"
    return x, y


def _drawtext(b: Branding, font: Path, title_file: Path) -> str:
    size = max(8, round(b.height * b.title_size_frac))
    border = max(1, size // 16)
    opts = [
        f"fontfile={escape_option(str(font))}",
        f"textfile={escape_option(str(title_file))}",
        "expansion=none",
        f"fontsize={size}",
        f"fontcolor={b.title_color}",
        f"borderw={border}",
        f"bordercolor={b.title_border_color}",
        "x=(w-text_w)/2",
        "y=h-text_h-h/8",
    ]
    if b.title_seconds > 0:
        opts.append("enable=" + escape_option(f"lt(t,{_num(b.title_seconds)})"))
    return "drawtext=" + ":".join(opts)


def build_plan(
    clips: Sequence[Clip],
    branding: Branding,
    passenger_name: str,
    targets: RenderTargets,
    *,
    intro: Clip | None = None,
    font: Path | None = None,
    threads: int = 0,
    cuts: Sequence[Cut] | None = None,
    music: Music | None = None,
    tuning: RenderTuning | None = None,
) -> RenderPlan:
    """One FFmpeg argument list rendering intro + footage + watermark + title + poster.

    The footage is every clip whole, in order, or (with `cuts`, an edit decision list) only the
    cut spans, in the cuts' order, each input seeked to its span. With `music`, the music bed is
    mixed under the footage's sound (agents/render/music.py). `threads` is x264's thread count
    (0: x264's choice); `tuning` how the footage is decoded and scaled (None: as before it)."""
    if not clips:
        raise PlanError("a render needs at least one footage clip")
    for clip in (*clips, *([intro] if intro else [])):
        if not clip.duration > 0 or clip.width <= 0 or clip.height <= 0:
            raise PlanError(f"clip {clip.path.name} has no usable duration/size")
    segments = _segments(clips, cuts)

    b = branding
    args: list[str] = []
    filters: list[str] = []
    warnings: list[str] = []
    index = 0

    intro_index = None
    if intro is not None:
        args += ["-i", input_url(intro.path)]
        intro_index, index = index, index + 1
    clip_indexes = []
    for seg in segments:
        if tuning is not None and tuning.decode_threads:
            args += ["-threads", str(tuning.decode_threads)]  # an input option: its decoder
        if tuning is not None and tuning.skip_nonref and skips_half(seg.clip, seg.speed, b.fps):
            args += ["-skip_frame", "noref"]  # its decoder skips what the output drops
        if seg.start is not None:
            # input options: seek (to the keyframe before, then decode to the exact start) and
            # read only the span
            args += ["-ss", _num(seg.start), "-t", _num(seg.duration)]
        args += ["-i", input_url(seg.clip.path)]
        clip_indexes.append(index)
        index += 1
    logo_index = None
    if b.logo_path is not None:
        args += ["-i", input_url(b.logo_path)]
        logo_index, index = index, index + 1
    music_index = None
    if music is not None:
        args += music_input(input_url(music.path))
        music_index = index

    for n, (seg, i) in enumerate(zip(segments, clip_indexes, strict=True)):
        filters.append(_video_chain(seg, i, b, f"v{n}", tuning))
        filters.append(_audio_chain(seg, i, b, f"a{n}"))
    pairs = "".join(f"[v{n}][a{n}]" for n in range(len(segments)))
    filters.append(f"{pairs}concat=n={len(segments)}:v=1:a=1[fv0][fa]")
    footage_total = sum(seg.output_s for seg in segments)
    footage_audio = "fa"
    if music is not None and music_index is not None:
        filters += mix_filters(music, music_index, "fa", "fam", footage_total, b.audio_rate)
        footage_audio = "fam"

    # Watermark and title only on the footage, not on the dropzone's own intro.
    current = "fv0"
    if logo_index is not None:
        logo_w = max(2, round(b.width * b.logo_width_frac / 2) * 2)
        filters.append(
            f"[{logo_index}:v:0]scale={logo_w}:-2:flags=bicubic,format=rgba,"
            f"colorchannelmixer=aa={_num(b.logo_opacity)}[logo]"
        )
        x, y = _overlay_xy(b)
        filters.append(f"[{current}][logo]overlay=x={x}:y={y}:eof_action=repeat[fv1]")
        current = "fv1"
    title_text = sanitize_title(passenger_name) if b.title_enabled else ""
    title_file: Path | None = None
    if b.title_enabled and not title_text:
        warnings.append("title skipped: passenger name is empty after sanitising")
    elif b.title_enabled and font is None:
        warnings.append("title skipped: no font file found")
    elif b.title_enabled and font is not None:
        title_file = targets.title_file
        filters.append(f"[{current}]{_drawtext(b, font, title_file)}[fv2]")
        current = "fv2"

    poster_at = min(b.poster_at_s, footage_total / 2)
    filters.append(f"[{current}]split=2[fvm][pv]")
    filters.append(f"[pv]trim=start={_num(poster_at)},setpts=PTS-STARTPTS[poster]")

    total = footage_total
    if intro_index is not None and intro is not None:
        filters.append(_video_chain(intro, intro_index, b, "iv"))
        filters.append(_audio_chain(intro, intro_index, b, "ia"))
        filters.append(f"[iv][ia][fvm][{footage_audio}]concat=n=2:v=1:a=1[vout][aout]")
        total += intro.duration
    else:
        filters.append("[fvm]null[vout]")
        filters.append(f"[{footage_audio}]anull[aout]")

    args += ["-filter_complex", ";".join(filters)]
    args += ["-map", "[vout]", "-map", "[aout]"]
    args += ["-c:v", "libx264", "-preset", b.preset, "-crf", str(b.crf), "-pix_fmt", "yuv420p"]
    args += ["-threads", str(threads)]
    args += ["-c:a", "aac", "-b:a", b.audio_bitrate, "-ar", str(b.audio_rate), "-ac", "2"]
    args += ["-movflags", "+faststart", "-f", "mp4", input_url(targets.video)]
    args += ["-map", "[poster]", "-frames:v", "1", "-c:v", "mjpeg", "-q:v", "3"]
    args += ["-update", "1", "-f", "image2", input_url(targets.poster)]
    return RenderPlan(
        args=tuple(args),
        total_duration=total,
        width=b.width,
        height=b.height,
        title_text=title_text if title_file is not None else None,
        title_file=title_file,
        warnings=tuple(warnings),
    )


def _segments(clips: Sequence[Clip], cuts: Sequence[Cut] | None) -> list[_Segment]:
    """The footage inputs: every clip whole, or each cut as a span of its clip (checked)."""
    if cuts is None:
        return [_Segment(c, None, c.duration) for c in clips]
    if not cuts:
        raise PlanError("the edit decision list keeps nothing: the session needs review")
    segments = []
    for cut in cuts:
        if not 0 <= cut.clip < len(clips):
            raise PlanError(f"a cut names clip {cut.clip}, but the render has {len(clips)} clips")
        clip = clips[cut.clip]
        if not 0.1 <= cut.speed <= 1.0:
            raise PlanError(f"a cut of {clip.path.name} has speed {cut.speed}, not in [0.1, 1]")
        # a span may end a few milliseconds past a clip's probed duration (rounding): clamped
        end = min(cut.end, clip.duration)
        if not 0 <= cut.start < end:
            raise PlanError(
                f"a cut of {clip.path.name} ({cut.start:.3f}..{cut.end:.3f} s) is outside "
                f"the clip ({clip.duration:.3f} s)"
            )
        segments.append(_Segment(clip, cut.start, end - cut.start, cut.speed))
    return segments
