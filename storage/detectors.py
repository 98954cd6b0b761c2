"""Detectors (station PCs), their tokens, and the card rows they report.

A detector is registered once (``skyreel register-detector ID``, streams/cli/detectors.py): a
random token is generated, printed once, and only its SHA-256 is stored, so a database dump does
not let anyone connect.
The hub authenticates the WebSocket handshake with :func:`authenticate`; :func:`revoke`
(``skyreel revoke-detector ID`` or the API) refuses a token from then on, and the hubs close a
revoked detector's live socket (streams/hub/revocation.py, re-checked with :func:`active_among`).

The card rows they report are storage/cards.py's.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import Detector

_DETECTOR_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")
#: Tokens longer than this are refused without hashing (nobody's token is 4 KiB).
MAX_TOKEN_CHARS = 512


class DetectorError(ValueError):
    """A permanent problem with a detector registration (bad id, duplicate)."""

    def __init__(self, detector_id: str, reason: str) -> None:
        super().__init__(f"detector {detector_id!r}: {reason}")
        self.detector_id = detector_id
        self.reason = reason


@dataclass(frozen=True)
class Registration:
    detector_id: str
    token: str  # shown once; never stored


def validate_detector_id(detector_id: str) -> str:
    if not _DETECTOR_ID.match(detector_id):
        raise DetectorError(
            detector_id, "id must be 1-64 of [a-z0-9-], starting with a letter or digit"
        )
    return detector_id


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    """A fresh secret. Never starting with '-': a token is passed as `--token TOKEN` and
    argparse would take '-abc...' for an option (a real failure, 1 in 64 tokens)."""
    return "skr_" + secrets.token_urlsafe(32)


async def register_detector(
    session: AsyncSession, detector_id: str, name: str = ""
) -> Registration:
    """Create a detector with a fresh token; raises DetectorError if the id is taken."""
    validate_detector_id(detector_id)
    token = new_token()
    session.add(Detector(id=detector_id, name=name[:200], token_hash=hash_token(token)))
    try:
        await session.flush()
    except IntegrityError:
        raise DetectorError(detector_id, "already registered") from None
    return Registration(detector_id, token)


async def rotate_token(session: AsyncSession, detector_id: str, name: str = "") -> Registration:
    """Create the detector, or give an existing one a fresh token (and un-revoke it): for the
    demo station, whose token is new on each run."""
    validate_detector_id(detector_id)
    token = new_token()
    stmt = insert(Detector).values(id=detector_id, name=name[:200], token_hash=hash_token(token))
    await session.execute(
        stmt.on_conflict_do_update(
            index_elements=[Detector.id],
            set_={"token_hash": stmt.excluded.token_hash, "revoked": False},
        )
    )
    return Registration(detector_id, token)


async def authenticate(session: AsyncSession, token: str | None) -> str | None:
    """The id of the (not revoked) detector holding ``token``, else None."""
    if not token or len(token) > MAX_TOKEN_CHARS:
        return None
    row = await session.execute(
        select(Detector.id).where(
            Detector.token_hash == hash_token(token), Detector.revoked.is_(False)
        )
    )
    return row.scalar_one_or_none()


async def revoke(session: AsyncSession, detector_id: str) -> bool:
    """Refuse the detector's token from now on; False if there is no such detector."""
    result = await session.execute(
        update(Detector).where(Detector.id == detector_id).values(revoked=True)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def active_among(session: AsyncSession, detector_ids: list[str]) -> set[str]:
    """Which of ``detector_ids`` are registered and not revoked (one query for the lot): the
    hub's periodic re-check of the sockets it holds."""
    if not detector_ids:
        return set()
    rows = await session.execute(
        select(Detector.id).where(Detector.id.in_(detector_ids), Detector.revoked.is_(False))
    )
    return set(rows.scalars())


async def touch(session: AsyncSession, detector_id: str, card_id: str | None = None) -> None:
    """Record that the detector was just heard from (and, if given, which card it holds)."""
    values: dict[str, object] = {"last_seen_at": func.now()}
    if card_id is not None:
        values["current_card_id"] = card_id
    await session.execute(update(Detector).where(Detector.id == detector_id).values(**values))


async def clear_card(session: AsyncSession, detector_id: str, card_id: str) -> None:
    """The card was pulled: forget it as the detector's current card (if it still is)."""
    await session.execute(
        update(Detector)
        .where(Detector.id == detector_id, Detector.current_card_id == card_id)
        .values(current_card_id=None, last_seen_at=func.now())
    )
