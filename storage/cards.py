"""What an operator (and the detector's screen) needs to know about a card: is it safe to remove,
is it nearly full, did the detector skip files, does the camera's clock look wrong.

"Safe to remove" means pulling the card loses nothing: every footage file it listed (proxies
aside) is verified and imported. A failed file is not safe: it exists only on the card; nor is a
file the station skipped (a name that is not valid Unicode): it too exists only on the card.

The hub is the one writer of ``card`` rows (:func:`upsert_card`, :func:`record_card_facts`):
presence and label from every card event; free/total bytes and the names that were not listed
(the detector's ``skipped`` and the entries the hub refused) from each listing. ``skipped``
starts empty at each insertion and collects the listings of that insertion.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from storage.models import Card

# a card with less than this share of its capacity free is "nearly full"
NEARLY_FULL_FRACTION = 0.10
#: Skipped names kept on one card row (the first ones; a card of thousands is one problem).
MAX_CARD_SKIPPED = 500


@dataclass(frozen=True)
class CardSafety:
    card_id: str
    present: bool
    listed: int  # footage files (proxies aside) ever listed from the card
    imported: int
    outstanding: int  # listed, requested or copying: still only on the card
    failed: int  # gave up with a reason: still only on the card
    free_bytes: int | None
    capacity_bytes: int | None
    skipped: tuple[dict[str, Any], ...] = field(default=())
    clock_warning: str = ""

    @property
    def safe_to_remove(self) -> bool:
        return self.outstanding == 0 and self.failed == 0 and not self.skipped

    def nearly_full(self, fraction: float = NEARLY_FULL_FRACTION) -> bool:
        if self.free_bytes is None or not self.capacity_bytes:
            return False
        return self.free_bytes < self.capacity_bytes * fraction


_SAFETY_SQL = text(
    """
SELECT c.id, c.present, c.free_bytes, c.capacity_bytes, c.skipped, c.clock_warning,
       count(f.id) FILTER (WHERE f.kind <> 'proxy'),
       count(f.id) FILTER (WHERE f.kind <> 'proxy' AND f.status = 'imported'),
       count(f.id) FILTER (WHERE f.kind <> 'proxy'
                            AND f.status IN ('listed', 'requested', 'copying')),
       count(f.id) FILTER (WHERE f.kind <> 'proxy' AND f.status = 'failed')
FROM card c LEFT JOIN imported_file f ON f.card_id = c.id
WHERE c.id = ANY(CAST(:ids AS text[]))
GROUP BY c.id
"""
)


async def card_safety(conn: AsyncConnection, card_ids: Sequence[str]) -> dict[str, CardSafety]:
    """Safety of each known card among `card_ids` (one query)."""
    rows = await conn.execute(_SAFETY_SQL, {"ids": list(card_ids)})
    return {
        str(r[0]): CardSafety(
            card_id=str(r[0]),
            present=bool(r[1]),
            free_bytes=r[2],
            capacity_bytes=r[3],
            skipped=tuple(r[4] or ()),
            clock_warning=r[5] or "",
            listed=int(r[6]),
            imported=int(r[7]),
            outstanding=int(r[8]),
            failed=int(r[9]),
        )
        for r in rows
    }


async def set_clock_warning(conn: AsyncConnection, card_id: str, warning: str) -> None:
    await conn.execute(
        text("UPDATE card SET clock_warning = :w WHERE id = :c AND clock_warning <> :w"),
        {"c": card_id, "w": warning},
    )


# --- the card row (written by the hub) ----------------------------------------------------------


@dataclass(frozen=True)
class CardPlacement:
    """What one card event did to the card row."""

    applied: bool  # False: a removal reported by a station that does not hold the card
    moved_from: str | None = None  # the station the card was at, when this event moved it


_UPSERT_CARD_SQL = text(
    """
INSERT INTO card (id, label, detector_id, present) VALUES (:id, :l, :d, :p)
ON CONFLICT (id) DO UPDATE SET last_seen_at = now(), present = :p, detector_id = :d,
    label = CASE WHEN :l = '' THEN card.label ELSE :l END,
    skipped = CASE WHEN :new THEN '[]'::jsonb ELSE card.skipped END,
    previous_detector_id = CASE WHEN card.detector_id <> :d THEN card.detector_id
                                ELSE card.previous_detector_id END,
    moved_at = CASE WHEN card.detector_id <> :d THEN now() ELSE card.moved_at END
WHERE :p OR card.detector_id IS NULL OR card.detector_id = :d
RETURNING card.id
"""
)


async def upsert_card(
    session: AsyncSession | AsyncConnection,
    card_id: str,
    label: str,
    detector_id: str,
    present: bool,
    *,
    inserted: bool = False,
) -> CardPlacement:
    """A card event: the card is (still) at ``detector_id``, or gone. ``inserted`` starts a
    new listing, so the names skipped at an earlier insertion are forgotten.

    A card seen at another station than before moved there (taken out of one reader, put in
    another's): the row remembers where it was and when it moved. A removal reported by a
    station that does not hold the card changes nothing (``applied`` is False)."""
    previous = await session.scalar(  # locked: the upsert below decides on this station
        text("SELECT detector_id FROM card WHERE id = :id FOR UPDATE"), {"id": card_id}
    )
    rows = await session.execute(
        _UPSERT_CARD_SQL,
        {"id": card_id, "l": label[:200], "d": detector_id, "p": present, "new": inserted},
    )
    if rows.first() is None:
        return CardPlacement(applied=False)
    moved = previous is not None and previous != detector_id
    return CardPlacement(applied=True, moved_from=str(previous) if moved else None)


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
    session: AsyncSession | AsyncConnection,
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
