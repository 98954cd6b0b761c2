"""Rendering of the demo card's clips: one :class:`ClipPlan` in, MP4 + LRV proxy + THM out.

Footage clips show a sky gradient with drifting clouds, a jumper crossing the frame and the jump
and clip number drawn on it; QR clips show a printed ticket (segno) held in front of the camera,
with the plan's blur / tilt / noise, or a thumb over the data area. Audio is a tone under wind
noise (AAC). A jump's recording (a plan with ``jump`` params, agents/telemetry/profile.py) shows
the same picture over a backdrop of its phase (cabin, sky, canopy sky, ground) with the phase
named, and carries the jump's sound and, unless the camera has none, its GPMF telemetry in a
``gpmd`` track (agents/telemetry/synthetic.py), one chapter of it per plan.
One pass over the frames feeds both the MP4 and its low-resolution ``.LRV`` proxy.
Files are written under a ``.part`` name with their final mtime, then renamed, so a detector
watching the card never lists a half-written file or one stamped with the current time.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import segno

from agents.sessions import parse_gopro_name
from agents.telemetry.profile import AUDIO_RATE_HZ, JumpParams, JumpProfile, generate
from agents.telemetry.synthetic import add_gpmd_stream, mux_gpmd, phase_at, totals_before

logger = logging.getLogger(__name__)

__all__ = ["ClipPlan", "ClipStyle", "Degrade", "gopro_name", "proxy_names", "write_clip"]

_SAMPLE_RATE = 48_000
_AAC_FRAME = 1024


@dataclass(frozen=True)
class Degrade:
    """How badly the ticket is filmed; every combination used here stays decodable."""

    blur: float = 0.0  # gaussian sigma in px
    tilt: float = 0.0  # perspective squeeze of one side, 0..0.3
    rotation_deg: float = 0.0
    noise: float = 0.0  # gaussian noise sigma, 0..255


@dataclass(frozen=True)
class ClipPlan:
    """One MP4 to write: what it shows and when it was captured."""

    name: str  # GX010042.MP4
    start: datetime  # creation_time; the mtime is start + seconds (when the camera closed it)
    seconds: float
    label: str  # drawn on footage; for QR clips only used in logs
    seed: int
    payload: str | None = None  # a QR clip when set
    occluded: bool = False  # a thumb over the QR data area
    degrade: Degrade = field(default_factory=Degrade)
    jump: JumpParams | None = None  # a jump's recording: its profile's sound and telemetry
    jump_from_s: float = 0.0  # where in the recording this chapter starts
    fps: int | None = None  # None: the card's (ClipStyle.fps)


@dataclass(frozen=True)
class ClipStyle:
    """Rendering settings of a whole card (kept in its manifest so added jumps match)."""

    seed: int = 7
    footage_seconds: float = 3.0  # generic footage (the camera check); jumps last their profile
    qr_seconds: float = 2.0
    width: int = 640
    height: int = 360
    fps: int = 30
    degrade: bool = True


def gopro_name(number: int, chapter: int = 1, ext: str = "MP4") -> str:
    """``GX01nnnn.MP4``; the LRV proxy of a recording is ``GL01nnnn.LRV`` as on real cameras."""
    family = "GL" if ext.upper() == "LRV" else "GX"
    return f"{family}{chapter:02d}{number:04d}.{ext}"


def proxy_names(name: str) -> tuple[str, str]:
    """The ``.LRV`` and ``.THM`` names that go with a GoPro ``.MP4`` name."""
    gp = parse_gopro_name(name)
    assert gp is not None
    return gopro_name(gp.recording, gp.chapter, "LRV"), gopro_name(gp.recording, gp.chapter, "THM")


def _sky(w: int, h: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    top = np.array([rng.uniform(120, 170), rng.uniform(60, 110), 20.0])  # RGB deep blue
    bottom = np.array([200.0, 225.0, 250.0])
    ramp = np.linspace(0.0, 1.0, h)[:, None, None]
    sky = top * (1 - ramp) + bottom * ramp
    return np.broadcast_to(sky[:, :, ::-1], (h, w, 3)).astype(np.uint8).copy()


def _mux_jump(
    out: av.container.OutputContainer, aus: av.AudioStream, gpmd: av.stream.Stream | None,
    profile: JumpProfile, plan: ClipPlan,
) -> None:  # fmt: skip
    """The chapter's slice of the jump's sound (mono) and of its telemetry (when it has any)."""
    lo, hi = plan.jump_from_s, plan.jump_from_s + plan.seconds
    sound = profile.audio[int(lo * AUDIO_RATE_HZ) : int(hi * AUDIO_RATE_HZ)]
    _mux_audio(out, aus, sound[None, :])
    if gpmd is not None:
        recording_start = plan.start - timedelta(seconds=lo)
        mux_gpmd(out, gpmd, profile, lo, hi, totals_before(profile, lo), recording_start)


def _footage_frame(sky: np.ndarray, plan: ClipPlan, t: float, caption: str = "") -> np.ndarray:
    h, w = sky.shape[:2]
    frame = sky.copy()
    phase = plan.seed % 11
    # Clouds drifting by and a jumper crossing the frame: content that changes every frame.
    for k in range(3):
        cx = int((w * (0.2 + 0.35 * k) - 60 * t * (k + 1) + 40 * phase) % (w + 200)) - 100
        cv2.ellipse(frame, (cx, int(h * (0.6 + 0.1 * k))), (90, 22), 0, 0, 360, (245, 245, 245), -1)
    jx = int(w * (0.15 + 0.7 * (t / max(plan.seconds, 0.1))))
    jy = int(h * 0.4 + 30 * math.sin(2.3 * t + phase))
    cv2.circle(frame, (jx, jy), 18, (30, 80, 230), -1)
    cv2.rectangle(frame, (jx - 6, jy + 16), (jx + 6, jy + 40), (40, 40, 40), -1)
    cv2.putText(frame, plan.label, (16, 36), cv2.FONT_HERSHEY_SIMPLEX, 0.9, (255, 255, 255), 2)
    if caption:  # a jump's phase
        cv2.putText(frame, caption, (16, 70), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (255, 255, 255), 2)
    cv2.putText(
        frame, f"{t:05.2f}s", (16, h - 16), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 1
    )
    return frame


def _backdrops(w: int, h: int, seed: int) -> dict[str, np.ndarray]:
    """A jump's backdrop per phase: the cabin, the sky, a lighter sky, the ground (BGR)."""
    ramp = np.linspace(0.0, 1.0, h)[:, None, None]
    field_ = np.array([60.0, 150.0, 90.0]) * (0.7 + 0.3 * ramp)  # green, lighter near the camera
    sky = _sky(w, h, seed)
    return {
        "plane": (_hangar(w, h, seed) * 0.6).astype(np.uint8),
        "freefall": sky,
        "canopy": cv2.addWeighted(_sky(w, h, seed + 1), 0.7, np.full_like(sky, 255), 0.3, 0.0),
        "ground": np.broadcast_to(field_, (h, w, 3)).astype(np.uint8).copy(),
    }


