"""The demo of ``skyreel run``: a synthetic SD card, a detector watching it, and a progress view
until every readable jump is rendered.

The card (agents/demo_card.py) lands in ``<data_dir>/demo/cards/CARD-DEMO`` once; a later run on
the same data directory finds it imported already and renders nothing again — exactly what a
dropzone sees when a card is inserted twice. Branding (a logo and an intro clip) is generated
into ``<data_dir>/demo/branding`` unless the settings name the dropzone's own.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from sqlalchemy.exc import SQLAlchemyError

from storage.db import make_engine, make_sessionmaker
from storage.detectors import rotate_token
from storage.progress import RunProgress, run_progress
from streams.settings import Settings
from streams.stack.supervisor import ChildSpec

logger = logging.getLogger(__name__)

DEMO_DETECTOR = "demo-station"


@dataclass(frozen=True)
class Demo:
    cards: Path
    card: Path
    expected_jumps: int
    detector: ChildSpec


def demo_settings(settings: Settings) -> Settings:
    """Settings for the demo: generated branding and a 720p output unless configured."""
    update: dict[str, object] = {}
    branding = settings.data_dir / "demo" / "branding"
    if settings.branding_logo is None:
        update["branding_logo"] = make_logo(branding / "logo.png")
    if settings.branding_intro is None:
        update["branding_intro"] = make_intro(branding / "intro.mp4")
    if "render_width" not in settings.model_fields_set:
        update["render_width"], update["render_height"] = 1280, 720
    return settings.model_copy(update=update)


def make_logo(path: Path) -> Path:
    if path.exists():
        return path.resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    img = np.zeros((160, 480, 4), np.uint8)
    cv2.rectangle(img, (4, 4), (475, 155), (255, 255, 255, 200), 6)
    cv2.putText(img, "SKYDIVE", (28, 80), cv2.FONT_HERSHEY_DUPLEX, 2.2, (255, 255, 255, 255), 5)
    cv2.putText(
        img, "demo dropzone", (34, 132), cv2.FONT_HERSHEY_SIMPLEX, 1.2, (80, 200, 255, 255), 3
    )
    cv2.imwrite(str(path), img)
    return path.resolve()


def make_intro(path: Path, seconds: float = 2.0, size: tuple[int, int] = (640, 360)) -> Path:
    """A short branded intro with audio (PyAV, H.264 + AAC)."""
    if path.exists():
        return path.resolve()
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".part.mp4")
    w, h = size
    fps = 30
    with av.open(str(tmp), "w") as out:
        video = out.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = w, h, "yuv420p"
        audio = out.add_stream("aac", rate=48000)
        audio.layout = "stereo"
        for i in range(int(seconds * fps)):
            frame = np.zeros((h, w, 3), np.uint8)
            frame[:] = (90 + i, 40, 20)
            cv2.putText(
                frame,
                "Your jump",
                (w // 6, h // 2),
                cv2.FONT_HERSHEY_DUPLEX,
                2.0,
                (255, 255, 255),
                3,
            )
            for p in video.encode(av.VideoFrame.from_ndarray(frame, format="bgr24")):
                out.mux(p)
        samples = int(seconds * 48000)
        t = np.arange(samples) / 48000
        tone = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
        chunk = 1024
        for start in range(0, samples, chunk):
            part = np.stack([tone[start : start + chunk]] * 2)
            aframe = av.AudioFrame.from_ndarray(part, format="fltp", layout="stereo")
            aframe.sample_rate = 48000
            aframe.pts = start
            for p in audio.encode(aframe):
                out.mux(p)
        for stream in (video, audio):
            for p in stream.encode(None):
                out.mux(p)
    tmp.replace(path)
    return path.resolve()


async def _detector_token(database_url: str) -> str:
    """A fresh token for the demo station (registered once, token rotated each run)."""
    engine = make_engine(database_url, pool_size=1)
    try:
        async with make_sessionmaker(engine)() as session, session.begin():
            return (await rotate_token(session, DEMO_DETECTOR, "demo station")).token
    finally:
        await engine.dispose()


def prepare(settings: Settings, jumps: int) -> Demo:
    """Write the demo card (once) and the detector that watches it."""
    from agents.demo_card import load_demo_card, write_demo_card

    cards = settings.data_dir / "demo" / "cards"
    card = cards / "CARD-DEMO"
    if (card / "DCIM").exists():
        expected = len(load_demo_card(card).readable_jumps)
        print(f"demo card {card} exists: reusing it", flush=True)
    else:
        print(
            f"writing a demo SD card with {jumps} jumps (each with its telemetry) to {card} ...",
            flush=True,
        )
        expected = len(write_demo_card(card, jumps).readable_jumps)
    token = asyncio.run(_detector_token(settings.database_url))
    host = "127.0.0.1" if settings.hub_host in ("0.0.0.0", "::", "") else settings.hub_host
    argv = (
        sys.executable,
        "-m",
        "detector",
        "--hub",
        f"ws://{host}:{settings.hub_port}/ws/detector",
        f"--token={token}",
        "--share",
        str(settings.share_root),
        "--watch",
        str(cards),
    )
    return Demo(cards, card, expected, ChildSpec("detector", argv))


async def read_progress(database_url: str) -> RunProgress:
    engine = make_engine(database_url, pool_size=1)
    try:
        async with asyncio.timeout(5), engine.connect() as conn:
            return await run_progress(conn)
    finally:
        await engine.dispose()


def service_note(settings: Settings, down: dict[str, str]) -> str:
    """`` | down: broker (restarting, attempt 2) | share low on space: 1.2 GB free`` or ''."""
    from streams.service_state import free_space

    parts = [f"{label} down: {note}" for label, note in sorted(down.items())]
    for name, path in (("share", settings.share_root), ("output", settings.output_dir)):
        space = free_space(path)
        if space is not None and space[0] < settings.low_space_bytes:
            parts.append(f"{name} low on space: {space[0] / 1e9:.1f} GB free")
    return "".join(f" | {p}" for p in parts)


def show_progress(
    settings: Settings,
    demo: Demo,
    stopping: Callable[[], bool],
    poll: Callable[[], None],
    down: Callable[[], dict[str, str]] = dict,
) -> bool:
    """Print progress until every readable demo jump is rendered; False if stopped first.
    ``down``: the services not up and what is being done about it (from the supervisor)."""
    last = ""
    shown = 0.0
    p: RunProgress | None = None
    while not stopping():
        poll()
        try:
            p = asyncio.run(read_progress(settings.database_url))
        except (OSError, TimeoutError, SQLAlchemyError) as exc:
            logger.debug("progress not readable: %s", exc)
        note = service_note(settings, down())
        line = (
            "waiting for the database" if p is None else
            f"files copied {p.files_imported}/{p.files_listed} | jumps rendered "
            f"{p.jumps_rendered}/{demo.expected_jumps}"
            + (f" (rendering {p.rendering:.0%})" if p.rendering else "")
            + (f" | waiting for a booking: {p.jumps_waiting}" if p.jumps_waiting else "")
        ) + note  # fmt: skip
        if line != last or time.monotonic() - shown > 10:
            print(f"[demo] {line}", flush=True)
            last, shown = line, time.monotonic()
        if p is not None and p.jumps_rendered >= demo.expected_jumps:
            print("\nevery jump is rendered:", flush=True)
            for video in p.outputs:
                print(f"  {video}", flush=True)
            if p.jumps_waiting:
                print(
                    f"{p.jumps_waiting} jump(s) wait for a booking (unreadable QR or footage "
                    "before any QR): assign them on the dashboard.",
                    flush=True,
                )
            from streams.stack.demo_delivery import print_summary  # issue 16

            print_summary(settings)
            return True
        time.sleep(1)
    return False
