"""The render job: what the dispatcher (agents/jobs/render.py) enqueues and the render worker
(agents/render/queue.py) decodes — one model for both sides of the Redis queue.

It travels as JSON in the saq job's kwargs (`model_dump(mode="json")`); the worker validates it
back (`RenderJob.model_validate`) and only then checks paths against its own roots.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class RenderClip(BaseModel):
    """One clip to render, with its ledger identity (what the output's manifest records)."""

    model_config = ConfigDict(frozen=True)

    path: str
    duration: float
    width: int
    height: int
    fps: float
    has_audio: bool
    rotation: int = 0
    id: int | None = None  # the imported_file row; with size and sha256 when set
    size: int | None = None
    sha256: str | None = None


class RenderCut(BaseModel):
    """One span of the edit decision list: `clips[clip]` from `start` to `end` s at `speed`."""

    model_config = ConfigDict(frozen=True)

    clip: int = Field(ge=0)
    start: float = Field(ge=0)
    end: float = Field(gt=0)
    speed: float = Field(1.0, ge=0.1, le=1.0)


class RenderMusic(BaseModel):
    """The edit's music bed (agents/render/music.py): an audio file mixed under the sound."""

    model_config = ConfigDict(frozen=True)

    path: str = Field(min_length=1)
    level_db: float = Field(-18.0, ge=-60, le=0)
    fade_in_s: float = Field(2.0, ge=0, le=60)
    fade_out_s: float = Field(3.0, ge=0, le=60)


class RenderJob(BaseModel):
    """A jump session's render: its clips, output name, passenger and branding."""

    model_config = ConfigDict(frozen=True)

    session_key: str
    output_name: str
    execution_id: int | None = None
    booking_id: str | None = None
    passenger_name: str = ""
    clips: list[RenderClip]
    # the edit (the `phases` step's EDL), in output order; None renders every clip whole
    cuts: list[RenderCut] | None = None
    music: RenderMusic | None = None  # the edit's music bed; None: the original sound alone
    # agents.render.branding.Branding fields, validated there (unknown keys are an error)
    branding: dict[str, object] = Field(default_factory=dict)
