"""The `deliver` step (issue 16): email the passenger link, exactly once per deliverable set.

In every jump pipeline after `publish` and/or `photos` (agents/jobs/kinds.py, '?': a failed
photos step still delivers the video, and the email says the photos are missing). A session
without an email finishes the step as "no email: nothing to send"; an email set later by an
operator (assign) or a resend sends then.

Exactly once. The idempotency key is ``<booking>/<what is ready>`` (``BK-1/photos+video``), or
``<booking>/resend-<n>`` for an operator's resend. It is claimed in PostgreSQL
(storage/deliveries.py `claim`) before anything is sent and marked ``sent`` after: a
redelivered, replayed or retried step whose key is ``sent`` sends nothing and says so; a second
jump of the same booking with the same deliverables sends nothing either (the link shows every
jump of the booking). The one window is a crash after the server accepted the message and
before ``sent`` was recorded: the row stays ``sending``, and only once it is older than
`STALE_AFTER_S` (longer than any send can take) may a retry claim it and send again — with the
same Message-ID, which is derived from the key (agents/email_message.py), so the receiving
side can recognise the duplicate. A ``sending`` row younger than that makes the step wait.

SMTP problems (agents/jobs/mailer.py): retryable ones make the step retry with its kind's
backoff (30 s .. 10 min) and are logged with what to do; a permanent refusal fails the step and
the delivery with the server's reason, shown on the dashboard's outbox panel.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncEngine

from agents.email_message import Letter, build_message, message_id, sender_domain
from agents.jobs import kinds, mailer
from agents.jobs.context import JobContext
from agents.jobs.step_input import str_input
from agents.pipeline.errors import PermanentStepError, RetryableStepError
from agents.pipeline.handlers import Handler, StepContext, StepOutput
from storage import deliveries, imports, media
from storage.deliveries import DeliveryStatus
from streams import records
from streams.passenger_links import (
    BookingUnknown,
    link_base,
    public_url,
    reuse_or_issue,
    signer_for,
)
from streams.settings import Settings

logger = logging.getLogger(__name__)

KIND = kinds.DELIVER
#: a `sending` row older than this is taken to be a crashed send (a send takes < 5 min)
STALE_AFTER_S = 900.0
ACTOR = "deliver"

Log = Callable[[str, str], None]


@dataclass(frozen=True)
class Ready:
    """What this jump delivers now, in the email's words, and what is missing."""

    parts: tuple[str, ...]  # sorted deliverable names: ("photos", "video")
    words: tuple[str, ...]  # ("your jump video", "30 photos")
    notes: tuple[str, ...]


def what_is_ready(outcomes: Mapping[str, tuple[str, object]]) -> Ready:
    """The `publish` / `photos` outcomes of an execution -> what the email announces (pure)."""
    parts: list[str] = []
    words: list[str] = []
    notes: list[str] = []
    if "publish" in outcomes:
        if outcomes["publish"][0] == "succeeded":
            parts.append("video")
            words.append("your jump video")
        else:
            notes.append("your video is not ready yet; the same link will show it when it is")
    if "photos" in outcomes:
        status, output = outcomes["photos"]
        count = output.get("count") if isinstance(output, Mapping) else None
        skipped = isinstance(output, Mapping) and output.get("skipped")
        if status == "succeeded" and not skipped and isinstance(count, int) and count > 0:
            parts.append("photos")
            words.append(f"{count} photo{'s' if count != 1 else ''}")
        elif not skipped:
            notes.append("your photos could not be made yet; the dropzone will look into it")
    return Ready(tuple(sorted(parts)), tuple(words), tuple(notes))


