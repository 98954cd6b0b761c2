"""What the engine's Faust agents need of the process that hosts them.

The worker (agents/worker.py, the composition root) provides it; the engine never imports the
worker, so it names only what it uses here.
"""

from __future__ import annotations

from typing import Protocol

import faust
from sqlalchemy.ext.asyncio import AsyncEngine

from agents.app import Topics
from streams.topics import Names


class AgentHost(Protocol):
    """The Faust app, its declared topics, the database engine and the topic names."""

    @property
    def app(self) -> faust.App: ...

    @property
    def topics(self) -> Topics: ...

    @property
    def engine(self) -> AsyncEngine: ...

    @property
    def names(self) -> Names: ...
