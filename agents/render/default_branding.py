"""Default branding: an intro card and a corner watermark made from the dropzone's name.

A dropzone that configured nothing still gets videos that look like a product: a short intro
card (the dropzone name large on a slowly moving gradient, fading in and out, the logo above it
when `branding_logo` names one) and a corner watermark (the logo when given, else the name as
white text with a soft border on a transparent PNG). Either can be turned off (`branding_intro`
/ `branding_logo` = false) or replaced by a file.

The cards are made with FFmpeg (lavfi `gradients`, `drawtext`; OpenCV crops the watermark to
its text) — no downloads — once per set of inputs and kept in ``<share_root>/branding/`` under a
name that is a hash of those inputs (text, size, rate, length, font and logo files): a new name
or a new logo makes new cards, the same ones are reused. They live on the share, not in the
per-process data directory, because the render workers (other machines, other containers) read
them there as they read the footage, and one file for all keeps render fingerprints equal. A
finished card is put in place with a hard link (never overwrites), so processes starting at once
cannot swap a card under a running render.

`prepare_branding` (blocking) makes what is missing and returns what renders will use, with the
start-up line saying so; `job_branding` is the dispatcher's: the render job's branding mapping
with the generated files in it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from agents.render.branding import find_font
from agents.render.ffmpeg import locate_ffmpeg
from agents.render.identity import file_stamp
from agents.render.plan import escape_option, input_url
from streams.settings import Settings

logger = logging.getLogger(__name__)

#: bumped when the cards' look changes: every dropzone gets new ones
CARD_VERSION = 1
CACHE_FOLDER = "branding"
#: the text watermark's height as a fraction of the output height
WATERMARK_TEXT_FRAC = 0.05
_WATERMARK_FONT_PX = 96
_FFMPEG_TIMEOUT_S = 60.0
#: a failed generation is tried again after this long (the cause may be fixed meanwhile)
RETRY_AFTER_S = 300.0
_BACKGROUND = ("0x0b1a33", "0x1b3f73", "0x0d2747")


class CardError(RuntimeError):
    """A card could not be made (no font, FFmpeg failed); the message says what to do."""


@dataclass(frozen=True)
class CardInputs:
    """Everything that decides a generated card's pixels (its cache key)."""

    kind: str  # "intro" or "watermark"
    text: str
    width: int
    height: int
    fps: int
    seconds: float
    font: Path
    logo: Path | None = None

    def key(self) -> str:
        facts = {
            "v": CARD_VERSION,
            "kind": self.kind,
            "text": self.text,
            "size": [self.width, self.height, self.fps, self.seconds],
            "font": [str(self.font), file_stamp(self.font)],
            "logo": [str(self.logo), file_stamp(self.logo)] if self.logo else None,
        }
        canonical = json.dumps(facts, sort_keys=True, ensure_ascii=True)
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    def path(self, cache: Path) -> Path:
        suffix = ".mp4" if self.kind == "intro" else ".png"
        return cache / f"{self.kind}-{self.key()}{suffix}"


def bold_variant(font: Path) -> Path:
    """`DejaVuSans-Bold.ttf` beside `DejaVuSans.ttf` when there is one: a card's name is bold."""
    for name in (f"{font.stem}-Bold{font.suffix}", f"{font.stem}Bold{font.suffix}"):
        candidate = font.with_name(name)
        if candidate.is_file():
            return candidate
    return font


def _num(value: float) -> str:
    return f"{value:.3f}".rstrip("0").rstrip(".") or "0"


