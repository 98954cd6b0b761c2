"""What the job tests start from (real PostgreSQL, files, FFmpeg): their settings, rows of the
ledger (an imported clip with its file on the share, a jump session of clips), and a render
request rendered as a render worker does."""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import text

from agents.jobs.context import JobContext
from agents.render.contract import RenderJob
from agents.render.job import RenderOutput, render_session
from agents.render.queue import RenderWorkerConfig, decode_request
from benchmarks._render_media import make_clip
from storage import media
from streams.settings import Settings


def job_settings(tmp_path: Path, database_url: str, **extra: Any) -> Settings:
    """A job test's settings: share (created) and output under ``tmp_path``, small fast renders
    without a title; ``extra`` adds fields."""
    settings = Settings(
        data_dir=tmp_path / "data",
        database_url=database_url,
        share_root=tmp_path / "share",
        output_dir=tmp_path / "output",
        render_width=320,
        render_height=180,
        render_preset="ultrafast",
        branding_title=False,
        **extra,
    )
    settings.share_root.mkdir()
    return settings


async def add_clip(
    jc: JobContext,
    card: str,
    name: str,
    *,
    seconds: float | None,
    minute: int = 0,
    kind: str = "footage",
    status: str = "imported",
    probe_error: str = "",
    junk_size: int = 64,
    facts: bool = True,
    imported_s_ago: float | None = None,
    made: Path | None = None,
) -> int:
    """A file of ``card`` in imported_file (its id), and on the share: really encoded (``seconds``)
    or ``junk_size`` bytes no decoder reads. ``facts``: the row holds a probe's frame size, rate,
    audio and capture time (at ``minute`` past 14:00 on 2026-05-01); ``imported_s_ago``: when it
    was imported (else never); ``made``: a file already written (moved onto the share, its
    duration ``seconds``)."""
    stored = f"{card}/{name}"
    path = jc.settings.share_root / stored
    path.parent.mkdir(parents=True, exist_ok=True)
    if made is not None:
        os.replace(made, path)
    elif seconds is None:
        path.write_bytes(b"\x00" * junk_size)
    else:
        make_clip(path, seconds=seconds, width=320, height=180)
    created = datetime(2026, 5, 1, 14, minute, tzinfo=UTC)
    async with jc.engine.begin() as conn:
        return int(
            await conn.scalar(
                text(
                    "INSERT INTO imported_file (card_id, name, path, size, mtime_ms, kind, status, "
                    "stored_path, content_hash, duration_s, width, height, fps, has_audio, "
                    "creation_time, probe_error, imported_at) VALUES (:c, :n, :p, :s, :m, :k, "
                    ":st, :sp, :h, :d, :w, :hh, :f, :a, :t, :pe, "
                    "now() - make_interval(secs => CAST(:ago AS float))) RETURNING id"
                ),
                {
                    "c": card,
                    "n": name,
                    "p": f"DCIM/100GOPRO/{name}",
                    "s": path.stat().st_size,
                    "m": int(created.timestamp() * 1000),
                    "k": kind,
                    "st": status,
                    "sp": stored if status == "imported" else None,
                    "h": f"hash-of-{name}",
                    "d": seconds,
                    "w": 320 if facts else None,
                    "hh": 180 if facts else None,
                    "f": 30.0 if facts else None,
                    "a": True if facts else None,
                    "t": created if facts else None,
                    "pe": probe_error,
                    "ago": imported_s_ago,
                },
            )
        )


async def add_session(
    jc: JobContext, card: str, key: str, file_ids: list[int], booking_id: str, passenger: str
) -> None:
    """A decoded jump session of ``booking_id`` for ``passenger`` over ``file_ids``."""
    async with jc.engine.begin() as conn:
        await media.upsert_session(
            conn,
            media.SessionRow(
                key=key,
                card_id=card,
                status="decoded",
                booking_id=booking_id,
                passenger=passenger,
                product="video",
                qr_file_id=None,
                file_ids=tuple(file_ids),
                execution_id=None,
                capture_start=None,  # not filled in: the earliest clip's time is used
            ),
        )


async def render_as_a_worker(
    payload: RenderJob | Mapping[str, object], staging: Path, published_root: Path | None = None
) -> RenderOutput:
    """A render request's payload decoded and rendered into ``staging`` as the render worker
    does (without its progress reports and heartbeat)."""
    job = decode_request(payload, RenderWorkerConfig())
    return await render_session(
        job.clips,
        job.branding,
        output=job.output,
        passenger_name=job.passenger_name,
        output_root=staging,
        published_root=published_root,
        cuts=job.cuts,
        music=job.music,
    )
