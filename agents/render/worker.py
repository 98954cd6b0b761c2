"""``skyreel render-worker``: renders jobs from the Redis queue and reports to the pipeline.

Wraps the saq job function (agents/render/queue.py) so that each job of a ``render`` step sends
its progress and its outcome as ``StepResult`` records on the step-results topic. saq retries
transient failures (and re-runs a job whose worker died); only the final outcome — success, a
permanent failure, or the last retry failing — is reported as the step's result.

A full disk is a state, not a failure: a job that raised :class:`NoSpaceError` gets up to
``SPACE_RETRIES`` attempts with backoff (``SPACE_RETRY_DELAY_S`` doubling to
``SPACE_RETRY_MAX_S``, jittered by saq), so it renders once space returns without anyone; its
step stays running meanwhile, and only when the disk stays full past all of them does the step
fail (retryable), which one operator retry then re-drives.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, cast

from saq import Worker
from saq.job import Job
from saq.types import Context

from agents.render.default_branding import log_branding
from agents.render.errors import NoSpaceError, RenderError
from agents.render.job import sweep_staging
from agents.render.plan import RenderTuning
from agents.render.queue import RENDER_FUNCTION, RenderWorkerConfig, render_job, worker_settings
from streams import records
from streams.kafka import Send, make_producer
from streams.settings import Settings
from streams.topics import Names

logger = logging.getLogger(__name__)

PROGRESS_EVERY_S = 1.0
#: A render that found the disk full: attempts in all, first delay, longest delay (seconds).
SPACE_RETRIES = 40
SPACE_RETRY_DELAY_S = 2.0
SPACE_RETRY_MAX_S = 20.0


def wait_for_space(job: Job) -> bool:
    """Give a job that found the disk full more, slower, attempts (saq reads ``retries``,
    ``retry_delay`` and ``retry_backoff`` when it schedules the retry). True: it will be retried.
    """
    job.retries = max(job.retries, min(job.attempts + 1, SPACE_RETRIES))
    job.retry_delay = SPACE_RETRY_DELAY_S
    job.retry_backoff = SPACE_RETRY_MAX_S
    return job.retries > job.attempts


def machine_cores() -> int:
    """The cores this process may run on (its CPU affinity, not the host's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def config_from(settings: Settings) -> RenderWorkerConfig:
    cores = machine_cores()
    roots = [settings.share_root]
    roots += [
        p.parent
        for p in (
            settings.branding_intro,
            settings.branding_logo,
            settings.branding_font,
            settings.edit_music_path,
        )
        if isinstance(p, Path)
    ]
    return RenderWorkerConfig(
        redis_url=settings.redis_url,
        queue_name=Names(settings.topic_prefix).render_queue,
        concurrency=settings.render_concurrency,
        output_root=settings.render_staging,
        published_root=settings.output_dir,
        media_roots=tuple(roots),
        stall_timeout_s=settings.render_stall_timeout_s,
        heartbeat_s=settings.render_heartbeat_s,
        sweep_interval_s=max(1, min(10, settings.render_heartbeat_s // 3)),
        tuning=RenderTuning(
            decode_threads=settings.render_decode_threads or cores,
            skip_nonref=settings.render_skip_nonref,
        ),
        encode_threads=settings.render_encode_threads or cores,
    )


def reporting_job(send: Send, worker: str) -> Callable[..., Awaitable[dict[str, object]]]:
    """The saq function: render_job plus step progress/result reports."""

    async def job_fn(
        ctx: Context, *, request: dict[str, object], step: dict[str, object] | None = None
    ) -> dict[str, object]:
        job = ctx["job"]
        if step is None:  # a job not made by the pipeline (tools, tests): just render
            return await render_job(ctx, request=request)
        eid, name, attempt = (
            int(cast(int, step["execution_id"])),
            str(step["step"]),
            int(cast(int, step["attempt"])),
        )

        async def send_result(status: str, **fields: Any) -> None:
            result = records.StepResult(
                execution_id=eid, step=name, attempt=attempt, status=status, worker=worker, **fields
            )
            await send(str(eid).encode(), records.encode(result))

        async def progress() -> None:
            last = -1.0
            while True:
                await asyncio.sleep(PROGRESS_EVERY_S)
                value = float(job.progress or 0.0)
                if value != last:
                    last = value
                    with contextlib.suppress(Exception):
                        await send_result("progress", progress=value)

        reporter = asyncio.create_task(progress())
        try:
            out = await render_job(ctx, request=request)
        except NoSpaceError as exc:
            if wait_for_space(job):
                logger.warning(
                    "render %s attempt %d: the disk is full; retrying (%d of %d)",
                    job.key,
                    attempt,
                    job.attempts,
                    job.retries,
                )
            else:
                # the disk stayed full through every try: retryable, one retry re-drives it
                await send_result("failed", error=str(exc)[-4000:], retryable=True)
            raise
        except RenderError as exc:
            final = not exc.retryable or job.attempts >= job.retries
            if final:
                await send_result("failed", error=str(exc)[-4000:], retryable=False)
            raise
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if job.attempts >= job.retries:
                await send_result(
                    "failed", error=f"{type(exc).__name__}: {exc}"[:4000], retryable=False
                )
            raise
        finally:
            reporter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reporter
        await send_result("succeeded", output=out, progress=1.0)
        return out

    return job_fn


async def _main(settings: Settings) -> None:
    if not settings.redis_url or not settings.kafka_url:
        raise SystemExit(
            "skyreel render-worker needs SKYREEL_REDIS_URL and SKYREEL_KAFKA_URL "
            "(or use `skyreel run`)"
        )
    config = config_from(settings)
    await asyncio.to_thread(log_branding, settings)  # makes the default cards if not there yet
    names = Names(settings.topic_prefix)
    producer = make_producer(settings.kafka_url)
    await producer.start()
    worker_id = f"render@{socket.gethostname()}"

    async def send(key: bytes, value: bytes) -> object:
        return await producer.send_and_wait(names.step_results, value, key=key)

    # what a render worker killed mid-render left behind (its jobs rerun under new names)
    swept = await asyncio.to_thread(
        sweep_staging, config.output_root, older_than_s=config.stale_partial_s
    )
    if swept:
        logger.info("swept %d orphaned render partial(s) from %s", swept, config.output_root)
    base = worker_settings(config)
    queue = base["queue"]
    await queue.connect()
    worker = Worker(
        queue,
        [(RENDER_FUNCTION, reporting_job(send, worker_id))],
        concurrency=base["concurrency"],
        startup=base["startup"],
        timers=base["timers"],
    )
    logger.info(
        "render worker on queue %s (concurrency %d, staging %s)",
        config.queue_name,
        config.concurrency,
        config.output_root,
    )
    try:
        await worker.start()
    finally:
        await queue.disconnect()
        await producer.stop()


def run_render_worker(settings: Settings) -> int:
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_main(settings))
    return 0
