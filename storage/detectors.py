"""Detectors (station PCs), their tokens, and the card rows they report.

A detector is registered once (``skyreel register-detector ID``, streams/cli/detectors.py): a
random token is generated, printed once, and only its SHA-256 is stored, so a database dump does
not let anyone connect.
The hub authenticates the WebSocket handshake with :func:`authenticate`.

The hub is the one writer of ``card`` rows (:func:`upsert_card`, :func:`record_card_facts`):
presence and label from every card event; free/total bytes and the names that were not listed
(the detector's ``skipped`` and the entries the hub refused) from each listing. ``skipped``
starts empty at each insertion and collects the listings of that insertion.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import Card, Detector

_DETECTOR_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")
#: Tokens longer than this are refused without hashing (nobody's token is 4 KiB).
MAX_TOKEN_CHARS = 512
#: Skipped names kept on one card row (the first ones; a card of thousands is one problem).
MAX_CARD_SKIPPED = 500


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


async def upsert_card(
    session: AsyncSession,
    card_id: str,
    label: str,
    detector_id: str,
    present: bool,
    *,
    inserted: bool = False,
) -> None:
    """A card event: the card is (still) at ``detector_id``, or gone. ``inserted`` starts a
    new listing, so the names skipped at an earlier insertion are forgotten."""
    await session.execute(
        text(
            "INSERT INTO card (id, label, detector_id, present) VALUES (:id, :l, :d, :p) "
            "ON CONFLICT (id) DO UPDATE SET last_seen_at = now(), present = :p, "
            "detector_id = :d, label = CASE WHEN :l = '' THEN card.label ELSE :l END, "
            "skipped = CASE WHEN :new THEN '[]'::jsonb ELSE card.skipped END"
        ),
        {"id": card_id, "l": label[:200], "d": detector_id, "p": present, "new": inserted},
    )


def merge_skipped(
    old: Sequence[Mapping[str, Any]],
    new: Sequence[Mapping[str, Any]],
    limit: int = MAX_CARD_SKIPPED,
) -> list[dict[str, Any]]:
    """``old`` then the entries of ``new`` whose path it does not hold yet, at most ``limit``."""
    out = [dict(e) for e in old][:limit]
    seen = {e.get("path") for e in out}
    for entry in new:
        if len(out) >= limit:
            break
        if entry.get("path") not in seen:
            seen.add(entry.get("path"))
            out.append({"path": entry.get("path"), "reason": entry.get("reason")})
    return out


async def record_card_facts(
    session: AsyncSession,
    card_id: str,
    *,
    free_bytes: int | None,
    capacity_bytes: int | None,
    skipped: Sequence[Mapping[str, Any]],
) -> None:
    """A listing's facts about its card (after :func:`upsert_card`): space, when reported,
    and the names not listed or refused, added to those of the same insertion."""
    values: dict[str, object] = {}
    if free_bytes is not None and capacity_bytes is not None:
        values |= {"free_bytes": free_bytes, "capacity_bytes": capacity_bytes}
    if skipped:
        old = await session.scalar(select(Card.skipped).where(Card.id == card_id).with_for_update())
        values["skipped"] = merge_skipped(old or [], skipped)
    if values:
        await session.execute(update(Card).where(Card.id == card_id).values(**values))
