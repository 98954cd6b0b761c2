from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from agents.qr.decode import QrSettings, decode_clip
from agents.qr.detectors import opencv_scan, pyzbar_detector, zxing_scan
from agents.qr.payload import Booking
from benchmarks._media import ClipSpec, qr_image, write_clip

PAYLOAD = json.dumps({"booking": "BK-24680", "name": "Zoë Ñúñez", "product": "video"})
SMALL = {"width": 640, "height": 360, "seconds": 2.0, "fps": 25}


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("qr_clips")
    specs = {
        "clear": ClipSpec(seed=1, payload=PAYLOAD, qr_fraction=0.35, gop=25, **SMALL),
        "degraded": ClipSpec(
            seed=2,
            payload=PAYLOAD,
            qr_fraction=0.4,
            rotation_deg=35,
            tilt=0.3,
            blur=1.0,
            noise=5,
            contrast=0.6,
            gop=50,
            **SMALL,
        ),
        # Visible 0.3 s in the middle of a clip whose only keyframe is the first frame.
        "brief": ClipSpec(
            seed=3, payload=PAYLOAD, qr_fraction=0.35, visible=(0.5, 0.65), gop=250, **SMALL
        ),
        "none": ClipSpec(seed=4, payload=None, clutter=True, gop=25, **SMALL),
        "occluded": ClipSpec(
            seed=5, payload=PAYLOAD, qr_fraction=0.45, occlude=True, gop=25, **SMALL
        ),
        "not_booking": ClipSpec(
            seed=6, payload="https://example.org/menu", qr_fraction=0.35, gop=25, **SMALL
        ),
    }
    return {name: write_clip(spec, root / f"{name}.mp4") for name, spec in specs.items()}


EXPECTED = Booking("BK-24680", "Zoë Ñúñez", "video")
# The wall-clock budget is a production bound; tests bound by frames so a loaded CI box
# cannot change an outcome.
UNHURRIED = QrSettings(budget_s=60.0)


def test_generated_qr_image_reads_with_every_detector() -> None:
    img = qr_image(PAYLOAD, module_px=6)
    assert [d.text for d in zxing_scan(img)] == [PAYLOAD]
    assert [d.text for d in opencv_scan(img)] == [PAYLOAD]
    zbar = pyzbar_detector()
    if zbar is not None:  # libzbar is optional
        assert [d.text for d in zbar(img)] == [PAYLOAD]


@pytest.mark.slow
def test_clear_clip_decodes_from_the_first_keyframe(clips: dict[str, Path]) -> None:
    result = decode_clip(clips["clear"])
    assert result.status == "decoded"
    assert result.booking == EXPECTED
    assert result.payload == PAYLOAD
    assert result.frame_time_s == 0.0
    assert result.frames_decoded == 1
    assert result.decoder == "zxing-cpp"


@pytest.mark.slow
def test_blurred_tilted_dim_clip_decodes(clips: dict[str, Path]) -> None:
    result = decode_clip(clips["degraded"], UNHURRIED)
    assert (result.status, result.booking) == ("decoded", EXPECTED), result.reason


@pytest.mark.slow
def test_code_visible_only_briefly_between_keyframes_is_found(clips: dict[str, Path]) -> None:
    result = decode_clip(clips["brief"], UNHURRIED)
    assert (result.status, result.booking) == ("decoded", EXPECTED), result.reason
    assert result.frame_time_s is not None
    assert 0.95 <= result.frame_time_s <= 1.35


@pytest.mark.slow
def test_clip_without_qr_is_no_qr_and_never_a_booking(clips: dict[str, Path]) -> None:
    result = decode_clip(clips["none"], UNHURRIED)
    assert result.status == "no_qr"
    assert result.booking is None and result.payload is None
    assert "no QR" in result.reason


@pytest.mark.slow
def test_work_on_a_clip_without_qr_is_bounded_by_frames(clips: dict[str, Path]) -> None:
    result = decode_clip(clips["none"], QrSettings(max_frames=12, budget_s=60.0))
    assert result.status == "no_qr"
    assert result.frames_decoded == 12
    assert "work bound" in result.reason


@pytest.mark.slow
def test_covered_data_area_with_visible_finders_is_unreadable(clips: dict[str, Path]) -> None:
    result = decode_clip(clips["occluded"], UNHURRIED)
    assert result.status == "unreadable"
    assert result.booking is None
    assert "not decodable" in result.reason


@pytest.mark.slow
def test_readable_qr_that_is_not_a_booking_is_unreadable_with_reason(
    clips: dict[str, Path],
) -> None:
    result = decode_clip(clips["not_booking"], UNHURRIED)
    assert result.status == "unreadable"
    assert result.booking is None
    assert result.payload == "https://example.org/menu"
    assert result.reason.startswith("QR is not a booking")


def test_file_that_is_not_a_video_is_no_qr_with_reason(tmp_path: Path) -> None:
    bogus = tmp_path / "GX010001.MP4"
    bogus.write_bytes(b"\x00" * 4096)
    result = decode_clip(bogus)
    assert result.status == "no_qr"
    assert "not a readable video" in result.reason


@pytest.mark.slow
def test_concurrent_decodes_in_threads_give_the_same_results(clips: dict[str, Path]) -> None:
    names = ["clear", "none", "degraded", "brief"] * 2
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda n: decode_clip(clips[n], UNHURRIED), names))
    statuses = [(r.status, r.booking) for r in results]
    assert statuses[:4] == statuses[4:]
    assert statuses[:4] == [
        ("decoded", EXPECTED),
        ("no_qr", None),
        ("decoded", EXPECTED),
        ("decoded", EXPECTED),
    ]


@pytest.mark.slow
def test_truncated_clip_gives_a_result_not_an_exception(
    clips: dict[str, Path], tmp_path: Path
) -> None:
    data = clips["clear"].read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])  # card pulled mid-copy: the index is missing
    result = decode_clip(cut, UNHURRIED)
    assert result.status == "no_qr"
    assert result.booking is None
    assert result.reason
