"""The one-machine stack behind ``skyreel run``.

:class:`Stack` starts what the settings leave unconfigured — embedded PostgreSQL, Redis and the
Tansu broker, all child processes with their data under ``data_dir`` — waits until each answers,
applies migrations, creates the Kafka topics with the configured partition count, and hands back
the effective settings (every URL filled in) for the processes it then runs. Configured URLs
switch each service to an external one, which is only checked, never started or stopped.

:func:`run_all` is ``skyreel run``: the stack, then the hub, the Faust worker and the render
workers as supervised child processes (a crashed child is restarted with backoff), until Ctrl-C or
SIGTERM stops the children in reverse order and then the services. The embedded services are
supervised too (:class:`streams.stack.supervisor.ServiceSupervisor`): a dead one is restarted on the
same data directory and port, the broker's topics are created again (Tansu keeps them in
memory), and the children that cannot survive its restart on their own are restarted after it.
"""

from __future__ import annotations

import argparse
import asyncio
import fcntl
import functools
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import IO
from urllib.parse import urlsplit, urlunsplit

from pydantic import SecretStr

from streams import kafka
from streams.service_state import SERVICE_STATE_FILE, kafka_answers, redis_answers
from streams.settings import Settings
from streams.stack.admin_token import ensure_admin_token
from streams.stack.announce import announce, hub_base, write_stack
from streams.stack.discovery import remove_stack_file
from streams.stack.logfiles import ConsolePrinter, attach_own_log, cap_running_log, detach_own_log
from streams.stack.services import ChildService, ServiceStartError, remembered_port
from streams.stack.supervisor import (
    ChildSpec,
    ServiceSupervisor,
    ServiceWatch,
    Supervisor,
)
from streams.topics import Names

logger = logging.getLogger(__name__)

REDIS_DEFAULT_PORT = 63790
KAFKA_DEFAULT_PORT = 19092
#: What health and the progress line call each embedded service.
LABELS = {"postgresql": "database", "redis": "redis", "kafka": "broker"}


class StackCancelled(Exception):
    """A stop was asked for while the stack was still starting."""


def mask_url(url: str) -> str:
    """The URL with its password (if any) replaced by ``****``."""
    parts = urlsplit(url)
    if not parts.password:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username or ''}:****@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def settings_env_vars(settings: Settings) -> dict[str, str]:
    """``SKYREEL_*`` variables that rebuild ``settings`` in a child process."""
    env: dict[str, str] = {}
    for name, value in settings.model_dump().items():
        if value is None:
            continue
        if hasattr(value, "get_secret_value"):
            value = value.get_secret_value()
        env[f"SKYREEL_{name.upper()}"] = (
            str(value).lower() if isinstance(value, bool) else str(value)
        )
    return env


