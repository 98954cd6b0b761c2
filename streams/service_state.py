"""The service-state contract between `skyreel run` (streams/stack) and the hub's health
(streams/hub): the state file's name and format, and the small probes both ask a service with.

Dependency-free (stdlib only), so the hub can report on the stack without importing it.
"""

from __future__ import annotations

import json
import os
import socket
import struct
from pathlib import Path


def kafka_answers(host: str, port: int, timeout: float = 1.0) -> bool:
    """True when a Kafka ApiVersions (v0) request gets a well-formed answer."""
    client_id = b"skyreel-probe"
    body = struct.pack(">hhih", 18, 0, 1, len(client_id)) + client_id
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.sendall(struct.pack(">i", len(body)) + body)
            header = s.recv(8)
            if len(header) < 8:
                return False
            _size, correlation = struct.unpack(">ii", header)
            return correlation == 1
    except OSError:
        return False


def redis_answers(host: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


#: Written by ``skyreel run`` beside its data: what each embedded service is doing right now,
#: so the hub's ``/api/health`` can say "restarting (attempt 3)" and not only "not answering".
SERVICE_STATE_FILE = "services.json"


def write_service_states(path: Path, states: dict[str, dict[str, object]]) -> None:
    """Atomically replace the state file (a reader never sees half of it)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"pid": os.getpid(), "services": states}, sort_keys=True))
    tmp.replace(path)


def read_service_states(path: Path) -> dict[str, dict[str, object]]:
    """The states ``skyreel run`` last wrote; empty when no live run wrote them (an external
    deployment, or a run that was killed: its pid is gone)."""
    try:
        data = json.loads(path.read_text())
        pid = int(data["pid"])
        services = data["services"]
    except (OSError, ValueError, KeyError, TypeError):
        return {}
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return {}
    except PermissionError:
        pass  # alive, another user's
    return services if isinstance(services, dict) else {}


def free_space(path: Path) -> tuple[int, int] | None:
    """(free, total) bytes of the file system holding ``path`` (free: what an unprivileged
    writer may still use); None when it cannot be read (path gone, not mounted)."""
    try:
        st = os.statvfs(path)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize, st.f_blocks * st.f_frsize
