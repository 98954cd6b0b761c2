"""The Faust worker process: builds the app from Settings and attaches every agent.

Run: ``skyreel worker`` (needs SKYREEL_DATABASE_URL and SKYREEL_KAFKA_URL; `skyreel run` sets
them). Each agent body only decodes, calls a handler, and never lets an exception escape
(agents/guard.py).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor

import faust

from agents import commands, heap, ingest, purge
from agents.app import create_app, declare_topics
from agents.guard import guarded
from agents.jobs import card_import, deliver_step, landing, steps
from agents.jobs.bought_later import add_bought_steps
from agents.jobs.context import JobContext
from agents.jobs.render import RenderDispatcher
from agents.pipeline import dispatch, orchestrator, reconcile, runner
from agents.pipeline.handlers import default_handlers
from agents.pipeline.host import AgentHost
from agents.qr.decode import qr_settings
from agents.render.default_branding import log_branding
from agents.replay import Rewinder
from storage.db import make_engine
from storage.enums import FileStatus, StatusKind
from storage.imports import CopyOutcome, DiffRow, PlannedCopy
from streams import records
from streams.settings import Settings
from streams.topics import Names

logger = logging.getLogger(__name__)


def _consume(
    wa: AgentHost, topic: faust.TopicT, name: str, handle: Callable[[bytes], Awaitable[object]]
) -> None:
    """Attach an agent that runs ``handle(payload)`` for each message, guarded."""

    async def agent(stream: faust.StreamT[bytes]) -> None:
        async for event in stream.events():
            payload = event.value if isinstance(event.value, bytes) else bytes(event.value or b"")
            key = event.key if isinstance(event.key, bytes) or event.key is None else None

            async def run(payload: bytes = payload) -> None:
                await handle(payload)

            await guarded(
                topic=topic.get_topic_name(),
                key=key,
                payload=payload,
                handler=run,
                engine=wa.engine,
                dead_letter_topic=wa.topics.dead_letter,
            )

    agent.__name__ = name
    agent.__qualname__ = name
    wa.app.agent(topic, name=f"{wa.names.prefix}.{name}")(agent)


def build_worker(settings: Settings) -> AgentHost:
    if not settings.database_url or not settings.kafka_url:
        raise SystemExit(
            "skyreel worker needs SKYREEL_DATABASE_URL and SKYREEL_KAFKA_URL "
            "(or use `skyreel run`, which starts embedded services)"
        )
    names = Names(settings.topic_prefix)
    app = create_app(settings, settings.kafka_url)
    topics = declare_topics(app, names, settings.topic_partitions)
    engine = make_engine(settings.database_url)
    wa = AgentHost(app, topics, engine, names)

    _attach_agents(wa, settings)
    _attach_heap_settle(wa, settings)
    return wa


def _attach_heap_settle(wa: AgentHost, settings: Settings) -> None:
    """Once the worker has started (its agents, consumers and connections made), collect and
    freeze the heap once, so full garbage collections stop pausing the pipeline
    (agents/heap.py)."""

    async def settle_once() -> None:
        await asyncio.sleep(settings.heap_settle_after_s)
        done = heap.settle()
        logger.info(
            "heap settled: %d objects frozen, %d freed, %.0f ms",
            done.frozen, done.collected, done.pause_ms,
        )  # fmt: skip

    if settings.heap_settle_after_s >= 0:
        wa.app.task(settle_once)


def _attach_agents(wa: AgentHost, settings: Settings) -> None:
    """Ingest, the pipeline framework (orchestrator, step runner, reconciliation) and the real
    pipelines' step handlers, all sharing one engine and the worker's topics."""
    topics = wa.topics

    async def send_copy_request(key: bytes, value: bytes) -> object:
        return await topics.copy_requests.send(key=key, value=value)

    async def send_request(key: bytes, value: bytes) -> object:
        return await topics.step_requests.send(key=key, value=value)

    async def send_status(key: bytes, value: bytes) -> object:
        return await topics.status.send(key=key, value=value)

    async def send_result(key: bytes, value: bytes) -> object:
        return await topics.step_results.send(key=key, value=value)

    async def send_result_acked(key: bytes, value: bytes) -> object:
        # Results that only exist in this message (a copy landed, a render was refused) must
        # reach the broker before the message that caused them is acknowledged.
        delivery = await topics.step_results.send(key=key, value=value)
        return await delivery

    handlers = default_handlers()
    executor = ThreadPoolExecutor(settings.worker_concurrency, thread_name_prefix="step")
    step_runner = runner.Runner(wa.engine, handlers, send_result, executor=executor)
    hand_off = step_runner.hand_off if settings.step_hand_off else None
    emitter = dispatch.Emitter(send_request, send_status, hand_off)
    jc = JobContext(
        settings,
        wa.engine,
        handlers.registry,
        emitter,
        send_result_acked,
        send_copy_request,
        qr=qr_settings(settings),  # the QR search's frame budget and safety stop (issue 18)
    )
    steps.make_handlers(jc, handlers)

    async def on_listing(
        event: records.DetectorEvent, rows: list[DiffRow], plan: list[PlannedCopy]
    ) -> None:
        await card_import.start_card_import(jc, event, rows, plan)

    async def on_copy_outcome(outcome: CopyOutcome) -> None:
        if outcome.status in (FileStatus.IMPORTED, FileStatus.FAILED):
            await landing.copy_landed(
                jc,
                outcome.file_id,
                imported=outcome.status == FileStatus.IMPORTED,
                reason=outcome.reason,
            )

    deps = ingest.IngestDeps(
        settings=settings,
        engine=wa.engine,
        send_copy_request=send_copy_request,
        on_listing=on_listing,
        on_copy_outcome=on_copy_outcome,
    )

    async def on_event(payload: bytes) -> None:
        await ingest.handle_detector_event(deps, payload)

    async def on_copy_result(payload: bytes) -> None:
        await ingest.handle_copy_result(deps, payload)

    _consume(wa, topics.detector_events, "ingest", on_event)
    _consume(wa, topics.copy_results, "copy_results", on_copy_result)

    # operator commands (retry, resume, cancel, assign) from the API and the CLI
    async def resend(booking_id: str, request_id: str, actor: str) -> dict[str, object]:
        return await deliver_step.resend(settings, wa.engine, booking_id, request_id, actor)

    async def bought_later(key: str, eid: int, product: str, actor: str) -> list[str]:
        return await add_bought_steps(
            wa.engine, emitter, handlers.registry, key=key, execution_id=eid, product=product,
            default_product=settings.default_product, actor=actor,
        )  # fmt: skip

    command_topic = commands.declare_topic(wa.app, wa.names, settings.topic_partitions)
    # `skyreel replay` while this worker runs: it seeks its own consumer (agents/replay.py)
    consumed = (topics.detector_events, topics.copy_results, topics.step_requests)
    rewinder = Rewinder(
        wa.app,
        frozenset(t.get_topic_name() for t in (*consumed, topics.step_results, command_topic)),
    )
    wa.app.sensors.add(rewinder)
    ops = commands.Commands(
        wa.engine, emitter, send_result_acked, settings, rewind=rewinder.rewind, resend=resend,
        bought_later=bought_later,
    )  # fmt: skip
    _consume(wa, command_topic, "commands", ops.handle)

    orchestrator.attach(wa, orchestrator.Orchestrator(wa.engine, handlers.registry, emitter))
    dispatcher = RenderDispatcher(jc)
    step_runner.dispatch_render = dispatcher
    runner.attach(wa, step_runner, concurrency=settings.runner_concurrency)

    async def close_render_queue(*args: object, **kwargs: object) -> None:
        await step_runner.close()  # handed-off steps still running: requeued as lost
        await dispatcher.close()  # the dispatcher's Redis connection, opened on first use

    wa.app.on_before_shutdown.connect(close_render_queue)
    reconcile.attach(
        wa,
        handlers.registry,
        emitter,
        worker=step_runner.worker,
        interval_s=settings.reconcile_interval_s,
        held=step_runner.held,  # its own steps whose result was lost are requeued too
    )
    _attach_retention(wa, emitter, settings)  # issue 16, item 5


async def _tell_purged(emitter: dispatch.Emitter, done: purge.PurgeResult) -> None:
    """The dashboards show the sessions purged; advisory, so a broker hiccup only logs."""
    if emitter.send_status is None:
        return
    for key in done.keys:
        event = records.StatusEvent(
            kind=StatusKind.SESSION, id=key, data={"status": "purged", "reason": str(done.reason)}
        )
        try:
            await emitter.send_status(key.encode(), records.encode(event))
        except Exception as exc:
            logger.warning("status event for purged session %s not published: %s", key, exc)


def _attach_retention(wa: AgentHost, emitter: dispatch.Emitter, settings: Settings) -> None:
    """The scheduled purge (issue 16, item 5): the retention rules applied every
    ``retention_check_interval_s``; every purge is recorded (agents/purge.py)."""

    async def cancel(eid: int) -> int:
        return await orchestrator.cancel(wa.engine, emitter, eid, actor="retention")

    async def loop() -> None:
        while True:
            try:
                for done in await purge.scheduled_purge(wa.engine, settings, cancel=cancel):
                    await _tell_purged(emitter, done)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception(
                    "retention pass failed; next in %.0fs", settings.retention_check_interval_s
                )
            await asyncio.sleep(settings.retention_check_interval_s)

    wa.app.task(loop)


def run_worker(settings: Settings) -> int:
    log_branding(settings)  # makes the default cards (once) before any render is dispatched
    wa = build_worker(settings)
    worker = faust.Worker(wa.app, loglevel=settings.log_level, quiet=True, redirect_stdouts=False)
    worker.execute_from_commandline()  # returns only via SystemExit
    return 0
