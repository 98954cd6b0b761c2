"""The `photos` step on real PostgreSQL and files (issue 16): a generated clip becomes
full-resolution watermarked JPEGs and a contact sheet; a rerun replaces only the session's own
photos; another jump's folder is never touched; with jump phases the stills come from freefall
and canopy; a session that did not buy photos is skipped. And, pure: the product rule and the
pipeline each product gets."""

from __future__ import annotations

import dataclasses
import itertools
import json
from datetime import UTC, datetime
from pathlib import Path

import cv2
import numpy as np
import pytest
from ledger_rows import add_clip, job_settings
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from agents.deliverables import Deliverable, default_deliverables, deliverables_of
from agents.demo_clips import ClipPlan, ClipStyle, write_clip
from agents.jobs import photos_step
from agents.jobs.context import JobContext
from agents.jobs.kinds import jump_steps
from agents.photos.make import window
from agents.pipeline.dispatch import Emitter
from agents.pipeline.errors import PermanentStepError
from agents.pipeline.handlers import StepContext, default_handlers
from agents.render.identity import Manifest, write_manifest
from storage import media
from storage import pipeline as repo
from streams import records
from streams.settings import Settings
from streams.topics import Names

CARD = "card-P"
KEY = f"{CARD}:1"
MAGENTA = (255, 0, 255)  # BGR


async def must_not_send(key: bytes, value: bytes) -> object:
    raise AssertionError("the photos step sends nothing itself")


@pytest.fixture
def jc(tmp_path: Path, engine: AsyncEngine, clean_db: AsyncEngine, database_url: str) -> JobContext:
    logo = tmp_path / "logo.png"
    img = np.zeros((32, 64, 4), np.uint8)
    img[:, :] = (*MAGENTA, 255)
    cv2.imwrite(str(logo), img)
    settings = job_settings(
        tmp_path, database_url, branding_logo=logo, branding_opacity=1.0, photos_count=4,
        photos_min_spacing_s=2.0, edit_jumps=False,  # generic clips: no jump to find phases in
    )  # fmt: skip
    return JobContext(
        settings=settings,
        engine=engine,
        registry=default_handlers().registry,
        emitter=Emitter(must_not_send),
        send_result=must_not_send,
        send_copy_request=must_not_send,
    )


async def footage(jc: JobContext, tmp_path: Path, seconds: float = 12.0) -> int:
    made = tmp_path / "made"
    made.mkdir(exist_ok=True)
    path = made / "GX010071.MP4"
    plan = ClipPlan("GX010071.MP4", datetime(2026, 5, 1, 14, 0, tzinfo=UTC), seconds, "jump 1", 3)
    write_clip(plan, path, ClipStyle(width=640, height=360, fps=30))
    return await add_clip(jc, CARD, path.name, seconds=seconds, made=path)


async def add_session(jc: JobContext, key: str, ids: list[int], product: str | None) -> None:
    async with jc.engine.begin() as conn:
        await media.upsert_session(
            conn,
            media.SessionRow(
                key=key, card_id=CARD, status="decoded", booking_id="BK-16", passenger="Ana Sky",
                product=product, qr_file_id=None, file_ids=tuple(ids), execution_id=None,
            ),
        )  # fmt: skip


async def run(jc: JobContext, key: str = KEY, eid: int = 1) -> dict[str, object]:
    request = records.StepRequest(
        execution_id=eid, step="photos", kind="photos", attempt=1, input={"session": key}
    )
    ctx = StepContext(execution_id=eid, step="photos", attempt=1, worker="test")
    out = await photos_step.handler(jc)(ctx, request)
    assert not out.waiting and not out.spawn
    json.dumps(out.output)  # stored as the step's JSON output
    return out.output


def read(path: Path) -> np.ndarray:
    img = cv2.imread(str(path))
    assert img is not None, path
    return img


