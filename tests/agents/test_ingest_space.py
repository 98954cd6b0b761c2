"""A copy that found the share full waits for space: not failed, still pending, re-sent."""

from __future__ import annotations

from typing import Any

from ingest_harness import land, requested_file, send_nothing, telling_deps
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from agents.ingest import IngestDeps, handle_copy_result
from detector.protocol import coded_reason
from storage.copies import pending_copy_requests
from storage.imports import CopyOutcome
from streams import records
from streams.settings import Settings


def _result(file_id: int, **kw: object) -> bytes:
    fields: dict[str, Any] = {
        "request_id": f"f{file_id}",
        "detector_id": "det-1",
        "file_id": file_id,
        "status": "failed",
    }
    fields.update(kw)
    return records.encode(records.CopyResult(**fields))


async def _counter(engine: AsyncEngine, name: str) -> int:
    async with engine.connect() as conn:
        value = await conn.scalar(text("SELECT value FROM counter WHERE name = :n"), {"n": name})
    return int(value or 0)


async def _row(engine: AsyncEngine, file_id: int) -> tuple[str, str]:
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                text("SELECT status, reason FROM imported_file WHERE id = :id"), {"id": file_id}
            )
        ).one()
    return str(row[0]), str(row[1])


async def _failed_copy(
    settings: Settings, engine: AsyncEngine, **result: object
) -> tuple[IngestDeps, int, CopyOutcome]:
    """A requested 5-byte file and what ingest made of a failed copy result for it."""
    deps = IngestDeps(settings, engine, send_nothing)
    file_id = await requested_file(engine, 5)
    return deps, file_id, await handle_copy_result(deps, _result(file_id, **result))


async def test_a_full_share_is_waiting_for_space_not_a_failure(
    settings: Settings, clean_db: AsyncEngine
) -> None:
    deps, told = telling_deps(settings, clean_db)
    file_id = await requested_file(clean_db, 5)
    reason = coded_reason("no_space", "destination full (ENOSPC) writing the share at byte 0")
    out = await handle_copy_result(deps, _result(file_id, reason=reason))
    assert out.status == "waiting"
    status, recorded = await _row(clean_db, file_id)
    assert status == "requested"
    assert recorded == "waiting for space: destination full (ENOSPC) writing the share at byte 0"
    assert await _counter(clean_db, "copies_waiting_space") == 1
    assert await _counter(clean_db, "copies_failed") == 0
    assert told == [], "no copy step hears of an outcome: there is none yet"

    # still pending: the hub re-sends it when the detector connects
    sessions = async_sessionmaker(clean_db, expire_on_commit=False)
    async with sessions() as session:
        pending = await pending_copy_requests(session, "det-1")
    assert [p.file_id for p in pending] == [file_id]

    # space came back: the copy lands and is imported as any other
    dest = land(settings, file_id)
    done = await handle_copy_result(
        deps,
        _result(
            file_id, status="copied", destination=dest, size=5, hash="ab", hash_algo="xxh3_128"
        ),
    )
    assert done.status == "imported"
    assert await _row(clean_db, file_id) == ("imported", "")
    assert [t.status for t in told] == ["imported"]


async def test_an_older_detectors_full_share_waits_too_and_a_late_one_changes_nothing(
    settings: Settings, clean_db: AsyncEngine
) -> None:
    deps, file_id, out = await _failed_copy(
        settings, clean_db, reason="destination full (ENOSPC) writing the share at byte 9"
    )
    assert out.status == "waiting"
    dest = land(settings, file_id)
    await handle_copy_result(
        deps,
        _result(
            file_id, status="copied", destination=dest, size=5, hash="ab", hash_algo="xxh3_128"
        ),
    )
    late = await handle_copy_result(deps, _result(file_id, reason=coded_reason("no_space", "x")))
    assert late.status == "imported"
    assert (await _row(clean_db, file_id))[0] == "imported"


async def test_other_failure_kinds_fail_with_the_plain_reason(
    settings: Settings, clean_db: AsyncEngine
) -> None:
    reason = coded_reason("destination", "destination error (EIO) writing the share at byte 0: x")
    _, file_id, out = await _failed_copy(settings, clean_db, reason=reason)
    assert out.status == "failed"
    assert await _row(clean_db, file_id) == (
        "failed",
        "destination error (EIO) writing the share at byte 0: x",
    )
    assert await _counter(clean_db, "copies_failed") == 1


async def test_the_failure_kind_field_says_no_space(
    settings: Settings, clean_db: AsyncEngine
) -> None:
    _, file_id, out = await _failed_copy(
        settings, clean_db, reason="destination full (EDQUOT)", failure="no_space"
    )
    assert out.status == "waiting"
    assert await _row(clean_db, file_id) == (
        "requested",
        "waiting for space: destination full (EDQUOT)",
    )
