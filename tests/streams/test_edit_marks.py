"""Operator marks (issue 15, item 7) through the API, the engine's command applier and the CLI, on
real PostgreSQL and the broker: bad bodies get a clear 4xx (never a 500), good ones are stored,
approve a session waiting because of its edit, and set its phases step, render and publish to run
again — once per command id."""

from __future__ import annotations

import asyncio
import json
import sys
from dataclasses import dataclass

import asyncpg
import httpx
import pytest
from pydantic import ValidationError
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from status_harness import AUTH, api_settings, serve
from support import settings_env

from agents.commands import Commands
from agents.jobs.edit_marks import set_marks
from agents.pipeline.dispatch import Emitter
from storage import commands as store
from storage import session_edit
from storage.enums import CommandAction, CommandErrorKind
from streams import commands, edit_request, records
from streams.settings import Settings

RECORDING_S = 65.5
SESSION = "card-E:1"
NO_PHASES = "card-E:2"


async def _nowhere(key: bytes, value: bytes) -> object:
    return None


# --- the marks themselves (pure) -------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"opening": 70, "landing": 300}, "exit: Field required"),
        ({"exit": 80, "opening": 70}, "exit (80.0 s) must come before opening (70.0 s)"),
        ({"exit": 10, "opening": 70, "landing": 60}, "must come before landing"),
        ({"exit": -1, "opening": 70}, "exit: Input should be greater than or equal to 0"),
        ({"exit": "12", "opening": 70}, "exit: must be a number of seconds"),
        ({"exit": True, "opening": 70}, "exit: must be a number of seconds"),
        ({"exit": 1, "opening": [70]}, "opening: must be a number of seconds"),
        ({"exit": float("nan"), "opening": 70}, "exit: Input should be a finite number"),
        ({"exit": 1, "opening": 2, "landing": float("inf")}, "landing: Input should be a finite"),
        ({"exit": 1, "opening": 70, "music": 1}, "music: Extra inputs are not permitted"),
        ([1, 2, 3], "must be a JSON object"),
        (None, "must be a JSON object"),
    ],
)
def test_bad_marks_are_refused_with_the_reason(body: object, message: str) -> None:
    with pytest.raises(edit_request.EditRejected) as caught:
        edit_request.parse_marks(body)
    assert caught.value.kind is edit_request.Rejection.INVALID
    assert message in caught.value.message


def test_marks_in_order_within_the_recording_pass() -> None:
    marks = edit_request.parse_marks({"exit": 12.5, "opening": 40, "landing": None})
    assert marks.as_dict() == {"exit": 12.5, "opening": 40.0, "landing": None}
    assert marks.beyond(RECORDING_S) == ""
    late = records.EditMarks(exit=10, opening=20, landing=70)
    assert late.beyond(RECORDING_S) == (
        "landing at 70.0 s is beyond the end of the recording (65.5 s)"
    )
    with pytest.raises(ValidationError):
        records.EditMarks(exit=float("nan"), opening=20)


def test_an_edit_command_round_trips_on_the_topic() -> None:
    cmd = commands.new_command(
        CommandAction.EDIT, "ops", session_key=SESSION, marks=records.EditMarks(exit=1, opening=2)
    )
    back = records.decode(records.OperatorCommand, records.encode(cmd))
    assert back.marks == cmd.marks and back.action is CommandAction.EDIT


# --- storage, engine, API, CLI -------------------------------------------------------------------


@dataclass
class Seeded:
    jump: int
    other: int


_STEP = text(
    "INSERT INTO pipeline_step (execution_id, name, kind, depends_on, status, attempt, "
    "output, waiting_for) VALUES (:e, :n, :k, CAST(:d AS text[]), :s, :a, "
    "CAST(:o AS jsonb), :w)"
)


