from __future__ import annotations

import itertools
import os
import shutil
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2
import pytest

from agents.demo_card import (
    DEFAULT_START,
    DemoCard,
    DemoCardError,
    add_jump,
    load_demo_card,
    plan_jump,
    summary_table,
    write_demo_card,
)
from agents.demo_clips import ClipStyle, proxy_names
from agents.media.probe import probe
from agents.qr.decode import QrSettings, decode_clip
from agents.qr.payload import parse_booking
from agents.sessions import (
    CardFile,
    FileKind,
    GoProName,
    QrOutcome,
    SessionStatus,
    group_sessions,
    parse_gopro_name,
)
from streams.cli.main import main as skyreel_main

# Tests bound the decoder by frames, not wall-clock: a loaded box must not change an outcome.
UNHURRIED = QrSettings(budget_s=60.0)
FOOTAGE_S, QR_S = 1.0, 1.5


def _fast_card(root: Path, jumps: int) -> DemoCard:
    return write_demo_card(root, jumps, footage_seconds=FOOTAGE_S, qr_seconds=QR_S, fps=15)


@pytest.fixture(scope="module")
def card(tmp_path_factory: pytest.TempPathFactory) -> DemoCard:
    return _fast_card(tmp_path_factory.mktemp("card") / "SDCARD", 3)


def _on_disk(root: Path) -> dict[str, tuple[int, float]]:
    return {
        p.relative_to(root).as_posix(): (p.stat().st_size, p.stat().st_mtime)
        for p in (root / "DCIM").rglob("*")
        if p.is_file()
    }


def _gopro(rel: str) -> GoProName:
    gp = parse_gopro_name(Path(rel).name)
    assert gp is not None, rel
    return gp


def _capture_order(names: list[str]) -> list[str]:
    return sorted(names, key=lambda rel: (_gopro(rel).recording, _gopro(rel).chapter))


def _created(card: DemoCard, rel: str) -> datetime:
    created = probe(card.path(rel)).creation_time
    assert created is not None, rel
    return created


def _card_files(card: DemoCard) -> list[CardFile]:
    """What the backend would know about each video: probe facts and the QR result."""
    files = []
    for rel in card.videos:
        info = probe(card.path(rel))
        result = decode_clip(card.path(rel), UNHURRIED)
        files.append(
            CardFile(
                file_id=rel,
                name=Path(rel).name,
                relative_path=rel,
                capture_time=info.creation_time
                or datetime.fromtimestamp(card.path(rel).stat().st_mtime, UTC),
                kind=FileKind.QR_CANDIDATE,  # every clip is small: all are decoded
                qr_status=QrOutcome(result.status),
                booking=result.booking,
            )
        )
    return files


# ------------------------------------------------------------------ planning (pure)


def test_plan_of_a_jump_is_deterministic_and_its_payload_parses_to_its_booking() -> None:
    style = ClipStyle(seed=11)
    for ordinal in range(1, 9):
        jump, clips = plan_jump(ordinal, DEFAULT_START, 10, style)
        again, clips_again = plan_jump(ordinal, DEFAULT_START, 10, style)
        assert (jump, clips) == (again, clips_again)
        booking = parse_booking(jump.payload)
        assert (booking.booking_id, booking.passenger) == (jump.booking_id, jump.passenger)
        assert 2 <= len(clips) <= 4 and clips[0].payload == jump.payload
        starts = [c.start for c in clips]
        assert starts == sorted(starts) and len(set(starts)) == len(starts)
    other, _ = plan_jump(1, DEFAULT_START, 10, ClipStyle(seed=12))
    assert other.booking_id != plan_jump(1, DEFAULT_START, 10, style)[0].booking_id


def test_payloads_come_in_every_accepted_format_with_accented_names() -> None:
    payloads = [plan_jump(o, DEFAULT_START, 1, ClipStyle())[0] for o in range(1, 9)]
    texts = [j.payload for j in payloads]
    assert any(t.startswith("{") for t in texts)
    assert any(t.startswith("https://") for t in texts)
    assert any(t.startswith("booking=") for t in texts)
    assert any(not j.passenger.isascii() for j in payloads)


