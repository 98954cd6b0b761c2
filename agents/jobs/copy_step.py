"""The `copy` step: wait for a file's verified copy, then spawn its probe (and QR decode)."""

from __future__ import annotations

from agents.jobs import kinds
from agents.jobs.context import JobContext
from agents.jobs.landing import request_again
from agents.jobs.step_input import int_input, ledger_file
from agents.pipeline.handlers import Handler, StepContext, StepOutput
from storage.enums import FileStatus
from streams import records

KIND = kinds.COPY


def handler(jc: JobContext) -> Handler:
    async def copy(ctx: StepContext, request: records.StepRequest) -> StepOutput:
        file_id = int_input(request, "file_id")
        qr = bool((request.input or {}).get("qr"))
        group = bool((request.input or {}).get("group"))
        row = await ledger_file(jc, file_id)
        if row.status == FileStatus.IMPORTED:
            return StepOutput(
                {"file_id": file_id, "stored_path": row.stored_path},
                spawn=kinds.after_copy(file_id, qr, group),
            )
        if row.status in (FileStatus.FAILED, FileStatus.LISTED) or request.attempt > 1:
            await request_again(jc, row)
            ctx.log(f"copy of {row.path} requested again from the detector")
        return StepOutput(waiting=f"waiting for the detector to copy {row.path} ({row.status})")

    return copy
