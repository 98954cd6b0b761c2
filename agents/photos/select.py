"""Which stills of a jump become its photos (pure: pixels in, choices out).

Every sampled frame is measured on a small copy (`measure`): its sharpness (the variance of the
Laplacian of its grey image: edges are what blur takes away), its brightness and a colour
histogram (HSV, 16 hue x 4 saturation x 4 value bins). `select` then keeps the best `count`:

- a frame too dark or blown out (mean grey below 16 or above 240) is never kept;
- a frame blurrier than `sharp_floor` times its reference sharpness is never kept; the reference
  is the 90th percentile of the frames within `local_s` seconds of it — relative and local,
  since a frame of open sky has fewer edges than one of the aircraft door without being any less
  in focus, while motion blur or a lens fogging up is a dip below the frames around it (the
  reference is never below `global_frac` of the whole set's, so a long fogged stretch is no
  measure of itself);
- the rest are ranked by sharpness relative to that reference (capped at 1: every crisp frame
  ranks alike) plus `face_bonus` when a face was found in it, the raw sharpness breaking ties;
- greedily from the best, a frame is kept only if it lies at least `min_spacing_s` from every
  frame kept so far and its histogram is at least `min_distance` (Bhattacharyya) from theirs,
  so a run of near-identical frames gives one photo; when that leaves the count short, a second
  pass asks for half that distance (still never a near-duplicate).

Fewer than `count` frames may pass: then fewer photos are made (never a blurred or repeated one
to make up the number) and the selection says why.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

#: the histogram's bins: hue, saturation, value
HIST_BINS = (16, 4, 4)
DARK, BRIGHT = 16.0, 240.0


@dataclass(frozen=True)
class Features:
    """What `select` knows of one sampled frame; `t` in seconds on the recording timeline."""

    t: float
    sharpness: float
    brightness: float
    hist: np.ndarray = field(repr=False, compare=False)
    faces: int = 0


@dataclass(frozen=True)
class SelectSettings:
    count: int = 30
    min_spacing_s: float = 2.0
    sharp_floor: float = 0.35  # of the set's reference sharpness
    min_distance: float = 0.08  # Bhattacharyya distance between colour histograms, 0..1
    face_bonus: float = 0.5
    local_s: float = 5.0  # the neighbourhood a frame's sharpness is judged against
    global_frac: float = 0.25  # of the whole set's reference: the least a reference may be

    def __post_init__(self) -> None:
        if self.count < 1:
            raise ValueError("count must be >= 1")
        if self.min_spacing_s < 0 or not 0 <= self.sharp_floor <= 1:
            raise ValueError("min_spacing_s must be >= 0 and sharp_floor within 0..1")
        if (
            not 0 <= self.min_distance <= 1
            or self.face_bonus < 0
            or self.local_s <= 0
            or not (0 <= self.global_frac <= 1)
        ):
            raise ValueError("min_distance must be within 0..1, face_bonus >= 0, local_s > 0")


@dataclass(frozen=True)
class Selection:
    picked: tuple[Features, ...]  # in time order
    considered: int
    too_dark_or_bright: int
    too_blurry: int
    too_close: int  # in time, or in colour, to a frame picked before

    def shortfall(self, count: int) -> str:
        """Why fewer than `count` were picked ('' when none are missing)."""
        if len(self.picked) >= count:
            return ""
        return (
            f"{len(self.picked)} of {count} photos: of {self.considered} frames looked at, "
            f"{self.too_blurry} too blurry, {self.too_dark_or_bright} too dark or bright, "
            f"{self.too_close} too close (in time or colour) to a photo already picked"
        )


def measure(bgr: np.ndarray) -> tuple[float, float, np.ndarray]:
    """(sharpness, brightness, normalised colour histogram) of a small BGR frame."""
    grey = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    sharpness = float(cv2.Laplacian(grey, cv2.CV_64F).var())
    hsv = cv2.cvtColor(bgr, cv2.COLOR_BGR2HSV)
    hist = cv2.calcHist([hsv], [0, 1, 2], None, list(HIST_BINS), [0, 180, 0, 256, 0, 256])
    hist = hist.flatten().astype(np.float32)
    total = float(hist.sum())
    return sharpness, float(grey.mean()), hist / total if total else hist


def features(t: float, bgr: np.ndarray, faces: int = 0) -> Features:
    sharpness, brightness, hist = measure(bgr)
    return Features(t, sharpness, brightness, hist, faces)


def distance(a: np.ndarray, b: np.ndarray) -> float:
    """Bhattacharyya distance of two histograms: 0 alike, 1 nothing in common."""
    return float(cv2.compareHist(a, b, cv2.HISTCMP_BHATTACHARYYA))


def reference_sharpness(cands: Sequence[Features], local_s: float) -> list[float]:
    """Each frame's reference: the 90th percentile sharpness of the frames within `local_s`."""
    if not cands:
        return []
    order = np.argsort([c.t for c in cands], kind="stable")
    times = np.array([cands[i].t for i in order])
    sharp = np.array([cands[i].sharpness for i in order])
    lo = np.searchsorted(times, times - local_s, side="left")
    hi = np.searchsorted(times, times + local_s, side="right")
    refs = [0.0] * len(cands)
    for k, i in enumerate(order):
        refs[int(i)] = float(np.percentile(sharp[lo[k] : hi[k]], 90))
    return refs


def select(cands: Sequence[Features], settings: SelectSettings) -> Selection:
    """The best `settings.count` distinct sharp frames of `cands` (see the module's rule)."""
    lit = [c for c in cands if DARK <= c.brightness <= BRIGHT]
    # a long stretch all out of focus (a fogged lens) is not its own measure: the reference is
    # never below `global_frac` of the whole set's
    whole = float(np.percentile([c.sharpness for c in lit], 90)) if lit else 0.0
    refs = [
        max(r, settings.global_frac * whole) for r in reference_sharpness(lit, settings.local_s)
    ]
    rel = {
        id(c): min(c.sharpness / ref, 1.0)
        for c, ref in zip(lit, refs, strict=True)
        if ref > 0 and c.sharpness > 0 and c.sharpness >= settings.sharp_floor * ref
    }
    sharp = [c for c in lit if id(c) in rel]

    def score(c: Features) -> tuple[float, float, float]:
        bonus = settings.face_bonus if c.faces > 0 else 0.0
        return (-(rel[id(c)] + bonus), -c.sharpness, c.t)

    picked: list[Features] = []
    ranked = sorted(sharp, key=score)
    # a second pass asks for half the colour distance: a long canopy ride of one sky fills the
    # count with its most different frames, while near-duplicates stay out
    for min_distance in (settings.min_distance, settings.min_distance / 2):
        for c in ranked:
            if len(picked) >= settings.count:
                break
            if any(c is p for p in picked):
                continue
            if any(abs(c.t - p.t) < settings.min_spacing_s for p in picked) or any(
                distance(c.hist, p.hist) < min_distance for p in picked
            ):
                continue
            picked.append(c)
    too_close = len(ranked) - len(picked)
    return Selection(
        picked=tuple(sorted(picked, key=lambda c: c.t)),
        considered=len(cands),
        too_dark_or_bright=len(cands) - len(lit),
        too_blurry=len(lit) - len(sharp),
        too_close=too_close,
    )
