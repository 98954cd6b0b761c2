"""Forgetting a booking's personal data in the rows (issue 16, item 5): every form of its name
and email replaced in the text/jsonb columns of the rows tied to it, the decoded ticket dropped.

Which rows: those of tables with a ``booking_id`` column (that booking's), and in the tables
without one the rows of its jump executions, of its cards' card-import executions (only the
needles: they hold other bookings too), the operator commands about it, and the dead letters
(all rows: a raw message has no booking column). Identity columns (keys, states, kinds) are never
rewritten. Emails are read from any table with a ``booking_id`` and an ``*email*`` column.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection


async def _columns(conn: AsyncConnection) -> dict[str, list[tuple[str, str]]]:
    """table -> [(column, data type)] of the text/jsonb columns of the public schema."""
    rows = await conn.execute(
        text(
            "SELECT table_name, column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = current_schema() AND data_type IN "
            "('text', 'character varying', 'jsonb', 'json') ORDER BY table_name, ordinal_position"
        )
    )
    out: dict[str, list[tuple[str, str]]] = {}
    for table, column, kind in rows:
        out.setdefault(str(table), []).append((str(column), str(kind)))
    return out


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


async def booking_emails(conn: AsyncConnection, booking_id: str) -> list[str]:
    """Emails of the booking, from any table that has a ``booking_id`` and an ``*email*`` column
    (the delivery table of the email helper, when there is one)."""
    found: set[str] = set()
    for table, cols in (await _columns(conn)).items():
        names = {c for c, _ in cols}
        if "booking_id" not in names or table == "purge_record":
            continue
        for col in sorted(c for c in names if "email" in c):
            rows = await conn.execute(
                text(
                    f"SELECT DISTINCT CAST({_ident(col)} AS text) FROM {_ident(table)} "
                    "WHERE booking_id = :b"
                ),
                {"b": booking_id},
            )
            found |= {str(r[0]).strip() for r in rows if r[0] and "@" in str(r[0])}
    return sorted(found)


@dataclass(frozen=True)
class Scope:
    """The rows tied to a booking, beyond those carrying its ``booking_id``."""

    booking_id: str
    keys: list[str]
    eids: list[int]  # its jump executions
    cards: list[str]  # their cards: the card-import executions name its tickets too


#: (table, where): the rows of a booking in the tables without a booking_id column.
_SCOPED: tuple[tuple[str, str], ...] = (
    (
        "pipeline_execution",
        "id = ANY(:e) OR (subject_type = 'card' AND subject_id = ANY(:c))",
    ),
    (
        "pipeline_step",
        "execution_id = ANY(:e) OR execution_id IN (SELECT id FROM pipeline_execution "
        "WHERE subject_type = 'card' AND subject_id = ANY(:c))",
    ),
    (
        "pipeline_step_attempt",
        "step_id IN (SELECT id FROM pipeline_step WHERE execution_id = ANY(:e) OR execution_id IN "
        "(SELECT id FROM pipeline_execution WHERE subject_type = 'card' AND subject_id = ANY(:c)))",
    ),
    (
        "pipeline_step_log",
        "step_id IN (SELECT id FROM pipeline_step WHERE execution_id = ANY(:e) OR execution_id IN "
        "(SELECT id FROM pipeline_execution WHERE subject_type = 'card' AND subject_id = ANY(:c)))",
    ),
    (
        "operator_command",
        "command ->> 'booking_id' = :b OR command ->> 'session_key' = ANY(:k) "
        "OR command ->> 'execution_id' = ANY(:es)",
    ),
    # a dead letter is a raw message: which booking it was about is not a column (all rows)
    ("dead_letter", "true"),
)


#: Columns that are identities (keys, states, kinds), never free text: never rewritten.
_IDENTITY = frozenset(
    {
        "booking_id",
        "key",
        "card_id",
        "session_key",
        "subject_id",
        "subject_type",
        "status",
        "kind",
        "name",
        "command_id",
        "action",
        "topic",
        "pipeline",
        "reason_kind",
    }
)


def _json_escaped(needle: str) -> str:
    """How `needle` appears inside a JSON string in jsonb's text form."""
    return json.dumps(needle, ensure_ascii=False)[1:-1]


async def _replace(
    conn: AsyncConnection,
    table: str,
    cols: Sequence[tuple[str, str]],
    where: str,
    params: dict[str, object],
    needles: Sequence[tuple[str, str]],
) -> int:
    """Replace each needle in the text/jsonb columns of the rows of ``table`` under ``where``;
    returns how many (row, column, needle) changes were made."""
    changed = 0
    for col, kind in cols:
        c = _ident(col)
        for needle, by in needles:
            if kind in ("jsonb", "json"):
                sql = (
                    f"UPDATE {_ident(table)} SET {c} = CAST(replace(CAST({c} AS text), :n, :r) "
                    f"AS {kind}) WHERE ({where}) AND strpos(CAST({c} AS text), :n) > 0"
                )
                value = _json_escaped(needle)
            else:
                sql = (
                    f"UPDATE {_ident(table)} SET {c} = replace({c}, :n, :r) "
                    f"WHERE ({where}) AND strpos({c}, :n) > 0"
                )
                value = needle
            result = await conn.execute(text(sql), {**params, "n": value, "r": by})
            changed += int(result.rowcount or 0)
    return changed


async def anonymise(
    conn: AsyncConnection, scope: Scope, needles: Sequence[tuple[str, str]], redacted: str
) -> dict[str, int]:
    """Replace every (needle, replacement) in the booking's rows of every table; the decoded
    ticket text and its name are dropped outright. Returns changes per table."""
    counts: dict[str, int] = {}
    params: dict[str, object] = {
        "b": scope.booking_id,
        "k": scope.keys,
        "e": scope.eids,
        "c": scope.cards,
        "es": [str(e) for e in scope.eids],
    }
    qr = await conn.execute(
        text(
            "UPDATE qr_scan SET payload = CASE WHEN payload IS NULL THEN NULL ELSE :r END, "
            "passenger = NULL WHERE (booking_id = :b OR file_id IN "
            "(SELECT qr_file_id FROM jump_session WHERE key = ANY(:k))) "
            "AND (passenger IS NOT NULL OR (payload IS NOT NULL AND payload <> :r))"
        ),
        {**params, "r": redacted},
    )
    if qr.rowcount:
        counts["qr_scan"] = int(qr.rowcount)
    columns = await _columns(conn)
    ordered = sorted(needles, key=lambda n: -len(n[0]))  # a full name before its parts
    for table, cols in columns.items():
        if table in ("purge_record", "alembic_version"):
            continue
        own = [c for c in cols if c[0] not in _IDENTITY]
        if any(c == "booking_id" for c, _ in cols):
            n = await _replace(conn, table, own, "booking_id = :b", params, ordered)
        else:
            where = dict(_SCOPED).get(table)
            if where is None:
                continue
            n = await _replace(conn, table, own, where, params, ordered)
        if n:
            counts[table] = counts.get(table, 0) + n
    return counts