def test_chaptered_jump_has_two_chapters_of_one_recording() -> None:
    _, clips = plan_jump(1, DEFAULT_START, 40, ClipStyle(), chaptered=True)
    last = [_gopro(c.name) for c in clips[-2:]]
    assert [(g.recording, g.chapter) for g in last] == [
        (last[0].recording, 1),
        (last[0].recording, 2),
    ]
    assert proxy_names("GX020041.MP4") == ("GL020041.LRV", "GX020041.THM")


# ------------------------------------------------------------------ the written card


def test_card_holds_gopro_names_chapters_and_a_proxy_and_thumbnail_per_video(
    card: DemoCard,
) -> None:
    assert set(_on_disk(card.root)) == set(card.all_files)
    names = {Path(f).name for f in card.all_files}
    assert all(f.startswith("DCIM/100GOPRO/") for f in card.all_files)
    videos = [Path(v).name for v in card.videos]
    assert len(videos) == 1 + sum(1 + len(j.footage_files) for j in card.jumps)
    for video in videos:
        assert parse_gopro_name(video) is not None
        assert set(proxy_names(video)) <= names
    assert any(_gopro(v).chapter == 2 for v in videos)
    thm = cv2.imread(str(card.root / "DCIM/100GOPRO/GX010001.THM"))
    assert thm is not None and thm.shape == (120, 160, 3)
    lrv = probe(card.root / "DCIM/100GOPRO/GL010001.LRV")
    assert (lrv.video_codec, lrv.width, lrv.height) == ("h264", 160, 90)


def test_capture_times_increase_in_creation_time_and_mtime(card: DemoCard) -> None:
    ordered = _capture_order(list(card.videos))
    created = [_created(card, f) for f in ordered]
    mtimes = [card.path(f).stat().st_mtime for f in ordered]
    assert created == sorted(created) and len(set(created)) == len(created)
    assert mtimes == sorted(mtimes) and len(set(mtimes)) == len(mtimes)
    assert created[0] == DEFAULT_START
    qr_times = [_created(card, j.qr_file) for j in card.jumps]
    gaps = [b - a for a, b in itertools.pairwise(qr_times)]
    assert all(timedelta(minutes=20) < g < timedelta(hours=1) for g in gaps)


def test_footage_clips_have_h264_video_and_aac_audio(card: DemoCard) -> None:
    for rel in (*card.unassigned_files, *(f for j in card.jumps for f in j.footage_files)):
        info = probe(card.path(rel))
        assert info.video_codec == "h264" and info.has_audio, rel
        assert {s.codec for s in info.streams if s.kind == "audio"} == {"aac"}
        assert (info.width, info.height) == (640, 360)
    for rel in card.unassigned_files:  # the camera check; the jumps' length is their profile's
        assert probe(card.path(rel)).duration_s == pytest.approx(FOOTAGE_S, abs=0.1)
    for jump in card.jumps:
        assert jump.truth is not None
        recorded = sum(probe(card.path(f)).duration_s or 0 for f in jump.footage_files)
        assert recorded == pytest.approx(jump.truth.duration_s, abs=0.5)


def test_readable_qr_clips_decode_to_their_booking_and_the_covered_one_is_unreadable(
    card: DemoCard,
) -> None:
    assert [j.unreadable for j in card.jumps] == [False, True, False, False]
    for jump in card.jumps:
        info = probe(card.path(jump.qr_file))
        assert info.duration_s == pytest.approx(QR_S, abs=0.1)
        result = decode_clip(card.path(jump.qr_file), UNHURRIED)
        if jump.unreadable:
            assert result.status == "unreadable", result.reason
        else:
            assert result.status == "decoded", result.reason
            assert result.booking is not None
            assert result.booking.booking_id == jump.booking_id
            assert result.booking.passenger == jump.passenger


