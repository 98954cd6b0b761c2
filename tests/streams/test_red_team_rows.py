"""Issue 14's red-team rows that lacked a regression on the real hub of their own: each attack
sent as a client sends it, its refusal, and beside it a well-behaved station (station-b) whose
list still reaches Kafka — or, for the API and settings rows, a hub that keeps answering.

The other rows live where their code is tested: D8, D11 (NUL label), D12 and the strict types in
test_hub_bad_input.py (BAD_FRAMES), D19 in test_media_links.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import subprocess
import sys
from pathlib import Path

import asyncpg
import httpx
import pytest
from hub_case import HubCase, hub_case
from hub_harness import (
    close_code,
    file_list,
    hub_settings,
    new_detector,
    open_detector,
    recv_hub,
    running_hub,
    topic_values,
)
from pydantic import SecretStr
from support import settings_env, wait_for
from websockets.exceptions import ConnectionClosed

from detector import protocol
from streams.settings import MIN_ADMIN_TOKEN_CHARS

__all__ = ["hub_case", "hub_settings"]

GOOD_PATH = "DCIM/100GOPRO/GX010001.MP4"

# red-team (lax types): pydantic's lax mode took `v: 1.0`, `v: true` and `size: "100"`
STRICT_TYPES: dict[str, tuple[str, str]] = {
    # name: (frame, words in the error reason)
    "v-1.0": (
        json.dumps({"v": 1.0, "type": "card_removed", "card_id": "C"}),
        "unsupported protocol version 1.0",
    ),
    "v-true": (
        json.dumps({"v": True, "type": "card_removed", "card_id": "C"}),
        "unsupported protocol version True",
    ),
    "size-string": (
        json.dumps(
            {
                "v": 1,
                "type": "file_list",
                "card_id": "C",
                "files": [{"path": GOOD_PATH, "size": "100", "mtime": 1.0}],
            }
        ),
        "files.0.size",
    ),
}


async def _station_b_still_lists(case: HubCase, good: object) -> None:
    """station-b's list reaches the detector-events topic (the hub serves it as before)."""
    await good.send(file_list("CARD-B"))  # type: ignore[attr-defined]

    async def listed() -> bool:
        events = await topic_values(case.settings.kafka_url, case.names.detector_events)
        return any(e["detector_id"] == "station-b" for e in events)

    await wait_for(listed, what="station-b's list")


# red-team (lax types): each coercion is a refusal (1003 with the field), not a frame taken
@pytest.mark.parametrize("name", sorted(STRICT_TYPES))
async def test_a_lax_typed_frame_is_refused_beside_a_working_station(
    name: str, hub_case: HubCase, pg: asyncpg.Connection
) -> None:
    frame, words = STRICT_TYPES[name]
    token_a = await new_detector(hub_case.sessions, "station-a")
    token_b = await new_detector(hub_case.sessions, "station-b")
    async with (
        running_hub(hub_case.settings) as hub,
        open_detector(hub.ws, token_b) as good,
        open_detector(hub.ws, token_a) as bad,
    ):
        with contextlib.suppress(ConnectionClosed):
            await bad.send(frame)
        code, frames = await close_code(bad)
        assert code == 1003
        [raw] = frames
        error = protocol.parse_hub_message(raw)
        assert isinstance(error, protocol.ErrorMessage) and error.code == "bad_frame"
        assert words in error.message
        await _station_b_still_lists(hub_case, good)
    events = await topic_values(hub_case.settings.kafka_url, hub_case.names.detector_events)
    assert [(e["detector_id"], e["card_id"]) for e in events] == [("station-b", "CARD-B")]
    assert await pg.fetchval("SELECT count(*) FROM card WHERE id = 'C'") == 0


# red-team D10: a lone surrogate in one path dead-lettered the whole list
async def test_a_lone_surrogate_path_is_refused_alone_beside_a_working_station(
    hub_case: HubCase,
) -> None:
    token_a = await new_detector(hub_case.sessions, "station-a")
    token_b = await new_detector(hub_case.sessions, "station-b")
    bad_path = "DCIM/100GOPRO/GX01\udcff02.MP4"
    files = [
        {"path": GOOD_PATH, "size": 1, "mtime": 1.0},
        {"path": bad_path, "size": 2, "mtime": 2.0},
    ]
    # json.dumps writes the surrogate as the escape `\udcff`: valid UTF-8 on the wire, as a
    # client (or a hostile station) sends it
    frame = json.dumps({"v": 1, "type": "file_list", "card_id": "CARD-A", "files": files})
    async with (
        running_hub(hub_case.settings) as hub,
        open_detector(hub.ws, token_b) as good,
        open_detector(hub.ws, token_a) as ws,
    ):
        await ws.send(frame)
        refused = await recv_hub(ws)
        assert isinstance(refused, protocol.FilesRefused)
        [entry] = refused.files
        assert "not valid Unicode" in entry.reason
        await _station_b_still_lists(hub_case, good)
        await asyncio.wait_for(await ws.ping(), 5)  # station-a stays connected too
    events = await topic_values(hub_case.settings.kafka_url, hub_case.names.detector_events)
    by_station = {str(e["detector_id"]): e for e in events}
    assert set(by_station) == {"station-a", "station-b"}
    kept = by_station["station-a"]["files"]
    assert isinstance(kept, list) and [f["path"] for f in kept] == [GOOD_PATH]


