"""The `phases` step: find the jump in a session's clips and decide its edit.

The session's probed clips, in capture order, are one timeline (chapters joined, each clip
starting where the one before ended, by its probed duration). Each clip's GPMF telemetry is read
(agents/telemetry/gpmf_reader.py) and its audio decoded to band energies
(agents/telemetry/audio_decode.py); the phase detection (agents/telemetry/phases.py) fuses them,
sound alone serving when no clip has telemetry. With a freefall found, the edit decision list is
built (agents/edit.py, the settings' `edit_*`). The step's output is an `EditRecord`: the marks with
their confidences, what each source said, and the EDL — the render (agents/jobs/render.py) cuts
the video to it.

When skyreel is not sure (no freefall, the sources disagree, a mark below the review threshold),
a person decides: the session goes to `needs_review` with the reason and the detected marks, the
way a session with an unreadable ticket does (storage/media.review_session), and its render waits
until an operator assigns it (`skyreel assign` / the dashboard), which approves the detected edit,
or the whole clips when no freefall was found. A video with no freefall is never rendered unseen.

An operator can set the marks by hand (`skyreel edit`, the dashboard; storage/session_edit.py):
the step then builds the EDL from them (source "operator", confidence 1, nothing to review, a note
saying who set them when) instead of detecting. Either way the output also carries the
recording's length, its clips and a timeline of altitude, acceleration and sound
(agents/telemetry/timeline.py) for the dashboard's chart.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from agents.edit import (
    ClipSpan,
    EditDecisionList,
    EditError,
    EditSettings,
    MusicBed,
    build_edl,
)
from agents.jobs import kinds
from agents.jobs.context import JobContext
from agents.jobs.edit_record import EditRecord, EditSpan
from agents.jobs.render import choose_footage
from agents.jobs.step_input import str_input
from agents.pipeline.errors import PermanentStepError, RetryableStepError
from agents.pipeline.handlers import Handler, StepContext, StepOutput
from agents.telemetry.audio_decode import AudioDecodeError, clip_sound
from agents.telemetry.gpmf_reader import TelemetryReadError, read_clip
from agents.telemetry.marks import JumpPhases, Mark, MarkKind, Source
from agents.telemetry.phases import detect
from agents.telemetry.series import ClipTelemetry, TelemetryStatus, join_chapters
from agents.telemetry.sound import SoundSeries
from agents.telemetry.timeline import timeline
from storage import media, session_edit
from storage.session_edit import StoredMarks
from streams import records
from streams.settings import Settings

logger = logging.getLogger(__name__)

KIND = kinds.PHASES


@dataclass(frozen=True)
class FootageClip:
    """One clip of the session's timeline: its ledger id, file and probed duration."""

    file_id: int
    name: str
    path: Path
    duration_s: float


def _clip_telemetry(clip: FootageClip, notes: list[str]) -> ClipTelemetry:
    try:
        tel = read_clip(clip.path)
    except TelemetryReadError as exc:
        notes.append(f"{clip.name}: telemetry not readable ({exc.reason})")
        return ClipTelemetry(clip.name, TelemetryStatus.NO_TELEMETRY, clip.duration_s)
    # the timeline is the probed durations (what the EDL and the render count in)
    return replace(tel, duration_s=clip.duration_s)


def _clip_sound(clip: FootageClip, notes: list[str]) -> SoundSeries | None:
    try:
        return clip_sound(clip.path)
    except AudioDecodeError as exc:
        notes.append(f"{clip.name}: audio not readable ({exc.reason})")
        return None


def join_sound(parts: Sequence[tuple[SoundSeries | None, float]]) -> SoundSeries | None:
    """Clips' sound series on one timeline (each with its clip's start offset); None if none."""
    present = [(s, offset) for s, offset in parts if s is not None and s.count]
    if not present:
        return None

    def cat(field: str) -> np.ndarray:
        return np.concatenate([getattr(s, field) for s, _ in present])

    return SoundSeries(
        np.concatenate([s.t + offset for s, offset in present]),
        cat("low_db"),
        cat("wind_db"),
        cat("total_db"),
        present[0][0].window_s,
    )


