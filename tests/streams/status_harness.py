"""Helpers for the status API tests: the hub app under uvicorn, seeded rows, schema checks."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import jsonschema
import uvicorn
from command_harness import running_commands
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette
from support import wait_for

from streams.hub.api import StatusApi
from streams.hub.server import create_app
from streams.settings import Settings

TOKEN = "test-admin-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def api_settings(settings: Settings, **update: object) -> Settings:
    return settings.model_copy(
        update={"admin_token": type(settings.admin_token)(TOKEN), "hub_id": "statushub", **update}
    )


@dataclass
class Served:
    app: Starlette
    url: str

    @property
    def ws(self) -> str:
        return self.url.replace("http://", "ws://") + "/ws/status"

    def status_api(self) -> StatusApi:
        found = [r for r in self.app.routes if getattr(r, "path", "") == "/ws/status"]
        assert found, "the hub mounts /ws/status"
        endpoint = found[0].endpoint  # type: ignore[attr-defined]
        owner = endpoint.__self__
        assert isinstance(owner, StatusApi)
        return owner


@contextlib.asynccontextmanager
async def serve(settings: Settings) -> AsyncIterator[Served]:
    """The full hub app under a real uvicorn in this loop, with the engine's command applier
    (operator actions are commands it applies); waits until /api/health answers."""
    async with running_commands(settings), serve_hub(settings) as served:
        yield served


@contextlib.asynccontextmanager
async def serve_hub(settings: Settings) -> AsyncIterator[Served]:
    """The hub alone: its operator actions stay queued (202) unless an engine runs."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    app = create_app(settings)
    config = uvicorn.Config(
        app, ws="websockets-sansio", lifespan="on", log_config=None, timeout_graceful_shutdown=3
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    url = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient() as client:

            async def answers() -> bool:
                try:
                    return (await client.get(f"{url}/api/health")).status_code in (200, 503)
                except httpx.HTTPError:
                    return False

            await wait_for(answers, timeout=30, what="the hub to answer")
        yield Served(app, url)
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 20)
        sock.close()


# --- seeded rows ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Seeded:
    jump: int  # a running jump execution (session card-A:1)
    card_import: int  # a failed card import (step copy failed, `register` blocked)
    session: str
    qr_file: int


_STEP_SQL = text(
    "INSERT INTO pipeline_step (execution_id, name, kind, depends_on, status, attempt, "
    "max_attempts, progress, error, started_at, finished_at) VALUES (:e, :n, :k, "
    "CAST(:d AS text[]), CAST(:s AS text), CAST(:a AS int), 3, :p, :err, "
    "CASE WHEN CAST(:a AS int) > 0 THEN now() - interval '5 seconds' END, "
    "CASE WHEN CAST(:s AS text) IN ('succeeded', 'failed') THEN now() END) RETURNING id"
)


