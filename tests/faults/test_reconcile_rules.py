"""The reconciler's re-derivation rules, one by one, against real PostgreSQL, Redis (saq) and
files: each builds the state a lost message leaves behind and checks the rule sends exactly
what that message would have (or requeues what is gone) — and nothing when nothing was lost."""

from __future__ import annotations

from pathlib import Path

import asyncpg
import ledger_rows
import pytest
from ledger_rows import add_clip, job_settings, render_as_a_worker
from saq.job import Status
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from agents.jobs import landing
from agents.jobs import sessions as jump_sessions
from agents.jobs.context import JobContext
from agents.jobs.publish import missing_clips
from agents.jobs.render import RenderCheck, choose_footage, render_request
from agents.jobs.steps import make_handlers
from agents.pipeline import dag
from agents.pipeline import operations as ops
from agents.pipeline.dispatch import Emitter
from agents.pipeline.handlers import default_handlers
from agents.render.queue import RENDER_FUNCTION
from storage import media
from storage import pipeline as repo
from streams import records
from streams.topics import Names

pytestmark = pytest.mark.timeout(120)
CARD = "card-R"


class Sent:
    """What the rules send: step results and step requests, decoded."""

    def __init__(self) -> None:
        self.results: list[records.StepResult] = []
        self.requests: list[records.StepRequest] = []
        self.copies: list[records.CopyRequest] = []

    async def copy(self, key: bytes, value: bytes) -> object:
        self.copies.append(records.decode(records.CopyRequest, value))
        return None

    async def result(self, key: bytes, value: bytes) -> object:
        self.results.append(records.decode(records.StepResult, value))
        return None

    async def request(self, key: bytes, value: bytes) -> object:
        # a batch of one execution's ready steps: one request per step
        self.requests += records.decode(records.StepRequest, value).expand()
        return None


async def nothing(key: bytes, value: bytes) -> object:
    return None


@pytest.fixture
def sent() -> Sent:
    return Sent()


@pytest.fixture
def jc(
    tmp_path: Path,
    engine: AsyncEngine,
    clean_db: AsyncEngine,
    database_url: str,
    redis_url: str,
    names: Names,
    sent: Sent,
) -> JobContext:
    # generic ledger clips and no `phases` step: the rules of the render without the edit
    settings = job_settings(
        tmp_path, database_url, redis_url=redis_url, topic_prefix=names.prefix, edit_jumps=False
    )
    settings.output_dir.mkdir()
    handlers = default_handlers()
    ctx = JobContext(
        settings, engine, handlers.registry, Emitter(sent.request), sent.result, sent.copy
    )
    make_handlers(ctx, handlers)
    return ctx


async def add_file(
    jc: JobContext,
    name: str,
    *,
    kind: str = "footage",
    status: str = "imported",
    seconds: float | None = 1.0,
    minute: int = 0,
) -> int:
    return await add_clip(
        jc, CARD, name, seconds=seconds, minute=minute, kind=kind, status=status, imported_s_ago=60
    )


async def add_session(jc: JobContext, key: str, file_ids: list[int]) -> None:
    await ledger_rows.add_session(jc, CARD, key, file_ids, "BK-7", "Ana")


async def execution_with(
    jc: JobContext, key: str, steps: list[dag.StepState], inputs: dict[str, dict[str, object]]
) -> int:
    async with jc.engine.begin() as conn:
        eid, _ = await repo.create_execution(
            conn, key=key, pipeline="jump", subject_type="session", subject_id=key
        )
        await repo.add_steps(conn, eid, steps, inputs)
        await ops.promote_all(conn, eid)
    return eid


async def claim(jc: JobContext, eid: int, name: str, *, started_s_ago: float = 60) -> None:
    async with jc.engine.begin() as conn:
        state = ops.state_of((await repo.load_steps(conn, eid, [name]))[0])
        await repo.save_changes(
            conn, eid, [repo.Change(state, dag.start(state, state.attempt), worker="w")]
        )
        await conn.execute(
            text(
                "UPDATE pipeline_step SET started_at = now() - make_interval(secs => :s) "
                "WHERE execution_id = :e AND name = :n"
            ),
            {"s": started_s_ago, "e": eid, "n": name},
        )


