"""render_session with real FFmpeg on short generated clips: output facts, watermark, titles,
failures and idempotent re-runs."""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import av
import numpy as np
import pytest
from saq.job import Job
from support import small_disk

from agents.render.branding import Branding
from agents.render.errors import NoSpaceError, RenderError, TransientRenderError, is_no_space
from agents.render.ffmpeg import failure_class
from agents.render.identity import output_name, read_manifest
from agents.render.job import (
    RenderOutput,
    SessionOutput,
    check_output,
    probe_clip,
    render_session,
)
from agents.render.plan import Clip
from agents.render.worker import (
    SPACE_RETRIES,
    SPACE_RETRY_DELAY_S,
    SPACE_RETRY_MAX_S,
    wait_for_space,
)
from benchmarks._render_media import make_clip, make_logo

pytestmark = pytest.mark.slow
W, H = 320, 180


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("render-media")
    return {
        "intro": make_clip(d / "intro.mp4", seconds=1, width=320, height=240, fps=25, tone_hz=660),
        "a": make_clip(d / "GX010042.MP4", seconds=1.5, width=640, height=360, fps=30),
        "b": make_clip(d / "GX020042.MP4", seconds=1, width=480, height=360, fps=24, audio=False),
        "small": make_clip(d / "small.mp4", seconds=1, width=W, height=H, fps=30),
        "logo": make_logo(d / "logo.png"),
    }


def frame_at(path: Path, seconds: float) -> np.ndarray:
    with av.open(str(path)) as c:
        for frame in c.decode(video=0):
            if frame.time is not None and frame.time >= seconds:
                return frame.to_ndarray(format="rgb24").astype(np.int16)
    raise AssertionError(f"no frame at {seconds}s in {path}")


START = datetime(2026, 5, 1, 14, 30, tzinfo=UTC)


def owner(booking: str, passenger: str = "", session: str = "") -> SessionOutput:
    """The output identity a session of `booking` gets (session key defaults to the booking)."""
    key = session or f"card-1:{booking}"
    return SessionOutput(key, output_name(booking, passenger, START, key))


def small_branding(**kw: object) -> Branding:
    values: dict[str, object] = {
        "width": W,
        "height": H,
        "preset": "ultrafast",
        "title_enabled": False,
    }
    values.update(kw)
    return Branding(**values)  # type: ignore[arg-type]


