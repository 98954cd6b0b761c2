"""In which order a camera recorded a card's clips, and whether its clock can be believed (pure).

A camera numbers its files: GoPro ``GX01nnnn.MP4`` (chapters ``GX02nnnn``, ``GX03nnnn``, … of
one recording; ``GOPRnnnn``/``GPccnnnn`` on older models), other makers ``DJI_0042.MP4``,
``C0042.MP4``, ``MVI_0042.MP4``. That counter, within a DCIM folder (``100GOPRO``, ``101GOPRO``,
…), is the order of recording. A camera's clock is not: after a battery change it may restart in
2016, or be set to another zone. So clips are ordered by folder and counter where every clip has
one, and only otherwise by capture time; capture times are then trusted only where they agree
with that order. A step between two consecutive recordings that goes backwards, or forwards by
more than ``clock_jump_max``, is reported ("camera clock looks wrong") and is never read as a gap.

Chapters of one recording are one ``Recording`` (a unit that is never split); chapters are keyed
by folder too, because numbering restarts after a card is formatted.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from pathlib import PurePosixPath
from typing import Protocol

__all__ = [
    "ClockPolicy",
    "Counter",
    "GoProName",
    "Recording",
    "Step",
    "StepKind",
    "TimedClip",
    "camera_counter",
    "describe",
    "order_recordings",
    "parse_gopro_name",
    "steps_between",
]


class TimedClip(Protocol):
    """What ordering needs of a clip (``agents.sessions.CardFile`` is one)."""

    @property
    def file_id(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def relative_path(self) -> str: ...
    @property
    def capture_time(self) -> datetime: ...  # when recording started, as the camera says
    @property
    def end_time(self) -> datetime | None: ...  # when it ended (the file's mtime), if known
    @property
    def duration_s(self) -> float | None: ...


@dataclass(frozen=True)
class GoProName:
    """``GX020042.MP4`` -> family GX, recording 42, chapter 2 (``GOPR0042`` is chapter 0)."""

    family: str
    recording: int
    chapter: int


_GOPRO_CHAPTERED = re.compile(r"^(G[HXL])(\d{2})(\d{4})\.MP4$", re.IGNORECASE)
_GOPRO_LEGACY_FIRST = re.compile(r"^GOPR(\d{4})\.MP4$", re.IGNORECASE)
_GOPRO_LEGACY_NEXT = re.compile(r"^GP(\d{2})(\d{4})\.MP4$", re.IGNORECASE)
# DJI_0042.MP4, C0042.MP4 (Sony), MVI_0042.MOV (Canon), DSCF0042.MOV (Fujifilm), VID_0042.MP4
_OTHER_COUNTER = re.compile(r"^([A-Z]{1,5})_?(\d{4,5})\.(MP4|MOV|AVI|MTS|M4V|INSV)$", re.IGNORECASE)
_FOLDER_NUMBER = re.compile(r"^(\d{3})")


def parse_gopro_name(name: str) -> GoProName | None:
    """Recording and chapter of a GoPro file name, None for anything else."""
    if m := _GOPRO_CHAPTERED.match(name):
        return GoProName(m.group(1).upper(), int(m.group(3)), int(m.group(2)))
    if m := _GOPRO_LEGACY_FIRST.match(name):
        return GoProName("GOPR", int(m.group(1)), 0)
    if m := _GOPRO_LEGACY_NEXT.match(name):
        return GoProName("GOPR", int(m.group(2)), int(m.group(1)))
    return None


@dataclass(frozen=True, order=True)
class Counter:
    """Where a recording sits in the camera's numbering: DCIM folder number, then file number."""

    folder: int
    number: int


def camera_counter(relative_path: str) -> Counter | None:
    """The camera's own sequence position of a file, None when its name carries none."""
    path = PurePosixPath(relative_path)
    gp = parse_gopro_name(path.name)
    if gp is not None:
        number = gp.recording
    elif m := _OTHER_COUNTER.match(path.name):
        number = int(m.group(2))
    else:
        return None
    folder = _FOLDER_NUMBER.match(path.parent.name)
    return Counter(int(folder.group(1)) if folder else 0, number)


@dataclass(frozen=True)
class Recording:
    """One recording: a single clip or the chapters of a GoPro recording, in chapter order."""

    clips: tuple[TimedClip, ...]
    counter: Counter | None

    @property
    def start(self) -> datetime:
        return min(c.capture_time for c in self.clips)

    @property
    def end(self) -> datetime:
        return max(_clip_end(c) for c in self.clips)

    @property
    def first(self) -> TimedClip:
        return self.clips[0]


def _clip_end(c: TimedClip) -> datetime:
    if c.end_time is not None and c.end_time >= c.capture_time:
        return c.end_time
    if c.duration_s is not None and c.duration_s > 0:
        return c.capture_time + timedelta(seconds=c.duration_s)
    return c.capture_time


