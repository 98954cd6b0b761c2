"""Benchmark the shipped QR clip decoder against a decode-every-frame baseline.

Run: ``python -m benchmarks.qr_decode`` (generates ``.cache/qr_corpus`` first if missing);
``--no-baseline`` skips the baseline (half a minute a clip on a shared 2-core box) for a quick
run of the decoder's figures, printing ``-`` for the baseline's.
For each corpus clip it runs :func:`agents.qr.decode.decode_clip`, then the baseline: every frame
decoded, converted to grey at full resolution and given to pyzbar (OpenCV's detector when libzbar
is missing) — the obvious implementation, with no early exit. ``median_ms``/``p95_ms`` and the
baseline median are over the clips that hold a QR; clips without one have their own bound (the
give-up time, printed above the last line). The last line is the summary the issue asks for.

Then the loaded pass (issue 18): the same corpus decoded again while two busy processes, pinned
one to each core, load the machine (started before the pass, stopped after). The decoder's budget
is frames, not seconds, so ``found_loaded`` must equal ``found``, and every clip must give the
same status and frame count as unloaded (the line above the summary says how many did not).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import av
import numpy as np

from agents.qr.decode import QrResult, decode_clip
from agents.qr.detectors import Detection, opencv_scan, pyzbar_detector
from agents.qr.payload import NotABooking, parse_booking
from benchmarks._load import busy_cores
from benchmarks.qr_corpus import DEFAULT_DIR, ensure_corpus

Outcome = tuple[str, str | None, int]  # status, booking id, frames decoded


def _baseline(path: Path, scan: Callable[[np.ndarray], list[Detection]]) -> tuple[set[str], float]:
    """(booking ids seen, ms): every frame decoded and scanned at full resolution."""
    started = time.perf_counter()
    seen: set[str] = set()
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for frame in container.decode(stream):
            grey = frame.to_ndarray(format="gray")
            for det in scan(grey):
                if det.text is None:
                    continue
                try:
                    seen.add(parse_booking(det.text).booking_id)
                except NotABooking:
                    continue
    return seen, (time.perf_counter() - started) * 1000


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _outcome(result: QrResult) -> Outcome:
    booking = result.booking.booking_id if result.booking else None
    return result.status, booking, result.frames_decoded


def _loaded_pass(
    clips: list[dict[str, object]], unloaded: dict[str, Outcome]
) -> tuple[int, list[str]]:
    """(QR clips found, clips whose outcome differs from ``unloaded``), decoded while every
    core (two on the reference machine) is loaded by a pinned busy process."""
    found = 0
    changed: list[str] = []
    with busy_cores(2) as loaded:
        print(f"loaded pass: busy processes on cores {loaded}", file=sys.stderr)
        for clip in clips:
            name = str(clip["file"])
            result = decode_clip(DEFAULT_DIR / name)
            got = _outcome(result)
            found += clip["booking_id"] is not None and got[1] == clip["booking_id"]
            if got != unloaded[name]:
                changed.append(f"{name}: {unloaded[name]} unloaded, {got} loaded")
            print(
                f"{name}: loaded {result.status:<10} {result.elapsed_ms:7.0f} ms "
                f"frames={result.frames_decoded:<4}",
                file=sys.stderr,
            )
    return found, changed


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.qr_decode")
    parser.add_argument("--no-baseline", action="store_true", help="skip the baseline")
    args = parser.parse_args(argv)
    clips = ensure_corpus()
    zbar = pyzbar_detector()
    if zbar is not None:
        baseline_scan, baseline_name = zbar, "pyzbar"
    else:
        baseline_scan, baseline_name = opencv_scan, "opencv"
        print("libzbar not found: baseline uses OpenCV QRCodeDetector at full resolution")
    print(f"baseline: {baseline_name}, every frame at full resolution")

    found = misread = false_bookings = baseline_found = 0
    times: list[float] = []
    base_times: list[float] = []
    negative_times: list[float] = []
    n_qr = n_neg = 0
    failures: list[str] = []
    unloaded: dict[str, Outcome] = {}
    for clip in clips:
        path = DEFAULT_DIR / str(clip["file"])
        expected = clip["booking_id"]
        result: QrResult = decode_clip(path)
        unloaded[str(clip["file"])] = _outcome(result)
        got = result.booking.booking_id if result.booking else None
        if expected is None:
            n_neg += 1
            negative_times.append(result.elapsed_ms)
            if result.status == "decoded":
                false_bookings += 1
                failures.append(f"FALSE BOOKING {clip['file']}: {got} ({result.reason})")
        else:
            n_qr += 1
            times.append(result.elapsed_ms)
            if got == expected:
                found += 1
            elif got is not None:
                misread += 1
                failures.append(f"MISREAD {clip['file']}: {got} != {expected}")
            else:
                failures.append(
                    f"missed {clip['file']}: {result.status} after {result.frames_decoded} frames "
                    f"{result.elapsed_ms:.0f} ms ({result.reason})"
                )
        base_ids, base_ms = (set(), 0.0) if args.no_baseline else _baseline(path, baseline_scan)
        if expected is not None and not args.no_baseline:
            base_times.append(base_ms)
            baseline_found += base_ids == {expected}
        print(
            f"{clip['file']}: {result.status:<10} {result.elapsed_ms:7.0f} ms "
            f"frames={result.frames_decoded:<4} t={result.frame_time_s} dec={result.decoder} "
            f"| baseline {sorted(base_ids)} {base_ms:6.0f} ms",
            file=sys.stderr,
        )

    found_loaded, changed = _loaded_pass(clips, unloaded)
    for line in failures:
        print(line)
    for line in changed:
        print(f"CHANGED UNDER LOAD {line}")
    print(
        f"loaded pass: {len(clips) - len(changed)}/{len(clips)} clips gave the same status and "
        "frame count as unloaded"
    )
    median = statistics.median(times)
    baseline = (
        f"baseline_found={baseline_found} baseline_median_ms={statistics.median(base_times):.0f} "
        f"speedup={statistics.median(base_times) / median:.1f}"
        if base_times
        else "baseline_found=- baseline_median_ms=- speedup=-"
    )
    print(
        f"no-QR clips: given up after at most {max(negative_times, default=0):.0f} ms "
        f"(median {statistics.median(negative_times or [0]):.0f} ms)"
    )
    print(
        f"qr_decode: clips={n_qr} negatives={n_neg} found={found} misread={misread} "
        f"false_bookings={false_bookings} median_ms={median:.0f} p95_ms={_pct(times, 0.95):.0f} "
        f"{baseline} found_loaded={found_loaded}"
    )


if __name__ == "__main__":
    main()