def cut_after_probe(src: Path, parts: int) -> Clip:
    """The facts of ``src``, probed whole; then the file is cut to its first 1/``parts``."""
    facts = probe_clip(src)
    data = src.read_bytes()
    src.write_bytes(data[: len(data) // parts])
    return facts


async def render_as(clips: list[Clip], booking: str, passenger: str, root: Path) -> RenderOutput:
    """The session of ``booking`` for ``passenger`` rendered into ``root``, small branding."""
    return await render_session(
        clips,
        small_branding(),
        output=owner(booking, passenger),
        passenger_name=passenger,
        output_root=root,
    )


async def test_render_normalises_mixed_clips_to_one_h264_aac_output(
    media: dict[str, Path], tmp_path: Path
) -> None:
    clips = [probe_clip(media["a"]), probe_clip(media["b"])]
    assert not clips[1].has_audio and clips[1].fps == pytest.approx(24)
    branding = Branding(
        intro_path=media["intro"],
        logo_path=media["logo"],
        width=640,
        height=360,
        preset="ultrafast",
    )
    fractions: list[float] = []

    async def progress(f: float) -> None:
        fractions.append(f)

    out = await render_session(
        clips,
        branding,
        output=owner("BK-1", "Ann Lee"),
        passenger_name="Ann Lee",
        output_root=tmp_path,
        on_progress=progress,
    )
    name = owner("BK-1", "Ann Lee").name
    assert (
        name.startswith("BK-1_Ann-Lee_20260501-1430_")
        and len(name) == len("BK-1_Ann-Lee_20260501-1430_") + 6
    )
    assert out.video == tmp_path / name / f"{name}.mp4" and not out.skipped
    assert out.duration == pytest.approx(3.5)
    assert check_output(out.video, duration=3.5, width=640, height=360) == []
    with av.open(str(out.video)) as c:
        assert c.streams.video[0].codec_context.name == "h264"
        assert c.streams.audio[0].codec_context.name == "aac"
        assert c.streams.audio[0].codec_context.sample_rate == 48000
        assert c.streams.audio[0].codec_context.layout.nb_channels == 2
        assert abs(c.duration / 1e6 - 3.5) <= 0.2
    with av.open(str(out.poster)) as p:
        assert p.streams.video[0].codec_context.name == "mjpeg"
        assert (
            p.streams.video[0].codec_context.width,
            p.streams.video[0].codec_context.height,
        ) == (640, 360)
    assert fractions and fractions[-1] == 1.0 and fractions == sorted(fractions)
    assert sorted(x.name for x in out.video.parent.iterdir()) == [
        f"{name}.jpg",
        f"{name}.json",
        f"{name}.mp4",
    ]
    manifest = read_manifest(out.manifest)
    assert manifest is not None and manifest.session_key == "card-1:BK-1"
    assert manifest.fingerprint == out.fingerprint
    assert manifest.files["video"].size == out.video.stat().st_size


@pytest.mark.parametrize("corner", ["tl", "br"])
async def test_watermark_is_present_at_its_corner(
    media: dict[str, Path], tmp_path: Path, corner: str
) -> None:
    clips = [probe_clip(media["small"])]
    plain = await render_as(clips, "P", "x", tmp_path / "p")
    marked = await render_session(
        clips,
        small_branding(
            logo_path=media["logo"], logo_corner=corner, logo_opacity=1.0, logo_width_frac=0.2
        ),
        output=owner("M", "x"),
        passenger_name="x",
        output_root=tmp_path / "m",
    )
    a, b = frame_at(plain.video, 0.5), frame_at(marked.video, 0.5)
    m = round(W * 0.025)
    rows = slice(m, m + 20) if corner == "tl" else slice(H - m - 20, H - m)
    cols = slice(m, m + 40) if corner == "tl" else slice(W - m - 40, W - m)
    other_rows = slice(H - m - 20, H - m) if corner == "tl" else slice(m, m + 20)
    other_cols = slice(W - m - 40, W - m) if corner == "tl" else slice(m, m + 40)
    assert np.abs(a[rows, cols] - b[rows, cols]).mean() > 40
    assert np.abs(a[other_rows, other_cols] - b[other_rows, other_cols]).mean() < 8


HOSTILE = [
    'O\'Brien "Bob"',
    "Dr: Who; [x], 100% \\n \\\\",
    "José Ñúñez-Gößling",
    "محمد العربي",
    "שָׁלוֹם עליכם",
    "'; rm -rf / #",
    "🪂 Sky Diver 🎉",
    "Line1\nLine2\r\n%{pts} %{eif:1:d}",
    "../../etc/passwd",
]


@pytest.mark.parametrize("name", HOSTILE)
async def test_hostile_passenger_names_render(
    media: dict[str, Path], tmp_path: Path, name: str
) -> None:
    out = await render_session(
        [probe_clip(media["small"])],
        small_branding(title_enabled=True),
        output=SessionOutput("card:hostile", output_name("BK/../7", name, START, "card:hostile")),
        passenger_name=name,
        output_root=tmp_path,
    )
    assert out.video.parent.parent == tmp_path and out.video.is_file()
    assert "/" not in out.video.parent.name and out.video.name.startswith("BK..7_")
    assert check_output(out.video, duration=1.0, width=W, height=H) == []


async def test_title_is_drawn(media: dict[str, Path], tmp_path: Path) -> None:
    clips = [probe_clip(media["small"])]
    b = small_branding(title_enabled=True, title_size_frac=0.2, title_color="white")
    titled = await render_session(
        clips, b, output=owner("T", "WWWW"), passenger_name="WWWW", output_root=tmp_path
    )
    plain = await render_as(clips, "U", "WWWW", tmp_path)
    diff = np.abs(frame_at(titled.video, 0.3) - frame_at(plain.video, 0.3))
    assert diff[H // 2 :, :].mean() > 5 * max(diff[: H // 4, :].mean(), 0.1)


async def test_truncated_input_fails_permanently_with_ffmpegs_message(
    media: dict[str, Path], tmp_path: Path
) -> None:
    src = make_clip(tmp_path / "moov-at-end.mp4", seconds=1, width=W, height=H, faststart=False)
    facts = cut_after_probe(src, 2)  # pulled out mid-copy: the moov atom is gone
    with pytest.raises(RenderError) as info:
        await render_as([facts], "X", "y", tmp_path / "o")
    assert not info.value.retryable
    assert "moov atom not found" in info.value.ffmpeg_tail
    assert not list((tmp_path / "o").rglob("*.mp4")) and not list(
        (tmp_path / "o").rglob(".*partial*")
    )


async def test_truncated_media_data_fails_permanently(
    media: dict[str, Path], tmp_path: Path
) -> None:
    src = make_clip(tmp_path / "faststart.mp4", seconds=2, width=W, height=H, faststart=True)
    facts = cut_after_probe(src, 3)
    with pytest.raises(RenderError) as info:
        await render_as([facts], "X", "y", tmp_path / "o")
    # FFmpeg either fails on the corrupt packets itself or renders short and the check catches it.
    assert not info.value.retryable
    assert "partial file" in info.value.ffmpeg_tail or "duration" in info.value.message
    assert not list((tmp_path / "o").rglob("*.mp4"))


async def test_rerun_is_idempotent_and_cleans_stale_partials(
    media: dict[str, Path], tmp_path: Path
) -> None:
    clips = [probe_clip(media["small"])]
    first = await render_as(clips, "R", "Re Run", tmp_path)
    folder = first.video.parent
    stale = folder / f".{first.video.name}.partial-deadbeef"
    stale.write_bytes(b"half a render from a killed worker")
    os.utime(stale, (0, 0))
    mtime = first.video.stat().st_mtime_ns
    again = await render_as(clips, "R", "Re Run", tmp_path)
    assert again.skipped and again.video == first.video
    assert first.video.stat().st_mtime_ns == mtime
    name = owner("R", "Re Run").name
    assert sorted(p.name for p in folder.iterdir()) == [
        f"{name}.jpg",
        f"{name}.json",
        f"{name}.mp4",
    ]


async def test_broken_final_output_is_rendered_again(
    media: dict[str, Path], tmp_path: Path
) -> None:
    clips = [probe_clip(media["small"])]
    first = await render_as(clips, "R", "z", tmp_path)
    first.video.write_bytes(b"not a video")
    again = await render_as(clips, "R", "z", tmp_path)
    assert not again.skipped and check_output(again.video, duration=1.0, width=W, height=H) == []


def test_output_name_never_escapes_the_output_root() -> None:
    digest = hashlib.sha256(b"k").hexdigest()[:6]
    assert (
        output_name("B-1", "../../etc/passwd", START, "k")
        == f"B-1_etc-passwd_20260501-1430_{digest}"
    )
    assert output_name("../../B 2", "Zoë O'Neil", START, "k").startswith("B2_Zoë-O-Neil_")
    # no passenger name: the booking alone, never "<booking>_passenger"; never a bare CON
    assert output_name("CON", "", START, "k") == f"CON_20260501-1430_{digest}"
    with pytest.raises(ValueError):
        output_name("///", "x", START, "k")


async def test_missing_logo_is_permanent(media: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(RenderError) as info:
        await render_session(
            [probe_clip(media["small"])],
            small_branding(logo_path=tmp_path / "nope.png"),
            output=owner("L", "x"),
            passenger_name="x",
            output_root=tmp_path,
        )
    assert not info.value.retryable


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 2 MiB file system for renders to fill up."""
    with small_disk(tmp_path / "tiny", "2m") as mnt:
        yield mnt


def _names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def _all_names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*"))


def _fill(disk: Path, leave: int) -> Path:
    filler = disk / "filler"
    filler.write_bytes(b"\0" * max(0, shutil.disk_usage(disk).free - leave))
    return filler


async def test_full_disk_is_no_space_leaves_nothing_and_renders_once_freed(
    media: dict[str, Path], tmp_path: Path, tiny_disk: Path
) -> None:
    clips = [probe_clip(media["a"])]
    out = owner("FULL1")
    filler = _fill(tiny_disk, leave=8 * 1024)  # FFmpeg starts writing, then the disk is full
    with pytest.raises(NoSpaceError) as info:
        await render_session(
            clips, small_branding(), output=out, passenger_name="", output_root=tiny_disk
        )
    assert info.value.retryable
    assert _names(tiny_disk) == ["filler"]  # no partial, no folder
    filler.unlink()
    done = await render_session(
        clips, small_branding(), output=out, passenger_name="", output_root=tiny_disk
    )
    assert not done.skipped and done.video.is_file()
    assert check_output(done.video, duration=done.duration, width=W, height=H) == []
    assert [n for n in _all_names(tiny_disk) if ".partial" in n] == []


async def test_no_room_even_for_the_folder_or_the_manifest_is_no_space(
    media: dict[str, Path], tmp_path: Path, tiny_disk: Path
) -> None:
    clips = [probe_clip(media["small"])]
    _fill(tiny_disk, leave=0)
    with pytest.raises(NoSpaceError):
        await render_session(
            clips, small_branding(), output=owner("FULL2"), passenger_name="", output_root=tiny_disk
        )
    assert _names(tiny_disk) == ["filler"]


def test_ffmpeg_failures_are_classified_by_their_stderr() -> None:
    tail = "[out#0/mp4] Error writing trailer: No space left on device"
    assert failure_class(tail) is NoSpaceError
    assert failure_class("av_interleaved_write_frame(): Disk quota exceeded") is NoSpaceError
    assert failure_class("Cannot allocate memory") is TransientRenderError
    assert failure_class("moov atom not found") is RenderError
    assert is_no_space(OSError(errno.ENOSPC, "full")) and not is_no_space(ValueError("x"))


def test_a_full_disk_gets_more_and_slower_retries() -> None:
    job = Job("render_job", retries=3)
    job.attempts = 1
    assert wait_for_space(job)
    assert (job.retries, job.retry_delay, job.retry_backoff) == (
        3,
        SPACE_RETRY_DELAY_S,
        SPACE_RETRY_MAX_S,
    )
    job.attempts = 3  # the usual retries are used up: a full disk gets more
    assert wait_for_space(job) and job.retries == 4
    job.attempts = SPACE_RETRIES
    assert not wait_for_space(job)  # bounded: then the step fails (retryable)
    delays = [job.next_retry_delay() for _ in range(50)]
    assert all(0 <= d <= SPACE_RETRY_MAX_S for d in delays)


def test_the_staging_sweep_removes_orphaned_partials_only(tmp_path: Path) -> None:
    import os
    import time

    from agents.render.job import sweep_staging

    killed = tmp_path / "BK-1_Ann_20261201-0900_abc123"
    killed.mkdir()
    orphan = killed / ".BK-1_Ann_20261201-0900_abc123.mp4.partial-1f2e"
    orphan.write_bytes(b"half a video")
    old = time.time() - 3600
    os.utime(orphan, (old, old))
    live = tmp_path / "BK-2_Bo_20261201-0930_def456"
    live.mkdir()
    writing = live / ".BK-2_Bo_20261201-0930_def456.mp4.partial-9a9a"
    writing.write_bytes(b"being written")
    staged = live / "BK-2_Bo_20261201-0930_def456.mp4"
    staged.write_bytes(b"finished, waiting for publish")
    os.utime(staged, (old, old))

    assert sweep_staging(tmp_path, older_than_s=600) == 1
    assert not killed.exists()  # emptied: removed
    assert writing.exists() and staged.exists()
    assert sweep_staging(tmp_path / "missing", older_than_s=600) == 0
