"""`skyreel retry`, `resume`, `cancel`, `assign` and `executions`: operator commands from a shell.

Like the hub's actions (streams/hub/api_actions.py) they change nothing themselves: each sends
an ``OperatorCommand`` on the commands topic and waits for the engine's outcome
(streams/commands.py); with no worker running the command stays queued and applies when one
starts. Needs SKYREEL_DATABASE_URL and SKYREEL_KAFKA_URL.
"""

from __future__ import annotations

import asyncio
import getpass
import sys

from storage.commands import CommandOutcome
from storage.db import make_engine
from storage.enums import CommandAction
from storage.pipeline import executions_overview
from streams import commands, records
from streams.cli.whose import header as whose_header
from streams.cli.whose import whose
from streams.kafka import make_producer
from streams.settings import Settings
from streams.topics import Names


def _need(settings: Settings, what: str, *, kafka: bool = True) -> bool:
    if not settings.database_url or (kafka and not settings.kafka_url):
        urls = "SKYREEL_DATABASE_URL and SKYREEL_KAFKA_URL" if kafka else "SKYREEL_DATABASE_URL"
        print(f"{what} needs {urls}")
        return False
    return True


async def _issue(settings: Settings, cmd: records.OperatorCommand) -> CommandOutcome | None:
    engine = make_engine(settings.database_url, pool_size=1)
    producer = make_producer(settings.kafka_url)
    await producer.start()
    topic = Names(settings.topic_prefix).commands

    async def send(key: bytes, value: bytes) -> object:
        return await producer.send_and_wait(topic, value, key=key)

    try:
        return await commands.issue(engine, send, cmd)
    finally:
        await producer.stop()
        await engine.dispose()


def send_command(settings: Settings, cmd: records.OperatorCommand) -> CommandOutcome | None:
    """Send and wait; prints the "queued" line (and returns None) when no worker answered."""
    found = asyncio.run(_issue(settings, cmd))
    if found is None:
        print(f"command {cmd.command_id} {commands.QUEUED}")
    return found


def _names(found: CommandOutcome) -> str:
    retried = found.result.get("retried")
    names = [str(n) for n in retried] if isinstance(retried, list) else []
    return ", ".join(names) or "nothing (no step to move)"


def _execution_command(
    settings: Settings, action: CommandAction, execution_id: int, actor: str, **fields: object
) -> int:
    cmd = commands.new_command(action, actor, execution_id=execution_id, **fields)
    found = send_command(settings, cmd)
    if found is None:
        return 0
    if not found.ok:
        print(f"{action} refused: {found.message}")
        return 1
    if action is CommandAction.CANCEL:
        print(f"execution {execution_id}: cancelled {found.result.get('cancelled_steps')} steps")
    else:
        done = "resumed" if action is CommandAction.RESUME else "retried"
        print(f"execution {execution_id}: {done} {_names(found)}")
    return 0


def retry_cli(
    settings: Settings, execution_id: int, step: str | None, actor: str, force: bool = False
) -> int:
    if not _need(settings, "retry"):
        return 2
    return _execution_command(
        settings, CommandAction.RETRY, execution_id, actor, step=step, force=force
    )


def resume_cli(settings: Settings, execution_id: int, actor: str) -> int:
    if not _need(settings, "resume"):
        return 2
    return _execution_command(settings, CommandAction.RESUME, execution_id, actor)


def cancel_cli(settings: Settings, execution_id: int, actor: str) -> int:
    if not _need(settings, "cancel"):
        return 2
    return _execution_command(settings, CommandAction.CANCEL, execution_id, actor)


def assign_cli(
    settings: Settings,
    key: str,
    booking_id: str,
    passenger: str,
    *,
    email: str | None = None,
    product: str | None = None,
) -> int:
    """Assign a booking (already validated by the caller) to a session; `email`/`product`
    (issue 16) are stored with it."""
    cmd = commands.new_command(
        CommandAction.ASSIGN,
        f"cli:{getpass.getuser()}",
        session_key=key,
        booking_id=booking_id,
        passenger=passenger.strip(),
        email=email,
        product=" ".join(product.split()) if product else None,
    )
    found = send_command(settings, cmd)
    if found is None:
        return 0
    if not found.ok:
        print(f"skyreel assign: {found.message}", file=sys.stderr)
        return 1
    print(f"session {key} assigned to booking {booking_id} ({passenger})")
    return 0


async def _executions(settings: Settings, limit: int) -> int:
    engine = make_engine(settings.database_url, pool_size=1)
    try:
        async with engine.connect() as conn:
            rows = await executions_overview(conn, limit)
    finally:
        await engine.dispose()
    print(f"{'id':>6} {'status':<10} {'pipeline':<12} {whose_header()} key  [steps]")
    for r in rows:
        who = whose(r.booking_id, r.passenger, r.capture_start, r.card_id)
        print(f"{r.id:>6} {r.status:<10} {r.pipeline:<12} {who} {r.key}  [{r.steps or '-'}]")
    return 0


def executions_cli(settings: Settings, limit: int) -> int:
    if not _need(settings, "executions", kafka=False):
        return 2
    return asyncio.run(_executions(settings, limit))
