"""Tokens never in a URL the project builds, and never in a log line (issue 14, D5).

The dashboard (real Chromium) sends the admin token as a bearer header on fetches and in a first
`{"type": "auth"}` frame on `/ws/status`; the hub requires that frame within a few seconds when
reads are not open. A token an old client still puts in a query string works, and is written to
the log as `token=***` — by the hub in this process (uvicorn's own lines) and by a real
`skyreel hub` process. Each attack runs beside a well-behaved detector that keeps working.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import pytest
from hub_case import HubCase, hub_case
from hub_harness import (
    Hub,
    file_list,
    hub_settings,
    new_detector,
    open_detector,
    running_hub,
    topic_values,
    wait_healthy,
)
from pydantic import SecretStr
from support import Proc, settings_env, wait_for
from test_dashboard_browser import ARGS, CHROMIUM, _require_browser
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from streams.hub.live import AUTH_DEADLINE, auth_frame_token
from streams.settings import Settings
from streams.stack.services import free_port

__all__ = ["hub_case", "hub_settings"]

ADMIN = "adm_" + "Q7w9Er2Ty4Ui6Op8As1Df3Gh5Jk0Lz"  # 32+ characters, as production requires


def _closed_reads(settings: Settings) -> Settings:
    return settings.model_copy(update={"admin_token": SecretStr(ADMIN), "reads_open": False})


def _status_url(hub: Hub, query: str = "") -> str:
    return hub.http.replace("http://", "ws://") + "/ws/status" + query


@contextlib.asynccontextmanager
async def _good_station(case: HubCase, hub: Hub) -> AsyncIterator[Callable[[str], Awaitable[None]]]:
    """A well-behaved detector on the hub; call the yielded check with a card id to see that it
    still gets a list through."""
    token = await new_detector(case.sessions, "station-good")
    async with open_detector(hub.ws, token) as good:

        async def still_works(card_id: str) -> None:
            await good.send(file_list(card_id))

            async def listed() -> bool:
                events = await topic_values(case.settings.kafka_url, case.names.detector_events)
                return any(e["card_id"] == card_id for e in events)

            await wait_for(listed, what=f"station-good's list of {card_id}")

        yield still_works


async def _hello(ws: ClientConnection) -> dict[str, object]:
    msg: dict[str, object] = json.loads(await asyncio.wait_for(ws.recv(), 15))
    return msg


async def _closed(ws: ClientConnection, timeout: float = AUTH_DEADLINE + 15) -> tuple[int, str]:
    try:
        async with asyncio.timeout(timeout):
            while True:
                await ws.recv()
    except ConnectionClosed as exc:
        assert exc.rcvd is not None, "the hub closed without a close frame"
        return exc.rcvd.code, exc.rcvd.reason
    raise AssertionError("unreachable")


def test_auth_frame_token_reads_only_an_auth_frame() -> None:
    assert auth_frame_token(json.dumps({"type": "auth", "token": "abc"})) == "abc"
    assert auth_frame_token(json.dumps({"type": "auth", "token": "abc"}).encode()) == "abc"
    for bad in ("", "not json", "[]", '{"type": "hello"}', '{"type": "auth", "token": 5}',
                '{"type": "auth", "token": "  "}', '{"type": "auth"}', None):  # fmt: skip
        assert auth_frame_token(bad) is None, bad


# red-team D5: the dashboard put the admin token in the /ws/status URL
async def test_the_dashboard_never_puts_a_token_in_a_url(
    hub_case: HubCase, caplog: pytest.LogCaptureFixture
) -> None:
    _require_browser()
    from playwright.async_api import Request, Response, WebSocket, async_playwright, expect

    caplog.set_level(logging.INFO)
    settings = _closed_reads(hub_case.settings)
    urls: list[str] = []
    sent: list[str] = []
    statuses: dict[str, int] = {}

    def on_socket(ws: WebSocket) -> None:
        urls.append(ws.url)
        ws.on("framesent", lambda payload: sent.append(str(payload)))

    def on_request(request: Request) -> None:
        urls.append(request.url)

    def on_response(response: Response) -> None:
        statuses[response.url] = response.status

    async with running_hub(settings) as hub, _good_station(hub_case, hub) as still_works:
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
            try:
                page = await browser.new_page()
                page.on("request", on_request)
                page.on("response", on_response)
                page.on("websocket", on_socket)
                # closed reads: the dashboard sends the browser to its login page; the token
                # goes once, in the login request's body, and a cookie carries the session
                await page.goto(hub.http + "/")
                await page.wait_for_url("**/login")
                await page.fill("#login-token", ADMIN)
                await page.locator("#login-form button[type=submit]").click()
                await expect(page.locator("#live")).to_have_text("live", timeout=20_000)
                await wait_for(
                    lambda: any("/api/counters" in u for u in statuses), what="the first fetch"
                )
                # a reload reconnects the live socket, again without a token in the URL
                await page.reload()
                await wait_for(lambda: len([u for u in urls if "/ws/" in u]) >= 2, what="reconnect")
                await expect(page.locator("#live")).to_have_text("live", timeout=20_000)
            finally:
                await browser.close()
        await still_works("CARD-AFTER-DASHBOARD")

    assert urls, "the page made no request"
    leaked = [u for u in urls if "token=" in u.lower() or ADMIN in u]
    assert leaked == [], leaked
    sockets = [u for u in urls if u.startswith("ws://")]
    assert sockets and all(u.endswith("/ws/status") for u in sockets), sockets
    assert ADMIN not in "".join(sent), "the session cookie authenticates the socket, not a frame"
    # the fetches carried the session cookie: every read answered 200 on a closed-reads hub
    api = {u: s for u, s in statuses.items() if "/api/" in u and "/api/health" not in u}
    assert api and set(api.values()) == {200}, api
    assert ADMIN not in caplog.text


# red-team D5: /ws/status took its token only from the URL
async def test_status_socket_needs_an_auth_frame_when_reads_are_closed(
    hub_case: HubCase, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="streams.hub.live")
    settings = _closed_reads(hub_case.settings)
    async with running_hub(settings) as hub, _good_station(hub_case, hub) as still_works:
        url = _status_url(hub)
        async with connect(url) as ws:  # the first frame authenticates
            await ws.send(json.dumps({"type": "auth", "token": ADMIN}))
            assert await _hello(ws) == {"type": "hello", "hub": settings.hub_id}
        async with connect(url, additional_headers={"Authorization": f"Bearer {ADMIN}"}) as ws:
            assert (await _hello(ws))["type"] == "hello"  # a header needs no frame
        async with connect(url) as silent:  # says nothing: closed after the deadline
            code, reason = await _closed(silent)
        assert (code, reason) == (1008, f"no authentication frame within {AUTH_DEADLINE:.0f} s")
        async with connect(url) as wrong:
            await wrong.send(json.dumps({"type": "auth", "token": "not-the-admin-token"}))
            assert await _closed(wrong) == (1008, "invalid token")
        async with connect(url) as other:
            await other.send(json.dumps({"type": "hello"}))
            code, reason = await _closed(other)
        assert code == 1008 and '{"type": "auth", "token": "<admin token>"}' in reason
        await still_works("CARD-AFTER-STATUS")
    refusals = [r.getMessage() for r in caplog.records if "status client" in r.getMessage()]
    assert len(refusals) == 3 and all("refused" in line for line in refusals), refusals
    assert "not-the-admin-token" not in caplog.text


# red-team D5: tokens in query strings were logged in plain text
async def test_query_tokens_still_work_and_are_logged_as_stars(
    hub_case: HubCase, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    settings = _closed_reads(hub_case.settings)
    station = await new_detector(hub_case.sessions, "station-old")
    async with running_hub(settings) as hub, _good_station(hub_case, hub) as still_works:
        async with httpx.AsyncClient() as client:
            ok = await client.get(f"{hub.http}/api/counters", params={"token": ADMIN})
            refused = await client.get(f"{hub.http}/api/counters", params={"token": "wrong-1"})
        assert ok.status_code == 200 and refused.status_code == 401
        async with connect(_status_url(hub, f"?token={ADMIN}")) as ws:  # an old dashboard
            assert (await _hello(ws))["type"] == "hello"
        with contextlib.suppress(ConnectionClosed):  # an old station; accepted or refused
            async with connect(f"{hub.ws}?token={station}") as ws:
                await asyncio.wait_for(ws.recv(), 10)
        await still_works("CARD-AFTER-QUERY")
    text = caplog.text
    for secret in (ADMIN, station, "wrong-1"):
        assert secret not in text, f"{secret[:6]}... is in the log"
    for path in ("/api/counters?token=***", "/ws/status?token=***", "/ws/detector?token=***"):
        assert path in text, f"no log line shows {path}"


# red-team D5: the same through `skyreel hub`'s own logging (basicConfig + uvicorn)
async def test_skyreel_hub_process_logs_query_tokens_redacted(
    spawn: Callable[..., Proc], hub_case: HubCase
) -> None:
    settings = _closed_reads(hub_case.settings)
    port = free_port()
    env = settings_env(settings)
    env.update(SKYREEL_HUB_PORT=str(port), SKYREEL_LOG_LEVEL="INFO")
    proc = spawn("streams.cli", "hub", env=env, name="hub-redact")
    http = f"http://127.0.0.1:{port}"
    try:
        await wait_healthy(http, timeout=60)
    except AssertionError:
        pytest.fail(f"hub not healthy:\n{proc.output()}")
    station = await new_detector(hub_case.sessions, "station-proc")
    async with httpx.AsyncClient() as client:
        assert (await client.get(f"{http}/api/counters?token={ADMIN}")).status_code == 200
        assert (await client.get(f"{http}/api/counters?token=wrong-2")).status_code == 401
    async with open_detector(f"ws://127.0.0.1:{port}/ws/detector", station) as good:
        await good.send(file_list("CARD-PROC"))  # a well-behaved station beside it

        async def listed() -> bool:
            events = await topic_values(settings.kafka_url, hub_case.names.detector_events)
            return any(e["card_id"] == "CARD-PROC" for e in events)

        await wait_for(listed, what="the station's list through the hub process")
    assert proc.stop() == 0
    out = proc.output()
    assert "GET /api/counters?token=*** HTTP/1.1" in out, out[-3000:]
    assert ADMIN not in out and "wrong-2" not in out and station not in out
