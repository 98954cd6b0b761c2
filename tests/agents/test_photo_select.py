"""Which stills become a jump's photos (agents/photos/select.py), on generated frames: sharp
frames win over blurred copies, a run of near-duplicates gives one photo, picks keep their
spacing, too-dark frames are left out, and a face ranks a frame higher (on precomputed features:
faces cannot be drawn convincingly, and the installed OpenCV may ship no detector)."""

from __future__ import annotations

import itertools

import cv2
import numpy as np
import pytest

from agents.photos.faces import FaceDetector
from agents.photos.select import Features, SelectSettings, distance, features, select

W, H = 480, 270


def scene(seed: int, hue: int) -> np.ndarray:
    """A frame of sharp shapes in shades of one hue (a distinct colour per scene)."""
    rng = np.random.default_rng(seed)
    hsv = np.zeros((H, W, 3), np.uint8)
    hsv[:, :] = (hue, 120, 90)
    for _ in range(40):
        colour = (hue, int(rng.integers(80, 256)), int(rng.integers(60, 256)))
        x, y = int(rng.integers(0, W)), int(rng.integers(0, H))
        if rng.random() < 0.5:
            w, h = int(rng.integers(10, 80)), int(rng.integers(10, 80))
            cv2.rectangle(hsv, (x, y), (x + w, y + h), colour, -1)
        else:
            cv2.circle(hsv, (x, y), int(rng.integers(5, 40)), colour, -1)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)


def blurred(img: np.ndarray, sigma: float = 4.0) -> np.ndarray:
    return cv2.GaussianBlur(img, (0, 0), sigma)


def noisy(img: np.ndarray, seed: int, sigma: float = 2.0) -> np.ndarray:
    noise = np.random.default_rng(seed).normal(0, sigma, img.shape)
    return np.clip(img.astype(np.float64) + noise, 0, 255).astype(np.uint8)


HUES = [0, 15, 30, 45, 60, 75, 90, 105, 120, 135, 150, 165]


def test_sharp_frames_are_picked_over_their_blurred_copies() -> None:
    frames = []
    for i, hue in enumerate(HUES[:8]):
        sharp = scene(i, hue)
        # the blurred copy half a second later (closer than the spacing: only one can be kept)
        frames.append(features(i * 3.0 + 0.5, blurred(sharp)))
        frames.append(features(i * 3.0, sharp))
    # two scenes seen only out of focus: never a photo
    frames += [features(30.5, blurred(scene(20, HUES[9]))), features(33.5, blurred(scene(21, 0)))]
    picked = select(frames, SelectSettings(count=30, min_spacing_s=2.0))
    assert [p.t for p in picked.picked] == [i * 3.0 for i in range(8)]
    assert picked.too_blurry == 10
    sharp_values = [f.sharpness for f in frames if f.t % 3 == 0]
    blurred_values = [f.sharpness for f in frames if f.t % 3 != 0]
    assert min(sharp_values) > 5 * max(blurred_values)


def test_a_run_of_near_duplicates_gives_one_photo() -> None:
    frames = []
    for s, hue in enumerate(HUES[:4]):
        base = scene(100 + s, hue)
        # the same view for 15 s (the camera on the ground), each 3 s apart: spacing alone
        # would keep them all
        frames += [features(s * 20.0 + k * 3.0, noisy(base, s * 10 + k)) for k in range(5)]
    picked = select(frames, SelectSettings(count=30, min_spacing_s=2.0))
    assert len(picked.picked) == 4
    assert [int(p.t // 20) for p in picked.picked] == [0, 1, 2, 3]
    assert picked.too_close == 16
    assert "4 of 30 photos" in picked.shortfall(30) and "16 too close" in picked.shortfall(30)
    same = distance(frames[0].hist, frames[1].hist)
    other = distance(frames[0].hist, frames[5].hist)
    assert same < 0.02 and other > 0.3, (same, other)


def test_picks_keep_their_spacing_and_their_count() -> None:
    # 24 distinct sharp frames half a second apart
    frames = [features(k * 0.5, scene(200 + k, HUES[k % 12])) for k in range(24)]
    picked = select(frames, SelectSettings(count=4, min_spacing_s=2.0, min_distance=0.0))
    times = [p.t for p in picked.picked]
    assert len(times) == 4 and times == sorted(times)
    assert all(b - a >= 2.0 for a, b in itertools.pairwise(times))
    everything = select(frames, SelectSettings(count=30, min_spacing_s=2.0, min_distance=0.0))
    assert 5 <= len(everything.picked) <= 6  # 11.5 s of frames, one per 2 s at most


def test_dark_and_blown_out_frames_are_left_out() -> None:
    dark = (scene(300, 60) // 12).astype(np.uint8)
    white = np.clip(scene(301, 90).astype(np.int16) + 200, 0, 255).astype(np.uint8)
    frames = [features(0.0, dark), features(5.0, white), features(10.0, scene(302, 120))]
    picked = select(frames, SelectSettings())
    assert [p.t for p in picked.picked] == [10.0]
    assert picked.too_dark_or_bright == 2


def _f(t: float, sharpness: float, faces: int = 0, hue_bin: int = 0) -> Features:
    hist = np.zeros(256, np.float32)
    hist[hue_bin] = 1.0
    return Features(t, sharpness, 120.0, hist, faces)


def test_a_face_ranks_a_crisp_frame_first_but_never_saves_a_blurred_one() -> None:
    frames = [_f(0.0, 900.0, hue_bin=1), _f(10.0, 800.0, faces=1, hue_bin=2)]
    assert [p.t for p in select(frames, SelectSettings(count=1)).picked] == [10.0]
    without = [_f(0.0, 900.0, hue_bin=1), _f(10.0, 800.0, hue_bin=2)]
    assert [p.t for p in select(without, SelectSettings(count=1)).picked] == [0.0]
    # a face on a frame far below the sharpness around it is still too blurry
    soft = [_f(float(k * 5), 1000.0, hue_bin=k) for k in range(10)] + [
        _f(43.0, 100.0, faces=2, hue_bin=20)
    ]
    picked = select(soft, SelectSettings(count=30))
    assert 43.0 not in [p.t for p in picked.picked] and picked.too_blurry == 1


def test_sharpness_is_judged_against_the_frames_around() -> None:
    # a detailed scene (the door) then open sky: fewer edges, not out of focus; a dip in the sky
    # (motion blur) and a long fogged stretch are
    door = [_f(float(t), 1000.0, hue_bin=t) for t in range(0, 20, 3)]
    sky = [_f(float(t), 150.0, hue_bin=t) for t in range(40, 80, 3)]
    dip = [_f(61.5, 30.0, hue_bin=200)]
    fog = [_f(float(t), 10.0, hue_bin=t + 100) for t in range(100, 140, 3)]
    picked = select(door + sky + dip + fog, SelectSettings(count=100, min_spacing_s=1.0))
    times = [p.t for p in picked.picked]
    assert all(s.t in times for s in door + sky)
    assert 61.5 not in times and not any(t >= 100 for t in times)
    assert picked.too_blurry == 1 + len(fog)


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError):
        SelectSettings(count=0)
    with pytest.raises(ValueError):
        SelectSettings(min_distance=2.0)


def test_the_face_detector_says_whether_it_can_look() -> None:
    found = FaceDetector()
    if found.available:
        assert found.count(np.zeros((H, W), np.uint8)) == 0
    else:
        assert "OpenCV" in found.why and found.count(np.zeros((H, W), np.uint8)) == 0
