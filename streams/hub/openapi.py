"""The OpenAPI 3.1 document of the status API, served at `/api/openapi.json`.

Paths and parameters are written here by hand (they are few); bodies come from the pydantic
models in `streams.hub.api_models`, so the document cannot drift from what the handlers validate.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping

from pydantic.json_schema import models_json_schema

from streams.hub import api_action_models as am
from streams.hub import api_models as m

JsonObj = dict[str, object]
JsonMap = Mapping[str, object]

_EXEC_STATUS = ["pending", "running", "waiting", "succeeded", "failed", "cancelled"]
_SESSION_STATUS = ["decoded", "unassigned", "needs_review", "assigned", "pending"]


def _ref(model: type[object]) -> JsonObj:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _json(model: type[object], description: str) -> JsonObj:
    return {"description": description, "content": {"application/json": {"schema": _ref(model)}}}


def _errors(*codes: int) -> JsonObj:
    text = {
        401: "Missing or wrong bearer token.",
        403: "A dashboard action without its X-Skyreel-Dashboard header.",
        404: "Unknown id.",
        409: "The current state does not allow this.",
        413: "Body too large.",
        422: "Bad filter, parameter or body.",
        429: "Too many wrong tokens from this address; Retry-After says when to try again.",
        503: "The hub is starting or a dependency is down.",
    }
    return {str(c): _json(m.ErrorResponse, text[c]) for c in codes}


def _responses(ok: type[object], description: str, *codes: int) -> JsonObj:
    out = _errors(*codes)
    out["200"] = _json(ok, description)
    return out


def _throttled(responses: JsonObj) -> JsonObj:
    """The 429 answer carries Retry-After (seconds)."""
    answer = responses["429"]
    assert isinstance(answer, dict)
    seconds = {"type": "string", "pattern": "^[1-9][0-9]*$"}
    answer["headers"] = {"Retry-After": {"schema": seconds, "description": "Seconds to wait."}}
    return responses


def _query(name: str, schema: JsonMap, description: str) -> JsonObj:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": schema,
        "description": description,
    }


def _path(name: str, schema: JsonObj) -> JsonObj:
    return {"name": name, "in": "path", "required": True, "schema": schema}


_LIMIT = _query("limit", {"type": "integer", "minimum": 1, "maximum": 200}, "Page size.")
#: issue 17: search by passenger, booking or key (a substring, case-insensitive)
_Q = _query(
    "q",
    {"type": "string", "minLength": 1, "maxLength": 64, "pattern": "^[^\\x00-\\x1f\\x7f]+$"},
    "Passenger, booking or key contains this (case-insensitive).",
)
_OFFSET = _query("offset", {"type": "integer", "minimum": 0, "maximum": 1_000_000}, "Rows to skip.")
_CURSOR = _query(
    "cursor",
    {"type": "string", "pattern": "^[1-9][0-9]{0,17}$"},
    "next_cursor of the previous page.",
)
_EID = _path("execution_id", {"type": "integer", "minimum": 1})
_STEP = _path("step", {"type": "string", "minLength": 1, "maxLength": 200})
_FORCE = _query(
    "force",
    {"type": "string", "enum": ["true", "false", "1", "0", "yes", "no"]},
    "Also move steps that are running (their attempt is closed as cancelled): for a step that "
    "is stuck although its worker still beats.",
)
_CARD = _path("card_id", {"type": "string", "minLength": 1, "maxLength": 128})
_KEY = _path("key", {"type": "string", "minLength": 1, "maxLength": 128})
_DETECTOR = _path("detector_id", {"type": "string", "pattern": "^[a-z0-9][a-z0-9-]{0,63}$"})
_BOOKING = _path("booking_id", {"type": "string", "minLength": 1, "maxLength": 64})  # issue 16
_DAY = {"type": "string", "description": "YYYY-MM-DD or an ISO 8601 date-time"}
_SECURED: list[JsonObj] = [{"bearer": []}]


def _get(summary: str, params: list[JsonObj], ok: type[object], *errors: int) -> JsonObj:
    return {
        "get": {
            "summary": summary,
            "parameters": params,
            "responses": _responses(ok, "OK", 401, 503, *errors),
        }
    }


def _post(
    summary: str, params: list[JsonObj], ok: type[object], body: type[object] | None, *errors: int
) -> JsonObj:
    responses = _responses(ok, "Done", 401, 404, 409, 503, *errors)
    responses["202"] = _json(am.CommandQueued, "Queued: the engine applies it when it runs.")
    op: JsonObj = {
        "summary": summary,
        "parameters": params,
        "security": _SECURED,
        "responses": responses,
    }
    if body is not None:
        op["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": _ref(body)}},
        }
    return {"post": op}


def _accepted(summary: str, params: list[JsonObj], ok: type[object], body: type[object]) -> JsonObj:
    """A POST answered 202 whether the engine applied it (`ok`) or it is queued (issue 15)."""
    post = _post(summary, params, ok, body, 413, 422)
    op = post["post"]
    assert isinstance(op, dict)
    responses = op["responses"]
    assert isinstance(responses, dict)
    del responses["200"]
    schema = {"oneOf": [_ref(ok), _ref(am.CommandQueued)]}
    responses["202"] = {
        "description": "Applied (the re-edit follows), or queued until the engine runs.",
        "content": {"application/json": {"schema": schema}},
    }
    return post


def _paths() -> JsonObj:
    return {
        "/api/health": _get("Database, broker and Redis up or down", [], m.Health),
        "/api/executions": _get(
            "Executions, newest first",
            [
                _query("status", {"type": "string", "enum": _EXEC_STATUS}, "Execution status."),
                _query("card", {"type": "string", "minLength": 1, "maxLength": 128}, "Card id."),
                _query(
                    "booking",
                    {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"},
                    "Booking id.",
                ),
                _query("since", _DAY, "Created at or after (a date: from its start)."),
                _query("until", _DAY, "Created before (a date: to its end)."),
                _LIMIT,
                _CURSOR,
                _OFFSET,
            ],
            m.ExecutionList,
            422,
        ),
        "/api/executions/{execution_id}": _get(
            "One execution with its steps as a DAG", [_EID], m.ExecutionDetail, 404
        ),
        "/api/executions/{execution_id}/steps/{step}/logs": _get(
            "A step's log lines (all attempts or one)",
            [
                _EID,
                _STEP,
                _query("attempt", {"type": "integer", "minimum": 0}, "Only this attempt."),
                _query("after", {"type": "integer", "minimum": 0}, "Lines after this log id."),
                _query("limit", {"type": "integer", "minimum": 1, "maximum": 2000}, "Lines."),
            ],
            m.StepLogs,
            404,
            422,
        ),
        "/api/attention": _get(
            "What needs a person: sessions to review (with the reason), session warnings "
            "(clips left out), card warnings (pulled early, failed files, nearly full, clock, "
            "skipped files); actions first",
            [
                _query(
                    "limit",
                    {"type": "integer", "minimum": 1, "maximum": 200},
                    "At most this many sessions to review, and as many session warnings.",
                )
            ],
            m.Attention,
            422,
        ),
        "/api/cards": _get(
            "Cards, last seen first, with whether each is safe to remove",
            [_LIMIT, _OFFSET],
            m.CardList,
            422,
        ),
        "/api/cards/{card_id}": _get(
            "One card: counts, safe to remove, nearly full, skipped files, clock",
            [_CARD],
            m.Card,
            404,
        ),
        "/api/cards/{card_id}/files": _get(
            "Files listed from a card", [_CARD, _LIMIT, _OFFSET], m.FileList, 404, 422
        ),
        "/api/sessions": _get(
            "Jump sessions (incl. unassigned and needs_review)",
            [
                _query("status", {"type": "string", "enum": _SESSION_STATUS}, "Session status."),
                _query("card", {"type": "string", "minLength": 1, "maxLength": 128}, "Card id."),
                _Q,
                _LIMIT,
                _OFFSET,
            ],
            m.SessionList,
            422,
        ),
        "/api/sessions/{key}": _get(
            "One session with its footage and its automatic edit (marks, EDL, timeline)",
            [_KEY],
            m.SessionDetail,
            404,
        ),
        # issue 17: the review form's booking lookup
        "/api/bookings/recent": _get(
            "Bookings jumps carry, most recently seen first, with their passenger",
            [_Q, _query("limit", {"type": "integer", "minimum": 1, "maximum": 50}, "Bookings.")],
            am.RecentBookings,
            422,
        ),
        "/api/detectors": _get("Detectors: online, last seen, copies", [], m.DetectorList),
        "/api/counters": _get("Counters and render queue depth", [], m.Counters),
        "/api/dead-letters": _get(
            "Dead-lettered messages, newest first", [_LIMIT, _CURSOR], m.DeadLetterList, 422
        ),
        "/api/executions/{execution_id}/retry": _post(
            "Retry every failed step of an execution (and, with force, its running ones)",
            [_EID, _FORCE],
            am.RetryResult,
            None,
        ),
        "/api/executions/{execution_id}/steps/{step}/retry": _post(
            "Retry one failed step, or a running one whose worker is gone (any with force)",
            [_EID, _STEP, _FORCE],
            am.RetryResult,
            None,
        ),
        "/api/executions/{execution_id}/cancel": _post(
            "Cancel an execution's unfinished steps", [_EID], am.CancelResult, None
        ),
        "/api/executions/{execution_id}/resume": _post(
            "Resume a cancelled execution: its cancelled steps run again, nothing that succeeded",
            [_EID],
            am.RetryResult,
            None,
        ),
        "/api/detectors/{detector_id}/revoke": _post(
            "Revoke a detector's token: new handshakes are refused and its live socket is closed "
            "(1008 'detector token revoked') on whichever hub replica holds it",
            [_DETECTOR],
            am.DetectorRevoked,
            None,
        ),
        "/api/sessions/{key}/assign": _post(
            "Assign a booking and passenger to a needs_review/unassigned session",
            [_KEY],
            am.AssignResult,
            am.AssignRequest,
            413,
            422,
        ),
        # issue 16, item 5
        "/api/bookings/{booking_id}/purge": _post(
            "Purge a booking: its videos, photos and share copies deleted, its name and email "
            "removed from every row, its links revoked; recorded (what, when, who)",
            [_BOOKING],
            am.PurgeResult,
            None,
        ),
        # issue 17: the dashboard login (streams/hub/login.py)
        "/api/login": {
            "get": {
                "summary": "Whether this browser is logged in, and whether reads are open anyway",
                "parameters": [],
                "responses": _responses(am.LoginState, "OK"),
            },
            "post": {
                "summary": "Log this browser in with the admin token: a session cookie for "
                "the dashboard (wrong tokens from one address are throttled)",
                "parameters": [],
                "security": [],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref(am.LoginRequest)}},
                },
                "responses": _throttled(
                    _responses(am.LoginResult, "Logged in", 401, 413, 422, 429)
                ),
            },
        },
        "/api/logout": {
            "post": {
                "summary": "Log this browser out (clears the session cookie)",
                "parameters": [],
                "responses": _responses(am.LoginState, "Logged out", 403),
            }
        },
        # issue 15, item 7
        "/api/sessions/{key}/edit": _accepted(
            "Set a jump's exit, opening and landing by hand (seconds on the recording); its "
            "phases step, render and publish run again (202)",
            [_KEY],
            am.EditResult,
            am.EditRequest,
        ),
    }


@functools.cache
def _document() -> str:
    _, top = models_json_schema(
        [(model, "serialization") for model in (*m.RESPONSE_MODELS, *am.LOGIN_MODELS)],
        ref_template="#/components/schemas/{model}",
    )
    doc = {
        "openapi": "3.1.0",
        "info": {
            "title": "skyreel status API",
            "version": "1",
            "description": "Cards, jumps, pipeline executions and their steps; operator actions. "
            'Errors are {"error": {"code", "message"}}. Live updates: /ws/status.',
        },
        "paths": _paths(),
        "components": {
            "schemas": top.get("$defs", {}),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
    return json.dumps(doc)


def openapi_document() -> JsonObj:
    """A fresh copy of the document (callers may modify it)."""
    loaded: JsonObj = json.loads(_document())
    return loaded
