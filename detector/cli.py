"""``skyreel-detector`` (also ``python -m detector``): the station client's command line."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from detector.cards import VolumeSource, WatchDirVolumes, platform_source
from detector.client import run_detector
from detector.redact import install_redaction
from detector.settings import DetectorSettings, SettingsError, parse_bool
from detector.ui import make_view

logger = logging.getLogger(__name__)

EXIT_BAD_SETTINGS = 64

DESCRIPTION = """\
Station client for skyreel. Leave it running on the PC where instructors put their SD cards.

When a card with a DCIM/ folder is inserted, the detector lists its video files (names, sizes
and dates only), sends the list to the skyreel hub, and copies the files the hub asks for to the
shared folder. The hub only asks for files it has not imported yet, so putting the same card in
again copies nothing. Every copy is checked (size and hash) before it counts. The detector never
writes to a card. You may pull a card out at any time: an unfinished copy is discarded and asked
for again the next time the card is inserted.

If the hub is down or the network drops, the detector keeps trying to reconnect on its own.
If the hub refuses the token, it stops with exit code 2.

Every option can also be set by an environment variable SKYREEL_DETECTOR_<NAME> (e.g.
SKYREEL_DETECTOR_TOKEN, SKYREEL_DETECTOR_HUB_URL, SKYREEL_DETECTOR_SHARE_ROOT,
SKYREEL_DETECTOR_WATCH_DIR, SKYREEL_DETECTOR_VERIFY_READBACK=0); options win over variables."""

EPILOG = """\
examples:
  Linux station, cards auto-mounted under /media, share mounted at /mnt/skyreel:
    skyreel-detector --hub ws://hub.local:8800/ws/detector --share /mnt/skyreel
  Windows station (token from the environment):
    set SKYREEL_DETECTOR_TOKEN=...
    skyreel-detector --hub wss://hub.example.com/ws/detector --share S:\\
  Cards copied into folders instead (each subfolder of D:\\cards is one card):
    skyreel-detector --hub ws://hub:8800/ws/detector --share /mnt/skyreel --watch D:\\cards
  Import what is there and exit (scripts, tests):
    skyreel-detector --hub ws://localhost:8800/ws/detector --share ./share --watch ./cards --once

exit codes: 0 done/stopped, 2 token refused by the hub, 3 replaced by another detector with the
same token, 64 bad options."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="skyreel-detector",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--hub", metavar="URL", help="hub WebSocket URL, e.g. ws://host:8800/ws/detector"
    )
    p.add_argument("--token", help="this station's token (better: SKYREEL_DETECTOR_TOKEN)")
    p.add_argument("--share", metavar="DIR", help="mount point of the shared footage folder")
    p.add_argument("--watch", metavar="DIR", help="treat each subfolder of DIR as a card")
    p.add_argument(
        "--no-verify-readback",
        action="store_true",
        help="skip re-reading each copy to check its hash (size is still checked; faster)",
    )
    p.add_argument("--once", action="store_true", help="copy what is requested, then exit")
    p.add_argument(
        "--parallel",
        type=int,
        metavar="N",
        help="copies at once (1-4, default 2; one large file at a time)",
    )
    p.add_argument("-v", "--verbose", action="store_true", help="log debug details")
    return p


def settings_from(args: argparse.Namespace, environ: Mapping[str, str]) -> DetectorSettings:
    env = DetectorSettings.from_env(environ)
    hub = args.hub or env.get("hub_url") or ""
    share = args.share or env.get("share_root") or ""
    watch = args.watch or env.get("watch_dir")
    if not hub:
        raise SettingsError("no hub URL: pass --hub or set SKYREEL_DETECTOR_HUB_URL")
    if not share:
        raise SettingsError("no share folder: pass --share or set SKYREEL_DETECTOR_SHARE_ROOT")
    try:
        settings = DetectorSettings(
            hub_url=hub,
            token=args.token or env.get("token", ""),
            share_root=Path(share),
            watch_dir=Path(watch) if watch else None,
            verify_readback=False
            if args.no_verify_readback
            else parse_bool(env.get("verify_readback", "1")),
            once=args.once or parse_bool(env.get("once", "0")),
            parallel_copies=args.parallel or int(env.get("parallel_copies", "2")),
            poll_interval=float(env.get("poll_interval", "0.5")),
            progress_interval=float(env.get("progress_interval", "0.5")),
            reconnect_min=float(env.get("reconnect_min", "0.5")),
            reconnect_max=float(env.get("reconnect_max", "30")),
            once_idle_seconds=float(env.get("once_idle_seconds", "3")),
            card_wait_seconds=float(env.get("card_wait_seconds", "30")),
            space_wait_seconds=float(env.get("space_wait_seconds", "1800")),
            space_retry_min=float(env.get("space_retry_min", "1")),
            space_retry_max=float(env.get("space_retry_max", "30")),
        )
    except ValueError as exc:  # SettingsError, or a number that does not parse
        raise SettingsError(str(exc)) from None
    settings.check_paths()
    return settings


def sources_for(settings: DetectorSettings) -> list[VolumeSource]:
    if settings.watch_dir is not None:
        return [WatchDirVolumes(settings.watch_dir)]
    return [platform_source()]


async def _serve(settings: DetectorSettings, sources: Sequence[VolumeSource]) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):  # Windows: Ctrl+C raises KeyboardInterrupt
            pass
    return await run_detector(settings, sources, stop, view=make_view())


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    install_redaction()  # a hub URL with ?token= in it is logged as token=***
    try:
        settings = settings_from(args, os.environ)
    except SettingsError as exc:
        print(f"skyreel-detector: {exc}", file=sys.stderr)
        return EXIT_BAD_SETTINGS
    if settings.insecure:
        logger.warning("the token is sent unencrypted (ws:// to %s); use wss://", settings.hub_url)
    logger.info(
        "detector starting: hub %s, share %s, cards from %s",
        settings.hub_url,
        settings.share_root,
        settings.watch_dir or "removable volumes",
    )
    try:
        return asyncio.run(_serve(settings, sources_for(settings)))
    except KeyboardInterrupt:
        return 0