def record_of(
    phases: JumpPhases, clips: Sequence[FootageClip], settings: EditSettings, *,
    telemetry: bool, sound: bool, notes: Sequence[str],
) -> EditRecord:  # fmt: skip
    """The edit of detected phases (pure): the EDL when there is a freefall, review otherwise."""
    reasons = list(phases.reasons)
    edl: EditDecisionList | None = None
    if phases.has_freefall:
        try:
            edl = build_edl(
                phases, [ClipSpan(str(c.file_id), c.duration_s) for c in clips], settings
            )
        except EditError as exc:
            reasons.append(exc.reason)
        if edl is not None and not edl.spans:
            reasons.append("the edit keeps nothing")
            edl = None
    elif "no freefall found" not in reasons:
        reasons.append("no freefall found")
    spans = (
        None
        if edl is None
        else tuple(EditSpan(int(s.clip), s.start, s.end, s.speed, str(s.role)) for s in edl.spans)
    )
    return EditRecord(
        needs_review=phases.needs_review or bool(reasons) or spans is None,
        reasons=tuple(reasons),
        marks={"exit": phases.exit, "opening": phases.opening, "landing": phases.landing},
        telemetry=telemetry,
        sound=sound,
        notes=tuple(notes),
        spans=spans,
        total_s=edl.total_s if edl is not None else 0.0,
        music=edl.music if edl is not None else None,
    )


@dataclass(frozen=True)
class Recording:
    """A session's clips read as one timeline: joined telemetry (None when no clip has any),
    joined sound (None when no clip has audio), and what could not be read."""

    clips: tuple[FootageClip, ...]
    tel: ClipTelemetry | None
    sound: SoundSeries | None
    notes: tuple[str, ...]

    @property
    def recording_s(self) -> float:
        return float(sum(c.duration_s for c in self.clips))


def read_recording(clips: Sequence[FootageClip]) -> Recording:
    """Read the clips' telemetry and sound onto one timeline (blocking I/O)."""
    notes: list[str] = []
    tels = [_clip_telemetry(c, notes) for c in clips]
    has_tel = any(t.status is TelemetryStatus.OK and t.accl is not None for t in tels)
    tel = join_chapters(tels) if has_tel else None
    offsets = np.concatenate([[0.0], np.cumsum([c.duration_s for c in clips])[:-1]])
    sound = join_sound(
        [(_clip_sound(c, notes), float(o)) for c, o in zip(clips, offsets, strict=True)]
    )
    return Recording(tuple(clips), tel, sound, tuple(notes))


def analyse(clips: Sequence[FootageClip], settings: EditSettings) -> EditRecord:
    """Read the clips' telemetry and sound, detect the phases, decide the edit (blocking I/O)."""
    return detected(read_recording(clips), settings)


def detected(rec: Recording, settings: EditSettings) -> EditRecord:
    """The edit of the detected phases of a recording (pure)."""
    phases = detect(rec.tel, rec.sound)
    return record_of(
        phases, rec.clips, settings, telemetry=rec.tel is not None, sound=rec.sound is not None,
        notes=rec.notes,
    )  # fmt: skip


# --- the chart and the operator's marks (issue 15, item 7) ------------------------------------


def recording_output(rec: Recording) -> dict[str, object]:
    """What the phases step's output adds for the dashboard's chart (pure): the recording's
    length, its clips on the timeline, and the timeline of altitude, acceleration and sound."""
    clips: list[dict[str, object]] = []
    start = 0.0
    for c in rec.clips:
        clips.append({"file_id": c.file_id, "name": c.name, "start_s": round(start, 3),
                      "duration_s": round(c.duration_s, 3)})  # fmt: skip
        start += c.duration_s
    chart = timeline(rec.tel, rec.sound, rec.recording_s)
    return {"recording_s": rec.recording_s, "clips": clips, "timeline": chart.to_output()}


