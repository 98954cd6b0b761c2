"""Render jobs on a real Redis through saq: results, permanent failures, a SIGKILLed worker."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import replace
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from saq import Queue, Worker
from saq.job import Job, Status

from agents.render.branding import Branding
from agents.render.job import check_output, probe_clip
from agents.render.queue import (
    RENDER_FUNCTION,
    RenderWorkerConfig,
    make_queue,
    worker_settings,
)
from benchmarks._render_media import make_clip

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]


async def enqueue_render(
    queue: Queue, request: Mapping[str, object], *, key: str, config: RenderWorkerConfig
) -> Job | None:
    """Enqueue once per key (e.g. `<execution>:<step>:<attempt>`); a duplicate returns None."""
    return await queue.enqueue(
        RENDER_FUNCTION,
        key=key,
        request=dict(request),
        timeout=config.job_timeout_s,
        heartbeat=config.heartbeat_s,
        retries=config.retries,
    )


@pytest.fixture
async def config(tmp_path: Path, redis_url: str) -> AsyncIterator[RenderWorkerConfig]:
    # the session's Redis: the machine's on 127.0.0.1:6379, else an embedded one
    name = f"test-render-{uuid.uuid4().hex[:10]}"
    yield RenderWorkerConfig(
        redis_url=redis_url,
        queue_name=name,
        output_root=tmp_path / "renders",
        media_roots=(tmp_path,),
        stall_timeout_s=30,
        heartbeat_s=2,
        retries=3,
        sweep_interval_s=1,
        progress_interval_s=0.2,
    )
    client = aioredis.from_url(redis_url)
    keys = [k async for k in client.scan_iter(f"*{name}*")]
    if keys:
        await client.delete(*keys)
    await client.aclose()


@contextlib.asynccontextmanager
async def running_worker(config: RenderWorkerConfig) -> AsyncIterator[Queue]:
    queue = make_queue(config)
    await queue.connect()
    s = worker_settings(config, queue)
    worker = Worker(queue, s["functions"], concurrency=1, startup=s["startup"], timers=s["timers"])
    task = asyncio.create_task(worker.start())
    try:
        yield queue
    finally:
        await worker.stop()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await queue.disconnect()


def request_for(clip: Path, branding: Branding, booking: str = "Q-1") -> dict[str, object]:
    facts = probe_clip(clip)
    return {
        "session_key": f"card-q:{booking}",
        "output_name": f"{booking}_Queue-Test_20260501-1430_abcdef",
        "booking_id": booking,
        "passenger_name": "Queue Test",
        "clips": [
            {
                "path": str(facts.path),
                "duration": facts.duration,
                "width": facts.width,
                "height": facts.height,
                "fps": facts.fps,
                "has_audio": facts.has_audio,
            }
        ],
        "branding": branding.to_mapping(),
    }


SMALL = Branding(width=320, height=180, preset="ultrafast", title_enabled=False)


async def test_render_job_completes_with_result_and_progress(
    config: RenderWorkerConfig, tmp_path: Path
) -> None:
    clip = make_clip(tmp_path / "a.mp4", seconds=1, width=320, height=180)
    async with running_worker(config) as queue:
        job = await enqueue_render(
            queue, request_for(clip, SMALL), key="exec-1:render", config=config
        )
        assert job is not None
        await job.refresh(until_complete=60)
    assert job.status == Status.COMPLETE and job.attempts == 1 and job.progress == 1.0
    video = Path(job.result["video"])
    assert video.parent.parent == config.output_root
    assert check_output(video, duration=1.0, width=320, height=180) == []


async def test_truncated_input_fails_once_with_ffmpegs_message(
    config: RenderWorkerConfig, tmp_path: Path
) -> None:
    clip = make_clip(tmp_path / "t.mp4", seconds=1, width=320, height=180, faststart=False)
    request = request_for(clip, SMALL)
    data = clip.read_bytes()
    clip.write_bytes(data[: len(data) // 2])
    async with running_worker(config) as queue:
        job = await enqueue_render(queue, request, key="exec-2:render", config=config)
        assert job is not None
        await job.refresh(until_complete=60)
    assert job.status == Status.FAILED and job.attempts == 1  # permanent: no retry storm
    assert job.error is not None and "moov atom not found" in job.error
    assert job.meta["error"]["retryable"] is False
    assert "moov atom not found" in job.meta["error"]["ffmpeg_tail"]


async def test_payload_pointing_outside_media_roots_is_refused(
    config: RenderWorkerConfig, tmp_path: Path
) -> None:
    clip = make_clip(tmp_path / "ok.mp4", seconds=1, width=320, height=180)
    request = request_for(clip, SMALL)
    request["clips"][0]["path"] = "/etc/passwd"  # type: ignore[index]
    async with running_worker(config) as queue:
        job = await enqueue_render(queue, request, key="exec-3:render", config=config)
        assert job is not None
        await job.refresh(until_complete=60)
    assert job.status == Status.FAILED and job.attempts == 1
    assert "outside the media roots" in (job.error or "")
    assert not config.output_root.exists() or not list(config.output_root.rglob("*.mp4"))


def _spawn_worker(config: RenderWorkerConfig, log: Path) -> subprocess.Popen[bytes]:
    main = str(Path(__file__).with_name("render_queue_main.py"))
    args = [sys.executable, main, "--redis-url", config.redis_url]
    args += ["--queue", config.queue_name, "--output-root", str(config.output_root)]
    args += ["--media-root", str(config.media_roots[0]), "--heartbeat", str(config.heartbeat_s)]
    args += ["--sweep-interval", str(config.sweep_interval_s)]
    with log.open("ab") as out:
        return subprocess.Popen(args, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)


def _ffmpeg_writing_under(folder: Path) -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            with contextlib.suppress(OSError):
                if str(folder).encode() in (proc / "cmdline").read_bytes():
                    pids.append(int(proc.name))
    return pids


async def test_sigkilled_worker_job_is_retried_and_leaves_one_output(
    config: RenderWorkerConfig, tmp_path: Path
) -> None:
    clip = make_clip(tmp_path / "long.mp4", seconds=6, width=960, height=540)
    slow = replace(SMALL, width=960, height=540, preset="slower", title_enabled=True)
    log = tmp_path / "workers.log"
    queue = make_queue(config)
    await queue.connect()
    first = _spawn_worker(config, log)
    second: subprocess.Popen[bytes] | None = None
    try:
        job = await enqueue_render(
            queue, request_for(clip, slow), key="exec-4:render", config=config
        )
        assert job is not None
        for _ in range(600):
            await job.refresh()
            if job.status == Status.ACTIVE and job.progress > 0.05:
                break
            await asyncio.sleep(0.1)
        assert job.status == Status.ACTIVE and job.progress < 1.0, log.read_text()
        os.kill(first.pid, signal.SIGKILL)
        first.wait()
        await asyncio.sleep(0.5)
        assert _ffmpeg_writing_under(config.output_root) == []  # FFmpeg died with its worker
        assert not list(config.output_root.rglob("*.mp4"))

        second = _spawn_worker(config, log)
        await job.refresh(until_complete=150)
        assert job.status == Status.COMPLETE, log.read_text()
        assert job.attempts == 2
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=20)
        await queue.disconnect()
    name = "Q-1_Queue-Test_20260501-1430_abcdef"
    outputs = [p.name for p in config.output_root.rglob("*") if p.is_file()]
    assert sorted(outputs) == [f"{name}.jpg", f"{name}.json", f"{name}.mp4"]
    video = config.output_root / name / f"{name}.mp4"
    assert check_output(video, duration=6.0, width=960, height=540) == []
