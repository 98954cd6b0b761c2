"""The stack file: how every `skyreel` command finds the running local stack by itself.

``skyreel run`` writes ``<data_dir>/stack.json`` (mode 0600, atomically) once its services are
up — the URLs of the database, the broker, Redis and the hub, the settings its children were
given that a command must agree with (topic prefix, share and output folders, ...), the names of
its processes, and its own pid and process start time — and removes it when it stops. Every
other command reads it through :func:`discover` and fills in what was not configured.

Precedence, highest first: command-line flags, ``SKYREEL_*`` environment variables, the
``.env`` file, the stack file of a running ``skyreel run`` in ``SKYREEL_DATA_DIR`` (default
``.skyreel/``), the defaults. A file whose run is gone (a SIGKILLed or crashed run: its pid is
dead, or now belongs to another process) is ignored, and the message says so.

Reading is pure but for the file and the liveness probe (``alive``), which tests replace.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from streams.settings import Settings

STACK_FILE = "stack.json"
VERSION = 1

#: The settings a command takes from the running stack when they are not configured, and the
#: type each must have in the file (it is outside input: a wrong type makes the file unreadable).
FILLED: dict[str, type] = {
    "database_url": str,
    "redis_url": str,
    "kafka_url": str,
    "kafka_local_tuning": bool,
    "topic_prefix": str,
    "app_id": str,
    "share_root": str,
    "output_dir": str,
    "hub_host": str,
    "hub_port": int,
}
_PATHS = ("share_root", "output_dir")
#: Settings an empty value of counts as "not configured" (empty URL: "the embedded one").
_EMPTY_IS_UNSET = ("database_url", "redis_url", "kafka_url")
#: What each setting is called in a message.
ENV_NAMES = {key: f"SKYREEL_{key.upper()}" for key in FILLED}


@dataclass(frozen=True)
class StackInfo:
    """What one running ``skyreel run`` wrote about itself."""

    pid: int
    started: float  # the process's start time (psutil), so a reused pid is not mistaken for it
    data_dir: str
    settings: dict[str, object]  # FILLED keys -> values
    hub_url: str = ""  # http://127.0.0.1:8800 ; empty when the hub's port is not known
    processes: tuple[str, ...] = ()
    admin_token_file: str = ""  # empty: the run was given SKYREEL_ADMIN_TOKEN (not stored)

    @property
    def dashboard_url(self) -> str:
        return f"{self.hub_url}/" if self.hub_url else ""

    @property
    def detector_url(self) -> str:
        return self.hub_url.replace("http", "ws", 1) + "/ws/detector" if self.hub_url else ""

    def to_json(self) -> dict[str, object]:
        return {
            "version": VERSION,
            "pid": self.pid,
            "started": self.started,
            "data_dir": self.data_dir,
            "settings": self.settings,
            "hub_url": self.hub_url,
            "dashboard_url": self.dashboard_url,
            "detector_url": self.detector_url,
            "processes": list(self.processes),
            "admin_token_file": self.admin_token_file,
        }


@dataclass(frozen=True)
class Found:
    """The outcome of looking: the running stack, or why there is none (``note``)."""

    data_dir: Path
    info: StackInfo | None = None
    note: str = ""  # e.g. "its stack.json is left from skyreel run pid 812, which is gone ..."
    filled: tuple[str, ...] = field(default=())

    @property
    def running(self) -> bool:
        return self.info is not None


class StackFileError(ValueError):
    """A stack file that is not one (truncated, foreign, wrong types)."""


def parse(raw: str) -> StackInfo:
    """The stack file's text -> :class:`StackInfo` (pure; :class:`StackFileError` if bad)."""
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise StackFileError(f"not JSON ({exc})") from None
    if not isinstance(data, dict) or data.get("version") != VERSION:
        raise StackFileError("not a skyreel stack file of this version")
    pid, started = data.get("pid"), data.get("started")
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        raise StackFileError("no valid pid")
    if not isinstance(started, int | float) or isinstance(started, bool):
        raise StackFileError("no valid start time")
    raw_settings = data.get("settings")
    if not isinstance(raw_settings, dict):
        raise StackFileError("no settings")
    settings: dict[str, object] = {}
    for key, value in raw_settings.items():
        kind = FILLED.get(key)
        if kind is None:
            continue  # a newer run's extra: not ours to use
        if value is None:
            continue
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise StackFileError(f"{key} is not a {kind.__name__}")
        settings[key] = value
    texts = {k: data.get(k, "") for k in ("data_dir", "hub_url", "admin_token_file")}
    if not all(isinstance(v, str) for v in texts.values()):
        raise StackFileError("a path or URL is not a string")
    processes = data.get("processes", [])
    if not isinstance(processes, list) or not all(isinstance(p, str) for p in processes):
        raise StackFileError("processes is not a list of names")
    return StackInfo(
        pid=pid,
        started=float(started),
        data_dir=str(texts["data_dir"]),
        settings=settings,
        hub_url=str(texts["hub_url"]),
        processes=tuple(processes),
        admin_token_file=str(texts["admin_token_file"]),
    )