async def wait_on(jc: JobContext, eid: int, name: str, reason: str) -> None:
    async with jc.engine.begin() as conn:
        state = ops.state_of((await repo.load_steps(conn, eid, [name]))[0])
        new = dag.wait(state, state.attempt, reason)
        await repo.save_changes(conn, eid, [repo.Change(state, new)])


def render_step(session: str) -> tuple[list[dag.StepState], dict[str, dict[str, object]]]:
    return [dag.StepState("render", "render", max_attempts=2)], {"render": {"session": session}}


async def claimed_render(jc: JobContext, clip_name: str, session: str) -> int:
    """A session of one clip whose jump execution has its render step claimed; the execution."""
    clip = await add_file(jc, clip_name)
    await add_session(jc, session, [clip])
    eid = await execution_with(jc, f"jump:{session}", *render_step(session))
    await claim(jc, eid, "render")
    return eid


# --- copies -------------------------------------------------------------------------------------


async def test_a_copy_step_whose_landing_was_lost_is_told_and_a_failed_one_retried(
    jc: JobContext, sent: Sent, pg: asyncpg.Connection
) -> None:
    landed = await add_file(jc, "GX010001.MP4", kind="qr_candidate", seconds=None)
    other = await add_file(jc, "GX010002.MP4", seconds=None)
    waiting = await add_file(jc, "GX010003.MP4", status="requested", seconds=None)
    steps = [
        dag.StepState(f"copy:{landed}", "copy", spawns=frozenset({f"probe:{landed}*"})),
        dag.StepState(f"copy:{other}", "copy"),
        dag.StepState(f"copy:{waiting}", "copy"),
    ]
    inputs = {f"copy:{landed}": {"file_id": landed, "qr": True}}
    eid = await execution_with(jc, "import:x", steps, inputs)
    for name in (f"copy:{landed}", f"copy:{other}", f"copy:{waiting}"):
        await claim(jc, eid, name)
    async with jc.engine.begin() as conn:  # the card was pulled: this copy failed
        state = ops.state_of((await repo.load_steps(conn, eid, [f"copy:{other}"]))[0])
        failed = dag.apply_result(
            state, 1, dag.Failure("card pulled", False), jc.registry.get("copy")
        )
        await repo.save_changes(conn, eid, [repo.Change(state, failed)])

    assert await landing.reconcile_landed(jc, grace_s=0) == 2
    [told] = sent.results
    assert (told.step, told.attempt, told.status) == (f"copy:{landed}", 1, "succeeded")
    assert [d["name"] for d in told.spawn or []] == [f"probe:{landed}", f"qr:{landed}"]
    assert [(r.step, r.attempt) for r in sent.requests] == [(f"copy:{other}", 2)]
    actor = await pg.fetchval(
        "SELECT l.actor FROM pipeline_step_log l JOIN pipeline_step s ON s.id = l.step_id "
        "WHERE s.name = $1 ORDER BY l.id DESC LIMIT 1",
        f"copy:{other}",
    )
    assert actor == "system:reconcile"
    # within the grace period a landing may still be in flight: nothing is told
    sent.results.clear()
    assert await landing.reconcile_landed(jc, grace_s=3600) == 0
    assert sent.results == []


async def test_a_copy_request_lost_with_the_broker_is_sent_again(
    jc: JobContext, sent: Sent, pg: asyncpg.Connection
) -> None:
    lost = await add_file(jc, "GX010004.MP4", status="requested", seconds=None)
    fresh = await add_file(jc, "GX010005.MP4", status="requested", seconds=None)
    await pg.execute("INSERT INTO detector (id, name, token_hash) VALUES ('st-1', 'st-1', 'x')")
    await pg.execute(
        "UPDATE imported_file SET detector_id = 'st-1', requested_at = now() - "
        "CASE WHEN id = $1 THEN interval '5 minutes' ELSE interval '1 second' END",
        lost,
    )
    steps = [dag.StepState(f"copy:{i}", "copy") for i in (lost, fresh)]
    eid = await execution_with(jc, "import:req", steps, {})
    for i in (lost, fresh):
        await claim(jc, eid, f"copy:{i}")
    assert await landing.reconcile_requested(jc, after_s=60) == 1
    assert [(c.file_id, c.request_id, c.detector_id) for c in sent.copies] == [
        (lost, f"f{lost}", "st-1")
    ]
    # requested again just now: not again on the next pass
    assert await landing.reconcile_requested(jc, after_s=60) == 0