async def seed(engine: AsyncEngine, qr_stored_path: str | None = None) -> Seeded:
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO detector (id, name, token_hash, current_card_id) "
                "VALUES ('station-1', 'Hangar 1', repeat('a', 64), 'card-A')"
            )
        )
        await conn.execute(text("INSERT INTO card (id, label) VALUES ('card-A', 'GOPRO-A')"))
        qr = await conn.scalar(
            text(
                "INSERT INTO imported_file (card_id, name, path, size, mtime_ms, kind, status, "
                "stored_path, session_key) VALUES ('card-A', 'GX010001.MP4', 'DCIM/GX010001.MP4', "
                "1000, 1700000000000, 'qr_candidate', :st, :p, 'card-A:1') RETURNING id"
            ),
            {"p": qr_stored_path, "st": "imported" if qr_stored_path else "listed"},
        )
        foot = await conn.scalar(
            text(
                "INSERT INTO imported_file (card_id, name, path, size, mtime_ms, kind, status, "
                "session_key) VALUES ('card-A', 'GX010002.MP4', 'DCIM/GX010002.MP4', 9000, "
                "1700000100000, 'footage', 'imported', 'card-A:1') RETURNING id"
            )
        )
        await conn.execute(
            text("INSERT INTO qr_scan (file_id, status, reason) VALUES (:f, 'unreadable', 'blur')"),
            {"f": qr},
        )
        jump = await conn.scalar(
            text(
                "INSERT INTO pipeline_execution (key, pipeline, subject_type, subject_id, status) "
                "VALUES ('jump:card-A:1', 'jump', 'session', 'card-A:1', 'running') RETURNING id"
            )
        )
        await conn.execute(
            text(
                "INSERT INTO jump_session (key, card_id, status, qr_file_id, file_ids, "
                "execution_id) VALUES ('card-A:1', 'card-A', 'needs_review', :q, "
                "CAST(:ids AS text[]), :e)"
            ),
            {"q": qr, "ids": [str(qr), str(foot)], "e": jump},
        )
        for name, kind, deps, status, attempt, progress in (
            ("probe:1", "probe", [], "succeeded", 1, None),
            ("probe:2", "probe", [], "running", 1, 0.25),
            ("render", "render", ["probe:*"], "pending", 0, None),
        ):
            await conn.execute(
                _STEP_SQL,
                {
                    "e": jump,
                    "n": name,
                    "k": kind,
                    "d": deps,
                    "s": status,
                    "a": attempt,
                    "p": progress,
                    "err": "",
                },
            )
        card_import = await conn.scalar(
            text(
                "INSERT INTO pipeline_execution (key, pipeline, subject_type, subject_id, status) "
                "VALUES ('import:card-A', 'card_import', 'card', 'card-A', 'failed') RETURNING id"
            )
        )
        copy_id = await conn.scalar(
            _STEP_SQL,
            {
                "e": card_import,
                "n": "copy",
                "k": "noop",
                "d": [],
                "s": "failed",
                "a": 1,
                "p": None,
                "err": "card pulled out",
            },
        )
        await conn.execute(
            _STEP_SQL,
            {
                "e": card_import,
                "n": "register",
                "k": "noop",
                "d": ["copy"],
                "s": "pending",
                "a": 0,
                "p": None,
                "err": "",
            },
        )
        await conn.execute(
            text(
                "INSERT INTO pipeline_step_attempt (step_id, attempt, status, error, started_at, "
                "finished_at) VALUES (:s, 1, 'failed', 'card pulled out', now(), now())"
            ),
            {"s": copy_id},
        )
        await conn.execute(
            text(
                "INSERT INTO pipeline_step_log (step_id, attempt, level, message) VALUES "
                "(:s, 1, 'error', 'card pulled out at 40%')"
            ),
            {"s": copy_id},
        )
        await conn.execute(
            text(
                "INSERT INTO dead_letter (topic, key, payload, error) "
                "VALUES ('x.copy-results', 'station-1', '{}', 'bad record')"
            )
        )
        await conn.execute(
            text(
                "INSERT INTO counter (name, value) "
                "VALUES ('files_imported', 2), ('steps_failed', 1)"
            )
        )
    return Seeded(int(jump), int(card_import), "card-A:1", int(qr))


@dataclass(frozen=True)
class Trouble:
    """What `seed_trouble` wrote, in the words the API, the CLI and the dashboard must show."""

    review_reason: str = "the QR clip could not be read"
    clip_warning: str = "GX010045.MP4 left out of the video: not a readable video (<moov> missing)"
    session_clock: str = "camera clock looks wrong: footage dated 2016-01-01"
    card_clock: str = "camera clock looks wrong: the card's clips go back in time"
    skipped_path: str = "DCIM/100GOPRO/GX01\ufffd.MP4"
    skipped_reason: str = "name is not valid Unicode"
    warned_session: str = "card-B:1"


