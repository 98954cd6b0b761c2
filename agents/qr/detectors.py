"""QR detectors behind one small interface: zxing-cpp, pyzbar (when libzbar loads), OpenCV.

Measured on degraded 1080p frames (see ``benchmarks/qr_decode.py``): zxing-cpp is both the most
sensitive and by far the fastest (about 0.5 ms at 960 px, 3 ms at full resolution, versus 12/50 ms
for pyzbar and 22/67 ms for OpenCV), and it reports codes it located but could not decode
(``return_errors``), which is what tells an unreadable ticket from a clip without a code. So
zxing-cpp scans every sampled frame; pyzbar and OpenCV only get a second look at small crops
around a located code, where they are cheap. All three apply Reed-Solomon error correction, so a
text they return is what was printed — whether it is a *booking* is decided by the payload parser.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np
import zxingcpp

logger = logging.getLogger(__name__)

__all__ = [
    "Detection",
    "Detector",
    "available_detectors",
    "opencv_scan",
    "plausible_quad",
    "zxing_scan",
]


@dataclass(frozen=True)
class Detection:
    """One code seen in an image: ``text`` when decoded, else only where it is."""

    decoder: str
    text: str | None
    # Axis-aligned box (x0, y0, x1, y1) in the scanned image's pixels, when known.
    box: tuple[int, int, int, int] | None


Detector = Callable[[np.ndarray], list[Detection]]


def _box(points: np.ndarray) -> tuple[int, int, int, int]:
    xs, ys = points[:, 0], points[:, 1]
    return int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())


def plausible_quad(points: np.ndarray, min_side: float = 16.0) -> bool:
    """True when four corners look like a QR seen in perspective, not a random quadrilateral.

    zxing-cpp's ``return_errors`` also reports "codes" assembled from finder-like clutter; those
    quads are lopsided, while a real code under a moderate tilt keeps similar sides/diagonals.
    """
    sides = np.linalg.norm(points - np.roll(points, -1, axis=0), axis=1)
    if sides.min() < min_side or sides.min() / sides.max() < 0.55:
        return False
    d1 = np.linalg.norm(points[0] - points[2])
    d2 = np.linalg.norm(points[1] - points[3])
    if min(d1, d2) / max(d1, d2) < 0.75:
        return False
    # Convex and consistently wound: every corner turns the same way.
    edges = np.roll(points, -1, axis=0) - points
    cross = (
        edges[:, 0] * np.roll(edges, -1, axis=0)[:, 1]
        - edges[:, 1] * np.roll(edges, -1, axis=0)[:, 0]
    )
    return bool(np.all(cross > 0) or np.all(cross < 0))


def zxing_scan(grey: np.ndarray) -> list[Detection]:
    """zxing-cpp on a grey image; located-but-broken codes come back with ``text=None``."""
    found = zxingcpp.read_barcodes(
        grey,
        formats=zxingcpp.BarcodeFormats(zxingcpp.BarcodeFormat.QRCode),
        try_rotate=True,
        try_downscale=True,
        try_invert=False,
        return_errors=True,
    )
    out: list[Detection] = []
    for barcode in found:
        pos = barcode.position
        pts = np.array(
            [
                [pos.top_left.x, pos.top_left.y],
                [pos.top_right.x, pos.top_right.y],
                [pos.bottom_right.x, pos.bottom_right.y],
                [pos.bottom_left.x, pos.bottom_left.y],
            ],
            dtype=np.float32,
        )
        text = barcode.text if barcode.valid and barcode.text else None
        if text is None and not plausible_quad(pts):
            continue
        out.append(Detection("zxing-cpp", text, _box(pts)))
    return out


def opencv_scan(grey: np.ndarray) -> list[Detection]:
    """OpenCV's QRCodeDetector (always installed); a new detector per call keeps it thread-safe."""
    detector = cv2.QRCodeDetector()
    try:
        text, points, _ = detector.detectAndDecode(grey)
    except cv2.error:
        return []
    if points is None:
        return []
    quad = points.reshape(-1, 2).astype(np.float32)
    if not text and not plausible_quad(quad):
        return []
    return [Detection("opencv", text or None, _box(quad))]


def _load_pyzbar() -> Detector | None:
    # pyzbar imports fine but loading libzbar raises ImportError/OSError when it is missing.
    try:
        from pyzbar import pyzbar
    except (ImportError, OSError) as exc:
        logger.info("pyzbar unavailable (%s); decoding without it", exc)
        return None

    def pyzbar_scan(grey: np.ndarray) -> list[Detection]:
        out: list[Detection] = []
        for symbol in pyzbar.decode(grey, symbols=[pyzbar.ZBarSymbol.QRCODE]):
            try:
                text = symbol.data.decode("utf-8")
            except UnicodeDecodeError:
                continue
            r = symbol.rect
            out.append(
                Detection(
                    "pyzbar", text or None, (r.left, r.top, r.left + r.width, r.top + r.height)
                )
            )
        return out

    return pyzbar_scan


_PYZBAR: list[Detector | None] = []


def pyzbar_detector() -> Detector | None:
    """The pyzbar detector, or None without libzbar (looked up once per process)."""
    if not _PYZBAR:
        _PYZBAR.append(_load_pyzbar())
    return _PYZBAR[0]


def available_detectors() -> tuple[tuple[str, Detector], ...]:
    """Second-look detectors for crops, in the order they are tried."""
    chain: list[tuple[str, Detector]] = [("zxing-cpp", zxing_scan)]
    zbar = pyzbar_detector()
    if zbar is not None:
        chain.append(("pyzbar", zbar))
    chain.append(("opencv", opencv_scan))
    return tuple(chain)
