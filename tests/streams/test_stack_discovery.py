"""Every `skyreel` command finds the running local stack by itself (streams/stack/discovery.py):
the precedence of explicit settings over the stack file, a stale file (its run is gone) ignored
with a message that says so, the admin token generated per data dir; and for real: a `skyreel
run --no-demo`, then commands with nothing but SKYREEL_DATA_DIR in their environment."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest
from test_stack_run import ROOT, Run, alive

from streams.cli.main import main
from streams.settings import DEV_TOKEN, Settings
from streams.stack.admin_token import ensure_admin_token, read_admin_token
from streams.stack.discovery import (
    FILLED,
    STACK_FILE,
    Found,
    StackFileError,
    discover,
    fill,
    fill_admin_token,
    missing,
    parse,
    process_matches,
    read_stack,
    remove_stack_file,
    stack_info,
    write_stack_file,
)
from streams.stack.services import free_port

STACK_SETTINGS = {
    "database_url": "postgresql://postgres@127.0.0.1:1/skyreel",
    "redis_url": "redis://127.0.0.1:2/0",
    "kafka_url": "127.0.0.1:3",
    "kafka_local_tuning": True,
    "topic_prefix": "stackprefix",
    "app_id": "stackapp",
    "share_root": "/srv/stack/share",
    "output_dir": "/srv/stack/output",
    "hub_host": "127.0.0.1",
    "hub_port": 8811,
}


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No SKYREEL_* variable and no .env: only what a test sets."""
    for key in list(os.environ):
        if key.startswith("SKYREEL_"):
            monkeypatch.delenv(key)
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    return work


def file_text(pid: object = 4242, started: object = 100.0, **over: object) -> str:
    data: dict[str, object] = {
        "version": 1,
        "pid": pid,
        "started": started,
        "data_dir": "/srv/stack",
        "settings": dict(STACK_SETTINGS),
        "hub_url": "http://127.0.0.1:8811",
        "processes": ["hub", "worker"],
        "admin_token_file": "/srv/stack/admin_token",
    }
    data.update(over)
    return json.dumps(data)


def write(data_dir: Path, text: str) -> None:
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / STACK_FILE).write_text(text)


# --- the file ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("{", "not JSON"),
        ('{"version": 2}', "version"),
        (file_text(pid=-1), "pid"),
        (file_text(pid=True), "pid"),
        (file_text(started="x"), "start time"),
        (file_text(settings=[1]), "settings"),
        (file_text(settings={"hub_port": "8800"}), "hub_port"),
        (file_text(settings={"kafka_local_tuning": 1}), "kafka_local_tuning"),
        (file_text(settings={"hub_port": True}), "hub_port"),
        (file_text(hub_url=3), "string"),
        (file_text(processes="hub"), "processes"),
    ],
)
def test_a_file_that_is_not_a_stack_file_is_refused_with_the_reason(text: str, why: str) -> None:
    with pytest.raises(StackFileError, match=why):
        parse(text)


def test_unknown_keys_of_a_newer_run_are_left_alone() -> None:
    info = parse(file_text(settings={**STACK_SETTINGS, "future": 1, "redis_url": None}))
    assert "future" not in info.settings and "redis_url" not in info.settings
    assert info.dashboard_url == "http://127.0.0.1:8811/"
    assert info.detector_url == "ws://127.0.0.1:8811/ws/detector"


def test_no_file_means_no_stack_and_no_note(tmp_path: Path) -> None:
    found = read_stack(tmp_path)
    assert not found.running and found.note == "" and found.data_dir == tmp_path.resolve()


def test_a_stale_file_is_ignored_and_says_whose_it_was(tmp_path: Path) -> None:
    write(tmp_path, file_text(pid=4242))
    found = read_stack(tmp_path, alive=lambda pid, started: False)
    assert not found.running
    assert "pid 4242" in found.note and "gone" in found.note
    live = read_stack(tmp_path, alive=lambda pid, started: (pid, started) == (4242, 100.0))
    assert live.running and live.info is not None and live.info.pid == 4242


def test_a_garbled_file_is_ignored_with_its_reason(tmp_path: Path) -> None:
    write(tmp_path, "{half a file")
    found = read_stack(tmp_path, alive=lambda pid, started: True)
    assert not found.running and "not usable" in found.note and "not JSON" in found.note


