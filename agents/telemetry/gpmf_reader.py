"""Read the GoPro GPMF telemetry of an MP4: the `gpmd` track ("GoPro MET") to `ClipTelemetry`.

Two libraries, each for what it does best. PyAV (FFmpeg's MP4 demuxer, already ours for probing)
finds the gpmd track and hands out its samples with their times; GoPro's own reference parser
(`py-gpmf-parser`, the bindings of github.com/gopro/gpmf-parser) walks the KLV of each sample and
applies SCAL. Chosen over `telemetry-parser` 0.3.0 (the Gyroflow core), which on this machine
reads the same files (2082 MAX ACCL samples in both) but exposes untyped string-keyed dicts
(GPSF/GPSU as "0x47505346"), GPS unscaled, works only from a path, and says "Unsupported file
format" alike for a truncated file, random bytes and a file with no gpmd track. With PyAV in
front, "no gpmd track" (a camera other than a GoPro) is a result, and a file FFmpeg cannot open
or whose payloads are not GPMF is a `TelemetryReadError` saying so.

Times: each payload's samples are spread evenly over the payload's span in the MP4 index (what
GoPro's own extractor does). Chapters are joined by `series.join_chapters`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import av
import numpy as np
import py_gpmf_parser as gpmf

from agents.telemetry.series import (
    ClipTelemetry,
    FloatArray,
    GpsFix,
    GpsSeries,
    QuaternionSeries,
    TelemetryStatus,
    Vector3Series,
    drop_unlocked,
    join_chapters,
    parse_gpsu,
)

logger = logging.getLogger(__name__)

GPMF_HANDLER = "GoPro MET"  # the gpmd track's handler name, on cameras and in FFmpeg's muxer
GPS_TIME_TOLERANCE_S = 2.0  # a GPSU further than this from the track's own clock is bad
_RECURSE = gpmf.GPMF_RECURSE_LEVELS_AND_TOLERANT
_OK = gpmf.GPMF_ERROR.GPMF_OK


class TelemetryReadError(Exception):
    """The file could not be read as an MP4 with GPMF; `reason` says what to check."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


@dataclass
class _Collected:
    t: list[FloatArray] = field(default_factory=list)
    rows: list[FloatArray] = field(default_factory=list)

    def add(self, t_in: float, t_out: float, rows: FloatArray) -> None:
        n = len(rows)
        self.t.append(t_in + np.arange(n, dtype=np.float64) * ((t_out - t_in) / n))
        self.rows.append(rows)

    def arrays(self, width: int) -> tuple[FloatArray, FloatArray]:
        if not self.t:
            return np.zeros(0), np.zeros((0, width))
        return np.concatenate(self.t), np.concatenate(self.rows)


def _find_gpmd(container: av.container.InputContainer) -> av.stream.Stream | None:
    for stream in container.streams:
        if stream.type == "data" and GPMF_HANDLER in stream.metadata.get("handler_name", ""):
            return stream
    return None


def _scaled_all(stream: object, key: str) -> list[FloatArray]:
    """Every `key` item of one payload, scaled, as (samples, elements) arrays."""
    found: list[FloatArray] = []
    gpmf.GPMF_ResetState(stream)
    while gpmf.GPMF_FindNext(stream, gpmf.Str2FourCC(key), _RECURSE) == _OK:
        elements = gpmf.GPMF_ElementsInStruct(stream)
        samples = gpmf.GPMF_Repeat(stream)
        if not samples or not elements:
            continue
        ret, data = gpmf.GPMF_ScaledData(
            stream, samples * elements * 8, 0, samples, gpmf.GPMF_SampleType.DOUBLE
        )
        if ret == _OK:
            found.append(
                np.asarray(data[: samples * elements], dtype=np.float64).reshape(-1, elements)
            )
    return found


def _raw_strings(stream: object, key: str) -> list[str]:
    gpmf.GPMF_ResetState(stream)
    found = []
    while gpmf.GPMF_FindNext(stream, gpmf.Str2FourCC(key), _RECURSE) == _OK:
        size = gpmf.GPMF_StructSize(stream) * gpmf.GPMF_Repeat(stream)
        raw = bytes(gpmf.GPMF_RawData(stream))[:size]
        found.append(raw.split(b"\x00")[0].decode("latin-1"))
    return found


@dataclass
class _Track:
    accl: _Collected = field(default_factory=_Collected)
    gyro: _Collected = field(default_factory=_Collected)
    cori: _Collected = field(default_factory=_Collected)
    gps: _Collected = field(default_factory=_Collected)  # lat lon alt 2d 3d fix
    gps_times: list[tuple[float, str]] = field(default_factory=list)
    camera: str = ""
    payloads: int = 0
    bad_payloads: int = 0


