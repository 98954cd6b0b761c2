"""docker-compose.yml and the Dockerfile, checked without Docker (none on this machine): the
file parses, every service has a healthcheck (the one-shot migration aside), start order waits
on health, the commands exist in the CLI, and the SKYREEL_* variables are real settings."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from streams.cli.main import build_parser
from streams.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
APP = ("hub", "worker", "render-worker")
BACKING = ("kafka", "postgres", "redis")


@pytest.fixture(scope="module")
def compose() -> dict[str, dict[str, object]]:
    doc = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert isinstance(doc, dict)
    return doc


def services(compose: dict[str, dict[str, object]]) -> dict[str, dict[str, object]]:
    svcs = compose["services"]
    assert isinstance(svcs, dict)
    return svcs


def cli_commands() -> set[str]:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert isinstance(sub.choices, dict)
    return set(sub.choices)


def test_the_production_stack_has_every_service(compose: dict[str, dict[str, object]]) -> None:
    assert set(services(compose)) == {*APP, *BACKING, "migrate"}
    svcs = services(compose)
    assert str(svcs["kafka"]["image"]).startswith("apache/kafka:")
    env = svcs["kafka"]["environment"]
    assert isinstance(env, dict) and env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert "KAFKA_ZOOKEEPER_CONNECT" not in env, "KRaft mode, no ZooKeeper"
    assert str(svcs["postgres"]["image"]) == "postgres:16"
    assert str(svcs["redis"]["image"]) == "redis:7"
    assert svcs["render-worker"]["deploy"] == {"replicas": 2}


def test_every_long_running_service_has_a_healthcheck(
    compose: dict[str, dict[str, object]],
) -> None:
    for name, svc in services(compose).items():
        if name == "migrate":
            continue
        check = svc.get("healthcheck")
        assert isinstance(check, dict) and check.get("test"), f"{name} has no healthcheck"
    hub_test = " ".join(services(compose)["hub"]["healthcheck"]["test"])  # type: ignore[index]
    assert "/api/health" in hub_test


def test_app_services_wait_for_healthy_backing_services_and_migrations(
    compose: dict[str, dict[str, object]],
) -> None:
    for name in APP:
        deps = services(compose)[name]["depends_on"]
        assert isinstance(deps, dict)
        assert {d: deps[d]["condition"] for d in BACKING} == dict.fromkeys(
            BACKING, "service_healthy"
        ), name
        assert deps["migrate"]["condition"] == "service_completed_successfully"


def test_commands_exist_in_the_cli(compose: dict[str, dict[str, object]]) -> None:
    commands = cli_commands()
    for name in (*APP, "migrate"):
        command = services(compose)[name]["command"]
        assert isinstance(command, list)
        assert command[0] in commands, f"{name}: `skyreel {command[0]}` does not exist"
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["skyreel"]' in dockerfile


def test_skyreel_variables_are_settings_and_production_needs_a_token(
    compose: dict[str, dict[str, object]],
) -> None:
    fields = {f"SKYREEL_{name.upper()}" for name in Settings.model_fields}
    for name in (*APP, "migrate"):
        env = services(compose)[name]["environment"]
        assert isinstance(env, dict)
        unknown = {k for k in env if k.startswith("SKYREEL_")} - fields
        assert not unknown, f"{name}: not settings: {unknown}"
        assert env["SKYREEL_ENVIRONMENT"] == "production"
        assert re.fullmatch(r"\$\{SKYREEL_ADMIN_TOKEN:\?.+\}", env["SKYREEL_ADMIN_TOKEN"])
        assert env["SKYREEL_DATABASE_URL"].startswith("postgresql://")
        assert env["SKYREEL_KAFKA_URL"] == "kafka:9092"


def test_image_has_ffmpeg_and_zbar_and_installs_the_project() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert dockerfile.startswith("#") and "FROM python:3.11-slim" in dockerfile
    assert re.search(r"apt-get install .*ffmpeg libzbar0", dockerfile)
    assert "pip install" in dockerfile
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".venv", ".git", ".env"} <= set(ignored)
