"""A listing through the ingest handlers on the real PostgreSQL: identity by path, bad entries."""

from __future__ import annotations

import uuid
from pathlib import Path

import asyncpg
from sqlalchemy.ext.asyncio import AsyncEngine

from agents.ingest import IngestDeps, handle_copy_result, handle_detector_event
from streams import records
from streams.settings import Settings


def _listing(files: list[dict[str, object]]) -> bytes:
    event = records.DetectorEvent(
        event_id=uuid.uuid4().hex,
        event="file_list",
        detector_id="det-1",
        card_id="card-1",
        files=files,
    )
    return records.encode(event)


class Requests:
    def __init__(self) -> None:
        self.sent: list[records.CopyRequest] = []

    async def __call__(self, key: bytes, value: bytes) -> None:
        self.sent.append(records.decode(records.CopyRequest, value))


async def test_same_clip_name_in_two_folders_is_requested_and_imported_twice(
    settings: Settings, clean_db: AsyncEngine, pg: asyncpg.Connection
) -> None:
    """Regression (issue 11): GX010001.MP4 of 100GOPRO and of 101GOPRO, same size and mtime,
    were one ledger row; the second recording was never copied."""
    paths = ["DCIM/100GOPRO/GX010001.MP4", "DCIM/101GOPRO/GX010001.MP4"]
    files: list[dict[str, object]] = [
        {"path": p, "size": 5, "mtime": 1_700_000_000.0, "kind": "video"} for p in paths
    ]
    requests = Requests()
    deps = IngestDeps(settings, clean_db, requests)
    await handle_detector_event(deps, _listing(files))
    assert sorted(r.path for r in requests.sent) == paths
    assert len({r.file_id for r in requests.sent}) == 2
    assert len({r.destination for r in requests.sent}) == 2
    for i, req in enumerate(requests.sent):
        dest = Path(settings.share_root) / req.destination
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(b"%05d" % i)
        result = records.CopyResult(
            request_id=req.request_id,
            detector_id="det-1",
            file_id=req.file_id,
            status="copied",
            destination=req.destination,
            size=5,
            hash=f"ab{i}",
            hash_algo="xxh3_128",
        )
        outcome = await handle_copy_result(deps, records.encode(result))
        assert outcome.status == "imported", outcome.reason
    rows = await pg.fetch("SELECT path, status FROM imported_file ORDER BY path")
    assert [(r["path"], r["status"]) for r in rows] == [(p, "imported") for p in paths]
    # the same card listed again asks for nothing
    requests.sent.clear()
    await handle_detector_event(deps, _listing(files))
    assert requests.sent == []


async def test_an_invalid_entry_is_left_out_and_the_rest_of_the_list_recorded(
    settings: Settings, clean_db: AsyncEngine, pg: asyncpg.Connection
) -> None:
    files: list[dict[str, object]] = [
        {"path": "DCIM/100GOPRO/GX010001.MP4", "size": 5, "mtime": 1.0, "kind": "video"},
        {"path": "DCIM/../../etc/passwd.MP4", "size": 5, "mtime": 1.0, "kind": "video"},
        {"path": "DCIM/100GOPRO/GX010002.MP4", "size": 6, "mtime": 2.0, "kind": "video"},
    ]
    requests = Requests()
    await handle_detector_event(IngestDeps(settings, clean_db, requests), _listing(files))
    assert sorted(r.path for r in requests.sent) == [
        "DCIM/100GOPRO/GX010001.MP4",
        "DCIM/100GOPRO/GX010002.MP4",
    ]
    assert await pg.fetchval("SELECT count(*) FROM imported_file WHERE path LIKE '%..%'") == 0
