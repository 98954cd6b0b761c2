"""A local run's progress, for `skyreel run`'s console line (streams/stack/demo.py)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection


@dataclass(frozen=True)
class RunProgress:
    files_listed: int
    files_imported: int
    jumps_total: int
    jumps_rendered: int
    jumps_waiting: int
    rendering: float  # mean progress of running renders, 0..1
    outputs: tuple[str, ...]


async def run_progress(conn: AsyncConnection) -> RunProgress:
    """Files imported, jumps rendered or waiting, render progress and published videos."""
    f = (
        await conn.execute(
            text(
                "SELECT count(*) FILTER (WHERE kind <> 'proxy') AS listed, "
                "count(*) FILTER (WHERE status = 'imported') AS imported FROM imported_file"
            )
        )
    ).one()
    j = (
        await conn.execute(
            text(
                "SELECT count(*) AS total, count(*) FILTER (WHERE status = 'succeeded') AS done, "
                "count(*) FILTER (WHERE status = 'waiting') AS waiting "
                "FROM pipeline_execution WHERE pipeline = 'jump'"
            )
        )
    ).one()
    r = await conn.scalar(
        text(
            "SELECT avg(coalesce(progress, 0)) FROM pipeline_step "
            "WHERE name = 'render' AND status = 'running'"
        )
    )
    outs = await conn.execute(
        text(
            "SELECT output->>'video' AS video FROM pipeline_step "
            "WHERE name = 'publish' AND status = 'succeeded' ORDER BY finished_at"
        )
    )
    return RunProgress(
        int(f.listed),
        int(f.imported),
        int(j.total),
        int(j.done),
        int(j.waiting),
        float(r or 0.0),
        tuple(str(o.video) for o in outs),
    )
