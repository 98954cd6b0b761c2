"""What ``skyreel run`` tells the operator once it is up: the dashboard, how to log in, where the
logs are, and that every other command finds this stack by itself; and the stack file those
commands read (:mod:`streams.stack.discovery`)."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from streams.settings import Settings
from streams.stack.discovery import stack_info, write_stack_file

DEFAULT_DATA_DIR = Path(".skyreel")


def hub_base(effective: Settings) -> str:
    """``http://127.0.0.1:8800`` (a wildcard listener is reached on loopback); empty when the
    port is chosen by the hub (0) and so not known here."""
    if not effective.hub_port:
        return ""
    host = effective.hub_host
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    elif ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{effective.hub_port}"


def wait_port(
    base: str, poll: Callable[[], None], stopping: Callable[[], bool], timeout: float = 60
) -> bool:
    host, _, port = base.removeprefix("http://").rpartition(":")
    host = host.strip("[]")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not stopping():
        poll()
        with (
            contextlib.suppress(OSError),
            socket.create_connection((host, int(port)), timeout=0.5),
        ):
            return True
        time.sleep(0.2)
    return False


def token_line(token_file: Path | None, token: str) -> str:
    if token_file is None:
        return "admin token: the one set in SKYREEL_ADMIN_TOKEN"
    return (
        f"admin token: {token}  (kept in {token_file}, readable by you only; "
        "`skyreel token` shows it again)"
    )


def write_stack(effective: Settings, processes: Iterable[str], token_file: Path | None) -> Path:
    """The stack file, so that every other command finds this run (see discovery)."""
    info = stack_info(
        effective, hub_url=hub_base(effective), processes=processes, admin_token_file=token_file
    )
    return write_stack_file(effective.data_dir, info)


def announce(
    effective: Settings,
    *,
    has_hub: bool,
    token_file: Path | None,
    stopping: Callable[[], bool],
    poll: Callable[[], None],
) -> None:
    base = hub_base(effective)
    if has_hub and base and wait_port(base, poll, stopping):
        where = f"dashboard: {base}/"
    else:
        where = "the hub did not answer yet; see its log (skyreel logs hub)"
    data_dir = Path(effective.data_dir).resolve()
    prefix = "" if data_dir == DEFAULT_DATA_DIR.resolve() else f"SKYREEL_DATA_DIR='{data_dir}' "
    token = effective.admin_token.get_secret_value()
    print(
        f"skyreel is up — {where}\n"
        f"  {token_line(token_file, token)}\n"
        f"  logs: {data_dir / 'logs'}/  (follow them: {prefix}skyreel logs -f [PROCESS])\n"
        f"  every skyreel command finds this stack by itself, e.g. {prefix}skyreel status\n"
        f"  register a detector (its token is printed once):\n"
        f"    {prefix}skyreel register-detector hangar-1\n"
        f"  stop with Ctrl-C (or SIGTERM)",
        flush=True,
    )
