"""A realistic synthetic GoPro SD card for demos, end-to-end tests and benchmarks.

:func:`write_demo_card` writes ``DCIM/100GOPRO/`` the way a tandem instructor's camera leaves it:
footage before the first ticket (unassigned), then per jump a short clip of the passenger's
booking QR followed by the jump's recording (the first jump's in two chapters: ``GX01nnnn.MP4`` +
``GX02nnnn.MP4``), each file with a ``GLccnnnn.LRV`` low-res proxy and a ``GXccnnnn.THM``
thumbnail. One extra jump has an unreadable QR (a thumb over the data area, finder patterns in
view).

Each jump's recording is a synthetic tandem jump (agents/telemetry/profile.py, seeded from the
card's seed and the jump's ordinal, its dull phases compressed by :data:`JUMP_COMPRESS` so a
recording lasts about a minute) with the jump's sound and its GoPro telemetry (a ``gpmd`` track);
every fourth jump from the third on is filmed by a camera without telemetry (sound only). The
traps of the generator (an air pocket in the plane, a muffled housing) are left out: the demo's
readable jumps are ones the edit is sure of. The manifest records each jump's true exit, opening
and landing (seconds from the start of its recording). Capture times increase
through the day in both the container ``creation_time`` and the file mtime. :func:`add_jump`
appends one more jump to an existing demo card (new files only), as if the camera went up again.

The card is planned first (pure: :func:`plan_jump` over frozen dataclasses), then each clip is
rendered by :mod:`agents.demo_clips` (H.264 with moving content, AAC audio, LRV proxy, THM).
Everything is derived from the seed.
A ``skyreel-demo.json`` manifest beside ``DCIM/`` (outside it, so no scanner lists it) records
what the card holds, so tests and the demo runner know the expected outcome.

Run: ``skyreel demo-card DIR --jumps 3``.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote_plus

import numpy as np

from agents.demo_clips import ClipPlan, ClipStyle, Degrade, gopro_name, proxy_names, write_clip
from agents.sessions import parse_gopro_name
from agents.telemetry.profile import JumpParams, JumpTruth, draw_params, truth_of

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_START",
    "DemoCard",
    "DemoCardError",
    "DemoJump",
    "add_jump",
    "load_demo_card",
    "plan_jump",
    "summary_table",
    "write_demo_card",
]

DEFAULT_START = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
MANIFEST = "skyreel-demo.json"
FOLDER = "DCIM/100GOPRO"
_PASSENGERS = (
    "Zoë Ñúñez",
    "José Álvarez",
    "Łukasz Żółć",
    "Chloé Dubois",
    "Søren Kjærgaard",
    "Siobhán Ó Briain",
    "Ana Müller",
    "Björk Guðmundsdóttir",
    "François Lefèvre",
    "İlkay Gündoğan",
    "Tom O'Neil",
    "Mei Chen",
)
# what each booking bought (agents/deliverables.py): every demo jump has its video, most its photos
# too, in the spellings booking systems print (a photos-only booking is in the deliverables test)
_PRODUCTS = ("video+photos", "video", "both")
JUMP_COMPRESS = 0.12  # ~70 s recordings; the detection is sure of these (benchmarks/auto_edit)
JUMP_FPS = 10  # at most: a minute of picture per jump costs what a few seconds did at 30 fps
SOUND_ONLY_EVERY = 4  # jumps 3, 7, 11 ... come from a camera without telemetry


class DemoCardError(Exception):
    """The directory cannot take (or is not) a demo card; permanent."""

    retryable = False

    def __init__(self, root: str, reason: str) -> None:
        super().__init__(f"{root}: {reason}")
        self.root = root
        self.reason = reason


@dataclass(frozen=True)
class DemoJump:
    """One jump on the card; ``booking_id``/``passenger`` are what the ticket holds even when the
    QR is unreadable (what a reviewer would assign by hand)."""

    ordinal: int
    booking_id: str
    passenger: str
    product: str
    payload: str
    qr_file: str  # card-relative path, e.g. "DCIM/100GOPRO/GX010002.MP4"
    footage_files: tuple[str, ...]
    unreadable: bool
    proxy_files: tuple[str, ...] = ()  # .LRV/.THM of the QR clip and footage
    telemetry: bool = True  # the recording has a gpmd track (False: the edit has only sound)
    truth: JumpTruth | None = None  # where the marks are, from the start of the recording


@dataclass(frozen=True)
class DemoCard:
    root: Path
    jumps: tuple[DemoJump, ...]
    unassigned_files: tuple[str, ...]  # footage before the first QR (card-relative)
    all_files: tuple[str, ...]  # every file written under DCIM/, proxies included

    @property
    def readable_jumps(self) -> tuple[DemoJump, ...]:
        return tuple(j for j in self.jumps if not j.unreadable)

    @property
    def videos(self) -> tuple[str, ...]:
        return tuple(f for f in self.all_files if f.upper().endswith(".MP4"))

    def path(self, relative: str) -> Path:
        return self.root / relative


# ---------------------------------------------------------------- planning (pure)


def _booking(seed: int, ordinal: int) -> tuple[str, str, str, str]:
    """(booking id, passenger, product, payload text) for jump ``ordinal``, in varied formats."""
    rng = np.random.default_rng([seed, ordinal, 1])
    booking_id = f"BK-{ordinal:02d}{int(rng.integers(1000, 9999))}"
    passenger = _PASSENGERS[(seed + ordinal) % len(_PASSENGERS)]
    product = _PRODUCTS[ordinal % len(_PRODUCTS)]
    shape = (seed + ordinal) % 4
    # issue 16: the JSON and key=value tickets carry the passenger's email (the demo emails
    # them their link); the others have none, as many booking systems print
    email = f"{booking_id.lower()}@example.com"
    if shape == 0:
        data = {"booking": booking_id, "name": passenger, "product": product, "email": email}
        payload = json.dumps(data, ensure_ascii=False)
    elif shape == 1:
        payload = f"https://book.example/t?booking={booking_id}&name={quote_plus(passenger)}"
    elif shape == 2:
        payload = f"booking={booking_id};name={passenger};product={product};e-mail={email}"
    else:
        nested = {"booking": {"id": booking_id, "passenger": passenger}, "media": product}
        payload = json.dumps(nested, ensure_ascii=False)
    return booking_id, passenger, product, payload


def _degrade(rng: np.random.Generator, ordinal: int, enabled: bool) -> Degrade:
    if not enabled or ordinal % 3 == 1:
        return Degrade(rotation_deg=float(rng.uniform(-8, 8)))
    kinds = [
        Degrade(blur=float(rng.uniform(0.6, 1.0)), rotation_deg=float(rng.uniform(-15, 15))),
        Degrade(tilt=float(rng.uniform(0.15, 0.25)), rotation_deg=float(rng.uniform(-25, 25))),
        Degrade(noise=float(rng.uniform(4, 8)), rotation_deg=float(rng.uniform(-10, 10))),
    ]
    return kinds[ordinal % len(kinds)]


def jump_params(seed: int, ordinal: int) -> JumpParams:
    """The synthetic jump behind jump ``ordinal`` of a card seeded ``seed`` (pure)."""
    params = draw_params(
        seed * 1000 + ordinal,
        compress=JUMP_COMPRESS,
        has_telemetry=ordinal % SOUND_ONLY_EVERY != SOUND_ONLY_EVERY - 1,
    )
    return replace(params, air_pocket_s=None, muffled=False)


def plan_jump(
    ordinal: int,
    start: datetime,
    first_number: int,
    style: ClipStyle,
    *,
    unreadable: bool = False,
    chaptered: bool = False,
) -> tuple[DemoJump, list[ClipPlan]]:
    """The QR clip and the jump's recording (two chapters when ``chaptered``) from ``start``."""
    rng = np.random.default_rng([style.seed, ordinal, 2])
    booking_id, passenger, product, payload = _booking(style.seed, ordinal)
    qr = ClipPlan(
        name=gopro_name(first_number),
        start=start,
        seconds=style.qr_seconds,
        label=f"ticket {booking_id}",
        seed=style.seed * 1000 + ordinal,
        payload=payload,
        occluded=unreadable,
        degrade=_degrade(rng, ordinal, style.degrade),
    )
    clips = [qr]
    at = start + timedelta(seconds=int(rng.integers(120, 300)))
    params = jump_params(style.seed, ordinal)
    truth = truth_of(params)
    # chapters split on a whole second, as the gpmd payloads are a second each
    span = float(math.ceil(truth.duration_s / 2)) if chaptered else truth.duration_s
    chapters = math.ceil(truth.duration_s / span)
    for chapter in range(1, chapters + 1):
        lo = (chapter - 1) * span
        seconds = min(truth.duration_s, lo + span) - lo
        clips.append(
            ClipPlan(
                name=gopro_name(first_number + 1, chapter),
                start=at,
                seconds=seconds,
                label=f"JUMP {ordinal}" + (f" CH {chapter}" if chapters > 1 else ""),
                seed=style.seed * 1000 + ordinal * 10 + chapter * 100,
                jump=params,
                jump_from_s=lo,
                fps=min(style.fps, JUMP_FPS),
            )
        )
        at += timedelta(seconds=seconds)
    jump = DemoJump(
        ordinal=ordinal,
        booking_id=booking_id,
        passenger=passenger,
        product=product,
        payload=payload,
        qr_file=f"{FOLDER}/{qr.name}",
        footage_files=tuple(f"{FOLDER}/{c.name}" for c in clips[1:]),
        unreadable=unreadable,
        proxy_files=tuple(f"{FOLDER}/{p}" for c in clips for p in proxy_names(c.name)),
        telemetry=params.has_telemetry,
        truth=truth,
    )
    return jump, clips


