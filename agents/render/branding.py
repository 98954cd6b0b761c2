"""Per-dropzone branding: intro, watermark, title style and output encoding settings.

Values end up inside an FFmpeg filter graph, so everything that is not a file path is validated
strictly here (colours, presets, numbers); file paths are escaped by `plan`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Literal, cast

logger = logging.getLogger(__name__)

Corner = Literal["tl", "tr", "bl", "br"]
CORNERS: tuple[str, ...] = ("tl", "tr", "bl", "br")
X264_PRESETS: tuple[str, ...] = (
    "ultrafast",
    "superfast",
    "veryfast",
    "faster",
    "fast",
    "medium",
    "slow",
    "slower",
    "veryslow",
)
DEFAULT_FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
_FONT_DIRS = (
    Path("/usr/share/fonts"),
    Path("/usr/local/share/fonts"),
    Path.home() / ".fonts",
    Path.home() / ".local/share/fonts",
    Path("/Library/Fonts"),
    Path("/System/Library/Fonts"),
    Path("C:/Windows/Fonts"),
)
# Named colour or #RRGGBB[AA], optionally with @alpha: nothing that could escape a filter option.
_COLOR = re.compile(
    r"^(?:[A-Za-z]{3,20}|#[0-9A-Fa-f]{6}(?:[0-9A-Fa-f]{2})?)(?:@(?:0|1|0?\.\d{1,3}))?$"
)
_BITRATE = re.compile(r"^\d{2,4}k$")


class BrandingError(ValueError):
    """Branding settings that cannot produce a valid render."""


@dataclass(frozen=True)
class Branding:
    """How one dropzone's videos look and are encoded."""

    intro_path: Path | None = None
    logo_path: Path | None = None
    logo_corner: Corner = "br"
    logo_opacity: float = 0.8
    logo_width_frac: float = 0.14  # of the output width
    logo_margin_frac: float = 0.025  # of the output width
    title_enabled: bool = True
    title_font: Path | None = None  # None: DejaVuSans or any TrueType font found
    title_size_frac: float = 0.065  # of the output height
    title_color: str = "white"
    title_border_color: str = "black@0.7"
    title_seconds: float = 5.0  # from the start of the footage; 0 shows it throughout
    width: int = 1920
    height: int = 1080
    fps: int = 30
    preset: str = "veryfast"
    crf: int = 22
    audio_rate: int = 48000
    audio_bitrate: str = "160k"
    scale_flags: str = "bicubic"
    poster_at_s: float = 1.5  # into the footage, so the poster shows the watermark and title

    def __post_init__(self) -> None:
        problems: list[str] = []
        if self.logo_corner not in CORNERS:
            problems.append(f"logo_corner must be one of {CORNERS}")
        if not 0.0 <= self.logo_opacity <= 1.0:
            problems.append("logo_opacity must be within 0..1")
        if not 0.01 <= self.logo_width_frac <= 0.9:
            problems.append("logo_width_frac must be within 0.01..0.9")
        if not 0.0 <= self.logo_margin_frac <= 0.3:
            problems.append("logo_margin_frac must be within 0..0.3")
        if not 0.01 <= self.title_size_frac <= 0.5:
            problems.append("title_size_frac must be within 0.01..0.5")
        for name in ("title_color", "title_border_color"):
            if not _COLOR.match(getattr(self, name)):
                problems.append(f"{name} is not a colour like 'white', '#ffcc00' or 'black@0.5'")
        if self.title_seconds < 0:
            problems.append("title_seconds must be >= 0")
        if not (16 <= self.width <= 7680 and 16 <= self.height <= 4320):
            problems.append("width/height out of range")
        if self.width % 2 or self.height % 2:
            problems.append("width and height must be even (yuv420p)")
        if not 1 <= self.fps <= 120:
            problems.append("fps must be within 1..120")
        if self.preset not in X264_PRESETS:
            problems.append(f"preset must be one of {X264_PRESETS}")
        if not 0 <= self.crf <= 51:
            problems.append("crf must be within 0..51")
        if self.audio_rate not in (32000, 44100, 48000):
            problems.append("audio_rate must be 32000, 44100 or 48000")
        if not _BITRATE.match(self.audio_bitrate):
            problems.append("audio_bitrate must look like '160k'")
        if self.scale_flags not in ("fast_bilinear", "bilinear", "bicubic", "area", "lanczos"):
            problems.append("scale_flags must be a known swscale algorithm")
        if self.poster_at_s < 0:
            problems.append("poster_at_s must be >= 0")
        if problems:
            raise BrandingError("; ".join(problems))

    @classmethod
    def from_mapping(cls, data: Mapping[str, object]) -> Branding:
        """Build from JSON-like data (job payloads, database rows); unknown keys are an error."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise BrandingError(f"unknown branding settings: {unknown}")
        values: dict[str, object] = dict(data)
        for key in ("intro_path", "logo_path", "title_font"):
            raw = values.get(key)
            values[key] = Path(str(raw)) if raw not in (None, "") else None
        try:
            return cls(**values)  # type: ignore[arg-type]
        except TypeError as exc:
            raise BrandingError(str(exc)) from exc

    def to_mapping(self) -> dict[str, object]:
        """JSON-friendly form (paths as strings)."""
        out: dict[str, object] = asdict(self)
        for key in ("intro_path", "logo_path", "title_font"):
            value = cast(Path | None, out[key])
            out[key] = str(value) if value is not None else None
        return out


def find_font(configured: Path | None) -> Path | None:
    """The configured font, else DejaVuSans, else any TrueType font on the machine, else None."""
    if configured is not None:
        if configured.is_file():
            return configured
        logger.warning("configured title font %s not found; looking for another", configured)
    if DEFAULT_FONT.is_file():
        return DEFAULT_FONT
    for folder in _FONT_DIRS:
        if not folder.is_dir():
            continue
        for candidate in sorted(folder.rglob("*.ttf")):
            return candidate
    return None
