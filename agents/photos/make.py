"""A jump's photos made: sample its footage, pick the stills, write them (blocking I/O; run it
off the event loop).

The window is freefall and canopy — from the exit to the landing the `phases` step found (to the
end of the recording without a landing) — when there are marks, else the whole footage. The
picked frames are decoded again at full resolution, watermarked as the video is, and written as
JPEGs with one contact sheet (agents/photos/output.py).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from agents.photos import extract
from agents.photos.faces import FaceDetector, detector
from agents.photos.output import PhotoSet, contact_sheet, photo_name, sheet_name, thumbnail
from agents.photos.select import SelectSettings, select
from agents.photos.watermark import Watermark
from agents.render.identity import fingerprint

logger = logging.getLogger(__name__)

SAMPLE_FPS = 2.0
FREEFALL_CANOPY = "freefall+canopy"
ALL_FOOTAGE = "all footage"


class NoPhotos(Exception):
    """Nothing could be picked (permanent: the same footage picks nothing again)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Window:
    start: float
    end: float
    picked_from: str


def window(marks: Mapping[str, float | None], total_s: float) -> Window:
    """Exit..landing (end of recording without a landing) with an exit mark, else everything."""
    exit_t, landing_t = marks.get("exit"), marks.get("landing")
    if exit_t is not None and 0 <= exit_t < total_s:
        end = landing_t if landing_t is not None and exit_t < landing_t <= total_s else total_s
        return Window(exit_t, end, FREEFALL_CANOPY)
    return Window(0.0, total_s, ALL_FOOTAGE)


@dataclass(frozen=True)
class PhotoJob:
    """Everything one photos run needs, from the ledger and the settings."""

    session_key: str
    output_name: str
    clips: Sequence[extract.TimelineClip]
    marks: Mapping[str, float | None]
    select: SelectSettings
    watermark: Watermark | None
    execution_id: int | None = None
    inputs: Mapping[str, object] = field(default_factory=dict)  # for the fingerprint


def make_photos(
    job: PhotoJob, output_dir: Path, faces: FaceDetector | None = None
) -> dict[str, object]:
    """Sample, pick, write; the photos step's output (paths relative to `output_dir`)."""
    root = output_dir
    faces = faces or detector()
    warnings: list[str] = []
    total = sum(c.duration_s for c in job.clips)
    win = window(job.marks, total)
    cands = extract.sample(
        job.clips, win.start, win.end, fps=SAMPLE_FPS, faces=faces, notes=warnings
    )
    chosen = select(cands, job.select)
    if not chosen.picked:
        raise NoPhotos(
            f"no still could be picked from {win.picked_from} "
            f"({win.start:.1f}-{win.end:.1f} s): {chosen.shortfall(job.select.count)}"
        )
    if short := chosen.shortfall(job.select.count):
        warnings.append(short)
    if not faces.available:
        warnings.append(f"faces not looked for: {faces.why}")
    if job.watermark is None:
        warnings.append("no watermark: no logo is configured (SKYREEL_BRANDING_LOGO)")
    photos = PhotoSet(root, job.output_name, job.session_key, job.execution_id)
    photos.claim()
    thumbs = []
    try:
        frames = extract.frames_at(job.clips, [p.t for p in chosen.picked])
        for n, (pick, img) in enumerate(zip(chosen.picked, frames, strict=True), start=1):
            if job.watermark is not None:
                img = job.watermark.apply(img)
            photos.stage(photo_name(job.output_name, n), img)
            thumbs.append((pick.t, thumbnail(img)))
        # its thumbnails are of the watermarked photos: the sheet needs no logo of its own
        sheet = contact_sheet(thumbs)
        photos.stage(sheet_name(job.output_name), sheet)
        stamp = fingerprint(
            {**job.inputs, "window": [win.start, win.end], "picked": [p.t for p in chosen.picked]}
        )
        names = photos.commit(stamp)
    except BaseException:
        photos.abort()
        raise
    logger.info(
        "session %s: %d photos from %s (%d frames looked at)",
        job.session_key, len(chosen.picked), win.picked_from, chosen.considered,
    )  # fmt: skip
    sheet_file = sheet_name(job.output_name)
    return {
        "photos": [photos.relative(n) for n in names if n != sheet_file],
        "contact_sheet": photos.relative(sheet_file),
        "count": len(chosen.picked),
        # each photo's time on the recording (clips end to end), in the photos' order
        "times": [round(p.t, 3) for p in chosen.picked],
        "picked_from": win.picked_from,
        "warnings": warnings,
    }
