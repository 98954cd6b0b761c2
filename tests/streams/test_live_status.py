"""`/ws/status`: status events reach browsers; a client that falls behind gets a resync."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine
from status_harness import Served, api_settings, serve
from support import wait_for
from websockets.asyncio.client import ClientConnection, connect

from streams import kafka, records
from streams.hub.live import Client, presence_changes
from streams.settings import Settings
from streams.topics import Names


def test_a_full_client_queue_becomes_one_resync() -> None:
    client = Client("t", size=3)
    for i in range(3):
        client.offer({"type": "event", "id": str(i)})
    client.offer({"type": "event", "id": "3"})
    assert client.queue.qsize() == 1 and client.queue.get_nowait()["type"] == "resync"
    client.offer({"type": "event", "id": "4"})
    assert client.queue.get_nowait()["id"] == "4" and client.resyncs == 1


def test_presence_changes_report_arrivals_moves_and_departures() -> None:
    before = {"a": "h1", "b": "h1"}
    after = {"a": "h2", "c": "h1"}
    assert presence_changes(before, after) == [
        ("a", True, "h2"),
        ("b", False, ""),
        ("c", True, "h1"),
    ]
    assert presence_changes(after, after) == []


@pytest.fixture
async def hub(settings: Settings, clean_db: AsyncEngine) -> AsyncIterator[Served]:
    async with serve(api_settings(settings)) as served:
        live = served.status_api().live
        await wait_for(live.ready.is_set, timeout=30, what="the status consumer")
        yield served


async def _next(ws: ClientConnection, kind: str | None = None) -> dict[str, object]:
    while True:
        msg: dict[str, object] = json.loads(await asyncio.wait_for(ws.recv(), 15))
        if kind is None or msg.get("kind") == kind or msg["type"] != "event":
            return msg


async def test_a_status_event_reaches_a_browser(hub: Served, broker: str, names: Names) -> None:
    async with connect(hub.ws) as ws:
        assert (await _next(ws))["type"] == "hello"
        producer = kafka.make_producer(broker)
        await producer.start()
        try:
            event = records.StatusEvent(
                kind="step", id="42", data={"step": "render", "progress": 0.5}
            )
            await producer.send_and_wait(names.status, records.encode(event), key=b"42")
        finally:
            await producer.stop()
        msg = await _next(ws, "step")
        assert msg == {
            "type": "event",
            "kind": "step",
            "id": "42",
            "data": {"step": "render", "progress": 0.5},
        }


async def test_a_client_that_falls_behind_gets_a_resync(hub: Served) -> None:
    fanout = hub.status_api().live.fanout
    async with connect(hub.ws) as ws:
        assert (await _next(ws))["type"] == "hello"
        await wait_for(lambda: len(fanout.clients) == 1, what="the client to register")
        n = fanout.queue_size * 2 + 50
        for i in range(n):  # one burst, faster than any socket drains
            fanout.publish({"type": "event", "kind": "step", "id": str(i), "data": {}})
        got: list[dict[str, object]] = []
        while not got or got[-1].get("id") != str(n - 1):
            got.append(await _next(ws))
        assert got[0]["type"] == "resync"
        ids = [int(str(m["id"])) for m in got if m["type"] == "event"]
        assert len(ids) < n and ids == sorted(ids)  # dropped, never reordered
        # After the resync it is a normal client again.
        fanout.publish({"type": "event", "kind": "step", "id": "after", "data": {}})
        assert (await _next(ws))["id"] == "after"


async def test_detector_presence_changes_are_pushed(
    hub: Served, redis_url: str, names: Names
) -> None:
    redis = Redis.from_url(redis_url)
    key = names.detector_presence_key("station-9")
    try:
        async with connect(hub.ws) as ws:
            assert (await _next(ws))["type"] == "hello"
            await asyncio.sleep(2.5)  # the watcher has taken its first look
            await redis.set(key, json.dumps({"hub": "h1", "since": "now"}), ex=30)
            came = await _next(ws, "detector")
            assert came["id"] == "station-9" and came["data"] == {
                "online": True,
                "hub": "h1",
                "since": "now",
            }
            await redis.delete(key)
            went = await _next(ws, "detector")
            assert went["id"] == "station-9" and went["data"] == {"online": False}
    finally:
        await redis.delete(key)
        await redis.aclose()
