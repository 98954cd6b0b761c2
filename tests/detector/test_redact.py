"""detector/redact.py: secrets out of log lines, the rest of each line untouched."""

from __future__ import annotations

import logging

import pytest
from hypothesis import given
from hypothesis import strategies as st

from detector.redact import MASK, RedactFilter, install_redaction, redact

SECRET = "skr_Zk3v9QpL1xYw8Rt2Ua7bNc5Md4Fe6Gh0"


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        # red-team D5: the request lines uvicorn logs with the query string
        (
            f'127.0.0.1:5000 - "GET /api/counters?token={SECRET} HTTP/1.1" 200',
            '127.0.0.1:5000 - "GET /api/counters?token=*** HTTP/1.1" 200',
        ),
        (
            f'127.0.0.1:5000 - "WebSocket /ws/detector?token={SECRET}" [accepted]',
            '127.0.0.1:5000 - "WebSocket /ws/detector?token=***" [accepted]',
        ),
        (
            f"/ws/status?limit=5&token={SECRET}&x=1#top",
            "/ws/status?limit=5&token=***&x=1#top",
        ),
        (f"/cb?access_token={SECRET}", "/cb?access_token=***"),
        (f"/cb?admin_token={SECRET};rest", "/cb?admin_token=***;rest"),
        (f"/cb?TOKEN={SECRET}", "/cb?TOKEN=***"),
        (f"SKYREEL_ADMIN_TOKEN={SECRET} skyreel hub", "SKYREEL_ADMIN_TOKEN=*** skyreel hub"),
        (
            f"python -m detector --token={SECRET} --share /s",
            "python -m detector --token=*** --share /s",
        ),
        (f"Authorization: Bearer {SECRET}", "Authorization: Bearer ***"),
        (f"authorization: bearer {SECRET}", "authorization: bearer ***"),
        (f"[('authorization', 'Bearer {SECRET}')]", "[('authorization', 'Bearer ***')]"),
        (f"(b'authorization', b'Bearer {SECRET}')", "(b'authorization', b'Bearer ***')"),
        (f"sent Bearer {SECRET} upstream", "sent Bearer *** upstream"),
        (f'{{"type": "auth", "token": "{SECRET}"}}', '{"type": "auth", "token": "***"}'),
        (f"{{'token': '{SECRET}'}}", "{'token': '***'}"),
    ],
)
def test_secrets_are_masked(line: str, expected: str) -> None:
    assert redact(line) == expected
    assert SECRET not in redact(line)


@pytest.mark.parametrize(
    "line",
    [
        "a valid bearer token is required",
        "reads need a bearer token on this hub",
        "detector station-a: unknown or revoked token",
        "mytoken=abc stays (not a token parameter)",
        "token_hash=abc is a column, not a secret",
        "GET /api/counters HTTP/1.1 200",
        "token= (empty) stays",
        "",
    ],
)
def test_lines_without_secrets_are_unchanged(line: str) -> None:
    assert redact(line) == line


@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=60))
def test_redacting_is_idempotent_and_never_leaks_a_query_token(prefix: str) -> None:
    line = f"{prefix} /ws/status?token={SECRET}"
    once = redact(line)
    assert redact(once) == once
    assert SECRET not in once and MASK in once


def _record(msg: object, args: object = (), exc: bool = False) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise ValueError(f"bad URI ws://hub/ws/detector?token={SECRET}")
        except ValueError:
            import sys

            exc_info = sys.exc_info()
    return logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1, msg, args, exc_info)  # type: ignore[arg-type]


def test_the_filter_rewrites_message_arguments_and_traceback() -> None:
    f = RedactFilter()
    # uvicorn's access line: the path is one of the arguments, the structure is kept
    rec = _record(
        '%s - "%s %s HTTP/%s" %d', ("1.2.3.4:5", "GET", f"/api/counters?token={SECRET}", "1.1", 200)
    )
    assert f.filter(rec)
    assert rec.getMessage() == '1.2.3.4:5 - "GET /api/counters?token=*** HTTP/1.1" 200'
    assert isinstance(rec.args, tuple) and rec.args[4] == 200
    # mapping arguments, an object whose str() carries the secret, a traceback
    rec = _record("%(url)s", ({"url": f"/x?token={SECRET}"},))
    assert f.filter(rec) and rec.getMessage() == "/x?token=***"
    rec = _record("cannot reach %s", (ValueError(f"/x?token={SECRET}"),), exc=True)
    assert f.filter(rec)
    text = logging.Formatter().format(rec)
    assert SECRET not in text and "token=***" in text and "ValueError" in text


def test_install_puts_one_filter_on_handlers_and_library_loggers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    handler = logging.StreamHandler()
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        install_redaction()
        install_redaction()  # idempotent
        assert sum(isinstance(f, RedactFilter) for f in handler.filters) == 1
        access = logging.getLogger("uvicorn.access")
        assert sum(isinstance(f, RedactFilter) for f in access.filters) == 1
        with caplog.at_level(logging.INFO, logger="uvicorn.access"):
            access.info('%s - "GET %s HTTP/1.1" 200', "1.2.3.4:5", f"/api/x?token={SECRET}")
        assert caplog.messages == ['1.2.3.4:5 - "GET /api/x?token=*** HTTP/1.1" 200']
    finally:
        root.removeHandler(handler)