def child_environ(settings: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SKYREEL_")}
    return env | settings_env_vars(settings) | {"PYTHONUNBUFFERED": "1"}


def summary(effective: Settings, embedded: Sequence[str]) -> str:
    """The startup summary: where everything is, embedded or external, secrets masked."""

    def row(name: str, key: str, url: str, note: str = "") -> str:
        kind = "embedded" if key in embedded else "external"
        return f"  {name:<11} {kind:<9} {mask_url(url)}{note}"

    tansu = " (tansu, in memory: topics are recreated each start)" if "kafka" in embedded else ""
    names = Names(effective.topic_prefix)
    lines = [
        "skyreel stack",
        f"  {'data dir':<11} {effective.data_dir}",
        row("postgresql", "postgresql", effective.database_url),
        row("redis", "redis", effective.redis_url),
        row("kafka", "kafka", effective.kafka_url, tansu),
        f"  {'topics':<11} {len(names.source_topics())} x {effective.topic_partitions} "
        f"partitions, prefix {effective.topic_prefix!r}",
        f"  {'share':<11} {effective.share_root}",
        f"  {'output':<11} {effective.output_dir}",
    ]
    return "\n".join(lines)


async def ensure_topics(bootstrap: str, topics: Sequence[str], partitions: int) -> None:
    """Create the source topics with an explicit partition count (auto-created ones get the
    broker's default, and co-partitioned Faust tables then refuse to start)."""
    try:
        await kafka.ensure_topics(bootstrap, topics, partitions)
    except kafka.TopicError as exc:
        raise ServiceStartError("kafka", str(exc)) from exc


def _redis_answers(url: str) -> None:
    import redis

    client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
    try:
        client.ping()
    except redis.RedisError as exc:
        raise ServiceStartError("redis", f"no answer at {mask_url(url)}: {exc}") from exc
    finally:
        client.close()


class Stack:
    """Starts the services the settings leave unconfigured; a context manager.

    ``with Stack(settings) as effective:`` gives settings with every URL filled in.
    """

    def __init__(self, settings: Settings, *, cancelled: Callable[[], bool] = lambda: False):
        self.settings = settings
        self.services: dict[str, ChildService] = {}
        self.effective: Settings | None = None
        self._cancelled = cancelled
        self._lock: IO[bytes] | None = None

    def __enter__(self) -> Settings:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def embedded(self) -> list[str]:
        return list(self.services)

    def start(self) -> Settings:
        try:
            return self._start()
        except BaseException:
            self.stop()
            raise

    def _step(self, what: str) -> None:
        if self._cancelled():
            raise StackCancelled(f"stopped while starting ({what})")

    def _start(self) -> Settings:
        s = self.settings
        data_dir = s.data_dir.resolve()
        data_dir.mkdir(parents=True, exist_ok=True)
        self._take_lock(data_dir)
        update: dict[str, object] = {"data_dir": data_dir}

        self._step("postgresql")
        database_url = s.database_url
        if not database_url:
            from streams.stack.postgres import start_postgres

            self.services["postgresql"] = svc = start_postgres(data_dir)
            database_url = update["database_url"] = svc.extra["url"]

        self._step("redis")
        redis_url = s.redis_url
        if not redis_url:
            from streams.stack.services import start_redis

            port = remembered_port(data_dir / "redis.port", REDIS_DEFAULT_PORT)
            self.services["redis"] = svc = start_redis(data_dir, port)
            redis_url = update["redis_url"] = f"redis://{svc.address}/0"
        else:
            _redis_answers(redis_url)

        self._step("kafka")
        kafka_url = s.kafka_url
        if not kafka_url:
            from streams.stack.services import start_tansu

            port = remembered_port(data_dir / "kafka.port", KAFKA_DEFAULT_PORT)
            self.services["kafka"] = svc = start_tansu(data_dir, port)
            kafka_url = update["kafka_url"] = svc.address
            if s.kafka_local_tuning is None:
                # Children see a kafka_url, so they would no longer infer the local tuning.
                update["kafka_local_tuning"] = True

        self._step("migrations")
        from storage.migrate import upgrade

        upgrade(database_url)
        logger.info("postgresql: schema up to date (%s)", mask_url(database_url))

        self._step("topics")
        names = Names(s.topic_prefix)
        asyncio.run(ensure_topics(kafka_url, names.source_topics(), s.topic_partitions))

        # Unset share/output dirs follow the data dir (their defaults sit under the default one).
        for key, sub in (("share_root", "share"), ("output_dir", "output")):
            path = getattr(s, key) if key in s.model_fields_set else data_dir / sub
            path = Path(path).resolve()
            path.mkdir(parents=True, exist_ok=True)
            update[key] = path
        self.effective = s.model_copy(update=update)
        return self.effective

    def watches(self) -> list[ServiceWatch]:
        """How to keep each embedded service alive (for :class:`ServiceSupervisor`)."""
        from streams.stack.postgres import postgres_ready

        ready = {"postgresql": postgres_ready, "redis": redis_answers, "kafka": kafka_answers}
        return [
            ServiceWatch(
                key,
                LABELS[key],
                svc,
                respawn=functools.partial(self._respawn, key),
                ready=ready[key],
                after_ready=self._topics_again if key == "kafka" else None,
            )
            for key, svc in self.services.items()
        ]

    def _respawn(self, key: str) -> ChildService:
        """Start service ``key`` again on its data dir and port (not waited for)."""
        from streams.stack.postgres import spawn_postgres
        from streams.stack.services import spawn_redis, spawn_tansu

        spawn = {"postgresql": spawn_postgres, "redis": spawn_redis, "kafka": spawn_tansu}[key]
        old = self.services[key]
        self.services[key] = svc = spawn(self.settings.data_dir.resolve(), old.port)
        return svc

    def _topics_again(self, svc: ChildService) -> None:
        # A restarted Tansu has no topics: create them before the children's clients
        # auto-create them with the broker's default partition count.
        names = Names(self.settings.topic_prefix)
        asyncio.run(
            ensure_topics(svc.address, names.source_topics(), self.settings.topic_partitions)
        )

    def _take_lock(self, data_dir: Path) -> None:
        # flock, not a pid file: the kernel drops it when we die, so it can never go stale.
        fh = (data_dir / "skyreel.lock").open("wb")
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            fh.close()
            raise ServiceStartError(
                "stack", f"another skyreel run is using {data_dir} (skyreel.lock is held)"
            ) from exc
        self._lock = fh

    def stop(self) -> None:
        """Stop the embedded services in reverse order of start."""
        for name in reversed(list(self.services)):
            try:
                self.services.pop(name).stop(timeout=30)
            except Exception:
                logger.exception("%s: failed to stop cleanly", name)
        if self._lock is not None:
            self._lock.close()
            self._lock = None


def default_children(render_workers: int) -> list[ChildSpec]:
    cli = (sys.executable, "-m", "streams.cli")
    specs = [
        # After a restart the (in-memory) broker has lost what was in flight. A fresh hub
        # makes the detectors reconnect, and on connect the hub re-sends every copy request
        # still pending in PostgreSQL; Faust keeps its group and internal topics on the
        # broker, so the worker starts afresh too (its reconciler re-drives the steps).
        ChildSpec("hub", (*cli, "hub"), restart_with=("kafka",)),
        ChildSpec("worker", (*cli, "worker"), restart_with=("kafka",)),
    ]
    specs += [
        ChildSpec(f"render-worker-{i + 1}", (*cli, "render-worker")) for i in range(render_workers)
    ]
    return specs


def run_all(
    settings: Settings, args: argparse.Namespace, children: Sequence[ChildSpec] | None = None
) -> int:
    """``skyreel run``: the stack and the application processes until Ctrl-C or SIGTERM."""
    stop_signal: list[int] = []

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        if stop_signal:
            logger.info("already stopping")
        stop_signal.append(signum)

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    own_log = attach_own_log(settings.data_dir.resolve() / "logs" / "skyreel.log")
    try:
        return _run(settings, args, children, lambda: bool(stop_signal))
    finally:
        detach_own_log(own_log)
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _run(
    settings: Settings,
    args: argparse.Namespace,
    children: Sequence[ChildSpec] | None,
    stopping: Callable[[], bool],
) -> int:
    if settings.hub_port and not _port_is_free(settings.hub_host, settings.hub_port):
        logger.error("hub port %s:%d is in use (set SKYREEL_HUB_PORT)", settings.hub_host,
                     settings.hub_port)  # fmt: skip
        return 1
    stack = Stack(settings, cancelled=stopping)
    try:
        effective = stack.start()
        effective, token_file = _admin_token(settings, effective)
    except StackCancelled:
        return 0
    except ServiceStartError as exc:
        stack.stop()
        logger.error("%s", exc)
        return 1
    except Exception:
        # Migrations or topic creation against a service that answered but misbehaves.
        stack.stop()
        logger.exception("the stack did not start")
        return 1
    specs = list(
        default_children(getattr(args, "render_workers", 2)) if children is None else children
    )
    demo = None
    if not getattr(args, "no_demo", True):
        from streams.stack import demo as demo_mod

        try:
            effective = demo_mod.demo_settings(effective)
            demo = demo_mod.prepare(effective, getattr(args, "jumps", 3))
        except Exception:
            logger.exception("the demo card could not be prepared")
            stack.stop()
            return 1
        specs = [*specs, demo.detector]
    # Every child logs to <data_dir>/logs/<name>.log; the console shows their warnings and
    # errors, except with the demo, whose progress view has the terminal.
    log_dir = effective.data_dir / "logs"
    width = max(len(s.name) for s in specs) + 1 if specs else 8
    console = None if demo is not None else ConsolePrinter(width)
    sup = Supervisor(specs, child_environ(effective), log_dir=log_dir, console=console)

    def back(key: str) -> None:
        sup.hurry()
        sup.restart_dependants(key)

    watches = stack.watches()
    for w in watches:
        if w.key == "kafka":
            # Until the topics are re-created, a client's metadata request would auto-create
            # them (wrong partition count; Tansu then fails every produce on that partition).
            w.before_start, w.after_start = sup.freeze, sup.thaw
            w.start_timeout = 20.0  # Tansu answers in milliseconds: never freeze for long
    services = ServiceSupervisor(
        watches, status_file=effective.data_dir / SERVICE_STATE_FILE, on_back=back
    )
    capped = [time.monotonic()]

    def poll() -> None:
        services.poll()
        sup.poll()
        if time.monotonic() - capped[0] > 30:  # the services' own logs, while they run
            capped[0] = time.monotonic()
            for svc in stack.services.values():
                cap_running_log(svc.log_path)

    try:
        print(summary(effective, stack.embedded), flush=True)
        sup.start_all()
        names = [*(s.name for s in specs), *(svc.log_path.stem for svc in stack.services.values())]
        try:
            write_stack(effective, [*names, "skyreel"], token_file)
        except OSError as exc:
            logger.warning("cannot write the stack file in %s (other commands will not find "
                           "this stack by themselves): %s", effective.data_dir, exc)  # fmt: skip
        has_hub = any(c.spec.name == "hub" for c in sup.children)
        announce(effective, has_hub=has_hub, token_file=token_file, stopping=stopping, poll=poll)
        if demo is not None:
            from streams.stack.demo import show_progress

            done = show_progress(effective, demo, stopping, poll, services.down)
            if done:
                print(f"dashboard: {hub_base(effective)}/  (Ctrl-C to stop)", flush=True)
            if done and getattr(args, "exit_when_done", False):
                return 0
        while not stopping():
            poll()
            time.sleep(0.2)
        logger.info("stopping (signal received)")
    finally:
        remove_stack_file(effective.data_dir)
        sup.stop_all()
        services.stop()
        stack.stop()
        logger.info("skyreel stopped")
    return 0


def _admin_token(settings: Settings, effective: Settings) -> tuple[Settings, Path | None]:
    """The operator's SKYREEL_ADMIN_TOKEN, else the data dir's generated one (never the fixed
    development default: anyone who read the source would hold the dashboard)."""
    if "admin_token" in settings.model_fields_set:
        return effective, None
    token, path = ensure_admin_token(effective.data_dir)
    return effective.model_copy(update={"admin_token": SecretStr(token)}), path


def _port_is_free(host: str, port: int) -> bool:
    from streams.stack.services import port_free

    return port_free(port, host)
