"""What a passenger page shows: a booking's deliverables as files the hub may serve.

:func:`build_view` turns the booking's sessions (storage/passenger_links.py) into videos (with
their posters) and photos, each a resolved file inside the output folder — a path in a step's
output that points elsewhere, or at nothing, is never served — and decides the page's state:

- READY: something to show (what is still being made is listed in `pending`);
- PREPARING: nothing to show yet, but a jump's video or photos are still being made;
- GONE: the steps succeeded but their files are no longer there (purged), or the booking has
  no jump left.

Blocking (it stats each file): call it in a worker thread.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from storage.enums import ExecutionStatus, StepStatus
from storage.passenger_links import SessionDeliverables
from streams.hub.media_links import confined, is_served_file

#: A step in one of these will not produce anything without an operator doing something; the
#: page does not promise it ("being prepared") unless the execution is still alive.
_FINISHED = frozenset({StepStatus.SKIPPED, StepStatus.CANCELLED})
_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


class PageState(enum.StrEnum):
    READY = "ready"
    PREPARING = "preparing"
    GONE = "gone"


@dataclass(frozen=True)
class Video:
    video: Path
    poster: Path | None
    download_name: str


@dataclass(frozen=True)
class Photo:
    path: Path
    download_name: str


@dataclass(frozen=True)
class PageView:
    state: PageState
    passenger: str
    videos: list[Video] = field(default_factory=list)
    photos: list[Photo] = field(default_factory=list)
    #: what is still being made: "video", "photos" (each once)
    pending: list[str] = field(default_factory=list)


def safe_name(text: str, fallback: str) -> str:
    """A download file name from free text (a passenger's name, a booking id)."""
    cleaned = _SAFE.sub("_", text).strip("._")[:60]
    return cleaned or fallback


def _file(root: Path, raw: object) -> Path | None:
    if not isinstance(raw, str) or not raw:
        return None
    full = confined(root, raw)
    return full if full is not None and is_served_file(full) else None


def _cancelled(s: SessionDeliverables) -> bool:
    return s.execution_status == ExecutionStatus.CANCELLED


@dataclass
class _Acc:
    videos: list[Video] = field(default_factory=list)
    photos: list[Photo] = field(default_factory=list)
    pending: set[str] = field(default_factory=set)
    missing: int = 0


def _add_video(acc: _Acc, s: SessionDeliverables, root: Path, stem: str) -> None:
    out: Mapping[str, object] = s.video_output or {}
    if s.video_status is StepStatus.SUCCEEDED:
        video = _file(root, out.get("video"))
        if video is None:
            acc.missing += 1
            return
        n = len(acc.videos) + 1
        name = f"{stem}.mp4" if n == 1 else f"{stem}-{n}.mp4"
        acc.videos.append(Video(video, _file(root, out.get("poster")), name))
    elif s.video_status not in _FINISHED and not _cancelled(s):
        acc.pending.add("video")  # not published yet (or not started: no step yet)


def _add_photos(acc: _Acc, s: SessionDeliverables, root: Path, stem: str) -> None:
    if s.photos_status is None or s.photos_status in _FINISHED:
        return  # this jump's pipeline makes no photos
    if s.photos_status is not StepStatus.SUCCEEDED:
        if not _cancelled(s):
            acc.pending.add("photos")
        return
    listed = (s.photos_output or {}).get("photos")
    for raw in listed if isinstance(listed, list) else []:
        path = _file(root, raw)
        if path is None:
            acc.missing += 1
            continue
        n = len(acc.photos) + 1
        acc.photos.append(Photo(path, f"{stem}-{n:02d}{path.suffix.lower() or '.jpg'}"))


def build_view(
    sessions: Sequence[SessionDeliverables], output_root: Path, booking_id: str
) -> PageView:
    """The page of a booking (see the module docstring); blocking."""
    passenger = next((s.passenger for s in sessions if s.passenger), None) or ""
    stem = safe_name(passenger, "") or safe_name(booking_id, "jump")
    acc = _Acc()
    try:
        root = output_root.resolve()
    except OSError:
        return PageView(PageState.GONE, passenger)
    for s in sessions:
        _add_video(acc, s, root, stem)
        _add_photos(acc, s, root, stem)
    pending: list[str] = [p for p in ("video", "photos") if p in acc.pending]
    if acc.videos or acc.photos:
        state = PageState.READY
    elif pending:
        state = PageState.PREPARING
    else:
        state = PageState.GONE
    return PageView(state, passenger, acc.videos, acc.photos, pending)