async def seed_trouble(engine: AsyncEngine) -> Trouble:
    """On top of `seed`: a review reason and a clip warning on card-A:1; card-A nearly full,
    with a skipped file and a clock warning; card-B pulled out before two files were copied
    (one failed) with a warned session of its own; card-C fully imported and present."""
    t = Trouble()
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "UPDATE jump_session SET review_reason = :r, warnings = CAST(:w AS jsonb) "
                "WHERE key = 'card-A:1'"
            ),
            {"r": t.review_reason, "w": json.dumps([t.clip_warning])},
        )
        await conn.execute(
            text(
                "UPDATE card SET free_bytes = 2000000000, capacity_bytes = 64000000000, "
                "clock_warning = :c, skipped = CAST(:s AS jsonb), last_seen_at = now() "
                "WHERE id = 'card-A'"
            ),
            {
                "c": t.card_clock,
                "s": json.dumps([{"path": t.skipped_path, "reason": t.skipped_reason}]),
            },
        )
        await conn.execute(
            text(
                "INSERT INTO card (id, label, present, free_bytes, capacity_bytes, last_seen_at) "
                "VALUES ('card-B', 'GOPRO-B', false, 30000000000, 64000000000, "
                "now() - interval '1 minute'), "
                "('card-C', '', true, 50000000000, 64000000000, now() - interval '2 minutes')"
            )
        )
        await conn.execute(
            text(
                "INSERT INTO imported_file (card_id, name, path, size, mtime_ms, kind, status, "
                "reason) VALUES "
                "('card-B', 'GX010009.MP4', 'DCIM/GX010009.MP4', 5000, 1700000200000, "
                "'footage', 'requested', ''), "
                "('card-B', 'GX010010.MP4', 'DCIM/GX010010.MP4', 6000, 1700000300000, "
                "'footage', 'failed', 'read error at 40%'), "
                "('card-B', 'GL010009.LRV', 'DCIM/GL010009.LRV', 500, 1700000200000, "
                "'proxy', 'ignored', ''), "
                "('card-C', 'GX010020.MP4', 'DCIM/GX010020.MP4', 7000, 1700000400000, "
                "'footage', 'imported', '')"
            )
        )
        await conn.execute(
            text(
                "INSERT INTO jump_session (key, card_id, status, booking_id, passenger, "
                "warnings, created_at) VALUES (:k, 'card-B', 'decoded', 'BK-7', 'Bea', "
                "CAST(:w AS jsonb), now() - interval '1 hour')"
            ),
            {"k": t.warned_session, "w": json.dumps([t.session_clock])},
        )
    return t


# --- schema checks -------------------------------------------------------------------------------


def validator(document: dict[str, object], schema_name: str) -> jsonschema.Draft202012Validator:
    schema = {"$ref": f"#/components/schemas/{schema_name}", "components": document["components"]}
    return jsonschema.Draft202012Validator(schema)


def check(document: dict[str, object], schema_name: str, body: object) -> None:
    """Raise jsonschema.ValidationError when `body` does not match the served schema."""
    validator(document, schema_name).validate(body)


def response_schema_name(document: dict[str, object], path: str, method: str, status: int) -> str:
    paths = document["paths"]
    assert isinstance(paths, dict)
    op = paths[path][method]
    ref = op["responses"][str(status)]["content"]["application/json"]["schema"]["$ref"]
    return str(ref).rsplit("/", 1)[1]


def iter_paths(document: dict[str, object]) -> Iterator[tuple[str, str]]:
    paths = document["paths"]
    assert isinstance(paths, dict)
    for path, ops in paths.items():
        for method in ops:
            yield path, method


def write_tiny_clip(path: Path, seconds: float = 1.0) -> None:
    """A small H.264 clip made with PyAV (the frame endpoint decodes it)."""
    import av
    import numpy as np

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 160, 120, "yuv420p"
        for i in range(int(seconds * 10)):
            img = np.full((120, 160, 3), (i * 20) % 255, dtype=np.uint8)
            img[40:80, 60:100] = (255, 0, 0)
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
