"""Copy results in the ledger: verified before imported, redeliveries re-tell waiting steps."""

from __future__ import annotations

from ingest_harness import land, requested_file, send_nothing, telling_deps
from sqlalchemy.ext.asyncio import AsyncEngine

from agents.ingest import IngestDeps, handle_copy_result
from storage import imports
from streams import records
from streams.settings import Settings


def _result(file_id: int, dest: str, size: int, **kw: object) -> bytes:
    fields: dict[str, object] = {
        "request_id": f"f{file_id}",
        "detector_id": "det-1",
        "file_id": file_id,
        "status": "copied",
        "destination": dest,
        "size": size,
        "hash": "ab12",
        "hash_algo": "xxh3_128",
    }
    fields.update(kw)
    return records.encode(records.CopyResult(**fields))


async def test_copy_is_imported_once_verified_and_redeliveries_tell_again(
    settings: Settings, clean_db: AsyncEngine
) -> None:
    deps, told = telling_deps(settings, clean_db)
    file_id = await requested_file(clean_db, 5)
    dest = imports.destination_for("card-1", file_id, "GX010001.MP4")
    # nothing at the share yet: the detector's word is not enough
    first = await handle_copy_result(deps, _result(file_id, dest, 5))
    assert first.status == "failed" and "size None" in first.reason
    land(settings, file_id)
    # a failed file counts again only once it is asked for again (red-team D7), as the copy
    # step does
    async with clean_db.begin() as conn:
        await imports.mark_requested(conn, "det-1", [file_id])
    ok = await handle_copy_result(deps, _result(file_id, dest, 5))
    assert (ok.status, ok.newly_imported) == ("imported", True)
    again = await handle_copy_result(deps, _result(file_id, dest, 5))
    assert (again.status, again.newly_imported) == ("imported", False)
    late_failure = await handle_copy_result(
        deps, _result(file_id, dest, 5, status="failed", reason="card pulled")
    )
    assert late_failure.status == "imported"  # a late failure never undoes a verified copy
    assert [t.status for t in told] == ["failed", "imported", "imported", "imported"]


async def test_wrong_destination_or_size_is_a_failure_with_a_reason(
    settings: Settings, clean_db: AsyncEngine
) -> None:
    deps = IngestDeps(settings, clean_db, send_nothing)
    file_id = await requested_file(clean_db, 5)
    dest = imports.destination_for("card-1", file_id, "GX010001.MP4")
    out = await handle_copy_result(deps, _result(file_id, "cards/elsewhere.MP4", 5))
    assert out.status == "failed" and "expected" in out.reason
    async with clean_db.begin() as conn:  # asked again, as the copy step does
        await imports.mark_requested(conn, "det-1", [file_id])
    out = await handle_copy_result(deps, _result(file_id, dest, 6))
    assert out.status == "failed" and "6 reported" in out.reason