def test_liveness_is_the_pid_and_its_start_time() -> None:
    me = psutil.Process()
    assert process_matches(os.getpid(), me.create_time())
    # the same pid with another start time: a pid the kernel gave to a new process
    assert not process_matches(os.getpid(), me.create_time() - 3600)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    assert not process_matches(gone.pid, time.time())


def test_written_file_is_private_atomic_and_removed_only_by_its_owner(tmp_path: Path) -> None:
    s = Settings(data_dir=tmp_path, **STACK_SETTINGS)  # type: ignore[arg-type]
    info = stack_info(s, hub_url="http://127.0.0.1:8811", processes=["hub"], admin_token_file=None)
    path = write_stack_file(tmp_path, info)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == [STACK_FILE], "no temporary file left"
    found = read_stack(tmp_path)
    assert found.running and found.info == info, "our own process is alive"
    remove_stack_file(tmp_path, pid=os.getpid() + 1)
    assert path.exists(), "another run's file is not ours to remove"
    remove_stack_file(tmp_path)
    assert not path.exists()


# --- precedence ----------------------------------------------------------------------------


def running(data_dir: Path) -> Found:
    return Found(data_dir, parse(file_text()))


def test_the_stack_fills_what_is_not_configured(clean_env: Path) -> None:
    s, filled = fill(Settings(), running(clean_env))
    for key, value in STACK_SETTINGS.items():
        got = getattr(s, key)
        assert (str(got) if isinstance(got, Path) else got) == value, key
    assert s.data_dir == Path("/srv/stack")
    assert set(filled) == {*FILLED, "data_dir"}


