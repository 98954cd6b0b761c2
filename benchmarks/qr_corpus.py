"""The degraded QR clip corpus for ``benchmarks.qr_decode`` (generated once, then reused).

Run: ``python -m benchmarks.qr_corpus`` — writes ``.cache/qr_corpus/`` (git-ignored; a
``.gitignore`` inside the cache keeps it out of commits even without a repo rule) with 5 s 1080p
H.264 clips and ``manifest.json`` holding each clip's expected payload. A fixed seed makes the
corpus identical on every machine; a present, complete corpus of the same version is reused.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import segno

from benchmarks._media import ClipSpec, write_clip

logger = logging.getLogger(__name__)

CORPUS_VERSION = 2
SEED = 20240601
QR_CLIPS = 42
NEGATIVE_CLIPS = 10
DEFAULT_DIR = Path(__file__).resolve().parents[1] / ".cache" / "qr_corpus"

_NAMES = [
    "Jane Doe",
    "Zoë Ñúñez",
    "Li Wei",
    "محمد علي",
    "Olek Brzęczyszczykiewicz",
    "Ana 🪂",
    "Tom O'Neil",
]
_PRODUCTS = ["video", "photos", "both"]


def _payload(i: int, rng: np.random.Generator) -> tuple[str, str]:
    booking_id = f"BK-{int(rng.integers(10_000, 99_999_999))}"
    name = _NAMES[i % len(_NAMES)]
    product = _PRODUCTS[i % len(_PRODUCTS)]
    shape = i % 4
    if shape == 0:
        text = json.dumps(
            {"booking": booking_id, "name": name, "product": product}, ensure_ascii=False
        )
    elif shape == 1:
        text = f"https://book.example/t?booking={booking_id}&name={name.replace(' ', '+')}"
    elif shape == 2:
        text = f"booking={booking_id};name={name};product={product}"
    else:
        text = booking_id
    return text, booking_id


def _name(prefix: str, i: int, spec: ClipSpec) -> str:
    # The spec's hash in the name: a changed generator regenerates exactly the changed clips.
    digest = hashlib.sha256(repr(spec).encode()).hexdigest()[:8]
    return f"{prefix}_{i:03d}_{digest}.mp4"


def corpus_specs(seed: int = SEED) -> list[tuple[str, ClipSpec, str | None]]:
    """(file name, spec, expected booking id) for every clip, derived from ``seed`` only."""
    rng = np.random.default_rng(seed)
    specs: list[tuple[str, ClipSpec, str | None]] = []
    degradations = ["blur", "motion", "noise", "contrast", "tilt", "partial"]
    for i in range(QR_CLIPS):
        text, booking_id = _payload(i, rng)
        qr_fraction = float(rng.uniform(0.10, 0.40))
        # Blur is set in QR modules: smearing a code over two modules in every frame makes it
        # unreadable for any decoder, which is a different test (the "unreadable" status).
        modules = segno.make_qr(text, error="m").symbol_size(border=4)[0]
        module_px = qr_fraction * 1920 / modules
        spec = ClipSpec(
            seed=seed + i,
            payload=text,
            qr_fraction=qr_fraction,
            rotation_deg=float(rng.uniform(-40, 40)) if i % 5 else float(rng.uniform(-180, 180)),
            gop=int(rng.choice([15, 30, 60, 120, 250])),
            drift_px=float(rng.uniform(2, 12)),
        )
        # Two or three degradations per clip: every kind appears often, a few clips get the worst.
        picks = rng.choice(degradations, size=2 + int(i % 7 == 0), replace=False)
        for kind in picks:
            if kind == "blur":
                spec = replace(spec, blur=min(2.5, float(rng.uniform(0.15, 0.4)) * module_px))
            elif kind == "motion":
                spec = replace(
                    spec, motion_blur=max(3, round(float(rng.uniform(0.5, 1.2)) * module_px))
                )
            elif kind == "noise":
                spec = replace(spec, noise=float(rng.uniform(4, 14)))
            elif kind == "contrast":
                spec = replace(spec, contrast=float(rng.uniform(0.35, 0.6)))
            elif kind == "tilt":
                spec = replace(spec, tilt=float(rng.uniform(0.15, 0.35)))
            else:
                start = float(rng.uniform(0.0, 0.75))
                spec = replace(
                    spec, visible=(start, min(1.0, start + float(rng.uniform(0.12, 0.3))))
                )
        specs.append((_name("qr", i, spec), spec, booking_id))
    for j in range(NEGATIVE_CLIPS):
        spec = ClipSpec(
            seed=seed + 1000 + j,
            payload=None,
            clutter=j % 2 == 0,
            gop=int(rng.choice([15, 30, 60, 250])),
            noise=float(rng.uniform(0, 8)),
            blur=float(rng.uniform(0, 1.5)),
        )
        specs.append((_name("neg", j, spec), spec, None))
    return specs


def ensure_corpus(directory: Path = DEFAULT_DIR) -> list[dict[str, object]]:
    """Generate the corpus into ``directory`` unless it is already there; return the manifest."""
    manifest_path = directory / "manifest.json"
    if manifest_path.exists():
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        clips = manifest.get("clips", [])
        if manifest.get("version") == CORPUS_VERSION and all(
            (directory / c["file"]).exists() for c in clips
        ):
            return list(clips)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / ".gitignore").write_text("*\n", encoding="utf-8")
    clips_out: list[dict[str, object]] = []
    specs = corpus_specs()
    wanted = {name for name, _, _ in specs}
    for stale in directory.glob("*.mp4*"):
        if stale.name not in wanted:
            stale.unlink()
    for n, (name, spec, booking_id) in enumerate(specs, 1):
        path = directory / name
        if not path.exists():
            started = time.perf_counter()
            write_clip(spec, path)
            print(
                f"[{n}/{len(specs)}] {name} {time.perf_counter() - started:.1f}s", file=sys.stderr
            )
        clips_out.append(
            {"file": name, "payload": spec.payload, "booking_id": booking_id, "spec": asdict(spec)}
        )
    manifest_path.write_text(
        json.dumps(
            {"version": CORPUS_VERSION, "seed": SEED, "clips": clips_out},
            indent=1,
            ensure_ascii=False,
        ),
        encoding="utf-8",
    )
    return clips_out


def main() -> None:
    clips = ensure_corpus()
    with_qr = sum(1 for c in clips if c["payload"] is not None)
    print(f"qr_corpus: dir={DEFAULT_DIR} clips={with_qr} negatives={len(clips) - with_qr}")


if __name__ == "__main__":
    main()