@pytest.mark.slow
async def test_a_clip_becomes_watermarked_full_resolution_photos_and_a_contact_sheet(
    jc: JobContext, tmp_path: Path
) -> None:
    await add_session(jc, KEY, [await footage(jc, tmp_path)], "Video + Photos")
    out = await run(jc)
    photos = [jc.settings.output_dir / str(p) for p in out["photos"]]  # type: ignore[attr-defined]
    assert out["picked_from"] == "all footage"
    assert out["count"] == len(photos) and 2 <= len(photos) <= 4
    times = out["times"]
    assert isinstance(times, list) and all(b - a >= 2.0 for a, b in itertools.pairwise(times))
    name = str(out["photos"][0]).split("/")[0]  # type: ignore[index]
    assert name.startswith("BK-16_Ana-Sky_20260501-1400_")
    for n, path in enumerate(photos, start=1):
        assert path.name == f"{name}_photo_{n:02d}.jpg" and path.parent.name == "photos"
        img = read(path)
        assert img.shape == (360, 640, 3)  # the clip's own resolution
        # the logo: 14 % of the width (90 px, 45 high), 16 px from the bottom-right corner
        logo = img[299 + 8 : 344 - 8, 534 + 8 : 624 - 8].reshape(-1, 3).astype(int)
        assert np.abs(logo - MAGENTA).max() < 40, logo.mean(axis=0)
        outside = img[299 + 8 : 344 - 8, 400:480].reshape(-1, 3).astype(int)
        assert np.abs(outside - MAGENTA).max() > 100
    sheet = read(jc.settings.output_dir / str(out["contact_sheet"]))
    assert sheet.shape[1] == 8 + len(photos) * (320 + 8)
    assert out["warnings"] == [] or all("faces not looked for" in w for w in out["warnings"])  # type: ignore[attr-defined]
    async with jc.engine.connect() as conn:
        session = await media.load_session(conn, KEY)
    assert session is not None and session.output_name == name

    # run again asking for fewer: the session's own photos are replaced, nothing else is left
    jc2 = dataclasses.replace(jc, settings=jc.settings.model_copy(update={"photos_count": 1}))
    again = await run(jc2)
    assert again["count"] == 1
    folder = photos[0].parent
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [f"{name}_photo_01.jpg", f"{name}_contact_sheet.jpg", f"{name}_photos.json"]
    )


@pytest.mark.slow
async def test_another_jumps_folder_is_never_touched(jc: JobContext, tmp_path: Path) -> None:
    await add_session(jc, KEY, [await footage(jc, tmp_path, seconds=4.0)], "photos")
    async with jc.engine.begin() as conn:
        await media.claim_output_name(conn, KEY, "BK-16_taken")
    folder = jc.settings.output_dir / "BK-16_taken" / "photos"
    folder.mkdir(parents=True)
    theirs = folder / "BK-16_taken_photo_01.jpg"
    theirs.write_bytes(b"another jump's photo")
    write_manifest(folder / "BK-16_taken_photos.json", Manifest("card-Q:4", "BK-16_taken", ""))
    with pytest.raises(PermanentStepError, match=r"card-Q:4.*not replacing another jump's"):
        await run(jc)
    assert theirs.read_bytes() == b"another jump's photo"
    assert sorted(p.name for p in folder.iterdir()) == [theirs.name, "BK-16_taken_photos.json"]


@pytest.mark.slow
async def test_with_jump_phases_the_photos_come_from_freefall_and_canopy(
    jc: JobContext, tmp_path: Path
) -> None:
    jc = dataclasses.replace(jc, settings=jc.settings.model_copy(update={"edit_jumps": True}))
    await add_session(jc, KEY, [await footage(jc, tmp_path)], "photos")
    marks = {"exit": {"t": 4.0, "confidence": 0.9, "source": "telemetry"}, "opening": None,
             "landing": {"t": 9.0, "confidence": 0.9, "source": "telemetry"}}  # fmt: skip
    async with jc.engine.begin() as conn:
        eid, _new = await repo.create_execution(
            conn, key=f"jump:{KEY}", pipeline="jump", subject_type="session", subject_id=KEY
        )
        await conn.execute(
            text(
                "INSERT INTO pipeline_step (execution_id, name, kind, status, attempt, output) "
                "VALUES (:e, 'phases', 'phases', 'succeeded', 1, CAST(:o AS jsonb))"
            ),
            {"e": eid, "o": json.dumps({"needs_review": False, "marks": marks, "edl": None})},
        )
    out = await run(jc, eid=eid)
    assert out["picked_from"] == "freefall+canopy"
    times = out["times"]
    assert isinstance(times, list) and times and all(4.0 <= t <= 9.0 for t in times), times


@pytest.mark.slow
async def test_a_session_that_bought_only_the_video_gets_no_photos(
    jc: JobContext, tmp_path: Path
) -> None:
    await add_session(jc, KEY, [await footage(jc, tmp_path, seconds=2.0)], "Handcam video")
    out = await run(jc)
    assert out["skipped"] == "not bought" and out["photos"] == [] and out["count"] == 0
    assert not jc.settings.output_dir.exists() or not any(jc.settings.output_dir.iterdir())


@pytest.mark.slow
async def test_an_unreadable_logo_fails_with_what_to_do(jc: JobContext, tmp_path: Path) -> None:
    gone = tmp_path / "missing.png"
    jc = dataclasses.replace(jc, settings=jc.settings.model_copy(update={"branding_logo": gone}))
    await add_session(jc, KEY, [await footage(jc, tmp_path, seconds=2.0)], "photos")
    with pytest.raises(PermanentStepError, match="SKYREEL_BRANDING_LOGO"):
        await run(jc)


V, P = Deliverable.VIDEO, Deliverable.PHOTOS