def intro_args(card: CardInputs, text_file: Path, out: Path) -> list[str]:
    """FFmpeg arguments of the intro card (pure): gradient, name, rule, logo, fades, silence."""
    w, h, s = card.width, card.height, card.seconds
    # as large as fits: ~0.62 em per character of DejaVu Sans Bold, 90 % of the width at most
    size = max(12, min(round(h * 0.12), round(w * 0.9 / (0.62 * max(1, len(card.text))))))
    background = (
        f"gradients=s={w}x{h}:r={card.fps}:d={_num(s)}:c0={_BACKGROUND[0]}:c1={_BACKGROUND[1]}:"
        f"c2={_BACKGROUND[2]}:nb_colors=3:speed=0.015:type=linear"
    )
    args = ["-f", "lavfi", "-i", background, "-f", "lavfi", "-i", "anullsrc=r=48000:cl=stereo"]
    text_y = "(h-text_h)/2"
    rule_y = f"ih*0.5+{round(size * 0.75)}"
    chain = ""
    if card.logo is not None:
        args += ["-loop", "1", "-i", input_url(card.logo)]
        logo_h = max(2, round(h * 0.22 / 2) * 2)
        chain = (
            f"[2:v]scale=-2:{logo_h},format=rgba,"
            f"fade=t=in:st=0.2:d=0.6:alpha=1[logo];"
            f"[0:v][logo]overlay=x=(W-w)/2:y=H*0.40-h:shortest=1[bg];"
        )
        text_y, rule_y = "h*0.48", f"ih*0.48+{round(size * 1.35)}"
    fade_out = max(0.0, s - 0.45)
    draw = ":".join(
        [
            f"fontfile={escape_option(str(card.font))}",
            f"textfile={escape_option(str(text_file))}",
            "expansion=none",
            f"fontsize={size}",
            "fontcolor=white",
            "shadowcolor=black@0.45",
            f"shadowx={max(1, size // 40)}",
            f"shadowy={max(1, size // 40)}",
            "x=(w-text_w)/2",
            f"y={escape_option(text_y)}",
            "alpha=" + escape_option("min(1,max(0,(t-0.25)/0.6))"),
        ]
    )
    source = "[bg]" if chain else "[0:v]"
    chain += (
        f"{source}drawtext={draw},"
        f"drawbox=x=iw*0.42:y={rule_y}:w=iw*0.16:h={max(2, h // 270)}:color=white@0.7:t=fill,"
        f"fade=t=in:st=0:d=0.3,fade=t=out:st={_num(fade_out)}:d=0.45,format=yuv420p[v]"
    )
    return [
        *args,
        "-filter_complex", chain, "-map", "[v]", "-map", "1:a", "-t", _num(s),
        "-c:v", "libx264", "-preset", "veryfast", "-crf", "20", "-r", str(card.fps),
        "-c:a", "aac", "-b:a", "128k", "-ar", "48000", "-movflags", "+faststart",
        "-f", "mp4", str(out),
    ]  # fmt: skip


def watermark_args(card: CardInputs, text_file: Path, out: Path) -> list[str]:
    """FFmpeg arguments of the text watermark on a transparent canvas wider than the text."""
    px = _WATERMARK_FONT_PX
    width = min(8000, round(px * 0.8 * max(1, len(card.text))) + 4 * px)
    draw = ":".join(
        [
            f"fontfile={escape_option(str(card.font))}",
            f"textfile={escape_option(str(text_file))}",
            "expansion=none",
            f"fontsize={px}",
            "fontcolor=white",
            f"borderw={px // 24}",
            "bordercolor=black@0.55",
            f"x={px}",
            "y=(h-text_h)/2",
        ]
    )
    return [
        "-f", "lavfi", "-i", f"color=c=black@0.0:s={width}x{px * 2}:d=1,format=rgba",
        "-vf", f"drawtext={draw}", "-frames:v", "1", "-update", "1", "-f", "image2",
        str(out),
    ]  # fmt: skip


