"""The import ledger: pure classification/planning, and the one-statement diff on PostgreSQL."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy.ext.asyncio import AsyncEngine

from detector.protocol import check_relative_path
from storage import imports
from storage.imports import DiffRow, ListedFile

QR_MAX = 100_000_000


def card_listing(n: int = 50) -> list[tuple[str, int, float, str]]:
    """n entries: every 5th small (QR candidate), the last 5 proxies (.LRV/.THM)."""
    out = []
    for i in range(n - 5):
        size = 40_000_000 if i % 5 == 0 else 900_000_000 + i
        out.append((f"DCIM/100GOPRO/GX01{i:04d}.MP4", size, 1_700_000_000.0 + i * 60, "video"))
    for i in range(5):
        ext = "LRV" if i % 2 else "THM"
        out.append((f"DCIM/100GOPRO/GL01{i:04d}.{ext}", 1000 + i, 1_700_000_000.0 + i, "video"))
    return out


def test_classify_marks_proxies_by_extension_whatever_the_detector_says() -> None:
    listed = imports.classify_listing(card_listing(), QR_MAX)
    kinds = [f.kind for f in listed]
    assert kinds.count("proxy") == 5
    assert kinds.count("qr_candidate") == 9
    assert kinds.count("footage") == 36


def test_classify_deduplicates_by_natural_key_and_skips_non_video() -> None:
    entries = [
        ("DCIM/100GOPRO/GX010001.MP4", 10, 5.0, "video"),
        ("DCIM/100GOPRO/GX010001.MP4", 10, 5.0, "video"),  # listed twice: one file
        ("DCIM/101GOPRO/GX010001.MP4", 10, 5.0, "video"),  # same name, other folder: another
        ("DCIM/100GOPRO/notes.txt", 10, 5.0, "other"),
    ]
    listed = imports.classify_listing(entries, QR_MAX)
    assert [f.path for f in listed] == ["DCIM/100GOPRO/GX010001.MP4", "DCIM/101GOPRO/GX010001.MP4"]


async def test_same_name_size_and_mtime_in_two_folders_are_two_files(
    clean_db: AsyncEngine,
) -> None:
    """Regression: the natural key took the bare name, so the second folder's clip was taken
    for the first and never copied."""
    entries = [
        ("DCIM/100GOPRO/GX010001.MP4", 10, 5.0, "video"),
        ("DCIM/101GOPRO/GX010001.MP4", 10, 5.0, "video"),
    ]
    listed = imports.classify_listing(entries, QR_MAX)
    async with clean_db.begin() as conn:
        rows = await imports.record_listing(conn, "card-A", "det-1", listed)
    assert sorted(r.path for r in rows) == [e[0] for e in entries]
    assert len({r.file_id for r in rows}) == 2 and all(r.inserted for r in rows)
    plan = imports.plan_copies("card-A", rows)
    assert sorted(p.path for p in plan) == [e[0] for e in entries]
    assert len({p.destination for p in plan}) == 2
    async with clean_db.begin() as conn:  # listed again: the same two, nothing new
        again = await imports.record_listing(conn, "card-A", "det-1", listed)
    assert {r.file_id for r in again} == {r.file_id for r in rows}
    assert not any(r.inserted for r in again)


def _row(i: int, kind: str, status: str, mtime: int) -> DiffRow:
    return DiffRow(i, f"F{i}.MP4", f"DCIM/F{i}.MP4", 10, mtime, kind, status, False)  # type: ignore[arg-type]


def test_plan_puts_every_qr_candidate_before_any_footage_and_skips_imported() -> None:
    rows = [
        _row(1, "footage", "listed", 1),
        _row(2, "qr_candidate", "listed", 9),
        _row(3, "footage", "imported", 0),
        _row(4, "proxy", "ignored", 0),
        _row(5, "qr_candidate", "requested", 5),
        _row(6, "footage", "failed", 3),
    ]
    plan = imports.plan_copies("card-1", rows)
    assert [p.file_id for p in plan] == [5, 2, 1, 6]
    assert [p.priority for p in plan] == [0, 0, 10, 10]


@given(card=st.text(max_size=60), name=st.text(max_size=300), file_id=st.integers(0, 10**12))
def test_destination_is_always_a_safe_relative_path(card: str, name: str, file_id: int) -> None:
    dest = imports.destination_for(card, file_id, name)
    assert check_relative_path(dest) == dest
    assert dest.startswith("cards/")


async def test_diff_records_new_files_once_and_reports_ledger_status(clean_db: AsyncEngine) -> None:
    listed = imports.classify_listing(card_listing(), QR_MAX)
    async with clean_db.begin() as conn:
        first = await imports.record_listing(conn, "card-A", "det-1", listed)
    assert len(first) == 50 and all(r.inserted for r in first)
    # 10 of them get imported
    async with clean_db.begin() as conn:
        for r in [r for r in first if r.kind != "proxy"][:10]:
            assert await imports.record_imported(conn, r.file_id, "x", "ab", "xxh3_128")
    async with clean_db.begin() as conn:
        second = await imports.record_listing(conn, "card-A", "det-1", listed)
    assert not any(r.inserted for r in second)
    assert {r.file_id for r in second} == {r.file_id for r in first}
    plan = imports.plan_copies("card-A", second)
    assert len(plan) == 50 - 10 - 5
    # the same names on another card are other files
    async with clean_db.begin() as conn:
        other = await imports.record_listing(conn, "card-B", "det-1", listed)
    assert all(r.inserted for r in other)


async def test_failed_copy_never_overrides_an_import(clean_db: AsyncEngine) -> None:
    f = ListedFile("GX010001.MP4", "DCIM/GX010001.MP4", 5, 1, "footage")
    async with clean_db.begin() as conn:
        (row,) = await imports.record_listing(conn, "c", "d", [f])
        await imports.mark_requested(conn, "d", [row.file_id])
        assert await imports.record_imported(conn, row.file_id, "p", "h", "xxh3_128")
        assert not await imports.record_imported(conn, row.file_id, "p", "h", "xxh3_128")
        assert not await imports.record_failed(conn, row.file_id, "late failure")
        await imports.mark_requested(conn, "d", [row.file_id])
        state = await imports.load_file(conn, row.file_id)
    assert state is not None and state["status"] == "imported"