@pytest.mark.parametrize(
    ("product", "expected", "warned"),
    [
        (None, {V}, False),
        ("", {V}, False),
        ("video", {V}, False),
        ("VIDEO", {V}, False),
        ("Handcam", {V}, False),
        ("hand-cam video", {V}, False),
        ("photos", {P}, False),
        ("Photo", {P}, False),
        ("pictures only", {P}, False),
        ("video+photo", {V, P}, False),
        ("video+photos", {V, P}, False),
        ("Video & Photos", {V, P}, False),
        ("handcam + photos", {V, P}, False),
        ("both", {V, P}, False),
        ("Media package: video and stills", {V, P}, False),
        ("video deluxe", {V}, True),  # what was read is delivered, with a warning
        ("tandem", {V}, True),  # nothing readable: the default, with a warning
        ("no photos", {V}, True),  # a negation is never guessed
    ],
)
def test_the_product_names_its_deliverables(
    product: str | None, expected: set[Deliverable], warned: bool
) -> None:
    decision = deliverables_of(product, "video")
    assert decision.deliverables == expected
    assert bool(decision.warning) == warned
    if warned:
        assert repr(" ".join(product.split())) in decision.warning  # type: ignore[union-attr]
        assert "deliver" in decision.warning


def test_the_dropzone_default_serves_an_empty_or_unknown_product() -> None:
    assert deliverables_of(None, "photos").deliverables == {P}
    assert deliverables_of("", "both").deliverables == {V, P}
    unknown = deliverables_of("tandem", "both")
    assert unknown.deliverables == {V, P} and "video and photos" in unknown.warning
    with pytest.raises(ValueError, match="default product"):
        default_deliverables("everything")


def test_each_product_gets_its_steps() -> None:
    video = {s.name: s for s in jump_steps("s1", [4], deliverables=frozenset({V}))}
    assert {"render", "publish"} <= set(video) and "photos" not in video
    photos = {s.name: s for s in jump_steps("s1", [4], deliverables=frozenset({P}))}
    assert "render" not in photos and "publish" not in photos
    assert photos["photos"].depends_on == ("?probe:*", "booking")
    both = {s.name: s for s in jump_steps("s1", [4], edit=True, deliverables=frozenset({V, P}))}
    assert both["render"].depends_on == ("?probe:*", "booking", "phases")
    # a failed phases step leaves the photos to the whole footage: it does not block them
    assert both["photos"].depends_on == ("?probe:*", "booking", "?phases")
    assert {s.name for s in jump_steps("s1", [4])} == set(video)  # the default: the video


def test_the_window_is_freefall_and_canopy_when_there_are_marks() -> None:
    w = window({"exit": 30.0, "landing": 300.0}, 400.0)
    assert (w.start, w.end, w.picked_from) == (30.0, 300.0, "freefall+canopy")
    assert window({"exit": 30.0, "landing": None}, 400.0).end == 400.0
    assert window({}, 400.0).picked_from == "all footage"
    assert window({"exit": 500.0}, 400.0).picked_from == "all footage"  # outside: not trusted


def counter_clip(path: Path, *, seconds: float, fps: int, gop: int) -> None:
    """A clip whose frame n is grey level 8 (n mod 30) + 8 on its left half, a sharp pattern on
    its right: its frames tell their own index (mod 30)."""
    import av

    rng = np.random.default_rng(5)
    pattern = (rng.random((180, 320)) > 0.5).astype(np.int16) * 60
    pattern[:, :160] = 0
    with av.open(str(path), "w", format="mp4") as out:
        vs = out.add_stream("libx264", rate=fps)
        vs.width, vs.height, vs.pix_fmt = 320, 180, "yuv420p"
        vs.options = {"preset": "ultrafast", "crf": "0", "g": str(gop), "keyint_min": str(gop)}
        for n in range(round(seconds * fps)):
            grey = np.clip(8 * (n % 30) + 8 + pattern, 0, 255).astype(np.uint8)
            frame = av.VideoFrame.from_ndarray(np.dstack([grey] * 3), format="bgr24")
            frame.pts = n
            out.mux(vs.encode(frame))
        out.mux(vs.encode())


def frame_index(img: np.ndarray) -> int:
    return round((float(np.median(img[:, :150, 1])) - 8) / 8)


def test_frames_at_decodes_the_frames_asked_for_across_clips(tmp_path: Path) -> None:
    from agents.photos.extract import frames_at, timeline

    a, b = tmp_path / "a.mp4", tmp_path / "b.mp4"
    counter_clip(a, seconds=4.0, fps=25, gop=25)
    counter_clip(b, seconds=4.0, fps=25, gop=25)
    clips = timeline([(1, "a", a, 4.0), (2, "b", b, 4.0)])
    times = [0.0, 0.4, 0.44, 3.2, 4.0, 5.12, 7.96]  # near (decoded on) and far (a seek)
    got = [frame_index(img) for img in frames_at(clips, times)]
    assert got == [n % 30 for n in (0, 10, 11, 80, 0, 28, 99)]


