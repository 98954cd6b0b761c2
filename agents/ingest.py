"""Ingest: turn detector file lists into copy requests, and copy results into the ledger.

``detector-events`` (key card id) -> diff against ``imported_file`` (one query) -> copy requests
(QR candidates first: a clip whose listed duration is at most ``qr_candidate_max_s``; one of
unknown duration by ``qr_candidate_max_bytes``; a long clip never) on ``copy-requests`` (key
detector id). ``copy-results`` -> the file is
``imported`` only once the detector verified size and hash and the file is really at the
destination we named with the expected size; otherwise ``failed`` with the reason — except a
copy that found the share full (failure kind ``no_space``): a full disk is a state, not a
failure, so the file stays requested with the reason "waiting for space: ..." (counted in
``copies_waiting_space``), the copy steps waiting for it go on waiting, and it is copied again:
by the detector's own retries, when the hub re-sends pending requests, or by the reconciler.

Handlers are idempotent: a redelivered list inserts nothing twice and asks again only for what is
still missing; a redelivered result changes nothing.

Copy authority (red-team D6/D7): a result counts only from the detector its file was asked of,
while the file is requested or copying. Any other (another station's, one for a proxy that is
``ignored``, one for a file never asked for) is refused: logged, counted in
``copy_results_refused``, and the file is left exactly as it was — a forged result never marks
a file failed. The hub refuses these already; the worker checks again because a record on the
topic could come from anywhere. A file whose card moved to another station is asked of that
station only when it lists the file: those requests move with it (logged here).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncEngine

from agents.guard import PermanentError
from detector.protocol import FileEntry, check_relative_path, split_reason
from storage import imports
from storage.enums import PENDING_FILE_STATUSES, CopyStatus, FileStatus
from streams import records
from streams.kafka import Send
from streams.settings import Settings

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class IngestDeps:
    settings: Settings
    engine: AsyncEngine
    send_copy_request: Send
    # the card-import pipeline: (event, diff rows, planned copies), after the requests went out
    on_listing: (
        Callable[
            [records.DetectorEvent, list[imports.DiffRow], list[imports.PlannedCopy]],
            Awaitable[None],
        ]
        | None
    ) = None
    # copy steps waiting for this file: after every recorded (not ignored) copy result
    on_copy_outcome: Callable[[imports.CopyOutcome], Awaitable[None]] | None = None


def decode_event(payload: bytes) -> records.DetectorEvent:
    try:
        event = records.decode(records.DetectorEvent, payload)
    except Exception as exc:
        raise PermanentError(f"undecodable detector event: {exc}") from None
    if event.event not in ("card_inserted", "file_list", "card_removed"):
        raise PermanentError(f"unknown detector event {event.event!r}")
    return event


def validated_entries(event: records.DetectorEvent, limit: int) -> list[FileEntry]:
    """The list's entries that are valid; an invalid one (the hub refuses those, so this is a
    record from elsewhere) is logged and left out, never recorded."""
    files = event.files or []
    if len(files) > limit:
        raise PermanentError(f"file list of {len(files)} entries exceeds {limit}")
    entries: list[FileEntry] = []
    for i, f in enumerate(files):
        try:
            entries.append(FileEntry.model_validate(f))
        except ValidationError as exc:
            logger.warning(
                "card %s from detector %s: entry %d left out: %s",
                event.card_id,
                event.detector_id,
                i,
                exc.errors()[0]["msg"],
            )
    return entries


async def handle_detector_event(deps: IngestDeps, payload: bytes) -> None:
    event = decode_event(payload)
    if event.event != "file_list":
        _log_card(event)
        return
    entries = validated_entries(event, deps.settings.max_files_per_list)
    # QR candidates by duration (issue 18): a ticket clip is short; size only when unknown
    listed = imports.classify_listing(
        ((e.path, e.size, e.mtime, e.kind) for e in entries),
        deps.settings.qr_candidate_max_bytes,
        qr_candidate_max_s=deps.settings.qr_candidate_max_s,
        durations={e.path: e.duration for e in entries if e.duration is not None},
    )
    async with deps.engine.begin() as conn:
        rows = await imports.record_listing(conn, event.card_id, event.detector_id, listed)
        plan = imports.plan_copies(event.card_id, rows)
        moved = await imports.mark_requested(conn, event.detector_id, [p.file_id for p in plan])
    for previous, n in sorted(moved.items()):
        logger.warning(
            "card %s: %d copies asked of detector %s now asked of detector %s, which lists them",
            event.card_id,
            n,
            previous,
            event.detector_id,
        )
    new = sum(r.inserted for r in rows)
    logger.info(
        "card %s from detector %s: %d listed, %d new, %d already imported, %d requested",
        event.card_id,
        event.detector_id,
        len(rows),
        new,
        sum(r.status == FileStatus.IMPORTED for r in rows),
        len(plan),
    )
    key = event.detector_id.encode()
    for p in plan:
        request = records.CopyRequest.for_file(event.detector_id, event.card_id, p)
        await deps.send_copy_request(key, records.encode(request))
    if plan and deps.on_listing is not None:
        await deps.on_listing(event, rows, plan)


def _log_card(event: records.DetectorEvent) -> None:
    # The hub writes the card row (one writer: presence, label, space, skipped names).
    logger.info(
        "card %s %s at detector %s",
        event.card_id,
        "inserted" if event.event == "card_inserted" else "removed",
        event.detector_id,
    )


def _stat_size(path: Path) -> int | None:
    try:
        return os.stat(path).st_size
    except OSError:
        return None


async def _waiting_for_space(deps: IngestDeps, file_id: int, detail: str) -> imports.CopyOutcome:
    """Record a copy that found the share full as waiting (not failed); nobody is told of an
    outcome, because there is none yet."""
    async with deps.engine.begin() as conn:
        changed = await imports.record_waiting_for_space(conn, file_id, detail)
        if changed:
            await imports.bump_counter(conn, "copies_waiting_space")
    reason = f"{imports.WAITING_FOR_SPACE}: {detail}"
    if changed:
        logger.warning("file %s: the share is full; %s", file_id, reason)
    return imports.CopyOutcome(file_id, "waiting" if changed else "ignored", reason)


def result_refusal(row: Mapping[str, object], result: records.CopyResult) -> str:
    """Why a copy result does not count for this ledger row ('' when it does, or when it is a
    redelivery for a file already imported from that detector): pure."""
    asked_of = row["detector_id"]
    if asked_of != result.detector_id:
        return f"file {result.file_id} was asked of detector {asked_of}, not {result.detector_id}"
    status = str(row["status"])
    if status != FileStatus.IMPORTED and status not in PENDING_FILE_STATUSES:
        return f"file {result.file_id} is {status}, not requested"
    return ""


def _log_refused(result: records.CopyResult, why: str) -> imports.CopyOutcome:
    logger.warning(
        "copy result %s from detector %s refused: %s; the file is left as it was",
        result.request_id,
        result.detector_id,
        why,
    )
    return imports.CopyOutcome(result.file_id, "ignored", f"refused: {why}")


async def handle_copy_result(deps: IngestDeps, payload: bytes) -> imports.CopyOutcome:
    try:
        result = records.decode(records.CopyResult, payload)
    except Exception as exc:
        raise PermanentError(f"undecodable copy result: {exc}") from None
    async with deps.engine.begin() as conn:
        row = await imports.load_file(conn, result.file_id)
        if row is None:
            logger.warning("copy result for unknown file %s ignored", result.file_id)
            return imports.CopyOutcome(result.file_id, "ignored", "unknown file")
        refusal = result_refusal(row, result)
        if refusal:
            await imports.bump_counter(conn, "copy_results_refused")
    if refusal:
        return _log_refused(result, refusal)
    if row["status"] == FileStatus.IMPORTED:
        # A redelivered result (the worker may have died before telling the waiting copy
        # steps): tell them again; they ignore what they already know.
        duplicate = imports.CopyOutcome(
            result.file_id, "imported", stored_path=str(row["stored_path"] or "")
        )
        if deps.on_copy_outcome is not None:
            await deps.on_copy_outcome(duplicate)
        return duplicate
    if result.status != CopyStatus.COPIED:
        kind, detail = split_reason(result.reason)  # an older hub's "[kind] " prefix
        if (result.failure or kind) == "no_space":
            return await _waiting_for_space(deps, result.file_id, detail)
    outcome = await _record_outcome(deps, result)
    if outcome.status != "ignored" and deps.on_copy_outcome is not None:
        await deps.on_copy_outcome(outcome)
    return outcome


async def _record_outcome(deps: IngestDeps, result: records.CopyResult) -> imports.CopyOutcome:
    """Verify a copy and record it imported or failed, with the row locked and checked again
    (it may have been asked of another station since it was read)."""
    async with deps.engine.begin() as conn:
        row = await imports.load_file(conn, result.file_id, lock=True)
        refusal = "the file is gone" if row is None else result_refusal(row, result)
        if row is None or refusal:
            await imports.bump_counter(conn, "copy_results_refused")
            return _log_refused(result, refusal)
        if row["status"] == FileStatus.IMPORTED:  # by a redelivery of this result meanwhile
            return imports.CopyOutcome(
                result.file_id, "imported", stored_path=str(row["stored_path"] or "")
            )
        expected = imports.destination_for(str(row["card_id"]), result.file_id, str(row["name"]))
        reason = await _verify(deps, result, row, expected)
        if reason:
            await imports.record_failed(conn, result.file_id, reason)
            await imports.bump_counter(conn, "copies_failed")
            outcome = imports.CopyOutcome(result.file_id, "failed", reason)
        else:
            newly = await imports.record_imported(
                conn, result.file_id, expected, result.hash, result.hash_algo
            )
            if newly:
                await imports.bump_counter(conn, "files_imported")
            outcome = imports.CopyOutcome(
                result.file_id, "imported", stored_path=expected, newly_imported=newly
            )
    if reason:
        logger.warning("file %s copy failed: %s", result.file_id, reason)
    else:
        logger.info("file %s imported at %s (%s)", result.file_id, expected, result.hash_algo)
    return outcome


async def _verify(
    deps: IngestDeps, result: records.CopyResult, row: Mapping[str, object], expected: str
) -> str:
    """Why the copy does not count as imported ('' when it does): the detector's word is
    checked against the ledger and the file at the share."""
    if result.status != CopyStatus.COPIED:
        return split_reason(result.reason)[1] or "copy failed (no reason given)"
    if result.destination != expected:
        return f"detector wrote {result.destination!r}, expected {expected!r}"
    if result.size != row["size"]:
        return f"size {result.size} reported, {row['size']} listed"
    if not result.hash:
        return "copy reported without a content hash"
    check_relative_path(expected)
    on_disk = await asyncio.to_thread(_stat_size, deps.settings.share_root / expected)
    if on_disk != row["size"]:
        return f"file at the share has size {on_disk}, expected {row['size']}"
    return ""