NUL_AND_LONG_PATHS = (
    "/api/cards/a%00b",
    "/api/cards/a%00b/files",
    "/api/sessions/a%00b",
    "/api/executions/1%00",
    "/api/executions/1/steps/a%00b/logs",
    "/api/files/1%00/frame.jpg",
    "/media/share/a%00b.mp4",
    "/media/output/a%00b.jpg",
    "/media/share/" + "x" * 5000,
    "/media/output/" + "y/" * 3000 + "z.mp4",
)


# red-team D13/D14: a NUL in a path parameter was a 500 with a raw NUL in the log; a 5,000-char
# /media/share/... a plain-text 500
async def test_nul_and_too_long_paths_are_json_4xx_and_the_hub_keeps_answering(
    hub_case: HubCase, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    settings = hub_case.settings
    (settings.output_dir / "N").mkdir(parents=True)
    (settings.output_dir / "N" / "N.jpg").write_bytes(b"\xff\xd8poster")
    token_b = await new_detector(hub_case.sessions, "station-b")
    async with (
        running_hub(settings) as hub,
        open_detector(hub.ws, token_b) as good,
        httpx.AsyncClient(base_url=hub.http, timeout=20) as c,
    ):
        for path in NUL_AND_LONG_PATHS:
            r = await c.get(path)
            assert 400 <= r.status_code < 500, (path[:60], r.status_code, r.text[:200])
            assert r.headers["content-type"].startswith("application/json"), path[:60]
            assert set(r.json()["error"]) == {"code", "message"}, path[:60]
        auth = {"Authorization": f"Bearer {settings.admin_token.get_secret_value()}"}
        for path, body in (
            ("/api/executions/1/steps/a%00b/retry", None),
            ("/api/sessions/a%00b/assign", {"booking_id": "BK-1", "passenger": "Ann"}),
        ):
            r = await c.post(path, headers=auth, json=body)
            assert r.status_code == 404 and r.json()["error"]["code"] == "not_found", r.text
        ok = await c.get("/media/output/N/N.jpg")
        assert ok.status_code == 200 and ok.content == b"\xff\xd8poster"
        assert (await c.get("/api/health")).status_code == 200
        await _station_b_still_lists(hub_case, good)
    raw_nul = [r.name for r in caplog.records if "\x00" in r.getMessage()]
    assert raw_nul == [], raw_nul


# red-team D18: production started with the admin token `a` or `" "`
@pytest.mark.parametrize(
    "token",
    ["a", " ", " " * 40, "x" * (MIN_ADMIN_TOKEN_CHARS - 1)],
    ids=["a", "space", "40-spaces", "31-chars"],
)
def test_a_production_hub_refuses_to_start_with_a_weak_admin_token(
    hub_case: HubCase, token: str, tmp_path: Path
) -> None:
    env = settings_env(hub_case.settings) | {
        "SKYREEL_ENVIRONMENT": "production",
        "SKYREEL_ADMIN_TOKEN": token,
    }
    done = subprocess.run(
        [sys.executable, "-m", "streams.cli.main", "hub"],
        env=env,
        cwd=tmp_path,  # no .env of the worktree
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, (done.returncode, done.stderr[-2000:])
    assert f"at least {MIN_ADMIN_TOKEN_CHARS} random characters" in done.stderr
    if len(token.strip()) > 8:
        assert token not in done.stderr  # the secret itself is not echoed


# red-team D18: with a long random token production runs; the weak one is refused, reads go on
async def test_a_production_hub_with_a_strong_token_refuses_the_weak_one(
    hub_case: HubCase,
) -> None:
    strong = "3f9a" * 16
    settings = hub_case.settings.model_copy(
        update={"environment": "production", "admin_token": SecretStr(strong)}
    )
    async with (
        running_hub(settings) as hub,
        httpx.AsyncClient(base_url=hub.http, timeout=20) as c,
    ):
        for token in ("a", strong[:-1]):
            r = await c.post(
                "/api/executions/1/retry", headers={"Authorization": f"Bearer {token}"}
            )
            assert r.status_code == 401, (token, r.text)
        r = await c.post("/api/executions/1/retry", headers={"Authorization": f"Bearer {strong}"})
        assert r.status_code == 404, r.text  # past the token: there is no execution 1
        assert (await c.get("/api/health")).status_code == 200
