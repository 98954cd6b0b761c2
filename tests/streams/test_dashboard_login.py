"""Dashboard login (issue 17): the admin token typed once per browser becomes a signed,
HttpOnly, SameSite=Strict session cookie; the API, the media files and /ws/status accept it;
state changes on the cookie need the CSRF header; wrong tokens are throttled; logout ends it.

Against a real hub (uvicorn, PostgreSQL, the broker) with closed reads, over real HTTP and a
real WebSocket; the browser half (the login page in Chromium) is in
test_dashboard_operator_browser.py.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from status_harness import (
    TOKEN,
    Served,
    api_settings,
    check,
    response_schema_name,
    seed,
    serve,
    serve_hub,
    write_tiny_clip,
)
from support import wait_for
from websockets.asyncio.client import connect

from streams.hub import dashboard_session as ds
from streams.settings import Settings

FAILURES = 3


def test_a_cookie_is_good_only_for_its_token_and_its_age() -> None:
    value = ds.issue("token-one")
    found = ds.verify("token-one", value, 3600)
    assert found is not None and found.session_id
    assert ds.verify("token-two", value, 3600) is None  # a new admin token logs everyone out
    assert ds.verify("token-one", value[:-2] + "xx", 3600) is None  # forged
    assert ds.verify("token-one", "", 3600) is None
    assert ds.verify("token-one", "x" * 600, 3600) is None
    assert ds.issue("token-one") != value  # a fresh session id each login


def test_the_csrf_guard_and_the_origin_check() -> None:
    assert ds.csrf_ok("GET", None) and ds.csrf_ok("head", None)
    assert not ds.csrf_ok("POST", None) and not ds.csrf_ok("POST", "0")
    assert ds.csrf_ok("POST", "1")
    assert ds.same_origin("http://127.0.0.1:8800", "127.0.0.1:8800")
    assert not ds.same_origin("http://evil.example", "127.0.0.1:8800")
    assert not ds.same_origin(None, "127.0.0.1:8800")
    assert not ds.same_origin("null", "127.0.0.1:8800")


@pytest.fixture
async def hub(settings: Settings, clean_db: AsyncEngine) -> AsyncIterator[Served]:
    closed = api_settings(settings, reads_open=False, dashboard_login_failures_per_peer=FAILURES)
    async with serve(closed) as served:
        yield served


async def _login(client: httpx.AsyncClient, token: str) -> httpx.Response:
    return await client.post("/api/login", json={"token": token})


async def test_login_once_then_reads_media_actions_and_logout(
    hub: Served, settings: Settings, clean_db: AsyncEngine
) -> None:
    write_tiny_clip(settings.share_root / "cards/card-A/qr.mp4")
    s = await seed(clean_db, qr_stored_path="cards/card-A/qr.mp4")
    async with httpx.AsyncClient(base_url=hub.url) as client:
        assert (await client.get("/api/sessions")).status_code == 401
        assert (await client.get("/media/share/cards/card-A/qr.mp4")).status_code == 401
        page = await client.get("/")
        assert page.status_code == 303 and page.headers["location"] == "/login"
        assert (await client.get("/login")).status_code == 200
        doc = (await client.get("/api/openapi.json")).json()

        def documented(method: str, path: str, r: httpx.Response) -> None:
            check(doc, response_schema_name(doc, path, method, r.status_code), r.json())

        state = await client.get("/api/login")
        assert state.json()["logged_in"] is False
        documented("get", "/api/login", state)

        wrong = await _login(client, "not-the-token")
        assert wrong.status_code == 401
        documented("post", "/api/login", wrong)
        assert "skyreel run" in wrong.json()["error"]["message"]
        assert "set-cookie" not in wrong.headers
        bad = await client.post("/api/login", content=b"token=x")
        assert bad.status_code == 422

        ok = await _login(client, TOKEN)
        assert ok.status_code == 200, ok.text
        documented("post", "/api/login", ok)
        assert ok.json()["logged_in"] is True and ok.json()["expires_at"]
        cookie = ok.headers["set-cookie"]
        assert cookie.startswith(f"{ds.COOKIE}=")
        low = cookie.lower()
        assert "httponly" in low and "samesite=strict" in low and "path=/" in low
        assert "max-age=43200" in low  # 12 h, dashboard_session_hours
        assert "secure" not in low  # plain http here; https sets Secure
        assert TOKEN not in cookie

        # reads, media and the page itself on the cookie alone
        assert (await client.get("/api/login")).json()["logged_in"] is True
        assert (await client.get("/api/sessions")).status_code == 200
        assert (await client.get("/")).status_code == 200
        assert (await client.get("/login")).status_code == 303  # already logged in
        media = await client.get(
            "/media/share/cards/card-A/qr.mp4", headers={"Range": "bytes=0-99"}
        )
        assert media.status_code == 206 and len(media.content) == 100
        frame = await client.get(f"/api/files/{s.qr_file}/frame.jpg")
        assert frame.status_code == 200 and frame.content[:2] == b"\xff\xd8"

        # a state change on the cookie needs the CSRF header (another site's form has none)
        retry = f"/api/executions/{s.card_import}/steps/copy/retry"
        refused = await client.post(retry)
        assert refused.status_code == 403
        assert refused.json()["error"]["code"] == "csrf"
        sent = await client.post(retry, headers={ds.CSRF_HEADER: "1"})
        assert sent.status_code == 200, sent.text
        assert sent.json()["retried"] == ["copy"]

        # the bearer token still works without a cookie or a header (CLI, scripts)
        async with httpx.AsyncClient(base_url=hub.url) as cli:
            bearer = await cli.post(retry, headers={"Authorization": f"Bearer {TOKEN}"})
            assert bearer.status_code == 409  # past auth: the step is no longer failed
            forged = {ds.COOKIE: ds.issue("another-token")}
            assert (await cli.get("/api/sessions", cookies=forged)).status_code == 401

        assert (await client.post("/api/logout")).status_code == 403  # another site's form
        assert (await client.get("/api/sessions")).status_code == 200  # still logged in
        out = await client.post("/api/logout", headers={ds.CSRF_HEADER: "1"})
        assert out.status_code == 200
        documented("post", "/api/logout", out)
        assert out.json()["logged_in"] is False
        assert f'{ds.COOKIE}=""' in out.headers["set-cookie"] or "max-age=0" in (
            out.headers["set-cookie"].lower()
        )
        assert (await client.get("/api/sessions")).status_code == 401


async def test_the_live_socket_takes_the_cookie_from_the_hubs_own_page_only(hub: Served) -> None:
    async with httpx.AsyncClient(base_url=hub.url) as client:
        await wait_for(hub.status_api().live.ready.is_set, timeout=30, what="status stream")
        cookie = (await _login(client, TOKEN)).cookies[ds.COOKIE]
    header = {"Cookie": f"{ds.COOKIE}={cookie}"}
    host = hub.url.removeprefix("http://")
    async with connect(hub.ws, additional_headers=header, origin=f"http://{host}") as ws:  # type: ignore[arg-type]
        hello = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert hello["type"] == "hello"
    # another site's page with the same browser's cookie: no hello, refused after the deadline
    async with connect(hub.ws, additional_headers=header, origin="http://evil.example") as ws:  # type: ignore[arg-type]
        with pytest.raises(Exception):  # noqa: B017 - the close, whichever way it surfaces
            for _ in range(3):
                msg = json.loads(await asyncio.wait_for(ws.recv(), 10))
                assert msg["type"] != "hello"
        assert ws.close_code == 1008


async def test_wrong_tokens_are_throttled_then_even_the_right_one_waits(hub: Served) -> None:
    async with httpx.AsyncClient(base_url=hub.url) as client:
        for _ in range(FAILURES):
            assert (await _login(client, "guess")).status_code == 401
        blocked = await _login(client, TOKEN)
        assert blocked.status_code == 429
        assert int(blocked.headers["retry-after"]) >= 1
        assert "too many wrong tokens" in blocked.json()["error"]["message"]
        assert "set-cookie" not in blocked.headers


async def test_a_login_expires(settings: Settings, clean_db: AsyncEngine) -> None:
    short = api_settings(settings, reads_open=False, dashboard_session_hours=1.5 / 3600)
    async with serve_hub(short) as hub:
        async with httpx.AsyncClient(base_url=hub.url) as client:
            cookie = (await _login(client, TOKEN)).cookies[ds.COOKIE]
            assert (await client.get("/api/sessions")).status_code == 200
        await asyncio.sleep(2.6)  # the signature's age, not only the browser's Max-Age
        async with httpx.AsyncClient(base_url=hub.url, cookies={ds.COOKIE: cookie}) as late:
            assert (await late.get("/api/sessions")).status_code == 401