async def send_once(
    settings: Settings,
    engine: AsyncEngine,
    *,
    key: str,
    booking_id: str,
    deliverable_set: str,
    recipient: str,
    passenger: str,
    ready: Ready,
    session_key: str | None,
    actor: str,
    log: Log,
    request_id: str = "",
) -> dict[str, object]:
    """Claim `key`, then send (or write to the outbox) and record it; sends at most once."""
    domain = sender_domain(mailer.sender(settings))
    async with engine.begin() as conn:
        claimed = await deliveries.claim(
            conn,
            key=key,
            booking_id=booking_id,
            deliverable_set=deliverable_set,
            recipient=recipient,
            message_id=message_id(key, domain),
            session_key=session_key,
            actor=actor,
            request_id=request_id,
            stale_after_s=STALE_AFTER_S,
        )
    row = claimed.row
    out: dict[str, object] = {"delivery_id": row.id, "key": key, "recipient": recipient}
    if not claimed.send:
        if row.status is DeliveryStatus.SENT:
            when = row.sent_at.isoformat() if row.sent_at else "?"
            log(f"{key}: sent already (delivery {row.id}, {when}): nothing sent again", "info")
            return {**out, "sent": False, "already_sent": True, "outbox_file": row.outbox_file}
        raise RetryableStepError(
            f"{key}: delivery {row.id} is being sent by another attempt (since "
            f"{row.updated_at.isoformat()}); waiting"
        )
    try:
        issued = await reuse_or_issue(
            engine,
            signer_for(settings),
            booking_id,
            days=settings.passenger_link_days,
            actor=actor,
            link_id=row.link_id,
        )
    except BookingUnknown as exc:
        async with engine.begin() as conn:
            await deliveries.mark_failed(conn, row.id, str(exc))
        raise PermanentStepError(str(exc)) from exc
    url = public_url(link_base(settings), issued.path)
    letter = Letter(
        recipient=recipient,
        sender=mailer.sender(settings),
        passenger=passenger,
        dropzone=settings.dropzone_name,
        ready=ready.words,
        link=url,
        expires_at=issued.link.expires_at,
        idempotency_key=key,
        notes=ready.notes,
        sent_at=datetime.now(UTC),
        message_id=row.message_id,  # the claimed one: a re-send after a crash is recognisable
    )
    message = build_message(letter)
    try:
        if mailer.smtp_configured(settings):
            sent = await mailer.send_smtp(settings, message, recipient)
        else:
            name = mailer.outbox_name(booking_id, key)
            path = mailer.write_outbox(mailer.outbox_dir(settings), name, message)
            sent = mailer.Sent("outbox", str(path), name)
    except (mailer.MailRetry, OSError) as exc:
        reason = str(exc) if isinstance(exc, mailer.MailRetry) else f"outbox not written: {exc}"
        async with engine.begin() as conn:
            await deliveries.mark_failed(conn, row.id, reason)
        log(f"{key}: {reason}", "warning")
        raise RetryableStepError(reason) from exc
    except mailer.MailRefused as exc:
        async with engine.begin() as conn:
            await deliveries.mark_failed(conn, row.id, str(exc))
        log(f"{key}: {exc}", "error")
        raise PermanentStepError(str(exc)) from exc
    async with engine.begin() as conn:
        await deliveries.mark_sent(
            conn, row.id, link_id=issued.link.id, outbox_file=sent.outbox_file
        )
        await imports.bump_counter(conn, "emails_sent" if sent.how == "smtp" else "emails_outbox")
    log(
        f"{key}: emailed {mask(recipient)} ({sent.how}: {sent.detail}); link {issued.link.id}",
        "info",
    )
    logger.info("delivery %d (%s) sent via %s, link %d", row.id, key, sent.how, issued.link.id)
    return {
        **out,
        "sent": True,
        "via": sent.how,
        "link_id": issued.link.id,
        "link": url,
        "outbox_file": sent.outbox_file,
    }


def mask(address: str) -> str:
    """``a***@example.com``: enough to recognise, not enough to harvest (logs, dashboard)."""
    local, _, domain = address.partition("@")
    return f"{local[:1]}***@{domain}" if domain else "***"


async def deliver_session(
    settings: Settings, engine: AsyncEngine, key: str, execution_id: int | None, log: Log
) -> dict[str, object]:
    """The step's work for session `key` (execution_id: the pipeline it runs in)."""
    async with engine.connect() as conn:
        session = await media.load_session(conn, key)
        outcomes = (
            await deliveries.step_outcomes(conn, execution_id, ["publish", "photos"])
            if execution_id is not None
            else {}
        )
    if session is None:
        raise PermanentStepError(f"no jump session {key!r}")
    if not session.booking_id:
        raise PermanentStepError(f"session {key} has no booking: assign one, then retry")
    if not session.email:
        log(
            f"session {key}: no email: nothing to send (set one on assign to send the link)", "info"
        )
        return {"sent": False, "skipped": "no email"}
    ready = what_is_ready(outcomes)
    if not ready.parts:
        for note in ready.notes:
            log(note, "warning")
        log(f"session {key}: nothing is ready to deliver: no email sent", "warning")
        return {"sent": False, "skipped": "nothing ready", "notes": list(ready.notes)}
    what = "+".join(ready.parts)
    return await send_once(
        settings,
        engine,
        key=f"{session.booking_id}/{what}",
        booking_id=session.booking_id,
        deliverable_set=what,
        recipient=session.email,
        passenger=session.passenger or "",
        ready=ready,
        session_key=key,
        actor=ACTOR,
        log=log,
    )


async def resend(
    settings: Settings, engine: AsyncEngine, booking_id: str, request_id: str, actor: str
) -> dict[str, object]:
    """An operator's resend: one more email to the booking's address, once per request.

    Raises LookupError when no jump of the booking has an email; MailRetry/MailRefused text
    comes back as a PermanentStepError/RetryableStepError message."""
    async with engine.begin() as conn:
        contact = await deliveries.booking_contact(conn, booking_id)
        if contact is None:
            raise LookupError(f"no jump of booking {booking_id!r} has an email")
        key = await deliveries.resend_key(conn, booking_id, request_id)
    session_key, passenger, email = contact
    async with engine.connect() as conn:
        session = await media.load_session(conn, session_key)
        eid = session.execution_id if session else None
        outcomes = await deliveries.step_outcomes(conn, eid, ["publish", "photos"]) if eid else {}
    ready = what_is_ready(outcomes)

    def log(message: str, level: str) -> None:
        getattr(logger, "warning" if level != "info" else "info")("%s", message)

    return await send_once(
        settings,
        engine,
        key=key,
        booking_id=booking_id,
        deliverable_set="+".join(ready.parts) or "link",
        recipient=email,
        passenger=passenger,
        ready=ready,
        session_key=session_key,
        actor=actor,
        log=log,
        request_id=request_id,
    )


def handler(jc: JobContext) -> Handler:
    async def deliver(ctx: StepContext, request: records.StepRequest) -> StepOutput:
        key = str_input(request, "session")
        out = await deliver_session(jc.settings, jc.engine, key, request.execution_id, ctx.log)
        return StepOutput(out)

    return deliver
