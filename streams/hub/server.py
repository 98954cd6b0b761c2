"""The hub: a Starlette app under uvicorn bridging detector WebSockets and Kafka topics.

    skyreel hub          (SKYREEL_HUB_HOST / SKYREEL_HUB_PORT; port 0 picks a free one)

Routes: ``/ws/detector`` (see :mod:`streams.hub.detector_ws`) and ``GET /api/health``. The lifespan
opens the database engine, Redis, a Kafka producer and the copy-request forwarder, and closes
them on shutdown. Every replica reads copy requests in a consumer group of its own (so each sees
all of them) starting at the latest offset, and forwards those whose detector is connected to
it; requests it missed while down are re-sent from PostgreSQL when the detector reconnects.
The lifespan also runs the revocation listener and token re-check (streams/hub/revocation.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import resource
import signal
import socket
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from types import FrameType
from urllib.parse import urlsplit

import uvicorn
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.websockets import WebSocket

from detector import protocol
from detector.redact import install_redaction
from storage.db import make_engine, make_sessionmaker, ping
from streams import kafka, records
from streams.hub.api import StatusApi
from streams.hub.api_delivery import delivery_routes
from streams.hub.api_support import ApiContext
from streams.hub.detector_ws import Gateway
from streams.hub.guard import (
    ConnectionGuard,
    ConnectionLimits,
    fit_to_fd_limit,
    guarded_protocols,
    raise_fd_limit,
)
from streams.hub.passenger_api import passenger_link_routes
from streams.hub.passenger_routes import PassengerPages
from streams.hub.revocation import follow_revocations, sweep_revoked
from streams.service_state import (
    SERVICE_STATE_FILE,
    free_space,
    kafka_answers,
    read_service_states,
)
from streams.settings import Settings
from streams.topics import Names

logger = logging.getLogger(__name__)

#: How long one health probe may take before the service counts as down.
HEALTH_TIMEOUT = 2.0
#: A detector socket that does not take a copy request within this many seconds is skipped
#: (the request stays pending in PostgreSQL and is re-sent on reconnect).
DELIVER_TIMEOUT = 10.0
#: A WebSocket that does not answer a ping within the timeout is closed (detectors stay
#: connected for hours; this, not an idle timeout, is what ends a dead one).
WS_PING_INTERVAL_S = 20.0
WS_PING_TIMEOUT_S = 20.0
#: The listen backlog, and so the most connections asyncio accepts in one go: a flood is taken
#: in a few hundred at a time between requests, not 2,048 (uvicorn's default) in one stall.
ACCEPT_BACKLOG = 256


class HubConfigError(RuntimeError):
    """The hub cannot start with these settings (permanent)."""


@dataclass
class Runtime:
    """What the lifespan opened; None until startup finished."""

    gateway: Gateway | None = None
    engine: AsyncEngine | None = None
    redis: Redis | None = None
    producer: AIOKafkaProducer | None = None
    forwarder: asyncio.Task[None] | None = None
    #: The revocation listener and the periodic token re-check (streams/hub/revocation.py).
    revocations: list[asyncio.Task[None]] = field(default_factory=list)
    consumer_ready: asyncio.Event = field(default_factory=asyncio.Event)


def missing_urls(settings: Settings) -> list[str]:
    urls = {
        "SKYREEL_DATABASE_URL": settings.database_url,
        "SKYREEL_REDIS_URL": settings.redis_url,
        "SKYREEL_KAFKA_URL": settings.kafka_url,
    }
    return [name for name, value in urls.items() if not value]


async def _consume_copy_requests(
    consumer: AIOKafkaConsumer, gateway: Gateway, ready: asyncio.Event
) -> None:
    while True:
        batches = await consumer.getmany(timeout_ms=500)
        if not ready.is_set() and consumer.assignment():
            # Resolve the starting offsets now so a request produced right after "ready" is not
            # skipped by a late lookup.
            for tp in consumer.assignment():
                await consumer.position(tp)
            ready.set()
            logger.info(
                "hub %s forwarding copy requests (%d partitions)",
                gateway.hub_id,
                len(consumer.assignment()),
            )
        for messages in batches.values():
            for message in messages:
                try:
                    req = records.decode(records.CopyRequest, message.value or b"")
                except Exception as exc:  # a bad record must not stop forwarding
                    logger.error(
                        "undecodable copy request at offset %d skipped: %s", message.offset, exc
                    )
                    continue
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(gateway.deliver(req), DELIVER_TIMEOUT)


class _OnAssignment(ConsumerRebalanceListener):
    """After every re-assignment of the copy-request partitions (a rebalance, a broker that came
    back), the requests still pending in PostgreSQL are sent again to this replica's detectors.

    What the topic held may be gone — Tansu keeps topics in memory and comes back with them
    empty, and even takes our old offsets as committed, so the consumer would wait past the end
    of the new log — but PostgreSQL still knows every pending request. Detectors ignore a
    request they are already working on.
    """

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.assigned_before = False
        self.tasks: set[asyncio.Task[int]] = set()

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        return None

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        if self.assigned_before:
            task = asyncio.create_task(self.gateway.resend_pending_all())
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
        self.assigned_before = True


async def forward_copy_requests(settings: Settings, gateway: Gateway, ready: asyncio.Event) -> None:
    """Keep a copy-request consumer running for this replica (restarted after failures)."""
    group = gateway.names.hub_group(gateway.hub_id)
    while True:
        consumer = kafka.make_consumer(
            settings,
            settings.kafka_url,
            group_id=group,
            auto_offset_reset="latest",
        )
        consumer.subscribe([gateway.names.copy_requests], listener=_OnAssignment(gateway))
        try:
            await consumer.start()
            await _consume_copy_requests(consumer, gateway, ready)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("copy-request consumer of hub %s failed; restarting", gateway.hub_id)
            ready.clear()
            await asyncio.sleep(2)
        finally:
            await consumer.stop()


async def _db_up(engine: AsyncEngine) -> bool:
    try:
        async with asyncio.timeout(HEALTH_TIMEOUT):
            await ping(engine)
    except Exception:
        return False
    return True


async def _redis_up(redis: Redis) -> bool:
    try:
        async with asyncio.timeout(HEALTH_TIMEOUT):
            return bool(await redis.ping())  # type: ignore[misc]  # redis-py 7 stubs: sync|async
    except Exception:
        return False


async def _broker_answers(bootstrap: str) -> bool:
    """A real Kafka ApiVersions round trip to any bootstrap server (not the producer's cached
    connection state)."""
    for address in bootstrap.split(","):
        host, _, port = address.strip().rpartition(":")
        if (
            host
            and port.isdigit()
            and await asyncio.to_thread(
                kafka_answers, host.strip("[]"), int(port), HEALTH_TIMEOUT / 2
            )
        ):
            return True
    return False


def _address(url: str) -> str:
    parts = urlsplit(url if "//" in url else f"//{url.split(',')[0]}")
    return f"{parts.hostname or ''}:{parts.port or ''}"


def service_health(settings: Settings, up: dict[str, bool]) -> dict[str, dict[str, object]]:
    """Per dependency: up, address and — when down — the reason in words, with what
    ``skyreel run`` is doing about it when it supervises that service."""
    supervised = read_service_states(settings.data_dir / SERVICE_STATE_FILE)
    urls = {
        "database": settings.database_url,
        "broker": settings.kafka_url,
        "redis": settings.redis_url,
    }
    out: dict[str, dict[str, object]] = {}
    for label, url in urls.items():
        address = _address(url)
        reason = None
        if not up[label]:
            note = str(supervised.get(label, {}).get("note") or "")
            reason = f"{label} not answering at {address}" + (f": {note}" if note else "")
        out[label] = {"up": up[label], "address": address, "reason": reason}
    return out


def disk_health(settings: Settings) -> dict[str, dict[str, object]]:
    out: dict[str, dict[str, object]] = {}
    for name, path in (("share", settings.share_root), ("output", settings.output_dir)):
        space = free_space(path)
        free, total = space if space is not None else (None, None)
        low = free is not None and free < settings.low_space_bytes
        out[name] = {"path": str(path), "free_bytes": free, "total_bytes": total, "low_space": low}
    return out


def create_app(settings: Settings) -> Starlette:
    """The hub application; routes are assembled here so later issues can add theirs."""
    missing = missing_urls(settings)
    if missing:
        raise HubConfigError(f"the hub needs {', '.join(missing)} (`skyreel run` sets them)")
    install_redaction()  # query tokens (old clients) reach no log line as they are
    names = Names(settings.topic_prefix)
    hub_id = settings.hub_name()
    rt = Runtime()
    status_api = StatusApi(settings, names, hub_id, rt)  # REST /api, /ws/status, dashboard
    guard = ConnectionGuard(
        ConnectionLimits(
            settings.hub_max_connections,
            settings.hub_max_connections_per_peer,
            settings.hub_header_timeout_s,
        )
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        loop = asyncio.get_running_loop()
        previous_handler = loop.get_exception_handler()
        loop.set_exception_handler(guard.accept_error_handler(previous_handler))
        await kafka.ensure_topics(
            settings.kafka_url, names.source_topics(), settings.topic_partitions
        )
        rt.engine = make_engine(settings.database_url)
        rt.redis = Redis.from_url(settings.redis_url)
        rt.producer = kafka.make_producer(settings.kafka_url)
        await rt.producer.start()
        rt.gateway = Gateway(
            settings, names, hub_id, make_sessionmaker(rt.engine), rt.redis, rt.producer
        )
        rt.forwarder = asyncio.create_task(
            forward_copy_requests(settings, rt.gateway, rt.consumer_ready)
        )
        rt.revocations = [
            asyncio.create_task(follow_revocations(rt.redis, names, rt.gateway)),
            asyncio.create_task(sweep_revoked(rt.gateway)),
        ]
        status_api.start()
        logger.info("hub %s started (topics prefix %s)", hub_id, names.prefix)
        try:
            yield
        finally:
            await status_api.stop()
            for task in rt.revocations:
                task.cancel()
            for task in rt.revocations:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            rt.forwarder.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await rt.forwarder
            await rt.producer.stop()
            await rt.redis.aclose()
            await rt.engine.dispose()
            loop.set_exception_handler(previous_handler)
            logger.info("hub %s stopped", hub_id)

    async def detector_ws(websocket: WebSocket) -> None:
        if rt.gateway is None:
            await websocket.close(1013)  # try again later: still starting
            return
        await rt.gateway.endpoint(websocket)

    async def health(request: Request) -> JSONResponse:
        if rt.engine is None or rt.redis is None or rt.producer is None or rt.gateway is None:
            return JSONResponse({"hub": hub_id, "status": "starting"}, status_code=503)
        db, redis_ok, broker_ok = await asyncio.gather(
            _db_up(rt.engine), _redis_up(rt.redis), _broker_answers(settings.kafka_url)
        )
        kafka_ok = broker_ok and await kafka.producer_connected(rt.producer, HEALTH_TIMEOUT)
        forwarding = (
            rt.consumer_ready.is_set() and rt.forwarder is not None and not rt.forwarder.done()
        )
        services = service_health(settings, {"database": db, "broker": broker_ok,
                                              "redis": redis_ok})  # fmt: skip
        disk = disk_health(settings)
        reasons = [str(v["reason"]) for v in services.values() if v["reason"]]
        if broker_ok and not kafka_ok:
            reasons.append("the hub's Kafka producer is not connected yet")
        if not forwarding:
            reasons.append("copy requests are not being forwarded yet")
        reasons += [
            f"{name} low on space: {d['free_bytes']} bytes free at {d['path']}"
            for name, d in disk.items()
            if d["low_space"]
        ]
        body: dict[str, object] = {
            "hub": hub_id,
            "db": db,
            "redis": redis_ok,
            "kafka": kafka_ok,
            "copy_requests": forwarding,
            "detectors": len(rt.gateway.registry.ids()),
            "connections": guard.snapshot(),
            "services": services,
            "disk": disk,
            "low_space": any(d["low_space"] for d in disk.values()),
            "reasons": reasons,
        }
        body["status"] = "degraded" if reasons else "ok"
        return JSONResponse(body, status_code=503 if reasons else 200)

    routes: list[BaseRoute] = [
        WebSocketRoute("/ws/detector", detector_ws),
        Route("/api/health", health, methods=["GET"]),
        # passenger links (issue 16): the public /p/<token> page and the operator's actions;
        # before the status API, whose /api/{rest} answers every unknown /api path
        *PassengerPages(settings, rt).routes(),
        *passenger_link_routes(ApiContext(settings, names, hub_id, rt)),
        *delivery_routes(ApiContext(settings, names, hub_id, rt)),  # issue 16: the email
        *status_api.routes(),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.runtime = rt
    app.state.guard = guard
    return app


def uvicorn_config(app: Starlette, settings: Settings, *, graceful_s: int = 5) -> uvicorn.Config:
    """uvicorn's settings for the hub app: the guarded httptools and websockets-sansio
    protocols (connection limits fitted to this process's open-file limit, header timeout),
    the keep-alive timeout, and WebSocket pings that close dead sockets."""
    guard: ConnectionGuard = app.state.guard
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    guard.limits = fit_to_fd_limit(guard.limits, soft)
    http, ws = guarded_protocols(guard)
    return uvicorn.Config(
        app,
        http=http,
        ws=ws,
        ws_max_size=protocol.MAX_FRAME_BYTES,
        ws_ping_interval=WS_PING_INTERVAL_S,
        ws_ping_timeout=WS_PING_TIMEOUT_S,
        timeout_keep_alive=settings.hub_keepalive_timeout_s,
        backlog=ACCEPT_BACKLOG,
        lifespan="on",
        log_config=None,
        timeout_graceful_shutdown=graceful_s,
    )


class _Server(uvicorn.Server):
    """uvicorn re-raises SIGTERM/SIGINT after shutting down; a graceful stop here exits 0."""

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.should_exit and sig == signal.SIGINT:
            self.force_exit = True  # a second Ctrl-C: stop waiting for connections
        else:
            self.should_exit = True


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock


async def _serve(server: _Server, sock: socket.socket, url: str) -> bool:
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started and not task.done():
        await asyncio.sleep(0.05)
    if server.started:
        logger.info("hub listening on %s", url)
    await task
    return server.started


def serve(settings: Settings) -> int:
    """Run the hub until SIGINT/SIGTERM; exit code."""
    try:
        app = create_app(settings)
    except HubConfigError as exc:
        logger.error("%s", exc)
        return 2
    raise_fd_limit()  # a flood of connections must hit our limit, not EMFILE
    sock = _bind(settings.hub_host, settings.hub_port)
    port = int(sock.getsockname()[1])
    host = f"[{settings.hub_host}]" if ":" in settings.hub_host else settings.hub_host
    server = _Server(uvicorn_config(app, settings))
    logger.info("%s", settings.branding_summary())  # what renders get (the workers make it)
    try:
        started = asyncio.run(_serve(server, sock, f"http://{host}:{port}"))
    finally:
        sock.close()
    return 0 if started else 1
