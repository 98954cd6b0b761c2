"""Helpers for the passenger-page tests: a booking's jump with a published video, poster and
photos, as `publish` and the `photos` step leave them (real files made with FFmpeg), and links
issued through the hub's own functions."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import imageio_ffmpeg
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from streams.hub.passenger_links import IssuedLink, issue_link, signer_for
from streams.settings import Settings

FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()
BOOKING = "BK-2026-88"
PASSENGER = "Anna <b>Berg</b>"
NAME = "BK-2026-88_Anna_Berg"  # the session's output name
PHOTO_SIZE = (640, 480)


def _ffmpeg(*args: str) -> None:
    subprocess.run([FFMPEG, "-v", "error", "-y", *args], check=True, timeout=60)


def make_video(path: Path, seconds: float = 4.0) -> None:
    """A real H.264/AAC MP4 (moov first, as publish leaves it), small and seekable."""
    path.parent.mkdir(parents=True, exist_ok=True)
    _ffmpeg(
        "-f", "lavfi", "-i", f"testsrc=size=320x240:rate=25:duration={seconds}",
        "-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}",
        "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-g", "25",
        "-c:a", "aac", "-shortest", "-movflags", "+faststart", str(path),
    )  # fmt: skip


def make_jpeg(path: Path, size: tuple[int, int] = PHOTO_SIZE, hue: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    w, h = size
    _ffmpeg(
        "-f", "lavfi", "-i", f"testsrc2=size={w}x{h}", "-vf", f"hue=h={hue}",
        "-frames:v", "1", "-q:v", "3", str(path),
    )  # fmt: skip


def make_logo(path: Path) -> None:
    """A small PNG (the dropzone's watermark logo)."""
    _ffmpeg("-f", "lavfi", "-i", "color=c=red:s=64x32", "-frames:v", "1", str(path))


@dataclass(frozen=True)
class Jump:
    session: str
    execution: int
    video: Path
    poster: Path
    photos: list[Path]


_STEP = text(
    "INSERT INTO pipeline_step (execution_id, name, kind, status, attempt, output) "
    "VALUES (:e, :n, :k, :s, 1, CAST(:o AS jsonb))"
)


async def seed_jump(
    engine: AsyncEngine,
    settings: Settings,
    *,
    booking: str = BOOKING,
    passenger: str = PASSENGER,
    session: str = "card-P:1",
    publish: str = "succeeded",
    photos: str | None = "succeeded",
    n_photos: int = 3,
) -> Jump:
    """A jump of `booking`; `publish`/`photos`: the steps' statuses (None: no photos step)."""
    name = f"{NAME}_{session.rsplit(':', 1)[-1]}"
    folder = settings.output_dir / name
    video, poster = folder / f"{name}.mp4", folder / f"{name}.jpg"
    shots = [folder / "photos" / f"{name}-{i:02d}.jpg" for i in range(1, n_photos + 1)]
    if publish == "succeeded":
        make_video(video)
        make_jpeg(poster, (320, 240))
    if photos == "succeeded":
        for i, shot in enumerate(shots):
            make_jpeg(shot, hue=i * 60)
    async with engine.begin() as conn:
        card = session.split(":", 1)[0]
        await conn.execute(
            text("INSERT INTO card (id, label) VALUES (:c, 'GOPRO-P') ON CONFLICT DO NOTHING"),
            {"c": card},
        )
        execution = await conn.scalar(
            text(
                "INSERT INTO pipeline_execution (key, pipeline, subject_type, subject_id, status) "
                "VALUES (:k, 'jump', 'session', :s, :st) RETURNING id"
            ),
            {
                "k": f"jump:{session}",
                "s": session,
                "st": "succeeded" if publish == "succeeded" else "running",
            },
        )
        await conn.execute(
            text(
                "INSERT INTO jump_session (key, card_id, status, booking_id, passenger, product, "
                "execution_id, output_name) VALUES (:s, :c, 'decoded', :b, :p, 'video+photos', "
                ":e, :n)"
            ),
            {"s": session, "c": card, "b": booking, "p": passenger, "e": execution, "n": name},
        )
        publish_out = (
            {"video": str(video), "poster": str(poster), "output_name": name}
            if publish == "succeeded"
            else None
        )
        await conn.execute(
            _STEP,
            {"e": execution, "n": "publish", "k": "publish", "s": publish,
             "o": json.dumps(publish_out)},
        )  # fmt: skip
        if photos is not None:
            photos_out = (
                {
                    "photos": [str(p.relative_to(settings.output_dir)) for p in shots],
                    "contact_sheet": str((folder / "sheet.jpg").relative_to(settings.output_dir)),
                    "count": len(shots),
                    "picked_from": "freefall",
                    "warnings": [],
                }
                if photos == "succeeded"
                else None
            )
            await conn.execute(
                _STEP,
                {"e": execution, "n": "photos", "k": "photos", "s": photos,
                 "o": json.dumps(photos_out)},
            )  # fmt: skip
    return Jump(session, int(execution), video, poster, shots)


async def issue(
    engine: AsyncEngine,
    settings: Settings,
    booking: str = BOOKING,
    *,
    days: int = 30,
    now: datetime | None = None,
) -> IssuedLink:
    return await issue_link(engine, signer_for(settings), booking, days=days, actor="test", now=now)
