"""The demo card's jumps are synthetic tandem jumps (issue 15): each recording carries the jump's
sound and, but for the sound-only camera, its GoPro telemetry; the telemetry reader reads it, the
`phases` analysis finds the manifest's marks in it, and the card still is a GoPro card (chapters,
proxies, capture times through the day)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from agents.demo_card import DemoCard, DemoJump, jump_params, load_demo_card, write_demo_card
from agents.edit import EditSettings
from agents.jobs.phases_step import FootageClip, analyse
from agents.media.probe import probe
from agents.telemetry.gpmf_reader import read_clip
from agents.telemetry.profile import truth_of
from agents.telemetry.series import TelemetryStatus

EXIT_TOLERANCE_S = 1.0
OPENING_TOLERANCE_S = 1.0  # with telemetry; the sound alone hears the opening ~2 s late
SOUND_OPENING_TOLERANCE_S = 3.0
LANDING_TOLERANCE_S = 1.0


@pytest.fixture(scope="module")
def card(tmp_path_factory: pytest.TempPathFactory) -> DemoCard:
    root = tmp_path_factory.mktemp("card") / "SDCARD"
    write_demo_card(root, 3, footage_seconds=1.0, qr_seconds=1.5, size=(320, 180), fps=15)
    return load_demo_card(root)  # what the manifest says, as tests and the runner read it


def _clips(card: DemoCard, jump: DemoJump) -> list[FootageClip]:
    clips = []
    for i, rel in enumerate(jump.footage_files):
        duration = probe(card.path(rel)).duration_s
        assert duration is not None, rel
        clips.append(FootageClip(i, Path(rel).name, card.path(rel), duration))
    return clips


def test_jump_params_are_seeded_by_card_and_ordinal_and_every_fourth_has_no_gpmf() -> None:
    assert jump_params(7, 1) == jump_params(7, 1)
    assert jump_params(7, 1) != jump_params(7, 2) != jump_params(8, 2)
    assert [jump_params(7, o).has_telemetry for o in range(1, 9)] == [
        True, True, False, True, True, True, False, True,
    ]  # fmt: skip
    truth = truth_of(jump_params(7, 1))
    assert 40 < truth.duration_s < 100  # a demo recording stays short


def test_manifest_records_each_jumps_truth_and_whether_it_has_telemetry(card: DemoCard) -> None:
    assert [j.telemetry for j in card.jumps] == [True, True, False, True]
    for jump in card.jumps:
        assert jump.truth == truth_of(jump_params(7, jump.ordinal))
        t = jump.truth
        assert 0 < t.exit_s < t.opening_s < t.landing_s < t.duration_s
        recorded = sum(probe(card.path(f)).duration_s or 0 for f in jump.footage_files)
        assert recorded == pytest.approx(t.duration_s, abs=0.5)


def test_the_reader_reads_the_telemetry_of_every_chapter_and_none_of_the_sound_only_jump(
    card: DemoCard,
) -> None:
    first = card.jumps[0]
    assert [Path(f).name for f in first.footage_files] == ["GX010003.MP4", "GX020003.MP4"]
    for jump in card.jumps:
        for rel in jump.footage_files:
            tel = read_clip(card.path(rel))
            if not jump.telemetry:
                assert tel.status is TelemetryStatus.NO_TELEMETRY, rel
                continue
            assert tel.status is TelemetryStatus.OK, rel
            assert tel.accl is not None and tel.accl.count > 100 * tel.duration_s, rel
            assert tel.gps is not None and tel.gps.count, rel
    for rel in card.unassigned_files:  # the camera check before the first ticket: no GPMF
        assert read_clip(card.path(rel)).status is TelemetryStatus.NO_TELEMETRY


def test_the_phases_analysis_finds_each_jumps_true_marks(card: DemoCard) -> None:
    settings = EditSettings(door_s=4.0, after_landing_s=2.0)
    for jump in card.jumps:
        assert jump.truth is not None
        record = analyse(_clips(card, jump), settings)
        assert record.needs_review is False, (jump.ordinal, record.reasons)
        assert record.telemetry is jump.telemetry and record.sound
        marks, truth = record.marks, jump.truth
        assert marks["exit"] is not None and marks["opening"] is not None
        assert marks["landing"] is not None
        opening_tolerance = OPENING_TOLERANCE_S if jump.telemetry else SOUND_OPENING_TOLERANCE_S
        assert abs(marks["exit"].t - truth.exit_s) <= EXIT_TOLERANCE_S, jump.ordinal
        assert abs(marks["opening"].t - truth.opening_s) <= opening_tolerance, jump.ordinal
        assert abs(marks["landing"].t - truth.landing_s) <= LANDING_TOLERANCE_S, jump.ordinal
        assert record.spans and record.total_s < truth.duration_s - 5
        if len(jump.footage_files) == 2:  # the chaptered jump: the edit crosses the boundary
            assert len({s.file_id for s in record.spans}) == 2


def test_chapters_continue_the_recordings_capture_time_and_mtime(card: DemoCard) -> None:
    first = card.jumps[0]
    ch1, ch2 = (card.path(f) for f in first.footage_files)
    c1, c2 = probe(ch1).creation_time, probe(ch2).creation_time
    assert c1 is not None and c2 is not None
    assert (c2 - c1).total_seconds() == pytest.approx(probe(ch1).duration_s or 0, abs=1.0)
    assert ch1.stat().st_mtime == pytest.approx(c2.timestamp(), abs=1.0)
    assert ch2.stat().st_mtime > ch1.stat().st_mtime
    assert datetime.fromtimestamp(ch2.stat().st_mtime, UTC) < probe(
        card.path(card.jumps[1].qr_file)
    ).creation_time.replace(tzinfo=UTC)  # type: ignore[union-attr]
