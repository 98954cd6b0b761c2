"""The real station client (detector.client) against the real hub: list in, copies out.

The test plays the ingest agent's part on the topics with its real handler (read the list,
record it, request its videos), so this checks the hub and the detector and how they meet on
the wire and on Kafka; a copy result counts only for a request pending in the ledger.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

from hub_harness import hub_settings, new_detector, produce, running_hub, topic_values
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from support import wait_for

from agents.ingest import IngestDeps, handle_detector_event
from detector.cards import WatchDirVolumes
from detector.client import run_detector
from detector.settings import DetectorSettings
from streams.settings import Settings
from streams.topics import Names

__all__ = ["hub_settings"]


def _write_card(root: Path, files: dict[str, int]) -> dict[str, bytes]:
    out = {}
    for i, (rel, size) in enumerate(files.items()):
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        data = os.urandom(size)
        path.write_bytes(data)
        os.utime(path, (1_700_000_000 + i, 1_700_000_000 + i))
        out[rel] = data
    return out


async def test_real_detector_lists_a_card_and_copies_what_is_requested(
    hub_settings: Settings,
    names: Names,
    clean_db: AsyncEngine,
    sessions: async_sessionmaker[AsyncSession],
    tmp_path: Path,
) -> None:
    token = await new_detector(sessions, "station-1")
    cards = tmp_path / "cards"
    data = _write_card(
        cards / "card1",
        {
            "DCIM/100GOPRO/GX010001.MP4": 30_000,
            "DCIM/100GOPRO/GX010002.MP4": 200_000,
            "DCIM/100GOPRO/GL010002.LRV": 500,
        },
    )
    async with running_hub(hub_settings) as hub:
        settings = DetectorSettings(
            hub_url=hub.ws,
            token=token,
            share_root=hub_settings.share_root,
            poll_interval=0.1,
            reconnect_min=0.05,
            reconnect_max=0.2,
        )
        stop = asyncio.Event()
        station = asyncio.create_task(run_detector(settings, [WatchDirVolumes(cards)], stop))
        try:

            async def listed() -> list[dict[str, object]]:
                events = await topic_values(hub_settings.kafka_url, names.detector_events)
                return [e for e in events if e["event"] == "file_list"]

            await wait_for(listed, what="the detector's file list")
            [event] = await listed()
            assert event["detector_id"] == "station-1"
            files = event["files"]
            assert isinstance(files, list)
            videos = [f for f in files if f["kind"] == "video"]
            assert sorted(f["path"] for f in videos) == sorted(p for p in data if p.endswith("MP4"))

            async def request(key: bytes, value: bytes) -> None:
                await produce(hub_settings.kafka_url, names.copy_requests, key.decode(), value)

            deps = IngestDeps(hub_settings, clean_db, request)
            await handle_detector_event(deps, json.dumps(event).encode())

            async def two_results() -> bool:
                got = await topic_values(hub_settings.kafka_url, names.copy_results)
                return len(got) >= 2

            await wait_for(two_results, timeout=60, what="both copy results")
        finally:
            stop.set()
            assert await asyncio.wait_for(station, 30) == 0
    async with clean_db.connect() as conn:
        rows = (await conn.execute(text("SELECT path, id FROM imported_file"))).all()
    ids: dict[str, int] = {str(path): int(file_id) for path, file_id in rows}
    results = {
        r["file_id"]: r for r in await topic_values(hub_settings.kafka_url, names.copy_results)
    }
    assert set(results) == {ids["DCIM/100GOPRO/GX010001.MP4"], ids["DCIM/100GOPRO/GX010002.MP4"]}
    for rel in ("DCIM/100GOPRO/GX010001.MP4", "DCIM/100GOPRO/GX010002.MP4"):
        result = results[ids[rel]]
        assert (result["status"], result["detector_id"], result["size"]) == (
            "copied",
            "station-1",
            len(data[rel]),
        )
        assert result["hash"]
        copied = hub_settings.share_root / str(result["destination"])
        assert copied.read_bytes() == data[rel]
