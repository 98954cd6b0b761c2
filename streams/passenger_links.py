"""Passenger links: the signed token of /p/<token>, its secret, issuing and revoking a link.

A token is an itsdangerous ``URLSafeTimedSerializer`` dump of ``{"v": 1, "l": link id, "b":
booking id, "x": expiry (epoch seconds)}``, signed (HMAC-SHA1 over a key derived from the secret
and a salt of its own) and time-stamped. Verifying it needs no database: a bad signature or a
shape we never wrote is *invalid*, a token past its signed expiry (or older than any link can
live) is *expired*. The `passenger_link` row the token names (storage/passenger_links.py) says
whether an operator *revoked* it. The token names the booking only: which files the page serves
is looked up on every request, so a link never exposes a path of the share or the output folder.

The secret is `SKYREEL_PASSENGER_LINK_SECRET`, or — when that is empty — one generated once
and kept in ``<data_dir>/passenger_link_secret`` (mode 0600), so links survive a restart and
the operator never has to set one. The CLI (`skyreel link`) and the hub read the same file.

Logs carry the link id, never the token (detector/redact.py masks ``/p/<token>`` in request
lines as well).
"""

from __future__ import annotations

import enum
import logging
import os
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from itsdangerous import BadData, SignatureExpired, URLSafeTimedSerializer
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from storage import passenger_links as links
from storage.passenger_links import LinkRow
from streams.settings import Settings

logger = logging.getLogger(__name__)

SALT = "skyreel.passenger-link.v1"
SECRET_FILE = "passenger_link_secret"
#: No token is honoured past this age, whatever it says (the longest link is 365 days).
MAX_AGE_S = 400 * 86_400
#: Longer "tokens" are not ours: refused before any decoding.
MAX_TOKEN_CHARS = 400
PAGE_PREFIX = "/p/"


class Refusal(enum.StrEnum):
    """Why a token does not open a page."""

    INVALID = "invalid"  # bad signature, not our shape, or no such link
    EXPIRED = "expired"
    REVOKED = "revoked"


class LinkRefused(Exception):
    """The token does not open the page; `link_id` when the token named one we can trust."""

    def __init__(self, refusal: Refusal, detail: str, link_id: int | None = None) -> None:
        self.refusal = refusal
        self.detail = detail
        self.link_id = link_id
        super().__init__(f"{refusal}: {detail}")


class BookingUnknown(Exception):
    """No jump session carries this booking: there is nothing to link to."""

    def __init__(self, booking_id: str) -> None:
        self.booking_id = booking_id
        super().__init__(f"no jump of booking {booking_id!r} is recorded")


@dataclass(frozen=True)
class LinkClaim:
    """What a verified token says."""

    link_id: int
    booking_id: str
    expires_at: datetime


@dataclass(frozen=True)
class IssuedLink:
    link: LinkRow
    token: str

    @property
    def path(self) -> str:
        return PAGE_PREFIX + self.token


def link_secret(settings: Settings) -> str:
    """The configured secret, else the generated one in the data dir (created on first use;
    two processes racing both end up with the file's one)."""
    configured = settings.passenger_link_secret.get_secret_value().strip()
    if configured:
        return configured
    path = Path(settings.data_dir) / SECRET_FILE
    try:
        found = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        found = ""
    if found:
        return found
    path.parent.mkdir(parents=True, exist_ok=True)
    fresh = secrets.token_urlsafe(48)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process made it first: use theirs
        return path.read_text(encoding="ascii").strip()
    with os.fdopen(fd, "w", encoding="ascii") as fh:
        fh.write(fresh + "\n")
    logger.info("generated the passenger-link secret in %s (keep it: links depend on it)", path)
    return fresh


def _epoch(when: datetime) -> int:
    return int(when.timestamp())


