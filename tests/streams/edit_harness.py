"""A `phases` step output with the shape issue 15's read side reads (agents/jobs/edit_record.py
`EditRecord.to_output()` plus `recording_s`, `clips` and `timeline`), written onto the session
`status_harness.seed` makes, for the session-edit API and dashboard tests."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

SESSION = "card-A:1"
#: The recording: clip one 0–180 s, clip two (its chapter) 180–300 s.
RECORDING_S = 300.0
CHAPTER_AT = 180.0
MARKS = {
    "exit": {"t": 60.2, "confidence": 0.93, "source": "telemetry"},
    "opening": {"t": 110.5, "confidence": 0.81, "source": "both"},
    "landing": {"t": 281.0, "confidence": 0.66, "source": "sound"},
}


@dataclass(frozen=True)
class EditSeed:
    first: int  # ledger id of GX010002.MP4 (clip one)
    second: int  # ledger id of GX020002.MP4 (clip two)
    output: dict[str, object]


def _altitude(t: float) -> float:
    if t < 60:
        return 4000.0
    if t < 110:
        return 4000.0 - (t - 60) * 50.0
    return max(0.0, 1500.0 - (t - 110) * (1500.0 / 171.0))


def timeline(points: int = 300) -> dict[str, list[float | None]]:
    """Altitude, acceleration and sound over the recording; sound is missing for a stretch."""
    ts = [round(i * RECORDING_S / (points - 1), 3) for i in range(points)]
    return {
        "t": ts,
        "altitude_m": [round(_altitude(t), 1) for t in ts],
        "accel_g": [round(1.0 + (0.8 if 60 <= t < 62 or 110 <= t < 113 else 0.0), 2) for t in ts],
        "sound_db": [
            None if 200 <= t < 220 else round(-30 + 20 * math.sin(t / 9.0), 1) for t in ts
        ],
    }


def spans(first: int, second: int) -> list[dict[str, object]]:
    """The kept spans (seconds into each clip); the landing is in clip two."""
    return [
        {"file_id": first, "start": 50.0, "end": 60.2, "speed": 1.0, "role": "plane"},
        {"file_id": first, "start": 60.2, "end": 110.5, "speed": 1.0, "role": "freefall"},
        {"file_id": first, "start": 110.5, "end": 180.0, "speed": 4.0, "role": "canopy"},
        {"file_id": second, "start": 0.0, "end": 96.0, "speed": 4.0, "role": "canopy"},
        {"file_id": second, "start": 96.0, "end": 106.0, "speed": 1.0, "role": "landing"},
    ]


def output(
    first: int, second: int, *, with_timeline: bool = True, marks: object = None
) -> dict[str, object]:
    kept = spans(first, second)
    total = round(sum((float(s["end"]) - float(s["start"])) / float(s["speed"]) for s in kept), 3)  # type: ignore[arg-type]
    out: dict[str, object] = {
        "needs_review": True,
        "reasons": ["the landing mark is not sure (0.66 < 0.70)"],
        "marks": MARKS if marks is None else marks,
        "sources": {"telemetry": True, "sound": True},
        "notes": ["GX020002.MP4: no telemetry track"],
        "edl": {"total_s": total, "spans": kept},
    }
    if with_timeline:
        out["recording_s"] = RECORDING_S
        out["clips"] = [
            {"file_id": first, "name": "GX010002.MP4", "start_s": 0.0, "duration_s": CHAPTER_AT},
            {
                "file_id": second,
                "name": "GX020002.MP4",
                "start_s": CHAPTER_AT,
                "duration_s": RECORDING_S - CHAPTER_AT,
            },
        ]
        out["timeline"] = timeline()
    return out


async def seed_edit(
    engine: AsyncEngine,
    *,
    stored: object = None,
    with_timeline: bool = True,
    status: str = "succeeded",
    error: str = "",
    marks: object = None,
) -> EditSeed:
    """On top of `status_harness.seed`: clip two of the session, and a `phases` step of its
    jump execution storing `stored` (default: the output above) as its output."""
    async with engine.begin() as conn:
        first = int(
            await conn.scalar(text("SELECT id FROM imported_file WHERE name = 'GX010002.MP4'"))  # type: ignore[arg-type]
        )
        second = int(
            await conn.scalar(
                text(
                    "INSERT INTO imported_file (card_id, name, path, size, mtime_ms, kind, "
                    "status, session_key) VALUES ('card-A', 'GX020002.MP4', "
                    "'DCIM/GX020002.MP4', 9000, 1700000200000, 'footage', 'imported', :k) "
                    "RETURNING id"
                ),
                {"k": SESSION},
            )  # type: ignore[arg-type]
        )
        jump = await conn.scalar(
            text("SELECT execution_id FROM jump_session WHERE key = :k"), {"k": SESSION}
        )
        value = (
            output(first, second, with_timeline=with_timeline, marks=marks)
            if stored is None
            else stored
        )
        await conn.execute(
            text(
                "INSERT INTO pipeline_step (execution_id, name, kind, depends_on, status, "
                "attempt, max_attempts, error, output) VALUES (:e, 'phases', 'phases', "
                "ARRAY['?probe:*'], :s, 1, 2, :err, CAST(:o AS jsonb))"
            ),
            {
                "e": jump,
                "s": status,
                "err": error,
                "o": None if value is ... else json.dumps(value),
            },
        )
    return EditSeed(first, second, value if isinstance(value, dict) else {})
