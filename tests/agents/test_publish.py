"""Render + publish with real FFmpeg and real files: one jump, one output.

Two sessions of one booking are two files; a re-render of a session replaces only its own output;
another session's output (or a file nobody owns) at the destination is never replaced; changed
inputs force a new render, unchanged ones reuse the published video.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from agents.jobs.publish import Rendered, publish_files
from agents.pipeline.errors import PermanentStepError
from agents.render.branding import Branding
from agents.render.errors import RenderError
from agents.render.identity import output_name, read_manifest, sha256_of
from agents.render.job import RenderOutput, SessionOutput, probe_clip, render_session
from agents.render.plan import Clip
from benchmarks._render_media import make_clip

pytestmark = pytest.mark.slow
SMALL = Branding(width=320, height=180, preset="ultrafast", title_enabled=False)
START = datetime(2026, 5, 1, 14, 30, tzinfo=UTC)


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Clip]:
    d = tmp_path_factory.mktemp("publish-media")
    return {
        "a": probe_clip(make_clip(d / "GX010001.MP4", seconds=1, width=320, height=180)),
        "b": probe_clip(make_clip(d / "GX010002.MP4", seconds=1, width=320, height=180)),
    }


def owner(session: str, booking: str = "BK-7", passenger: str = "Ann Lee") -> SessionOutput:
    return SessionOutput(session, output_name(booking, passenger, START, session), execution_id=1)


async def render(
    clip: Clip, who: SessionOutput, root: Path, *, branding: Branding = SMALL
) -> RenderOutput:
    return await render_session(
        [clip],
        branding,
        output=who,
        passenger_name="Ann Lee",
        output_root=root / "staging",
        published_root=root / "output",
    )


def rendered(out: RenderOutput, who: SessionOutput) -> Rendered:
    return Rendered(out.video, out.poster, out.manifest, who.session_key, who.name, out.fingerprint)


async def publish(out: RenderOutput, who: SessionOutput, root: Path) -> dict[str, object]:
    return await asyncio.to_thread(publish_files, rendered(out, who), root / "output")


def hashes(folder: Path) -> dict[str, str]:
    return {p.name: sha256_of(p) for p in sorted(folder.iterdir())}


async def test_two_sessions_of_one_booking_are_two_files(
    clips: dict[str, Clip], tmp_path: Path
) -> None:
    first, second = owner("card-1:jump-1"), owner("card-1:jump-2")
    # same booking, passenger and minute (two tickets of a group booking): still two names
    assert first.name != second.name and first.name.startswith("BK-7_Ann-Lee_20260501-1430_")
    one = await publish(await render(clips["a"], first, tmp_path), first, tmp_path)
    before = hashes(tmp_path / "output" / first.name)
    two = await publish(await render(clips["b"], second, tmp_path), second, tmp_path)
    assert one["video"] != two["video"]
    assert hashes(tmp_path / "output" / first.name) == before
    assert sorted(p.name for p in (tmp_path / "output").iterdir()) == sorted(
        [first.name, second.name]
    )
    manifest = read_manifest(Path(str(two["manifest"])))
    assert manifest is not None and manifest.session_key == "card-1:jump-2"
    assert manifest.execution_id == 1 and manifest.inputs["title"] == ""
    # nothing is left in staging once published
    assert [p for p in (tmp_path / "staging").rglob("*") if p.is_file()] == []


async def test_rerender_of_a_session_replaces_only_its_own_output(
    clips: dict[str, Clip], tmp_path: Path
) -> None:
    mine, other = owner("card-1:jump-1"), owner("card-1:jump-2")
    await publish(await render(clips["a"], mine, tmp_path), mine, tmp_path)
    await publish(await render(clips["b"], other, tmp_path), other, tmp_path)
    others = hashes(tmp_path / "output" / other.name)
    old = hashes(tmp_path / "output" / mine.name)

    again = await render(clips["a"], mine, tmp_path, branding=replace(SMALL, crf=30))
    assert not again.skipped  # the render settings changed: a new render
    result = await publish(again, mine, tmp_path)
    assert result["replaced"] is True and result["reused"] is False
    new = hashes(tmp_path / "output" / mine.name)
    assert new[f"{mine.name}.mp4"] != old[f"{mine.name}.mp4"]
    assert sorted(new) == sorted(old)  # same three names, replaced in place
    assert hashes(tmp_path / "output" / other.name) == others


async def test_unchanged_inputs_reuse_the_published_output(
    clips: dict[str, Clip], tmp_path: Path
) -> None:
    mine = owner("card-1:jump-1")
    await publish(await render(clips["a"], mine, tmp_path), mine, tmp_path)
    video = tmp_path / "output" / mine.name / f"{mine.name}.mp4"
    mtime = video.stat().st_mtime_ns

    again = await render(clips["a"], mine, tmp_path)
    assert again.skipped and again.video == video
    result = await publish(again, mine, tmp_path)
    assert result["reused"] is True and result["video"] == str(video)
    assert video.stat().st_mtime_ns == mtime

    # other footage (clip b) for the same session: a new render, the same name
    changed = await render(clips["b"], mine, tmp_path)
    assert not changed.skipped and changed.fingerprint != again.fingerprint


async def test_another_sessions_output_at_the_destination_is_never_replaced(
    clips: dict[str, Clip], tmp_path: Path
) -> None:
    mine = owner("card-1:jump-1")
    await publish(await render(clips["a"], mine, tmp_path), mine, tmp_path)
    folder = tmp_path / "output" / mine.name
    before = hashes(folder)
    intruder = SessionOutput("card-9:jump-5", mine.name, execution_id=2)  # same name, by force

    with pytest.raises(RenderError, match="belongs to session 'card-1:jump-1'") as info:
        await render(clips["b"], intruder, tmp_path)
    assert not info.value.retryable
    # a worker that cannot see the published folder renders; publishing it is refused
    staged = await render_session(
        [clips["b"]], SMALL, output=intruder, passenger_name="x", output_root=tmp_path / "staging"
    )
    with pytest.raises(PermanentStepError, match="not replacing another jump's video"):
        await publish(staged, intruder, tmp_path)
    assert hashes(folder) == before


async def test_a_file_nobody_owns_at_the_destination_is_not_replaced(
    clips: dict[str, Clip], tmp_path: Path
) -> None:
    mine = owner("card-1:jump-1")
    folder = tmp_path / "output" / mine.name
    folder.mkdir(parents=True)
    (folder / f"{mine.name}.mp4").write_bytes(b"somebody's video")
    out = await render(clips["a"], mine, tmp_path)
    with pytest.raises(PermanentStepError, match="no manifest says whose it is"):
        await publish(out, mine, tmp_path)
    assert (folder / f"{mine.name}.mp4").read_bytes() == b"somebody's video"
    assert not (folder / f"{mine.name}.json").exists()


async def test_a_publish_that_died_after_moving_the_video_finishes_on_retry(
    clips: dict[str, Clip], tmp_path: Path
) -> None:
    mine = owner("card-1:jump-1")
    out = await render(clips["a"], mine, tmp_path)
    folder = tmp_path / "output" / mine.name
    folder.mkdir(parents=True)
    shutil.move(out.video, folder / out.video.name)  # moved, then the worker died
    result = await publish(out, mine, tmp_path)
    assert result["reused"] is False
    assert sorted(hashes(folder)) == sorted(f"{mine.name}{s}" for s in (".jpg", ".json", ".mp4"))
    assert json.loads((folder / f"{mine.name}.json").read_text())["session_key"] == mine.session_key
    # and once more: the staged manifest is gone, the published output is kept
    assert (await publish(out, mine, tmp_path))["reused"] is True