def _next_number(clips: list[ClipPlan]) -> int:
    numbers = [gp.recording for c in clips if (gp := parse_gopro_name(c.name)) is not None]
    return max(numbers) + 1


def _gap(seed: int, ordinal: int) -> timedelta:
    rng = np.random.default_rng([seed, ordinal, 3])
    return timedelta(seconds=int(rng.integers(20 * 60, 40 * 60)))


def _render(root: Path, clips: list[ClipPlan], style: ClipStyle) -> None:
    folder = root / FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    for clip in clips:
        write_clip(clip, folder / clip.name, style)
        logger.debug("demo card %s: wrote %s (%s)", root, clip.name, clip.label)


# ---------------------------------------------------------------- card and manifest


def _write_manifest(card: DemoCard, style: ClipStyle) -> None:
    data = {
        "version": 2,
        "style": asdict(style),
        "jumps": [asdict(j) for j in card.jumps],
        "unassigned_files": list(card.unassigned_files),
        "all_files": list(card.all_files),
    }
    tmp = card.root / (MANIFEST + ".part")
    tmp.write_text(json.dumps(data, indent=1, ensure_ascii=False), encoding="utf-8")
    tmp.replace(card.root / MANIFEST)


def load_demo_card(root: Path) -> DemoCard:
    """The :class:`DemoCard` a demo card's manifest describes."""
    try:
        data = json.loads((root / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DemoCardError(str(root), f"no readable {MANIFEST}: {exc}") from exc
    jumps = tuple(
        DemoJump(
            **{
                **j,
                "footage_files": tuple(j["footage_files"]),
                "proxy_files": tuple(j["proxy_files"]),
                "truth": JumpTruth(**j["truth"]) if j.get("truth") else None,
            }
        )
        for j in data["jumps"]
    )
    return DemoCard(root, jumps, tuple(data["unassigned_files"]), tuple(data["all_files"]))


def _style_of(root: Path) -> ClipStyle:
    data = json.loads((root / MANIFEST).read_text(encoding="utf-8"))
    return ClipStyle(**data["style"])


def write_demo_card(
    root: Path,
    jumps: int,
    *,
    seed: int = 7,
    footage_seconds: float = 3.0,
    qr_seconds: float = 2.0,
    size: tuple[int, int] = (640, 360),
    fps: int = 30,
    unreadable_jump: int | None = 2,
    degrade: bool = True,
    start: datetime = DEFAULT_START,
) -> DemoCard:
    """Write a demo card with ``jumps`` readable jumps plus one unreadable-QR jump.

    ``unreadable_jump``: 1-based position of the unreadable jump in the card's order (clamped to
    ``jumps + 1``; None: no unreadable jump). Ordinals count every jump, the unreadable one too.
    ``footage_seconds``: the camera check before the first ticket; a jump's recording lasts its
    synthetic jump (~70 s, at most :data:`JUMP_FPS` frames a second).
    """
    if jumps < 0:
        raise DemoCardError(str(root), "jumps must be >= 0")
    if (root / "DCIM").exists() and any((root / "DCIM").rglob("*")):
        raise DemoCardError(
            str(root),
            "DCIM/ is not empty (use add_jump or `skyreel demo-card --add` to extend a card)",
        )
    style = ClipStyle(seed, footage_seconds, qr_seconds, size[0], size[1], fps, degrade)
    total = jumps + (unreadable_jump is not None)
    bad = None if unreadable_jump is None else max(1, min(unreadable_jump, total))
    # An instructor's camera check in the morning: footage before any ticket.
    pre = ClipPlan(gopro_name(1), start, footage_seconds, "CAMERA CHECK", seed * 1000)
    clips = [pre]
    unassigned = (f"{FOLDER}/{pre.name}",)
    plans: list[DemoJump] = []
    at, number = start + timedelta(minutes=25), 2
    for ordinal in range(1, total + 1):
        jump, jump_clips = plan_jump(
            ordinal, at, number, style, unreadable=ordinal == bad, chaptered=ordinal == 1
        )
        plans.append(jump)
        clips.extend(jump_clips)
        number = _next_number(jump_clips)
        at = jump_clips[-1].start + _gap(seed, ordinal)
    root.mkdir(parents=True, exist_ok=True)
    _render(root, clips, style)
    files = sorted(
        unassigned
        + tuple(f"{FOLDER}/{p}" for p in proxy_names(pre.name))
        + tuple(f for j in plans for f in (j.qr_file, *j.footage_files, *j.proxy_files))
    )
    card = DemoCard(root, tuple(plans), unassigned, tuple(files))
    _write_manifest(card, style)
    logger.info("demo card %s: %d jumps, %d files", root, len(plans), len(files))
    return card


def add_jump(root: Path, *, unreadable: bool = False, chaptered: bool = False) -> DemoJump:
    """Append one jump to an existing demo card: new files only, numbers and times continued."""
    card = load_demo_card(root)
    style = _style_of(root)
    folder = root / FOLDER
    numbers = [gp.recording for p in folder.iterdir() if (gp := parse_gopro_name(p.name))]
    latest = max(p.stat().st_mtime for p in folder.iterdir())
    ordinal = len(card.jumps) + 1
    at = datetime.fromtimestamp(math.ceil(latest), UTC) + _gap(style.seed, ordinal)
    jump, clips = plan_jump(
        ordinal, at, max(numbers, default=0) + 1, style, unreadable=unreadable, chaptered=chaptered
    )
    clashes = [c.name for c in clips if (folder / c.name).exists()]
    if clashes:
        raise DemoCardError(str(root), f"files already on the card: {', '.join(clashes)}")
    _render(root, clips, style)
    new = (jump.qr_file, *jump.footage_files, *jump.proxy_files)
    updated = replace(
        card, jumps=(*card.jumps, jump), all_files=tuple(sorted((*card.all_files, *new)))
    )
    _write_manifest(updated, style)
    logger.info("demo card %s: added jump %d (%s)", root, ordinal, jump.booking_id)
    return jump


def summary_table(card: DemoCard) -> str:
    """Plain-text table of what the card holds and what the backend should make of it."""
    rows = [("jump", "booking", "passenger", "qr clip", "footage", "expect")]
    if card.unassigned_files:
        names = ", ".join(Path(f).name for f in card.unassigned_files)
        rows.append(("-", "-", "-", "-", names, "unassigned"))
    for j in card.jumps:
        footage = ", ".join(Path(f).name for f in j.footage_files)
        kind = "edited video" + ("" if j.telemetry else " (sound only)")
        expect = "needs review (QR unreadable)" if j.unreadable else kind
        rows.append(
            (str(j.ordinal), j.booking_id, j.passenger, Path(j.qr_file).name, footage, expect)
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
