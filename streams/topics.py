"""Names of every Kafka topic, consumer group and Redis key, in one place."""

from __future__ import annotations

from dataclasses import dataclass


class _Topic:
    """A Kafka topic's name: ``<prefix>.<suffix>``, read off the :class:`Names` it belongs to."""

    def __init__(self, suffix: str) -> None:
        self.suffix = suffix

    def __get__(self, names: Names, owner: type[Names] | None = None) -> str:
        return f"{names.prefix}.{self.suffix}"


@dataclass(frozen=True)
class Names:
    """All names derived from one prefix, so two deployments (or test runs) never collide."""

    prefix: str = "skyreel"

    # --- Kafka topics (the contract; records in streams.records) ---
    detector_events = _Topic("detector-events")
    copy_requests = _Topic("copy-requests")
    copy_results = _Topic("copy-results")
    step_requests = _Topic("step-requests")
    step_results = _Topic("step-results")
    status = _Topic("status")
    dead_letter = _Topic("dead-letter")
    #: operator commands (records.OperatorCommand), hub and CLI -> the engine (issue 13: the API
    #: and CLI reach the engine through this topic)
    commands = _Topic("commands")

    def source_topics(self) -> tuple[str, ...]:
        return (
            self.detector_events,
            self.copy_requests,
            self.copy_results,
            self.step_requests,
            self.step_results,
            self.status,
            self.dead_letter,
            self.commands,
        )

    # --- consumer groups ---
    def hub_group(self, hub_id: str) -> str:
        """Each hub replica reads copy requests in a group of its own (fan-out to all hubs)."""
        return f"{self.prefix}.hub.{hub_id}"

    # --- Redis ---
    @property
    def render_queue(self) -> str:
        return f"{self.prefix}-render"

    def detector_presence_key(self, detector_id: str) -> str:
        return f"{self.prefix}:detector:{detector_id}:presence"

    @property
    def detector_revoked_channel(self) -> str:
        """Pub/sub channel: a detector id published here was revoked; every hub closes its
        socket (streams/hub/revocation.py)."""
        return f"{self.prefix}:detector-revoked"

    @property
    def counters_key(self) -> str:
        return f"{self.prefix}:counters"
