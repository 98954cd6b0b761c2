"""Read query behind the session detail's `edit` (streams/hub/api.py): the `phases` step of a
session's execution, whatever its status, with its stored output (the `EditRecord`,
agents/jobs/edit_record.py). One indexed lookup (`uq_step_execution_name` leads with
execution_id). Rows come back as plain dicts; streams/hub/api_edit_models.py validates them.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncConnection

from storage.status import Row, one_row

#: The step kind whose output is the automatic edit (agents/jobs/kinds.py PHASES).
PHASES_KIND = "phases"


async def phases_step(conn: AsyncConnection, execution_id: int) -> Row | None:
    """The execution's `phases` step (the newest, should there be several) with its status,
    error and output; None when the execution has none (an edit was not asked for)."""
    return await one_row(
        conn,
        "SELECT name, status, error, output FROM pipeline_step "
        "WHERE execution_id = :e AND kind = :k ORDER BY id DESC LIMIT 1",
        {"e": execution_id, "k": PHASES_KIND},
    )
