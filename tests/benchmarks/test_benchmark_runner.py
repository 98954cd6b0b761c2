from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.__main__ import Outcome, discover, select, table

REPO = Path(__file__).resolve().parents[2]


def test_discover_lists_benchmarks_in_run_order_without_helpers(tmp_path: Path) -> None:
    for name in ("_media", "_services", "qr_corpus", "end_to_end", "ingest_diff", "zeta", "alpha"):
        (tmp_path / f"{name}.py").write_text("", encoding="utf-8")
    (tmp_path / "notes.txt").write_text("", encoding="utf-8")
    assert discover(tmp_path) == ["ingest_diff", "end_to_end", "alpha", "zeta"]


def test_discover_finds_the_repository_benchmarks() -> None:
    names = discover(REPO / "benchmarks")
    assert "qr_decode" in names and "__main__" not in names and "qr_corpus" not in names


def test_only_and_skip_select_and_an_unknown_name_is_an_error() -> None:
    names = ["ingest_diff", "qr_decode", "end_to_end"]
    assert select(names, ["end_to_end", "ingest_diff"], []) == ["ingest_diff", "end_to_end"]
    assert select(names, [], ["qr_decode"]) == ["ingest_diff", "end_to_end"]
    assert select(names, [], []) == names
    with pytest.raises(ValueError, match="qr_decoed"):
        select(names, ["qr_decoed"], [])


def test_table_has_one_row_per_benchmark_with_its_last_line_and_exit_code() -> None:
    text = table(
        [
            Outcome("ingest_diff", "ingest_diff: files=1000 ms=12.0", 0, 3.25),
            Outcome("end_to_end", "", 1, 61.0),
        ]
    )
    lines = text.splitlines()
    assert lines[0].split(" | ")[0].strip() == "benchmark"
    assert "ingest_diff: files=1000 ms=12.0" in lines[2] and "3.2" in lines[2]
    assert lines[3].split(" | ")[1].strip() == "-" and lines[3].split(" | ")[2].strip() == "1"


def test_command_line_refuses_an_unknown_benchmark_before_running_anything() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--only", "no_such_bench"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "unknown benchmark(s): no_such_bench" in proc.stderr
    assert "===" not in proc.stdout