def test_environment_and_dotenv_win_over_the_stack(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SKYREEL_DATABASE_URL", "postgresql://env@db/x")
    monkeypatch.setenv("SKYREEL_TOPIC_PREFIX", "envprefix")
    monkeypatch.setenv("SKYREEL_REDIS_URL", "")  # empty: "not configured", the stack's is used
    (clean_env / ".env").write_text("SKYREEL_KAFKA_URL=dotenv:9092\n")
    s, filled = fill(Settings(), running(clean_env))
    assert s.database_url == "postgresql://env@db/x"
    assert s.topic_prefix == "envprefix"
    assert s.kafka_url == "dotenv:9092"
    assert s.redis_url == STACK_SETTINGS["redis_url"]
    assert "database_url" not in filled and "redis_url" in filled


def test_nothing_is_filled_without_a_running_stack(clean_env: Path) -> None:
    s, filled = fill(Settings(), Found(clean_env, note="gone"))
    assert filled == () and s.database_url == ""


def test_a_fully_configured_process_does_not_read_the_file(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the children of `skyreel run` get every setting: a broken stack file costs them nothing
    data = clean_env / "data"
    write(data, "{garbage")
    monkeypatch.setenv("SKYREEL_DATA_DIR", str(data))
    for key, value in STACK_SETTINGS.items():
        monkeypatch.setenv(f"SKYREEL_{key.upper()}", str(value))
    _, found = discover(Settings())
    assert found.note == "" and found.filled == ()


def test_the_message_when_nothing_runs_and_nothing_is_set(tmp_path: Path) -> None:
    found = Found(tmp_path)
    s = Settings(data_dir=tmp_path)
    assert missing(s, found, ["database_url"]) == (
        f"no running skyreel stack found in {tmp_path} (start one with `skyreel run`) and "
        "SKYREEL_DATABASE_URL is not set"
    )
    stale = Found(tmp_path, note="its stack.json is left from skyreel run pid 7, which is gone")
    both = missing(s, stale, ["database_url", "kafka_url"])
    assert both is not None and "pid 7" in both
    assert both.endswith("SKYREEL_DATABASE_URL and SKYREEL_KAFKA_URL are not set")
    configured = Settings(data_dir=tmp_path, database_url="postgresql://x/y")
    assert missing(configured, found, ["database_url"]) is None


NO_STACK_COMMANDS = [["status"], ["retry", "1"], ["executions"], ["replay", "x", "--offset", "0"]]


@pytest.mark.parametrize("argv", NO_STACK_COMMANDS)
def test_commands_say_no_stack_runs_instead_of_a_traceback(
    clean_env: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
) -> None:
    monkeypatch.setenv("SKYREEL_DATA_DIR", str(clean_env / "data"))
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"skyreel {argv[0]}: no running skyreel stack found in" in err
    assert "start one with `skyreel run`" in err
    assert "is not set" in err or "are not set" in err


def test_a_crashed_runs_file_is_named_in_the_message(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    crashed = subprocess.Popen([sys.executable, "-c", "pass"])
    crashed.wait()
    data = clean_env / "data"
    write(data, file_text(pid=crashed.pid, started=time.time()))
    monkeypatch.setenv("SKYREEL_DATA_DIR", str(data))
    assert main(["executions"]) == 2
    err = capsys.readouterr().err
    assert f"skyreel run pid {crashed.pid}, which is gone (crashed or killed)" in err
    assert "SKYREEL_DATABASE_URL is not set" in err


def test_token_without_a_generated_one_says_where_it_would_be(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    data = clean_env / "data"
    monkeypatch.setenv("SKYREEL_DATA_DIR", str(data))
    assert main(["token"]) == 1
    out, err = capsys.readouterr()
    assert out == "" and f"no admin token in {data.resolve() / 'admin_token'} yet" in err
    token, _ = ensure_admin_token(data)
    assert main(["token"]) == 0
    out, err = capsys.readouterr()
    assert out == f"{token}\n" and "no running skyreel stack" in err


# --- the admin token -----------------------------------------------------------------------


def test_the_admin_token_is_generated_once_private_and_reused(tmp_path: Path) -> None:
    token, path = ensure_admin_token(tmp_path)
    assert len(token) >= 32 and token != DEV_TOKEN
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert ensure_admin_token(tmp_path) == (token, path)
    path.chmod(0o644)
    assert ensure_admin_token(tmp_path)[0] == token
    assert stat.S_IMODE(path.stat().st_mode) == 0o600, "made private again"
    path.write_text("short\n")
    assert read_admin_token(tmp_path) is None
    fresh, _ = ensure_admin_token(tmp_path)
    assert fresh != token and len(fresh) >= 32


def test_a_configured_admin_token_wins_over_the_generated_one(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    generated = "g" * 40
    assert fill_admin_token(Settings(), generated).admin_token.get_secret_value() == generated
    assert fill_admin_token(Settings(), None).admin_token.get_secret_value() == DEV_TOKEN
    monkeypatch.setenv("SKYREEL_ADMIN_TOKEN", "e" * 40)
    assert fill_admin_token(Settings(), generated).admin_token.get_secret_value() == "e" * 40


def test_production_still_refuses_to_start_without_a_configured_token(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    data = clean_env / "data"
    ensure_admin_token(data)  # a generated token does not make production acceptable
    monkeypatch.setenv("SKYREEL_DATA_DIR", str(data))
    monkeypatch.setenv("SKYREEL_ENVIRONMENT", "production")
    assert main(["run", "--no-demo"]) == 2
    assert "SKYREEL_ADMIN_TOKEN must be a secret" in capsys.readouterr().err


# --- for real ------------------------------------------------------------------------------


def cli(data_dir: Path, *argv: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """`skyreel ARGV` with SKYREEL_DATA_DIR as its only setting (and not run from the repo, so
    no .env there could help it)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SKYREEL_")}
    env["SKYREEL_DATA_DIR"] = str(data_dir)
    return subprocess.run(
        [sys.executable, "-m", "streams.cli", *argv],
        env=env,
        cwd=data_dir.parent,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def sizes(log_dir: Path, names: list[str]) -> dict[str, int]:
    return {n: (log_dir / f"{n}.log").stat().st_size for n in names}


def wait_for(predicate: object, what: str, timeout: float = 60) -> None:
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.3)


@pytest.fixture
def data_dir(embedded_data_dir: Path) -> Path:
    embedded_data_dir.mkdir(exist_ok=True)
    for name in ("postgres", "redis", "kafka"):
        (embedded_data_dir / f"{name}.port").write_text(f"{free_port()}\n")
    return embedded_data_dir


@pytest.mark.slow
@pytest.mark.timeout(420)
def test_commands_find_the_running_stack_by_themselves(tmp_path: Path, data_dir: Path) -> None:
    hub_port = free_port()
    run = Run(data_dir, hub_port, tmp_path / "run.log")
    log_dir = data_dir / "logs"
    children = ["hub", "worker", "render-worker-1"]
    detector: subprocess.Popen[bytes] | None = None
    try:
        run.wait_up()
        out = run.output()
        token = (data_dir / "admin_token").read_text().strip()
        assert f"admin token: {token}" in out and token != DEV_TOKEN
        assert stat.S_IMODE((data_dir / "admin_token").stat().st_mode) == 0o600
        assert stat.S_IMODE((data_dir / STACK_FILE).stat().st_mode) == 0o600
        assert "SKYREEL_DATABASE_URL=" not in out, "nobody has to copy a URL any more"

        status = cli(data_dir, "status")
        assert status.returncode == 0, status.stderr
        assert "counters:" in status.stdout and "needs attention" in status.stdout
        executions = cli(data_dir, "executions")
        assert executions.returncode == 0, executions.stderr

        shown = cli(data_dir, "token")
        assert shown.returncode == 0, shown.stderr
        assert shown.stdout.strip() == token
        assert f"dashboard: http://127.0.0.1:{hub_port}/" in shown.stderr

        wait_for(lambda: all((log_dir / f"{n}.log").exists() for n in children), "child logs")
        before = sizes(log_dir, children)

        # the hub accepts that token for an admin call (and refuses without it)
        reg = cli(data_dir, "register-detector", "station-17")
        assert reg.returncode == 0, reg.stderr
        station_token = reg.stdout.splitlines()[1].strip()
        base = f"http://127.0.0.1:{hub_port}"

        # a detector stopped by SIGINT says "stopped", not "reconnecting"
        cards = tmp_path / "cards"
        cards.mkdir()
        detector_log = tmp_path / "detector.log"
        with detector_log.open("wb") as fh:
            detector = subprocess.Popen(
                [sys.executable, "-m", "detector", "--hub", f"ws://127.0.0.1:{hub_port}/ws/detector",
                 "--share", str(data_dir / "share"), "--watch", str(cards)],
                env={**os.environ, "SKYREEL_DETECTOR_TOKEN": station_token},
                stdout=fh, stderr=subprocess.STDOUT, cwd=ROOT,
            )  # fmt: skip
        wait_for(lambda: b"connected to the hub" in detector_log.read_bytes(), "the detector")
        detector.send_signal(signal.SIGINT)
        assert detector.wait(30) == 0
        said = detector_log.read_text()
        assert "detector stopped" in said and "reconnecting" not in said, said

        refused = httpx.post(f"{base}/api/detectors/station-17/revoke", timeout=10)
        assert refused.status_code == 401
        done = httpx.post(
            f"{base}/api/detectors/station-17/revoke",
            headers={"Authorization": f"Bearer {shown.stdout.strip()}"},
            timeout=10,
        )
        assert done.status_code == 200, done.text
        assert done.json()["revoked"] is True

        retry = cli(data_dir, "retry", "999999")  # needs the broker too: from the stack file
        assert "execution 999999" in retry.stdout + retry.stderr, retry.stderr

        wait_for(lambda: sizes(log_dir, ["hub"])["hub"] > before["hub"], "the hub's log")
        wait_for(lambda: sizes(log_dir, ["worker"])["worker"] > before["worker"], "worker log")
        hub_log = (log_dir / "hub.log").read_text()
        assert "detector station-17 connected" in hub_log

        tail = cli(data_dir, "logs", "hub", "-n", "5")
        assert tail.returncode == 0, tail.stderr
        lines = tail.stdout.splitlines()
        assert len(lines) == 5 and lines == hub_log.splitlines()[-5:]
        unknown = cli(data_dir, "logs", "nope")
        assert unknown.returncode == 2 and "valid: " in unknown.stderr
        assert "render-worker-1" in unknown.stderr and "postgres" in unknown.stderr

        pids = run.descendants()
        assert run.stop(signal.SIGTERM) == 0, run.output()
    finally:
        if detector is not None and detector.poll() is None:
            detector.kill()
        if run.popen.poll() is None:
            os.killpg(run.popen.pid, signal.SIGKILL)
    assert not [p for p in pids if alive(p)]
    assert not (data_dir / STACK_FILE).exists(), "removed at exit"
    after = sizes(log_dir, children)
    assert after["render-worker-1"] > before["render-worker-1"], "its shutdown lines"
    console = run.output()
    assert "detector station-17 connected" not in console, "INFO lines stay in the files"

    gone = cli(data_dir, "status")
    assert gone.returncode == 2
    assert f"no running skyreel stack found in {data_dir.resolve()}" in gone.stderr
    assert "Traceback" not in gone.stderr
    # the admin token stays (the next run reuses it); the stack is gone
    again = cli(data_dir, "token")
    assert again.stdout.strip() == token and "no running skyreel stack" in again.stderr
