"""Supervision of `skyreel run`'s children with trivial real processes, and the pure helpers
(URL masking, the startup summary, settings handed to children, backoff)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import psutil
import pytest
from pydantic import SecretStr

from streams.settings import Settings
from streams.stack import _available, mask_url, settings_env_vars, summary
from streams.supervisor import ChildSpec, Supervisor, backoff

SLEEPER = (sys.executable, "-c", "import time; time.sleep(60)")


def wait_until(predicate: object, timeout: float = 20.0) -> None:
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.05)


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_a_crashed_child_is_restarted_and_a_healthy_one_left_alone() -> None:
    crasher = ChildSpec("crasher", (sys.executable, "-c", "raise SystemExit(3)"))
    sup = Supervisor([ChildSpec("sleeper", SLEEPER), crasher], {"PATH": "/usr/bin:/bin"})
    sup.start_all()
    try:
        sleeper, crashing = sup.children
        first_pid = crashing.process.pid if crashing.process else 0

        def restarted() -> bool:
            sup.poll()
            return crashing.restarts >= 1

        wait_until(restarted)
        assert crashing.process is not None and crashing.process.pid != first_pid
        assert sleeper.restarts == 0 and sleeper.process is not None
        assert sleeper.process.poll() is None
    finally:
        sup.stop_all()


def test_stop_all_leaves_no_child_nor_grandchild(tmp_path: Path) -> None:
    pid_file = tmp_path / "grandchild.pid"
    parent = (
        "import subprocess, sys, time;"
        "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']);"
        f"open({str(pid_file)!r}, 'w').write(str(p.pid)); time.sleep(60)"
    )
    stubborn = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"
    specs = [
        ChildSpec("parent", (sys.executable, "-c", parent)),
        ChildSpec("stubborn", (sys.executable, "-c", stubborn)),
    ]
    sup = Supervisor(specs, {"PATH": "/usr/bin:/bin"}, stop_timeout=1)
    sup.start_all()
    wait_until(lambda: pid_file.exists() and pid_file.read_text())
    time.sleep(0.3)  # let `stubborn` install its SIG_IGN
    pids = [c.process.pid for c in sup.children if c.process]
    pids.append(int(pid_file.read_text()))
    sup.stop_all()
    assert [p for p in pids if alive(p)] == []
    assert sup.children[1].process is not None
    assert sup.children[1].process.returncode == -9, "SIGTERM ignored: killed after the timeout"


def test_children_whose_module_is_missing_are_skipped() -> None:
    specs = [
        ChildSpec("here", SLEEPER, "streams.settings"),
        ChildSpec("not-yet", SLEEPER, "agents.no_such_module"),
        ChildSpec("no-package", SLEEPER, "no_such_package.worker"),
    ]
    assert [s.name for s in _available(specs)] == ["here"]


def test_backoff_doubles_up_to_a_cap() -> None:
    assert [backoff(n) for n in (1, 2, 3, 4)] == [1, 2, 4, 8]
    assert backoff(50) == 30


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("postgresql://u:secret@db:5432/x", "postgresql://u:****@db:5432/x"),
        ("redis://:pw@r:6379/0", "redis://:****@r:6379/0"),
        (
            "postgresql://postgres@127.0.0.1:54329/skyreel",
            "postgresql://postgres@127.0.0.1:54329/skyreel",
        ),
        ("127.0.0.1:9092", "127.0.0.1:9092"),
    ],
)
def test_mask_url_hides_passwords_only(url: str, masked: str) -> None:
    assert mask_url(url) == masked


def test_summary_says_embedded_or_external_and_masks_secrets(tmp_path: Path) -> None:
    s = Settings(
        data_dir=tmp_path,
        database_url="postgresql://app:hunter2@db:5432/skyreel",
        redis_url="redis://127.0.0.1:63790/0",
        kafka_url="127.0.0.1:19092",
    )
    text = summary(s, ["redis", "kafka"])
    assert "hunter2" not in text
    lines = {line.split()[0]: line for line in text.splitlines()[1:]}
    assert "external" in lines["postgresql"] and "app:****@db" in lines["postgresql"]
    assert "embedded" in lines["redis"] and "embedded" in lines["kafka"]
    assert "tansu" in lines["kafka"]


def test_settings_survive_the_trip_through_child_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = Settings(
        data_dir=tmp_path,
        database_url="postgresql://u:p@h/d",
        kafka_url="h:1",
        kafka_local_tuning=True,
        admin_token=SecretStr("not-the-default"),
        topic_partitions=3,
    )
    env = settings_env_vars(s)
    assert env["SKYREEL_ADMIN_TOKEN"] == "not-the-default"
    assert "SKYREEL_HUB_ID" in env
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert Settings() == s
