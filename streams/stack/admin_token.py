"""The admin token of a local stack: generated once per data dir, kept in
``<data_dir>/admin_token`` (mode 0600) and reused on every restart.

Only when the operator did not set ``SKYREEL_ADMIN_TOKEN``: a configured token always wins, and
``SKYREEL_ENVIRONMENT=production`` still refuses to start without a strong configured one (the
settings check that before any of this runs).
"""

from __future__ import annotations

import logging
import os
import secrets
import stat
from pathlib import Path

from streams.settings import MIN_ADMIN_TOKEN_CHARS

logger = logging.getLogger(__name__)

TOKEN_FILE = "admin_token"


def token_path(data_dir: Path) -> Path:
    return Path(data_dir).resolve() / TOKEN_FILE


def read_admin_token(data_dir: Path) -> str | None:
    """The generated token, or None when there is none (yet) or it is not usable."""
    try:
        token = token_path(data_dir).read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return token if len(token) >= MIN_ADMIN_TOKEN_CHARS else None


def ensure_admin_token(data_dir: Path) -> tuple[str, Path]:
    """The data dir's token, generated (O_EXCL, 0600) on first use; a file others may read is
    made private again; an unusable one (empty, too short) is replaced."""
    path = token_path(data_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    found = read_admin_token(data_dir)
    if found is not None:
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            logger.warning("%s was readable by others (mode %o); made it 0600", path, mode)
            path.chmod(0o600)
        return found, path
    if path.exists():
        logger.warning("%s holds no usable token; generating a new one", path)
    fresh = secrets.token_urlsafe(32)  # 43 characters
    tmp = path.with_name(f".{TOKEN_FILE}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as fh:
        fh.write(fresh + "\n")
    tmp.replace(path)
    logger.info("generated the admin token in %s", path)
    return fresh, path