# --- renders ------------------------------------------------------------------------------------


async def test_a_finished_render_job_whose_result_was_lost_is_re_sent(
    jc: JobContext, sent: Sent
) -> None:
    eid = await claimed_render(jc, "GX010010.MP4", f"{CARD}:1")
    check = RenderCheck(jc)
    queue = await check.queue()
    try:
        job = await queue.enqueue(RENDER_FUNCTION, key=f"{eid}:render:1", request={})
        assert job is not None
        assert await check() == 0  # queued: a render worker will take it
        output = {"video": "v.mp4", "session_key": f"{CARD}:1"}
        await queue.finish(job, Status.COMPLETE, result=output)
        assert await check() == 1
    finally:
        await check.close()
    [result] = sent.results
    assert (result.step, result.attempt, result.status) == ("render", 1, "succeeded")
    assert result.output == output and result.worker == "reconcile"


async def test_a_gone_render_job_is_published_from_its_manifest_or_else_requeued(
    jc: JobContext, sent: Sent, pg: asyncpg.Connection
) -> None:
    eid = await claimed_render(jc, "GX010020.MP4", f"{CARD}:2")
    check = RenderCheck(jc)
    try:
        # no job and no output (the dispatch died, or Redis lost the queue): requeued
        assert await check() == 1
        assert [(r.step, r.attempt) for r in sent.requests] == [("render", 2)]
        assert sent.results == []
        lost = await pg.fetchval(
            "SELECT a.status FROM pipeline_step_attempt a JOIN pipeline_step s "
            "ON s.id = a.step_id WHERE s.execution_id = $1 AND a.attempt = 1",
            eid,
        )
        assert lost in (None, "lost")
        # attempt 2 rendered (staged) but its job is gone and its result lost: re-derived
        await claim(jc, eid, "render")
        payload = await render_request(jc, f"{CARD}:2", eid)
        out = await render_as_a_worker(payload, jc.settings.render_staging)
        sent.requests.clear()
        assert await check() == 1
    finally:
        await check.close()
    [result] = sent.results
    assert (result.step, result.attempt, result.status) == ("render", 2, "succeeded")
    assert result.output is not None
    assert result.output["video"] == str(out.video)
    assert result.output["fingerprint"] == out.fingerprint
    assert sent.requests == []  # not rendered again


async def test_a_render_waits_for_every_clip_and_is_requeued_once_they_are_there(
    jc: JobContext, sent: Sent
) -> None:
    ready = await add_file(jc, "GX010030.MP4", minute=1)
    late = await add_file(jc, "GX010031.MP4", status="requested", seconds=None, minute=2)
    await add_session(jc, f"{CARD}:3", [ready, late])
    rows = {r.id: r for r in await _files(jc, [ready, late])}
    kept, left_out, pending = choose_footage([ready, late], rows)
    assert [r.id for r in kept] == [ready] and left_out == []
    assert pending == ["GX010031.MP4 is not copied from the card yet (requested)"]

    eid = await execution_with(jc, f"jump:{CARD}:3", *render_step(f"{CARD}:3"))
    await claim(jc, eid, "render")
    await wait_on(jc, eid, "render", "waiting for every clip of the session")
    check = RenderCheck(jc)
    try:
        assert await check() == 0
        async with jc.engine.begin() as conn:
            await conn.execute(
                text(
                    "UPDATE imported_file SET status = 'imported', stored_path = :p, "
                    "duration_s = 1.0 WHERE id = :id"
                ),
                {"p": f"{CARD}/GX010030.MP4", "id": late},
            )
        assert await check() == 1
    finally:
        await check.close()
    assert [(r.step, r.attempt) for r in sent.requests] == [("render", 2)]


