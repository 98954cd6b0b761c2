"""`/ws/status`: live updates for dashboards, so nobody polls.

Every hub replica reads the status topic in a consumer group of its own (so each replica sees
every event) from the latest offset, and fans each event out to its connected browsers. Detector
presence lives in Redis (keys written by the detector gateway of whichever replica holds the
socket); a small watcher diffs those keys and pushes `detector` events when one comes or goes.

Each browser has a bounded queue. Fan-out never waits for a browser: when a queue is full, its
contents are dropped and replaced by one `{"type": "resync"}` message — the browser must re-fetch
what it shows from the REST API. A client therefore sees either every event or a resync, never
a silently stale view.

Messages (JSON text frames): `{"type": "hello", "hub": ...}` on connect, `{"type": "event",
"kind": ..., "id": ..., "data": {...}}`, `{"type": "resync", "reason": ...}`.

Authentication, when reads are not open: browsers cannot set headers on a WebSocket, and a
token in the URL ends up in logs, so the client's first frame is `{"type": "auth", "token":
"..."}`, within :data:`AUTH_DEADLINE` seconds of the accept; anything else, or nothing, gets
close 1008 with the reason. An `Authorization: Bearer` header (non-browser clients) or, for
old clients, `?token=` (redacted from every log line) still authenticates the handshake itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from redis.asyncio import Redis
from redis.exceptions import RedisError
from starlette.websockets import WebSocket, WebSocketDisconnect

from streams import kafka, records
from streams.settings import Settings
from streams.topics import Names

logger = logging.getLogger(__name__)

#: Messages a browser may have outstanding before it gets a resync instead.
CLIENT_QUEUE = 256
#: Seconds between two looks at the detector presence keys.
PRESENCE_POLL = 2.0
#: Seconds a client of a hub whose reads are not open has to send its authentication frame.
AUTH_DEADLINE = 5.0
#: The close code of a refused client (policy violation).
CLOSE_POLICY = 1008

Message = dict[str, object]


@dataclass(eq=False)
class Client:
    """One connected browser: a bounded queue its sender task drains."""

    remote: str
    size: int = CLIENT_QUEUE
    queue: asyncio.Queue[Message] = field(init=False)
    resyncs: int = 0

    def __post_init__(self) -> None:
        self.queue = asyncio.Queue(self.size)

    def offer(self, message: Message) -> None:
        """Queue a message without waiting; a full queue becomes a single resync."""
        try:
            self.queue.put_nowait(message)
        except asyncio.QueueFull:
            while not self.queue.empty():
                self.queue.get_nowait()
            self.resyncs += 1
            self.queue.put_nowait({"type": "resync", "reason": "client fell behind"})
            logger.info("status client %s fell behind; sent resync #%d", self.remote, self.resyncs)


class Fanout:
    """The set of connected clients of this replica."""

    def __init__(self, queue_size: int = CLIENT_QUEUE) -> None:
        self.queue_size = queue_size
        self.clients: set[Client] = set()

    def add(self, remote: str) -> Client:
        client = Client(remote, self.queue_size)
        self.clients.add(client)
        return client

    def remove(self, client: Client) -> None:
        self.clients.discard(client)

    def publish(self, message: Message) -> None:
        for client in list(self.clients):
            client.offer(message)

    def resync_all(self, reason: str) -> None:
        """Everyone re-fetches (e.g. the status consumer restarted and may have missed events)."""
        for client in list(self.clients):
            while not client.queue.empty():
                client.queue.get_nowait()
            client.queue.put_nowait({"type": "resync", "reason": reason})


def event_message(event: records.StatusEvent) -> Message:
    return {"type": "event", "kind": event.kind, "id": event.id, "data": event.data or {}}


def auth_frame_token(raw: str | bytes | None) -> str | None:
    """The token of an `{"type": "auth", "token": "..."}` frame, else None (pure)."""
    if not raw:
        return None
    try:
        frame = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    if not isinstance(frame, dict) or frame.get("type") != "auth":
        return None
    token = frame.get("token")
    return token if isinstance(token, str) and token.strip() else None


def presence_changes(before: dict[str, str], after: dict[str, str]) -> list[tuple[str, bool, str]]:
    """(detector id, online, presence value) for every detector that came, went or moved."""
    changes = [(d, True, v) for d, v in after.items() if before.get(d) != v]
    changes += [(d, False, "") for d in before if d not in after]
    return sorted(changes)


@dataclass
class LiveStatus:
    """The status consumer, the presence watcher and the `/ws/status` endpoint of one replica."""

    settings: Settings
    names: Names
    hub_id: str
    fanout: Fanout = field(default_factory=Fanout)
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    @property
    def group(self) -> str:
        # Derived from the hub's own group so it is unique per replica and per deployment.
        return f"{self.names.hub_group(self.hub_id)}.status"

    def start(self, redis: Redis | None) -> None:
        self._tasks.append(asyncio.create_task(self._consume_forever()))
        if redis is not None:
            self._tasks.append(asyncio.create_task(self._watch_presence(redis)))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()

    # --- status topic ------------------------------------------------------------------------

    async def _consume_forever(self) -> None:
        while True:
            consumer = kafka.make_consumer(
                self.settings,
                self.settings.kafka_url,
                self.names.status,
                group_id=self.group,
                auto_offset_reset="latest",
            )
            try:
                await consumer.start()
                while True:
                    batches = await consumer.getmany(timeout_ms=500)
                    if not self.ready.is_set() and consumer.assignment():
                        for tp in consumer.assignment():
                            await consumer.position(tp)  # pin "latest" before saying ready
                        self.ready.set()
                        logger.info("hub %s streaming status events", self.hub_id)
                    for messages in batches.values():
                        for message in messages:
                            self._deliver(message.value or b"", message.offset)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("status consumer of hub %s failed; restarting", self.hub_id)
                self.ready.clear()
                self.fanout.resync_all("status stream restarted")
                await asyncio.sleep(2)
            finally:
                await consumer.stop()

    def _deliver(self, raw: bytes, offset: int) -> None:
        try:
            event = records.decode(records.StatusEvent, raw)
        except Exception as exc:  # a bad record must not stop the stream
            logger.error("undecodable status event at offset %d skipped: %s", offset, exc)
            return
        self.fanout.publish(event_message(event))

    # --- detector presence -------------------------------------------------------------------

    async def _presence(self, redis: Redis) -> dict[str, str]:
        pattern = self.names.detector_presence_key("*")
        head, tail = pattern.split("*", 1)
        keys = [k async for k in redis.scan_iter(match=pattern, count=500)]
        if not keys:
            return {}
        values = await redis.mget(keys)
        found: dict[str, str] = {}
        for key, value in zip(keys, values, strict=True):
            name = key.decode() if isinstance(key, bytes) else str(key)
            if value is not None:
                raw = value.decode() if isinstance(value, bytes) else str(value)
                found[name[len(head) : len(name) - len(tail)]] = raw
        return found

    async def _watch_presence(self, redis: Redis) -> None:
        known: dict[str, str] | None = None
        while True:
            try:
                now = await self._presence(redis)
            except (RedisError, OSError) as exc:
                logger.warning("detector presence not readable: %s", exc)
            else:
                if known is not None:
                    for detector_id, online, value in presence_changes(known, now):
                        self.fanout.publish(_presence_message(detector_id, online, value))
                known = now
            await asyncio.sleep(PRESENCE_POLL)

    # --- the endpoint ------------------------------------------------------------------------

    async def endpoint(
        self,
        websocket: WebSocket,
        authorized: Callable[[WebSocket], Awaitable[bool]],
        token_valid: Callable[[str], bool],
    ) -> None:
        """``authorized``: reads are open or the handshake carried a good token; otherwise the
        first frame must carry one that ``token_valid`` accepts."""
        handshake_ok = await authorized(websocket)
        await websocket.accept()
        remote = websocket.client.host if websocket.client else "?"
        if not handshake_ok:
            refusal = await self._authenticate(websocket, token_valid)
            if refusal is not None:
                logger.warning("status client %s refused: %s", remote, refusal)
                with contextlib.suppress(Exception):  # it may be gone already
                    await websocket.close(CLOSE_POLICY, refusal)
                return
        client = self.fanout.add(remote)
        client.offer({"type": "hello", "hub": self.hub_id})  # one writer: the sender task
        sender = asyncio.create_task(self._send(websocket, client))
        try:
            while True:  # browsers say nothing; reading notices the close
                await websocket.receive_text()
        except (WebSocketDisconnect, RuntimeError):
            pass
        finally:
            self.fanout.remove(client)
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await sender

    async def _authenticate(
        self, websocket: WebSocket, token_valid: Callable[[str], bool]
    ) -> str | None:
        """Wait for the authentication frame; None when it is good, else the refusal."""
        try:
            message = await asyncio.wait_for(websocket.receive(), AUTH_DEADLINE)
        except TimeoutError:
            return f"no authentication frame within {AUTH_DEADLINE:.0f} s"
        if message["type"] == "websocket.disconnect":
            return "left before authenticating"
        token = auth_frame_token(message.get("text") or message.get("bytes"))
        if token is None:
            return 'the first frame must be {"type": "auth", "token": "<admin token>"}'
        if not token_valid(token):
            return "invalid token"
        return None

    async def _send(self, websocket: WebSocket, client: Client) -> None:
        while True:
            message = await client.queue.get()
            await websocket.send_text(json.dumps(message, default=str))


def _presence_message(detector_id: str, online: bool, value: str) -> Message:
    data: dict[str, object] = {"online": online}
    if value:
        with contextlib.suppress(ValueError):
            parsed = json.loads(value)
            if isinstance(parsed, dict):
                data.update({k: parsed[k] for k in ("hub", "since") if k in parsed})
    return {"type": "event", "kind": "detector", "id": detector_id, "data": data}
