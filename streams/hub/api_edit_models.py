"""The session detail's `edit`: what the `phases` step found in a jump and decided to keep.

`GET /api/sessions/{key}` shows it (streams/hub/api.py) so an operator sees the phase timeline
(altitude, acceleration, sound over the recording), the marks (exit, opening, landing) with their
confidences and sources, and the edit decision list, and can move a mark and re-render
(`POST /api/sessions/{key}/edit`, streams/hub/api_actions.py).

The stored output (agents/jobs/edit_record.py `EditRecord.to_output()`, written by another
process, older versions without `timeline`/`clips`/`recording_s`) is validated here,
defensively: whatever it holds, `session_edit` answers a `SessionEdit` — with `error` saying what
could not be read — never an exception, so a malformed output never makes the detail a 500.
Pure: no I/O.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence

from pydantic import BaseModel, ConfigDict, Field, ValidationError

logger = logging.getLogger(__name__)

MARK_KINDS = ("exit", "opening", "landing")
SERIES = ("altitude_m", "accel_g", "sound_db")
#: At most this many timeline points are answered (the step stores ≤ 600; older or foreign
#: outputs are thinned by a stride rather than refused).
MAX_POINTS = 1200


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class EditMark(_Model):
    """A detected (or operator-set) moment of the jump."""

    t: float = Field(description="Seconds into the recording (the session's clips joined).")
    confidence: float = Field(description="0..1; below the review threshold a person looks.")
    source: str = Field(
        description="What found it: telemetry, sound, both, or operator (moved by hand)."
    )


class EditMarks(_Model):
    exit: EditMark | None = Field(default=None, description="None: not found.")
    opening: EditMark | None = Field(default=None, description="None: not found.")
    landing: EditMark | None = Field(default=None, description="None: not found.")


class EditSources(_Model):
    telemetry: bool = Field(description="Some clip had a usable telemetry track.")
    sound: bool = Field(description="Some clip had audio.")


class EditSpanInfo(_Model):
    """One kept span of the edit decision list."""

    file_id: int
    name: str | None = Field(description="The clip's file name (None: not in the session).")
    start: float = Field(description="Seconds into that clip.")
    end: float = Field(description="Seconds into that clip.")
    speed: float = Field(description="Playback speed (1: real time; > 1 sped up).")
    role: str = Field(description="What the span shows, e.g. plane, freefall, canopy, landing.")
    output_s: float = Field(description="Seconds it lasts in the video: (end - start) / speed.")


class EditDecisionList(_Model):
    total_s: float = Field(description="Length of the edited video, seconds.")
    spans: list[EditSpanInfo]


class EditClip(_Model):
    """A clip of the session on the recording's timeline."""

    file_id: int
    name: str
    start_s: float = Field(description="Where the clip starts on the recording, seconds.")
    duration_s: float


class EditTimeline(_Model):
    """The series the marks were found in, sampled on one time axis (null: no value there)."""

    t: list[float] = Field(description="Seconds into the recording.")
    altitude_m: list[float | None]
    accel_g: list[float | None]
    sound_db: list[float | None]


class SessionEdit(_Model):
    """The automatic edit of a jump: the `phases` step's status and what it stored."""

    step: str = Field(description="The pipeline step (`phases`).")
    status: str = Field(description="The step's status: pending, running, succeeded, failed...")
    error: str | None = Field(
        default=None,
        description="Why there is less to show: the step's failure, or what in its stored "
        "output could not be read.",
    )
    needs_review: bool | None = Field(
        default=None, description="A person must look before the video is rendered."
    )
    reasons: list[str] = Field(default_factory=list, description="Why a person must look.")
    marks: EditMarks = Field(default_factory=EditMarks)
    sources: EditSources | None = None
    notes: list[str] = Field(
        default_factory=list, description="Clips whose telemetry or audio could not be read."
    )
    edl: EditDecisionList | None = Field(
        default=None, description="None: no edit (no freefall found): every clip whole."
    )
    recording_s: float | None = Field(
        default=None, description="Length of the recording (None: not stored by older steps)."
    )
    clips: list[EditClip] = Field(default_factory=list)
    timeline: EditTimeline | None = Field(
        default=None, description="None: not stored (older steps) or not run yet."
    )


class _Malformed(ValueError):
    """The stored output is not what the phases step writes."""


