"""The dropzone's watermark on a still: the same logo, corner, opacity, width and margin as the
video's (agents/render/branding.py, drawn there by FFmpeg's overlay; here by alpha blending).

The logo is the configured one or, by default, the watermark made from the dropzone's name
(agents/render/default_branding.py). With the logo off (`SKYREEL_BRANDING_LOGO=false`) the videos
carry no watermark, and neither do the photos (the step says so in its warnings). A configured
logo that cannot be read is an error: the photos are not made without it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from agents.render.branding import Branding


class WatermarkError(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Watermark:
    """A logo (BGRA) and where it goes, as fractions of the image width."""

    logo: np.ndarray
    corner: str = "br"
    opacity: float = 0.8
    width_frac: float = 0.14
    margin_frac: float = 0.025

    def apply(self, img: np.ndarray) -> np.ndarray:
        """`img` (BGR) with the logo blended into its corner (a new array)."""
        h, w = img.shape[:2]
        lw = max(2, round(w * self.width_frac / 2) * 2)
        lh = max(1, round(self.logo.shape[0] * lw / self.logo.shape[1]))
        m = round(w * self.margin_frac)
        lw, lh = min(lw, w - m), min(lh, h - m)
        if lw <= 0 or lh <= 0:
            return img.copy()
        logo = cv2.resize(self.logo, (lw, lh), interpolation=cv2.INTER_AREA)
        x = m if self.corner in ("tl", "bl") else w - lw - m
        y = m if self.corner in ("tl", "tr") else h - lh - m
        out = img.copy()
        region = out[y : y + lh, x : x + lw].astype(np.float32)
        alpha = logo[:, :, 3:4].astype(np.float32) / 255.0 * self.opacity
        blended = region * (1.0 - alpha) + logo[:, :, :3].astype(np.float32) * alpha
        out[y : y + lh, x : x + lw] = np.clip(blended + 0.5, 0, 255).astype(np.uint8)
        return out


def load(branding: Branding) -> Watermark | None:
    """The branding's watermark; None without a logo; WatermarkError when it cannot be read."""
    if branding.logo_path is None:
        return None
    return Watermark(
        read_logo(branding.logo_path),
        corner=branding.logo_corner,
        opacity=branding.logo_opacity,
        width_frac=branding.logo_width_frac,
        margin_frac=branding.logo_margin_frac,
    )


def read_logo(path: Path) -> np.ndarray:
    """The logo image as BGRA (opaque when it has no alpha)."""
    raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if raw is None or raw.size == 0:
        raise WatermarkError(
            f"the watermark image {path} cannot be read: fix SKYREEL_BRANDING_LOGO, then retry "
            "the photos step"
        )
    if raw.dtype == np.uint16:  # a 16-bit PNG
        raw = (raw // 257).astype(np.uint8)
    elif raw.dtype != np.uint8:
        raise WatermarkError(f"the watermark image {path} is not an 8- or 16-bit image")
    if raw.ndim == 2:
        return cv2.cvtColor(raw, cv2.COLOR_GRAY2BGRA)
    if raw.shape[2] == 3:
        return cv2.cvtColor(raw, cv2.COLOR_BGR2BGRA)
    return raw
