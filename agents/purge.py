"""A booking's purge (issue 16, item 5): its files deleted, its name and email forgotten.

:func:`purge_booking` runs a list of purgers, each a small function over the booking
(:class:`PurgeJob`) adding to one :class:`Tally` (counts and errors): the media purgers (the
published video, poster, manifest, photos and contact sheet, render staging, the session's own
output folder, the share copies of its clips) for every purge; for a personal purge (retention of
personal data, or a request) also the personal purgers (the outbox messages naming it, every
row's copy of the name and email, the passenger links). Email delivery adds its purger to
``PERSONAL_PURGERS``.

A file is deleted only when it resolves inside ``output_dir`` or ``share_root``; one that cannot
be deleted is an error (path, what happened, what to do) and the rest goes on. The copies' ledger
rows stay, marked purged: a card inserted again finds its files imported and copies nothing.
The purge is recorded in ``purge_record`` in the same transaction as the rows it changed; a
second purge of the same booking finds nothing left and records that.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from agents import purge_files as pf
from agents import retention
from agents.purge_files import Tally
from agents.render.identity import is_safe_name
from agents.retention import PurgeReason, PurgeScope
from storage import purge as store
from storage import purge_rows
from storage.commands import execution_status
from storage.enums import ExecutionStatus
from streams.settings import Settings

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PurgeJob:
    """One booking's purge, with what it is known by (read before anything is changed)."""

    booking_id: str
    reason: PurgeReason
    actor: str
    settings: Settings
    sessions: list[store.BookingSession]
    eids: list[int]
    outputs: list[dict[str, Any]]
    names: list[str]
    emails: list[str]
    # earlier purges of the booking that left something: (record id, errors)
    earlier: list[tuple[int, list[dict[str, str]]]] = field(default_factory=list)

    @property
    def scope(self) -> PurgeScope:
        return retention.scope_of(self.reason)

    @property
    def again(self) -> str:
        return f"then run `skyreel purge --booking {self.booking_id} --yes` again"


#: A purger: the booking, a connection in the purge's transaction, the tally.
Purger = Callable[[PurgeJob, AsyncConnection, Tally], Awaitable[None]]


def _candidates(job: PurgeJob) -> tuple[list[Path], list[Path]]:
    """(files, folders): every file the booking's steps name (absolute, or relative to the output
    folder), and the sessions' own output folders (the only folders deleted whole)."""
    s = job.settings
    files: dict[str, Path] = {}
    for out in job.outputs:
        for text in pf.paths_named(out):
            if ("/" not in text and "." not in text) or len(text) > 4096 or "\x00" in text:
                continue
            p = Path(text)
            p = p if p.is_absolute() else s.output_dir / p
            files.setdefault(str(p), p)
    for _rid, errors in job.earlier:  # what an earlier purge could not delete: again
        for e in errors:
            if not e.get("resolved_by") and e.get("path", "").startswith("/"):
                files.setdefault(e["path"], Path(e["path"]))
    folders = sorted(
        {
            s.output_dir / x.output_name
            for x in job.sessions
            if x.output_name and is_safe_name(x.output_name)
        }
    )
    return list(files.values()), folders


async def purge_outputs(job: PurgeJob, conn: AsyncConnection, tally: Tally) -> None:
    """The published video, poster and manifest, the photos and contact sheet, render staging
    (the clips' copies on the share go by their ledger rows only, never by a step's word)."""
    s = job.settings
    roots = [s.output_dir, s.render_staging]
    files, folders = _candidates(job)
    await asyncio.to_thread(pf.delete_files, files, roots, tally, job.again, folders)


async def purge_share_copies(job: PurgeJob, conn: AsyncConnection, tally: Tally) -> None:
    """The clips' copies on the share; their ledger rows stay, marked purged."""
    ids = sorted({i for sess in job.sessions for i in sess.file_ids})
    rows = await store.copies(conn, ids)
    paths = [job.settings.share_root / r.stored_path for r in rows if r.stored_path]
    before = len(tally.errors)
    await asyncio.to_thread(pf.delete_files, paths, [job.settings.share_root], tally, job.again)
    failed = {e["path"] for e in tally.errors[before:]}
    done = [
        r.file_id
        for r in rows
        if not r.stored_path or str(job.settings.share_root / r.stored_path) not in failed
    ]
    tally.add("copies_marked_purged", await store.mark_copies_purged(conn, done))


async def purge_outbox(job: PurgeJob, conn: AsyncConnection, tally: Tally) -> None:
    """Messages in <data_dir>/outbox/ whose name or text names the booking, its name or email."""
    token = retention.booking_token(job.booking_id)
    marks = [m for m in (job.booking_id, *job.names, *job.emails) if len(m) >= 3]
    outbox = job.settings.data_dir / "outbox"
    await asyncio.to_thread(pf.purge_outbox, outbox, marks, token, tally, job.again)


