"""`skyreel link BOOKING [--days N]`: issue a passenger link and print its URL;
`skyreel link --revoke ID`: revoke a link from now on.

Both need only SKYREEL_DATABASE_URL; the URL is under SKYREEL_PASSENGER_LINK_BASE_URL, else
http://<hub_host>:<hub_port>. The signing secret is the hub's (the setting, or the file the
hub generated in SKYREEL_DATA_DIR): run this where the hub's data dir or secret is.
"""

from __future__ import annotations

import asyncio
import getpass
import sys

from storage.db import make_engine
from streams.hub.passenger_links import (
    BookingUnknown,
    IssuedLink,
    issue_link,
    link_base,
    public_url,
    revoke_link,
    signer_for,
)
from streams.settings import Settings


def _base(settings: Settings) -> str:
    return link_base(settings)


async def _issue(settings: Settings, booking_id: str, days: int, actor: str) -> IssuedLink:
    engine = make_engine(settings.database_url, pool_size=1)
    try:
        return await issue_link(engine, signer_for(settings), booking_id, days=days, actor=actor)
    finally:
        await engine.dispose()


async def _revoke(settings: Settings, link_id: int, actor: str) -> tuple[bool, str]:
    engine = make_engine(settings.database_url, pool_size=1)
    try:
        row = await revoke_link(engine, link_id, actor)
    finally:
        await engine.dispose()
    if row is None:
        return False, f"no passenger link {link_id} (nothing revoked)"
    when = row.revoked_at.isoformat() if row.revoked_at else "?"
    return True, f"link {row.id} of booking {row.booking_id} revoked ({when} by {row.revoked_by})"


def link_cli(
    settings: Settings, booking_id: str | None, days: int | None, revoke: int | None
) -> int:
    """Prints the URL (or what was revoked); returns the exit code."""
    if not settings.database_url:
        print("SKYREEL_DATABASE_URL is not set", file=sys.stderr)
        return 2
    actor = f"cli:{getpass.getuser()}"
    if revoke is not None:
        ok, line = asyncio.run(_revoke(settings, revoke, actor))
        print(line if ok else f"skyreel: {line}", file=sys.stdout if ok else sys.stderr)
        return 0 if ok else 1
    if not booking_id:
        print("skyreel link: give a BOOKING, or --revoke ID", file=sys.stderr)
        return 2
    valid_days = days if days is not None else settings.passenger_link_days
    if not 1 <= valid_days <= 365:
        print("skyreel link: --days must be between 1 and 365", file=sys.stderr)
        return 2
    try:
        issued = asyncio.run(_issue(settings, booking_id, valid_days, actor))
    except BookingUnknown as exc:
        print(f"skyreel: {exc}; nothing issued", file=sys.stderr)
        return 1
    print(public_url(_base(settings), issued.path))
    print(
        f"link {issued.link.id} of booking {booking_id}, valid until "
        f"{issued.link.expires_at.isoformat()} (revoke: skyreel link --revoke {issued.link.id})",
        file=sys.stderr,
    )
    return 0
