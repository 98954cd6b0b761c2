"""`skyreel status` and `skyreel assign`: the status API's reads and the assign action from a shell.

They call the same functions as the hub (storage.status queries, streams.api_actions.assign),
straight against PostgreSQL (SKYREEL_DATABASE_URL).
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys

from pydantic import ValidationError

from storage import status as queries
from storage.db import make_engine
from storage.sessions import SessionError
from streams.api_actions import assign
from streams.api_models import AssignRequest
from streams.kafka import make_producer
from streams.settings import Settings
from streams.topics import Names


def _need_db(settings: Settings) -> bool:
    if not settings.database_url:
        print("SKYREEL_DATABASE_URL is not set", file=sys.stderr)
        return False
    return True


async def _status(settings: Settings, limit: int) -> None:
    engine = make_engine(settings.database_url, pool_size=1)
    try:
        async with engine.connect() as conn:
            counters = await queries.counters(conn)
            rows, _ = await queries.list_executions(
                conn, queries.ExecutionFilter(), queries.Page(limit=limit)
            )
            review = await queries.list_sessions(conn, "needs_review", None, 50, 0)
            review += await queries.list_sessions(conn, "unassigned", None, 50, 0)
    finally:
        await engine.dispose()
    print("counters: " + ", ".join(f"{k}={v}" for k, v in sorted(counters.items())))
    print(f"{'id':>6}  {'pipeline':<12} {'status':<10} {'progress':>8}  subject")
    for r in rows:
        who = r.get("passenger") or r["subject_id"]
        print(
            f"{r['id']:>6}  {r['pipeline']!s:<12} {r['status']!s:<10} "
            f"{float(r['progress']) * 100:>7.0f}%  {who}"  # type: ignore[arg-type]
        )
    if review:
        print("sessions waiting for a booking (skyreel assign KEY --booking B --passenger NAME):")
        for s in review:
            print(f"  {s['key']}  {s['status']}  card {s['card_id']}")


def status_cli(settings: Settings, args: argparse.Namespace) -> int:
    if not _need_db(settings):
        return 2
    asyncio.run(_status(settings, args.limit))
    return 0


def assign_cli(settings: Settings, args: argparse.Namespace) -> int:
    if not _need_db(settings):
        return 2
    try:
        body = AssignRequest(booking_id=args.booking, passenger=args.passenger)
    except ValidationError as exc:
        print(f"invalid: {exc.errors()[0]['loc'][0]}: {exc.errors()[0]['msg']}", file=sys.stderr)
        return 2

    if not settings.kafka_url:
        print("skyreel assign needs SKYREEL_KAFKA_URL too (to move the jump on)", file=sys.stderr)
        return 2

    async def run() -> None:
        engine = make_engine(settings.database_url, pool_size=1)
        producer = make_producer(settings.kafka_url)
        await producer.start()
        topic = Names(settings.topic_prefix).step_results

        async def send(key: bytes, value: bytes) -> object:
            return await producer.send_and_wait(topic, value, key=key)

        try:
            await assign(
                engine,
                args.session,
                body.booking_id,
                body.passenger.strip(),
                f"cli:{getpass.getuser()}",
                send,
            )
        finally:
            await producer.stop()
            await engine.dispose()

    try:
        asyncio.run(run())
    except SessionError as exc:
        print(f"skyreel assign: {exc}", file=sys.stderr)
        return 1
    print(f"session {args.session} assigned to booking {body.booking_id} ({body.passenger})")
    return 0
