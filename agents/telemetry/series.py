"""Typed telemetry of one clip (or of chapters joined into one timeline), and the pure helpers that
clean it: drop GPS samples without a lock, parse GPSU time, order GoPro chapters, join chapters.

Units: time in seconds from the start of the clip (or of the first chapter), acceleration in m/s²,
rotation in rad/s, latitude/longitude in degrees, altitude in metres (WGS84), speeds in m/s.
"""

from __future__ import annotations

import dataclasses
import enum
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Self

import numpy as np
import numpy.typing as npt

from agents.recording import parse_gopro_name

FloatArray = npt.NDArray[np.float64]

STANDARD_GRAVITY = 9.80665  # m/s², what "1 g" means everywhere in this package
# GPSU before this is a camera clock that never got a GPS time (GoPro writes 2000-01-01 or junk).
EARLIEST_PLAUSIBLE_GPS_TIME = datetime(2010, 1, 1, tzinfo=UTC)


class GpsFix(enum.IntEnum):
    """GPSF: 0 no lock (the samples are zeros or stale), 2 two-dimensional, 3 three-dimensional."""

    NONE = 0
    TWO_D = 2
    THREE_D = 3


class TelemetryStatus(enum.StrEnum):
    OK = "ok"
    NO_TELEMETRY = "no_telemetry"  # no gpmd track: a camera other than a GoPro, or GPMF off


@dataclass(frozen=True)
class TimedSeries:
    """What every series has: sample times `t` (n,) in seconds, their count and rate."""

    t: FloatArray

    @property
    def count(self) -> int:
        return len(self.t)

    @property
    def rate_hz(self) -> float:
        return sample_rate(self.t)

    def shifted(self, offset_s: float) -> Self:
        """The same samples, `offset_s` later (a chapter placed on the joined timeline)."""
        return dataclasses.replace(self, t=self.t + offset_s)


@dataclass(frozen=True)
class Vector3Series(TimedSeries):
    """Samples of a three-axis sensor: `t` (n,), `xyz` (n, 3) in the camera's axis order."""

    xyz: FloatArray

    def __post_init__(self) -> None:
        if self.xyz.shape != (len(self.t), 3):
            raise ValueError(f"xyz must be ({len(self.t)}, 3), got {self.xyz.shape}")

    @property
    def magnitude(self) -> FloatArray:
        return np.asarray(np.linalg.norm(self.xyz, axis=1), dtype=np.float64)


@dataclass(frozen=True)
class QuaternionSeries(TimedSeries):
    """CORI camera orientation, `wxyz` (n, 4) unit quaternions."""

    wxyz: FloatArray


@dataclass(frozen=True)
class GpsSeries(TimedSeries):
    """GPS5/GPS9 samples with a lock; `fix` per sample (GPSF is per payload on GPS5 cameras)."""

    lat: FloatArray
    lon: FloatArray
    alt: FloatArray
    speed_2d: FloatArray
    speed_3d: FloatArray
    fix: npt.NDArray[np.int64]

    def select(self, keep: npt.NDArray[np.bool_]) -> GpsSeries:
        return GpsSeries(
            self.t[keep], self.lat[keep], self.lon[keep], self.alt[keep],
            self.speed_2d[keep], self.speed_3d[keep], self.fix[keep],
        )  # fmt: skip


@dataclass(frozen=True)
class ClipTelemetry:
    """Everything read from one clip's gpmd track (or chapters joined by `join_chapters`)."""

    source: str
    status: TelemetryStatus
    duration_s: float
    camera: str = ""
    accl: Vector3Series | None = None
    gyro: Vector3Series | None = None
    gps: GpsSeries | None = None
    cori: QuaternionSeries | None = None
    gps_start_utc: datetime | None = None  # the first valid GPSU, at `gps_start_t`
    gps_start_t: float | None = None
    dropped_unlocked: int = 0  # GPS samples dropped for fix 0
    bad_gps_times: int = 0  # GPSU values that were unparseable or implausible

    @property
    def has_gps(self) -> bool:
        return self.gps is not None and self.gps.count > 0


def sample_rate(t: FloatArray) -> float:
    """Samples per second over the span of `t` (0 with fewer than two samples)."""
    if len(t) < 2 or t[-1] <= t[0]:
        return 0.0
    return float((len(t) - 1) / (t[-1] - t[0]))


def empty_vector3() -> Vector3Series:
    return Vector3Series(np.zeros(0), np.zeros((0, 3)))


