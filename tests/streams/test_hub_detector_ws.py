"""/ws/detector over a real uvicorn server: auth, records produced, copy requests delivered."""

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
    detector_socket,
    file_list,
    hub_log_lines,
    hub_settings,
    new_detector,
    open_detector,
    produce,
    recv_hub,
    running_hub,
    topic_values,
)
from hypothesis import given
from hypothesis import strategies as st
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from support import copy_request, wait_for
from websockets.exceptions import ConnectionClosed

from agents.ingest import IngestDeps, handle_copy_result, handle_detector_event
from detector import protocol
from storage.detectors import revoke
from streams import records
from streams.hub.detector_sockets import ProgressBoard, close_reason
from streams.hub.detector_ws import copy_request_id, parse_copy_request_id
from streams.settings import Settings
from streams.stack.services import free_port

__all__ = ["hub_case", "hub_settings"]


def test_request_ids_round_trip_and_foreign_ids_are_refused() -> None:
    assert parse_copy_request_id(copy_request_id(42)) == 42
    for bad in ("42", "f", "f0", "f-1", "g42", "f42x", "f" + "9" * 19):
        assert parse_copy_request_id(bad) is None


@pytest.mark.parametrize("how", ["missing", "wrong", "revoked", "query-wrong"])
async def test_bad_token_is_refused_with_1008_and_nothing_written(
    how: str, hub_case: HubCase, pg: asyncpg.Connection, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="streams.hub")
    token = await new_detector(hub_case.sessions, "station-1")
    if how == "revoked":
        async with hub_case.sessions() as session, session.begin():
            assert await revoke(session, "station-1")
    sent = {"missing": None, "wrong": "not-the-token", "revoked": token}.get(how)
    async with running_hub(hub_case.settings) as hub:
        url = f"{hub.ws}?token=nope" if how == "query-wrong" else hub.ws
        async with detector_socket(url, sent) as ws:
            with contextlib.suppress(ConnectionClosed):  # the hub may have closed already
                await ws.send(file_list("CARD-1"))
            code, frames = await close_code(ws)
        assert code == protocol.CLOSE_POLICY
        assert frames == []  # no welcome, nothing processed
        async with httpx.AsyncClient() as client:
            assert (await client.get(f"{hub.http}/api/health")).status_code == 200
    lines = hub_log_lines(caplog.records)
    refusals = [line for line in lines if line.startswith("refused detector connection from")]
    assert len(refusals) == 1, lines
    assert "127.0.0.1:" in refusals[0]
    assert token not in caplog.text
    assert await topic_values(hub_case.settings.kafka_url, hub_case.names.detector_events) == []
    assert await pg.fetchval("SELECT count(*) FROM card") == 0
    assert await pg.fetchval("SELECT last_seen_at FROM detector") is None


async def test_file_list_becomes_one_detector_event_with_the_token_s_detector_id(
    hub_case: HubCase, pg: asyncpg.Connection, redis_url: str
) -> None:
    token = await new_detector(hub_case.sessions, "station-1")
    redis = Redis.from_url(redis_url)
    presence = hub_case.names.detector_presence_key("station-1")
    try:
        async with running_hub(hub_case.settings) as hub, detector_socket(hub.ws, token) as ws:
            welcome = await recv_hub(ws)
            assert welcome == protocol.Welcome(
                detector_id="station-1", max_files_per_list=hub_case.settings.max_files_per_list
            )
            held = await redis.get(presence)
            assert held is not None and json.loads(held)["hub"] == hub_case.settings.hub_id
            await ws.send(file_list("CARD-1", 4))

            await wait_for(
                lambda: topic_values(hub_case.settings.kafka_url, hub_case.names.detector_events),
                what="the detector event",
            )
            await wait_for(
                lambda: pg.fetchval("SELECT count(*) FROM card WHERE id = 'CARD-1'"),
                what="the card row",
            )
        events = await topic_values(hub_case.settings.kafka_url, hub_case.names.detector_events)
        assert len(events) == 1
        event = records.DetectorEvent.model_validate(
            {k: v for k, v in events[0].items() if k != "__faust"}
        )
        assert event.detector_id == "station-1"
        assert event.event == "file_list"
        assert event.card_id == "CARD-1"
        paths = [f["path"] for f in event.files or []]
        assert paths == [f"DCIM/100GOPRO/GX01{i:04d}.MP4" for i in range(4)]
        card = await pg.fetchrow("SELECT detector_id, present FROM card WHERE id = 'CARD-1'")
        assert tuple(card) == ("station-1", True)
        det = await pg.fetchrow("SELECT last_seen_at, current_card_id FROM detector")
        assert det["last_seen_at"] is not None and det["current_card_id"] == "CARD-1"
        assert await redis.exists(presence) == 0  # cleared when the detector left
    finally:
        await redis.aclose()


