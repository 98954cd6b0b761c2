"""Card safety: safe to remove only when nothing exists only on the card."""

from __future__ import annotations

import asyncpg
from sqlalchemy.ext.asyncio import AsyncEngine

from storage.cards import CardSafety, card_safety


def safety(**kw: object) -> CardSafety:
    base: dict[str, object] = dict(
        card_id="c",
        present=True,
        listed=3,
        imported=3,
        outstanding=0,
        failed=0,
        free_bytes=None,
        capacity_bytes=None,
    )
    base.update(kw)
    return CardSafety(**base)  # type: ignore[arg-type]


def test_safe_only_when_every_file_is_imported_and_none_was_skipped() -> None:
    assert safety().safe_to_remove
    assert not safety(outstanding=1).safe_to_remove
    assert not safety(failed=1).safe_to_remove
    assert not safety(skipped=({"path": "GX01\\xff.MP4", "reason": "name"},)).safe_to_remove


def test_nearly_full_below_the_fraction_and_unknown_is_not_full() -> None:
    assert safety(free_bytes=5, capacity_bytes=100).nearly_full()
    assert not safety(free_bytes=50, capacity_bytes=100).nearly_full()
    assert not safety().nearly_full()
    assert not safety(free_bytes=0, capacity_bytes=0).nearly_full()


async def test_card_safety_counts_footage_not_proxies(
    clean_db: AsyncEngine, pg: asyncpg.Connection
) -> None:
    await pg.execute(
        "INSERT INTO card (id, free_bytes, capacity_bytes) VALUES ('card-1', 10, 1000)"
    )
    for i, (kind, status) in enumerate(
        [
            ("footage", "imported"),
            ("qr_candidate", "requested"),
            ("proxy", "ignored"),
            ("footage", "failed"),
        ]
    ):
        await pg.execute(
            "INSERT INTO imported_file (card_id, name, path, size, mtime_ms, kind, status) "
            "VALUES ('card-1', $1, $2, 1, 1, $3, $4)",
            f"GX01000{i}.MP4",
            f"DCIM/100GOPRO/GX01000{i}.MP4",
            kind,
            status,
        )
    async with clean_db.connect() as conn:
        found = await card_safety(conn, ["card-1", "unknown"])
    [s] = found.values()
    assert (s.listed, s.imported, s.outstanding, s.failed) == (3, 1, 1, 1)
    assert not s.safe_to_remove and s.nearly_full()
