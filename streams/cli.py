"""`skyreel` — the backend's command line.

    skyreel run                  everything on one machine (embedded services when no URLs set)
    skyreel hub                  the Starlette hub (detector WebSocket, status API, dashboard)
    skyreel worker               the Faust worker (ingest, QR, sessions, pipeline orchestrator)
    skyreel render-worker        a render worker (FFmpeg jobs from the Redis queue)
    skyreel migrate              apply database migrations
    skyreel register-detector N  create a detector and print its token once

Settings come from SKYREEL_* environment variables (see streams/settings.py or `--help` of each
command); each subcommand builds them once and passes them down.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence

from pydantic import ValidationError

from streams.settings import InsecureSettings, Settings

logger = logging.getLogger(__name__)

Handler = Callable[[Settings, argparse.Namespace], int]


def _run(settings: Settings, args: argparse.Namespace) -> int:
    from streams.stack import run_all

    return run_all(settings, args)


def _hub(settings: Settings, args: argparse.Namespace) -> int:
    from streams.hub import serve

    return serve(settings)


def _worker(settings: Settings, args: argparse.Namespace) -> int:
    from agents.worker import run_worker

    return run_worker(settings)


def _render_worker(settings: Settings, args: argparse.Namespace) -> int:
    from agents.render.worker import run_render_worker

    return run_render_worker(settings)


def _migrate(settings: Settings, args: argparse.Namespace) -> int:
    from storage.migrate import upgrade

    if not settings.database_url:
        print("SKYREEL_DATABASE_URL is not set (`skyreel run` migrates the embedded one)",
              file=sys.stderr)
        return 2
    upgrade(settings.database_url)
    print("database schema is up to date")
    return 0


def _register_detector(settings: Settings, args: argparse.Namespace) -> int:
    from storage.detectors import register_detector_cli

    return register_detector_cli(settings, args.detector_id, args.name)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="skyreel",
        description="skyreel backend: SD card footage in, finished jump videos out.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Configuration: SKYREEL_* environment variables (or a .env file). "
        "Leave SKYREEL_DATABASE_URL / SKYREEL_REDIS_URL / SKYREEL_KAFKA_URL empty to use the "
        "embedded services under SKYREEL_DATA_DIR.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("run", help="run everything on this machine (the main job)")
    p.add_argument("--no-demo", action="store_true",
                   help="start the services only; do not write and import a demo card")
    p.add_argument("--jumps", type=int, default=3, help="jumps on the demo card (default 3)")
    p.add_argument("--render-workers", type=int, default=2, help="render worker processes")
    p.add_argument("--exit-when-done", action="store_true",
                   help="stop once every demo jump is rendered (default: keep serving)")
    p.set_defaults(handler=_run)

    sub.add_parser("hub", help="serve the detector WebSocket, status API and dashboard"
                   ).set_defaults(handler=_hub)
    sub.add_parser("worker", help="run the Faust worker (stream agents)"
                   ).set_defaults(handler=_worker)
    sub.add_parser("render-worker", help="run a render worker (FFmpeg jobs from Redis)"
                   ).set_defaults(handler=_render_worker)
    sub.add_parser("migrate", help="apply database migrations (needs SKYREEL_DATABASE_URL)"
                   ).set_defaults(handler=_migrate)

    p = sub.add_parser("register-detector",
                       help="register a station PC and print its token (shown once)")
    p.add_argument("detector_id", help="short id, e.g. hangar-1 ([a-z0-9-], up to 64)")
    p.add_argument("--name", default="", help="human-readable name")
    p.set_defaults(handler=_register_detector)
    return parser


def configure_logging(level: str, verbose: bool = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = Settings()
    except (ValidationError, InsecureSettings) as exc:
        print(f"skyreel: invalid settings:\n{exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, args.verbose)
    handler: Handler = args.handler
    try:
        return handler(settings, args)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