def process_matches(pid: int, started: float) -> bool:
    """Whether ``pid`` is alive and is the process that started at ``started``."""
    import psutil

    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        return abs(proc.create_time() - started) < 1.0
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:  # another user's live process: trust the pid
        return True


def own_start_time() -> float:
    import psutil

    return float(psutil.Process().create_time())


def read_stack(data_dir: Path, alive: Callable[[int, float], bool] = process_matches) -> Found:
    """The running stack in ``data_dir``, or a :class:`Found` whose ``note`` says why none."""
    data_dir = Path(data_dir).resolve()
    path = data_dir / STACK_FILE
    try:
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return Found(data_dir)
    except OSError as exc:
        return Found(data_dir, note=f"its {STACK_FILE} cannot be read ({exc.strerror})")
    try:
        info = parse(raw)
    except StackFileError as exc:
        return Found(data_dir, note=f"its {STACK_FILE} is not usable ({exc})")
    if not alive(info.pid, info.started):
        return Found(
            data_dir,
            note=f"its {STACK_FILE} is left from skyreel run pid {info.pid}, which is gone "
            "(crashed or killed)",
        )
    return Found(data_dir, info)


def explicit(settings: Settings) -> set[str]:
    """The settings given by flag, environment or .env (an empty URL counts as not given)."""
    given = set(settings.model_fields_set)
    for key in _EMPTY_IS_UNSET:
        if not getattr(settings, key):
            given.discard(key)
    return given


def fill(settings: Settings, found: Found) -> tuple[Settings, tuple[str, ...]]:
    """``settings`` with what was not configured taken from the running stack (pure)."""
    if found.info is None:
        return settings, ()
    given = explicit(settings)
    update: dict[str, Any] = {}
    for key, value in found.info.settings.items():
        if key in given or key not in FILLED:
            continue
        update[key] = Path(str(value)) if key in _PATHS else value
    if "data_dir" not in given and found.info.data_dir:
        update["data_dir"] = Path(found.info.data_dir)
    return settings.model_copy(update=update), tuple(sorted(update))


def fill_admin_token(settings: Settings, token: str | None) -> Settings:
    """The data dir's generated admin token, unless one was configured (pure)."""
    if token is None or "admin_token" in settings.model_fields_set:
        return settings
    return settings.model_copy(update={"admin_token": SecretStr(token)})


def discover(settings: Settings) -> tuple[Settings, Found]:
    """``settings`` completed from the running stack in its data dir (when every filled
    setting is configured the file is not even read: the children of ``skyreel run``)."""
    from streams.stack.admin_token import read_admin_token

    settings = fill_admin_token(settings, read_admin_token(settings.data_dir))
    if FILLED.keys() <= explicit(settings):
        return settings, Found(Path(settings.data_dir).resolve())
    found = read_stack(settings.data_dir)
    filled, keys = fill(settings, found)
    return filled, Found(found.data_dir, found.info, found.note, keys)


def missing(settings: Settings, found: Found, needs: Iterable[str]) -> str | None:
    """What a command that ``needs`` these settings lacks, in one sentence; None: nothing."""
    lacking = [ENV_NAMES.get(k, k) for k in needs if not getattr(settings, k, None)]
    if not lacking:
        return None
    why = f"; {found.note}" if found.note else ""
    names = " and ".join(lacking)
    verb = "is" if len(lacking) == 1 else "are"
    if found.running:  # a run with that service external and unnamed: cannot happen, but say it
        return f"the running skyreel stack in {found.data_dir} does not say {names}"
    return (
        f"no running skyreel stack found in {found.data_dir} (start one with `skyreel run`"
        f"{why}) and {names} {verb} not set"
    )


# --- writing (skyreel run) -----------------------------------------------------------------


def stack_info(
    effective: Settings,
    *,
    hub_url: str,
    processes: Iterable[str],
    admin_token_file: Path | None,
) -> StackInfo:
    """What ``skyreel run`` (this process) writes about itself."""
    values: Mapping[str, object] = effective.model_dump()
    settings = {
        key: (str(values[key]) if key in _PATHS else values[key])
        for key in FILLED
        if values.get(key) is not None
    }
    return StackInfo(
        pid=os.getpid(),
        started=own_start_time(),
        data_dir=str(Path(effective.data_dir).resolve()),
        settings=settings,
        hub_url=hub_url,
        processes=tuple(processes),
        admin_token_file=str(admin_token_file) if admin_token_file else "",
    )


def write_stack_file(data_dir: Path, info: StackInfo) -> Path:
    """Atomically (re)place ``data_dir/stack.json``, readable by its owner only."""
    path = Path(data_dir) / STACK_FILE
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(info.to_json(), fh, indent=2, sort_keys=True)
        fh.write("\n")
        fh.flush()
        os.fsync(fh.fileno())
    tmp.replace(path)
    return path


def remove_stack_file(data_dir: Path, pid: int | None = None) -> None:
    """Remove the stack file if it is ours (``pid``, default this process)."""
    path = Path(data_dir) / STACK_FILE
    pid = os.getpid() if pid is None else pid
    try:
        info = parse(path.read_text(encoding="utf-8"))
    except (OSError, StackFileError):
        return
    if info.pid == pid:
        path.unlink(missing_ok=True)
