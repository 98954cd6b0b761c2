"""`skyreel edit SESSION --exit S --opening S [--landing S]`: move a jump's marks by hand.

The marks are seconds on the session's recording (its clips end to end, as the dashboard's
chart shows them). They are checked here as the API checks them (streams/edit_request.py), then
sent as an ``edit`` operator command, the same path as ``skyreel assign``
(streams/cli/commands.py): the engine stores them and runs the session's phases step, render and
publish again, so the published video becomes the new edit.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys

from storage.db import make_engine
from storage.enums import CommandAction
from streams import commands, edit_request, records
from streams.cli.commands import send_command
from streams.settings import Settings

HELP = "set a jump's exit, opening and landing by hand; its edit is rendered again"
DESCRIPTION = (
    "Set the marks of a jump session by hand, in seconds on its recording (the session's clips "
    "end to end, as the dashboard's chart shows them): exit < opening < landing, all within the "
    "recording. Omit --landing to keep everything after the opening. The session's phases step "
    "is rebuilt from the marks and the video rendered and published again (it replaces the "
    "session's earlier video). A session waiting for a person because of its edit is approved."
)


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    p = sub.add_parser("edit", help=HELP, description=DESCRIPTION)
    p.add_argument("session", help="jump session key (see `skyreel status` or the dashboard)")
    p.add_argument("--exit", type=float, required=True, metavar="S", help="exit, in seconds")
    p.add_argument(
        "--opening", type=float, required=True, metavar="S", help="canopy opening, in seconds"
    )
    p.add_argument(
        "--landing", type=float, default=None, metavar="S",
        help="landing, in seconds (omit: the edit runs to the end of the recording)",
    )  # fmt: skip
    return p


async def _precheck(settings: Settings, key: str, marks: records.EditMarks) -> None:
    engine = make_engine(settings.database_url, pool_size=1)
    try:
        async with engine.connect() as conn:
            await edit_request.precheck(conn, key, marks)
    finally:
        await engine.dispose()


def edit_cli(settings: Settings, args: argparse.Namespace) -> int:
    """Check the marks, send the command, print the engine's answer (0 ok, 1 refused, 2 bad)."""
    if not settings.database_url or not settings.kafka_url:
        print("skyreel edit needs SKYREEL_DATABASE_URL and SKYREEL_KAFKA_URL", file=sys.stderr)
        return 2
    key = str(args.session)
    body = {"exit": args.exit, "opening": args.opening, "landing": args.landing}
    try:
        marks = edit_request.parse_marks(body)
        asyncio.run(_precheck(settings, key, marks))
    except edit_request.EditRejected as exc:
        print(f"skyreel edit: {exc.message}", file=sys.stderr)
        return 2 if exc.kind is edit_request.Rejection.INVALID else 1
    cmd = commands.new_command(
        CommandAction.EDIT, f"cli:{getpass.getuser()}", session_key=key, marks=marks
    )
    found = send_command(settings, cmd)
    if found is None:
        return 0
    if not found.ok:
        print(f"skyreel edit: {found.message}", file=sys.stderr)
        return 1
    landing = "none" if marks.landing is None else f"{marks.landing:g} s"
    approved = "; approved" if found.result.get("approved") else ""
    print(
        f"session {key}: marks set (exit {marks.exit:g} s, opening {marks.opening:g} s, "
        f"landing {landing}){approved}; the edit is rendered again"
    )
    return 0
