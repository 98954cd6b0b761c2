"""Copy results in the ledger: verified before imported, redeliveries re-tell waiting steps."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine

from agents.ingest import IngestDeps, handle_copy_result
from storage import imports
from storage.imports import CopyOutcome, ListedFile
from streams import records
from streams.settings import Settings


async def _file(engine: AsyncEngine, size: int) -> int:
    f = ListedFile("GX010001.MP4", "DCIM/100GOPRO/GX010001.MP4", size, 1_000, "footage")
    async with engine.begin() as conn:
        (row,) = await imports.record_listing(conn, "card-1", "det-1", [f])
        await imports.mark_requested(conn, "det-1", [row.file_id])
    return row.file_id


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


async def _noop(key: bytes, value: bytes) -> None:
    return None


async def test_copy_is_imported_once_verified_and_redeliveries_tell_again(
    settings: Settings, clean_db: AsyncEngine
) -> None:
    told: list[CopyOutcome] = []

    async def tell(outcome: CopyOutcome) -> None:
        told.append(outcome)

    deps = IngestDeps(settings, clean_db, _noop, on_copy_outcome=tell)
    file_id = await _file(clean_db, 5)
    dest = imports.destination_for("card-1", file_id, "GX010001.MP4")
    # nothing at the share yet: the detector's word is not enough
    first = await handle_copy_result(deps, _result(file_id, dest, 5))
    assert first.status == "failed" and "size None" in first.reason
    path = Path(settings.share_root) / dest
    path.parent.mkdir(parents=True)
    path.write_bytes(b"12345")
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
    deps = IngestDeps(settings, clean_db, _noop)
    file_id = await _file(clean_db, 5)
    dest = imports.destination_for("card-1", file_id, "GX010001.MP4")
    out = await handle_copy_result(deps, _result(file_id, "cards/elsewhere.MP4", 5))
    assert out.status == "failed" and "expected" in out.reason
    out = await handle_copy_result(deps, _result(file_id, dest, 6))
    assert out.status == "failed" and "6 reported" in out.reason
