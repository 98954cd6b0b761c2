"""Names of every Kafka topic, consumer group and Redis key, in one place."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Names:
    """All names derived from one prefix, so two deployments (or test runs) never collide."""

    prefix: str = "skyreel"

    # --- Kafka topics (the contract; records in streams.records) ---
    @property
    def detector_events(self) -> str:
        return f"{self.prefix}.detector-events"

    @property
    def copy_requests(self) -> str:
        return f"{self.prefix}.copy-requests"

    @property
    def copy_results(self) -> str:
        return f"{self.prefix}.copy-results"

    @property
    def step_requests(self) -> str:
        return f"{self.prefix}.step-requests"

    @property
    def step_results(self) -> str:
        return f"{self.prefix}.step-results"

    @property
    def status(self) -> str:
        return f"{self.prefix}.status"

    @property
    def dead_letter(self) -> str:
        return f"{self.prefix}.dead-letter"

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
    def counters_key(self) -> str:
        return f"{self.prefix}:counters"

    # --- operator commands (issue 13: the API and CLI reach the engine through this topic) ---
    @property
    def commands(self) -> str:
        """Operator commands (records.OperatorCommand), hub and CLI -> the engine."""
        return f"{self.prefix}.commands"
