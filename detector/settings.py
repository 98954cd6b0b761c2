"""The detector's settings: one frozen dataclass, built once in ``cli.main``.

pydantic-settings is not in the detector extra, so :meth:`DetectorSettings.from_env` reads the
``SKYREEL_DETECTOR_*`` variables itself; command-line options override them. Nothing reads the
environment at import time.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from urllib.parse import urlsplit

logger = logging.getLogger(__name__)

ENV_PREFIX = "SKYREEL_DETECTOR_"


class SettingsError(ValueError):
    """A setting that makes the detector unable to start; the message says which and why."""


@dataclass(frozen=True)
class DetectorSettings:
    hub_url: str  # ws://host:8800/ws/detector (wss:// in production)
    token: str  # the detector's secret, sent as "Authorization: Bearer <token>"
    share_root: Path  # the shared volume's mount point; every destination is resolved under it
    watch_dir: Path | None = None  # treat each subdirectory as a card instead of real volumes
    verify_readback: bool = True  # re-read and re-hash every copy before it counts
    once: bool = False  # scan, send, copy what is requested, exit when idle
    once_idle_seconds: float = 3.0  # --once: how long without requests counts as idle
    poll_interval: float = 0.5  # seconds between volume scans (a card counts after two)
    progress_interval: float = 0.5  # at most one copy_progress per request per this many seconds
    reconnect_min: float = 0.5  # first reconnect delay (seconds); doubles up to reconnect_max
    reconnect_max: float = 30.0
    # copies at once; at most one of them a large file (>= 64 MiB), the others small clips
    parallel_copies: int = 2
    # a request for a card not scanned yet (a restarted detector) waits this long for the card
    card_wait_seconds: float = 30.0
    # a copy that finds the share full is tried again, backing off from space_retry_min to
    # space_retry_max seconds, for this long before it is reported (as no_space)
    space_wait_seconds: float = 1800.0
    space_retry_min: float = 1.0
    space_retry_max: float = 30.0

    def __post_init__(self) -> None:
        scheme = urlsplit(self.hub_url).scheme
        if scheme not in ("ws", "wss"):
            raise SettingsError(f"hub URL must start with ws:// or wss://, got {self.hub_url!r}")
        if not self.token:
            raise SettingsError("no token: pass --token or set SKYREEL_DETECTOR_TOKEN")
        if not 1 <= self.parallel_copies <= 4:
            raise SettingsError("parallel_copies must be between 1 and 4")
        if self.reconnect_min <= 0 or self.reconnect_max < self.reconnect_min:
            raise SettingsError("reconnect delays must satisfy 0 < min <= max")
        if self.space_retry_min <= 0 or self.space_retry_max < self.space_retry_min:
            raise SettingsError("space retry delays must satisfy 0 < min <= max")
        if self.card_wait_seconds < 0 or self.space_wait_seconds < 0:
            raise SettingsError("card_wait_seconds and space_wait_seconds must not be negative")

    def check_paths(self) -> None:
        """Refuse to start without a usable share (and watch dir, if given)."""
        if not self.share_root.is_dir():
            raise SettingsError(f"share root {self.share_root} is not a directory")
        if self.watch_dir is not None and not self.watch_dir.is_dir():
            raise SettingsError(f"watch directory {self.watch_dir} is not a directory")

    @property
    def insecure(self) -> bool:
        """The token travels in clear text (ws:// to another machine)."""
        parts = urlsplit(self.hub_url)
        return parts.scheme == "ws" and parts.hostname not in ("localhost", "127.0.0.1", "::1")

    @staticmethod
    def from_env(environ: Mapping[str, str]) -> dict[str, str]:
        """The ``SKYREEL_DETECTOR_*`` values, keyed by field name (e.g. ``token``, ``hub_url``)."""
        names = {f.name for f in fields(DetectorSettings)}
        found: dict[str, str] = {}
        for key, value in environ.items():
            if key.startswith(ENV_PREFIX):
                name = key[len(ENV_PREFIX) :].lower()
                if name in names:
                    found[name] = value
                else:
                    logger.warning("ignoring unknown setting %s", key)
        return found


def parse_bool(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise SettingsError(f"not a boolean: {value!r}")
