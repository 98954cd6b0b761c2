"""`skyreel register-detector`: prints the token once, refuses duplicates and bad ids."""

from __future__ import annotations

import hashlib

import pytest

from streams.cli.detectors import register_detector_cli
from streams.settings import Settings


def test_register_detector_cli_prints_the_token_once(
    database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = Settings(database_url=database_url, redis_url="x", kafka_url="x")
    name = f"cli-{hashlib.sha1(database_url.encode()).hexdigest()[:6]}"
    assert register_detector_cli(settings, name, "CLI station") == 0
    out = capsys.readouterr().out
    token = out.splitlines()[1]
    assert out.count(token) == 1 and len(token) >= 40
    # a second registration of the same id is refused; a bad id is refused
    assert register_detector_cli(settings, name, "") == 1
    assert "already registered" in capsys.readouterr().err
    assert register_detector_cli(settings, "Bad_Id", "") == 1
    assert register_detector_cli(Settings(database_url=""), "ok", "") == 2