def parse_gpsu(text: str) -> datetime | None:
    """GPSU `yymmddhhmmss.sss` (UTC) to a datetime; None for anything malformed or implausible."""
    match = re.fullmatch(
        r"(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})(?:\.(\d{1,3}))?", text.strip()
    )
    if match is None:
        return None
    yy, mo, dd, hh, mi, ss = (int(g) for g in match.groups()[:6])
    millis = int((match.group(7) or "0").ljust(3, "0"))
    try:
        when = datetime(2000 + yy, mo, dd, hh, mi, ss, millis * 1000, tzinfo=UTC)
    except ValueError:
        return None
    return when if when >= EARLIEST_PLAUSIBLE_GPS_TIME else None


def drop_unlocked(gps: GpsSeries) -> tuple[GpsSeries, int]:
    """Keep samples with a fix and a position; a camera writes zeros (or the last position) before
    it has a lock, which would put the jump at 0°N 0°E or make a 4000 m "descent"."""
    keep = (gps.fix >= GpsFix.TWO_D) & ~((gps.lat == 0.0) & (gps.lon == 0.0))
    keep &= np.isfinite(gps.lat) & np.isfinite(gps.lon) & np.isfinite(gps.alt)
    return gps.select(keep), int(len(keep) - int(keep.sum()))


def group_chapters(names: Sequence[str]) -> list[list[str]]:
    """File names grouped into recordings, each in chapter order (GoPro naming, as
    `agents.recording.parse_gopro_name` reads it: GX01nnnn, GX02nnnn ...); other names stand
    alone, in the order given."""
    recordings: dict[tuple[str, int], list[tuple[int, str]]] = {}
    alone: list[list[str]] = []
    for name in names:
        parsed = parse_gopro_name(name)
        if parsed is None:
            alone.append([name])
        else:
            key = (parsed.family, parsed.recording)
            recordings.setdefault(key, []).append((parsed.chapter, name))
    grouped = [[n for _, n in sorted(recordings[k])] for k in sorted(recordings)]
    return grouped + alone


def join_chapters(chapters: Sequence[ClipTelemetry]) -> ClipTelemetry:
    """Chapters of one recording as one timeline: each chapter's times restart at 0, so chapter k
    is shifted by the summed durations of chapters before it (the container durations, not the
    GPMF payload times, which drift across chapters)."""
    if not chapters:
        raise ValueError("join_chapters needs at least one chapter")
    with_data = [c for c in chapters if c.status is TelemetryStatus.OK]
    offsets = np.concatenate([[0.0], np.cumsum([c.duration_s for c in chapters])[:-1]])
    total = float(sum(c.duration_s for c in chapters))
    if not with_data:
        return dataclasses.replace(chapters[0], duration_s=total)

    def cat_vec(get: str) -> Vector3Series | None:
        parts = [
            getattr(c, get).shifted(o) for c, o in zip(chapters, offsets, strict=True)
            if getattr(c, get) is not None
        ]  # fmt: skip
        if not parts:
            return None
        return Vector3Series(
            np.concatenate([p.t for p in parts]), np.concatenate([p.xyz for p in parts])
        )

    gps_parts = [
        c.gps.shifted(o) for c, o in zip(chapters, offsets, strict=True) if c.gps is not None
    ]
    gps = None
    if gps_parts:
        gps = GpsSeries(*(np.concatenate([getattr(p, f.name) for p in gps_parts])
                          for f in dataclasses.fields(GpsSeries)))  # fmt: skip
    cori_parts = [
        c.cori.shifted(o) for c, o in zip(chapters, offsets, strict=True) if c.cori is not None
    ]
    cori = None
    if cori_parts:
        cori = QuaternionSeries(
            np.concatenate([p.t for p in cori_parts]), np.concatenate([p.wxyz for p in cori_parts])
        )
    first_gps = next(
        ((c, o) for c, o in zip(chapters, offsets, strict=True) if c.gps_start_utc), None
    )
    return ClipTelemetry(
        source=chapters[0].source,
        status=TelemetryStatus.OK,
        duration_s=total,
        camera=with_data[0].camera,
        accl=cat_vec("accl"),
        gyro=cat_vec("gyro"),
        gps=gps,
        cori=cori,
        gps_start_utc=first_gps[0].gps_start_utc if first_gps else None,
        gps_start_t=(first_gps[0].gps_start_t or 0.0) + first_gps[1] if first_gps else None,
        dropped_unlocked=sum(c.dropped_unlocked for c in chapters),
        bad_gps_times=sum(c.bad_gps_times for c in chapters),
    )


def smooth(x: FloatArray, width: int) -> FloatArray:
    """Moving average over `width` samples, edges held."""
    if width <= 1 or len(x) < width:
        return x
    padded = np.pad(x, (width // 2, width - 1 - width // 2), mode="edge")
    return np.asarray(np.convolve(padded, np.ones(width) / width, mode="valid"), dtype=np.float64)


def runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) index ranges where `mask` is true."""
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1), strict=True))
