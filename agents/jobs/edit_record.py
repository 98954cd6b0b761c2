"""The `phases` step's output as a typed record (`EditRecord`): the marks of a jump with their
confidences, whether a person must look and why, and the edit decision list naming clips by their
ledger ids. Written by agents/jobs/phases_step.py, read by the render dispatch
(agents/jobs/render.py), stored as the step's JSON output. Pure."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from agents.edit import MusicBed
from agents.telemetry.marks import Mark


@dataclass(frozen=True)
class EditSpan:
    """One kept span of the EDL, naming its clip by ledger id."""

    file_id: int
    start: float
    end: float
    speed: float
    role: str


@dataclass(frozen=True)
class EditRecord:
    """What the `phases` step found and decided: its output, as stored with the step."""

    needs_review: bool
    reasons: tuple[str, ...]
    marks: Mapping[str, Mark | None]
    telemetry: bool  # some clip had a usable telemetry track
    sound: bool  # some clip had audio
    notes: tuple[str, ...]  # clips whose telemetry or audio could not be read, and why
    spans: tuple[EditSpan, ...] | None  # None: no edit (no freefall)
    total_s: float
    music: MusicBed | None = None  # the edit's music bed (issue 15), in the output's `edl`

    def review_reason(self) -> str:
        """The reason a person reads: what is wrong, and what was detected."""
        found = ", ".join(
            f"{kind} {m.t:.1f} s ({m.confidence:.2f})" if m else f"{kind} not found"
            for kind, m in self.marks.items()
        )
        return (
            f"the automatic edit is not sure: {'; '.join(self.reasons)} (detected: {found}); "
            "assign the session to approve "
            + ("the detected edit" if self.spans else "rendering every clip whole")
        )

    def to_output(self) -> dict[str, object]:
        return {
            "needs_review": self.needs_review,
            "reasons": list(self.reasons),
            "marks": {
                k: None
                if m is None
                else {"t": float(m.t), "confidence": float(m.confidence), "source": str(m.source)}
                for k, m in self.marks.items()
            },
            "sources": {"telemetry": self.telemetry, "sound": self.sound},
            "notes": list(self.notes),
            "edl": None
            if self.spans is None
            else {
                "total_s": self.total_s,
                "music": music_output(self.music),
                "spans": [
                    {
                        "file_id": s.file_id,
                        "start": s.start,
                        "end": s.end,
                        "speed": s.speed,
                        "role": s.role,
                    }
                    for s in self.spans
                ],
            },
        }

    @classmethod
    def from_output(cls, output: object) -> EditRecord:
        """The record back from the step's stored output; ValueError when it is not one."""
        if not isinstance(output, dict) or "needs_review" not in output:
            raise ValueError(f"not a phases step output: {output!r:.200}")
        try:
            edl = output.get("edl")
            spans = (
                None
                if edl is None
                else tuple(
                    EditSpan(
                        int(s["file_id"]),
                        float(s["start"]),
                        float(s["end"]),
                        float(s["speed"]),
                        str(s["role"]),
                    )
                    for s in edl["spans"]
                )
            )
            return cls(
                needs_review=bool(output["needs_review"]),
                reasons=tuple(str(r) for r in output.get("reasons", [])),
                marks={},  # the render needs the decision, not the marks
                telemetry=bool(output.get("sources", {}).get("telemetry")),
                sound=bool(output.get("sources", {}).get("sound")),
                notes=tuple(str(n) for n in output.get("notes", [])),
                spans=spans,
                total_s=float(edl["total_s"]) if edl is not None else 0.0,
                music=music_from_output(edl),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"a malformed phases step output ({exc!r})") from exc


# --- the music bed (issue 15) ---


def music_output(music: MusicBed | None) -> dict[str, object] | None:
    """The music bed as stored in the output's `edl` (None: no music)."""
    if music is None:
        return None
    return {
        "path": music.path,
        "level_db": music.level_db,
        "fade_in_s": music.fade_in_s,
        "fade_out_s": music.fade_out_s,
    }


def music_from_output(edl: object) -> MusicBed | None:
    """The music bed back from a stored `edl` (absent or null: none); ValueError when malformed
    (agents.edit.EditError is one)."""
    if not isinstance(edl, dict) or edl.get("music") is None:
        return None
    m = edl["music"]
    if not isinstance(m, dict) or not isinstance(m.get("path"), str):
        raise ValueError(f"a malformed music bed {m!r:.200}")
    return MusicBed(m["path"], float(m["level_db"]), float(m["fade_in_s"]), float(m["fade_out_s"]))
