"""Supervision of `skyreel run`'s children with trivial real processes, of the embedded services
with a real redis-server (killed, restarted on its port, backoff when it keeps failing), what
health makes of the supervisor's state file, and the pure helpers (URL masking, the startup
summary, settings handed to children, backoff)."""

from __future__ import annotations

import itertools
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import redis
from pydantic import SecretStr

from streams.service_state import read_service_states, redis_answers, write_service_states
from streams.settings import Settings
from streams.stack.local import mask_url, settings_env_vars, summary
from streams.stack.services import ChildService, free_port, spawn_redis
from streams.stack.supervisor import ChildSpec, ServiceSupervisor, ServiceWatch, Supervisor, backoff

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


# --- embedded services under supervision -------------------------------------------------


def redis_watch(data_dir: Path, port: int) -> ServiceWatch:
    svc = spawn_redis(data_dir, port)
    wait_until(lambda: redis_answers("127.0.0.1", port))
    return ServiceWatch(
        "redis", "redis", svc, respawn=lambda: spawn_redis(data_dir, port), ready=redis_answers
    )


def test_a_killed_service_is_restarted_on_its_port_and_its_data_kept(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    port = free_port()
    watch = redis_watch(tmp_path, port)
    client = redis.Redis(port=port, socket_timeout=5)
    client.set("queued", "render-1")
    back: list[str] = []
    states = tmp_path / "services.json"
    services = ServiceSupervisor([watch], status_file=states, on_back=back.append)
    try:
        first = watch.service.process.pid
        watch.service.process.kill()
        # SIGKILL is delivered asynchronously (and a threaded process is reapable only once
        # every thread is gone): the first poll after its death reaps and logs it

        def noticed() -> bool:
            services.poll()
            return watch.state != "up"

        wait_until(noticed, timeout=10)
        assert watch.service.process.returncode == -9
        assert services.down() == {"redis": "restarting (attempt 1)"}
        assert read_service_states(states)["redis"]["note"] == "restarting (attempt 1)"
        died = [r.getMessage() for r in caplog.records if "killed by SIGKILL" in r.getMessage()]
        assert len(died) == 1 and "If it keeps failing, read" in died[0], died

        def up_again() -> bool:
            services.poll()
            return watch.state == "up"

        wait_until(up_again)
        assert back == ["redis"]
        assert watch.service.process.pid != first and watch.service.port == port
        assert client.get("queued") == b"render-1", "the append-only file brought it back"
        assert read_service_states(states)["redis"]["state"] == "up"
        assert services.down() == {}
    finally:
        client.close()
        watch.service.stop()
        services.stop()
    assert not states.exists()


def test_a_service_that_keeps_failing_backs_off_and_says_which_attempt(tmp_path: Path) -> None:
    port = free_port()
    watch = redis_watch(tmp_path, port)
    attempts: list[float] = []

    def broken() -> ChildService:
        attempts.append(time.monotonic())
        proc = subprocess.Popen([sys.executable, "-c", "raise SystemExit(1)"])
        return ChildService("redis", proc, "127.0.0.1", port, tmp_path / "redis.log")

    watch.respawn = broken
    services = ServiceSupervisor([watch], base_delay=0.1)
    watch.service.process.kill()

    def three_failures() -> bool:
        services.poll()
        return len(attempts) >= 3 and watch.state == "down"

    wait_until(three_failures)
    gaps = [b - a for a, b in itertools.pairwise(attempts)]
    assert gaps[1] > gaps[0] * 1.5, f"no backoff between attempts: {gaps}"
    assert services.down()["redis"] == f"restarting (attempt {len(attempts) + 1})"


def test_dependants_restart_with_their_service_and_nothing_else_does() -> None:
    specs = [
        ChildSpec("hub", SLEEPER, restart_with=("kafka",)),
        ChildSpec("render", SLEEPER),
    ]
    sup = Supervisor(specs, {"PATH": "/usr/bin:/bin"}, stop_timeout=5)
    sup.start_all()
    try:
        hub, render = sup.children
        pids = [c.process.pid for c in sup.children if c.process]
        sup.restart_dependants("redis")
        sup.restart_dependants("kafka")

        def hub_again() -> bool:
            sup.poll()
            return hub.restarts == 1

        wait_until(hub_again)
        assert hub.process is not None and hub.process.pid != pids[0]
        assert hub.crashes == 0, "a restart on purpose is no crash"
        assert render.process is not None and render.process.pid == pids[1]
        assert render.restarts == 0
    finally:
        sup.stop_all()


def test_health_names_the_service_down_and_what_the_run_does_about_it(tmp_path: Path) -> None:
    from streams.hub.server import disk_health, service_health

    dead = free_port()
    s = Settings(
        data_dir=tmp_path,
        database_url="postgresql://postgres@127.0.0.1:5432/skyreel",
        redis_url="redis://127.0.0.1:6379/0",
        kafka_url=f"127.0.0.1:{dead}",
        share_root=tmp_path,
        output_dir=tmp_path / "missing",
        low_space_bytes=10**18,  # more than any disk: low
    )
    up = {"database": True, "broker": False, "redis": True}
    assert service_health(s, up)["broker"]["reason"] == f"broker not answering at 127.0.0.1:{dead}"
    states: dict[str, dict[str, object]] = {
        "broker": {"state": "restarting", "note": "restarting (attempt 3)"}
    }
    write_service_states(tmp_path / "services.json", states)
    health = service_health(s, up)
    assert health["broker"] == {
        "up": False,
        "address": f"127.0.0.1:{dead}",
        "reason": f"broker not answering at 127.0.0.1:{dead}: restarting (attempt 3)",
    }
    assert health["database"] == {"up": True, "address": "127.0.0.1:5432", "reason": None}
    disk = disk_health(s)
    assert disk["share"]["low_space"] is True and int(str(disk["share"]["free_bytes"])) > 0
    assert disk["output"] == {
        "path": str(tmp_path / "missing"),
        "free_bytes": None,
        "total_bytes": None,
        "low_space": False,
    }