def _run_ffmpeg(args: list[str], what: str) -> None:
    cmd = [locate_ffmpeg(), "-hide_banner", "-loglevel", "error", "-nostdin", "-y", *args]
    try:
        done = subprocess.run(cmd, capture_output=True, timeout=_FFMPEG_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise CardError(f"FFmpeg could not make the {what}: {exc}") from exc
    if done.returncode != 0:
        tail = done.stderr.decode("utf-8", "replace").strip().splitlines()[-3:]
        raise CardError(f"FFmpeg could not make the {what}: {' / '.join(tail) or done.returncode}")


def _crop_to_ink(path: Path, margin: int) -> tuple[int, int]:
    """Crop a transparent PNG to its visible pixels plus `margin`; its new (width, height)."""
    import cv2  # the QR decoder's dependency; only needed when a watermark is made

    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None or image.ndim != 3 or image.shape[2] != 4:
        raise CardError(f"the generated watermark {path.name} is not an RGBA image")
    ys, xs = (image[:, :, 3] > 0).nonzero()
    if not len(xs):
        raise CardError("the font draws nothing for the dropzone name (no glyphs for it?)")
    top, bottom = max(0, int(ys.min()) - margin), min(image.shape[0], int(ys.max()) + margin + 1)
    left, right = max(0, int(xs.min()) - margin), min(image.shape[1], int(xs.max()) + margin + 1)
    cropped = image[top:bottom, left:right]
    if not cv2.imwrite(str(path), cropped):
        raise CardError(f"cannot write the watermark {path.name}")
    return int(cropped.shape[1]), int(cropped.shape[0])


def _check_picture(path: Path) -> None:
    """FFmpeg loops over an unreadable still instead of failing: look at the logo first."""
    import cv2

    if cv2.imread(str(path), cv2.IMREAD_UNCHANGED) is None:
        raise CardError(f"the logo {path} is not a picture OpenCV can read (PNG, JPEG)")


def make_card(card: CardInputs, cache: Path) -> Path:
    """The card's file in `cache`, made first if it is not there (blocking; seconds at 1080p)."""
    final = card.path(cache)
    if final.is_file() and final.stat().st_size > 0:
        return final
    cache.mkdir(parents=True, exist_ok=True)
    token = uuid.uuid4().hex
    tmp = cache / f".{final.stem}.{token}{final.suffix}"
    with tempfile.NamedTemporaryFile("w", encoding="utf-8", suffix=".txt", delete=False) as fh:
        fh.write(card.text)
        text_file = Path(fh.name)
    try:
        if card.kind == "intro":
            if card.logo is not None:
                _check_picture(card.logo)
            _run_ffmpeg(intro_args(card, text_file, tmp), "intro card")
        else:
            _run_ffmpeg(watermark_args(card, text_file, tmp), "watermark")
            _crop_to_ink(tmp, margin=_WATERMARK_FONT_PX // 8)
        with contextlib.suppress(FileExistsError):  # made meanwhile by another process: keep it
            os.link(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)
        text_file.unlink(missing_ok=True)
    logger.info("branding: made the %s %s", card.kind, final)
    return final


@dataclass(frozen=True)
class Prepared:
    """What renders get: files (None: none) and how each came about, in words."""

    intro: Path | None
    intro_how: str
    logo: Path | None
    watermark_how: str
    title: bool
    logo_width_frac: float | None = None  # set for the generated text watermark
    failed: bool = False

    def line(self) -> str:
        return (
            f"branding: intro {self.intro_how}, watermark {self.watermark_how}, "
            f"title {'on' if self.title else 'off'}"
        )


def cache_dir(settings: Settings) -> Path:
    return (settings.share_root / CACHE_FOLDER).resolve()


def _font(settings: Settings) -> Path | None:
    found = find_font(settings.branding_font)
    return bold_variant(found) if found is not None and settings.branding_font is None else found


def prepare_branding(settings: Settings) -> Prepared:
    """Make the default cards the settings ask for (blocking) and say what renders will use.

    A card that cannot be made leaves that part off with a warning saying why and what to do;
    it never stops renders."""
    name = " ".join(settings.dropzone_name.split()) or "skyreel"  # no line breaks on a card
    logo = settings.branding_logo if isinstance(settings.branding_logo, Path) else None
    font = _font(settings)
    cache = cache_dir(settings)
    failed = False
    fix = "set SKYREEL_BRANDING_FONT to a .ttf file, or install fonts-dejavu"

    intro: Path | None = None
    if isinstance(settings.branding_intro, Path):
        intro, intro_how = settings.branding_intro, f"file {settings.branding_intro}"
    elif settings.branding_intro is False:
        intro_how = "off"
    elif font is None:
        intro_how, failed = f"off (no TrueType font to draw the dropzone name: {fix})", True
    else:
        card = CardInputs(
            "intro", name, settings.render_width, settings.render_height, settings.render_fps,
            settings.branding_intro_seconds, font, logo,
        )  # fmt: skip
        try:
            intro = make_card(card, cache)
            with_logo = f" and logo {logo.name}" if logo else ""
            intro_how = f"generated from dropzone name {name!r}{with_logo} ({intro.name})"
        except (CardError, OSError) as exc:
            intro_how, failed = f"off (could not generate it: {exc})", True

    watermark: Path | None = None
    frac: float | None = None
    if logo is not None:
        watermark, watermark_how = logo, f"file {logo}"
        try:
            _check_picture(logo)
        except CardError as exc:  # kept: renders say so too, the operator fixes the setting
            watermark_how, failed = f"file {logo}, which renders will fail on: {exc}", True
    elif settings.branding_logo is False:
        watermark_how = "off"
    elif font is None:
        watermark_how, failed = f"off (no TrueType font to draw the dropzone name: {fix})", True
    else:
        card = CardInputs("watermark", name, 0, 0, 0, 0.0, font)
        try:
            watermark = make_card(card, cache)
            frac = watermark_width_frac(watermark, settings.render_width, settings.render_height)
            watermark_how = f"generated from dropzone name {name!r} ({watermark.name})"
        except (CardError, OSError) as exc:
            watermark_how, failed = f"off (could not generate it: {exc})", True
    return Prepared(
        intro, intro_how, watermark, watermark_how, settings.branding_title, frac, failed
    )


def watermark_width_frac(png: Path, width: int, height: int) -> float:
    """The share of the output width that makes the text watermark `WATERMARK_TEXT_FRAC` of the
    output height tall (a long name is wider, not smaller)."""
    import cv2

    image = cv2.imread(str(png), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise CardError(f"cannot read the watermark {png.name}")
    h, w = image.shape[:2]
    frac = (WATERMARK_TEXT_FRAC * height) * (w / max(1, h)) / width
    return round(min(0.6, max(0.02, frac)), 4)


# --- the dispatcher's side ----------------------------------------------------------------------

_prepared: dict[tuple[object, ...], tuple[float, Prepared]] = {}


def _settings_key(settings: Settings) -> tuple[object, ...]:
    return (
        settings.dropzone_name, settings.branding_intro, settings.branding_logo,
        settings.branding_font, settings.branding_title, settings.branding_intro_seconds,
        settings.render_width, settings.render_height, settings.render_fps,
        str(settings.share_root),
    )  # fmt: skip


def prepared_for(settings: Settings) -> Prepared:
    """`prepare_branding`, remembered per process (a failure is tried again after a while)."""
    key = _settings_key(settings)
    now = time.monotonic()
    found = _prepared.get(key)
    # a card removed from the share since (a clean-up) is made again, not sent to a render
    if (
        found is not None
        and (not found[1].failed or now - found[0] < RETRY_AFTER_S)
        and all(p.is_file() for p in (found[1].intro, found[1].logo) if p is not None)
    ):
        return found[1]
    prepared = prepare_branding(settings)
    if prepared.failed:
        logger.warning("%s", prepared.line())
    _prepared[key] = (now, prepared)
    return prepared


def log_branding(settings: Settings) -> Prepared:
    """At a process's start: make the cards and log the one line saying which branding is used."""
    prepared = prepared_for(settings)
    if not prepared.failed:  # prepared_for logged a failure as a warning already
        logger.info("%s", prepared.line())
    return prepared


def branding_mapping(settings: Settings, prepared: Prepared) -> dict[str, object]:
    """The render job's branding: the settings' plus the generated files."""
    out = settings.branding()
    if prepared.intro is not None:
        out["intro_path"] = str(prepared.intro.resolve())
    if prepared.logo is not None:
        out["logo_path"] = str(prepared.logo.resolve())
    if prepared.logo_width_frac is not None:
        out["logo_width_frac"] = prepared.logo_width_frac
    return out


async def job_branding(settings: Settings) -> dict[str, object]:
    """`branding_mapping` for a render job; cards are checked (and made) off the event loop."""
    prepared = await asyncio.to_thread(prepared_for, settings)
    return branding_mapping(settings, prepared)
