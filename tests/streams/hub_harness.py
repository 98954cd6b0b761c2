"""Helpers for the hub tests: a real uvicorn hub in the test's loop, detectors, topic reads."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
import uvicorn
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import TopicPartition
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from support import wait_for
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from detector import protocol
from storage.detectors import register_detector
from streams.hub.server import create_app, uvicorn_config
from streams.settings import Settings
from streams.stack.services import free_port
from streams.topics import Names

#: the loggers of the detector endpoint (its handshake, frames and copy reports)
HUB_LOGGERS = ("streams.hub.detector_ws", "streams.hub.detector_auth", "streams.hub.copy_reports")


@pytest.fixture
def hub_settings(settings: Settings, names: Names) -> Settings:
    """The shared `settings` with a concrete free hub port (the tests connect to it)."""
    return settings.model_copy(update={"hub_port": free_port(), "hub_id": f"{names.prefix}-hub"})


@dataclass(frozen=True)
class Hub:
    http: str
    ws: str


async def wait_healthy(http: str, timeout: float = 30.0) -> None:
    async with httpx.AsyncClient() as client:

        async def ok() -> bool:
            try:
                return (await client.get(f"{http}/api/health")).status_code == 200
            except httpx.HTTPError:
                return False

        await wait_for(ok, timeout=timeout, what=f"{http}/api/health to answer 200")


async def wait_answering(http: str, timeout: float = 30.0) -> None:
    async with httpx.AsyncClient() as client:

        async def answers() -> bool:
            try:
                await client.get(f"{http}/api/health")
            except httpx.HTTPError:
                return False
            return True

        await wait_for(answers, timeout=timeout, what=f"{http} to answer")


@contextlib.asynccontextmanager
async def running_hub(settings: Settings, *, healthy: bool = True) -> AsyncIterator[Hub]:
    """The hub app under a real uvicorn server in this event loop (waits for 200 on health
    unless ``healthy`` is False: then only until it answers at all)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((settings.hub_host, settings.hub_port))
    config = uvicorn_config(create_app(settings), settings, graceful_s=3)  # as `skyreel hub`
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    hub = Hub(
        http=f"http://{settings.hub_host}:{settings.hub_port}",
        ws=f"ws://{settings.hub_host}:{settings.hub_port}/ws/detector",
    )
    try:
        if healthy:
            await wait_healthy(hub.http)
        else:
            await wait_answering(hub.http)
        yield hub
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 20)
        sock.close()


async def new_detector(sessions: async_sessionmaker[AsyncSession], detector_id: str) -> str:
    async with sessions() as session, session.begin():
        return (await register_detector(session, detector_id, detector_id)).token


@contextlib.asynccontextmanager
async def detector_socket(url: str, token: str | None) -> AsyncIterator[ClientConnection]:
    headers = {"Authorization": f"Bearer {token}"} if token else None
    async with connect(url, additional_headers=headers, max_size=None, open_timeout=10) as ws:
        yield ws


@contextlib.asynccontextmanager
async def open_detector(url: str, token: str) -> AsyncIterator[ClientConnection]:
    """A connected detector that already read its welcome."""
    async with detector_socket(url, token) as ws:
        welcome = protocol.parse_hub_message(await asyncio.wait_for(ws.recv(), 10))
        assert isinstance(welcome, protocol.Welcome)
        yield ws


async def recv_hub(ws: ClientConnection, timeout: float = 10) -> protocol.HubMessage:
    raw = await asyncio.wait_for(ws.recv(), timeout)
    return protocol.parse_hub_message(raw)


async def close_code(ws: ClientConnection, timeout: float = 15) -> tuple[int | None, list[str]]:
    """Read until the hub closes; the close code and the frames received before it."""
    frames: list[str] = []
    try:
        async with asyncio.timeout(timeout):
            while True:
                frames.append(str(await ws.recv()))
    except ConnectionClosed as exc:
        return (exc.rcvd.code if exc.rcvd else None), frames
    raise AssertionError("unreachable")


def file_list(card_id: str, n: int = 3) -> str:
    files = [
        {"path": f"DCIM/100GOPRO/GX01{i:04d}.MP4", "size": 1000 + i, "mtime": 1.7e9 + i}
        for i in range(n)
    ]
    return json.dumps({"v": 1, "type": "file_list", "card_id": card_id, "files": files})


async def topic_values(bootstrap: str, topic: str) -> list[dict[str, object]]:
    """Every record on ``topic`` from the beginning (raw consumer, no group)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        await consumer.topics()  # loads metadata so partitions_for_topic knows the topic
        parts = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        if not tps:
            return []
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        end = await consumer.end_offsets(tps)
        out: list[dict[str, object]] = []
        while [tp for tp in tps if await consumer.position(tp) < end[tp]]:
            batches = await consumer.getmany(timeout_ms=500)
            for messages in batches.values():
                out.extend(json.loads(m.value or b"{}") for m in messages)
        return out
    finally:
        await consumer.stop()


async def produce(bootstrap: str, topic: str, key: str, value: bytes) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(topic, value, key=key.encode())
    finally:
        await producer.stop()


def hub_log_lines(records: list[logging.LogRecord]) -> list[str]:
    return [r.getMessage() for r in records if r.name in HUB_LOGGERS]
