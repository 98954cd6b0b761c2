"""A jump's photos on disk: `<output_dir>/<name>/photos/<name>_photo_NN.jpg`, one contact sheet
`<name>_contact_sheet.jpg` and the manifest `<name>_photos.json` (whose photos these are), where
`<name>` is the session's own output name (agents/render/identity.py), the folder its video is
published into.

Never another jump's: a folder whose photo manifest (or video manifest) names another session,
or cannot be read, is not touched — the step fails permanently. The first run claims the photo
manifest with a hard link (atomic, never overwrites). Every JPEG is written under a temporary
name first; only when all of them are written are they renamed into place (each rename atomic),
the manifest rewritten, and this session's photos of an earlier run that are no longer picked
removed. A run that dies leaves the earlier photos as they were (and temporary files that the
next run clears).
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from agents.render.identity import (
    FileFact,
    Manifest,
    ManifestError,
    claim_manifest,
    file_fact,
    manifest_path,
    read_manifest,
    write_manifest,
)

JPEG_QUALITY = 90
THUMB_WIDTH = 320
SHEET_COLUMNS = 5


class PhotoOwnershipError(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def photo_name(name: str, n: int) -> str:
    return f"{name}_photo_{n:02d}.jpg"


def sheet_name(name: str) -> str:
    return f"{name}_contact_sheet.jpg"


def encode_jpeg(img: np.ndarray, quality: int = JPEG_QUALITY) -> bytes:
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return bytes(buf.tobytes())


def thumbnail(img: np.ndarray, width: int = THUMB_WIDTH) -> np.ndarray:
    h, w = img.shape[:2]
    return cv2.resize(img, (width, max(1, round(h * width / w))), interpolation=cv2.INTER_AREA)


def clock(t: float) -> str:
    m, s = divmod(round(t), 60)
    return f"{m:02d}:{s:02d}"


def contact_sheet(
    thumbs: Sequence[tuple[float, np.ndarray]], columns: int = SHEET_COLUMNS
) -> np.ndarray:
    """A grid of thumbnails, each labelled with its number and time on the recording."""
    if not thumbs:
        raise ValueError("a contact sheet needs at least one photo")
    tw = max(t.shape[1] for _, t in thumbs)
    th = max(t.shape[0] for _, t in thumbs)
    pad, label = 8, 22
    cols = min(columns, len(thumbs))
    rows = -(-len(thumbs) // cols)
    sheet = np.full(
        (pad + rows * (th + label + pad), pad + cols * (tw + pad), 3), 32, dtype=np.uint8
    )
    for i, (t, thumb) in enumerate(thumbs):
        r, c = divmod(i, cols)
        x, y = pad + c * (tw + pad), pad + r * (th + label + pad)
        sheet[y : y + thumb.shape[0], x : x + thumb.shape[1]] = thumb
        cv2.putText(
            sheet, f"{i + 1:02d}  {clock(t)}", (x + 2, y + th + label - 6),
            cv2.FONT_HERSHEY_SIMPLEX, 0.5, (235, 235, 235), 1, cv2.LINE_AA,
        )  # fmt: skip
    return sheet


def _tmp(folder: Path, final: str) -> Path:
    return folder / f".{final}.tmp-{uuid.uuid4().hex}"


def _write(path: Path, data: bytes) -> None:
    with open(path, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


@dataclass
class PhotoSet:
    """One run's photos of a session: written aside, then put in place together."""

    output_dir: Path
    name: str
    session_key: str
    execution_id: int | None = None
    _staged: list[tuple[Path, str]] = field(default_factory=list)

    @property
    def folder(self) -> Path:
        return self.output_dir / self.name / "photos"

    @property
    def manifest(self) -> Path:
        return manifest_path(self.folder, f"{self.name}_photos")

    def relative(self, final: str) -> str:
        return f"{self.name}/photos/{final}"

    def claim(self) -> None:
        """Make the folder this session's (PhotoOwnershipError when it is another's)."""
        self._owned(manifest_path(self.output_dir / self.name, self.name), "video")
        self.folder.mkdir(parents=True, exist_ok=True)
        mine = Manifest(self.session_key, self.name, "", self.execution_id)
        if not claim_manifest(self.manifest, mine):
            self._owned(self.manifest, "photos")
        for stale in self.folder.glob(".*.tmp-*"):
            stale.unlink(missing_ok=True)  # an earlier run that died before renaming

    def _owned(self, path: Path, what: str) -> None:
        try:
            existing = read_manifest(path)
        except ManifestError as exc:
            raise PhotoOwnershipError(
                f"{path}: the manifest cannot be read ({exc}); not touching the {what} there"
            ) from exc
        if existing is not None and existing.session_key != self.session_key:
            raise PhotoOwnershipError(
                f"{path.parent} holds the {what} of session {existing.session_key!r}, not of "
                f"{self.session_key!r}: not replacing another jump's files"
            )

    def stage(self, final: str, img: np.ndarray) -> None:
        """Write `img` as a JPEG under a temporary name, to become `final` on `commit`."""
        tmp = _tmp(self.folder, final)
        _write(tmp, encode_jpeg(img))
        self._staged.append((tmp, final))

    def commit(self, fingerprint: str) -> list[str]:
        """Rename everything staged into place, record it, drop this session's older photos;
        returns the final names."""
        facts: dict[str, FileFact] = {}
        for tmp, final in self._staged:
            os.replace(tmp, self.folder / final)
            facts[final] = file_fact(self.folder / final)
        write_manifest(
            self.manifest,
            Manifest(self.session_key, self.name, fingerprint, self.execution_id, facts),
        )
        kept = set(facts)
        mine = re.compile(re.escape(self.name) + r"_(photo_\d+|contact_sheet)\.jpg")
        for old in self.folder.iterdir():
            if mine.fullmatch(old.name) and old.name not in kept:
                old.unlink(missing_ok=True)
        self._staged.clear()
        return [final for final in facts]

    def abort(self) -> None:
        for tmp, _final in self._staged:
            tmp.unlink(missing_ok=True)
        self._staged.clear()