def _chapter(c: TimedClip) -> int:
    gp = parse_gopro_name(c.name)
    return gp.chapter if gp is not None else 0


def _time_key(r: Recording) -> tuple[datetime, str, str]:
    return (r.start, r.first.relative_path, r.first.file_id)


def _recordings(clips: Iterable[TimedClip]) -> list[Recording]:
    units: dict[tuple[str, str, int], list[TimedClip]] = {}
    out: list[Recording] = []
    for c in clips:
        gp = parse_gopro_name(c.name)
        if gp is None:
            out.append(Recording((c,), camera_counter(c.relative_path)))
            continue
        folder = str(PurePosixPath(c.relative_path).parent)
        units.setdefault((folder, gp.family, gp.recording), []).append(c)
    for chapters in units.values():
        numbers = [_chapter(c) for c in chapters]
        if len(set(numbers)) != len(numbers):
            # a chapter number repeats (names reused): keep them apart, in time order
            out.extend(Recording((c,), camera_counter(c.relative_path)) for c in chapters)
            continue
        ordered = tuple(sorted(chapters, key=_chapter))
        out.append(Recording(ordered, camera_counter(ordered[0].relative_path)))
    return out


def order_recordings(clips: Iterable[TimedClip]) -> list[Recording]:
    """Recordings in the order the camera made them.

    When every recording has a camera counter, that counter decides (a wrong clock cannot
    reorder the card). When some have none, those are merged in by capture time among the
    counted ones, which keep their counter order.
    """
    recordings = _recordings(clips)
    counted = sorted(
        (r for r in recordings if r.counter is not None),
        key=lambda r: (r.counter, *_time_key(r)),
    )
    loose = sorted((r for r in recordings if r.counter is None), key=_time_key)
    if not loose:
        return counted
    if not counted:
        return loose
    merged: list[Recording] = []
    i = 0
    for r in counted:
        while i < len(loose) and _time_key(loose[i]) < _time_key(r):
            merged.append(loose[i])
            i += 1
        merged.append(r)
    merged.extend(loose[i:])
    return merged


@dataclass(frozen=True)
class ClockPolicy:
    gap: timedelta = timedelta(minutes=20)  # more than this between clips: another jump
    tolerance: timedelta = timedelta(minutes=2)  # FAT's 2 s mtimes, mtime vs creation_time
    clock_jump_max: timedelta = timedelta(days=30)  # forward steps beyond this: the clock


class StepKind(StrEnum):
    CONTINUES = "continues"  # the next recording follows closely
    GAP = "gap"  # more than the policy's gap of trusted time: another jump
    CLOCK = "clock"  # the clock contradicts the recording order: time says nothing here


@dataclass(frozen=True)
class Step:
    """The step from one recording to the next in recording order."""

    kind: StepKind
    delta: timedelta
    warning: str = ""


def steps_between(recordings: Sequence[Recording], policy: ClockPolicy) -> list[Step]:
    """``out[i]`` is the step from ``recordings[i - 1]`` to ``recordings[i]`` (``out[0]``:
    nothing before it)."""
    if not recordings:
        return []
    out = [Step(StepKind.CONTINUES, timedelta(0))]
    for prev, nxt in itertools.pairwise(recordings):
        delta = nxt.start - prev.end
        counted = prev.counter is not None and nxt.counter is not None
        if delta < -policy.tolerance:
            if counted:
                out.append(Step(StepKind.CLOCK, delta, _clock_warning(prev, nxt, delta)))
            else:
                # ordered by time, so this is an overlap (a long clip's end estimate)
                out.append(Step(StepKind.CONTINUES, delta))
        elif delta > policy.clock_jump_max and counted:
            out.append(Step(StepKind.CLOCK, delta, _clock_warning(prev, nxt, delta)))
        elif delta > policy.gap:
            out.append(Step(StepKind.GAP, delta))
        else:
            out.append(Step(StepKind.CONTINUES, delta))
    return out


def _clock_warning(prev: Recording, nxt: Recording, delta: timedelta) -> str:
    direction = "earlier" if delta < timedelta(0) else "later"
    return (
        f"camera clock looks wrong: {PurePosixPath(nxt.first.relative_path).name} was recorded "
        f"after {PurePosixPath(prev.first.relative_path).name} but its clock says "
        f"{nxt.start:%Y-%m-%d %H:%M} ({describe(abs(delta))} {direction}); "
        "the camera's file numbers decide the order"
    )


def describe(delta: timedelta) -> str:
    """A duration as a person says it: '40 minutes', '3 hours', '9 years'."""
    minutes = delta.total_seconds() / 60
    for unit, size in (("year", 525_960), ("day", 1_440), ("hour", 60)):
        if minutes >= size:
            n = int(minutes // size)
            return f"{n} {unit}{'s' if n != 1 else ''}"
    n = round(minutes)
    return f"{n} minute{'s' if n != 1 else ''}"
