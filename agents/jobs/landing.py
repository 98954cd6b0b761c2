"""When a copy lands (or fails), finish the ``copy:<file>`` steps that wait for it.

Ingest calls :func:`copy_landed` after it recorded a copy result. A RUNNING (waiting) copy step
gets its result for its current attempt; a FAILED one (the card was pulled earlier) is retried,
and its handler then finds the file imported. A READY step needs nothing: its handler will see
the file's status when it runs. Both ways are idempotent, so a redelivered result is harmless.
"""

from __future__ import annotations

import logging

from sqlalchemy import text

from agents.jobs.context import JobContext
from agents.jobs.kinds import after_copy
from agents.pipeline import orchestrator
from streams import records

logger = logging.getLogger(__name__)


async def copy_landed(ctx: JobContext, file_id: int, *, imported: bool, reason: str = "") -> None:
    name = f"copy:{file_id}"
    async with ctx.engine.connect() as conn:
        rows = (
            await conn.execute(
                text(
                    "SELECT execution_id, attempt, status, input FROM pipeline_step "
                    "WHERE name = :n AND status IN ('running', 'failed')"
                ),
                {"n": name},
            )
        ).all()
        stored = await conn.scalar(
            text("SELECT stored_path FROM imported_file WHERE id = :id"), {"id": file_id}
        )
    for execution_id, attempt, status, step_input in rows:
        if status == "failed":
            if imported:
                await orchestrator.retry(
                    ctx.engine,
                    ctx.emitter,
                    int(execution_id),
                    step=name,
                    actor="system:copy-landed",
                )
            continue
        qr = bool((step_input or {}).get("qr"))
        if imported:
            result = records.StepResult(
                execution_id=int(execution_id),
                step=name,
                attempt=int(attempt),
                status="succeeded",
                output={"file_id": file_id, "stored_path": stored},
                worker="ingest",
                spawn=after_copy(file_id, qr),
            )
        else:
            result = records.StepResult(
                execution_id=int(execution_id),
                step=name,
                attempt=int(attempt),
                status="failed",
                error=f"copy failed: {reason}"[:4000],
                retryable=False,
                worker="ingest",
            )
        await ctx.send_result(str(execution_id).encode(), records.encode(result))
    if rows:
        logger.info(
            "file %d %s: %d copy step(s) told",
            file_id,
            "landed" if imported else "failed",
            len(rows),
        )