async def anonymise_rows(job: PurgeJob, conn: AsyncConnection, tally: Tally) -> None:
    """Every copy of the name and email in the booking's rows, the decoded ticket text."""
    scope = purge_rows.Scope(
        booking_id=job.booking_id,
        keys=[s.key for s in job.sessions],
        eids=job.eids,
        cards=sorted({s.card_id for s in job.sessions}),
    )
    found = retention.needles(job.names, job.emails)
    counts = await purge_rows.anonymise(conn, scope, found, retention.REDACTED)
    tally.add("rows_anonymised", sum(counts.values()))
    for table, n in counts.items():
        tally.add(f"anonymised.{table}", n)


async def revoke_links(job: PurgeJob, conn: AsyncConnection, tally: Tally) -> None:
    tally.add("links_revoked", await store.revoke_links(conn, job.booking_id, "purge"))


#: Counts every purge record says, 0 when nothing of the kind was done.
_ALWAYS_SAID = (
    "files_deleted",
    "bytes_deleted",
    "copies_marked_purged",
    "outbox_deleted",
    "rows_anonymised",
    "links_revoked",
)

MEDIA_PURGERS: list[Purger] = [purge_outputs, purge_share_copies]
PERSONAL_PURGERS: list[Purger] = [purge_outbox, anonymise_rows, revoke_links]


@dataclass(frozen=True)
class PurgeResult:
    record_id: int
    booking_id: str
    reason: PurgeReason
    what: dict[str, Any]
    errors: list[dict[str, str]]
    keys: tuple[str, ...] = ()  # the booking's jump sessions

    @property
    def nothing_left(self) -> bool:
        return bool(self.what.get("nothing_left"))

    def as_dict(self) -> dict[str, Any]:
        return {
            "record_id": self.record_id,
            "booking_id": self.booking_id,
            "reason": str(self.reason),
            "what": self.what,
            "errors": self.errors,
        }


class BookingNotFound(Exception):
    pass


async def _job(
    conn: AsyncConnection, settings: Settings, booking_id: str, reason: PurgeReason, actor: str
) -> PurgeJob:
    sessions = await store.booking_sessions(conn, booking_id)
    keys = [s.key for s in sessions]
    eids = await store.execution_ids(conn, keys)
    return PurgeJob(
        booking_id=booking_id,
        reason=reason,
        actor=actor,
        settings=settings,
        sessions=sessions,
        eids=eids,
        outputs=await store.step_outputs(conn, eids),
        names=await store.known_names(conn, booking_id, keys, eids),
        emails=await purge_rows.booking_emails(conn, booking_id),
        earlier=await store.open_errors(conn, booking_id),
    )


Cancel = Callable[[int], Awaitable[object]]


async def _resolve_earlier(
    conn: AsyncConnection, job: PurgeJob, tally: Tally, record_id: int
) -> int:
    """An earlier record's error whose path is gone now is marked resolved by this purge (its
    path, which may hold the passenger's name, is dropped). Returns how many."""
    failing = {e["path"] for e in tally.errors}
    named = [e.get("path", "") for _rid, errors in job.earlier for e in errors]
    still = await asyncio.to_thread(lambda: {p for p in named if p and Path(p).exists()})
    resolved = 0
    for rid, errors in job.earlier:
        changed = False
        for e in errors:
            path = e.get("path", "")
            if e.get("resolved_by") or path in failing or path in still:
                continue
            e["path"], e["resolved_by"] = retention.REDACTED, str(record_id)
            changed = True
            resolved += 1
        if changed:
            await store.set_errors(conn, rid, errors)
    return resolved


async def _cancel(engine: AsyncEngine, job: PurgeJob, cancel: Cancel, tally: Tally) -> None:
    """Nothing may render the booking again while it is forgotten: its unfinished executions
    are cancelled first (a finished one has nothing to cancel)."""
    for sess in job.sessions:
        if sess.execution_id is None:
            continue
        async with engine.connect() as conn:
            status = await execution_status(conn, sess.execution_id)
        if status in (None, ExecutionStatus.SUCCEEDED, ExecutionStatus.CANCELLED):
            continue
        try:
            tally.add("executions_cancelled", int(bool(await cancel(sess.execution_id))))
        except Exception as exc:
            logger.debug("execution %s not cancelled: %s", sess.execution_id, exc)


