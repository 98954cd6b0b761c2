"""Ingest: turn detector file lists into copy requests, and copy results into the ledger.

``detector-events`` (key card id) -> diff against ``imported_file`` (one query) -> copy requests
(QR candidates first) on ``copy-requests`` (key detector id). ``copy-results`` -> the file is
``imported`` only once the detector verified size and hash and the file is really at the
destination we named with the expected size; otherwise ``failed`` with the reason — except a
copy that found the share full (failure kind ``no_space``): a full disk is a state, not a
failure, so the file stays requested with the reason "waiting for space: ..." (counted in
``copies_waiting_space``), the copy steps waiting for it go on waiting, and it is copied again:
by the detector's own retries, when the hub re-sends pending requests, or by the reconciler.

Handlers are idempotent: a redelivered list inserts nothing twice and asks again only for what is
still missing; a redelivered result changes nothing.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncEngine

from agents.guard import PermanentError
from detector.protocol import FileEntry, check_relative_path, split_reason
from storage import imports
from storage.enums import CopyStatus, FileStatus
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
    listed = imports.classify_listing(
        ((e.path, e.size, e.mtime, e.kind) for e in entries),
        deps.settings.qr_candidate_max_bytes,
    )
    async with deps.engine.begin() as conn:
        rows = await imports.record_listing(conn, event.card_id, event.detector_id, listed)
        plan = imports.plan_copies(event.card_id, rows)
        await imports.mark_requested(conn, event.detector_id, [p.file_id for p in plan])
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


async def handle_copy_result(deps: IngestDeps, payload: bytes) -> imports.CopyOutcome:
    import asyncio

    try:
        result = records.decode(records.CopyResult, payload)
    except Exception as exc:
        raise PermanentError(f"undecodable copy result: {exc}") from None
    async with deps.engine.begin() as conn:
        row = await imports.load_file(conn, result.file_id)
        if row is None:
            logger.warning("copy result for unknown file %s ignored", result.file_id)
            return imports.CopyOutcome(result.file_id, "ignored", "unknown file")
        if row["status"] == "imported":
            # A redelivered result (the worker may have died before telling the waiting copy
            # steps): tell them again; they ignore what they already know.
            duplicate = imports.CopyOutcome(
                result.file_id, "imported", stored_path=str(row["stored_path"] or "")
            )
        else:
            duplicate = None
    if duplicate is not None:
        if deps.on_copy_outcome is not None:
            await deps.on_copy_outcome(duplicate)
        return duplicate
    if result.status != CopyStatus.COPIED:
        kind, detail = split_reason(result.reason)  # an older hub's "[kind] " prefix
        if (result.failure or kind) == "no_space":
            return await _waiting_for_space(deps, result.file_id, detail)
    async with deps.engine.begin() as conn:
        expected = imports.destination_for(str(row["card_id"]), result.file_id, str(row["name"]))
        reason = ""
        if result.status != CopyStatus.COPIED:
            reason = split_reason(result.reason)[1] or "copy failed (no reason given)"
        elif result.destination != expected:
            reason = f"detector wrote {result.destination!r}, expected {expected!r}"
        elif result.size != row["size"]:
            reason = f"size {result.size} reported, {row['size']} listed"
        elif not result.hash:
            reason = "copy reported without a content hash"
        else:
            check_relative_path(expected)
            on_disk = await asyncio.to_thread(_stat_size, deps.settings.share_root / expected)
            if on_disk != row["size"]:
                reason = f"file at the share has size {on_disk}, expected {row['size']}"
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
    if deps.on_copy_outcome is not None:
        await deps.on_copy_outcome(outcome)
    return outcome
