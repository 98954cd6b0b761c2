"""Embedded PostgreSQL as our own child process: start, answer, stop, start again — also after
the server was SIGKILLed, after a stale pid file, and with a leftover server still running."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import psutil
import pytest

from streams.stack.postgres import start_postgres
from streams.stack.services import ChildService, free_port, remembered_port

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def pg_dir(embedded_data_dir: Path) -> Path:
    return embedded_data_dir


def query(url: str, sql: str) -> object:
    async def run() -> object:
        conn = await asyncpg.connect(url, timeout=10)
        try:
            if ";" in sql:
                return await conn.execute(sql)
            return await conn.fetchval(sql)
        finally:
            await conn.close()

    return asyncio.run(run())


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def backends_of(svc: ChildService) -> list[int]:
    return [p.pid for p in psutil.Process(svc.process.pid).children(recursive=True)]


def assert_stopped_cleanly(svc: ChildService, backends: list[int], data_dir: Path) -> None:
    assert svc.process.poll() is not None
    assert all(gone(p) for p in backends), "postgres backends left behind"
    assert not (data_dir / "postgres" / "postmaster.pid").exists()
    assert not list((data_dir / "postgres").glob(".s.PGSQL.*"))


@contextlib.contextmanager
def serving_again(data_dir: Path, port: int) -> Iterator[ChildService]:
    """The server started (again) on ``data_dir``; stopped after the block, which must leave
    nothing behind (its backends, pid file and sockets gone)."""
    svc = start_postgres(data_dir, port)
    try:
        yield svc
        backends = backends_of(svc)
    finally:
        svc.stop()
    assert_stopped_cleanly(svc, backends, data_dir)


@pytest.mark.slow
def test_starts_answers_stops_and_starts_again_on_the_same_dir(pg_dir: Path) -> None:
    port = free_port()
    svc = start_postgres(pg_dir, port)
    try:
        assert svc.extra["url"] == f"postgresql://postgres@127.0.0.1:{port}/skyreel"
        assert query(svc.extra["url"], "SELECT current_database()") == "skyreel"
        query(svc.extra["url"], "CREATE TABLE kept (x int); INSERT INTO kept VALUES (42)")
        backends = backends_of(svc)
        assert backends
    finally:
        svc.stop()
    assert_stopped_cleanly(svc, backends, pg_dir)

    with serving_again(pg_dir, port) as again:
        assert query(again.extra["url"], "SELECT x FROM kept") == 42


@pytest.mark.slow
def test_restarts_after_the_server_was_sigkilled(pg_dir: Path) -> None:
    port = free_port()
    svc = start_postgres(pg_dir, port)
    svc.kill()
    pid_file = pg_dir / "postgres" / "postmaster.pid"
    assert pid_file.exists(), "a SIGKILLed postmaster leaves its pid file"

    with serving_again(pg_dir, port) as again:
        assert query(again.extra["url"], "SELECT 1") == 1
        assert int(pid_file.read_text().split()[0]) == again.process.pid


@pytest.mark.slow
def test_stale_pid_file_naming_an_unrelated_live_process_is_ignored(pg_dir: Path) -> None:
    # pid reuse: PostgreSQL alone would refuse ("is another postmaster running?").
    port = free_port()
    start_postgres(pg_dir, port).stop()
    unrelated = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        pid_file = pg_dir / "postgres" / "postmaster.pid"
        pid_file.write_text(f"{unrelated.pid}\n{pg_dir / 'postgres'}\n")
        svc = start_postgres(pg_dir, port)
        try:
            assert query(svc.extra["url"], "SELECT 1") == 1
        finally:
            svc.stop()
        assert unrelated.poll() is None, "the unrelated process must not be touched"
    finally:
        unrelated.kill()
        unrelated.wait()


@pytest.mark.slow
def test_a_leftover_server_on_the_cluster_is_shut_down_first(pg_dir: Path) -> None:
    # As after a SIGKILLed `skyreel run` on a system without parent-death signals.
    port = free_port()
    first = start_postgres(pg_dir, port)
    second = start_postgres(pg_dir, port)
    try:
        first.process.wait(10)
        assert first.process.returncode == 0, "fast shutdown, not a crash"
        assert query(second.extra["url"], "SELECT 1") == 1
    finally:
        second.stop()
        first.stop()


@pytest.mark.slow
def test_server_dies_with_its_parent(pg_dir: Path) -> None:
    script = (
        "import sys, time; from pathlib import Path;"
        "from streams.stack.postgres import start_postgres;"
        f"svc = start_postgres(Path({str(pg_dir)!r}), {free_port()});"
        "print(svc.process.pid, flush=True); time.sleep(60)"
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, cwd=ROOT
    )
    assert parent.stdout is not None
    pid = int(parent.stdout.readline())
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    proc = psutil.Process(pid)
    proc.wait(30)
    assert not (pg_dir / "postgres" / "postmaster.pid").exists(), "not a fast shutdown"


def test_remembered_port_is_reused_and_a_taken_one_replaced(tmp_path: Path) -> None:
    path = tmp_path / "x.port"
    first = remembered_port(path, free_port())
    assert remembered_port(path, free_port()) == first
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", first))
        taken.listen()
        other = remembered_port(path, first)
    assert other != first
    assert int(path.read_text()) == other


def test_refuses_a_non_empty_dir_that_holds_no_cluster(pg_dir: Path) -> None:
    from streams.stack.services import ServiceStartError

    (pg_dir / "postgres").mkdir()
    (pg_dir / "postgres" / "stray.txt").write_text("x")
    with pytest.raises(ServiceStartError, match="PG_VERSION"):
        start_postgres(pg_dir, free_port())
    assert os.listdir(pg_dir / "postgres") == ["stray.txt"]
