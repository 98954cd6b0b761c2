"""Start the card-import execution for a listing that brought files to copy."""

from __future__ import annotations

from agents.jobs.context import JobContext
from agents.jobs.kinds import card_import_steps
from agents.pipeline.orchestrator import start_execution
from storage import imports
from storage.enums import FileKind
from streams import records


async def start_card_import(
    jc: JobContext,
    event: records.DetectorEvent,
    rows: list[imports.DiffRow],
    plan: list[imports.PlannedCopy],
) -> int:
    """One execution per listing (key: the hub's event id, so a redelivery starts nothing)."""
    qr_ids = [p.file_id for p in plan if p.priority == imports.QR_PRIORITY]
    listed = [r.file_id for r in rows if r.kind != FileKind.PROXY]
    return await start_execution(
        jc.engine,
        jc.emitter,
        jc.registry,
        key=f"import:{event.card_id}:{event.event_id}",
        pipeline="card_import",
        subject_type="card",
        subject_id=event.card_id,
        steps=card_import_steps(event.card_id, qr_ids, listed),
        context={
            "detector_id": event.detector_id,
            "listed": len(listed),
            "requested": len(plan),
            "qr_candidates": len(qr_ids),
        },
    )
