"""Bad frames on /ws/detector: a clear close code and error, a log line, nothing written, the
other detector unaffected and the hub still serving. Bad *entries* of a valid list: refused one
by one, the rest of the list passed on."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging

import asyncpg
import httpx
import pytest
from hub_case import HubCase, hub_case
from hub_harness import (
    close_code,
    file_list,
    hub_log_lines,
    hub_settings,
    new_detector,
    open_detector,
    recv_hub,
    running_hub,
    topic_values,
)
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from support import wait_for
from websockets.exceptions import ConnectionClosed

from agents.ingest import IngestDeps, handle_detector_event
from detector import protocol
from streams.settings import Settings
from streams.topics import Names

__all__ = ["hub_case", "hub_settings"]


def _list_with(path: str) -> str:
    files = [
        {"path": "DCIM/100GOPRO/GX010001.MP4", "size": 1, "mtime": 1.0},
        {"path": path, "size": 2, "mtime": 2.0},
    ]
    return json.dumps({"v": 1, "type": "file_list", "card_id": "CARD-X", "files": files})


def _huge_list(n: int) -> str:
    files = [{"path": f"DCIM/100GOPRO/GX{i:06d}.MP4", "size": i, "mtime": 1.0} for i in range(n)]
    return json.dumps({"v": 1, "type": "file_list", "card_id": "CARD-X", "files": files})


def _copied(*, hash_: str, algo: str) -> str:
    """A copy_result frame that claims a copy with this hash."""
    result = {
        "v": 1,
        "type": "copy_result",
        "request_id": "f1",
        "status": "copied",
        "destination": "cards/C/00000001_A.MP4",
        "size": 1,
        "hash": hash_,
        "hash_algo": algo,
    }
    return json.dumps(result)


BAD_FRAMES: dict[str, tuple[str | bytes, int, str]] = {
    # name: (frame, close code, words in the error reason)
    "malformed-json": ('{"v": 1, "type": "file_list", ', 1003, "not valid JSON"),
    "not-utf8-binary": (b"\xff\xfe\x00garbage", 1003, "not valid JSON"),
    "wrong-schema": (
        json.dumps(
            {
                "v": 1,
                "type": "file_list",
                "card_id": "CARD-X",
                "files": [{"path": "A.MP4", "size": "big", "mtime": 1}],
            }
        ),
        1003,
        "files.0.size",
    ),
    "extra-field": (
        json.dumps({"v": 1, "type": "card_removed", "card_id": "C", "detector_id": "other"}),
        1003,
        "detector_id",
    ),
    "wrong-version": (
        json.dumps({"v": 2, "type": "card_removed", "card_id": "C"}),
        1003,
        "unsupported protocol version",
    ),
    "unknown-type": (
        json.dumps({"v": 1, "type": "format_card", "card_id": "C"}),
        1003,
        "unknown message type",
    ),
    # (unsafe paths are refused entry by entry since issue 11: see BAD_ENTRIES)
    "list-over-limit": (_huge_list(100_000), 1003, "the limit is 20000"),
    "surrogate-in-label": (
        json.dumps({"v": 1, "type": "card_inserted", "card_id": "C", "label": "TM\udcff"}),
        1003,
        "not valid Unicode",
    ),
    "free-over-capacity": (
        json.dumps(
            {
                "v": 1,
                "type": "file_list",
                "card_id": "C",
                "files": [],
                "free_bytes": 10,
                "capacity_bytes": 5,
            }
        ),
        1003,
        "free_bytes exceeds capacity_bytes",
    ),
    "negative-free": (
        json.dumps(
            {
                "v": 1,
                "type": "file_list",
                "card_id": "C",
                "files": [],
                "free_bytes": -1,
                "capacity_bytes": 5,
            }
        ),
        1003,
        "free_bytes",
    ),
    # red-team D11: a NUL in the label is refused at the edge, before anything is produced
    "nul-in-label": (
        json.dumps({"v": 1, "type": "card_inserted", "card_id": "C", "label": "SD\u0000CARD"}),
        1003,
        "label",
    ),
    # red-team D12: deep nesting is a refusal with a reason, not 1011 and a traceback
    "deep-json": ("[" * 100_000 + "]" * 100_000, 1003, "nests too deeply"),
    # red-team (lax types): strict wire types, no coercion of 1.0, true or "100"
    "version-as-float": (
        json.dumps({"v": 1.0, "type": "card_removed", "card_id": "C"}),
        1003,
        "unsupported protocol version 1.0",
    ),
    "version-as-bool": (
        json.dumps({"v": True, "type": "card_removed", "card_id": "C"}),
        1003,
        "unsupported protocol version True",
    ),
    "size-as-string": (
        json.dumps(
            {
                "v": 1,
                "type": "file_list",
                "card_id": "C",
                "files": [{"path": "DCIM/100GOPRO/GX010001.MP4", "size": "100", "mtime": 1.0}],
            }
        ),
        1003,
        "files.0.size",
    ),
    # red-team D8: a copy counts only with its xxh3-128 hash ('0' was stored before)
    "copied-with-a-made-up-hash": (
        _copied(hash_="0", algo="xxh3_128"),
        1003,
        "hash of 32 hex digits",
    ),
    "copied-with-another-algorithm": (
        _copied(hash_="ab" * 32, algo="sha256"),
        1003,
        "hash_algo",
    ),
    "bad-skipped-entry": (
        json.dumps(
            {
                "v": 1,
                "type": "file_list",
                "card_id": "C",
                "files": [],
                "skipped": [{"path": "a\u0007b", "reason": "x"}],
            }
        ),
        1003,
        "skipped.0.path",
    ),
}


async def _run_bad_frame(
    frame: str | bytes,
    settings: Settings,
    names: Names,
    sessions: async_sessionmaker[AsyncSession],
    pg: asyncpg.Connection,
) -> tuple[int | None, list[str]]:
    """Send ``frame`` from station-a while station-b is connected; check the aftermath."""
    token_a = await new_detector(sessions, "station-a")
    token_b = await new_detector(sessions, "station-b")
    async with running_hub(settings) as hub, open_detector(hub.ws, token_b) as good:
        async with open_detector(hub.ws, token_a) as bad:
            with contextlib.suppress(ConnectionClosed):  # the hub may cut a huge frame short
                await bad.send(frame)
            code, frames = await close_code(bad)
        # Nothing from the bad frame anywhere (the socket is closed: it was all processed).
        assert await topic_values(settings.kafka_url, names.detector_events) == []
        assert await pg.fetchval("SELECT count(*) FROM card") == 0
        # The other detector is unaffected and the hub still serves.
        await good.send(file_list("CARD-B"))

        async def good_event() -> bool:
            return bool(await topic_values(settings.kafka_url, names.detector_events))

        await wait_for(good_event, what="station-b's list")
        async with httpx.AsyncClient() as client:
            assert (await client.get(f"{hub.http}/api/health")).status_code == 200
    events = await topic_values(settings.kafka_url, names.detector_events)
    assert [(e["detector_id"], e["card_id"]) for e in events] == [("station-b", "CARD-B")]
    return code, frames


@pytest.mark.parametrize("name", sorted(BAD_FRAMES))
async def test_bad_frame_is_refused_and_nothing_else_is_affected(
    name: str, hub_case: HubCase, pg: asyncpg.Connection, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="streams.hub")
    frame, expected_code, words = BAD_FRAMES[name]
    code, frames = await _run_bad_frame(
        frame, hub_case.settings, hub_case.names, hub_case.sessions, pg
    )
    assert code == expected_code
    assert len(frames) == 1
    error = protocol.parse_hub_message(frames[0])
    assert isinstance(error, protocol.ErrorMessage) and error.code == "bad_frame"
    assert words in error.message
    bad_lines = [line for line in hub_log_lines(caplog.records) if line.startswith("bad frame")]
    assert len(bad_lines) == 1 and "station-a at 127.0.0.1:" in bad_lines[0], bad_lines


async def test_oversized_frame_is_refused_with_1009(
    hub_case: HubCase, pg: asyncpg.Connection, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="streams.hub")
    frame = '{"v": 1, "type": "card_removed", "card_id": "' + "A" * protocol.MAX_FRAME_BYTES
    code, _frames = await _run_bad_frame(
        frame + '"}', hub_case.settings, hub_case.names, hub_case.sessions, pg
    )
    assert code == protocol.CLOSE_TOO_BIG
    bad_lines = [line for line in hub_log_lines(caplog.records) if line.startswith("bad frame")]
    assert len(bad_lines) == 1 and "station-a" in bad_lines[0], bad_lines


async def test_a_list_at_the_limit_is_accepted_whole(hub_case: HubCase) -> None:
    """20,000 entries (~2 MB of JSON) is one frame and one record, larger than Kafka's 1 MB
    default request size."""
    token = await new_detector(hub_case.sessions, "station-a")
    limit = hub_case.settings.max_files_per_list
    async with running_hub(hub_case.settings) as hub, open_detector(hub.ws, token) as ws:
        await ws.send(_huge_list(limit))

        await wait_for(
            lambda: topic_values(hub_case.settings.kafka_url, hub_case.names.detector_events),
            what="the full list's event",
        )
    events = await topic_values(hub_case.settings.kafka_url, hub_case.names.detector_events)
    assert len(events) == 1
    files = events[0]["files"]
    assert isinstance(files, list) and len(files) == limit


BAD_ENTRIES: dict[str, tuple[str, str]] = {
    # name: (the bad entry's path, words in the reason)
    "dotdot-path": ("DCIM/../../etc/passwd.MP4", "'..' segment"),
    "absolute-path": ("/etc/passwd", "relative to the card root"),
    "drive-path": ("C:/Windows/win.ini", "relative to the card root"),
    "nul-path": ("DCIM/GX01\x00.MP4", "NUL"),
    "control-char-path": ("DCIM/GX01\x1b[2J.MP4", "control characters"),
    # red-team D10: refused alone, the rest of the list kept (station beside: test_red_team_rows)
    "lone-surrogate-path": ("DCIM/100GOPRO/GX01\udcff01.MP4", "not valid Unicode"),
}


async def _noop_send(key: bytes, value: bytes) -> None:
    return None


@pytest.mark.parametrize("name", sorted(BAD_ENTRIES))
async def test_an_unsafe_entry_is_refused_alone_and_the_rest_of_its_list_passes(
    name: str, hub_case: HubCase, pg: asyncpg.Connection, caplog: pytest.LogCaptureFixture
) -> None:
    """Regression (issue 11): one unsafe entry got error + 1003 and the whole list was lost."""
    caplog.set_level(logging.INFO, logger="streams.hub")
    bad_path, words = BAD_ENTRIES[name]
    token = await new_detector(hub_case.sessions, "station-a")
    async with running_hub(hub_case.settings) as hub, open_detector(hub.ws, token) as ws:
        await ws.send(_list_with(bad_path))  # json.dumps escapes NUL and the lone surrogate
        refused = await recv_hub(ws)
        assert isinstance(refused, protocol.FilesRefused) and refused.card_id == "CARD-X"
        [entry] = refused.files
        assert entry.path == protocol.printable(bad_path) and words in entry.reason
        assert refused.more == 0

        await wait_for(
            lambda: topic_values(hub_case.settings.kafka_url, hub_case.names.detector_events),
            what="the list's good entries",
        )
        await asyncio.wait_for(await ws.ping(), 5)  # the socket stays open
    [event] = await topic_values(hub_case.settings.kafka_url, hub_case.names.detector_events)
    files = event["files"]
    assert isinstance(files, list)
    assert [f["path"] for f in files] == ["DCIM/100GOPRO/GX010001.MP4"]
    skipped = json.loads(await pg.fetchval("SELECT skipped FROM card WHERE id = 'CARD-X'"))
    assert skipped == [{"path": protocol.printable(bad_path), "reason": entry.reason}]
    # the ingest handler on the record the hub produced: only the good entry reaches the ledger
    deps = IngestDeps(hub_case.settings, hub_case.db, _noop_send)
    await handle_detector_event(deps, json.dumps(event).encode())
    paths = [r["path"] for r in await pg.fetch("SELECT path FROM imported_file")]
    assert paths == ["DCIM/100GOPRO/GX010001.MP4"]
    lines = [line for line in hub_log_lines(caplog.records) if "refused" in line]
    assert len(lines) == 1 and "station-a at 127.0.0.1:" in lines[0], lines
    assert not [line for line in hub_log_lines(caplog.records) if line.startswith("bad frame")]
