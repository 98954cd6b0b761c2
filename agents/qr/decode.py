"""Read the booking QR from a short clip: :func:`decode_clip` (path in, :class:`QrResult` out).

Decoding video costs far more than finding a QR in a frame, so the sampling decides the speed:

1. keyframes only — the decoder drops every other frame; each keyframe is scanned at 960 px and
   at full resolution (zxing-cpp takes ~3 ms on 1080p);
2. around a keyframe where a code was *located* but not decoded, decode densely;
3. otherwise a sequential pass (deblocking skipped) scanning every ``stride``-th frame, and every
   frame for a while after a located code.

A located-but-undecoded code gets a second look on a full-resolution crop with every available
detector (zxing-cpp, pyzbar when libzbar loads, OpenCV). The first text that parses as a booking
ends the search; a hard bound on frames and seconds ends it for clips without a code.

``decode_clip`` is synchronous, CPU-bound and keeps no shared state: run it in an executor.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import av
import numpy as np

from agents.media.frames import (
    GreyFrame,
    MediaOpenError,
    VideoHandle,
    downscale,
    grey_frames,
    open_video,
)
from agents.qr.detectors import Detection, Detector, available_detectors, zxing_scan
from agents.qr.payload import Booking, NotABooking, PayloadSettings, parse_booking

logger = logging.getLogger(__name__)

__all__ = ["QrResult", "QrSettings", "QrStatus", "decode_clip"]

QrStatus = Literal["decoded", "unreadable", "no_qr"]


@dataclass(frozen=True)
class QrSettings:
    """Knobs of the sampling strategy (defaults measured on ``benchmarks/qr_corpus.py``)."""

    scan_width: int = 960
    max_keyframes: int = 24
    stride: int = 3
    dense_after_hit: int = 20  # frames scanned one by one after a located code
    dense_window_s: float = 1.0  # seconds decoded densely around a promising keyframe
    max_promising_windows: int = 2
    budget_s: float = 1.2  # wall-clock bound on the whole search
    max_frames: int = 600
    crop_margin: float = 0.35
    min_located_frames: int = 2  # frames with a located code before "unreadable" is claimed
    max_located_frames: int = 10  # a code located this often and never decoded: stop trying
    payload: PayloadSettings = field(default_factory=PayloadSettings)


@dataclass(frozen=True)
class QrResult:
    """What a clip held: a booking, an unreadable code, or no code at all."""

    status: QrStatus
    payload: str | None
    booking: Booking | None
    frame_time_s: float | None
    decoder: str | None
    frames_decoded: int
    elapsed_ms: float
    reason: str


@dataclass
class _Search:
    """Mutable state of one decode_clip call (never shared between calls)."""

    settings: QrSettings
    chain: tuple[tuple[str, Detector], ...]
    deadline: float
    frames: int = 0
    located: int = 0
    located_times: list[float] = field(default_factory=list)
    not_bookings: dict[str, str] = field(default_factory=dict)
    not_booking_hits: int = 0
    found: tuple[str, Booking, float, str] | None = None

    def exhausted(self) -> bool:
        # A code that keeps decoding to something that is not a booking will not change its mind.
        return (
            self.frames >= self.settings.max_frames
            or self.not_booking_hits >= 3
            or self.located >= self.settings.max_located_frames
            or time.perf_counter() >= self.deadline
        )


def decode_clip(path: str | Path, settings: QrSettings | None = None) -> QrResult:
    """Search ``path`` for a booking QR within the settings' work bound."""
    cfg = settings or QrSettings()
    started = time.perf_counter()
    search = _Search(cfg, available_detectors(), started + cfg.budget_s)
    try:
        _run(path, search)
    except MediaOpenError as exc:
        return _result(search, started, "no_qr", f"not a readable video: {exc.reason}")
    except av.FFmpegError as exc:
        # Corrupt tail (card pulled mid-recording): keep what was found before the damage.
        logger.warning("qr decode of %s hit a decoding error: %s", path, exc)
        if search.found is None:
            return _result(
                search,
                started,
                "no_qr" if not search.located else "unreadable",
                f"video decoding failed: {exc}",
            )
    if search.found is not None:
        return _result(search, started, "decoded", "booking decoded")
    if search.not_bookings:
        text, why = next(iter(search.not_bookings.items()))
        return _result(search, started, "unreadable", f"QR is not a booking: {why}", payload=text)
    if search.located >= cfg.min_located_frames:
        return _result(
            search,
            started,
            "unreadable",
            f"QR located in {search.located} frames but not decodable",
        )
    bound = " (work bound reached)" if search.exhausted() else ""
    return _result(search, started, "no_qr", f"no QR found in {search.frames} frames{bound}")


