"""Secrets out of log lines: tokens in query strings, bearer headers, token fields and the
passenger page's ``/p/<token>`` paths.

Clients should send tokens in an ``Authorization: Bearer`` header (or, for ``/ws/status``, in a
first authentication frame), but a query token is still accepted for old clients, and the HTTP
server logs every request line with its query string. :func:`redact` rewrites the secret parts
of a text to ``***``; :class:`RedactFilter` applies it to every log record it sees (message,
arguments and formatted traceback) and :func:`install_redaction` puts one on the handlers a
process configured and on the loggers of the HTTP server and WebSocket libraries.

It lives in the detector package, the bottom layer, so that the station (detector/cli.py) and
the backend (streams/cli/main.py, streams/hub/server.py) share it; it imports only the standard
library.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping

#: What replaces a secret.
MASK = "***"

#: Names whose ``name=value`` is a secret wherever it appears: query strings, command lines,
#: environment dumps (``SKYREEL_ADMIN_TOKEN=…`` and ``--token=…`` match too).
SECRET_NAMES = ("access_token", "admin_token", "token")

_NAMES = "|".join(SECRET_NAMES)
# name=value, the name not glued to a preceding letter or digit (so `mytoken=` is left alone);
# the value runs to the next separator of a query string, a quote or white space.
_ASSIGNED = re.compile(rf"(?i)(?<![a-z0-9])((?:{_NAMES}))=[^&\s\"'#;,<>]+")
# "token": "value" in JSON or a Python repr.
_FIELD = re.compile(rf"""(?i)(["'](?:{_NAMES})["']\s*:\s*)(["'])(?:(?!\2).)+\2""")
# An Authorization header's credentials, whatever the scheme: `Authorization: Bearer value`,
# `('authorization', 'Bearer value')`.
_AUTHORIZATION = re.compile(
    r"""(?i)(authorization["']?\s*[:=,]\s*(?:b?["'])?)((?:bearer|basic|token)\s+)?[^\s"',)]+"""
)
# A bare "Bearer value" elsewhere; the value at least 12 token characters, so prose such as
# "a valid bearer token is required" stays as it is.
_BEARER = re.compile(r"(?i)\b(bearer)(\s+)[A-Za-z0-9._~+/=-]{12,}")
# The passenger page's address holds its key: `/p/<token>` (and `/p/<token>/video`, …) in a
# request line or a URL; the token is at least 20 URL-safe characters (a real one is ~100).
_PASSENGER_PATH = re.compile(r"(/p/)[A-Za-z0-9._~%-]{20,}")

#: The loggers that write request lines or URLs themselves (a filter on a logger sees only the
#: records logged on that very logger, so each is named).
LIBRARY_LOGGERS = (
    "uvicorn",
    "uvicorn.access",
    "uvicorn.error",
    "websockets",
    "websockets.client",
    "websockets.server",
    "httpx",
    "httpcore",
)


def redact(text: str) -> str:
    """``text`` with every token value replaced by ``***`` (pure; the rest unchanged)."""
    if not text:
        return text
    text = _ASSIGNED.sub(rf"\1={MASK}", text)
    text = _FIELD.sub(rf"\1\2{MASK}\2", text)
    text = _AUTHORIZATION.sub(rf"\1\2{MASK}", text)
    text = _PASSENGER_PATH.sub(rf"\1{MASK}", text)
    return _BEARER.sub(rf"\1\2{MASK}", text)


def _redacted_arg(arg: object) -> object:
    if isinstance(arg, str):
        return redact(arg)
    if isinstance(arg, int | float | bool) or arg is None:
        return arg
    shown = str(arg)  # a URL object, an exception: replaced only when it carried a secret
    cleaned = redact(shown)
    return arg if cleaned == shown else cleaned


class RedactFilter(logging.Filter):
    """Rewrites a record's message, arguments and traceback text without secrets; never drops
    a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "_redacted", False):  # already seen by a logger's filter
            return True
        record._redacted = True
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        elif record.msg is not None and redact(str(record.msg)) != str(record.msg):
            record.msg = redact(str(record.msg))
        if isinstance(record.args, Mapping):
            record.args = {k: _redacted_arg(v) for k, v in record.args.items()}
        elif isinstance(record.args, tuple):
            record.args = tuple(_redacted_arg(a) for a in record.args)
        if record.exc_info and not record.exc_text:
            # Formatters reuse exc_text when it is set, so the traceback is shown redacted.
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        elif record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


def install_redaction(logger_names: Iterable[str] = LIBRARY_LOGGERS) -> RedactFilter:
    """One filter on the root logger's handlers and on ``logger_names`` (idempotent: a logger or
    handler that has one already keeps it)."""
    found = RedactFilter()
    targets: list[logging.Filterer] = [*logging.getLogger().handlers]
    targets += [logging.getLogger(name) for name in logger_names]
    for target in targets:
        if not any(isinstance(f, RedactFilter) for f in target.filters):
            target.addFilter(found)
    return found
