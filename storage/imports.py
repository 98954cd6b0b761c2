"""The import ledger: diff a card's file list against ``imported_file``, request, record copies.

The diff is ONE set-based query per list (``unnest`` arrays joined to the natural key), never one
query per file; new files are then recorded with one ``INSERT ... ON CONFLICT DO NOTHING``.
Planning what to request is a pure function over the diff rows.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from storage import enums

QR_PRIORITY = 0
FOOTAGE_PRIORITY = 10

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class ListedFile:
    """One entry of a card listing, classified (pure data)."""

    name: str
    path: str
    size: int
    mtime_ms: int
    kind: enums.FileKind


@dataclass(frozen=True)
class DiffRow:
    """A listed file with what the ledger knows about it."""

    file_id: int
    name: str
    path: str
    size: int
    mtime_ms: int
    kind: enums.FileKind
    status: str
    inserted: bool


@dataclass(frozen=True)
class PlannedCopy:
    """A card file to copy, as ``records.CopyRequest.for_file`` takes it."""

    file_id: int
    path: str
    size: int
    mtime_ms: int
    destination: str
    priority: int


def is_qr_candidate(
    size: int,
    duration: float | None,
    qr_candidate_max_bytes: int,
    qr_candidate_max_s: float | None,
) -> bool:
    """Is a video a QR candidate (pure)? By its duration when known and a duration rule is
    given: a ticket clip is short, and a long clip is never one; else (an older detector, a
    truncated or non-MP4 file) by the old size rule."""
    if duration is not None and qr_candidate_max_s is not None:
        return duration <= qr_candidate_max_s
    return size <= qr_candidate_max_bytes


def classify_listing(
    entries: Iterable[tuple[str, int, float, str]],
    qr_candidate_max_bytes: int,
    *,
    qr_candidate_max_s: float | None = None,
    durations: Mapping[str, float | None] | None = None,
) -> list[ListedFile]:
    """(path, size, mtime seconds, detector's kind) -> ListedFile, deduplicated by natural key
    (the path, folder included: ``100GOPRO/GX010001.MP4`` and ``101GOPRO/GX010001.MP4`` of one
    size and mtime are two files).

    Proxies/thumbnails are recognised by extension here too: the detector's word is not trusted.
    A video is a QR candidate by :func:`is_qr_candidate`: ``durations`` maps a path to the
    duration its detector read (issue 18); without a duration the size decides.
    """
    from detector.protocol import classify

    seen: set[tuple[str, int, int]] = set()
    out: list[ListedFile] = []
    for path, size, mtime, claimed in entries:
        name = path.rsplit("/", 1)[-1]
        mtime_ms = round(mtime * 1000)
        key = (path, size, mtime_ms)
        if key in seen:
            continue
        seen.add(key)
        ours = classify(path)
        if ours == "other":
            continue
        kind: enums.FileKind
        duration = durations.get(path) if durations is not None else None
        if ours == "proxy" or claimed == "proxy":
            kind = enums.FileKind.PROXY
        elif is_qr_candidate(size, duration, qr_candidate_max_bytes, qr_candidate_max_s):
            kind = enums.FileKind.QR_CANDIDATE
        else:
            kind = enums.FileKind.FOOTAGE
        out.append(ListedFile(name, path, size, mtime_ms, kind))
    return out


def destination_for(card_id: str, file_id: int, name: str) -> str:
    """Where a file lands under the share root: derived from ids only, never from free text."""
    safe_card = _UNSAFE.sub("_", card_id)[:80]
    if safe_card in ("", ".", ".."):  # never a path segment that is not a folder of its own
        safe_card = "card"
    safe_name = _UNSAFE.sub("_", name)[:120] or "file"
    return f"cards/{safe_card}/{file_id:08d}_{safe_name}"


def priority_for(kind: str) -> int:
    """A file's copy priority: QR candidates first (they decide whose the footage is)."""
    return QR_PRIORITY if kind == enums.FileKind.QR_CANDIDATE else FOOTAGE_PRIORITY


def plan_copies(card_id: str, rows: Sequence[DiffRow]) -> list[PlannedCopy]:
    """What to ask the detector for: every non-proxy file not imported yet, QR candidates first.

    A file requested before but never imported (card pulled, copy failed) is asked for again.
    """
    wanted = [r for r in rows if r.kind != "proxy" and r.status != "imported"]
    wanted.sort(key=lambda r: (r.kind != "qr_candidate", r.mtime_ms, r.path))
    return [
        PlannedCopy(
            r.file_id,
            r.path,
            r.size,
            r.mtime_ms,
            destination_for(card_id, r.file_id, r.name),
            priority_for(r.kind),
        )
        for r in wanted
    ]


_DIFF_SQL = text(
    """
SELECT i.ord, f.id, f.status
FROM unnest(CAST(:paths AS text[]), CAST(:sizes AS bigint[]), CAST(:mtimes AS bigint[]))
     WITH ORDINALITY AS i(path, size, mtime_ms, ord)
JOIN imported_file f ON f.card_id = :card_id AND f.path = i.path
     AND f.size = i.size AND f.mtime_ms = i.mtime_ms
"""
)

_INSERT_SQL = text(
    """
INSERT INTO imported_file (card_id, name, path, size, mtime_ms, kind, status, detector_id)
SELECT :card_id, name, path, size, mtime_ms, kind,
       CASE WHEN kind = 'proxy' THEN 'ignored' ELSE 'listed' END, :detector_id
FROM unnest(CAST(:names AS text[]), CAST(:paths AS text[]), CAST(:sizes AS bigint[]),
            CAST(:mtimes AS bigint[]), CAST(:kinds AS text[]))
     AS t(name, path, size, mtime_ms, kind)
ON CONFLICT ON CONSTRAINT uq_imported_file_natural DO NOTHING
"""
)


def _arrays(card_id: str, files: Sequence[ListedFile]) -> dict[str, object]:
    return {
        "names": [f.name for f in files],
        "paths": [f.path for f in files],
        "sizes": [f.size for f in files],
        "mtimes": [f.mtime_ms for f in files],
        "kinds": [f.kind for f in files],
        "card_id": card_id,
    }


async def diff_listing(
    conn: AsyncConnection, card_id: str, files: Sequence[ListedFile]
) -> tuple[list[DiffRow], list[ListedFile]]:
    """ONE set-based query: (files the ledger knows, with their status; files it does not)."""
    if not files:
        return [], []
    params = _arrays(card_id, files)
    del params["names"], params["kinds"]
    known: dict[int, tuple[int, str]] = {
        int(ord_): (int(fid), str(status))
        for ord_, fid, status in await conn.execute(_DIFF_SQL, params)
    }
    rows: list[DiffRow] = []
    new: list[ListedFile] = []
    for i, f in enumerate(files, start=1):
        hit = known.get(i)
        if hit is None:
            new.append(f)
        else:
            rows.append(DiffRow(hit[0], f.name, f.path, f.size, f.mtime_ms, f.kind, hit[1], False))
    return rows, new


async def record_listing(
    conn: AsyncConnection, card_id: str, detector_id: str, files: Sequence[ListedFile]
) -> list[DiffRow]:
    """Diff a listing and record its new files: every listed file with its ledger status.

    New files are inserted in one statement (ON CONFLICT DO NOTHING: a redelivered or concurrent
    list inserts nothing twice), then looked up in one more.
    """
    known, new = await diff_listing(conn, card_id, files)
    if not new:
        return known
    params = _arrays(card_id, new)
    params["detector_id"] = detector_id
    await conn.execute(_INSERT_SQL, params)
    inserted, missing = await diff_listing(conn, card_id, new)
    if missing:  # cannot happen inside one transaction; never silently drop a file
        raise RuntimeError(f"{len(missing)} listed files vanished while being recorded")
    return known + [
        DiffRow(r.file_id, r.name, r.path, r.size, r.mtime_ms, r.kind, r.status, True)
        for r in inserted
    ]


_MARK_REQUESTED_SQL = text(
    """
UPDATE imported_file f SET status = 'requested', requested_at = now(),
       request_count = f.request_count + 1, detector_id = :detector_id, reason = ''
FROM (SELECT id, detector_id FROM imported_file
      WHERE id = ANY(CAST(:ids AS bigint[])) FOR UPDATE) AS old
WHERE f.id = old.id AND f.status NOT IN ('imported', 'ignored')
RETURNING old.detector_id
"""
)


async def mark_requested(
    conn: AsyncConnection, detector_id: str, file_ids: Sequence[int]
) -> dict[str, int]:
    """Ask ``detector_id`` for these files (never an imported or ignored one). A file asked of
    another station before moves to this one (its card moved, and this station listed it):
    returns how many moved from which station, so the caller can say so."""
    if not file_ids:
        return {}
    rows = await conn.execute(
        _MARK_REQUESTED_SQL, {"ids": list(file_ids), "detector_id": detector_id}
    )
    moved: dict[str, int] = {}
    for (previous,) in rows:
        if previous is not None and previous != detector_id:
            moved[str(previous)] = moved.get(str(previous), 0) + 1
    return moved


async def pending_request(
    conn: AsyncConnection | AsyncSession, detector_id: str, file_id: int
) -> bool:
    """Whether ``file_id`` is asked of ``detector_id`` and not delivered yet: the only copy a
    result (or progress) of that detector may be about. One primary-key lookup."""
    found = await conn.scalar(
        text(
            "SELECT 1 FROM imported_file WHERE id = :id AND detector_id = :d "
            "AND status IN ('requested', 'copying')"
        ),
        {"id": file_id, "d": detector_id},
    )
    return found is not None


@dataclass(frozen=True)
class CopyOutcome:
    """What the ledger did with a copy result."""

    file_id: int
    status: str  # imported | failed | waiting (share full) | ignored (stale/duplicate/unknown)
    reason: str = ""
    stored_path: str = ""
    newly_imported: bool = False


async def load_file(
    conn: AsyncConnection, file_id: int, *, lock: bool = False
) -> dict[str, object] | None:
    """The ledger row of a file (``lock``: FOR UPDATE, until the transaction ends)."""
    row = (
        (
            await conn.execute(
                text(
                    "SELECT id, card_id, name, path, size, mtime_ms, kind, status, detector_id, "
                    "stored_path FROM imported_file WHERE id = :id"
                    + (" FOR UPDATE" if lock else "")
                ),
                {"id": file_id},
            )
        )
        .mappings()
        .first()
    )
    return dict(row) if row else None


async def record_imported(
    conn: AsyncConnection, file_id: int, stored_path: str, content_hash: str, hash_algo: str
) -> bool:
    """Mark a verified copy imported; False when it already was (redelivery)."""
    result = await conn.execute(
        text(
            "UPDATE imported_file SET status = 'imported', stored_path = :p, content_hash = :h, "
            "hash_algo = :a, imported_at = now(), reason = '' "
            "WHERE id = :id AND status <> 'imported'"
        ),
        {"id": file_id, "p": stored_path, "h": content_hash, "a": hash_algo},
    )
    return bool(result.rowcount)


async def record_failed(conn: AsyncConnection, file_id: int, reason: str) -> bool:
    """A failed copy never overrides an import that already succeeded."""
    result = await conn.execute(
        text(
            "UPDATE imported_file SET status = 'failed', reason = :r "
            "WHERE id = :id AND status NOT IN ('imported', 'ignored')"
        ),
        {"id": file_id, "r": reason[:2000]},
    )
    return bool(result.rowcount)


#: The reason of a file whose copy found the share full: it stays ``requested`` (pending: the
#: hub re-sends it when the detector connects, the card is not safe to remove) with this prefix.
WAITING_FOR_SPACE = "waiting for space"


async def record_waiting_for_space(conn: AsyncConnection, file_id: int, detail: str) -> bool:
    """The share was full: the file waits to be copied again, not failed. Never overrides an
    import (nor a final failure); False when nothing changed."""
    result = await conn.execute(
        text(
            "UPDATE imported_file SET status = 'requested', reason = :r "
            "WHERE id = :id AND status IN ('requested', 'copying')"
        ),
        {"id": file_id, "r": f"{WAITING_FOR_SPACE}: {detail}"[:2000]},
    )
    return bool(result.rowcount)


async def bump_counter(conn: AsyncConnection, name: str, by: int = 1) -> None:
    await conn.execute(
        text(
            "INSERT INTO counter (name, value) VALUES (:n, :v) "
            "ON CONFLICT (name) DO UPDATE SET value = counter.value + EXCLUDED.value"
        ),
        {"n": name, "v": by},
    )


_MISSING_SQL = text(
    """
SELECT i.ord
FROM unnest(CAST(:paths AS text[]), CAST(:sizes AS bigint[]), CAST(:mtimes AS bigint[]))
     WITH ORDINALITY AS i(path, size, mtime_ms, ord)
WHERE NOT EXISTS (SELECT 1 FROM imported_file f WHERE f.card_id = :card_id
                  AND f.path = i.path AND f.size = i.size AND f.mtime_ms = i.mtime_ms)
"""
)


async def unrecorded(
    conn: AsyncConnection, card_id: str, keys: Sequence[tuple[str, int, int]]
) -> list[tuple[str, int, int]]:
    """The natural keys (path, size, mtime_ms) of ``card_id`` not in the ledger yet (one query)."""
    if not keys:
        return []
    params = {
        "card_id": card_id,
        "paths": [k[0] for k in keys],
        "sizes": [k[1] for k in keys],
        "mtimes": [k[2] for k in keys],
    }
    return [keys[int(ord_) - 1] for (ord_,) in await conn.execute(_MISSING_SQL, params)]


async def settled_files(
    conn: AsyncConnection, detector_id: str, file_ids: Sequence[int]
) -> tuple[dict[int, str], set[int]]:
    """Of files asked of ``detector_id``: those whose copy result is recorded (id -> card id),
    and those still waiting for it (requested or copying). Unknown ids are in neither."""
    if not file_ids:
        return {}, set()
    rows = await conn.execute(
        text(
            "SELECT id, card_id, status IN ('requested', 'copying') FROM imported_file "
            "WHERE id = ANY(CAST(:ids AS bigint[])) AND detector_id = :d"
        ),
        {"ids": list(file_ids), "d": detector_id},
    )
    settled: dict[int, str] = {}
    waiting: set[int] = set()
    for fid, card_id, open_ in rows:
        if open_:
            waiting.add(int(fid))
        else:
            settled[int(fid)] = str(card_id)
    return settled, waiting
