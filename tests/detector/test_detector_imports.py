"""The detector must run with only its extra installed: it never imports the backend."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MODULES = [
    "detector",
    "detector.protocol",
    "detector.settings",
    "detector.paths",
    "detector.scan",
    "detector.cards",
    "detector.cards_windows",
    "detector.copy",
    "detector.readback",
    "detector.client",
    "detector.requests",
    "detector.ui",
    "detector.listing",
    "detector.notices",
    "detector.cli",
]
FORBIDDEN = ["faust", "sqlalchemy", "starlette", "numpy", "av", "streams", "agents", "storage"]

SCRIPT = f"""
import importlib, sys
for name in {MODULES!r}:
    importlib.import_module(name)
import detector.ui
detector.ui.RichView  # rich is imported lazily; make sure it is importable too
import rich.progress
bad = sorted(m for m in sys.modules if m.split('.')[0] in {FORBIDDEN!r})
print("BAD:" + ",".join(bad))
"""


def test_detector_modules_import_nothing_of_the_backend() -> None:
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "BAD:", out.stdout


def test_python_m_detector_help_runs() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "detector", "--help"], cwd=ROOT, capture_output=True, text=True
    )
    assert out.returncode == 0
    assert "--watch" in out.stdout and "examples:" in out.stdout
