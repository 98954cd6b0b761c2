"""The ``group`` step: a listing's files -> jump sessions -> one jump execution each.

The grouping itself is pure (agents/sessions.py); this module feeds it from the ledger, records
the sessions (upsert by key: a rerun records nothing twice) and starts their executions
(idempotent by key ``jump:<session>``). Files that already belong to a session (an earlier
insertion of the card) are left where they are.

:func:`reconcile_groups` is the reconciler's rule for groupings (agents/pipeline/reconcile.py):
a QR candidate imported but never decoded (no scan, no ``qr:`` step: its spawn was lost) gets
its ``probe``/``qr`` steps, and a ``group`` that ran before one of its files landed or was
decoded is run again — idempotently, since sessions are keyed and files already in a session
stay where they are.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncConnection

from agents.deliverables import deliverables_of
from agents.jobs import kinds
from agents.jobs.context import JobContext
from agents.jobs.kinds import jump_steps
from agents.pipeline import dag
from agents.pipeline import operations as ops
from agents.pipeline.dispatch import send_requests
from agents.pipeline.orchestrator import start_execution
from agents.qr.payload import Booking
from agents.sessions import (
    CardFile,
    ClockPolicy,
    FileKind,
    JumpSession,
    QrOutcome,
    closed_sessions,
    group_card,
)
from storage import cards, media
from storage import pipeline as repo
from streams.settings import Settings

logger = logging.getLogger(__name__)


@dataclass
class Started:
    summary: list[dict[str, object]] = field(default_factory=list)
    log: list[str] = field(default_factory=list)


def policy(settings: Settings) -> ClockPolicy:
    return ClockPolicy(
        gap=timedelta(minutes=settings.jump_gap_minutes),
        clock_jump_max=timedelta(days=settings.clock_jump_days),
    )


def _times(r: media.FileRow) -> tuple[datetime, datetime]:
    """(start, end) of a clip's recording: the container's creation_time is its start; the
    card's mtime is when the camera closed the file (FAT has no zone: taken as UTC, as GoPro
    writes creation_time in local time too)."""
    end = datetime.fromtimestamp(r.mtime_ms / 1000, UTC)
    if r.creation_time is not None:
        return r.creation_time, end
    if r.duration_s:
        return end - timedelta(seconds=r.duration_s), end
    return end, end


def card_files(
    rows: Sequence[media.FileRow], qr: dict[int, media.QrRow], *, settled: bool = True
) -> list[CardFile]:
    """Ledger rows -> grouping input (proxies and files already in a session left out).

    ``settled``: every QR candidate's probe and decode have finished, so a candidate without a
    scan is one the decoder failed on (it may have been a ticket: unreadable). Not settled (a
    partial grouping, issue 18): a candidate without a scan, or not probed yet, has no result
    yet (``qr_status`` None), whatever its probe said so far.
    """
    out: list[CardFile] = []
    for r in rows:
        if r.kind == FileKind.PROXY or r.session_key is not None:
            continue
        scan = qr.get(r.id)
        kind = FileKind.QR_CANDIDATE if r.kind == FileKind.QR_CANDIDATE else FileKind.FOOTAGE
        if kind is FileKind.QR_CANDIDATE and not settled and (scan is None or not _probed(r)):
            start, end = _times(r)
            out.append(
                CardFile(str(r.id), r.name, r.path, start, kind, end_time=end, duration_s=None)
            )
            continue
        status = QrOutcome(scan.status) if scan and scan.status in set(QrOutcome) else None
        if kind is FileKind.QR_CANDIDATE and scan is not None and status in (None, QrOutcome.ERROR):
            status = QrOutcome.NO_QR  # the decoder gave up with an error: ordinary footage
        unreadable = r.probe_error
        if kind is FileKind.QR_CANDIDATE and scan is None and settled and not unreadable:
            unreadable = "the QR decoder failed on it"
        booking = (
            Booking(scan.booking_id, scan.passenger, scan.product, scan.email, scan.email_warning)
            if scan and scan.booking_id
            else None
        )
        start, end = _times(r)
        out.append(
            CardFile(
                str(r.id),
                r.name,
                r.path,
                start,
                kind,
                status,
                booking,
                end_time=end,
                duration_s=r.duration_s,
                unreadable=unreadable if kind is FileKind.QR_CANDIDATE else "",
            )
        )
    return out


def _probed(r: media.FileRow) -> bool:
    """Whether the clip's probe has finished (read, or failed with a reason)."""
    return bool(r.probe_error) or r.duration_s is not None or r.creation_time is not None


