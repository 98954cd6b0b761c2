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
from agents.pipeline.orchestrator import send_requests, start_execution
from agents.qr.payload import Booking
from agents.sessions import CardFile, ClockPolicy, FileKind, JumpSession, QrOutcome, group_card
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
    scan is one the decoder failed on (it may have been a ticket: unreadable).
    """
    out: list[CardFile] = []
    for r in rows:
        if r.kind == FileKind.PROXY or r.session_key is not None:
            continue
        scan = qr.get(r.id)
        kind = FileKind.QR_CANDIDATE if r.kind == FileKind.QR_CANDIDATE else FileKind.FOOTAGE
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
        warnings=s.warnings,
        review_reason=s.review_reason,
        capture_start=s.capture_start,
    )


async def group_and_start(jc: JobContext, card_id: str, file_ids: Sequence[int]) -> Started:
    async with jc.engine.connect() as conn:
        rows = await media.load_files(conn, file_ids)
        qr = await media.load_qr(conn, [r.id for r in rows if r.kind == FileKind.QR_CANDIDATE])
    grouping = group_card(card_files(rows, qr), policy=policy(jc.settings))
    out = Started()
    if grouping.clock_warnings:
        warning = "; ".join(grouping.clock_warnings[:3])
        if len(grouping.clock_warnings) > 3:
            warning += f" (and {len(grouping.clock_warnings) - 3} more)"
        async with jc.engine.begin() as conn:
            await cards.set_clock_warning(conn, card_id, warning)
        out.log.append(warning)
        logger.warning("card %s: %s", card_id, warning)
    for s in grouping.sessions:
        row = session_row(card_id, s)
        async with jc.engine.begin() as conn:
            await media.upsert_session(conn, row)
        for w in s.warnings:
            out.log.append(f"session {s.key}: {w}")
        if s.review_reason:
            out.log.append(f"session {s.key} needs a person: {s.review_reason}")
        if not row.file_ids:
            out.log.append(f"session {s.key}: QR clip without footage, nothing to render")
            out.summary.append({"key": s.key, "status": row.status, "footage": 0})
            continue
        # what the booking bought decides the steps (issue 16); a product not understood is
        # delivered as read (or as the default) with a warning on the session, never guessed
        # silently. Assigning by hand carries no product: the one known now is final.
        bought = deliverables_of(row.product, jc.settings.default_product)
        email_warning = s.booking.email_warning if s.booking else ""  # issue 16
        for warning in (w for w in (bought.warning, email_warning) if w):
            async with jc.engine.begin() as conn:
                if await media.add_session_warning(conn, s.key, warning):
                    logger.warning("session %s: %s", s.key, warning)
            out.log.append(f"session {s.key}: {warning}")
        eid = await start_execution(
            jc.engine,
            jc.emitter,
            jc.registry,
            key=f"jump:{s.key}",
            pipeline="jump",
            subject_type="session",
            subject_id=s.key,
            steps=jump_steps(
                s.key,
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
            await media.set_session_execution(conn, s.key, eid)
        out.summary.append(
            {
                "key": s.key,
                "status": row.status,
                "booking_id": row.booking_id,
                "footage": len(row.file_ids),
                "execution_id": eid,
                "review_reason": s.review_reason,
                "warnings": list(s.warnings),
            }
        )
        out.log.append(
            f"session {s.key} ({row.status}, {row.booking_id or 'no booking'}): "
            f"{len(row.file_ids)} footage file(s) -> execution {eid}"
        )
        logger.info(
            "card %s: session %s (%s) -> jump execution %d", card_id, s.key, row.status, eid
        )
    return out


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
