"""`skyreel` — the backend's command line.

    skyreel run                  everything on one machine (embedded services when no URLs set)
    skyreel hub                  the Starlette hub (detector WebSocket, status API, dashboard)
    skyreel worker               the Faust worker (ingest, QR, sessions, pipeline orchestrator)
    skyreel render-worker        a render worker (FFmpeg jobs from the Redis queue)
    skyreel migrate              apply database migrations
    skyreel register-detector N  create a detector and print its token once
    skyreel revoke-detector N    refuse its token from now on; its live connection is closed
    skyreel status               counters, recent executions, sessions needing a booking
    skyreel assign KEY --booking B --passenger NAME [--email X --product P]   assign by hand
    skyreel edit KEY --exit S --opening S [--landing S]   move a jump's marks; rendered again
    skyreel replay TOPIC         read a topic again (--offset N | --since TIME), live or offline
    skyreel retry EXECUTION      retry the failed steps of an execution (--step NAME: one step;
                                 --force: also steps still running on a live worker)
    skyreel resume EXECUTION     resume a cancelled execution (nothing that succeeded runs again)
    skyreel cancel EXECUTION     cancel an execution's unfinished steps
    skyreel executions           list recent pipeline executions and their steps' states
    skyreel link BOOKING         issue a passenger link and print its URL (--revoke ID: revoke)
    skyreel purge --booking B    delete a booking's files and personal data (asks; --yes)
    skyreel token                the admin token (and the dashboard URL) of the local stack
    skyreel logs [PROCESS]       the logs of `skyreel run`'s processes (-f follow, -n N lines)

Settings come from SKYREEL_* environment variables (see streams/settings.py or `--help` of each
command); each subcommand builds them once and passes them down. What they leave unset (URLs,
topic prefix, folders) every command but `run` takes from the running `skyreel run` in
SKYREEL_DATA_DIR (its stack.json: streams/cli/stack_settings.py); explicit settings win.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence

from pydantic import ValidationError

from detector.redact import install_redaction
from streams.cli.stack_settings import load_settings, what_is_missing
from streams.settings import InsecureSettings, Settings
from streams.stack.log_quiet import quiet_repeats

logger = logging.getLogger(__name__)

Handler = Callable[[Settings, argparse.Namespace], int]


def _run(settings: Settings, args: argparse.Namespace) -> int:
    from streams.stack.local import run_all

    return run_all(settings, args)


def _hub(settings: Settings, args: argparse.Namespace) -> int:
    from streams.hub.server import serve

    return serve(settings)


def _worker(settings: Settings, args: argparse.Namespace) -> int:
    from streams.stack.processes import run_worker

    return run_worker(settings)


def _render_worker(settings: Settings, args: argparse.Namespace) -> int:
    from streams.stack.processes import run_render_worker

    return run_render_worker(settings)


def _migrate(settings: Settings, args: argparse.Namespace) -> int:
    from storage.migrate import upgrade

    if not settings.database_url:
        print(
            "SKYREEL_DATABASE_URL is not set (`skyreel run` migrates the embedded one)",
            file=sys.stderr,
        )
        return 2
    upgrade(settings.database_url)
    print("database schema is up to date")
    return 0


def _register_detector(settings: Settings, args: argparse.Namespace) -> int:
    from streams.cli.detectors import register_detector_cli

    return register_detector_cli(settings, args.detector_id, args.name)


def _revoke_detector(settings: Settings, args: argparse.Namespace) -> int:
    from streams.cli.detectors import revoke_detector_cli

    return revoke_detector_cli(settings, args.detector_id)


def _replay(settings: Settings, args: argparse.Namespace) -> int:
    from streams.cli.replay import run_replay

    if not settings.kafka_url:
        print("SKYREEL_KAFKA_URL is not set", file=sys.stderr)
        return 2
    return run_replay(
        settings,
        args.topic,
        args.group or settings.app_id,
        args.offset,
        args.since,
        offline=args.offline,
    )


def _retry(settings: Settings, args: argparse.Namespace) -> int:
    from streams.cli.commands import retry_cli

    return retry_cli(settings, args.execution_id, args.step, args.actor, args.force)


def _resume(settings: Settings, args: argparse.Namespace) -> int:
    from streams.cli.commands import resume_cli

    return resume_cli(settings, args.execution_id, args.actor)


def _cancel(settings: Settings, args: argparse.Namespace) -> int:
    from streams.cli.commands import cancel_cli

    return cancel_cli(settings, args.execution_id, args.actor)


def _executions(settings: Settings, args: argparse.Namespace) -> int:
    from streams.cli.commands import executions_cli

    return executions_cli(settings, args.limit)


def _demo_card(settings: Settings, args: argparse.Namespace) -> int:
    from streams.stack.processes import demo_card

    return demo_card(args)


def _status(settings: Settings, args: argparse.Namespace) -> int:
    from streams.cli.status import status_cli

    return status_cli(settings, args)


def _assign(settings: Settings, args: argparse.Namespace) -> int:
    from streams.cli.status import assign_cli

    return assign_cli(settings, args)


def _edit(settings: Settings, args: argparse.Namespace) -> int:
    from streams.cli.edit import edit_cli

    return edit_cli(settings, args)


def _link(settings: Settings, args: argparse.Namespace) -> int:
    from streams.cli.links import link_cli

    return link_cli(settings, args.booking, args.days, args.revoke)


def _purge(settings: Settings, args: argparse.Namespace) -> int:
    from streams.cli.purge import purge_cli

    return purge_cli(settings, args.booking, args.yes)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="skyreel",
        description="skyreel backend: SD card footage in, finished jump videos out.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Configuration: SKYREEL_* environment variables (or a .env file). "
        "Leave SKYREEL_DATABASE_URL / SKYREEL_REDIS_URL / SKYREEL_KAFKA_URL empty to use the "
        "embedded services under SKYREEL_DATA_DIR; every other command finds a `skyreel run` "
        "running there by itself (its stack.json), explicit settings winning.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("run", help="run everything on this machine (the main job)")
    p.add_argument(
        "--no-demo",
        action="store_true",
        help="start the services only; do not write and import a demo card",
    )
    p.add_argument("--jumps", type=int, default=3, help="jumps on the demo card (default 3)")
    p.add_argument("--render-workers", type=int, default=2, help="render worker processes")
    p.add_argument(
        "--exit-when-done",
        action="store_true",
        help="stop once every demo jump is rendered (default: keep serving)",
    )
    p.set_defaults(handler=_run)

    sub.add_parser(
        "hub", help="serve the detector WebSocket, status API and dashboard"
    ).set_defaults(handler=_hub)
    sub.add_parser("worker", help="run the Faust worker (stream agents)").set_defaults(
        handler=_worker
    )
    sub.add_parser(
        "render-worker", help="run a render worker (FFmpeg jobs from Redis)"
    ).set_defaults(handler=_render_worker)
    sub.add_parser(
        "migrate", help="apply database migrations (needs SKYREEL_DATABASE_URL)"
    ).set_defaults(handler=_migrate)

    p = sub.add_parser(
        "register-detector", help="register a station PC and print its token (shown once)"
    )
    p.add_argument("detector_id", help="short id, e.g. hangar-1 ([a-z0-9-], up to 64)")
    p.add_argument("--name", default="", help="human-readable name")
    p.set_defaults(handler=_register_detector)

    p = sub.add_parser(
        "revoke-detector",
        help="refuse a station's token from now on and close its live connection "
        "(needs SKYREEL_DATABASE_URL; SKYREEL_REDIS_URL to reach the hubs at once)",
    )
    p.add_argument("detector_id", help="the id it was registered with")
    p.set_defaults(handler=_revoke_detector)

    p = sub.add_parser(
        "replay",
        help="make the agents read a topic again (also inside a running `skyreel run`)",
        description="Rewind the worker's consumer group on TOPIC so its agents read it again. "
        "Offline (the group has no members): the offsets are committed for the group. Live "
        "(the group has members, e.g. inside `skyreel run`): the running worker is asked, by "
        "a `replay` operator command, to pause the topic, seek its consumer back and resume "
        "(needs SKYREEL_DATABASE_URL too); with no worker running the command applies when "
        "it starts (live replay covers the topics the worker reads: detector-events, "
        "copy-results, step-requests, step-results, commands). Every handler is idempotent: "
        "nothing is rendered, published, copied or stored twice.",
    )
    p.add_argument("topic", help="topic name, full or short (step-results)")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--since", help="ISO time: first message at or after it")
    where.add_argument("--offset", type=int, help="offset per partition (clamped to the log)")
    p.add_argument("--group", default="", help="consumer group (default: SKYREEL_APP_ID)")
    p.add_argument(
        "--offline",
        action="store_true",
        help="only commit offsets for a group without members; never ask a running worker",
    )
    p.set_defaults(handler=_replay)

    p = sub.add_parser("retry", help="retry failed steps (never what succeeded)")
    p.add_argument("execution_id", type=int)
    p.add_argument("--step", default=None, help="only this step")
    p.add_argument("--actor", default="cli", help="who asked (kept in the step log)")
    p.add_argument(
        "--force",
        action="store_true",
        help="also move steps still running on a live worker (a running step whose worker is "
        "gone is moved without it)",
    )
    p.set_defaults(handler=_retry)

    p = sub.add_parser("resume", help="resume a cancelled execution (what succeeded stays)")
    p.add_argument("execution_id", type=int)
    p.add_argument("--actor", default="cli", help="who asked (kept in the step log)")
    p.set_defaults(handler=_resume)

    p = sub.add_parser("cancel", help="cancel an execution's unfinished steps")
    p.add_argument("execution_id", type=int)
    p.add_argument("--actor", default="cli", help="who asked (kept in the step log)")
    p.set_defaults(handler=_cancel)

    p = sub.add_parser("demo-card", help="write a synthetic GoPro SD card (demo, tests)")
    p.add_argument("directory", help="card root to create (gets DCIM/100GOPRO/)")
    p.add_argument(
        "--jumps",
        type=int,
        default=3,
        help="readable jumps (plus one with an unreadable QR); with --add: jumps to add",
    )
    p.add_argument("--seed", type=int, default=7, help="same seed, same card")
    p.add_argument(
        "--footage-seconds",
        type=float,
        default=3.0,
        help="length of the camera-check clip before the first ticket (each jump lasts its jump)",
    )
    p.add_argument("--resolution", default="640x360", help="WxH of the clips")
    p.add_argument(
        "--add", action="store_true", help="append jumps to an existing demo card (new files only)"
    )
    p.set_defaults(handler=_demo_card)

    p = sub.add_parser("executions", help="list recent pipeline executions")
    p.add_argument("--limit", type=int, default=20)
    p.set_defaults(handler=_executions)

    p = sub.add_parser("status", help="counters, recent executions, sessions waiting for a human")
    p.add_argument("--limit", type=int, default=20, help="executions to show (default 20)")
    p.set_defaults(handler=_status)

    p = sub.add_parser("assign", help="assign a booking to a needs_review/unassigned session")
    p.add_argument("session", help="jump session key")
    p.add_argument("--booking", required=True, help="booking id")
    p.add_argument("--passenger", required=True, help="passenger name")
    # issue 16: on a decoded session of the same booking these two are all that change
    p.add_argument("--email", default=None, help="the passenger's email (the link is sent there)")
    p.add_argument("--product", default=None, help="what the booking bought, e.g. video+photos")
    p.set_defaults(handler=_assign)

    from streams.cli.edit import add_parser as add_edit  # issue 15, item 7

    add_edit(sub).set_defaults(handler=_edit)

    p = sub.add_parser("link", help="issue a passenger link to a booking's page (or revoke one)")
    p.add_argument("booking", nargs="?", help="booking id")
    p.add_argument("--days", type=int, default=None, help="valid for (default: the setting)")
    p.add_argument("--revoke", type=int, default=None, metavar="ID", help="revoke link ID")
    p.set_defaults(handler=_link)

    from streams.cli.purge import add_parser as add_purge  # issue 16, item 5

    add_purge(sub).set_defaults(handler=_purge)

    # issue 17: the local stack's admin token and logs
    from streams.cli.logs import add_parser as add_logs
    from streams.cli.token import add_parser as add_token

    add_token(sub)
    add_logs(sub)
    return parser


def configure_logging(level: str, verbose: bool = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
    )
    install_redaction()  # a token in a query string (old clients) is never written to a log
    if not verbose:  # a broker outage: a few lines, not one per client retry
        quiet_repeats()


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings, found = load_settings(args.command)
    except (ValidationError, InsecureSettings) as exc:
        print(f"skyreel: invalid settings:\n{exc}", file=sys.stderr)
        return 2
    if (lacking := what_is_missing(args.command, settings, found)) is not None:
        print(f"skyreel {args.command}: {lacking}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, args.verbose)
    handler: Handler = args.handler
    try:
        return handler(settings, args)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