def test_frequent_keyframes_are_sampled_alone(tmp_path: Path) -> None:
    from agents.photos.extract import key_spacing, sample, timeline
    from agents.photos.faces import FaceDetector

    dense, sparse = tmp_path / "dense.mp4", tmp_path / "sparse.mp4"
    counter_clip(dense, seconds=6.0, fps=25, gop=10)  # a keyframe every 0.4 s
    counter_clip(sparse, seconds=6.0, fps=25, gop=50)
    for path, gop in ((dense, 10), (sparse, 50)):
        clips = timeline([(1, path.name, path, 6.0)])
        assert key_spacing(clips[0], 0.0) == pytest.approx(gop / 25)
        notes: list[str] = []
        got = sample(clips, 1.0, 5.0, fps=2.0, faces=FaceDetector(), notes=notes)
        assert not notes
        times = [f.t for f in got]
        assert all(1.0 <= t <= 5.0 for t in times) and all(
            b - a >= 0.39 for a, b in itertools.pairwise(times)
        )
        if gop == 10:  # keyframes only: every sample on a keyframe
            assert all(round(t * 25) % 10 == 0 for t in times), times
            # the first keyframe at or after each half second
            assert times == pytest.approx([1.2, 1.6, 2.0, 2.8, 3.2, 3.6, 4.0, 4.8], abs=0.001)
        else:  # every frame decoded: a sample each half second
            assert times == pytest.approx([1.0 + 0.5 * k for k in range(9)], abs=0.041)


async def test_the_grouping_starts_each_jump_with_the_steps_its_product_bought(
    tmp_path: Path, settings: Settings, names: Names, clean_db: AsyncEngine
) -> None:
    from pipeline_harness import emitter

    from agents.jobs import kinds
    from agents.jobs.sessions import group_and_start
    from agents.pipeline import operations as ops
    from agents.pipeline.registry import Registry

    settings.share_root.mkdir(parents=True, exist_ok=True)
    async with emitter(settings, names) as em:
        jc = JobContext(
            settings=settings, engine=clean_db, registry=Registry(kinds.ALL), emitter=em,
            send_result=must_not_send, send_copy_request=must_not_send,
        )  # fmt: skip
        ids = []
        for n, (kind, product) in enumerate(
            [("qr_candidate", "Video + Photos"), ("footage", None),
             ("qr_candidate", "tandem deluxe"), ("footage", None)]
        ):  # fmt: skip
            fid = await add_clip(
                jc, "card-G", f"GX01000{n + 1}.MP4", seconds=None, minute=n * 3, kind=kind
            )
            if product is not None:
                async with clean_db.begin() as conn:
                    await media.save_qr(
                        conn, fid,
                        media.QrScan("decoded", "x", f"BK-G{n}", "Ana", product, 0.5, "t", "", 1.0),
                    )  # fmt: skip
            ids.append(fid)
        started = await group_and_start(jc, "card-G", ids)
    by_booking = {s["booking_id"]: s for s in started.summary}
    assert set(by_booking) == {"BK-G0", "BK-G2"}
    async with clean_db.connect() as conn:
        both = await ops.load_states(conn, int(by_booking["BK-G0"]["execution_id"]))  # type: ignore[call-overload]
        unknown = await ops.load_states(conn, int(by_booking["BK-G2"]["execution_id"]))  # type: ignore[call-overload]
        sessions = {
            s["booking_id"]: await media.load_session(conn, str(s["key"])) for s in started.summary
        }
    assert {"render", "publish", "photos"} <= set(both)
    # 'tandem deluxe' names neither: the default (video), and a warning saying so
    assert {"render", "publish"} <= set(unknown) and "photos" not in unknown
    warned = sessions["BK-G2"]
    assert warned is not None and any(
        "'tandem deluxe' not understood: delivering the default (video)" in w
        for w in warned.warnings
    ), warned.warnings
    assert sessions["BK-G0"] is not None and not sessions["BK-G0"].warnings


def test_the_phases_output_gives_the_marks_and_what_to_say() -> None:
    marks, notes = photos_step.marks_of(
        {"needs_review": True, "marks": {"exit": {"t": 31.5}, "opening": None, "landing": {}}}
    )
    assert marks == {"exit": 31.5, "opening": None, "landing": None}
    assert notes and "need review" in notes[0]
    assert photos_step.marks_of({"needs_review": False, "marks": {"exit": {"t": 3}}})[1] == []
    none, why = photos_step.marks_of(None)
    assert none == {} and "all footage" in why[0]
