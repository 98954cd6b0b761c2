"""`skyreel hub` as real processes: two replicas, copy requests reach the one holding the socket;
port 0 picks a free port; SIGTERM shuts down cleanly."""

from __future__ import annotations

import json
import re
from collections.abc import Callable

import pytest
from hub_case import HubCase, hub_case
from hub_harness import hub_settings, new_detector, open_detector, produce, recv_hub, wait_healthy
from redis.asyncio import Redis
from support import Proc, copy_request, settings_env, wait_for

from detector import protocol
from streams import records
from streams.settings import Settings
from streams.stack.services import free_port

__all__ = ["hub_case", "hub_settings"]


def _start_hub(spawn: Callable[..., Proc], settings: Settings, hub_id: str, port: int) -> Proc:
    env = settings_env(settings)
    env.update(SKYREEL_HUB_PORT=str(port), SKYREEL_HUB_ID=hub_id)
    return spawn("streams.cli", "hub", env=env, name=f"hub-{hub_id}")


def _request(file_id: int, detector_id: str) -> bytes:
    return records.encode(copy_request(file_id, detector_id, priority=10))


async def test_copy_requests_reach_the_detector_on_the_other_hub_process(
    spawn: Callable[..., Proc], hub_case: HubCase, redis_url: str
) -> None:
    token_a = await new_detector(hub_case.sessions, "station-a")
    token_b = await new_detector(hub_case.sessions, "station-b")
    ports = {"a": free_port(), "b": free_port()}
    hubs = {
        k: _start_hub(spawn, hub_case.settings, f"{hub_case.names.prefix}-{k}", p)
        for k, p in ports.items()
    }
    for k, port in ports.items():
        try:
            await wait_healthy(f"http://127.0.0.1:{port}", timeout=60)
        except AssertionError:
            pytest.fail(f"hub {k} not healthy:\n{hubs[k].output()}")
    ws_url = {k: f"ws://127.0.0.1:{p}/ws/detector" for k, p in ports.items()}
    redis = Redis.from_url(redis_url)
    try:
        async with (
            open_detector(ws_url["b"], token_b) as on_b,
            open_detector(ws_url["a"], token_a) as on_a,
        ):
            presence = await redis.get(hub_case.names.detector_presence_key("station-b"))
            assert (
                presence is not None and json.loads(presence)["hub"] == f"{hub_case.names.prefix}-b"
            )
            await produce(
                hub_case.settings.kafka_url,
                hub_case.names.copy_requests,
                "station-b",
                _request(21, "station-b"),
            )
            await produce(
                hub_case.settings.kafka_url,
                hub_case.names.copy_requests,
                "station-a",
                _request(22, "station-a"),
            )
            got_b = await recv_hub(on_b, timeout=20)
            got_a = await recv_hub(on_a, timeout=20)
            assert isinstance(got_b, protocol.CopyRequest) and got_b.request_id == "f21"
            assert isinstance(got_a, protocol.CopyRequest) and got_a.request_id == "f22"
    finally:
        await redis.aclose()
    for k in ("a", "b"):
        assert "hub listening on http://127.0.0.1:" in hubs[k].output()


async def test_port_zero_picks_a_free_port_and_sigterm_stops_cleanly(
    spawn: Callable[..., Proc], hub_case: HubCase
) -> None:
    token = await new_detector(hub_case.sessions, "station-1")
    hub = _start_hub(spawn, hub_case.settings, f"{hub_case.names.prefix}-z", 0)
    pattern = re.compile(r"hub listening on http://127\.0\.0\.1:(\d+)")
    await wait_for(
        lambda: pattern.search(hub.output()) or hub.popen.poll() is not None,
        timeout=60,
        what="the hub's listening line",
    )
    match = pattern.search(hub.output())
    assert match, hub.output()
    port = int(match.group(1))
    assert port != 0
    await wait_healthy(f"http://127.0.0.1:{port}")
    async with open_detector(f"ws://127.0.0.1:{port}/ws/detector", token):
        pass
    assert hub.stop(timeout=20) == 0, hub.output()
    out = hub.output()
    assert "detector station-1 connected from 127.0.0.1:" in out
    assert "detector station-1 disconnected" in out
    assert f"hub {hub_case.names.prefix}-z stopped" in out
