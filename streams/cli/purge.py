"""`skyreel purge --booking B [--yes]`: delete a booking's files and personal data on request.

Prints what will go (its jumps, the files its steps name, its share copies, its live links) and
asks, unless --yes; then sends a purge command to the engine (agents/purge.py, through the
commands topic like `skyreel retry`) and prints what the purge record says was done. Needs
SKYREEL_DATABASE_URL and SKYREEL_KAFKA_URL; with no worker running the purge stays queued and
applies when one starts.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
from dataclasses import dataclass
from pathlib import Path

from storage import purge as store
from storage.db import make_engine
from storage.enums import CommandAction
from streams import commands
from streams.cli.commands import send_command
from streams.settings import Settings

_SHOWN = 20


@dataclass(frozen=True)
class Preview:
    sessions: list[store.BookingSession]
    files: list[Path]
    copies: int
    links: int


def _named_files(outputs: list[dict[str, object]], output_dir: Path) -> list[Path]:
    found: set[Path] = set()

    def walk(value: object) -> None:
        if isinstance(value, str) and ("/" in value) and len(value) < 4096:
            p = Path(value)
            p = p if p.is_absolute() else output_dir / p
            if p.is_file():
                found.add(p)
        elif isinstance(value, list):
            for v in value:
                walk(v)
        elif isinstance(value, dict):
            for v in value.values():
                walk(v)

    walk(outputs)
    return sorted(found)


async def _preview(settings: Settings, booking_id: str) -> Preview:
    engine = make_engine(settings.database_url, pool_size=1)
    try:
        async with engine.connect() as conn:
            sessions = await store.booking_sessions(conn, booking_id)
            eids = await store.execution_ids(conn, [s.key for s in sessions])
            outputs = await store.step_outputs(conn, eids)
            ids = sorted({i for s in sessions for i in s.file_ids})
            rows = await store.copies(conn, ids)
            links = await store.live_links(conn, booking_id)
    finally:
        await engine.dispose()
    copies = sum(1 for r in rows if r.stored_path and r.purged_at is None)
    return Preview(sessions, _named_files(outputs, settings.output_dir), copies, links)


def _print_preview(booking_id: str, p: Preview) -> None:
    print(f"booking {booking_id}: {len(p.sessions)} jump(s)")
    for s in p.sessions:
        state = (
            "personal data purged"
            if s.personal_purged_at
            else "footage purged"
            if s.media_purged_at
            else "kept"
        )
        print(f"  {s.key}: {state}")
    print(f"  {len(p.files)} output file(s) to delete")
    for f in p.files[:_SHOWN]:
        print(f"    {f}")
    if len(p.files) > _SHOWN:
        print(f"    ... and {len(p.files) - _SHOWN} more")
    print(f"  {p.copies} share cop(y/ies) of its clips to delete (the ledger rows are kept)")
    print(f"  {p.links} live passenger link(s) to revoke; names and emails removed from every row")


def purge_cli(settings: Settings, booking_id: str, yes: bool) -> int:
    if not settings.database_url or not settings.kafka_url:
        print("skyreel purge needs SKYREEL_DATABASE_URL and SKYREEL_KAFKA_URL", file=sys.stderr)
        return 2
    booking_id = booking_id.strip()
    if not booking_id or "\x00" in booking_id:
        print("skyreel purge: give --booking B", file=sys.stderr)
        return 2
    preview = asyncio.run(_preview(settings, booking_id))
    if not preview.sessions:
        print(
            f"skyreel: booking {booking_id!r} has no jump session; nothing purged", file=sys.stderr
        )
        return 1
    _print_preview(booking_id, preview)
    if not yes:
        if not sys.stdin.isatty():
            print("skyreel purge: not a terminal; confirm with --yes", file=sys.stderr)
            return 2
        answer = input("Delete all of this for good? Type the booking id to confirm: ")
        if answer.strip() != booking_id:
            print("nothing purged")
            return 1
    cmd = commands.new_command(
        CommandAction.PURGE, f"cli:{getpass.getuser()}", booking_id=booking_id
    )
    found = send_command(settings, cmd)
    if found is None:
        return 0  # queued (printed)
    if not found.ok:
        print(f"skyreel: purge refused: {found.message}", file=sys.stderr)
        return 1
    what = found.result.get("what", {})
    errors = found.result.get("errors", [])
    if isinstance(what, dict) and what.get("nothing_left"):
        print(f"booking {booking_id}: nothing left to purge (recorded)")
    else:
        counts = ", ".join(
            f"{k} {v}" for k, v in sorted((what or {}).items()) if k not in ("nothing_left",)
        )
        print(f"booking {booking_id} purged (record {found.result.get('record_id')}): {counts}")
    for e in errors if isinstance(errors, list) else []:
        print(f"  NOT DONE: {e.get('path')}: {e.get('error')} -> {e.get('action')}")
    return 1 if errors else 0


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:  # type: ignore[type-arg]
    p: argparse.ArgumentParser = sub.add_parser(
        "purge", help="delete a booking's videos, photos, copies and personal data (recorded)"
    )
    p.add_argument("--booking", required=True, help="booking id")
    p.add_argument("--yes", action="store_true", help="do not ask")
    return p