async def test_card_removed_marks_the_card_absent(
    hub_case: HubCase, pg: asyncpg.Connection
) -> None:
    token = await new_detector(hub_case.sessions, "station-1")
    async with running_hub(hub_case.settings) as hub, open_detector(hub.ws, token) as ws:
        await ws.send(json.dumps({"v": 1, "type": "card_inserted", "card_id": "C9", "label": "TM"}))
        await ws.send(json.dumps({"v": 1, "type": "card_removed", "card_id": "C9"}))

        async def two_events() -> bool:
            got = await topic_values(hub_case.settings.kafka_url, hub_case.names.detector_events)
            return len(got) == 2

        await wait_for(two_events, what="two card events")
        await wait_for(
            lambda: pg.fetchval("SELECT NOT present FROM card WHERE id = 'C9'"), what="absent"
        )
    assert await pg.fetchval("SELECT label FROM card WHERE id = 'C9'") == "TM"
    assert await pg.fetchval("SELECT current_card_id FROM detector") is None


async def test_copy_result_and_progress_are_published_and_foreign_ids_refused(
    hub_case: HubCase, pg: asyncpg.Connection
) -> None:
    token = await new_detector(hub_case.sessions, "station-1")
    await pg.execute(  # file 7 asked of station-1 (the ingest worker's part, done by hand)
        "INSERT INTO imported_file (id, card_id, name, path, size, mtime_ms, kind, status, "
        "detector_id) VALUES (7, 'C', 'A.MP4', 'DCIM/A.MP4', 10, 1, 'footage', 'requested', "
        "'station-1')"
    )
    async with running_hub(hub_case.settings) as hub, open_detector(hub.ws, token) as ws:
        sent = await recv_hub(ws)  # pending in PostgreSQL: sent on connect
        assert isinstance(sent, protocol.CopyRequest) and sent.request_id == "f7"
        progress = {
            "v": 1,
            "type": "copy_progress",
            "request_id": "f7",
            "bytes_done": 5,
            "bytes_total": 10,
        }
        await ws.send(json.dumps(progress))
        await ws.send(json.dumps({**progress, "request_id": "not-ours"}))
        error = await recv_hub(ws)
        assert isinstance(error, protocol.ErrorMessage)
        assert (error.code, error.request_id) == ("unknown_request", "not-ours")
        result = {
            "v": 1,
            "type": "copy_result",
            "request_id": "f7",
            "status": "copied",
            "destination": "cards/C/00000007_A.MP4",
            "size": 10,
            "hash": "ab12" * 8,
            "hash_algo": "xxh3_128",
        }
        await ws.send(json.dumps(result))

        await wait_for(
            lambda: topic_values(hub_case.settings.kafka_url, hub_case.names.copy_results),
            what="the copy result",
        )
    results = await topic_values(hub_case.settings.kafka_url, hub_case.names.copy_results)
    assert len(results) == 1
    assert (results[0]["file_id"], results[0]["detector_id"], results[0]["hash"]) == (
        7,
        "station-1",
        "ab12" * 8,
    )
    statuses = await topic_values(hub_case.settings.kafka_url, hub_case.names.status)
    assert [(s["kind"], s["id"]) for s in statuses] == [("file", "7")]


