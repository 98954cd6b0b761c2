"""Copy authority on /ws/detector (issue 14, red-team D6, D7, D9, D22), on the real hub.

Each attack is sent as a hostile station would send it, beside a well-behaved station whose own
work must go on: a copy result counts only from the station its file was asked of while it is
still asked for (D6, D7) — checked by the hub and again by the ingest worker; a card may move to
another station, taking along only the files that station lists, and the move is logged and
shown (D6); progress for made-up requests neither grows memory nor outlives the socket (D9);
a flood of card events is cut off at the station's burst while others are served (D22).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from pathlib import Path
from typing import Any

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
from support import wait_for
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from agents.ingest import IngestDeps, handle_copy_result, handle_detector_event
from detector import protocol
from detector.cards import WatchDirVolumes
from detector.client import run_detector
from detector.settings import DetectorSettings
from storage import imports
from storage.enums import FileKind
from storage.imports import ListedFile
from streams import records
from streams.hub.detector_sockets import MAX_PROGRESS_PER_DETECTOR, ProgressBoard

__all__ = ["hub_case", "hub_settings"]

SIZE = 5


async def _send_nothing(key: bytes, value: bytes) -> None:
    return None


async def _asked(case: HubCase, card_id: str, detector_id: str, *names: str) -> dict[str, int]:
    """Files of ``card_id`` listed by ``detector_id`` and asked of it, as the ingest worker
    records them (a proxy, ``.LRV``, is recorded ``ignored`` and not asked for): name -> id."""
    files = [
        ListedFile(
            n,
            f"DCIM/100GOPRO/{n}",
            SIZE,
            1_000 + i,
            FileKind.PROXY if n.endswith(".LRV") else FileKind.FOOTAGE,
        )
        for i, n in enumerate(names)
    ]
    async with case.db.begin() as conn:
        rows = await imports.record_listing(conn, card_id, detector_id, files)
        asked = [r.file_id for r in rows if r.kind != "proxy"]
        await imports.mark_requested(conn, detector_id, asked)
    return {r.name: r.file_id for r in rows}


def _land(case: HubCase, card_id: str, file_id: int, name: str) -> str:
    """The copy at its destination on the share, as a station leaves it; the destination."""
    dest = imports.destination_for(card_id, file_id, name)
    path = Path(case.settings.share_root) / dest
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * SIZE)
    return dest


def _copied(card_id: str, file_id: int, name: str) -> str:
    """A well-formed copy_result frame claiming the file copied (xxh3-128 hash and all)."""
    frame = {
        "v": 1,
        "type": "copy_result",
        "request_id": f"f{file_id}",
        "status": "copied",
        "destination": imports.destination_for(card_id, file_id, name),
        "size": SIZE,
        "hash": "0123456789abcdef" * 2,
        "hash_algo": "xxh3_128",
    }
    return json.dumps(frame)


def _progress(request_id: str, done: int = 1, total: int = SIZE) -> str:
    frame = {
        "v": 1,
        "type": "copy_progress",
        "request_id": request_id,
        "bytes_done": done,
        "bytes_total": total,
    }
    return json.dumps(frame)


async def _copy_requests(ws: ClientConnection, n: int) -> list[str]:
    """The ``n`` pending requests the hub sends on connect: their ids."""
    ids = []
    for _ in range(n):
        message = await recv_hub(ws)
        assert isinstance(message, protocol.CopyRequest), message
        ids.append(message.request_id)
    return ids


async def _results(case: HubCase, n: int) -> list[dict[str, Any]]:
    async def enough() -> list[dict[str, Any]] | None:
        got = await topic_values(case.settings.kafka_url, case.names.copy_results)
        return got if len(got) >= n else None

    await wait_for(enough, what=f"{n} copy results on the topic")
    got = await enough()
    assert got is not None
    return got


async def _status(pg: asyncpg.Connection, file_id: int) -> tuple[str, str]:
    row = await pg.fetchrow("SELECT status, detector_id FROM imported_file WHERE id = $1", file_id)
    return str(row["status"]), str(row["detector_id"])


async def _counter(pg: asyncpg.Connection, name: str) -> int:
    return int(await pg.fetchval("SELECT value FROM counter WHERE name = $1", name) or 0)


# --- D6 / D7: a copy result counts only from the station asked, for a pending request ------------

FORGED_TARGETS = {
    # name: what station-a (the hostile one) claims it copied
    "another-stations-file": "GX020001.MP4",  # asked of station-b (red-team D6)
    "an-ignored-proxy": "GL010001.LRV",  # station-a's own proxy, `ignored` (red-team D7)
    "an-already-imported-file": "GX010002.MP4",  # station-a's, imported already
}


@pytest.mark.parametrize("target", sorted(FORGED_TARGETS))
async def test_a_forged_copy_result_is_refused_at_the_hub_and_the_asked_station_s_counts(
    target: str, hub_case: HubCase, pg: asyncpg.Connection, caplog: pytest.LogCaptureFixture
) -> None:
    # red-team D6: a detector reported another detector's file as copied and it was imported;
    # red-team D7: a proxy in status `ignored` became `imported` from a forged result
    caplog.set_level(logging.INFO, logger="streams.hub")
    token_a = await new_detector(hub_case.sessions, "station-a")
    token_b = await new_detector(hub_case.sessions, "station-b")
    ids_a = await _asked(hub_case, "CARD-A", "station-a", "GL010001.LRV", "GX010002.MP4")
    ids_b = await _asked(hub_case, "CARD-B", "station-b", "GX020001.MP4")
    async with hub_case.db.begin() as conn:
        await imports.record_imported(conn, ids_a["GX010002.MP4"], "cards/x", "ab" * 16, "xxh3_128")
    card = "CARD-B" if target.startswith("GX02") else "CARD-A"
    forged_id = {**ids_a, **ids_b}[FORGED_TARGETS[target]]
    before = await _status(pg, forged_id)
    own = ids_b["GX020001.MP4"]
    _land(hub_case, "CARD-B", own, "GX020001.MP4")
    async with (
        running_hub(hub_case.settings) as hub,
        open_detector(hub.ws, token_b) as good,
        open_detector(hub.ws, token_a) as bad,
    ):
        assert await _copy_requests(good, 1) == [f"f{own}"]
        await bad.send(_copied(card, forged_id, FORGED_TARGETS[target]))
        refused = await recv_hub(bad)
        assert isinstance(refused, protocol.ErrorMessage)
        assert (refused.code, refused.request_id) == ("not_pending", f"f{forged_id}")
        assert "result not taken" in refused.message
        await good.send(_copied("CARD-B", own, "GX020001.MP4"))  # the asked station's own copy
        [result] = await _results(hub_case, 1)
    assert (result["detector_id"], result["file_id"]) == ("station-b", own)
    deps = IngestDeps(hub_case.settings, hub_case.db, _send_nothing)
    outcome = await handle_copy_result(deps, json.dumps(result).encode())
    assert outcome.status == "imported"
    assert await _status(pg, own) == ("imported", "station-b")
    if forged_id != own:
        assert await _status(pg, forged_id) == before
    lines = [line for line in hub_log_lines(caplog.records) if "refused (not_pending)" in line]
    assert len(lines) == 1 and "station-a at 127.0.0.1:" in lines[0], lines


WORKER_FORGERIES = {
    # name: (file, claimed detector, status) — records on copy-results the hub never produced
    "copied-by-another-station": ("GX020001.MP4", "station-a", "copied"),
    "failed-by-another-station": ("GX020001.MP4", "station-a", "failed"),
    "copied-for-an-ignored-proxy": ("GL010001.LRV", "station-a", "copied"),
    "copied-for-a-file-never-asked-for": ("GX010003.MP4", "station-a", "copied"),
}


@pytest.mark.parametrize("name", sorted(WORKER_FORGERIES))
async def test_the_ingest_worker_refuses_a_forged_record_and_leaves_the_file_as_it_was(
    name: str, hub_case: HubCase, pg: asyncpg.Connection
) -> None:
    # red-team D6/D7, defence in depth: a record on the topic could come from anywhere
    ids = await _asked(hub_case, "CARD-A", "station-a", "GL010001.LRV")
    ids |= await _asked(hub_case, "CARD-B", "station-b", "GX020001.MP4")
    never_asked = ListedFile("GX010003.MP4", "DCIM/GX010003.MP4", SIZE, 1, FileKind.FOOTAGE)
    async with hub_case.db.begin() as conn:
        [row] = await imports.record_listing(conn, "CARD-A", "station-a", [never_asked])
    ids["GX010003.MP4"] = row.file_id
    file_name, claimed, status = WORKER_FORGERIES[name]
    file_id = ids[file_name]
    card = "CARD-B" if file_name.startswith("GX02") else "CARD-A"
    dest = _land(hub_case, card, file_id, file_name)
    before = await _status(pg, file_id)
    forged = records.CopyResult(
        request_id=f"f{file_id}",
        detector_id=claimed,
        file_id=file_id,
        status=status,
        destination=dest,
        size=SIZE,
        hash="0123456789abcdef" * 2 if status == "copied" else "",
        hash_algo="xxh3_128",
        reason="" if status == "copied" else "card pulled",
    )
    told: list[imports.CopyOutcome] = []

    async def tell(outcome: imports.CopyOutcome) -> None:
        told.append(outcome)

    deps = IngestDeps(hub_case.settings, hub_case.db, _send_nothing, on_copy_outcome=tell)
    outcome = await handle_copy_result(deps, records.encode(forged))
    assert outcome.status == "ignored" and outcome.reason.startswith("refused: "), outcome
    assert await _status(pg, file_id) == before  # never imported, never marked failed
    assert await _counter(pg, "copy_results_refused") == 1
    assert await _counter(pg, "copies_failed") == 0
    assert told == []
    # the station asked for GX020001 still gets its copy imported
    own = ids["GX020001.MP4"]
    genuine = records.CopyResult(
        request_id=f"f{own}",
        detector_id="station-b",
        file_id=own,
        status="copied",
        destination=_land(hub_case, "CARD-B", own, "GX020001.MP4"),
        size=SIZE,
        hash="0123456789abcdef" * 2,
        hash_algo="xxh3_128",
    )
    assert (await handle_copy_result(deps, records.encode(genuine))).status == "imported"
    assert await _status(pg, own) == ("imported", "station-b")


# --- D6: a card moves to another station with the files that station lists ----------------------


async def test_a_card_moves_with_only_the_files_the_new_station_lists_and_the_move_shows(
    hub_case: HubCase, pg: asyncpg.Connection, caplog: pytest.LogCaptureFixture
) -> None:
    # red-team D6: a station could re-announce another station's card and take over its copies
    caplog.set_level(logging.INFO)
    token_a = await new_detector(hub_case.sessions, "station-a")
    token_b = await new_detector(hub_case.sessions, "station-b")
    listed: list[records.CopyRequest] = []

    async def capture(key: bytes, value: bytes) -> None:
        listed.append(records.decode(records.CopyRequest, value))

    deps = IngestDeps(hub_case.settings, hub_case.db, capture)
    names = ["GX010001.MP4", "GX010002.MP4"]
    files = [{"path": f"DCIM/{n}", "size": SIZE, "mtime": 1.7e9 + i} for i, n in enumerate(names)]

    def listing(only: int) -> str:
        frame = {"v": 1, "type": "file_list", "card_id": "CARD-M", "files": files[:only]}
        return json.dumps(frame)

    async def ingest_events(n: int) -> None:
        async def enough() -> list[dict[str, Any]] | None:
            got = await topic_values(hub_case.settings.kafka_url, hub_case.names.detector_events)
            lists = [e for e in got if e["event"] == "file_list"]
            return lists if len(lists) >= n else None

        await wait_for(enough, what=f"{n} file lists")
        got = await enough()
        assert got is not None
        await handle_detector_event(deps, json.dumps(got[n - 1]).encode())

    async with running_hub(hub_case.settings) as hub:
        async with open_detector(hub.ws, token_a) as a:
            inserted = {"v": 1, "type": "card_inserted", "card_id": "CARD-M", "label": "M"}
            await a.send(json.dumps(inserted))
            await a.send(listing(2))
            await ingest_events(1)
        ids = {r.path.rsplit("/", 1)[-1]: r.file_id for r in listed}
        # the card is taken out of station-a's reader and put in station-b's, which lists one
        async with open_detector(hub.ws, token_b) as b:
            await b.send(json.dumps(inserted))
            await b.send(listing(1))
            await ingest_events(2)
            async with httpx.AsyncClient() as client:
                card = (await client.get(f"{hub.http}/api/cards/CARD-M")).json()
            async with open_detector(hub.ws, token_a) as a:
                # station-a still has GX010002 to do; GX010001 moved away from it
                assert await _copy_requests(a, 1) == [f"f{ids['GX010002.MP4']}"]
                await a.send(_copied("CARD-M", ids["GX010001.MP4"], "GX010001.MP4"))
                refused = await recv_hub(a)
                assert isinstance(refused, protocol.ErrorMessage) and refused.code == "not_pending"
                # a stale removal from station-a leaves the card where it is
                await a.send(json.dumps({"v": 1, "type": "card_removed", "card_id": "CARD-M"}))
                for name, ws in (("GX010002.MP4", a), ("GX010001.MP4", b)):
                    _land(hub_case, "CARD-M", ids[name], name)
                    await ws.send(_copied("CARD-M", ids[name], name))
                results = await _results(hub_case, 2)
    assert (card["detector_id"], card["previous_detector_id"]) == ("station-b", "station-a")
    assert card["moved_at"] is not None and card["present"] is True
    row = await pg.fetchrow("SELECT detector_id, present FROM card WHERE id = 'CARD-M'")
    assert tuple(row) == ("station-b", True)
    assert await pg.fetchval("SELECT current_card_id FROM detector WHERE id = 'station-a'") is None
    assert {(r["detector_id"], r["file_id"]) for r in results} == {
        ("station-a", ids["GX010002.MP4"]),
        ("station-b", ids["GX010001.MP4"]),
    }
    for r in results:
        assert (await handle_copy_result(deps, json.dumps(r).encode())).status == "imported"
    assert await _status(pg, ids["GX010001.MP4"]) == ("imported", "station-b")
    assert await _status(pg, ids["GX010002.MP4"]) == ("imported", "station-a")
    messages = [r.getMessage() for r in caplog.records]
    moved = [m for m in messages if m.startswith("card CARD-M moved from detector station-a")]
    assert len(moved) == 1 and "to detector station-b" in moved[0], moved
    asked = [m for m in messages if "1 copies asked of detector station-a now asked of" in m]
    assert len(asked) == 1, messages
    assert any("reported card CARD-M removed, but the card is at another" in m for m in messages)


# --- D9: progress only for the station's own requests, bounded, gone at disconnect --------------


async def test_a_progress_flood_for_made_up_requests_is_refused_and_leaves_nothing_behind(
    hub_case: HubCase, caplog: pytest.LogCaptureFixture
) -> None:
    # red-team D9: 410k progress frames for made-up ids grew /api/detectors to 21.5 MB and
    # stayed after the socket closed
    caplog.set_level(logging.INFO, logger="streams.hub")
    token_a = await new_detector(hub_case.sessions, "station-a")
    token_b = await new_detector(hub_case.sessions, "station-b")
    own_a = (await _asked(hub_case, "CARD-A", "station-a", "GX010001.MP4"))["GX010001.MP4"]
    own_b = (await _asked(hub_case, "CARD-B", "station-b", "GX020001.MP4"))["GX020001.MP4"]
    flood = 20_000

    async def detectors(client: httpx.AsyncClient, hub_http: str) -> tuple[int, dict[str, Any]]:
        r = await client.get(f"{hub_http}/api/detectors")
        return len(r.content), {d["id"]: d for d in r.json()["items"]}

    async def status_of(file_id: int) -> bool:
        got = await topic_values(hub_case.settings.kafka_url, hub_case.names.status)
        return any(s["kind"] == "file" and s["id"] == str(file_id) for s in got)

    async with (
        running_hub(hub_case.settings) as hub,
        httpx.AsyncClient() as client,
        open_detector(hub.ws, token_b) as good,
    ):
        assert await _copy_requests(good, 1) == [f"f{own_b}"]
        async with open_detector(hub.ws, token_a) as bad:
            assert await _copy_requests(bad, 1) == [f"f{own_a}"]
            for i in range(flood // 2):
                await bad.send(_progress(f"f{1_000_000 + i}"))  # a request id of no copy
                await bad.send(_progress(f"x{i}"))  # not a request id at all
            await bad.send(_progress(f"f{own_a}", SIZE, SIZE))  # its own copy: taken
            # frames are handled in order: once its own progress is out, the flood was read
            await wait_for(lambda: status_of(own_a), what="station-a's own progress")
            refused = await recv_hub(bad)  # answered once, not 20,000 times
            assert isinstance(refused, protocol.ErrorMessage) and refused.code == "unknown_request"
            with pytest.raises(TimeoutError):
                await recv_hub(bad, timeout=0.5)
            await good.send(_progress(f"f{own_b}"))
            await wait_for(lambda: status_of(own_b), what="station-b's progress")
            size, items = await detectors(client, hub.http)
            assert [c["request_id"] for c in items["station-a"]["copies"]] == [f"f{own_a}"]
            assert [c["request_id"] for c in items["station-b"]["copies"]] == [f"f{own_b}"]
            assert size < 4_000, size
        # the socket is gone: so is its progress; the other station's stays

        async def dropped() -> bool:
            _, items = await detectors(client, hub.http)
            return items["station-a"]["copies"] == []

        await wait_for(dropped, what="station-a's progress to be dropped")
        _, items = await detectors(client, hub.http)
        assert [c["request_id"] for c in items["station-b"]["copies"]] == [f"f{own_b}"]
    lines = hub_log_lines(caplog.records)
    refusals = [line for line in lines if "refused (unknown_request)" in line]
    assert len(refusals) == 1 and "station-a" in refusals[0], refusals
    [summary] = [line for line in lines if "refused while connected" in line]
    assert summary.startswith("detector station-a at 127.0.0.1:")
    assert summary.endswith(f": {flood} progress frames for requests not theirs"), summary


def test_the_progress_board_keeps_a_few_copies_per_detector_and_drops_them_at_disconnect() -> None:
    board = ProgressBoard(interval=3600)
    for i in range(1_000):
        board.update("a", f"f{i}", 1, 10)
    board.update("b", "f1", 1, 10)
    assert len(board.of("a")) == MAX_PROGRESS_PER_DETECTOR
    assert {e.request_id for e in board.of("a")} == {f"f{i}" for i in range(984, 1_000)}
    assert [e.request_id for e in board.of("b")] == ["f1"]  # same id, another station
    board.drop("a")
    assert board.of("a") == [] and len(board.entries) == 1
    board.finish("b", "f1")
    assert board.entries == {}


# --- D22: card events are rate limited per station ---------------------------------------------


async def test_a_card_event_flood_is_cut_off_at_the_burst_and_another_station_is_served(
    hub_case: HubCase, pg: asyncpg.Connection
) -> None:
    # red-team D22: 2,000 card_inserted frames in 0.28 s kept the worker busy 113 s; another
    # station's card waited 86 s
    burst = 10
    settings = hub_case.settings.model_copy(
        update={"detector_card_burst": burst, "detector_card_rate": 0.5}
    )
    token_a = await new_detector(hub_case.sessions, "station-a")
    token_b = await new_detector(hub_case.sessions, "station-b")
    async with running_hub(settings) as hub, open_detector(hub.ws, token_b) as good:
        async with open_detector(hub.ws, token_a) as bad:
            with contextlib.suppress(ConnectionClosed):  # the hub closes while we still send
                for i in range(2_000):
                    frame = {"v": 1, "type": "card_inserted", "card_id": f"FLOOD-{i}"}
                    await bad.send(json.dumps(frame))
            code, frames = await close_code(bad)
        assert code == 1013
        errors = [protocol.parse_hub_message(f) for f in frames]
        limited = [e for e in errors if isinstance(e, protocol.ErrorMessage)]
        assert [e.code for e in limited] == ["rate_limited"]
        assert "reconnect in" in limited[0].message and limited[0].retry_after
        assert 0 < limited[0].retry_after <= burst / 0.5
        await good.send(json.dumps({"v": 1, "type": "card_inserted", "card_id": "CARD-B"}))
        await good.send(file_list("CARD-B"))

        async def served() -> bool:
            got = await topic_values(settings.kafka_url, hub_case.names.detector_events)
            return sum(e["detector_id"] == "station-b" for e in got) == 2

        await wait_for(served, what="station-b's card events")
    events = await topic_values(settings.kafka_url, hub_case.names.detector_events)
    assert sum(e["detector_id"] == "station-a" for e in events) <= burst
    assert await pg.fetchval("SELECT count(*) FROM card WHERE id LIKE 'FLOOD-%'") <= burst


async def test_a_rate_limited_station_waits_reconnects_and_its_card_still_arrives(
    hub_case: HubCase, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # red-team D22, the legitimate side: the limit loses no real card
    caplog.set_level(logging.INFO)
    settings = hub_case.settings.model_copy(
        update={"detector_card_burst": 2, "detector_card_rate": 0.2}
    )
    token = await new_detector(hub_case.sessions, "station-c")
    card = tmp_path / "cards" / "card1" / "DCIM" / "100GOPRO"
    card.mkdir(parents=True)
    (card / "GX010001.MP4").write_bytes(os.urandom(1000))
    async with running_hub(settings) as hub:
        async with open_detector(hub.ws, token) as drain:  # the station's bucket, emptied
            with contextlib.suppress(ConnectionClosed):
                for _ in range(3):
                    await drain.send(json.dumps({"v": 1, "type": "card_removed", "card_id": "Z"}))
            assert (await close_code(drain))[0] == 1013
        station_settings = DetectorSettings(
            hub_url=hub.ws,
            token=token,
            share_root=settings.share_root,
            poll_interval=0.1,
            reconnect_min=0.05,
            reconnect_max=0.2,
        )
        stop = asyncio.Event()
        station = asyncio.create_task(
            run_detector(station_settings, [WatchDirVolumes(tmp_path / "cards")], stop)
        )
        try:

            async def listed() -> bool:
                got = await topic_values(settings.kafka_url, hub_case.names.detector_events)
                return any(e["event"] == "file_list" for e in got)

            await wait_for(listed, timeout=60, what="the station's list after the wait")
        finally:
            stop.set()
            assert await asyncio.wait_for(station, 30) == 0
    messages = [r.getMessage() for r in caplog.records]
    assert any("the hub asked this detector to slow down" in m for m in messages), messages
