"""The Faust application factory and the topic declarations (the event backbone).

``create_app`` builds one app per worker process from Settings; agents attach themselves to it
(see agents/worker.py). Local tuning (short group timings) is for a single local broker such as
the embedded Tansu; production keeps Faust's defaults.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import faust

from streams.kafka import LOCAL_FETCH_MAX_WAIT_MS
from streams.settings import Settings
from streams.topics import Names


@dataclass(frozen=True)
class Topics:
    detector_events: faust.TopicT
    copy_requests: faust.TopicT
    copy_results: faust.TopicT
    step_requests: faust.TopicT
    step_results: faust.TopicT
    status: faust.TopicT
    dead_letter: faust.TopicT


def kafka_broker_url(bootstrap: str) -> str:
    """'host:port,host:port' -> Faust's 'kafka://host:port;kafka://host:port'."""
    return ";".join(f"kafka://{hp.strip()}" for hp in bootstrap.split(",") if hp.strip())


def _install_fetch_wait_hook() -> None:
    """Let an app choose its worker consumer's fetch_max_wait_ms (Faust offers no setting).

    Only apps that set ``_skyreel_fetch_max_wait_ms`` are affected; production keeps Faust's
    default, since a real Kafka broker answers a fetch as soon as data is there.
    """
    from faust.transport.drivers import aiokafka as driver

    thread_cls = driver.AIOKafkaConsumerThread
    if getattr(thread_cls, "_skyreel_hooked", False):
        return
    original = thread_cls._create_worker_consumer

    def create(self: Any, transport: Any) -> Any:
        consumer = original(self, transport)
        wait = getattr(self.app, "_skyreel_fetch_max_wait_ms", None)
        if wait is not None:
            consumer._fetch_max_wait_ms = int(wait)
        return consumer

    thread_cls._create_worker_consumer = create  # type: ignore[method-assign]
    thread_cls._skyreel_hooked = True  # type: ignore[attr-defined]


def create_app(settings: Settings, bootstrap: str, *, app_id: str | None = None) -> faust.App:
    local = settings.uses_local_kafka_tuning
    extra: dict[str, Any] = {}
    if local:
        extra = {
            "broker_session_timeout": 2.0,
            "broker_heartbeat_interval": 0.5,
            "broker_rebalance_timeout": 10.0,
        }
    app = faust.App(
        app_id or settings.app_id,
        broker=kafka_broker_url(bootstrap),
        store="memory://",
        web_enabled=False,
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=1,
        table_standby_replicas=0,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        stream_wait_empty=False,
        autodiscover=False,
        **extra,
    )
    if local:
        _install_fetch_wait_hook()
        app._skyreel_fetch_max_wait_ms = LOCAL_FETCH_MAX_WAIT_MS  # type: ignore[attr-defined]
    return app


def declare_topics(app: faust.App, names: Names, partitions: int) -> Topics:
    """Declare the source topics with explicit partition counts.

    Values travel as raw bytes and are decoded by the agents with records.decode, so a message
    that does not decode becomes a dead letter with its error instead of crashing a stream.
    """

    def topic(name: str) -> faust.TopicT:
        return app.topic(name, partitions=partitions, key_serializer="raw", value_serializer="raw")

    return Topics(
        detector_events=topic(names.detector_events),
        copy_requests=topic(names.copy_requests),
        copy_results=topic(names.copy_results),
        step_requests=topic(names.step_requests),
        step_results=topic(names.step_results),
        status=topic(names.status),
        dead_letter=topic(names.dead_letter),
    )
