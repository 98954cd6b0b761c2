"""What the real pipelines' handlers need from the worker, built once in agents/worker.py."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncEngine

from agents.pipeline.dispatch import Emitter
from agents.pipeline.registry import Registry
from agents.qr.decode import QrSettings
from streams.kafka import Send
from streams.settings import Settings


@dataclass(frozen=True)
class JobContext:
    settings: Settings
    engine: AsyncEngine
    registry: Registry
    emitter: Emitter  # step requests and status events
    send_result: Send  # step results (a copy landing, a booking assigned)
    send_copy_request: Send
    qr: QrSettings = field(default_factory=QrSettings)