def test_publish_refuses_clips_neither_rendered_nor_left_out() -> None:
    assert missing_clips([1, 2, 3], {1, 3}, set()) == [2]
    assert missing_clips([1, 2, 3], {1, 3}, {2}) == []  # unreadable, with a session warning
    assert missing_clips([1, 2], {1, 2}, set()) == []


async def _files(jc: JobContext, ids: list[int]) -> list[media.FileRow]:
    async with jc.engine.connect() as conn:
        return await media.load_files(conn, ids)


# --- groupings ----------------------------------------------------------------------------------


async def test_a_grouping_older_than_a_late_landing_is_redone_and_undecoded_clips_decoded(
    jc: JobContext, sent: Sent, pg: asyncpg.Connection
) -> None:
    qr = await add_file(jc, "GX010040.MP4", kind="qr_candidate", seconds=None)
    footage = await add_file(jc, "GX010041.MP4", seconds=None)
    steps = [
        dag.StepState(f"copy:{qr}", "copy", spawns=frozenset({f"probe:{qr}*", f"qr:{qr}*"})),
        dag.StepState("group", "group", frozenset({"copy:*", "?probe:*", "?qr:*"})),
    ]
    inputs = {
        f"copy:{qr}": {"file_id": qr, "qr": True},
        "group": {"card_id": CARD, "file_ids": [qr, footage]},
    }
    eid = await execution_with(jc, "import:late", steps, inputs)
    for name in (f"copy:{qr}", "group"):
        await claim(jc, eid, name)
        async with jc.engine.begin() as conn:
            state = ops.state_of((await repo.load_steps(conn, eid, [name]))[0])
            done = dag.succeed(state, state.attempt)
            await repo.save_changes(conn, eid, [repo.Change(state, done)])
            await ops.promote_all(conn, eid)
    assert await jump_sessions.reconcile_groups(jc) == 1
    names = sorted((r.step, r.attempt) for r in sent.requests)
    assert names == [(f"probe:{qr}", 1), (f"qr:{qr}", 1)]
    states = dict(
        await pg.fetch("SELECT name, status FROM pipeline_step WHERE execution_id = $1", eid)
    )
    assert states["group"] == "pending"  # runs again once the decode finished
    sent.requests.clear()
    assert await jump_sessions.reconcile_groups(jc) == 0  # idempotent: nothing more to do
    assert sent.requests == []


async def test_a_grouping_that_ran_before_a_file_landed_is_redone(
    jc: JobContext, sent: Sent, pg: asyncpg.Connection
) -> None:
    footage = await add_file(jc, "GX010050.MP4", seconds=None)
    steps = [dag.StepState("group", "group")]
    eid = await execution_with(
        jc, "import:regroup", steps, {"group": {"card_id": CARD, "file_ids": [footage]}}
    )
    await claim(jc, eid, "group")
    async with jc.engine.begin() as conn:
        state = ops.state_of((await repo.load_steps(conn, eid, ["group"]))[0])
        done = dag.succeed(state, state.attempt)
        await repo.save_changes(conn, eid, [repo.Change(state, done)])
    assert await jump_sessions.reconcile_groups(jc) == 0  # landed before the grouping
    async with jc.engine.begin() as conn:  # a late landing, the file in no session yet
        await conn.execute(
            text("UPDATE imported_file SET imported_at = now() + interval '1 s' WHERE id = :i"),
            {"i": footage},
        )
    assert await jump_sessions.reconcile_groups(jc) == 1
    assert [(r.step, r.attempt) for r in sent.requests] == [("group", 2)]
    message = await pg.fetchval(
        "SELECT l.message FROM pipeline_step_log l JOIN pipeline_step s ON s.id = l.step_id "
        "WHERE s.execution_id = $1 AND l.attempt = 1 ORDER BY l.id DESC LIMIT 1",
        eid,
    )
    assert (
        message == "grouped again: a file of the listing landed or was decoded after the grouping"
    )
    async with jc.engine.begin() as conn:  # once grouped, the file is in a session: done
        await conn.execute(
            text("UPDATE imported_file SET session_key = 'k' WHERE id = :i"), {"i": footage}
        )
    assert await jump_sessions.reconcile_groups(jc) == 0