def _texts(value: object, what: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise _Malformed(f"{what} is not a list")
    return [v if isinstance(v, str) else json.dumps(v) for v in value if v is not None]


def _obj(value: object, what: str) -> Mapping[str, object]:
    if not isinstance(value, Mapping):
        raise _Malformed(f"{what} is not an object")
    return value


def _number(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _Malformed(f"{what} is not a number: {value!r:.40}")
    return float(value)


def _marks(value: object) -> dict[str, object]:
    if value is None:
        return {}
    marks = _obj(value, "marks")
    return {k: marks.get(k) for k in MARK_KINDS}


def _clips(value: object) -> list[dict[str, object]]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise _Malformed("clips is not a list")
    return [dict(_obj(c, f"clips[{i}]")) for i, c in enumerate(value)]


def _edl(value: object, names: Mapping[int, str]) -> dict[str, object] | None:
    if value is None:
        return None
    edl = _obj(value, "edl")
    spans = edl.get("spans")
    if not isinstance(spans, list):
        raise _Malformed("edl.spans is not a list")
    out: list[dict[str, object]] = []
    for i, raw in enumerate(spans):
        span = _obj(raw, f"edl.spans[{i}]")
        start = _number(span.get("start"), f"edl.spans[{i}].start")
        end = _number(span.get("end"), f"edl.spans[{i}].end")
        speed = _number(span.get("speed"), f"edl.spans[{i}].speed")
        if speed <= 0:
            raise _Malformed(f"edl.spans[{i}].speed is not positive: {speed}")
        file_id = span.get("file_id")
        if isinstance(file_id, bool) or not isinstance(file_id, int):
            raise _Malformed(f"edl.spans[{i}].file_id is not an id: {file_id!r:.40}")
        out.append(
            {
                "file_id": file_id,
                "name": names.get(file_id),
                "start": start,
                "end": end,
                "speed": speed,
                "role": span.get("role"),
                "output_s": round((end - start) / speed, 3),
            }
        )
    return {"total_s": edl.get("total_s"), "spans": out}


def _series(value: object, n: int, what: str) -> list[object]:
    if value is None:
        return [None] * n
    if not isinstance(value, list):
        raise _Malformed(f"timeline.{what} is not a list")
    if len(value) != n:
        raise _Malformed(f"timeline.{what} has {len(value)} points, timeline.t {n}")
    return value


def _timeline(value: object) -> dict[str, object] | None:
    if value is None:
        return None
    timeline = _obj(value, "timeline")
    t = timeline.get("t")
    if not isinstance(t, list):
        raise _Malformed("timeline.t is not a list")
    columns: dict[str, list[object]] = {"t": t}
    for name in SERIES:
        columns[name] = _series(timeline.get(name), len(t), name)
    stride = max(1, math.ceil(len(t) / MAX_POINTS))
    return {k: v[::stride] for k, v in columns.items()}


def _fields(output: object, names: Mapping[int, str]) -> dict[str, object]:
    if isinstance(output, str):
        try:
            output = json.loads(output)
        except ValueError as exc:
            raise _Malformed(f"not JSON ({exc})") from exc
    data = _obj(output, "the output")
    if "needs_review" not in data:
        raise _Malformed("no needs_review: not a phases step output")
    clips = _clips(data.get("clips"))
    clip_names = dict(names)
    for c in clips:
        clip_id, clip_name = c.get("file_id"), c.get("name")
        if isinstance(clip_id, int) and isinstance(clip_name, str):
            clip_names[clip_id] = clip_name
    return {
        "needs_review": data.get("needs_review"),
        "reasons": _texts(data.get("reasons"), "reasons"),
        "marks": _marks(data.get("marks")),
        "sources": data.get("sources"),
        "notes": _texts(data.get("notes"), "notes"),
        "edl": _edl(data.get("edl"), clip_names),
        "recording_s": data.get("recording_s"),
        "clips": clips,
        "timeline": _timeline(data.get("timeline")),
    }


def _why(exc: ValidationError) -> str:
    parts = [
        f"{'.'.join(str(p) for p in e['loc']) or 'output'}: {e['msg']}" for e in exc.errors()[:3]
    ]
    more = exc.error_count() - len(parts)
    return "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")


def session_edit(
    step: Mapping[str, object] | None, file_names: Mapping[int, str] | None = None
) -> SessionEdit | None:
    """The `edit` of a session detail from its execution's `phases` step row (name, status,
    error, output; storage/status_edit.py) and the session's file names by ledger id (the
    spans are named by them when the output has no `clips`). None: no phases step."""
    if step is None:
        return None
    status = str(step.get("status") or "unknown")
    failure = str(step.get("error") or "") if status == "failed" else ""
    base: dict[str, object] = {"step": str(step.get("name") or "phases"), "status": status}
    if failure:
        base["error"] = failure
    output = step.get("output")
    if output is None:
        return SessionEdit.model_validate(base)
    try:
        return SessionEdit.model_validate({**base, **_fields(output, file_names or {})})
    except _Malformed as exc:
        why = str(exc)
    except ValidationError as exc:
        why = _why(exc)
    logger.warning("the %s step's stored output is malformed: %s", base["step"], why)
    return SessionEdit.model_validate(
        {**base, "error": f"the stored output of the phases step could not be read: {why}"}
    )


def file_names(rows: Sequence[Mapping[str, object]]) -> dict[int, str]:
    """Ledger id → file name of the session's files (rows with `id` and `name`)."""
    return {
        int(r["id"]): str(r["name"])  # type: ignore[call-overload]
        for r in rows
        if r.get("id") is not None and r.get("name") is not None
    }