def session_row(card_id: str, s: JumpSession) -> media.SessionRow:
    b = s.booking
    status = "decoded" if b is not None and str(s.status) == "decoded" else str(s.status)
    return media.SessionRow(
        key=s.key,
        card_id=card_id,
        status=status,
        booking_id=b.booking_id if b else None,
        passenger=b.passenger if b else None,
        product=b.product if b else None,
        email=b.email if b else None,
        qr_file_id=int(s.qr_file_id) if s.qr_file_id else None,
        file_ids=tuple(int(i) for i in s.footage_file_ids),
        execution_id=None,
        # claimed with the footage: every take of the ticket, and clips that could not be read
        qr_file_ids=tuple(int(i) for i in (*s.qr_file_ids, *s.unreadable_file_ids)),
        # a ticket's email that could not be used (issue 16) is one more warning on the session
        warnings=(*s.warnings, *([b.email_warning] if b and b.email_warning else [])),
        review_reason=s.review_reason,
        capture_start=s.capture_start,
    )


async def group_and_start(
    jc: JobContext, card_id: str, file_ids: Sequence[int], *, partial: bool = False
) -> Started:
    """Group the listing's files not in a session yet, record the sessions, start their jumps.

    ``partial`` (a `group:<file>` step, issue 18): only the sessions no QR clip still being read
    can change (`agents/sessions.py:closed_sessions`); the rest waits for a later grouping. The
    groupings of a card are serialized (one transaction holds the card's lock from reading the
    ledger to claiming the files), so side-by-side partial groupings each see what the others
    claimed and never split a span between them."""
    out = Started()
    async with jc.engine.begin() as conn:
        await media.lock_card_grouping(conn, card_id)
        rows = await media.load_files(conn, file_ids)
        qr = await media.load_qr(conn, [r.id for r in rows if r.kind == FileKind.QR_CANDIDATE])
        files = card_files(rows, qr, settled=not partial)
        group = closed_sessions if partial else group_card
        grouping = group(files, policy=policy(jc.settings))
        if grouping.clock_warnings:
            warning = "; ".join(grouping.clock_warnings[:3])
            if len(grouping.clock_warnings) > 3:
                warning += f" (and {len(grouping.clock_warnings) - 3} more)"
            await cards.set_clock_warning(conn, card_id, warning)
            out.log.append(warning)
            logger.warning("card %s: %s", card_id, warning)
        rows_now = [session_row(card_id, s) for s in grouping.sessions]
        for row in rows_now:
            await media.upsert_session(conn, row)
        # recorded by a grouping that stopped before it started them (the worker died)
        keys = {row.key for row in rows_now}
        for key in await media.unstarted_sessions(conn, card_id, file_ids):
            left = await media.load_session(conn, key)
            if key not in keys and left is not None:
                rows_now.append(left)
                out.log.append(f"session {key}: recorded earlier but never started; starting it")
    if partial:
        grouped = {i for s in grouping.sessions for i in s.file_ids}
        waiting = sum(1 for f in files if f.file_id not in grouped)
        out.log.append(
            f"{len(grouping.sessions)} session(s) closed and started now; {waiting} file(s) wait "
            "for QR clips still being read"
        )
    for row in rows_now:
        await _start_jump(jc, card_id, row, out)
    return out


