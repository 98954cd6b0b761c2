"""The log files of `skyreel run` (streams/stack/logfiles.py) and `skyreel logs`
(streams/cli/logs.py): every child's output in <data_dir>/logs/<name>.log through a pump, capped
and rotated, only warnings and errors on the merged console; the services' own files capped;
`skyreel logs` printing, selecting and following them. The real `skyreel run` is in
test_stack_discovery.py (its hub, worker and render-worker files grow; `skyreel logs hub -n 5`)."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from streams.cli.logs import _Followed, _inode, _read_new, available, last_lines, select
from streams.stack.logfiles import (
    ConsoleFilter,
    RotatingLog,
    backup,
    cap_running_log,
    rotate_if_large,
)
from streams.stack.supervisor import ChildSpec, Supervisor

ROOT = Path(__file__).resolve().parents[2]


def wait_until(predicate: object, timeout: float = 20.0) -> None:
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.05)


# --- pure ----------------------------------------------------------------------------------


def test_the_console_shows_warnings_tracebacks_and_non_log_lines_only() -> None:
    f = ConsoleFilter()
    shown = [
        line
        for line in [
            b"plain text before any log line\n",
            b"2026-12-01 10:00:00,000 INFO    streams.hub: listening\n",
            b"  continuation of an info line\n",
            b"2026-12-01 10:00:01,000 WARNING streams.hub: broker lost\n",
            b"  continuation of the warning\n",
            b"[2026-12-01 10:00:02,000] [12] [INFO] [^Worker]: Ready\n",
            b"Traceback (most recent call last):\n",
            b'  File "x.py", line 1\n',
            b"[2026-12-01 10:00:03,000] [12] [ERROR] [^Worker]: crashed\n",
            b"2026-12-01 10:00:04,000 DEBUG   x: noise\n",
        ]
        if f.show(line)
    ]
    assert shown == [
        b"plain text before any log line\n",
        b"2026-12-01 10:00:01,000 WARNING streams.hub: broker lost\n",
        b"  continuation of the warning\n",
        b"Traceback (most recent call last):\n",
        b'  File "x.py", line 1\n',
        b"[2026-12-01 10:00:03,000] [12] [ERROR] [^Worker]: crashed\n",
    ]


def test_a_rotating_log_keeps_two_older_files_and_splits_at_line_ends(tmp_path: Path) -> None:
    path = tmp_path / "logs" / "hub.log"
    log = RotatingLog(path, max_bytes=100, backups=2)
    lines = [f"line {i:03d} {'x' * 20}\n".encode() for i in range(30)]  # 30 bytes each
    for line in lines:
        log.write(line)
    log.close()
    files = [path, backup(path, 1), backup(path, 2)]
    assert all(p.exists() for p in files) and not backup(path, 3).exists()
    assert all(p.stat().st_size <= 100 for p in files)
    kept = b"".join(p.read_bytes() for p in reversed(files))
    assert kept.endswith(b"".join(lines[-9:])), "the newest lines, whole and in order"
    assert all(chunk.endswith(b"\n") for chunk in (p.read_bytes() for p in files))


def test_service_logs_are_rotated_before_a_start_and_capped_while_running(
    tmp_path: Path,
) -> None:
    path = tmp_path / "postgres.log"
    path.write_bytes(b"a" * 50)
    assert not rotate_if_large(path, max_bytes=100)
    path.write_bytes(b"b" * 150)
    assert rotate_if_large(path, max_bytes=100)
    assert not path.exists() and backup(path, 1).read_bytes() == b"b" * 150
    # a running service appends through O_APPEND: after the truncation it writes at the new end
    with path.open("ab") as writer:
        writer.write(b"c" * 150)
        writer.flush()
        assert cap_running_log(path, max_bytes=100)
        writer.write(b"after\n")
        writer.flush()
    assert path.read_bytes() == b"after\n"
    assert backup(path, 1).read_bytes() == b"c" * 150
    assert backup(path, 2).read_bytes() == b"b" * 150


def test_select_by_name_alias_or_group() -> None:
    names = ["hub", "postgres", "render-worker-1", "render-worker-2", "skyreel", "tansu"]
    assert select(None, names) == names
    assert select("hub", names) == ["hub"]
    assert select("postgresql", names) == ["postgres"]
    assert select("broker", names) == ["tansu"]
    assert select("render-worker", names) == ["render-worker-1", "render-worker-2"]
    assert select("render", names) is None
    assert select("nope", names) is None


def test_last_lines_reads_backwards_across_blocks(tmp_path: Path) -> None:
    path = tmp_path / "x.log"
    path.write_bytes(b"".join(f"{i}\n".encode() for i in range(1000)))
    lines, size = last_lines(path, 3, block=7)
    assert lines == [b"997\n", b"998\n", b"999\n"] and size == path.stat().st_size
    assert last_lines(path, 0)[0] == []
    assert last_lines(tmp_path / "missing.log", 5) == ([], 0)


def test_following_survives_a_rotation_and_keeps_partial_lines(tmp_path: Path) -> None:
    path = tmp_path / "hub.log"
    path.write_bytes(b"old\n")
    f = _Followed("hub", path, path.stat().st_size, _inode(path))
    with path.open("ab") as fh:
        fh.write(b"one\ntw")
    assert _read_new(f) == [b"one\n"]
    with path.open("ab") as fh:
        fh.write(b"o\n")
    assert _read_new(f) == [b"two\n"]
    path.replace(backup(path, 1))
    path.write_bytes(b"fresh\n")
    assert _read_new(f) == [b"fresh\n"]
    assert available(tmp_path, ("worker",)) == ["hub", "worker"]


# --- the supervisor's pumps ----------------------------------------------------------------


CHATTY = (
    "import sys, time\n"
    "print('2026-12-01 10:00:00,000 INFO    x: hello', flush=True)\n"
    "print('2026-12-01 10:00:01,000 WARNING x: careful', file=sys.stderr, flush=True)\n"
    "print('2026-12-01 10:00:02,000 INFO    x: more', flush=True)\n"
    "time.sleep(60)\n"
)


def test_children_log_to_their_files_and_only_warnings_reach_the_console(
    tmp_path: Path,
) -> None:
    seen: list[tuple[str, bytes]] = []
    log_dir = tmp_path / "logs"
    spec = ChildSpec("chatty", (sys.executable, "-c", CHATTY))
    sup = Supervisor(
        [spec],
        {"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
        log_dir=log_dir,
        console=lambda name, line: seen.append((name, line)),
        stop_timeout=2,
    )
    sup.start_all()
    try:
        wait_until(lambda: b"more" in (log_dir / "chatty.log").read_bytes())
    finally:
        sup.stop_all()
    text = (log_dir / "chatty.log").read_text()
    assert "hello" in text and "careful" in text and "more" in text, "stdout and stderr"
    assert seen == [("chatty", b"2026-12-01 10:00:01,000 WARNING x: careful\n")]

    # a restarted child appends to the same file
    sup2 = Supervisor(
        [spec], {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}, log_dir=log_dir, stop_timeout=2
    )
    sup2.start_all()
    try:
        wait_until(lambda: (log_dir / "chatty.log").read_text().count("hello") == 2)
    finally:
        sup2.stop_all()


# --- `skyreel logs` as a command -----------------------------------------------------------


def cli(data_dir: Path, *argv: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SKYREEL_")}
    env |= {"SKYREEL_DATA_DIR": str(data_dir), "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "streams.cli", "logs", *argv],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_skyreel_logs_prints_follows_and_names_the_valid_processes(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir(parents=True)
    (logs / "hub.log").write_text("".join(f"hub {i}\n" for i in range(10)))
    (logs / "worker.log").write_text("w 1\nw 2\n")

    one = cli(tmp_path, "hub", "-n", "3")
    out, _ = one.communicate(timeout=30)
    assert one.returncode == 0 and out.splitlines() == ["hub 7", "hub 8", "hub 9"]

    every = cli(tmp_path, "-n", "1")
    out, _ = every.communicate(timeout=30)
    assert out.splitlines() == ["hub    | hub 9", "worker | w 2"]

    wrong = cli(tmp_path, "hubb")
    _, err = wrong.communicate(timeout=30)
    assert wrong.returncode == 2 and "valid: hub, worker" in err

    follow = cli(tmp_path, "worker", "-f", "-n", "1")
    lines: queue.Queue[str] = queue.Queue()
    assert follow.stdout is not None
    stream = follow.stdout

    def read() -> None:
        for line in stream:
            lines.put(line)

    threading.Thread(target=read, daemon=True).start()
    try:
        # its last line printed: it is following from the end of the file now
        assert lines.get(timeout=60) == "w 2\n"
        with (logs / "worker.log").open("a") as fh:
            fh.write("w 3\n")
        assert lines.get(timeout=30) == "w 3\n"
    finally:
        follow.send_signal(signal.SIGINT)
        follow.wait(10)
    assert follow.returncode == 0, "Ctrl-C ends a follow without a traceback"

    nothing = cli(tmp_path / "empty", "hub")
    _, err = nothing.communicate(timeout=30)
    assert nothing.returncode == 1 and "no logs in" in err and "skyreel run" in err