def _read_payload(track: _Track, data: bytes, t_in: float, t_out: float) -> None:
    words = np.frombuffer(data[: len(data) - len(data) % 4], dtype=np.uint32).copy()
    ret, stream = gpmf.GPMF_Init(words, len(words) * 4)
    if ret != _OK:
        track.bad_payloads += 1
        return
    track.payloads += 1
    if not track.camera and (names := _raw_strings(stream, "DVNM")):
        track.camera = names[0]
    for key, target, width in (("ACCL", track.accl, 3), ("GYRO", track.gyro, 3),
                               ("CORI", track.cori, 4)):  # fmt: skip
        for rows in _scaled_all(stream, key):
            if rows.shape[1] == width:
                target.add(t_in, t_out, rows)
    fixes = [int(r[0, 0]) for r in _scaled_all(stream, "GPSF")]
    for rows in _scaled_all(stream, "GPS5"):
        if rows.shape[1] == 5:
            fix = np.full((len(rows), 1), fixes[0] if fixes else int(GpsFix.THREE_D))
            track.gps.add(t_in, t_out, np.hstack([rows, fix]))
    for rows in _scaled_all(stream, "GPS9"):
        if rows.shape[1] >= 9:  # lat lon alt 2d 3d days secs dop fix: the fix is per sample
            track.gps.add(t_in, t_out, np.hstack([rows[:, :5], rows[:, 8:9]]))
    track.gps_times.extend((t_in, text) for text in _raw_strings(stream, "GPSU")[:1])
    del words  # the parser read from it; keep it alive until here


def _gps_time(track: _Track) -> tuple[datetime | None, float | None, int]:
    """The first GPSU consistent with the track's clock, and how many were bad."""
    parsed = [(t, parse_gpsu(text)) for t, text in track.gps_times]
    good = [(t, when) for t, when in parsed if when is not None]
    if not good:
        return None, None, len(parsed)
    offsets = sorted((when - timedelta(seconds=t)).timestamp() for t, when in good)
    median = offsets[len(offsets) // 2]
    consistent = [
        (t, w) for t, w in good
        if abs((w - timedelta(seconds=t)).timestamp() - median) <= GPS_TIME_TOLERANCE_S
    ]  # fmt: skip
    t0, first = consistent[0]
    return first, t0, len(parsed) - len(consistent)


def read_clip(path: Path) -> ClipTelemetry:
    """One clip's telemetry; `NO_TELEMETRY` when it has no gpmd track; raises TelemetryReadError."""
    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError) as exc:
        raise TelemetryReadError(path, f"not a readable video file ({exc})") from exc
    with container:
        duration = (container.duration or 0) / av.time_base
        gpmd = _find_gpmd(container)
        if gpmd is None:
            return ClipTelemetry(str(path), TelemetryStatus.NO_TELEMETRY, duration)
        track = _Track()
        try:
            for packet in container.demux(gpmd):
                if not packet.size or packet.pts is None or packet.time_base is None:
                    continue
                t_in = float(packet.pts * packet.time_base)
                t_out = t_in + float((packet.duration or 0) * packet.time_base)
                _read_payload(track, bytes(packet), t_in, t_out if t_out > t_in else t_in + 1.0)
        except av.FFmpegError as exc:
            raise TelemetryReadError(path, f"the gpmd track is damaged ({exc})") from exc
    if track.payloads == 0:
        raise TelemetryReadError(
            path, f"the gpmd track has {track.bad_payloads} payloads and none is valid GPMF"
        )
    return _assemble(path, duration, track)


def _assemble(path: Path, duration: float, track: _Track) -> ClipTelemetry:
    accl_t, accl = track.accl.arrays(3)
    gyro_t, gyro = track.gyro.arrays(3)
    cori_t, cori = track.cori.arrays(4)
    gps_t, gps_rows = track.gps.arrays(6)
    gps, dropped = None, 0
    if len(gps_t):
        lat, lon, alt, s2, s3, fix = (gps_rows[:, i] for i in range(6))
        raw = GpsSeries(gps_t, lat, lon, alt, s2, s3, fix.astype(np.int64))
        gps, dropped = drop_unlocked(raw)
    utc, utc_t, bad_times = _gps_time(track)
    if track.bad_payloads:
        logger.warning("%s: %d gpmd payloads are not valid GPMF, skipped", path, track.bad_payloads)
    return ClipTelemetry(
        source=str(path),
        status=TelemetryStatus.OK,
        duration_s=duration,
        camera=track.camera,
        accl=Vector3Series(accl_t, accl) if len(accl_t) else None,
        gyro=Vector3Series(gyro_t, gyro) if len(gyro_t) else None,
        gps=gps if gps is not None and gps.count else None,
        cori=QuaternionSeries(cori_t, cori) if len(cori_t) else None,
        gps_start_utc=utc,
        gps_start_t=utc_t,
        dropped_unlocked=dropped,
        bad_gps_times=bad_times,
    )


def read_recording(paths: list[Path]) -> ClipTelemetry:
    """Chapters of one recording (in chapter order, see `series.group_chapters`) as one timeline."""
    return join_chapters([read_clip(p) for p in paths])