async def purge_booking(
    engine: AsyncEngine,
    settings: Settings,
    booking_id: str,
    reason: PurgeReason,
    actor: str,
    *,
    cancel: Cancel | None = None,
    now: datetime | None = None,
) -> PurgeResult:
    """Purge one booking and record it. Raises BookingNotFound for a booking no session has and
    no purge recorded; everything else that goes wrong is an error in the record."""
    async with engine.connect() as conn:
        first = await _job(conn, settings, booking_id, reason, actor)
    if not first.sessions:
        raise BookingNotFound(f"booking {booking_id!r} has no jump session")
    tally = Tally()
    if cancel is not None and first.scope is PurgeScope.ALL:
        await _cancel(engine, first, cancel, tally)
    async with engine.begin() as conn:
        await store.lock_booking(conn, booking_id)  # then read again: what is left now
        job = await _job(conn, settings, booking_id, reason, actor)
        purgers = MEDIA_PURGERS + (PERSONAL_PURGERS if job.scope is PurgeScope.ALL else [])
        for purger in purgers:
            try:
                await purger(job, conn, tally)
            except OSError as exc:
                tally.error(
                    getattr(exc, "filename", "") or purger.__name__,
                    str(exc),
                    f"fix it, {job.again}",
                )
        when = (now or datetime.now(UTC)).date().isoformat()
        note = f"purged on {when} ({reason}): footage deleted" + (
            ", personal data removed" if job.scope is PurgeScope.ALL else ""
        )
        tally.add(
            "sessions_marked",
            await store.mark_sessions_purged(
                conn, booking_id, personal=job.scope is PurgeScope.ALL, note=note
            ),
        )
        changed = {k for k in tally.counts if k not in ("sessions_marked", "outside_roots_kept")}
        what: dict[str, Any] = {
            "scope": str(job.scope),
            "sessions": len(job.sessions),
            **dict.fromkeys(_ALWAYS_SAID, 0),
            **tally.counts,
            "nothing_left": not changed and not tally.errors,
        }
        record_id = await store.record_purge(conn, booking_id, reason, actor, what, tally.errors)
        resolved = await _resolve_earlier(conn, job, tally, record_id)
        if resolved:
            what["earlier_errors_resolved"] = resolved
            what["nothing_left"] = False
            await store.set_what(conn, record_id, what)
    level = logging.WARNING if tally.errors else logging.INFO
    logger.log(
        level,
        "booking %s purged (%s, by %s): %s%s",
        booking_id,
        reason,
        actor,
        "nothing left" if what["nothing_left"] else tally.counts,
        f"; {len(tally.errors)} errors, first: {tally.errors[0]}" if tally.errors else "",
    )
    keys = tuple(x.key for x in job.sessions)
    return PurgeResult(record_id, booking_id, reason, what, tally.errors, keys)


async def scheduled_purge(
    engine: AsyncEngine,
    settings: Settings,
    *,
    now: datetime | None = None,
    cancel: Cancel | None = None,
) -> list[PurgeResult]:
    """Apply the retention rules once: every booking due is purged and recorded."""
    at = now or datetime.now(UTC)
    media, personal = settings.retention_media_days, settings.retention_personal_days
    if media <= 0 and personal <= 0:
        return []
    async with engine.connect() as lock:
        if not await store.try_lock_pass(lock):
            logger.info("retention: another worker is applying the rules; skipped")
            return []
        try:
            return await _retention_pass(engine, settings, at, cancel)
        finally:
            await store.unlock_pass(lock)
            await lock.commit()


async def _retention_pass(
    engine: AsyncEngine, settings: Settings, at: datetime, cancel: Cancel | None
) -> list[PurgeResult]:
    media, personal = settings.retention_media_days, settings.retention_personal_days
    async with engine.connect() as conn:
        rows = await store.retention_sessions(conn)
    times = [
        retention.SessionTimes(
            r.booking_id, r.created_at, r.delivered_at, r.media_purged_at, r.personal_purged_at
        )
        for r in rows
    ]
    done: list[PurgeResult] = []
    for due in retention.due_purges(times, at, media_days=media, personal_days=personal):
        try:
            done.append(
                await purge_booking(
                    engine, settings, due.booking_id, due.reason, "retention", cancel=cancel, now=at
                )
            )
        except Exception:
            logger.exception(
                "booking %s: scheduled purge failed; tried again next pass", due.booking_id
            )
    if done:
        logger.info("retention: %d booking(s) purged", len(done))
    return done


async def purged_message(conn: AsyncConnection, execution_id: int) -> str:
    """'' unless this jump's footage was purged: then what a render says instead."""
    when = await store.execution_purged_at(conn, execution_id)
    return f"purged: footage deleted on {when.date().isoformat()}" if when else ""
