"""QR candidates by duration, not size (issue 18): the rule, the wire field the hub validates,
and a card listed by the real detector code through the hub's parser into the ingest ledger
(real PostgreSQL)."""

from __future__ import annotations

import json
import struct
import uuid
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from agents.ingest import IngestDeps, handle_detector_event
from detector import protocol
from detector.listing import read_card, valid_entries
from detector.volume import Volume
from storage import imports
from storage.enums import FileKind
from streams import records
from streams.settings import Settings

GOPRO = Path(__file__).resolve().parents[3] / "shared" / "media" / "gopro"
MB = 1_000_000
BIG = 150 * MB  # the size rule's default bound


def header_only_mp4(seconds: float, pad: int = 0) -> bytes:
    """ftyp + mdat (``pad`` zero bytes) + moov/mvhd saying ``seconds``: a clip as the header
    parser sees it."""

    def box(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I4s", 8 + len(body), kind) + body

    mvhd = box(b"mvhd", struct.pack(">B3xIIII", 0, 0, 0, 1000, round(seconds * 1000)) + bytes(80))
    return box(b"ftyp", b"isom" + bytes(4)) + box(b"mdat", bytes(pad)) + box(b"moov", mvhd)


def sparse_chapter(path: Path, seconds: float) -> None:
    """A sparse 4 GB chapter: ftyp, a 64-bit mdat of 4 GiB, moov at the end."""
    moov = header_only_mp4(seconds)[24:]  # after its ftyp (16 bytes) and empty mdat (8)
    with open(path, "wb") as f:
        f.write(header_only_mp4(0)[:16] + struct.pack(">I4sQ", 1, b"mdat", 4 << 30))
        f.seek(16 + (4 << 30))
        f.write(moov)


# --- the rule (pure) ----------------------------------------------------------------------


def test_a_known_duration_decides_and_the_size_only_when_it_is_unknown() -> None:
    rule = {"qr_candidate_max_bytes": BIG, "qr_candidate_max_s": 15.0}
    assert imports.is_qr_candidate(30 * MB, 14.9, **rule)
    assert imports.is_qr_candidate(30 * MB, 15.0, **rule)
    assert not imports.is_qr_candidate(30 * MB, 15.1, **rule)  # small but long: never scanned
    assert not imports.is_qr_candidate(2 * MB, 3600.0, **rule)  # a long low-bitrate recording
    assert imports.is_qr_candidate(400 * MB, 12.0, **rule)  # 5.3K at 240 Mbit/s: still a ticket
    assert imports.is_qr_candidate(BIG, None, **rule)  # unknown: the old size rule
    assert not imports.is_qr_candidate(BIG + 1, None, **rule)
    # without a duration rule (the old call) only the size counts
    assert imports.is_qr_candidate(30 * MB, 600.0, BIG, None)


def test_classify_listing_uses_the_durations_it_is_given() -> None:
    entries = [
        ("DCIM/100GOPRO/GX010001.MP4", 20 * MB, 1.0, "video"),  # a 9 s ticket clip
        ("DCIM/100GOPRO/GX010002.MP4", 90 * MB, 2.0, "video"),  # 90 MB, but 45 s of jump
        ("DCIM/100GOPRO/GX010003.MP4", 4_000 * MB, 3.0, "video"),  # a 4 GB chapter
        ("DCIM/100GOPRO/GX010004.MP4", 20 * MB, 4.0, "video"),  # unknown: small -> candidate
        ("DCIM/100GOPRO/GL010001.LRV", 1 * MB, 1.0, "proxy"),
    ]
    durations = {
        "DCIM/100GOPRO/GX010001.MP4": 9.0,
        "DCIM/100GOPRO/GX010002.MP4": 45.0,
        "DCIM/100GOPRO/GX010003.MP4": 530.0,
        "DCIM/100GOPRO/GL010001.LRV": 9.0,  # a proxy stays a proxy whatever its length
    }
    listed = imports.classify_listing(entries, BIG, qr_candidate_max_s=15.0, durations=durations)
    assert [f.kind for f in listed] == [
        FileKind.QR_CANDIDATE,
        FileKind.FOOTAGE,
        FileKind.FOOTAGE,
        FileKind.QR_CANDIDATE,
        FileKind.PROXY,
    ]
    # the old call (no durations): size alone, as before issue 18
    old = imports.classify_listing(entries, BIG)
    assert [f.kind for f in old][:3] == [FileKind.QR_CANDIDATE] * 2 + [FileKind.FOOTAGE]


def test_the_settings_default_is_a_15_second_ticket_clip() -> None:
    assert Settings.model_fields["qr_candidate_max_s"].default == 15.0


# --- the wire field: sent by the detector, validated by the hub ---------------------------


def _frame(*durations: object) -> str:
    files = [
        {"path": f"DCIM/100GOPRO/GX01000{i}.MP4", "size": 10, "mtime": 1.0, "duration": d}
        for i, d in enumerate(durations)
    ]
    return json.dumps({"v": 1, "type": "file_list", "card_id": "card-1", "files": files})


def test_the_hub_keeps_a_believable_duration_and_drops_the_rest_keeping_the_entry(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bad: list[object] = [-1, 86_401, "12", True, [1]]
    msg, refused = protocol.parse_detector_frame(_frame(12.5, 0, 86_400, 7, *bad))
    assert refused == []
    assert isinstance(msg, protocol.FileList)
    assert [f.duration for f in msg.files] == [12.5, 0.0, 86_400.0, 7.0, *[None] * len(bad)]
    dropped = [r for r in caplog.records if "left out (the size rule decides" in r.getMessage()]
    assert len(dropped) == len(bad)
    assert "GX010004.MP4" in dropped[0].getMessage()


def test_nan_and_infinity_in_the_json_are_dropped_too() -> None:
    raw = _frame(1.0, 2.0).replace("1.0}", "NaN}", 1).replace("2.0}", "Infinity}", 1)
    assert "NaN" in raw and "Infinity" in raw
    msg, _ = protocol.parse_detector_frame(raw)
    assert isinstance(msg, protocol.FileList)
    assert [f.duration for f in msg.files] == [None, None]
    with pytest.raises(protocol.ProtocolError, match="duration"):
        protocol.parse_detector_message(raw)  # the strict parse refuses the frame


def test_an_older_detector_without_durations_still_lists_and_none_is_never_sent() -> None:
    old = {"path": "DCIM/100GOPRO/GX010001.MP4", "size": 10, "mtime": 1.0, "kind": "video"}
    raw = json.dumps({"v": 1, "type": "file_list", "card_id": "card-1", "files": [old]})
    msg, _ = protocol.parse_detector_frame(raw)
    assert isinstance(msg, protocol.FileList)
    assert msg.files[0].duration is None
    assert "duration" not in protocol.dump(msg)  # an older hub is never sent the field empty
    entry = protocol.FileEntry(path=old["path"], size=10, mtime=1.0)  # type: ignore[arg-type]
    assert "duration" not in entry.model_dump(exclude_none=True)
    with pytest.raises(ValueError):
        protocol.FileEntry(path="DCIM/A.MP4", size=1, mtime=1.0, duration=float("nan"))


# --- a card, end to end through the real code -------------------------------------------


def _gopro(name: str) -> bytes:
    path = GOPRO / name
    if not path.exists():
        pytest.skip(f"{path} is not here (the shared GoPro media)")
    return path.read_bytes()


class Requests:
    def __init__(self) -> None:
        self.sent: list[records.CopyRequest] = []

    async def __call__(self, key: bytes, value: bytes) -> None:
        self.sent.append(records.decode(records.CopyRequest, value))


async def test_a_card_s_candidates_are_its_short_clips_whatever_their_size(
    tmp_path: Path, settings: Settings, clean_db: AsyncEngine, pg: asyncpg.Connection
) -> None:
    """Detector listing -> the wire -> the hub's parser -> the ingest ledger: the real 13 s
    GoPro clip is a candidate, a small 40 s clip and a (sparse) 4 GB 9-minute chapter are
    footage, a clip whose header is missing falls back to its size."""
    root = tmp_path / "card"
    folder = root / "DCIM" / "100GOPRO"
    folder.mkdir(parents=True)
    (folder / "GX010001.MP4").write_bytes(_gopro("karma.mp4"))  # 13.013 s, 4 MB
    (folder / "GX010002.MP4").write_bytes(header_only_mp4(40.0, pad=1000))  # 40 s, 1 KB
    sparse_chapter(folder / "GX010003.MP4", 530.0)
    (folder / "GX010004.MP4").write_bytes(b"\x00" * 2048)  # no header: the size rule
    (folder / "GL010001.LRV").write_bytes(b"\x00" * 100)

    card = read_card(Volume("card-1", root))
    entries, skipped = valid_entries(card.files)
    assert skipped == []
    durations = {e.path.rsplit("/", 1)[-1]: e.duration for e in entries}
    assert durations["GX010001.MP4"] == pytest.approx(13.013, abs=1e-3)
    assert (durations["GX010002.MP4"], durations["GX010003.MP4"]) == (40.0, 530.0)
    assert durations["GX010004.MP4"] is None
    frame = protocol.dump(protocol.FileList(type="file_list", card_id="card-1", files=entries))
    msg, refused = protocol.parse_detector_frame(frame)  # what the hub does with it
    assert refused == [] and isinstance(msg, protocol.FileList)
    event = records.DetectorEvent(
        event_id=uuid.uuid4().hex,
        event="file_list",
        detector_id="det-1",
        card_id="card-1",
        files=[f.model_dump(exclude_none=True) for f in msg.files],  # as the hub forwards it
    )
    requests = Requests()
    await handle_detector_event(IngestDeps(settings, clean_db, requests), records.encode(event))

    rows = await pg.fetch("SELECT name, kind FROM imported_file ORDER BY name")
    assert {r["name"]: r["kind"] for r in rows} == {
        "GL010001.LRV": "proxy",
        "GX010001.MP4": "qr_candidate",
        "GX010002.MP4": "footage",
        "GX010003.MP4": "footage",
        "GX010004.MP4": "qr_candidate",
    }
    # candidates are asked for first (priority 0), footage after; proxies not at all
    order = [(r.path.rsplit("/", 1)[-1], r.priority) for r in requests.sent]
    assert order[:2] == [("GX010001.MP4", 0), ("GX010004.MP4", 0)]
    assert sorted(order[2:]) == [("GX010002.MP4", 10), ("GX010003.MP4", 10)]


async def test_with_durations_unknown_the_size_rule_applies_as_before(
    settings: Settings, clean_db: AsyncEngine, pg: asyncpg.Connection
) -> None:
    """An older detector sends no durations: a small file is a candidate, a big one is not."""
    files: list[dict[str, object]] = [
        {"path": "DCIM/100GOPRO/GX010001.MP4", "size": 40 * MB, "mtime": 1.0, "kind": "video"},
        {"path": "DCIM/100GOPRO/GX010002.MP4", "size": 900 * MB, "mtime": 2.0, "kind": "video"},
    ]
    event = records.DetectorEvent(
        event_id=uuid.uuid4().hex,
        event="file_list",
        detector_id="det-1",
        card_id="card-1",
        files=files,
    )
    await handle_detector_event(IngestDeps(settings, clean_db, Requests()), records.encode(event))
    rows = await pg.fetch("SELECT name, kind FROM imported_file ORDER BY name")
    assert [(r["name"], r["kind"]) for r in rows] == [
        ("GX010001.MP4", "qr_candidate"),
        ("GX010002.MP4", "footage"),
    ]