async def seed(engine: AsyncEngine) -> Seeded:
    """A jump whose detection was not sure (needs_review after its booking; the render waits for
    a person), and one whose pipeline started without the edit."""
    async with engine.begin() as conn:
        await conn.execute(text("INSERT INTO card (id, label) VALUES ('card-E', 'GOPRO-E')"))
        ids = []
        for n, (name, dur) in enumerate((("GX010002.MP4", 40.0), ("GX020002.MP4", 25.5))):
            values = {"n": name, "p": f"card-E/{name}", "m": 1_700_000_000_000 + n, "d": dur}
            sql = text(
                "INSERT INTO imported_file (card_id, name, path, size, mtime_ms, kind, "
                "status, stored_path, duration_s, session_key) VALUES ('card-E', :n, "
                ":p, 1000, :m, 'footage', 'imported', :p, :d, :k) RETURNING id"
            )
            ids.append(await conn.scalar(sql, {**values, "k": SESSION}))
        eids = []
        for key in (SESSION, NO_PHASES):
            eids.append(
                await conn.scalar(
                    text(
                        "INSERT INTO pipeline_execution (key, pipeline, subject_type, "
                        "subject_id, status) VALUES (:k, 'jump', 'session', :s, 'waiting') "
                        "RETURNING id"
                    ),
                    {"k": f"jump:{key}", "s": key},
                )
            )
        for key, status, files, eid in (
            (SESSION, "needs_review", ids, eids[0]),
            (NO_PHASES, "decoded", [], eids[1]),
        ):
            await conn.execute(
                text(
                    "INSERT INTO jump_session (key, card_id, status, booking_id, passenger, "
                    "file_ids, execution_id, review_reason) VALUES (:k, 'card-E', :st, 'BK-E', "
                    "'Eva', CAST(:ids AS text[]), :e, :r)"
                ),
                {"k": key, "st": status, "ids": [str(i) for i in files], "e": eid,
                 "r": "the automatic edit is not sure: no freefall found" if files else ""},
            )  # fmt: skip
        output = json.dumps({"needs_review": True, "reasons": ["no freefall found"],
                             "recording_s": RECORDING_S, "edl": None})  # fmt: skip
        for eid, name, kind, deps, status, attempt, out, waiting in (
            (eids[0], "booking", "booking", [], "succeeded", 1, "{}", ""),
            (eids[0], "phases", "phases", ["?probe:*"], "succeeded", 1, output, ""),
            (eids[0], "render", "render", ["booking", "phases"], "running", 1, None,
             "waiting for a person: no freefall found"),
            (eids[0], "publish", "publish", ["render"], "pending", 0, None, ""),
            (eids[1], "booking", "booking", [], "succeeded", 1, "{}", ""),
            (eids[1], "render", "render", ["booking"], "succeeded", 1, "{}", ""),
        ):  # fmt: skip
            await conn.execute(
                _STEP,
                {"e": eid, "n": name, "k": kind, "d": deps, "s": status, "a": attempt, "o": out,
                 "w": waiting},
            )  # fmt: skip
    return Seeded(eids[0], eids[1])


async def steps(pg: asyncpg.Connection, eid: int) -> dict[str, tuple[str, int]]:
    rows = await pg.fetch(
        "SELECT name, status, attempt FROM pipeline_step WHERE execution_id = $1", eid
    )
    return {r["name"]: (r["status"], r["attempt"]) for r in rows}


