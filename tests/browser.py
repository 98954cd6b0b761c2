"""Real headless Chromium for the page tests: Debian's `chromium`, driven by Playwright (never
`playwright install`: the system browser is used). Outside CI a missing browser skips; in CI it
fails."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def require_browser(what: str) -> None:
    """Skip (fail in CI) the test `what` when Chromium or Playwright is missing."""
    missing = []
    if not CHROMIUM.exists() and not shutil.which("chromium"):
        missing.append("chromium (apt-get install -y chromium)")
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        missing.append("playwright (pip install playwright)")
    if missing:
        reason = f"{what} needs " + " and ".join(missing)
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
