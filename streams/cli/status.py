"""`skyreel status` and `skyreel assign`: the status API's reads and the assign action from a shell.

The reads are the hub's (storage.status queries, straight against SKYREEL_DATABASE_URL); the
assignment is an operator command like the hub's (streams/cli/commands.py).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import datetime

from pydantic import ValidationError

from storage import status as queries
from storage import status_cards as card_queries
from storage.db import make_engine
from streams.cli import commands
from streams.cli.whose import header, plain, whose
from streams.hub.api_action_models import AssignRequest
from streams.hub.api_models import Attention, Card
from streams.hub.api_support import attention, card_name, cards_with_safety
from streams.settings import Settings


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
            failed = [
                (r, await queries.execution_steps(conn, int(r["id"])))  # type: ignore[call-overload]
                for r in rows
                if r.get("steps_failed")
            ]
            needs = await attention(conn, 50)
            cards = await cards_with_safety(conn, await card_queries.list_cards(conn, 20, 0))
    finally:
        await engine.dispose()
    print("counters: " + ", ".join(f"{k}={v}" for k, v in sorted(counters.items())))
    print(f"{'id':>6}  {'pipeline':<12} {'status':<10} {'progress':>8}  {header()} key")
    for r in rows:
        who = whose(
            _text(r.get("booking_id")),
            _text(r.get("passenger")),
            _when(r.get("capture_start")),
            _text(r.get("card_id")),
        )
        print(
            f"{r['id']:>6}  {r['pipeline']!s:<12} {r['status']!s:<10} "
            f"{float(r['progress']) * 100:>7.0f}%  {who} "  # type: ignore[arg-type]
            f"{plain(str(r['subject_id']))}"
        )
    _print_failed(failed)
    _print_attention(needs)
    _print_cards(cards)


def _text(value: object) -> str | None:
    return None if value is None else str(value)


def _when(value: object) -> datetime | None:
    return value if isinstance(value, datetime) else None


_plain = plain  # the attention and card lines below


def _print_failed(failed: list[tuple[dict[str, object], list[dict[str, object]]]]) -> None:
    """Each failed step of the listed executions, with its error and the command to retry it
    (issue 17: the operator never hunts for why a step failed)."""
    if not failed:
        return
    print("failed steps (fix the cause, then retry):")
    for r, steps in failed:
        who = " ".join(_plain(str(v)) for v in (r.get("booking_id"), r.get("passenger")) if v)
        for st in steps:
            if st.get("status") != "failed":
                continue
            error = _plain(str(st.get("error") or "no error recorded"))
            print(f"  execution {r['id']} {who or '-'}: step {st['name']} failed: {error}")
            print(f"    retry: skyreel retry {r['id']} --step {_plain(str(st['name']))}")


def _print_attention(needs: Attention) -> None:
    """The same items as /api/attention and the dashboard: actions first."""
    if not needs.items:
        print("needs attention: nothing")
        return
    print("needs attention:")
    for item in needs.items:
        print(f"  [{item.severity}] {_plain(item.message)}")
    if needs.truncated:
        print("  (more: older items left out; see /api/attention)")
    if any(i.kind == "needs_review" for i in needs.items):
        print("  assign a booking: skyreel assign KEY --booking B --passenger NAME")


def _print_cards(cards: list[Card]) -> None:
    if not cards:
        return
    print("cards (last seen first; their warnings are listed above):")
    for c in cards:
        where = "present" if c.present else "removed"
        removal = c.notes[0].message if c.notes else ""
        full = "  nearly full" if c.nearly_full else ""
        print(
            _plain(
                f"  {card_name(c.id, c.label)}  {where}  {c.imported}/{c.listed} imported  "
                f"{removal}{full}"
            )
        )


def status_cli(settings: Settings, args: argparse.Namespace) -> int:
    if not _need_db(settings):
        return 2
    asyncio.run(_status(settings, args.limit))
    return 0


def assign_cli(settings: Settings, args: argparse.Namespace) -> int:
    if not _need_db(settings):
        return 2
    try:
        body = AssignRequest(
            booking_id=args.booking,
            passenger=args.passenger,
            email=getattr(args, "email", None),
            product=getattr(args, "product", None),
        )
    except ValidationError as exc:
        print(f"invalid: {exc.errors()[0]['loc'][0]}: {exc.errors()[0]['msg']}", file=sys.stderr)
        return 2

    if not settings.kafka_url:
        print("skyreel assign needs SKYREEL_KAFKA_URL too (to move the jump on)", file=sys.stderr)
        return 2
    return commands.assign_cli(
        settings,
        args.session,
        body.booking_id,
        body.passenger,
        email=body.email,
        product=body.product,
    )