def test_grouping_the_card_gives_decoded_review_and_unassigned_sessions(card: DemoCard) -> None:
    sessions = group_sessions(_card_files(card))
    assert Counter(s.status for s in sessions) == {
        SessionStatus.DECODED: 3,
        SessionStatus.NEEDS_REVIEW: 1,
        SessionStatus.UNASSIGNED: 1,
    }
    assert sessions[0].status is SessionStatus.UNASSIGNED
    assert sessions[0].footage_file_ids == card.unassigned_files
    by_qr = {s.qr_file_id: s for s in sessions if s.qr_file_id}
    for jump in card.jumps:
        session = by_qr[jump.qr_file]
        assert session.footage_file_ids == jump.footage_files
        if jump.unreadable:
            assert session.status is SessionStatus.NEEDS_REVIEW
        else:
            assert session.booking is not None
            assert session.booking.passenger == jump.passenger


def test_add_jump_writes_only_new_files_later_than_everything_on_the_card(
    card: DemoCard, tmp_path: Path
) -> None:
    root = tmp_path / "SDCARD"
    shutil.copytree(card.root, root)  # copy2 keeps the mtimes
    before = _on_disk(root)
    jump = add_jump(root)
    after = _on_disk(root)
    assert {k: v for k, v in after.items() if k in before} == before
    new = set(after) - set(before)
    assert new == {jump.qr_file, *jump.footage_files, *jump.proxy_files}
    assert min(after[f][1] for f in new) > max(m for _, m in before.values())
    old_numbers = {_gopro(f).recording for f in card.videos}
    assert _gopro(jump.qr_file).recording == max(old_numbers) + 1
    assert jump.ordinal == len(card.jumps) + 1
    assert jump.booking_id not in {j.booking_id for j in card.jumps}
    result = decode_clip(root / jump.qr_file, UNHURRIED)
    assert result.booking is not None and result.booking.booking_id == jump.booking_id
    reloaded = load_demo_card(root)
    assert reloaded.jumps[-1] == jump and set(reloaded.all_files) == set(after)


def test_writing_over_a_card_is_refused_and_adding_needs_a_demo_card(
    card: DemoCard, tmp_path: Path
) -> None:
    with pytest.raises(DemoCardError):
        _fast_card(card.root, 1)
    (tmp_path / "DCIM" / "100GOPRO").mkdir(parents=True)
    with pytest.raises(DemoCardError):
        add_jump(tmp_path)


def test_summary_table_names_every_jump_and_the_unassigned_footage(card: DemoCard) -> None:
    text = summary_table(card)
    for jump in card.jumps:
        assert jump.booking_id in text and jump.passenger in text
    assert "unassigned" in text and "needs review" in text


# ------------------------------------------------------------------ CLI and default settings


def test_cli_writes_a_card_and_prints_its_table(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "CARD"
    code = skyreel_main(
        ["demo-card", str(root), "--jumps", "1", "--footage-seconds", "1", "--seed", "3"]
    )
    out = capsys.readouterr().out
    assert code == 0
    card = load_demo_card(root)
    assert len(card.readable_jumps) == 1 and len(card.jumps) == 2
    assert card.jumps[0].booking_id in out
    assert os.path.exists(root / "DCIM/100GOPRO/GX010001.MP4")
    assert skyreel_main(["demo-card", str(root), "--jumps", "1"]) == 1  # not over a card


def test_cli_rejects_a_malformed_resolution(tmp_path: Path) -> None:
    assert skyreel_main(["demo-card", str(tmp_path / "x"), "--resolution", "big"]) == 2
    assert not (tmp_path / "x").exists()


@pytest.mark.slow
def test_default_card_reads_every_ticket_with_each_degradation_and_no_qr_in_footage(
    tmp_path: Path,
) -> None:
    card = write_demo_card(tmp_path / "SDCARD", 6)
    outcomes = [decode_clip(card.path(j.qr_file), UNHURRIED).status for j in card.jumps]
    assert outcomes == ["decoded" if not j.unreadable else "unreadable" for j in card.jumps]
    qr_files = {j.qr_file for j in card.jumps}
    footage = [f for f in card.videos if f not in qr_files]
    assert {decode_clip(card.path(f), UNHURRIED).status for f in footage} == {"no_qr"}