def _ticket(plan: ClipPlan) -> np.ndarray:
    """The printed ticket (BGR): QR with quiet zone on a paper margin, maybe under a thumb."""
    assert plan.payload is not None
    matrix = np.array([list(row) for row in segno.make_qr(plan.payload, error="m").matrix])
    modules = np.pad(np.where(matrix > 0, 0, 255).astype(np.uint8), 4, constant_values=255)
    qr = np.repeat(np.repeat(modules, 8, axis=0), 8, axis=1)
    if plan.occluded:
        n = qr.shape[0]
        c = n // 2 + n // 10
        # Covers the data area, leaves the three finder patterns in view: located, not decoded.
        cv2.circle(qr, (c, c), int(n * 0.22), 90, -1)
    paper = np.pad(qr, qr.shape[0] // 6, constant_values=245)
    ticket = cv2.cvtColor(paper, cv2.COLOR_GRAY2BGR)
    if plan.occluded:
        n = ticket.shape[0]
        c = n // 2 + n // 12
        cv2.ellipse(ticket, (c, c), (int(n * 0.2), int(n * 0.26)), 30, 0, 360, (120, 150, 200), -1)
    return ticket


def _hangar(w: int, h: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    small = rng.integers(50, 190, size=(h // 60 + 2, w // 60 + 2, 3), dtype=np.uint8)
    return cv2.GaussianBlur(cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC), (0, 0), 6)


def _qr_frame(bg: np.ndarray, ticket: np.ndarray, plan: ClipPlan, t: float) -> np.ndarray:
    h, w = bg.shape[:2]
    d = plan.degrade
    frame = bg.copy()
    side = h * 0.8
    cx = w / 2 + 10 * math.sin(2.1 * t + plan.seed % 7)
    cy = h / 2 + 6 * math.cos(1.7 * t + plan.seed % 5)
    half, squeeze = side / 2, d.tilt * side / 2
    pts = np.array(
        [[-half, -half + squeeze], [half, -half], [half, half], [-half, half - squeeze]],
        dtype=np.float32,
    )
    a = math.radians(d.rotation_deg + 2.0 * math.sin(1.3 * t))
    rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    dst = (pts @ rot.T + np.array([cx, cy])).astype(np.float32)
    # Warp and blur inside the ticket's bounding box only: full-frame filters doubled the cost.
    pad = int(4 * d.blur) + 2
    x0, y0 = max(0, int(dst[:, 0].min()) - pad), max(0, int(dst[:, 1].min()) - pad)
    x1, y1 = min(w, int(dst[:, 0].max()) + pad + 1), min(h, int(dst[:, 1].max()) + pad + 1)
    n = ticket.shape[0]
    src = np.array([[0, 0], [n, 0], [n, n], [0, n]], dtype=np.float32)
    m = cv2.getPerspectiveTransform(src, dst - np.array([x0, y0], dtype=np.float32))
    size = (x1 - x0, y1 - y0)
    warped = cv2.warpPerspective(ticket, m, size, flags=cv2.INTER_AREA)
    mask = cv2.warpPerspective(np.full(ticket.shape[:2], 255, np.uint8), m, size)
    roi = frame[y0:y1, x0:x1]
    np.copyto(roi, warped, where=mask[:, :, None] > 0)
    if d.blur > 0:
        roi[:] = cv2.GaussianBlur(roi, (0, 0), d.blur)
    return frame


def _audio(plan: ClipPlan) -> np.ndarray:
    """Stereo float samples: a tone (engine hum / beep) under wind noise."""
    rng = np.random.default_rng(plan.seed + 17)
    n = int(plan.seconds * _SAMPLE_RATE)
    t = np.arange(n) / _SAMPLE_RATE
    freq = 880.0 if plan.payload is not None else float(rng.uniform(90, 220))
    tone = 0.15 * np.sin(2 * np.pi * freq * t)
    wind = 0.05 * rng.standard_normal(n)
    mono = (tone + wind).astype(np.float32)
    return np.stack([mono, np.roll(mono, 37)])


def _audio_stream(out: av.container.OutputContainer, rate: int, layout: str) -> av.AudioStream:
    aus = out.add_stream("aac", rate=rate, layout=layout)
    aus.options = {"aac_coder": "fast"}  # the default coder costs more than the video
    return aus


def _mux_audio(out: av.container.OutputContainer, aus: av.AudioStream, samples: np.ndarray) -> None:
    rate, layout = aus.rate, aus.layout.name
    for s in range(0, samples.shape[1], _AAC_FRAME):
        af = av.AudioFrame.from_ndarray(
            np.ascontiguousarray(samples[:, s : s + _AAC_FRAME]), format="fltp", layout=layout
        )
        af.sample_rate, af.pts = rate, s
        out.mux(aus.encode(af))
    out.mux(aus.encode())


def write_clip(plan: ClipPlan, path: Path, style: ClipStyle) -> None:
    """MP4 (H.264 + AAC, + gpmd for a jump) and its LRV proxy in one pass over the frames; THM
    from frame 0."""
    w, h, fps = style.width, style.height, plan.fps or style.fps
    lw, lh = max(2, w // 4 // 2 * 2), max(2, h // 4 // 2 * 2)
    stamp = plan.start.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000000Z")
    lrv_name, thm_name = proxy_names(plan.name)
    parts = [path.with_name(n + ".part") for n in (plan.name, lrv_name)]
    noise_rng = np.random.default_rng(plan.seed + 5)
    bank = [
        noise_rng.normal(0, plan.degrade.noise, (h, w, 1)).astype(np.int16)
        for _ in range(5 if plan.degrade.noise > 0 else 0)
    ]
    profile: JumpProfile | None = None
    if plan.payload is not None:
        bg, ticket = _hangar(w, h, plan.seed), _ticket(plan)
    elif plan.jump is not None:
        profile = generate(plan.jump)
        backdrops = _backdrops(w, h, plan.seed)
    else:
        bg = _sky(w, h, plan.seed)
    with (
        av.open(str(parts[0]), "w", format="mp4") as out,
        av.open(str(parts[1]), "w", format="mp4") as lrv,
    ):
        streams = []
        for container, (sw, sh) in ((out, (w, h)), (lrv, (lw, lh))):
            container.metadata["creation_time"] = stamp
            vs = container.add_stream("libx264", rate=fps)
            vs.width, vs.height, vs.pix_fmt = sw, sh, "yuv420p"
            vs.time_base = Fraction(1, fps)
            vs.options = {"preset": "ultrafast", "crf": "26", "g": str(fps)}
            streams.append(vs)
        if profile is None:
            aus, gpmd = _audio_stream(out, _SAMPLE_RATE, "stereo"), None
        else:
            aus = _audio_stream(out, AUDIO_RATE_HZ, "mono")
            gpmd = add_gpmd_stream(out) if profile.params.has_telemetry else None
        for i in range(round(plan.seconds * fps)):
            t = i / fps
            if plan.payload is not None:
                frame = _qr_frame(bg, ticket, plan, t)
            elif profile is not None:
                phase = phase_at(profile.truth, plan.jump_from_s + t)
                frame = _footage_frame(backdrops[phase], plan, t, phase.upper())
            else:
                frame = _footage_frame(bg, plan, t)
            if bank:
                frame = np.clip(frame + bank[i % len(bank)], 0, 255).astype(np.uint8)
            if i == 0:
                thumb = cv2.imencode(".jpg", cv2.resize(frame, (160, 120)))[1].tobytes()
                path.with_name(thm_name).write_bytes(thumb)
            small: np.ndarray = cv2.resize(frame, (lw, lh), interpolation=cv2.INTER_AREA)
            for container, vs, img in ((out, streams[0], frame), (lrv, streams[1], small)):
                vf = av.VideoFrame.from_ndarray(img, format="bgr24")
                vf.pts = i
                container.mux(vs.encode(vf))
        if profile is None:
            _mux_audio(out, aus, _audio(plan))
        else:
            _mux_jump(out, aus, gpmd, profile, plan)
        for container, vs in ((out, streams[0]), (lrv, streams[1])):
            container.mux(vs.encode())
    mtime = (plan.start + timedelta(seconds=plan.seconds)).timestamp()
    # Times set before the rename: a watching detector never sees a new name with "now" as mtime.
    for part in parts:
        os.utime(part, (mtime, mtime))
    os.utime(path.with_name(thm_name), (mtime, mtime))
    parts[1].replace(path.with_name(lrv_name))
    parts[0].replace(path)
