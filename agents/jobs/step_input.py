"""What the real pipelines' step handlers share: validated step input and the file it names."""

from __future__ import annotations

from pathlib import Path

from agents.jobs.context import JobContext
from agents.pipeline.errors import PermanentStepError, RetryableStepError
from storage import media
from storage.enums import FileStatus
from streams import records


def int_input(request: records.StepRequest, key: str) -> int:
    value = (request.input or {}).get(key)
    if not isinstance(value, int) or isinstance(value, bool):
        raise PermanentStepError(f"step input {key!r} must be an integer, got {value!r}")
    return value


def str_input(request: records.StepRequest, key: str) -> str:
    value = (request.input or {}).get(key)
    if not isinstance(value, str) or not value:
        raise PermanentStepError(f"step input {key!r} must be a non-empty string")
    return value


async def ledger_file(jc: JobContext, file_id: int) -> media.FileRow:
    async with jc.engine.connect() as conn:
        rows = await media.load_files(conn, [file_id])
    if not rows:
        raise PermanentStepError(f"file {file_id} is not in the ledger")
    return rows[0]


def stored(jc: JobContext, row: media.FileRow) -> Path:
    if row.status != FileStatus.IMPORTED or not row.stored_path:
        raise RetryableStepError(f"file {row.id} is not imported yet ({row.status})")
    return jc.settings.share_root / row.stored_path
