"""Read the booking QR from a short clip: :func:`decode_clip` (path in, :class:`QrResult` out).

Decoding video costs far more than finding a QR in a frame, so the sampling decides the speed:

1. keyframes only — the decoder drops every other frame; each keyframe is scanned at 960 px and
   at full resolution (zxing-cpp takes ~3 ms on 1080p);
2. around a keyframe where a code was *located* but not decoded, decode densely;
3. otherwise a sequential pass (deblocking skipped) scanning every ``stride``-th frame, and every
   frame for a while after a located code.

A located-but-undecoded code gets a second look on a full-resolution crop with every available
detector (zxing-cpp, pyzbar when libzbar loads, OpenCV). The first text that parses as a booking
ends the search; for clips without a code, the budget does.

The budget is a number of frames decoded (``max_frames``; every frame the decoder hands over
counts, scanned or not), never seconds: the same clip gives the same result and the same frame
count on any machine under any load (issue 18). A wall-clock ``safety_stop_s`` remains only
against the pathological (a machine many times slower than it should be, a file that decodes
absurdly slowly); it is far above a normal search, and reaching it raises
:class:`QrSafetyStop` with the reason: an error, never a silent "no QR".

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
from streams.settings import Settings

logger = logging.getLogger(__name__)

__all__ = ["QrResult", "QrSafetyStop", "QrSettings", "QrStatus", "decode_clip", "qr_settings"]

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
    # the budget: frames decoded (deterministic), settings.qr_max_frames; the corpus needs at
    # most 109 for a clip with a code and 161 to go through a 5 s clip without one
    max_frames: int = 600
    safety_stop_s: float = 90.0  # wall-clock safety stop (an error), settings.qr_safety_stop_s
    budget_s: float | None = None  # the old name of safety_stop_s; when set, it replaces it
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


def qr_settings(settings: Settings) -> QrSettings:
    """The decoder's settings from the worker's (its budget and safety stop)."""
    return QrSettings(max_frames=settings.qr_max_frames, safety_stop_s=settings.qr_safety_stop_s)


class QrSafetyStop(RuntimeError):
    """A search ran into the wall-clock safety stop: far slower than any normal search."""

    def __init__(self, path: str | Path, frames: int, settings: QrSettings, stop_s: float) -> None:
        self.frames = frames
        super().__init__(
            f"QR search of {Path(path).name} stopped by the {stop_s:g} s safety stop after "
            f"{frames} of its {settings.max_frames}-frame budget: the machine is far slower "
            "than normal or the file decodes pathologically; the step is retried, and a "
            "person reviews the clip if it keeps happening (qr_safety_stop_s raises the stop)"
        )


@dataclass
class _Search:
    """Mutable state of one decode_clip call (never shared between calls)."""

    settings: QrSettings
    chain: tuple[tuple[str, Detector], ...]
    deadline: float
    stop_s: float
    path: str | Path
    frames: int = 0
    located: int = 0
    located_times: list[float] = field(default_factory=list)
    not_bookings: dict[str, str] = field(default_factory=dict)
    not_booking_hits: int = 0
    found: tuple[str, Booking, float, str] | None = None

    def exhausted(self) -> bool:
        """The frame budget is spent (or a code will not change its mind): deterministic."""
        # A code that keeps decoding to something that is not a booking will not change its mind.
        return (
            self.frames >= self.settings.max_frames
            or self.not_booking_hits >= 3
            or self.located >= self.settings.max_located_frames
        )

    def count_frame(self) -> None:
        """One more frame decoded; raise :class:`QrSafetyStop` past the wall-clock stop."""
        self.frames += 1
        if time.perf_counter() >= self.deadline:
            raise QrSafetyStop(self.path, self.frames, self.settings, self.stop_s)


def decode_clip(path: str | Path, settings: QrSettings | None = None) -> QrResult:
    """Search ``path`` for a booking QR within the settings' frame budget; raise
    :class:`QrSafetyStop` if the wall-clock safety stop is reached first."""
    cfg = settings or QrSettings()
    started = time.perf_counter()
    stop_s = cfg.budget_s if cfg.budget_s is not None else cfg.safety_stop_s
    search = _Search(cfg, available_detectors(), started + stop_s, stop_s, path)
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
    bound = f" (work bound reached: {cfg.max_frames}-frame budget)" if search.exhausted() else ""
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
    for n, frame in enumerate(grey_frames(handle, start=0.0), 1):
        if frame.key or any(a <= frame.time <= b for a, b in covered):
            search.count_frame()  # decoded again, scanned already
        elif dense_left > 0 or n % cfg.stride == 0:
            dense_left = max(dense_left - 1, 0)
            before = search.located
            if _scan(frame, search, full_res=False):
                return
            if search.located > before:
                dense_left = cfg.dense_after_hit
        else:
            search.count_frame()
        if search.exhausted():
            return


def _scan(frame: GreyFrame, search: _Search, *, full_res: bool) -> bool:
    """Scan one frame; True when a booking was found."""
    search.count_frame()
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
