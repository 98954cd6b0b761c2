"""Rows of the ledger a test starts from (real PostgreSQL): an imported clip with its file on
the share, and a jump session of clips."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from benchmarks._render_media import make_clip
from storage import media


async def add_clip(
    engine: AsyncEngine,
    share_root: Path,
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
) -> int:
    """A file of ``card`` in imported_file (its id), and on the share: really encoded (``seconds``)
    or ``junk_size`` bytes no decoder reads. ``facts``: the row holds a probe's frame size, rate,
    audio and capture time (at ``minute`` past 14:00 on 2026-05-01); ``imported_s_ago``: when it
    was imported (else never)."""
    stored = f"{card}/{name}"
    path = share_root / stored
    path.parent.mkdir(parents=True, exist_ok=True)
    if seconds is None:
        path.write_bytes(b"\x00" * junk_size)
    else:
        make_clip(path, seconds=seconds, width=320, height=180)
    created = datetime(2026, 5, 1, 14, minute, tzinfo=UTC)
    async with engine.begin() as conn:
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
    engine: AsyncEngine, card: str, key: str, file_ids: list[int], booking_id: str, passenger: str
) -> None:
    """A decoded jump session of ``booking_id`` for ``passenger`` over ``file_ids``."""
    async with engine.begin() as conn:
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
