"""Synthetic QR clips for the benchmark corpus and the tests (numpy + OpenCV + PyAV/libx264).

A clip is described by a :class:`ClipSpec` (pure data, seeded); :func:`write_clip` renders it:
a textured background, the ticket QR placed with scale/rotation/perspective, optional occluding
blob, blur, motion blur, noise, low contrast, visible only in a time window, encoded as H.264.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import segno

__all__ = ["ClipSpec", "qr_image", "render_frame", "write_clip"]


@dataclass(frozen=True)
class ClipSpec:
    """Everything that decides how one synthetic clip looks."""

    seed: int
    payload: str | None  # None: no QR in the clip
    width: int = 1920
    height: int = 1080
    fps: int = 30
    seconds: float = 5.0
    gop: int = 60
    qr_fraction: float = 0.25  # QR side as a fraction of frame width
    rotation_deg: float = 0.0
    tilt: float = 0.0  # 0..0.35: perspective squeeze of one side
    blur: float = 0.0  # gaussian sigma in px at output resolution
    motion_blur: int = 0  # kernel length in px
    noise: float = 0.0  # gaussian noise sigma (0..255)
    contrast: float = 1.0  # 1 = full, 0.3 = dim washed-out print
    visible: tuple[float, float] = (0.0, 1.0)  # fraction of the clip where the code is in view
    occlude: bool = False  # a blob over the data area, finder patterns still visible
    clutter: bool = False  # QR-like squares and stripes in the background
    drift_px: float = 8.0  # hand shake amplitude
    crf: int = 23
    extra: dict[str, float] = field(default_factory=dict)


def qr_image(payload: str, module_px: int = 8) -> np.ndarray:
    """Grey QR image (with its quiet zone) for ``payload``."""
    code = segno.make_qr(payload, error="m")
    matrix = np.array([list(row) for row in code.matrix], dtype=np.uint8)
    img = np.where(matrix > 0, 0, 255).astype(np.uint8)
    img = np.pad(img, 4, constant_values=255)
    return cv2.resize(img, None, fx=module_px, fy=module_px, interpolation=cv2.INTER_NEAREST)


def _background(spec: ClipSpec, rng: np.random.Generator) -> np.ndarray:
    h, w = spec.height, spec.width
    small = rng.integers(40, 200, size=(h // 60 + 2, w // 60 + 2), dtype=np.uint8)
    bg = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
    bg = cv2.GaussianBlur(bg, (0, 0), 6)
    if spec.blur > 0:
        bg = cv2.GaussianBlur(bg, (0, 0), spec.blur)
    if spec.clutter:
        for _ in range(40):
            x, y = int(rng.integers(0, w - 80)), int(rng.integers(0, h - 80))
            s = int(rng.integers(10, 70))
            cv2.rectangle(bg, (x, y), (x + s, y + s), 20, -1)
            cv2.rectangle(bg, (x + s // 7, y + s // 7), (x + 6 * s // 7, y + 6 * s // 7), 235, -1)
            cv2.rectangle(
                bg, (x + 2 * s // 7, y + 2 * s // 7), (x + 5 * s // 7, y + 5 * s // 7), 20, -1
            )
        for _ in range(30):
            x, y = int(rng.integers(0, w - 200)), int(rng.integers(0, h - 40))
            for k in range(int(rng.integers(5, 20))):
                cv2.line(bg, (x + 6 * k, y), (x + 6 * k, y + 35), 15, int(rng.integers(1, 4)))
        noise_blocks = (rng.random((h // 6, w // 6)) > 0.5).astype(np.uint8) * 200 + 30
        patch = cv2.resize(noise_blocks, (w, h), interpolation=cv2.INTER_NEAREST)
        mask = np.zeros((h, w), np.uint8)
        cv2.circle(mask, (w // 4, h // 2), h // 5, 255, -1)
        bg[mask > 0] = patch[mask > 0]
    return bg


def _ticket(spec: ClipSpec, rng: np.random.Generator) -> np.ndarray:
    assert spec.payload is not None
    qr = qr_image(spec.payload)
    if spec.occlude:
        n = qr.shape[0]
        # Cover the middle (data area) and leave the three finder patterns in view.
        c = n // 2
        cv2.circle(qr, (c + n // 10, c + n // 10), int(n * 0.22), 90, -1)
    pad = qr.shape[0] // 6
    ticket = np.pad(qr, pad, constant_values=245)
    lo = int(255 * (1 - spec.contrast) / 2)
    hi = 255 - lo
    ticket = (lo + ticket.astype(np.float32) * (hi - lo) / 255).astype(np.uint8)
    return ticket


def _placement(spec: ClipSpec, t: float, side: float, rng_phase: float) -> np.ndarray:
    """Destination corners (4x2) of the ticket at time t."""
    cx = spec.width / 2 + spec.drift_px * math.sin(2.1 * t + rng_phase) * 3
    cy = spec.height / 2 + spec.drift_px * math.cos(1.7 * t + rng_phase) * 2
    half = side / 2
    squeeze = spec.tilt * half
    pts = np.array(
        [[-half, -half + squeeze], [half, -half], [half, half], [-half, half - squeeze]],
        dtype=np.float32,
    )
    pts[:, 0] *= 1 - spec.tilt * 0.5
    angle = math.radians(spec.rotation_deg + 2.0 * math.sin(t * 1.3 + rng_phase))
    rot = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    return (pts @ rot.T + np.array([cx, cy])).astype(np.float32)


def render_frame(spec: ClipSpec, bg: np.ndarray, ticket: np.ndarray | None, t: float) -> np.ndarray:
    """One grey frame at time ``t`` seconds (detectors only look at luma).

    The ticket is warped and blurred inside its bounding box only (plus a margin for the blur
    kernels): the background is smooth already, and full-frame filters made generation slow.
    """
    frame = bg.copy()
    duration = spec.seconds
    if ticket is None or not spec.visible[0] * duration <= t <= spec.visible[1] * duration:
        return frame
    # The ticket includes a margin around the code, so scale so the QR hits qr_fraction.
    side = spec.width * spec.qr_fraction / 0.75
    dst = _placement(spec, t, side, spec.seed % 7)
    pad = int(4 * spec.blur + spec.motion_blur + 4)
    x0 = max(0, int(dst[:, 0].min()) - pad)
    y0 = max(0, int(dst[:, 1].min()) - pad)
    x1 = min(spec.width, int(dst[:, 0].max()) + pad + 1)
    y1 = min(spec.height, int(dst[:, 1].max()) + pad + 1)
    if x1 <= x0 or y1 <= y0:
        return frame
    n = ticket.shape[0]
    src = np.array([[0, 0], [n, 0], [n, n], [0, n]], dtype=np.float32)
    m = cv2.getPerspectiveTransform(src, dst - np.array([x0, y0], dtype=np.float32))
    size = (x1 - x0, y1 - y0)
    warped = cv2.warpPerspective(ticket, m, size, flags=cv2.INTER_LINEAR)
    mask = cv2.warpPerspective(np.full_like(ticket, 255), m, size, flags=cv2.INTER_NEAREST)
    roi = frame[y0:y1, x0:x1]
    roi[mask > 0] = warped[mask > 0]
    if spec.blur > 0:
        roi[:] = cv2.GaussianBlur(roi, (0, 0), spec.blur)
    if spec.motion_blur > 1:
        k = np.zeros((spec.motion_blur, spec.motion_blur), np.float32)
        k[spec.motion_blur // 2, :] = 1.0 / spec.motion_blur
        roi[:] = cv2.filter2D(roi, -1, k)
    return frame


def write_clip(spec: ClipSpec, path: Path) -> Path:
    """Render ``spec`` to an H.264 MP4 at ``path`` (written to a temp name, then renamed)."""
    rng = np.random.default_rng(spec.seed)
    bg = _background(spec, rng)
    ticket = _ticket(spec, rng) if spec.payload is not None else None
    tmp = path.with_name(path.name + ".part")
    n_frames = round(spec.seconds * spec.fps)
    with av.open(str(tmp), mode="w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=spec.fps)
        stream.width, stream.height = spec.width, spec.height
        stream.pix_fmt = "yuv420p"
        stream.options = {
            "crf": str(spec.crf),
            "preset": "veryfast",
            "g": str(spec.gop),
            "keyint_min": str(min(spec.gop, 25)),
        }
        stream.time_base = Fraction(1, spec.fps)
        noise_rng = np.random.default_rng(spec.seed + 1)
        # A small bank of noise fields, cycled: fresh noise per frame cost more than encoding.
        bank = [
            noise_rng.normal(0, spec.noise, (spec.height, spec.width)).astype(np.int16)
            for _ in range(7 if spec.noise > 0 else 0)
        ]
        for i in range(n_frames):
            frame = render_frame(spec, bg, ticket, i / spec.fps)
            if bank:
                frame = np.clip(frame + bank[i % len(bank)], 0, 255).astype(np.uint8)
            vf = av.VideoFrame.from_ndarray(frame, format="gray")
            vf.pts = i
            for packet in stream.encode(vf):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    tmp.replace(path)
    return path
