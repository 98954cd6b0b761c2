"""Faces in a still, with the face detector OpenCV ships, when the installed OpenCV has one.

OpenCV 4 wheels ship Haar cascades (``cv2.data.haarcascades``) and ``cv2.CascadeClassifier``;
OpenCV 5 dropped both from the wheel (its YuNet detector needs a model file no package here
ships). Without a detector, faces are simply not looked for: the photos are picked by sharpness
and variety alone, and the step says so in its warnings.
"""

from __future__ import annotations

import logging
from functools import lru_cache
from pathlib import Path
from typing import Any

import cv2
import numpy as np

logger = logging.getLogger(__name__)

CASCADE = "haarcascade_frontalface_default.xml"


class FaceDetector:
    """Counts frontal faces in a grey image; `available` False (and `why`) without a detector."""

    def __init__(self, cascade: Path | None = None) -> None:
        self._classifier: Any = None
        self.why = ""
        make = getattr(cv2, "CascadeClassifier", None)
        if cascade is None:
            folder = getattr(getattr(cv2, "data", None), "haarcascades", "")
            cascade = Path(folder) / CASCADE if folder else None
        if make is None:
            self.why = f"the installed OpenCV {cv2.__version__} has no CascadeClassifier"
        elif cascade is None or not cascade.is_file():
            self.why = f"the installed OpenCV {cv2.__version__} ships no {CASCADE}"
        else:
            classifier = make(str(cascade))
            if classifier.empty():
                self.why = f"{cascade} could not be loaded"
            else:
                self._classifier = classifier

    @property
    def available(self) -> bool:
        return self._classifier is not None

    def count(self, grey: np.ndarray) -> int:
        """Faces of at least 1/12 of the image's height found in `grey` (0 without a detector)."""
        if self._classifier is None:
            return 0
        side = max(24, grey.shape[0] // 12)
        found = self._classifier.detectMultiScale(
            grey, scaleFactor=1.15, minNeighbors=5, minSize=(side, side)
        )
        return len(found)


@lru_cache(maxsize=1)
def detector() -> FaceDetector:
    """The process's face detector (loaded once)."""
    found = FaceDetector()
    if not found.available:
        logger.warning("faces are not looked for in photos: %s", found.why)
    return found
