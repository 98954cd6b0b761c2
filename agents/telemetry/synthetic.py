"""Write a synthetic jump (`agents/telemetry/profile.py`) as GoPro-like MP4 chapters: a small H.264
picture (its colour follows the phase), the jump's sound (AAC) and its GPMF telemetry in a `gpmd`
data stream, which FFmpeg's MP4 muxer writes as the "GoPro MET" metadata track cameras write.

One gpmd payload per second, as cameras do: ACCL and GYRO (200 Hz), GPS5 with GPSF, GPSU and
GPSP (18 Hz; fix 0 and zeros before the lock and in dropouts), optionally CORI. `chapter_s`
splits the recording into GX01nnnn, GX02nnnn ... files whose times each restart at 0.
The demo card (agents/demo_clips.py) muxes the same gpmd track and sound under its own picture
(`add_gpmd_stream`, `mux_gpmd`, `totals_before`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from agents.telemetry import gpmf_writer as w
from agents.telemetry.profile import AUDIO_RATE_HZ, JumpProfile, JumpTruth
from agents.telemetry.series import GpsFix

ACCL_SCALE = 418  # LSB per m/s², what a HERO writes (int16: +-78 m/s², 8 g)
GYRO_SCALE = 939  # LSB per rad/s
GPS5_SCALE = (10_000_000, 10_000_000, 1000, 1000, 100)
_PHASE_COLOURS = {"plane": (90, 90, 80), "freefall": (60, 130, 230), "canopy": (120, 200, 240),
                  "ground": (70, 140, 60)}  # fmt: skip
GPMD_TIME_BASE = Fraction(1, 1000)


@dataclass(frozen=True)
class VideoFormat:
    width: int = 160
    height: int = 96
    fps: int = 5


def _gpmd_payload(
    profile: JumpProfile, lo: float, hi: float, totals: dict[bytes, int], start_utc: datetime,
    with_cori: bool, bad_gps_time: bool,
) -> bytes:  # fmt: skip
    streams = []
    for key, name, units, series, scale in (
        (b"ACCL", "Accelerometer", b"m/s\xb2", profile.accl, ACCL_SCALE),
        (b"GYRO", "Gyroscope", b"rad/s", profile.gyro, GYRO_SCALE),
    ):
        sel = (series.t >= lo) & (series.t < hi)
        if sel.any():
            totals[key] = totals.get(key, 0) + int(sel.sum())
            stream = w.SensorStream(key, name, units, series.xyz[sel], (scale,))
            streams.append(w.sensor_stream(stream, totals[key]))
    gps = profile.gps
    sel = (gps.t >= lo) & (gps.t < hi)
    if profile.params.has_gps and sel.any():
        locked = gps.fix[sel] >= GpsFix.TWO_D
        fix = int(GpsFix.THREE_D) if locked.mean() > 0.5 else int(GpsFix.NONE)
        rows = np.stack([gps.lat[sel], gps.lon[sel], gps.alt[sel], gps.speed_2d[sel],
                         gps.speed_3d[sel]], axis=1)  # fmt: skip
        totals[b"GPS5"] = totals.get(b"GPS5", 0) + len(rows)
        when = start_utc + timedelta(seconds=lo)
        gpsu = w.klv(b"GPSU", "U", 16, 1, b"000000000000.000") if bad_gps_time else w.gpsu(when)
        extra = (w.numbers(b"GPSF", "L", fix), gpsu, w.numbers(b"GPSP", "S", 154 if fix else 9999))
        stream = w.SensorStream(b"GPS5", "GPS (Lat., Long., Alt., 2D speed, 3D speed)", b"deg",
                                rows, GPS5_SCALE, type_char="l", extra=extra)  # fmt: skip
        streams.append(w.sensor_stream(stream, totals[b"GPS5"]))
    if with_cori:
        n = max(1, round((hi - lo) * 30))
        quats = np.tile([1.0, 0.0, 0.0, 0.0], (n, 1))
        totals[b"CORI"] = totals.get(b"CORI", 0) + n
        streams.append(
            w.sensor_stream(
                w.SensorStream(b"CORI", "CameraOrientation", b"", quats, (32767,)), totals[b"CORI"]
            )
        )
    return w.payload("GoPro synthetic", streams)


def write_jump(
    profile: JumpProfile,
    directory: Path,
    recording: int = 1,
    chapter_s: float | None = None,
    video: VideoFormat = VideoFormat(),
    with_cori: bool = False,
    bad_gps_time_payload: int | None = None,
    start_utc: datetime = datetime(2026, 6, 1, 10, 0, tzinfo=UTC),
    creation_time: datetime | None = None,
) -> list[Path]:
    """The jump as one MP4 per chapter (GX01nnnn.MP4 ...); returns their paths in order.

    `creation_time`: when the recording started, written into each chapter's container (as a
    camera does, each chapter at its own start); None writes none."""
    total = profile.truth.duration_s
    span = chapter_s or total
    paths = []
    totals: dict[bytes, int] = {}
    for index in range(math.ceil(total / span)):
        lo, hi = index * span, min(total, (index + 1) * span)
        path = directory / f"GX{index + 1:02d}{recording:04d}.MP4"
        created = None if creation_time is None else creation_time + timedelta(seconds=lo)
        _write_chapter(profile, path, lo, hi, video, totals, start_utc, with_cori,
                       bad_gps_time_payload, created)  # fmt: skip
        paths.append(path)
    return paths


def phase_at(truth: JumpTruth, t: float) -> str:
    """The phase at `t` s into the recording: plane, freefall, canopy or ground."""
    if t < truth.exit_s:
        return "plane"
    if t < truth.opening_s:
        return "freefall"
    return "canopy" if t < truth.landing_s else "ground"


def add_gpmd_stream(out: av.container.OutputContainer) -> av.stream.Stream:
    """The container's `gpmd` data track (FFmpeg's mov muxer: handler "meta", "GoPro MET")."""
    ds = out.add_data_stream("bin_data")
    ds.codec_tag = "gpmd"
    ds.time_base = GPMD_TIME_BASE
    return ds


def totals_before(profile: JumpProfile, lo: float) -> dict[bytes, int]:
    """The sample counts (TSMP) a chapter starting at `lo` continues from."""
    totals = {b"ACCL": int((profile.accl.t < lo).sum()), b"GYRO": int((profile.gyro.t < lo).sum())}
    if profile.params.has_gps:
        totals[b"GPS5"] = int((profile.gps.t < lo).sum())
    return {k: v for k, v in totals.items() if v}


def mux_gpmd(
    out: av.container.OutputContainer, ds: av.stream.Stream, profile: JumpProfile, lo: float,
    hi: float, totals: dict[bytes, int], start_utc: datetime, with_cori: bool = False,
    bad_payload: int | None = None,
) -> None:  # fmt: skip
    """The chapter [lo, hi) of the profile's telemetry: one GPMF payload a second into `ds`;
    `totals` (the TSMP counts so far) is updated."""
    for k in range(math.ceil(hi - lo)):
        a, b = lo + k, min(hi, lo + k + 1)
        number = int(lo) + k
        data = _gpmd_payload(profile, a, b, totals, start_utc, with_cori, number == bad_payload)
        out.mux(_packet(data, ds, k * 1000, round((b - a) * 1000)))


def _packet(
    data: bytes, stream: av.stream.Stream | None, pts_ms: int, duration_ms: int
) -> av.Packet:
    packet = av.Packet(data)
    if stream is not None:
        packet.stream = stream
    packet.time_base = GPMD_TIME_BASE
    packet.pts = packet.dts = pts_ms
    packet.duration = duration_ms
    return packet


def _write_chapter(
    profile: JumpProfile, path: Path, lo: float, hi: float, video: VideoFormat,
    totals: dict[bytes, int], start_utc: datetime, with_cori: bool, bad_payload: int | None,
    created: datetime | None = None,
) -> None:  # fmt: skip
    tr = profile.truth
    with av.open(str(path), "w", format="mp4") as out:
        if created is not None:
            out.metadata["creation_time"] = created.astimezone(UTC).strftime(
                "%Y-%m-%dT%H:%M:%S.%fZ"
            )
        vs = out.add_stream("libx264", rate=video.fps, options={"preset": "ultrafast"})
        vs.width, vs.height, vs.pix_fmt = video.width, video.height, "yuv420p"
        aus = out.add_stream("aac", rate=AUDIO_RATE_HZ, layout="mono")
        ds = add_gpmd_stream(out) if profile.params.has_telemetry else None
        for i in range(round((hi - lo) * video.fps)):
            t = lo + i / video.fps
            frame = np.empty((video.height, video.width, 3), np.uint8)
            frame[:] = _PHASE_COLOURS[phase_at(tr, t)]
            vf = av.VideoFrame.from_ndarray(frame, format="rgb24")
            vf.pts = i
            out.mux(vs.encode(vf))
        audio = profile.audio[int(lo * AUDIO_RATE_HZ) : int(hi * AUDIO_RATE_HZ)]
        step = 1024 * 16
        for k in range(0, len(audio), step):
            af = av.AudioFrame.from_ndarray(audio[None, k : k + step], format="flt", layout="mono")
            af.sample_rate, af.pts = AUDIO_RATE_HZ, k
            out.mux(aus.encode(af))
        if ds is not None:
            mux_gpmd(out, ds, profile, lo, hi, totals, start_utc, with_cori, bad_payload)
        out.mux(vs.encode(None))
        out.mux(aus.encode(None))