async def test_a_second_connection_of_the_same_detector_replaces_the_first(
    hub_settings: Settings,
    clean_db: AsyncEngine,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    token = await new_detector(sessions, "station-1")
    async with (
        running_hub(hub_settings) as hub,
        open_detector(hub.ws, token) as first,
        open_detector(hub.ws, token) as second,
    ):
        code, _ = await close_code(first)
        assert code == protocol.CLOSE_REPLACED
        await second.send(file_list("CARD-2"))
        await asyncio.wait_for(await second.ping(), 5)  # the newer socket is still open


async def test_copy_requests_reach_only_their_detector_s_socket(hub_case: HubCase) -> None:
    token_a = await new_detector(hub_case.sessions, "station-a")
    token_b = await new_detector(hub_case.sessions, "station-b")
    async with (
        running_hub(hub_case.settings) as hub,
        open_detector(hub.ws, token_a) as ws_a,
        open_detector(hub.ws, token_b) as ws_b,
    ):
        for file_id, detector_id in ((11, "station-a"), (12, "station-b"), (13, "station-a")):
            req = copy_request(file_id, detector_id)
            await produce(
                hub_case.settings.kafka_url,
                hub_case.names.copy_requests,
                detector_id,
                records.encode(req),
            )
        got_a = [await recv_hub(ws_a), await recv_hub(ws_a)]
        got_b = await recv_hub(ws_b)
        assert sorted(m.request_id for m in got_a if isinstance(m, protocol.CopyRequest)) == [
            "f11",
            "f13",
        ]
        assert isinstance(got_b, protocol.CopyRequest) and got_b.request_id == "f12"
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(ws_b.recv(), 0.5)


async def test_reconnect_resends_requests_pending_in_postgres(
    hub_settings: Settings,
    clean_db: AsyncEngine,
    sessions: async_sessionmaker[AsyncSession],
    pg: asyncpg.Connection,
) -> None:
    token = await new_detector(sessions, "station-1")
    rows = [  # (name, size, kind, status, detector)
        ("GX010001.MP4", 900, "footage", "requested", "station-1"),
        ("QR000002.MP4", 10, "qr_candidate", "copying", "station-1"),
        ("GX010003.MP4", 900, "footage", "imported", "station-1"),
        ("GX010004.MP4", 900, "footage", "requested", "station-2"),
        ("GX010005.MP4", 900, "footage", "listed", "station-1"),
    ]
    ids = {}
    for i, (name, size, kind, status, det) in enumerate(rows):
        ids[name] = await pg.fetchval(
            "INSERT INTO imported_file (card_id, name, path, size, mtime_ms, kind, status, "
            "detector_id) VALUES ('CARD-7', $1, 'DCIM/100GOPRO/' || $1, $2, $3, $4, $5, $6) "
            "RETURNING id",
            name,
            size,
            1_700_000_000_000 + i,
            kind,
            status,
            det,
        )
    async with running_hub(hub_settings) as hub:
        for _ in range(2):  # every (re)connection gets them again
            async with open_detector(hub.ws, token) as ws:
                got = [await recv_hub(ws), await recv_hub(ws)]
                with pytest.raises(TimeoutError):
                    await asyncio.wait_for(ws.recv(), 0.5)
            assert all(isinstance(m, protocol.CopyRequest) for m in got)
            reqs = [m for m in got if isinstance(m, protocol.CopyRequest)]
            assert [m.request_id for m in reqs] == [
                copy_request_id(ids["QR000002.MP4"]),
                copy_request_id(ids["GX010001.MP4"]),
            ]
            assert [m.priority for m in reqs] == [0, 10]
            assert reqs[0].path == "DCIM/100GOPRO/QR000002.MP4"
            assert reqs[0].destination.endswith("_QR000002.MP4")


async def test_health_reports_a_down_service_with_503_and_detectors_still_work(
    hub_case: HubCase, caplog: pytest.LogCaptureFixture
) -> None:
    """Redis down: health says so (503, redis false); lists still reach the topic."""
    dead_redis = f"redis://127.0.0.1:{free_port()}/0"
    settings = hub_case.settings.model_copy(update={"redis_url": dead_redis})
    token = await new_detector(hub_case.sessions, "station-1")
    async with running_hub(settings, healthy=False) as hub, httpx.AsyncClient() as client:

        async def forwarding() -> dict[str, object] | None:
            body: dict[str, object] = (await client.get(f"{hub.http}/api/health")).json()
            return body if body.get("copy_requests") else None

        await wait_for(forwarding, what="the copy-request consumer")
        response = await client.get(f"{hub.http}/api/health")
        assert response.status_code == 503
        body = response.json()
        assert (body["db"], body["redis"], body["kafka"], body["status"]) == (
            True,
            False,
            True,
            "degraded",
        )
        async with open_detector(hub.ws, token) as ws:
            await ws.send(file_list("CARD-R"))

            await wait_for(
                lambda: topic_values(settings.kafka_url, hub_case.names.detector_events),
                what="the list despite Redis being down",
            )
    assert "presence of detector station-1 not recorded" in caplog.text


@given(st.text(max_size=400))
def test_close_reasons_always_fit_a_close_frame(reason: str) -> None:
    cut = close_reason(reason)
    assert len(cut.encode()) <= 123
    if len(reason.encode()) <= 123:
        assert cut == reason


def test_progress_is_throttled_but_first_and_last_always_published() -> None:
    board = ProgressBoard(interval=3600)
    assert board.update("d", "f1", 0, 100)
    assert not board.update("d", "f1", 50, 100)
    assert board.entries["d", "f1"].bytes_done == 50  # kept for the status API even when quiet
    assert board.update("d", "f1", 100, 100)
    board.finish("d", "f1")
    assert board.entries == {}


async def test_card_status_follows_the_ledger_until_the_card_is_safe_to_remove(
    hub_case: HubCase, pg: asyncpg.Connection
) -> None:
    """The test plays the ingest worker with its real handlers: no status before the listing
    is recorded (the card would look safe), then one after each recorded copy result."""
    token = await new_detector(hub_case.sessions, "station-1")
    files = [
        {"path": "DCIM/100GOPRO/GX010001.MP4", "size": 5, "mtime": 1.7e9, "kind": "video"},
        {"path": "DCIM/100GOPRO/GX010002.MP4", "size": 6, "mtime": 1.7e9 + 60, "kind": "video"},
    ]
    frame = {"v": 1, "type": "file_list", "card_id": "CARD-S", "files": files}
    requested: list[records.CopyRequest] = []

    async def capture(key: bytes, value: bytes) -> None:
        requested.append(records.decode(records.CopyRequest, value))

    deps = IngestDeps(hub_case.settings, hub_case.db, capture)
    async with running_hub(hub_case.settings) as hub, open_detector(hub.ws, token) as ws:
        await ws.send(json.dumps({**frame, "free_bytes": 5_000, "capacity_bytes": 100_000}))

        async def listed() -> list[dict[str, object]]:
            return await topic_values(hub_case.settings.kafka_url, hub_case.names.detector_events)

        await wait_for(listed, what="the list")
        [event] = await listed()
        with pytest.raises(TimeoutError):  # not recorded yet: nothing to say
            await asyncio.wait_for(ws.recv(), 1.0)
        await handle_detector_event(deps, json.dumps(event).encode())
        status = await recv_hub(ws)
        assert status == protocol.CardStatus(
            card_id="CARD-S",
            outstanding=2,
            failed=0,
            safe_to_remove=False,
            nearly_full=True,
            free_bytes=5_000,
            capacity_bytes=100_000,
        )
        for n, req in enumerate(requested, start=1):
            dest = hub_case.settings.share_root / req.destination
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(b"x" * req.size)
            result = {
                "v": 1,
                "type": "copy_result",
                "request_id": req.request_id,
                "status": "copied",
                "destination": req.destination,
                "size": req.size,
                "hash": "ab12" * 8,
                "hash_algo": "xxh3_128",
            }
            await ws.send(json.dumps(result))

            async def results(n: int = n) -> list[dict[str, object]] | None:
                got = await topic_values(hub_case.settings.kafka_url, hub_case.names.copy_results)
                return got if len(got) == n else None

            await wait_for(results, what=f"copy result {n}")
            got = await results()
            assert got is not None
            await handle_copy_result(deps, json.dumps(got[-1]).encode())
            status = await recv_hub(ws)
            assert isinstance(status, protocol.CardStatus)
            assert (status.outstanding, status.safe_to_remove) == (2 - n, n == 2)
    row = await pg.fetchrow("SELECT free_bytes, capacity_bytes FROM card WHERE id = 'CARD-S'")
    assert tuple(row) == (5_000, 100_000)


async def test_a_list_without_card_facts_leaves_them_unknown(
    hub_case: HubCase, pg: asyncpg.Connection
) -> None:
    """A detector from before card safety sends no free space: the card's is unknown, never
    'nearly full', and its status still follows."""
    token = await new_detector(hub_case.sessions, "station-1")
    async with running_hub(hub_case.settings) as hub, open_detector(hub.ws, token) as ws:
        await ws.send(file_list("CARD-O", 1))

        async def listed() -> list[dict[str, object]]:
            return await topic_values(hub_case.settings.kafka_url, hub_case.names.detector_events)

        await wait_for(listed, what="the list")
        [event] = await listed()
        deps = IngestDeps(hub_case.settings, hub_case.db, _ignore)
        await handle_detector_event(deps, json.dumps(event).encode())
        status = await recv_hub(ws)
        assert isinstance(status, protocol.CardStatus)
        assert (status.outstanding, status.nearly_full, status.free_bytes) == (1, False, None)
    row = await pg.fetchrow("SELECT free_bytes, skipped FROM card WHERE id = 'CARD-O'")
    assert row["free_bytes"] is None and json.loads(row["skipped"]) == []


async def _ignore(key: bytes, value: bytes) -> None:
    return None
