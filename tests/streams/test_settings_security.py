"""Production refuses weak secrets, and the hub tells a detector which service failed, never
the service's own error (red-team D18, D11)."""

from __future__ import annotations

import pytest

from streams.hub.detector_ws import Unavailable
from streams.settings import DEV_TOKEN, MIN_ADMIN_TOKEN_CHARS, Settings


# red-team D18: production started with the admin token `a` or `" "`
@pytest.mark.parametrize("token", ["", "a", " ", " " * 40, DEV_TOKEN, "x" * 31])
def test_production_refuses_a_weak_admin_token(token: str) -> None:
    with pytest.raises(ValueError, match=f"at least {MIN_ADMIN_TOKEN_CHARS} random characters"):
        Settings(environment="production", admin_token=token)


def test_production_takes_a_long_random_token() -> None:
    token = "3f9a" * 16
    assert Settings(environment="production", admin_token=token).admin_token.get_secret_value()


def test_development_keeps_its_default() -> None:
    assert Settings(environment="development").admin_token.get_secret_value() == DEV_TOKEN


# red-team D11: SQL text went back to the detector
def test_a_backend_failure_reaches_a_detector_without_its_internals() -> None:
    cause = RuntimeError("(sqlalchemy.exc.DataError) INSERT INTO card (label) VALUES (...) \\x00")
    exc = Unavailable("database", cause)
    assert "INSERT" in str(exc)  # our log keeps the detail
    assert exc.for_client == "the hub's database is unavailable; retry in a moment"
