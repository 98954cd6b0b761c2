"""Revoking a detector ends its live socket at once, on whichever hub replica holds it (issue 14,
D15): `skyreel revoke-detector NAME`, `POST /api/detectors/{id}/revoke`, and the periodic
re-check for a revocation announcement that was missed. The revoked station (the real client)
stops instead of reconnecting; a well-behaved one beside it keeps working."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from hub_case import HubCase, hub_case
from hub_harness import (
    Hub,
    close_code,
    detector_socket,
    file_list,
    hub_settings,
    new_detector,
    open_detector,
    running_hub,
    topic_values,
)
from pydantic import SecretStr
from support import settings_env, wait_for
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from detector.cards import WatchDirVolumes
from detector.client import EXIT_AUTH_REFUSED, close_verdict, run_detector
from detector.settings import DetectorSettings
from storage import detectors
from streams.hub.detector_ws import REVOKED_REASON
from streams.hub.presence import Presence
from streams.hub.revocation import RECHECK_INTERVAL, Revocation, revocation_message
from streams.settings import Settings
from streams.stack.services import free_port

__all__ = ["hub_case", "hub_settings"]

ADMIN = "adm_" + "R8t2Yu4Io6Pa1Sd3Fg5Hj7Kl9Zx0Cv"
AUTH = {"Authorization": f"Bearer {ADMIN}"}


def _with_admin(settings: Settings, hub_id: str | None = None, port: int | None = None) -> Settings:
    update: dict[str, object] = {"admin_token": SecretStr(ADMIN)}
    if hub_id is not None:
        update |= {"hub_id": hub_id, "hub_port": port}
    return settings.model_copy(update=update)


async def _still_works(case: HubCase, good: ClientConnection, card_id: str) -> None:
    """The well-behaved station gets a list through the hub."""
    await good.send(file_list(card_id))

    async def listed() -> bool:
        events = await topic_values(case.settings.kafka_url, case.names.detector_events)
        return any(e["card_id"] == card_id and e["detector_id"] == "station-b" for e in events)

    await wait_for(listed, what=f"station-b's list of {card_id}")


async def _refused_again(hub: Hub, token: str) -> None:
    """A new handshake with the revoked token: 1008 before any frame."""
    async with detector_socket(hub.ws, token) as ws:
        code, frames = await close_code(ws)
    assert code == 1008 and frames == []


@contextlib.asynccontextmanager
async def _real_station(
    hub: Hub, token: str, share: Path, cards: Path
) -> AsyncIterator[asyncio.Task[int]]:
    """The real detector client (detector.client.run_detector), reconnecting quickly; ``cards``
    (an existing directory) is where it watches for cards."""
    settings = DetectorSettings(
        hub_url=hub.ws,
        token=token,
        share_root=share,
        poll_interval=0.1,
        reconnect_min=0.05,
        reconnect_max=0.2,
    )
    stop = asyncio.Event()
    task = asyncio.create_task(run_detector(settings, [WatchDirVolumes(cards)], stop))
    try:
        yield task
    finally:
        stop.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 30)


async def _revoke_cli(settings: Settings, detector_id: str) -> tuple[int, str, str]:
    """`skyreel revoke-detector ID` as a process that knows only the database and Redis."""
    env = {k: v for k, v in settings_env(settings).items() if not k.startswith("SKYREEL_")}
    env |= {
        "SKYREEL_DATABASE_URL": settings.database_url,
        "SKYREEL_REDIS_URL": settings.redis_url,
        "SKYREEL_TOPIC_PREFIX": settings.topic_prefix,
        "SKYREEL_DATA_DIR": str(settings.data_dir),
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "streams.cli",
        "revoke-detector",
        detector_id,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=os.getcwd(),
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return int(proc.returncode or 0), out.decode(), err.decode()


def test_a_close_for_revocation_stops_the_station() -> None:
    verdict = close_verdict(1008, REVOKED_REASON)
    assert verdict is not None and verdict.exit_code == EXIT_AUTH_REFUSED
    assert "revoked" in verdict.reason and "register" in verdict.reason
    assert close_verdict(1011, "internal error") is None  # that one reconnects


def test_revocation_messages_say_what_happened_to_the_connection() -> None:
    on_x = Presence("hub-x", "c1")
    assert revocation_message(Revocation("s", True)) == "revoked s; it was not connected"
    assert (
        revocation_message(Revocation("s", True, on_x, 2, closed=True))
        == "revoked s; its live connection on hub hub-x was closed"
    )
    late = revocation_message(Revocation("s", True, on_x, 0, closed=False), wait=10)
    assert "did not close within 10 s" in late and "hub-x" in late
    lost = revocation_message(Revocation("s", True, announce_error="Redis: refused"))
    assert "Redis: refused" in lost and f"{RECHECK_INTERVAL:.0f} s" in lost


# red-team D15: revocation did not end a live socket; there was no revoke command
async def test_revoke_detector_cli_closes_the_live_socket_and_the_station_stops(
    hub_case: HubCase, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="streams.hub")
    settings = _with_admin(hub_case.settings)
    (tmp_path / "cards").mkdir()
    token_a = await new_detector(hub_case.sessions, "station-a")
    token_b = await new_detector(hub_case.sessions, "station-b")
    async with (
        running_hub(settings) as hub,
        open_detector(hub.ws, token_b) as good,
        _real_station(hub, token_a, settings.share_root, tmp_path / "cards") as station,
    ):
        await wait_for(
            lambda: any("detector station-a connected" in m for m in caplog.messages),
            what="station-a to connect",
        )
        code, out, err = await _revoke_cli(settings, "station-a")
        assert code == 0, err
        assert (
            out.strip()
            == f"revoked station-a; its live connection on hub {settings.hub_id} was closed"
        )
        # the real client stops with its "token refused" exit code instead of reconnecting
        assert await asyncio.wait_for(station, 20) == EXIT_AUTH_REFUSED
        await _refused_again(hub, token_a)
        await _still_works(hub_case, good, "CARD-B1")
        # revoking again: it is no longer connected; an unknown id is an error
        code, out, _ = await _revoke_cli(settings, "station-a")
        assert (code, out.strip()) == (0, "revoked station-a; it was not connected")
        code, _, err = await _revoke_cli(settings, "station-nobody")
        assert code == 1 and "no detector 'station-nobody' is registered" in err
    closes = [m for m in caplog.messages if "station-a" in m and "token revoked" in m]
    assert len(closes) == 1, closes  # closed once, and the station did not come back
    connects = [m for m in caplog.messages if m.startswith("detector station-a connected")]
    assert len(connects) == 1, connects


# red-team D15: the API revokes, and the replica holding the socket closes it (1008)
async def test_revoke_api_on_one_replica_closes_the_socket_on_the_other(
    hub_case: HubCase,
) -> None:
    prefix = hub_case.names.prefix
    a = _with_admin(hub_case.settings, f"{prefix}-a", free_port())
    b = _with_admin(hub_case.settings, f"{prefix}-b", free_port())
    token_a = await new_detector(hub_case.sessions, "station-a")
    token_b = await new_detector(hub_case.sessions, "station-b")
    async with (
        running_hub(a) as hub_a,
        running_hub(b) as hub_b,
        open_detector(hub_a.ws, token_b) as good,
        open_detector(hub_b.ws, token_a) as revoked,
        httpx.AsyncClient(base_url=hub_a.http, timeout=30) as client,
    ):
        url = "/api/detectors/station-a/revoke"
        assert (await client.post(url)).status_code == 401  # the admin token is required
        missing = await client.post("/api/detectors/station-zz/revoke", headers=AUTH)
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
        answer = await client.post(url, headers=AUTH)
        assert answer.status_code == 200, answer.text
        assert answer.json() == {
            "detector_id": "station-a",
            "revoked": True,
            "connected_hub": b.hub_id,
            "closed": True,
            "hubs_told": 2,
            "message": f"revoked station-a; its live connection on hub {b.hub_id} was closed",
        }
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(revoked.recv(), 10)
        assert closed.value.rcvd is not None
        assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (1008, REVOKED_REASON)
        await _refused_again(hub_a, token_a)
        await _refused_again(hub_b, token_a)
        await _still_works(hub_case, good, "CARD-B2")
        listed = (await client.get("/api/detectors", headers=AUTH)).json()["items"]
        assert {d["id"]: d["revoked"] for d in listed} == {"station-a": True, "station-b": False}


# red-team D15: a revocation nobody announced (Redis away, a replica restarting)
async def test_a_revocation_nobody_announced_is_caught_by_the_recheck(hub_case: HubCase) -> None:
    token_a = await new_detector(hub_case.sessions, "station-a")
    token_b = await new_detector(hub_case.sessions, "station-b")
    async with (
        running_hub(hub_case.settings) as hub,
        open_detector(hub.ws, token_b) as good,
        open_detector(hub.ws, token_a) as revoked,
    ):
        async with hub_case.sessions() as session, session.begin():
            assert await detectors.revoke(session, "station-a")  # the database only
        code, _ = await close_code(revoked, timeout=RECHECK_INTERVAL * 4)
        assert code == 1008
        assert revoked.close_reason == REVOKED_REASON
        await _refused_again(hub, token_a)
        await _still_works(hub_case, good, "CARD-B3")
