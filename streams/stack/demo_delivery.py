"""The end of `skyreel run`'s demo (issue 16): every booking's passenger link, and the outbox.

After every jump is rendered, the `deliver` steps still have to run: :func:`print_summary`
waits for them (bounded), then prints one passenger link per booking (the one emailed, reused:
streams/passenger_links.py) and what the outbox holds — one message per booking with an email
when no SMTP server is configured.
"""

from __future__ import annotations

import asyncio
import logging
import time

from sqlalchemy.exc import SQLAlchemyError

from storage import deliveries
from storage.db import make_engine
from streams.passenger_links import (
    BookingUnknown,
    link_base,
    public_url,
    reuse_or_issue,
    signer_for,
)
from streams.settings import Settings

logger = logging.getLogger(__name__)

WAIT_S = 120.0


async def _summary(settings: Settings, wait_s: float) -> list[str]:
    engine = make_engine(settings.database_url, pool_size=1)
    try:
        deadline = time.monotonic() + wait_s
        while True:
            async with engine.connect() as conn:
                open_steps = await deliveries.deliver_steps_open(conn)
            if open_steps == 0 or time.monotonic() > deadline:
                break
            await asyncio.sleep(1)
        async with engine.connect() as conn:
            booked = await deliveries.bookings(conn)
            sent = await deliveries.outbox_count(conn)
            recent = await deliveries.recent(conn, 200)
        lines = ["", "passenger links (scan or open; revoke: skyreel link --revoke ID):"]
        signer, base = signer_for(settings), link_base(settings)
        for booking_id, passenger, has_email in booked:
            try:
                issued = await reuse_or_issue(
                    engine, signer, booking_id, days=settings.passenger_link_days, actor="demo"
                )
            except BookingUnknown:
                continue
            mark = (
                "emailed"
                if any(r.booking_id == booking_id and r.status == "sent" for r in recent)
                else ("email pending" if has_email else "no email")
            )
            lines.append(f"  {booking_id} {passenger} [{mark}]: {public_url(base, issued.path)}")
        failed = [r for r in recent if r.status == "failed"]
        where = (
            "sent by SMTP"
            if settings.smtp_host.strip()
            else (f"{sent} message(s) in the outbox {settings.data_dir / 'outbox'}")
        )
        lines.append(f"email: {where}" + (f"; {len(failed)} failed" if failed else ""))
        if open_steps:
            lines.append(f"({open_steps} delivery step(s) still running)")
        return lines
    finally:
        await engine.dispose()


def print_summary(settings: Settings, wait_s: float = WAIT_S) -> None:
    """Print the links and the outbox (never raises: the demo's end must not fail on it)."""
    try:
        lines = asyncio.run(_summary(settings, wait_s))
    except (OSError, TimeoutError, SQLAlchemyError) as exc:
        logger.warning("the passenger links could not be listed: %s", exc)
        print(f"(passenger links not listed: {exc})", flush=True)
        return
    for line in lines:
        print(line, flush=True)