def _result(
    search: _Search, started: float, status: QrStatus, reason: str, payload: str | None = None
) -> QrResult:
    elapsed = (time.perf_counter() - started) * 1000
    if search.found is not None and status == "decoded":
        text, booking, t, decoder = search.found
        return QrResult(status, text, booking, t, decoder, search.frames, elapsed, reason)
    return QrResult(status, payload, None, None, None, search.frames, elapsed, reason)


def _run(path: str | Path, search: _Search) -> None:
    cfg = search.settings
    # Frame threading delays the first output frame by ~40 ms and buys nothing when only
    # keyframes are decoded, so the first look runs single-threaded on its own handle.
    with open_video(path, threads=False) as handle:
        for keyframes, frame in enumerate(grey_frames(handle, keyframes_only=True), 1):
            if _scan(frame, search, full_res=True) or search.exhausted():
                return
            if keyframes >= cfg.max_keyframes:
                break
    with open_video(path, threads=True) as handle:
        windows = sorted(set(search.located_times))[: cfg.max_promising_windows]
        covered: list[tuple[float, float]] = []
        for t in windows:
            end = t + cfg.dense_window_s
            for frame in grey_frames(handle, start=t):
                if frame.time > end:
                    break
                if _scan(frame, search, full_res=False) or search.exhausted():
                    return
            covered.append((t, end))
        _stride_pass(handle, search, covered)


def _stride_pass(handle: VideoHandle, search: _Search, covered: list[tuple[float, float]]) -> None:
    cfg = search.settings
    dense_left = 0
    n = 0
    for frame in grey_frames(handle, start=0.0):
        n += 1
        if frame.key or any(a <= frame.time <= b for a, b in covered):
            continue  # already scanned
        if dense_left > 0 or n % cfg.stride == 0:
            dense_left = max(dense_left - 1, 0)
            before = search.located
            if _scan(frame, search, full_res=False):
                return
            if search.located > before:
                dense_left = cfg.dense_after_hit
        else:
            search.frames += 1
        if search.exhausted():
            return


def _scan(frame: GreyFrame, search: _Search, *, full_res: bool) -> bool:
    """Scan one frame; True when a booking was found."""
    search.frames += 1
    cfg = search.settings
    small = downscale(frame.grey, cfg.scan_width)
    scale = frame.grey.shape[1] / small.shape[1]
    detections = zxing_scan(small)
    if not any(d.text for d in detections) and full_res and scale > 1:
        detections = zxing_scan(frame.grey)
        scale = 1.0
    located = False
    for det in detections:
        if det.text is not None and _accept(det.text, det.decoder, frame.time, search):
            return True
        if det.text is None and det.box is not None:
            found, confirmed = _second_look(frame, det, scale, search)
            if found:
                return True
            located = located or confirmed
    if located:
        search.located += 1
        search.located_times.append(frame.time)
    return False


def _second_look(
    frame: GreyFrame, det: Detection, scale: float, search: _Search
) -> tuple[bool, bool]:
    """Try every detector on a full-resolution crop around a located code.

    Returns (booking found, location confirmed). zxing-cpp alone also "locates" codes in a
    single finder-like square; a second detector that finds the three finder patterns too is
    what makes a frame count towards "unreadable".
    """
    assert det.box is not None
    x0, y0, x1, y1 = (v * scale for v in det.box)
    margin = max(x1 - x0, y1 - y0) * search.settings.crop_margin
    h, w = frame.grey.shape
    crop = frame.grey[
        max(0, int(y0 - margin)) : min(h, int(y1 + margin)),
        max(0, int(x0 - margin)) : min(w, int(x1 + margin)),
    ]
    if crop.size == 0:
        return False, False
    crop = np.ascontiguousarray(crop)
    confirmed = False
    for name, detector in search.chain:
        for hit in detector(crop):
            if hit.text is not None and _accept(hit.text, hit.decoder, frame.time, search):
                return True, True
            if name != "zxing-cpp":
                confirmed = True
    return False, confirmed


def _accept(text: str, decoder: str, t: float, search: _Search) -> bool:
    try:
        booking = parse_booking(text, search.settings.payload)
    except NotABooking as exc:
        search.not_bookings.setdefault(text, exc.reason)
        search.not_booking_hits += 1
        return False
    search.found = (text, booking, t, decoder)
    return True