def operator_phases(marks: StoredMarks) -> JumpPhases:
    """The phases an operator set by hand: sure (confidence 1), nothing to review."""

    def mark(kind: MarkKind, t: float | None) -> Mark | None:
        return None if t is None else Mark(kind, t, 1.0, Source.OPERATOR)

    return JumpPhases(
        exit=mark(MarkKind.EXIT, marks.exit),
        opening=mark(MarkKind.OPENING, marks.opening),
        landing=mark(MarkKind.LANDING, marks.landing),
        needs_review=False,
    )


def music_bed(settings: Settings) -> MusicBed | None:
    """The configured music bed (issue 15; the settings' `edit_music_*`), or None."""
    if settings.edit_music_path is None:
        return None
    return MusicBed(
        str(settings.edit_music_path.resolve()),
        settings.edit_music_level_db,
        settings.edit_music_fade_in_s,
        settings.edit_music_fade_out_s,
    )


def from_marks(rec: Recording, marks: StoredMarks, settings: EditSettings) -> EditRecord:
    """The edit of the operator's marks (pure); review only if no edit can be made of them."""
    note = f"marks set by {marks.set_by} at {marks.set_at.isoformat(timespec='seconds')}"
    return record_of(
        operator_phases(marks), rec.clips, settings, telemetry=rec.tel is not None,
        sound=rec.sound is not None, notes=(*rec.notes, note),
    )  # fmt: skip


def decide(
    clips: Sequence[FootageClip], settings: EditSettings, marks: StoredMarks | None
) -> tuple[EditRecord, dict[str, object]]:
    """The edit (the operator's marks when set, else detected) and the phases step's output
    with the chart (blocking I/O)."""
    rec = read_recording(clips)
    record = detected(rec, settings) if marks is None else from_marks(rec, marks, settings)
    return record, {**record.to_output(), **recording_output(rec)}


def handler(jc: JobContext) -> Handler:
    async def phases_step(ctx: StepContext, request: records.StepRequest) -> StepOutput:
        key = str_input(request, "session")
        async with jc.engine.connect() as conn:
            session = await media.load_session(conn, key)
            if session is None:
                raise PermanentStepError(f"no jump session {key!r}")
            rows = {r.id: r for r in await media.load_files(conn, session.file_ids)}
        kept, _left_out, pending = choose_footage(session.file_ids, rows)
        if pending:
            raise RetryableStepError(f"waiting for every clip: {'; '.join(pending[:3])}")
        if not kept:
            raise PermanentStepError(f"session {key}: no readable clip to find the jump in")
        clips = [
            FootageClip(r.id, r.name, jc.settings.share_root / str(r.stored_path),
                        float(r.duration_s or 0.0))
            for r in kept
        ]  # fmt: skip
        try:
            e = jc.settings.edit()
            settings = EditSettings(
                door_s=e["door_s"],
                after_landing_s=e["after_landing_s"],
                interview_s=e["interview_s"],
                exit_replay_s=e["exit_replay_s"],
                exit_replay_speed=e["exit_replay_speed"],
            )
            settings = replace(settings, music=music_bed(jc.settings))
        except EditError as exc:
            raise PermanentStepError(f"the edit settings are wrong: {exc.reason}") from exc
        async with jc.engine.connect() as conn:
            marks = await session_edit.load_marks(conn, key)
        record, output = await ctx.run_blocking(decide, clips, settings, marks)
        for note in record.notes:
            ctx.log(note, "warning")
        if record.needs_review:
            reason = record.review_reason()
            async with jc.engine.begin() as conn:
                new = await media.review_session(conn, key, reason)
            if new:
                logger.warning("session %s needs review: %s", key, reason)
            ctx.log(reason, "warning")
        else:
            ctx.log(f"edit: {len(record.spans or ())} spans, {record.total_s:.1f} s")
        return StepOutput(output)

    return phases_step