async def _start_jump(jc: JobContext, card_id: str, row: media.SessionRow, out: Started) -> None:
    """Start a recorded session's jump execution (idempotent: keyed ``jump:<session>``)."""
    key = row.key
    for w in row.warnings:
        out.log.append(f"session {key}: {w}")
    if row.review_reason:
        out.log.append(f"session {key} needs a person: {row.review_reason}")
    if not row.file_ids:
        out.log.append(f"session {key}: QR clip without footage, nothing to render")
        out.summary.append({"key": key, "status": row.status, "footage": 0})
        return
    # what the booking bought decides the steps (issue 16); a product not understood is
    # delivered as read (or as the default) with a warning on the session, never guessed
    # silently. Assigning by hand carries no product: the one known now is final.
    bought = deliverables_of(row.product, jc.settings.default_product)
    if bought.warning:
        async with jc.engine.begin() as conn:
            if await media.add_session_warning(conn, key, bought.warning):
                logger.warning("session %s: %s", key, bought.warning)
        out.log.append(f"session {key}: {bought.warning}")
    eid = await start_execution(
        jc.engine,
        jc.emitter,
        jc.registry,
        key=f"jump:{key}",
        pipeline="jump",
        subject_type="session",
        subject_id=key,
        steps=jump_steps(
            key,
            row.file_ids,
            edit=jc.settings.edit_jumps,
            deliverables=bought.deliverables,
            deliver=True,
        ),
        context={
            "card_id": card_id,
            "booking_id": row.booking_id,
            "passenger": row.passenger,
            "status": row.status,
            "deliverables": sorted(str(d) for d in bought.deliverables),
        },
    )
    async with jc.engine.begin() as conn:
        await media.set_session_execution(conn, key, eid)
    out.summary.append(
        {
            "key": key,
            "status": row.status,
            "booking_id": row.booking_id,
            "footage": len(row.file_ids),
            "execution_id": eid,
            "review_reason": row.review_reason,
            "warnings": list(row.warnings),
        }
    )
    out.log.append(
        f"session {key} ({row.status}, {row.booking_id or 'no booking'}): "
        f"{len(row.file_ids)} footage file(s) -> execution {eid}"
    )
    logger.info("card %s: session %s (%s) -> jump execution %d", card_id, key, row.status, eid)


async def reconcile_groups(jc: JobContext) -> int:
    """Re-drive undecoded QR candidates and redo groupings whose inputs changed; returns how
    many executions were moved."""
    async with jc.engine.connect() as conn:
        undecoded = await media.undecoded_candidates(conn)
        stale = await media.stale_groups(conn)
    moved = 0
    by_execution: dict[int, list[int]] = {}
    for eid, file_id in undecoded:
        by_execution.setdefault(eid, []).append(file_id)
    for eid in sorted(set(by_execution) | set(stale)):
        try:
            async with jc.engine.begin() as conn:
                ready = await _regroup(jc, conn, eid, by_execution.get(eid, []))
        except repo.StaleWrite:
            continue  # changed meanwhile: next pass
        await send_requests(jc.emitter, ready, None)
        moved += 1
    return moved


async def _regroup(
    jc: JobContext, conn: AsyncConnection, eid: int, files: list[int]
) -> list[repo.Saved]:
    await repo.lock_execution(conn, eid)
    steps = await ops.load_states(conn, eid)
    group = steps.get("group")
    if group is None or group.status not in (*dag.DONE, dag.StepStatus.PENDING):
        return []  # running or about to: its next run reads the ledger anyway
    why = (
        f"QR clip(s) {', '.join(map(str, files))} were never decoded"
        if files
        else "a file of the listing landed or was decoded after the grouping"
    )
    if group.done:
        await repo.save_changes(
            conn, eid, [repo.Change(group, dag.redo(group), log=f"grouped again: {why}")]
        )
    new: list[dag.StepState] = []
    inputs: dict[str, dict[str, object]] = {}
    for file_id in files:
        for d in kinds.after_copy(file_id, True):
            name = str(d["name"])
            if name in steps:
                continue
            state = jc.registry.new_step(name, str(d["kind"]))
            new.append(dataclasses.replace(state, spawned_by=f"copy:{file_id}"))
            value = d.get("input")
            inputs[name] = dict(value) if isinstance(value, dict) else {}
    await repo.add_steps(conn, eid, new, inputs)
    ready = await ops.promote_all(conn, eid)
    await ops.refresh_execution_status(conn, eid)
    logger.warning("import execution %d: %s; grouping again", eid, why)
    return ready