class LinkSigner:
    """Signs and verifies passenger-link tokens (pure: the clock is the caller's)."""

    def __init__(self, secret: str) -> None:
        if not secret:
            raise ValueError("a passenger-link secret is needed")
        self._serializer = URLSafeTimedSerializer(secret, salt=SALT)

    def sign(self, claim: LinkClaim) -> str:
        payload = {"v": 1, "l": claim.link_id, "b": claim.booking_id, "x": _epoch(claim.expires_at)}
        return str(self._serializer.dumps(payload))

    def _link_id(self, raw: Any) -> int | None:
        try:
            payload = self._serializer.load_payload(raw)
        except BadData:
            return None
        value = payload.get("l") if isinstance(payload, dict) else None
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    def verify(self, token: str, now: datetime) -> LinkClaim:
        """The claim of a good token; raises LinkRefused (invalid or expired)."""
        if not token or len(token) > MAX_TOKEN_CHARS:
            raise LinkRefused(Refusal.INVALID, "not a link token")
        try:
            payload = self._serializer.loads(token, max_age=MAX_AGE_S)
        except SignatureExpired as exc:  # signed by us, but older than any link may live
            link_id = self._link_id(exc.payload)
            raise LinkRefused(Refusal.EXPIRED, "older than any link lives", link_id) from None
        except BadData:
            raise LinkRefused(Refusal.INVALID, "bad signature") from None
        claim = _claim(payload)
        if claim is None:
            raise LinkRefused(Refusal.INVALID, "signed, but not a link's payload")
        if now >= claim.expires_at:
            raise LinkRefused(
                Refusal.EXPIRED, f"expired {claim.expires_at.isoformat()}", claim.link_id
            )
        return claim


def _claim(payload: object) -> LinkClaim | None:
    if not isinstance(payload, dict) or payload.get("v") != 1:
        return None
    link_id, booking, expiry = payload.get("l"), payload.get("b"), payload.get("x")
    if not (isinstance(link_id, int) and isinstance(booking, str) and isinstance(expiry, int)):
        return None
    try:
        expires_at = datetime.fromtimestamp(expiry, UTC)
    except (OverflowError, OSError, ValueError):
        return None
    return LinkClaim(link_id, booking, expires_at)


def signer_for(settings: Settings) -> LinkSigner:
    return LinkSigner(link_secret(settings))


async def issue_link(
    engine: AsyncEngine,
    signer: LinkSigner,
    booking_id: str,
    *,
    days: int,
    actor: str,
    now: datetime | None = None,
) -> IssuedLink:
    """A new link to the booking's page, valid `days`; raises BookingUnknown."""
    issued = now or datetime.now(UTC)
    expires_at = (issued + timedelta(days=days)).replace(microsecond=0)
    async with engine.begin() as conn:
        if not await links.booking_known(conn, booking_id):
            raise BookingUnknown(booking_id)
        row = await links.create_link(conn, booking_id, expires_at, actor)
    token = signer.sign(LinkClaim(row.id, row.booking_id, row.expires_at))
    return IssuedLink(row, token)


async def reuse_or_issue(
    engine: AsyncEngine,
    signer: LinkSigner,
    booking_id: str,
    *,
    days: int,
    actor: str,
    link_id: int | None = None,
    now: datetime | None = None,
) -> IssuedLink:
    """The booking's link for an email or the desk's QR: `link_id` (or the newest link) when it
    is not revoked and has at least half of `days` left, else a new one; raises BookingUnknown.

    The token is signed again (a new time stamp, the same link row and expiry): either token
    opens the page, and revoking the link stops both."""
    at = now or datetime.now(UTC)
    async with engine.connect() as conn:
        row = await links.open_link_of(conn, booking_id, at + timedelta(days=days / 2), link_id)
    if row is None:
        return await issue_link(engine, signer, booking_id, days=days, actor=actor, now=at)
    return IssuedLink(row, signer.sign(LinkClaim(row.id, row.booking_id, row.expires_at)))


def link_base(settings: Settings) -> str:
    """Where links are handed out from outside a request (the CLI, an email):
    SKYREEL_PASSENGER_LINK_BASE_URL, else http://<hub_host>:<hub_port>."""
    if settings.passenger_link_base_url:
        return settings.passenger_link_base_url
    host = f"[{settings.hub_host}]" if ":" in settings.hub_host else settings.hub_host
    return f"http://{host}:{settings.hub_port}"


async def revoke_link(engine: AsyncEngine, link_id: int, actor: str) -> LinkRow | None:
    """Revoke a link from now on (idempotent); None when there is no such link."""
    async with engine.begin() as conn:
        return await links.revoke_link(conn, link_id, actor)


async def open_link(conn: AsyncConnection, claim: LinkClaim) -> LinkRow:
    """The link row a verified token's claim opens; raises LinkRefused (no such link, revoked)."""
    row = await links.get_link(conn, claim.link_id)
    if row is None or row.booking_id != claim.booking_id:
        raise LinkRefused(Refusal.INVALID, "no such link", claim.link_id)
    if row.revoked_at is not None:
        raise LinkRefused(
            Refusal.REVOKED, f"revoked {row.revoked_at.isoformat()} by {row.revoked_by}", row.id
        )
    return row


def public_url(base: str, path: str) -> str:
    """`path` under the public base address (no double slash)."""
    return base.rstrip("/") + path