async def test_the_engine_stores_marks_approves_and_reruns_once_per_command(
    clean_db: AsyncEngine, pg: asyncpg.Connection
) -> None:
    s = await seed(clean_db)
    sent: list[bytes] = []

    async def requests(key: bytes, value: bytes) -> object:
        sent.append(value)
        return None

    ops = Commands(clean_db, Emitter(requests, _nowhere), _nowhere)
    marks = records.EditMarks(exit=12.5, opening=40.0, landing=60.0)
    cmd = commands.new_command(CommandAction.EDIT, "ops", session_key=SESSION, marks=marks)
    await ops.handle(records.encode(cmd))
    await ops.handle(records.encode(cmd))  # redelivered
    assert await steps(pg, s.jump) == {
        "booking": ("succeeded", 1),
        "phases": ("ready", 2),
        "render": ("pending", 1),
        "publish": ("pending", 0),
    }
    assert len(sent) == 1  # one phases request
    assert records.decode(records.StepRequest, sent[0]).step == "phases"
    row = await pg.fetchrow("SELECT status, assigned_by FROM jump_session WHERE key = $1", SESSION)
    assert (row["status"], row["assigned_by"]) == ("assigned", "ops")
    async with clean_db.connect() as conn:
        stored = await session_edit.load_marks(conn, SESSION)
        found = await store.outcome(conn, cmd.command_id)
    assert stored is not None and (stored.exit, stored.opening, stored.landing) == (12.5, 40, 60)
    assert stored.set_by == "ops" and stored.command_id == cmd.command_id
    assert found is not None and found.ok and found.action is CommandAction.EDIT
    assert found.result["rerun"] == ["phases"] and found.result["approved"] is True
    attempt = await pg.fetchval(
        "SELECT a.status FROM pipeline_step_attempt a JOIN pipeline_step p ON p.id = a.step_id "
        "WHERE p.execution_id = $1 AND p.name = 'render'",
        s.jump,
    )
    assert attempt in (None, "cancelled")  # seeded without an attempt row: nothing to close

    # applied again after a crash before its outcome was stored: nothing is run a second time
    again = await set_marks(clean_db, Emitter(requests, _nowhere), SESSION, marks, "ops",
                            cmd.command_id)  # fmt: skip
    assert again.applied_before and again.rerun == []
    assert len(sent) == 1 and (await steps(pg, s.jump))["phases"] == ("ready", 2)


async def test_marks_do_not_approve_a_session_still_waiting_for_its_booking(
    clean_db: AsyncEngine, pg: asyncpg.Connection
) -> None:
    s = await seed(clean_db)
    # the ticket next to it could not be read: the booking itself waits for a person
    await pg.execute(
        "UPDATE pipeline_step SET status = 'running', waiting_for = 'needs a booking: confirm' "
        "WHERE execution_id = $1 AND name = 'booking'",
        s.jump,
    )
    done = await set_marks(clean_db, Emitter(_nowhere, _nowhere), SESSION,
                           records.EditMarks(exit=1, opening=2), "ops", "c-1")  # fmt: skip
    assert done.approved is False and done.rerun == ["phases"]
    status = await pg.fetchval("SELECT status FROM jump_session WHERE key = $1", SESSION)
    assert status == "needs_review"  # an assign still decides the booking


async def test_the_engine_refuses_what_it_cannot_apply(clean_db: AsyncEngine) -> None:
    await seed(clean_db)
    ops = Commands(clean_db, Emitter(_nowhere, _nowhere), _nowhere)
    fine = records.EditMarks(exit=1, opening=2)
    cases = {
        "nobody:1": (fine, CommandErrorKind.NOT_FOUND, "session 'nobody:1' not found"),
        NO_PHASES: (fine, CommandErrorKind.CONFLICT, "has no phases step"),
        SESSION: (
            records.EditMarks(exit=10, opening=70),
            CommandErrorKind.CONFLICT,
            "opening at 70.0 s is beyond the end of the recording (65.5 s)",
        ),
    }
    for key, (marks, kind, message) in cases.items():
        cmd = commands.new_command(CommandAction.EDIT, "ops", session_key=key, marks=marks)
        await ops.apply(cmd)
        async with clean_db.connect() as conn:
            found = await store.outcome(conn, cmd.command_id)
        assert found is not None and not found.ok, key
        assert found.error_kind is kind and message in found.message, found.message
    bare = commands.new_command(CommandAction.EDIT, "ops", session_key=SESSION)
    await ops.apply(bare)
    async with clean_db.connect() as conn:
        found = await store.outcome(conn, bare.command_id)
    assert found is not None and "needs marks" in found.message


