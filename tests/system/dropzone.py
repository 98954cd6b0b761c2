"""Helpers of the whole-system tests (tests/system and tests/faults): the children a dropzone
runs (hub, Faust worker, render worker, detectors), the demo card they work on, and what the
pipeline looks like once it has settled."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from support import Proc, settings_env

from agents.demo_card import DemoCard, write_demo_card
from storage.detectors import register_detector
from streams.settings import Settings


async def token_for(sessions: async_sessionmaker[AsyncSession], detector_id: str) -> str:
    async with sessions() as session, session.begin():
        return (await register_detector(session, detector_id, detector_id)).token


def detector(
    spawn: Callable[..., Proc],
    s: Settings,
    token: str,
    cards: Path,
    name: str = "detector",
    env: dict[str, str] | None = None,
) -> Proc:
    """A station client on the hub of ``s``, watching ``cards`` and copying to its share."""
    return spawn(
        "detector",
        "--hub",
        f"ws://127.0.0.1:{s.hub_port}/ws/detector",
        f"--token={token}",
        "--share",
        str(s.share_root),
        "--watch",
        str(cards),
        env=env,
        name=name,
    )


def start_system(
    spawn: Callable[..., Proc], s: Settings, token: str, cards: Path
) -> dict[str, Proc]:
    env = settings_env(s)
    procs = {
        "hub": spawn("streams.cli", "hub", env=env, name="hub"),
        "worker": spawn("streams.cli", "worker", env=env, name="worker"),
        "render": spawn("streams.cli", "render-worker", env=env, name="render"),
    }
    procs["detector"] = detector(spawn, s, token, cards, env=env)
    return procs


@dataclass
class Site:
    """One test's dropzone: its children, its sessions and the folder its detector watches."""

    spawn: Callable[..., Proc]
    sessions: async_sessionmaker[AsyncSession]
    cards: Path
    procs: dict[str, Proc] = field(default_factory=dict)

    def card(
        self, name: str, jumps: int, footage_seconds: float = 1.5, folder: Path | None = None
    ) -> DemoCard:
        """A demo card of small frames in the watched folder, or in ``folder`` to be moved in
        later (``footage_seconds``: the camera check before the first ticket; each jump's
        recording is its synthetic jump's length)."""
        return write_demo_card(
            (folder or self.cards) / name,
            jumps,
            footage_seconds=footage_seconds,
            qr_seconds=1.5,
            size=(320, 180),
        )

    async def token(self, station: str) -> str:
        return await token_for(self.sessions, station)

    async def start(self, s: Settings, station: str) -> dict[str, Proc]:
        """The whole system with one detector, registered as ``station``."""
        self.procs.update(start_system(self.spawn, s, await self.token(station), self.cards))
        return self.procs


async def jump_states(pg: asyncpg.Connection) -> dict[str, str]:
    rows = await pg.fetch(
        "SELECT s.key, s.status AS session, e.status FROM jump_session s "
        "LEFT JOIN pipeline_execution e ON e.id = s.execution_id"
    )
    return {r["key"]: f"{r['session']}/{r['status']}" for r in rows}


async def settled(pg: asyncpg.Connection, rendered: int) -> bool:
    done = await pg.fetchval(
        "SELECT count(*) FROM pipeline_execution WHERE pipeline = 'jump' AND status = 'succeeded'"
    )
    waiting = await pg.fetchval(
        "SELECT count(*) FROM pipeline_execution WHERE pipeline = 'jump' AND status = 'waiting'"
    )
    return bool(done == rendered and waiting == 2)


async def print_open_steps(pg: asyncpg.Connection) -> None:
    """Print every step not succeeded (on a failure, for whoever reads the log)."""
    for r in await pg.fetch(
        "SELECT e.key, s.name, s.status, s.attempt, s.worker, s.waiting_for, s.error "
        "FROM pipeline_step s JOIN pipeline_execution e ON e.id = s.execution_id "
        "WHERE s.status <> 'succeeded' ORDER BY e.id, s.name"
    ):
        print(dict(r))


async def any_row(pg: asyncpg.Connection, count_sql: str) -> bool:
    """Whether a ``SELECT count(*)`` counts anything."""
    return bool(await pg.fetchval(count_sql))


async def explain(pg: asyncpg.Connection, procs: dict[str, Proc] | None = None) -> None:
    """Print what the pipeline looks like (on a failure, for whoever reads the log)."""
    await print_open_steps(pg)
    for r in await pg.fetch(
        "SELECT s.name, l.attempt, l.at, l.actor, l.message FROM pipeline_step_log l "
        "JOIN pipeline_step s ON s.id = l.step_id WHERE s.status <> 'succeeded' ORDER BY l.id"
    ):
        print("log", dict(r))
    for r in await pg.fetch(
        "SELECT s.name, a.attempt, a.status, a.worker, a.started_at, a.finished_at "
        "FROM pipeline_step_attempt a JOIN pipeline_step s ON s.id = a.step_id "
        "WHERE s.status <> 'succeeded' ORDER BY s.name, a.attempt"
    ):
        print("attempt", dict(r))
    for name, p in (procs or {}).items():
        print(f"----- {name}\n{p.output()[-4000:]}")


@contextlib.asynccontextmanager
async def explained(
    pg: asyncpg.Connection,
    procs: dict[str, Proc] | None = None,
    how: Callable[[asyncpg.Connection, dict[str, Proc]], Awaitable[None]] | None = None,
) -> AsyncIterator[None]:
    """A block that, when an assertion in it fails, prints what the pipeline looks like (with
    ``how``, else ``explain``) before the failure goes on."""
    try:
        yield
    except AssertionError:
        await (how or explain)(pg, procs or {})
        raise


def outputs(s: Settings) -> list[Path]:
    return sorted(s.output_dir.glob("*/*.mp4"))


def larger_frames(s: Settings, preset: str) -> Settings:
    """Larger frames and a slower preset, so that a render is still running when a test strikes."""
    return s.model_copy(
        update={
            "render_width": 960,
            "render_height": 540,
            "render_fps": 30,
            "render_preset": preset,
        }
    )


async def edits(pg: asyncpg.Connection) -> dict[str, dict[str, Any]]:
    """The `phases` step's output (the edit) of each session with a booking, by booking id."""
    rows = await pg.fetch(
        "SELECT js.booking_id, s.output FROM pipeline_step s "
        "JOIN jump_session js ON js.execution_id = s.execution_id "
        "WHERE s.name = 'phases' AND s.status = 'succeeded' AND js.booking_id IS NOT NULL"
    )
    return {r["booking_id"]: json.loads(r["output"]) for r in rows}


def assert_edited(card: DemoCard, found: dict[str, dict[str, Any]]) -> None:
    """Every readable demo jump was edited without a person: its exit within 1 s of the truth."""
    for jump in card.readable_jumps:
        edit = found.get(jump.booking_id)
        assert edit is not None, (jump.booking_id, sorted(found))
        assert edit["needs_review"] is False, (jump.booking_id, edit["reasons"])
        assert jump.truth is not None and edit["edl"]["spans"], jump.booking_id
        assert abs(edit["marks"]["exit"]["t"] - jump.truth.exit_s) <= 1.0, jump.booking_id
