"""`python -m benchmarks.hub_abuse` with tiny numbers: it runs end to end against the test's
services and ends with its summary line (the figures themselves are not asserted)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LAST_LINE = re.compile(
    r"hub_abuse: idle_p95_ms=\d+\.\d abuse_p95_ms=\d+\.\d ratio=\d+\.\d\d "
    r"open_fds_max=\d+ rss_growth_mb=\d+\.\d ratio_min=\d+\.\d\d ratio_max=\d+\.\d\d"
)


@pytest.mark.timeout(300)
def test_a_tiny_run_ends_with_the_summary_line(
    pg_admin_url: str, redis_url: str, broker: str
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SKYREEL_")}
    env |= {
        "SKYREEL_DATABASE_URL": pg_admin_url,
        "SKYREEL_REDIS_URL": redis_url,
        "SKYREEL_KAFKA_URL": broker,
    }
    args = ["--idle", "150", "--loris", "10", "--progress-rate", "200"]
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.hub_abuse", *args, "--rounds", "1", "--phase-s", "2"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    lines = proc.stdout.strip().splitlines()
    assert LAST_LINE.fullmatch(lines[-1]), lines[-5:]
    assert any("round 1 abuse" in line for line in lines), lines
    # The attacker really connected: the hub's descriptors rose with the idle connections.
    fds = int(lines[-1].split("open_fds_max=")[1].split()[0])
    assert fds >= 150, lines[-1]