async def test_the_api_answers_bad_bodies_with_4xx_and_good_ones_with_202(
    settings: Settings, clean_db: AsyncEngine, pg: asyncpg.Connection
) -> None:
    s = await seed(clean_db)
    url = f"/api/sessions/{SESSION}/edit"
    async with serve(api_settings(settings)) as hub, httpx.AsyncClient(base_url=hub.url) as c:
        assert (await c.post(url, json={"exit": 1, "opening": 2})).status_code == 401
        for body, status, message in (
            ({"opening": 70}, 422, "exit: Field required"),
            ({"exit": 71, "opening": 70}, 422, "must come before opening"),
            ({"exit": "x", "opening": 70}, 422, "exit: must be a number of seconds"),
            ({"exit": 10, "opening": 20, "landing": 66}, 422, "beyond the end of the recording"),
            ("exit=1", 422, "must be a JSON object"),
        ):
            r = await c.post(url, json=body, headers=AUTH)
            assert r.status_code == status, r.text
            assert message in r.json()["error"]["message"], r.text
        r = await c.post(url, content=b"{not json", headers=AUTH)
        assert r.status_code == 422 and "not JSON" in r.text
        r = await c.post("/api/sessions/nobody:9/edit", json={"exit": 1, "opening": 2},
                         headers=AUTH)  # fmt: skip
        assert r.status_code == 404, r.text
        r = await c.post(f"/api/sessions/{NO_PHASES}/edit", json={"exit": 1, "opening": 2},
                         headers=AUTH)  # fmt: skip
        assert r.status_code == 409 and "no phases step" in r.text
        assert await pg.fetchval("SELECT count(*) FROM operator_command") == 0  # none was sent

        good = {"exit": 15.5, "opening": 44, "landing": 62}
        r = await c.post(url, json=good, headers=AUTH)
        assert r.status_code == 202, r.text
        body = r.json()
        assert body["key"] == SESSION and body["execution_id"] == s.jump
        assert body["marks"] == {"exit": 15.5, "opening": 44.0, "landing": 62.0}
        assert body["status"] == "assigned" and body["approved"] is True
        assert body["rerun"] == ["phases"]
    assert (await steps(pg, s.jump))["phases"] == ("ready", 2)
    marks = await pg.fetchval("SELECT marks FROM session_edit WHERE session_key = $1", SESSION)
    assert json.loads(marks) == {"exit": 15.5, "opening": 44.0, "landing": 62.0}


async def cli(settings: Settings, *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "streams.cli", *args, env=settings_env(settings),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return int(proc.returncode or 0), out.decode(), err.decode()


async def test_skyreel_edit_checks_then_sends_the_command(
    settings: Settings, clean_db: AsyncEngine, pg: asyncpg.Connection
) -> None:
    s = await seed(clean_db)
    code, out, _ = await cli(settings, "edit", "--help")
    assert (
        code == 0
        and "--landing" in out
        and "seconds on its recording" in out.replace("\n", " ").replace("  ", " ")
    )
    async with serve(api_settings(settings)):
        code, _, err = await cli(settings, "edit", SESSION, "--exit", "80", "--opening", "70")
        assert code == 2 and "exit (80.0 s) must come before opening (70.0 s)" in err
        code, _, err = await cli(settings, "edit", SESSION, "--exit", "x", "--opening", "70")
        assert code == 2 and "invalid float value" in err
        code, _, err = await cli(settings, "edit", SESSION, "--opening", "70")
        assert code == 2 and "--exit" in err
        code, _, err = await cli(settings, "edit", "nobody:1", "--exit", "1", "--opening", "2")
        assert code == 1 and "not found" in err
        code, _, err = await cli(settings, "edit", NO_PHASES, "--exit", "1", "--opening", "2")
        assert code == 1 and "no phases step" in err
        code, out, err = await cli(
            settings, "edit", SESSION, "--exit", "12.5", "--opening", "40", "--landing", "60"
        )
        assert code == 0, err
        assert "marks set (exit 12.5 s, opening 40 s, landing 60 s); approved" in out
    assert (await steps(pg, s.jump))["phases"] == ("ready", 2)
    actor = await pg.fetchval("SELECT set_by FROM session_edit WHERE session_key = $1", SESSION)
    assert actor.startswith("cli:")
