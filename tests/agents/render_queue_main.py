"""A bare render-queue worker process for the SIGKILL test (no step results, no Kafka).

Run: ``python tests/agents/render_queue_main.py --redis-url ... --output-root ...``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from collections.abc import Sequence
from pathlib import Path

from saq import Worker

from agents.render.queue import RENDER_QUEUE, RenderWorkerConfig, worker_settings


async def run_worker(config: RenderWorkerConfig) -> None:
    settings = worker_settings(config)
    queue = settings["queue"]
    await queue.connect()
    worker = Worker(
        queue,
        settings["functions"],
        concurrency=settings["concurrency"],
        startup=settings["startup"],
        timers=settings["timers"],
    )
    try:
        await worker.start()
    finally:
        await queue.disconnect()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="skyreel render worker")
    parser.add_argument("--redis-url", default=RenderWorkerConfig.redis_url)
    parser.add_argument("--queue", default=RENDER_QUEUE)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--output-root", type=Path, required=True)
    parser.add_argument("--published-root", type=Path, default=None)
    parser.add_argument("--media-root", type=Path, action="append", default=[])
    parser.add_argument("--stall-timeout", type=float, default=60.0)
    parser.add_argument("--heartbeat", type=int, default=30)
    parser.add_argument("--sweep-interval", type=int, default=10)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    config = RenderWorkerConfig(
        redis_url=args.redis_url,
        queue_name=args.queue,
        concurrency=args.concurrency,
        output_root=args.output_root,
        published_root=args.published_root,
        media_roots=tuple(args.media_root),
        stall_timeout_s=args.stall_timeout,
        heartbeat_s=args.heartbeat,
        sweep_interval_s=args.sweep_interval,
    )
    asyncio.run(run_worker(config))


if __name__ == "__main__":
    main()
