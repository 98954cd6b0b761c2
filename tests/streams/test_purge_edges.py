"""The purge's edges, on real PostgreSQL and files (agents/purge.py, storage/purge.py): a file
that cannot be deleted is an error with its path and what to do while the rest goes on; a path
outside the output and share folders is never touched; a purged ledger row still counts as
imported; a purge of an unknown booking is refused; a second purge records "nothing left"."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from support import Proc, settings_env, wait_for

from agents.purge import BookingNotFound, purge_booking
from agents.retention import PurgeReason
from storage import imports
from storage.enums import FileKind
from streams.settings import Settings

CARD = "CARD-X"
BOOKING = "BK-77"
NAME = "Ingrid Bergman-Lindqvist"


@pytest.fixture
def immutable() -> Iterator[list[Path]]:
    """Files made undeletable (chattr +i: even root cannot remove them); released at the end."""
    if shutil.which("chattr") is None:
        pytest.skip("chattr is not installed")
    held: list[Path] = []
    yield held
    for p in held:
        subprocess.run(["chattr", "-i", str(p)], check=False)


def hold(held: list[Path], path: Path) -> None:
    done = subprocess.run(["chattr", "+i", str(path)], capture_output=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"this filesystem has no immutable files: {done.stderr!r}")
    held.append(path)


def release(path: Path) -> None:
    subprocess.run(["chattr", "-i", str(path)], check=True)


async def a_booking(engine: AsyncEngine, s: Settings, outside: Path) -> dict[str, object]:
    """A card's listing recorded and imported, a jump session of it, its execution's render and
    publish outputs with their files (one naming a file outside both roots)."""
    listed = imports.classify_listing(
        [
            (f"DCIM/100GOPRO/GX01000{i}.MP4", 10_000 + i, 1_700_000_000.0 + i, "video")
            for i in (1, 2)
        ],
        1000,
    )
    async with engine.begin() as conn:
        rows = await imports.record_listing(conn, CARD, "station", listed)
        copies = []
        for r in rows:
            dest = imports.destination_for(CARD, r.file_id, r.name)
            (s.share_root / dest).parent.mkdir(parents=True, exist_ok=True)
            (s.share_root / dest).write_bytes(b"x" * r.size)
            await imports.record_imported(conn, r.file_id, dest, f"h{r.file_id}", "sha256")
            copies.append(s.share_root / dest)
        name = f"{BOOKING}_Ingrid-Bergman-Lindqvist_20261201-1000_abcdef"
        folder = s.output_dir / name
        folder.mkdir(parents=True)
        video, poster = folder / f"{name}.mp4", folder / f"{name}.jpg"
        video.write_bytes(b"v" * 500)
        poster.write_bytes(b"p" * 50)
        eid = await conn.scalar(
            text(
                "INSERT INTO pipeline_execution (key, pipeline, subject_type, subject_id, status, "
                "context) VALUES ('jump:s1', 'jump', 'session', 's1', 'succeeded', "
                "CAST(:c AS jsonb)) RETURNING id"
            ),
            {"c": json.dumps({"booking_id": BOOKING, "passenger": NAME})},
        )
        output = {"video": str(video), "poster": str(poster), "elsewhere": str(outside)}
        await conn.execute(
            text(
                "INSERT INTO pipeline_step (execution_id, name, kind, status, output, finished_at) "
                "VALUES (:e, 'publish', 'publish', 'succeeded', CAST(:o AS jsonb), now())"
            ),
            {"e": eid, "o": json.dumps(output)},
        )
        await conn.execute(
            text(
                "INSERT INTO jump_session (key, card_id, status, booking_id, passenger, file_ids, "
                "execution_id, output_name) VALUES ('s1', :c, 'assigned', :b, :p, "
                "CAST(:f AS text[]), :e, :n)"
            ),
            {
                "c": CARD,
                "b": BOOKING,
                "p": NAME,
                "f": [str(r.file_id) for r in rows],
                "e": eid,
                "n": name,
            },
        )
    return {"video": video, "poster": poster, "copies": copies, "listed": listed, "eid": eid}


async def test_an_undeletable_file_is_an_error_and_the_rest_goes_on(
    settings: Settings,
    clean_db: AsyncEngine,
    pg: asyncpg.Connection,
    tmp_path: Path,
    immutable: list[Path],
) -> None:
    outside = tmp_path / "not-ours.txt"
    outside.write_text("keep me")
    made = await a_booking(clean_db, settings, outside)
    video, poster = made["video"], made["poster"]
    assert isinstance(video, Path) and isinstance(poster, Path)
    hold(immutable, video)
    outbox = settings.data_dir / "outbox"
    outbox.mkdir(parents=True, exist_ok=True)
    ours, theirs = outbox / f"{BOOKING}-1.eml", outbox / f"{BOOKING}7-1.eml"
    ours.write_text("Subject: your video\n")
    theirs.write_text(f"Subject: booking {BOOKING}7\n")  # BK-777 is another booking

    first = await purge_booking(clean_db, settings, BOOKING, PurgeReason.REQUEST, "test")
    assert [e["path"] for e in first.errors] == [str(video)], first.errors
    assert "delete it by hand" in first.errors[0]["action"]
    assert f"skyreel purge --booking {BOOKING}" in first.errors[0]["action"]
    assert video.exists() and not poster.exists()
    assert not [p for p in made["copies"] if p.exists()]  # type: ignore[attr-defined]
    assert outside.read_text() == "keep me" and first.what["outside_roots_kept"] == 1
    assert not ours.exists() and theirs.exists() and first.what["outbox_deleted"] == 1
    assert first.what["links_revoked"] == 0 and first.what["rows_anonymised"] > 0
    stored = await pg.fetchrow("SELECT errors FROM purge_record WHERE id = $1", first.record_id)
    assert json.loads(stored["errors"])[0]["path"] == str(video)
    assert await pg.fetchval("SELECT passenger FROM jump_session WHERE key = 's1'") is None
    ctx = await pg.fetchval("SELECT context FROM pipeline_execution WHERE id = $1", made["eid"])
    assert NAME not in ctx and "[purged]" in ctx

    # the file released, the purge again deletes what was left
    release(video)
    second = await purge_booking(clean_db, settings, BOOKING, PurgeReason.REQUEST, "test")
    assert second.errors == [] and not video.exists() and not video.parent.exists()
    assert second.what["earlier_errors_resolved"] == 1
    # the first record's error is resolved by the second, and names the file no longer
    earlier = json.loads(
        await pg.fetchval("SELECT errors FROM purge_record WHERE id = $1", first.record_id)
    )
    assert earlier[0]["resolved_by"] == str(second.record_id)
    assert "Ingrid" not in json.dumps(earlier)
    # the output names were rewritten in the rows (the slug is gone): the folder goes by its
    # own output name, which was rewritten too; either way nothing of it is left
    third = await purge_booking(clean_db, settings, BOOKING, PurgeReason.REQUEST, "test")
    assert third.nothing_left and third.errors == []
    assert await pg.fetchval("SELECT count(*) FROM purge_record") == 3


async def test_a_purged_copy_still_counts_as_imported(
    settings: Settings, clean_db: AsyncEngine, pg: asyncpg.Connection, tmp_path: Path
) -> None:
    made = await a_booking(clean_db, settings, tmp_path / "none")
    await purge_booking(clean_db, settings, BOOKING, PurgeReason.RETENTION_MEDIA, "retention")
    rows = await pg.fetch("SELECT status, purged_at, content_hash FROM imported_file")
    assert rows and all(r["status"] == "imported" and r["purged_at"] for r in rows)
    # a media purge keeps the name (the personal period decides that)
    assert await pg.fetchval("SELECT passenger FROM jump_session WHERE key = 's1'") == NAME
    # the same listing again: every file known and imported, nothing to copy
    async with clean_db.begin() as conn:
        diff = await imports.record_listing(conn, CARD, "station", made["listed"])  # type: ignore[arg-type]
        assert all(not r.inserted and r.status == "imported" for r in diff)
        assert imports.plan_copies(CARD, diff) == []
        assert await imports.mark_requested(conn, "station", [r.file_id for r in diff]) == {}
    assert await pg.fetchval("SELECT sum(request_count) FROM imported_file") == 0
    assert all(r.kind == FileKind.FOOTAGE for r in made["listed"])  # type: ignore[attr-defined]


async def test_an_unknown_booking_is_refused(settings: Settings, clean_db: AsyncEngine) -> None:
    with pytest.raises(BookingNotFound):
        await purge_booking(clean_db, settings, "NOPE", PurgeReason.REQUEST, "test")


@pytest.mark.slow
async def test_the_worker_applies_the_retention_rules_on_its_own(
    settings: Settings,
    clean_db: AsyncEngine,
    pg: asyncpg.Connection,
    tmp_path: Path,
    spawn: Callable[..., Proc],
) -> None:
    """The scheduled purge is a worker task: a booking delivered 31 days ago loses its media (not
    its name); one recorded 91 days ago loses everything; one delivered yesterday keeps all."""
    made = await a_booking(clean_db, settings, tmp_path / "none")
    await pg.execute("UPDATE pipeline_step SET finished_at = now() - interval '31 days'")
    # a second booking, delivered yesterday: nothing of it is due
    await pg.execute(
        "INSERT INTO jump_session (key, card_id, status, booking_id, passenger, created_at) "
        "VALUES ('s2', $1, 'assigned', 'BK-NEW', 'Kept Person', now() - interval '1 day')",
        CARD,
    )
    s = settings.model_copy(update={"retention_check_interval_s": 1.0})
    worker = spawn("streams.cli", "worker", env=settings_env(s), name="worker")

    async def recorded(reason: str) -> bool:
        return bool(
            await pg.fetchval(
                "SELECT count(*) FROM purge_record WHERE booking_id = $1 AND reason = $2",
                BOOKING,
                reason,
            )
        )

    try:
        await wait_for(lambda: recorded("retention-media"), timeout=90, what="media purged")
        assert not made["video"].exists()  # type: ignore[attr-defined]
        assert await pg.fetchval("SELECT passenger FROM jump_session WHERE key = 's1'") == NAME
        await pg.execute(
            "UPDATE jump_session SET created_at = now() - interval '91 days' WHERE key = 's1'"
        )
        await wait_for(lambda: recorded("retention-personal"), timeout=30, what="name purged")
    except AssertionError:
        print(worker.output()[-4000:])
        raise
    assert await pg.fetchval("SELECT passenger FROM jump_session WHERE key = 's1'") is None
    assert await pg.fetchval("SELECT passenger FROM jump_session WHERE key = 's2'") == "Kept Person"
    assert await pg.fetchval("SELECT count(*) FROM purge_record WHERE booking_id = 'BK-NEW'") == 0
    who = await pg.fetch("SELECT DISTINCT requested_by FROM purge_record")
    assert [r["requested_by"] for r in who] == ["retention"]
