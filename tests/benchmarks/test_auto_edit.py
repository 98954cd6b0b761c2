"""`python -m benchmarks.auto_edit` with tiny numbers: a few short jumps and one render round end
with the summary line, nothing shipped wrong (the speed figures themselves are not asserted)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from agents.telemetry.marks import JumpPhases, Mark, MarkKind, Source
from agents.telemetry.profile import draw_params, generate
from benchmarks.auto_edit import judge

REPO = Path(__file__).resolve().parents[2]
LAST_LINE = re.compile(
    r"auto_edit: jumps=(\d+) exit_within_1s=(\d+) opening_within_2s=(\d+) "
    r"landing_within_3s=(\d+) review=(\d+) wrong_shipped=(\d+) "
    r"edit_render_s=\d+\.\d\d full_render_s=\d+\.\d\d speedup=\d+\.\d\d "
    r"speedup_min=\d+\.\d\d speedup_max=\d+\.\d\d"
)


@pytest.mark.timeout(300)
def test_a_tiny_run_ends_with_the_summary_line_and_ships_nothing_wrong() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.auto_edit", "--jumps", "5", "--quick"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    lines = proc.stdout.strip().splitlines()
    match = LAST_LINE.fullmatch(lines[-1])
    assert match, lines[-5:]
    jumps, exit_ok, opening_ok, landing_ok, review, wrong = map(int, match.groups())
    assert jumps == 5 and wrong == 0, lines[-1]
    assert all(0 <= k <= jumps for k in (exit_ok, opening_ok, landing_ok, review)), lines[-1]
    assert sum("sound-only" in line for line in lines) == 1  # the 5th jump has no telemetry
    assert any(line.startswith("round 1: edit_render_s=") for line in lines), lines


def _mark(kind: MarkKind, t: float) -> Mark:
    return Mark(kind, t, 0.9, Source.FUSED)


def test_a_mark_off_by_more_than_its_tolerance_counts_as_wrong_only_when_shipped() -> None:
    profile = generate(draw_params(3, compress=0.1))
    tr = profile.truth
    late_exit = (_mark(MarkKind.EXIT, tr.exit_s + 1.5), _mark(MarkKind.OPENING, tr.opening_s),
                 _mark(MarkKind.LANDING, tr.landing_s))  # fmt: skip
    shipped = judge(1, "x", profile, JumpPhases(*late_exit, needs_review=False))
    assert not shipped.exit_ok and shipped.opening_ok and shipped.wrong_shipped
    reviewed = judge(1, "x", profile, JumpPhases(*late_exit, needs_review=True))
    assert reviewed.review and not reviewed.wrong_shipped
    no_freefall = judge(1, "x", profile, JumpPhases(None, None, None, needs_review=False))
    assert no_freefall.wrong_shipped
    right = judge(1, "x", profile, JumpPhases(_mark(MarkKind.EXIT, tr.exit_s + 0.9),
                                              *late_exit[1:], needs_review=False))  # fmt: skip
    assert right.exit_ok and not right.wrong_shipped
