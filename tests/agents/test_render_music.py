"""The music bed of an edited jump (issue 15): the plan's music input, gain, fades and mix (pure,
and byte-for-byte the plan of before without music); the music travelling from the `phases`
step's record through the render job; a real FFmpeg render of a cut clip with a generated tone
as music, measured with an FFT (its level under the original, its fade in, its loop covering the
edit); an undecodable music file failing the render with a clear permanent error."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import subprocess
from pathlib import Path

import av
import ledger_rows
import numpy as np
import pytest
from ledger_rows import add_clip, job_settings
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncEngine
from test_phases_step import CARD, must_not_send, run_phases

from agents.edit import EditError, EditSettings, MusicBed
from agents.jobs import phases_step
from agents.jobs.context import JobContext
from agents.jobs.edit_record import EditRecord
from agents.jobs.render import render_music, render_request
from agents.pipeline.dispatch import Emitter
from agents.pipeline.handlers import default_handlers
from agents.render.branding import Branding
from agents.render.contract import RenderClip, RenderJob, RenderMusic
from agents.render.errors import RenderError
from agents.render.ffmpeg import locate_ffmpeg
from agents.render.job import SessionOutput, render_inputs, render_session
from agents.render.music import Music, MusicError
from agents.render.plan import Clip, Cut, RenderTargets, build_plan
from agents.render.queue import RenderWorkerConfig, decode_request
from agents.render.worker import config_from
from agents.telemetry.marks import JumpPhases, Mark, MarkKind, Source
from agents.telemetry.profile import draw_params, generate
from agents.telemetry.synthetic import VideoFormat, write_jump
from benchmarks._render_media import make_clip
from streams.settings import Settings

TARGETS = RenderTargets(
    Path("/out/.v.mp4.partial-1"), Path("/out/.v.jpg.partial-1"), Path("/t/x.txt")
)
MUSIC = Music(Path("/m/bed.mp3"), level_db=-18.0, fade_in_s=2.0, fade_out_s=3.0)


def graph(args: tuple[str, ...]) -> str:
    return args[args.index("-filter_complex") + 1]


def edited_case(music: Music | None = None) -> tuple[str, ...]:
    """An edit with an intro, a logo, a title, a portrait clip without audio and a replay."""
    b = Branding(intro_path=Path("/b/intro.mp4"), logo_path=Path("/b/logo.png"))
    clips = [
        Clip(Path("/media/GX010042.MP4"), 600.0, 1920, 1080, 30.0, True),
        Clip(Path("/media/GX020042.MP4"), 300.0, 3840, 2160, 59.94, False, 90),
    ]
    intro = Clip(Path("/b/intro.mp4"), 3.0, 1280, 720, 25.0, True)
    cuts = [Cut(0, 590.0, 600.0), Cut(1, 0.0, 250.5), Cut(0, 599.0, 600.0, 0.5)]
    return build_plan(
        clips, b, "Zoë", TARGETS, intro=intro, font=Path("/fonts/D.ttf"), threads=2, cuts=cuts,
        music=music,
    ).args  # fmt: skip


def whole_case() -> tuple[str, ...]:
    b = Branding(width=320, height=180, title_enabled=False)
    clips = [
        Clip(Path("/media/a.mp4"), 2.0, 320, 180, 30.0, True),
        Clip(Path("/media/b.mp4"), 1.5, 640, 360, 24.0, False),
    ]
    return build_plan(clips, b, "", TARGETS).args


def digest(args: tuple[str, ...]) -> str:
    return hashlib.sha256("\0".join(args).encode()).hexdigest()


def test_without_music_the_plan_is_byte_for_byte_the_one_before_the_music_bed() -> None:
    # the sha256 of these two plans' arguments as agents/render/plan.py made them before the
    # music bed (commit 84de7cf), "\0"-joined
    assert digest(edited_case()) == (
        "0cb498815122a5c1b3ef5bcbb27c47f36e5083c396dab017a90e46ef271907ca"
    )
    assert digest(whole_case()) == (
        "7648ed6c0cdb35b152585a9e24bfa558d3ed74fa3ff111253b8741b2f186b557"
    )


def test_the_music_is_one_more_looped_input_mixed_under_the_footage_only() -> None:
    plain, args = edited_case(), edited_case(MUSIC)
    inputs = [args[i + 1] for i, a in enumerate(args) if a == "-i"]
    assert inputs[-1] == "file:/m/bed.mp3" and inputs[:-1] == [
        plain[i + 1] for i, a in enumerate(plain) if a == "-i"
    ]
    at = args.index("file:/m/bed.mp3")
    assert args[at - 3 : at] == ("-stream_loop", "-1", "-i")
    g = graph(args)
    footage = 10 + 250.5 + 2  # the music ends with the footage: 262.5 s
    assert (
        "[5:a:0]aresample=48000,aformat=sample_fmts=fltp:sample_rates=48000:channel_layouts=stereo,"
        "atrim=duration=262.5,asetpts=PTS-STARTPTS,volume=-18dB,"
        "afade=t=in:st=0:d=2,afade=t=out:st=259.5:d=3[music]" in g
    )
    assert "[fa][music]amix=inputs=2:duration=first:dropout_transition=0:normalize=0[fam]" in g
    # the intro keeps its own sound: the mixed footage sound joins it after the mix
    assert "[iv][ia][fvm][fam]concat=n=2:v=1:a=1[vout][aout]" in g
    assert "[ia]" not in g.split("amix")[0]
    assert footage == pytest.approx(262.5)
    # everything else is the plan without music
    assert g.replace(g[g.index(";[5:a:0]") : g.index("[fam]") + len("[fam]")], "").replace(
        "[fam]", "[fa]"
    ) == graph(plain)


def test_the_mix_of_footage_without_an_intro_is_the_output_sound() -> None:
    b = Branding(width=320, height=180, title_enabled=False)
    clip = Clip(Path("/media/a.mp4"), 60.0, 320, 180, 30.0, True)
    plan = build_plan([clip], b, "", TARGETS, cuts=[Cut(0, 10.0, 16.0)], music=MUSIC)
    g = graph(plan.args)
    assert "[2:a:0]" not in g and "[1:a:0]aresample" in g  # no logo: the music is input 1
    assert g.endswith("[fam]anull[aout]")
    assert plan.total_duration == pytest.approx(6.0)


def test_fades_longer_than_the_footage_are_halved_and_zero_fades_left_out() -> None:
    b = Branding(width=320, height=180, title_enabled=False)
    clip = Clip(Path("/media/a.mp4"), 60.0, 320, 180, 30.0, True)
    short = build_plan([clip], b, "", TARGETS, cuts=[Cut(0, 0.0, 4.0)], music=MUSIC)
    assert "afade=t=in:st=0:d=2,afade=t=out:st=2:d=2[music]" in graph(short.args)
    none = Music(Path("/m/bed.mp3"), -6.0, 0.0, 0.0)
    g = graph(build_plan([clip], b, "", TARGETS, cuts=[Cut(0, 0.0, 4.0)], music=none).args)
    assert "afade" not in g and "volume=-6dB[music]" in g


@pytest.mark.parametrize(
    ("kw", "why"),
    [
        ({"level_db": 3.0}, "level"),
        ({"level_db": -61.0}, "level"),
        ({"level_db": math.nan}, "level"),
        ({"fade_in_s": -1.0}, "fade_in_s"),
        ({"fade_out_s": math.inf}, "fade_out_s"),
    ],
)
def test_nonsense_music_values_are_refused(kw: dict[str, float], why: str) -> None:
    with pytest.raises(MusicError, match=why):
        Music(Path("/m/bed.mp3"), **kw)
    with pytest.raises(EditError, match=why.replace("level", "music level")):
        MusicBed("/m/bed.mp3", **kw)


# --- the music travelling: settings → phases record → render job → worker ---


def _mark(kind: MarkKind, t: float) -> Mark:
    return Mark(kind, t, 0.9, Source.TELEMETRY)


SURE = JumpPhases(
    _mark(MarkKind.EXIT, 30.0), _mark(MarkKind.OPENING, 45.0), _mark(MarkKind.LANDING, 70.0),
    needs_review=False,
)  # fmt: skip
CLIPS = [phases_step.FootageClip(7, "GX010001.MP4", Path("/s/a"), 80.0)]


def test_the_configured_music_is_in_the_edit_record_and_round_trips(tmp_path: Path) -> None:
    bed = tmp_path / "bed.m4a"
    bed.write_bytes(b"x")
    settings = Settings(edit_music_path=bed, edit_music_level_db=-20, edit_music_fade_in_s=1.5)
    music = phases_step.music_bed(settings)
    assert music == MusicBed(str(bed.resolve()), -20.0, 1.5, 3.0)
    assert phases_step.music_bed(Settings()) is None
    record = phases_step.record_of(
        SURE, CLIPS, EditSettings(door_s=5, after_landing_s=2, music=music), telemetry=True,
        sound=True, notes=(),
    )  # fmt: skip
    out = json.loads(json.dumps(record.to_output()))
    assert out["edl"]["music"] == {
        "path": str(bed.resolve()), "level_db": -20.0, "fade_in_s": 1.5, "fade_out_s": 3.0,
    }  # fmt: skip
    back = EditRecord.from_output(out)
    assert back.music == music and back.spans == record.spans
    assert render_music(back) == RenderMusic(
        path=str(bed.resolve()), level_db=-20.0, fade_in_s=1.5, fade_out_s=3.0
    )


def test_an_edit_without_music_stores_null_and_older_outputs_read_as_none() -> None:
    record = phases_step.record_of(
        SURE, CLIPS, EditSettings(door_s=5, after_landing_s=2), telemetry=True, sound=True,
        notes=(),
    )  # fmt: skip
    out = record.to_output()
    assert out["edl"]["music"] is None  # type: ignore[index]
    assert EditRecord.from_output(out).music is None
    del out["edl"]["music"]  # type: ignore[attr-defined]  # a phases output of before
    back = EditRecord.from_output(out)
    assert back.music is None and render_music(back) is None


@pytest.mark.parametrize(
    "music",
    [
        "bed.mp3",
        {"level_db": -18, "fade_in_s": 2, "fade_out_s": 3},
        {"path": "/m/bed.mp3", "level_db": 12, "fade_in_s": 2, "fade_out_s": 3},
        {"path": "/m/bed.mp3", "level_db": "loud", "fade_in_s": 2, "fade_out_s": 3},
        {"path": "", "level_db": -18, "fade_in_s": 2, "fade_out_s": 3},
    ],
)
def test_a_malformed_stored_music_bed_is_refused(music: object) -> None:
    out = {"needs_review": False, "edl": {"total_s": 5.0, "spans": [], "music": music}}
    with pytest.raises(ValueError, match="malformed"):
        EditRecord.from_output(out)


def job(music: dict[str, object] | None) -> dict[str, object]:
    clip = RenderClip(path="/share/a.mp4", duration=60, width=320, height=180, fps=30,
                      has_audio=True)  # fmt: skip
    payload = RenderJob(session_key="c:1", output_name="BK-1", clips=[clip],
                        cuts=None).model_dump(mode="json")  # fmt: skip
    payload["music"] = music
    return payload


def test_the_render_job_carries_the_music_validated() -> None:
    bed = {"path": "/share/music/bed.mp3", "level_db": -12, "fade_in_s": 1, "fade_out_s": 0}
    request = decode_request(job(bed), RenderWorkerConfig())
    assert request.music == Music(Path("/share/music/bed.mp3"), -12.0, 1.0, 0.0)
    assert decode_request(job(None), RenderWorkerConfig()).music is None
    for bad in ({**bed, "level_db": 6}, {**bed, "fade_out_s": -1}, {**bed, "path": ""}):
        with pytest.raises(ValidationError):
            RenderJob.model_validate(job(bad))
        with pytest.raises(RenderError, match="bad render request"):
            decode_request(job(bad), RenderWorkerConfig())
    # a music file outside the worker's media roots is refused like a logo would be
    roots = RenderWorkerConfig(media_roots=(Path("/share"),))
    assert decode_request(job(bed), roots).music is not None
    with pytest.raises(RenderError, match=r"outside the media roots: \['bed.mp3'\]"):
        decode_request(job({**bed, "path": "/etc/bed.mp3"}), roots)


def test_the_music_is_in_the_fingerprint_only_when_there_is_one(tmp_path: Path) -> None:
    clips = [Clip(tmp_path / "a.mp4", 60.0, 320, 180, 30.0, True)]
    out = SessionOutput("c:1", "BK-1")
    cuts = [Cut(0, 1.0, 7.0)]
    plain = render_inputs(clips, Branding(), "", out, cuts)
    assert "music" not in plain
    with_music = render_inputs(clips, Branding(), "", out, cuts, MUSIC)
    assert with_music["music"] == {
        "name": "bed.mp3", "file": None, "level_db": -18.0, "fade": [2.0, 3.0],
    }  # fmt: skip


# --- a real render, measured ---

RATE = 48000
CLIP_HZ = 440  # the clip's own sound (benchmarks._render_media.make_clip's tone)
MUSIC_HZ = 2500
W, H = 320, 180


def make_tone(path: Path, seconds: float, hz: int) -> Path:
    """A mono sine tone of FFmpeg's `sine` source (the clip's tone has the same amplitude)."""
    args = [locate_ffmpeg(), "-hide_banner", "-loglevel", "error", "-nostdin", "-y", "-f",
            "lavfi", "-i", f"sine=frequency={hz}:sample_rate=44100:duration={seconds}",
            "-c:a", "aac", "-b:a", "96k", str(path)]  # fmt: skip
    subprocess.run(args, check=True)
    return path


def sound_of(path: Path) -> np.ndarray:
    """The first channel of a video's audio, as float samples at RATE."""
    chunks = []
    with av.open(str(path)) as c:
        assert c.streams.audio[0].rate == RATE
        for frame in c.decode(audio=0):
            chunks.append(frame.to_ndarray()[0])
    return np.concatenate(chunks)


def band_db(samples: np.ndarray, start: float, end: float, hz: float) -> float:
    """Energy (dB) within 60 Hz of `hz` in samples[start:end] s (Hann-windowed FFT)."""
    part = samples[round(start * RATE) : round(end * RATE)]
    spectrum = np.abs(np.fft.rfft(part * np.hanning(len(part)))) ** 2
    freqs = np.fft.rfftfreq(len(part), 1 / RATE)
    energy = float(spectrum[np.abs(freqs - hz) <= 60].sum())
    return 10 * math.log10(energy + 1e-20)


def output_duration(path: Path) -> float:
    with av.open(str(path)) as c:
        return (c.duration or 0) / 1e6


@pytest.mark.slow
async def test_a_cut_clip_gets_its_music_at_its_level_faded_in_and_looped(
    tmp_path: Path,
) -> None:
    src = make_clip(tmp_path / "GX010042.MP4", seconds=8, width=W, height=H, fps=30)
    tone = make_tone(tmp_path / "bed.m4a", 2.0, MUSIC_HZ)  # shorter than the edit: looped
    music = Music(tone, level_db=-18.0, fade_in_s=1.0, fade_out_s=1.0)
    clip = Clip(src, 8.0, W, H, 30.0, True)
    branding = Branding(width=W, height=H, preset="ultrafast", title_enabled=False)
    out = await render_session(
        [clip], branding, output=SessionOutput("c:1", "BK-1"), passenger_name="",
        output_root=tmp_path / "renders", cuts=[Cut(0, 1.0, 7.0)], music=music,
    )  # fmt: skip
    assert out.duration == pytest.approx(6.0)
    assert output_duration(out.video) == pytest.approx(6.0, abs=0.15)  # the edit's, not longer
    sound = sound_of(out.video)
    assert len(sound) / RATE == pytest.approx(6.0, abs=0.1)

    # the music under the original at its level, across the whole edit (the 2 s tone looped
    # twice more); the windows are clear of the fades
    levels = {}
    for start in (1.1, 1.8, 2.5, 3.2, 3.9, 4.4):
        levels[start] = band_db(sound, start, start + 0.5, MUSIC_HZ) - band_db(
            sound, start, start + 0.5, CLIP_HZ
        )
    assert all(abs(level + 18.0) <= 1.0 for level in levels.values()), levels
    middle = band_db(sound, 2.5, 3.5, MUSIC_HZ)
    # faded in: the first 0.3 s (gain at most 0.3 -> at least 10 dB down) quieter in the band
    assert band_db(sound, 0.0, 0.3, MUSIC_HZ) < middle - 10
    assert band_db(sound, 5.7, 6.0, MUSIC_HZ) < middle - 10  # and faded out by the end
    # the original stays at 0 dB: the clip's tone as loud as in a render without music
    plain = await render_session(
        [clip], branding, output=SessionOutput("c:2", "BK-2"), passenger_name="",
        output_root=tmp_path / "renders", cuts=[Cut(0, 1.0, 7.0)],
    )  # fmt: skip
    without = sound_of(plain.video)
    assert band_db(sound, 2.5, 3.5, CLIP_HZ) == pytest.approx(
        band_db(without, 2.5, 3.5, CLIP_HZ), abs=0.5
    )
    assert band_db(without, 2.5, 3.5, MUSIC_HZ) < middle - 40  # and the music is the bed's
    manifest = json.loads(out.manifest.read_text())
    assert manifest["inputs"]["music"]["name"] == "bed.m4a"
    assert plain.fingerprint != out.fingerprint


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["garbage", "empty", "video only", "missing"])
async def test_an_undecodable_music_file_fails_the_render_clearly(
    tmp_path: Path, kind: str
) -> None:
    src = make_clip(tmp_path / "GX010042.MP4", seconds=2, width=W, height=H, fps=30)
    bed = tmp_path / "bed.mp3"
    if kind == "garbage":
        bed.write_bytes(bytes(range(256)) * 64)
    elif kind == "empty":
        bed.write_bytes(b"")
    elif kind == "video only":
        make_clip(tmp_path / "v.mp4", seconds=1, width=W, height=H, audio=False).rename(bed)
    branding = Branding(width=W, height=H, preset="ultrafast", title_enabled=False)
    with pytest.raises(RenderError) as caught:
        await render_session(
            [Clip(src, 2.0, W, H, 30.0, True)], branding, output=SessionOutput("c:1", "BK-1"),
            passenger_name="", output_root=tmp_path / "renders", cuts=[Cut(0, 0.0, 2.0)],
            music=Music(bed),
        )  # fmt: skip
    assert not caught.value.retryable
    message = caught.value.message
    assert message.startswith(f"the music bed {bed} cannot be read (")
    assert message.endswith("): replace it or unset SKYREEL_EDIT_MUSIC_PATH")
    assert not (tmp_path / "renders").exists()  # nothing rendered, no silent video


# --- end to end: the phases step with music configured, the render job, the worker ---


@pytest.mark.slow
async def test_a_jump_edited_with_music_configured_renders_with_its_music(
    tmp_path: Path, engine: AsyncEngine, clean_db: AsyncEngine, database_url: str
) -> None:
    folder = tmp_path / "music"  # outside the share: the worker's media roots take its folder
    folder.mkdir()
    tone = make_tone(folder / "bed.m4a", 5.0, MUSIC_HZ)
    settings = job_settings(
        tmp_path, database_url, edit_jumps=True, edit_door_s=3.0, edit_after_landing_s=2.0,
        edit_music_path=tone, edit_music_level_db=-12.0,
    )  # fmt: skip
    jc = JobContext(
        settings=settings, engine=engine, registry=default_handlers().registry,
        emitter=Emitter(must_not_send), send_result=must_not_send,
        send_copy_request=must_not_send,
    )  # fmt: skip
    params = dataclasses.replace(draw_params(21, compress=0.15), air_pocket_s=None, muffled=False)
    made = tmp_path / "made"
    made.mkdir()
    paths = write_jump(generate(params), made, chapter_s=40.0, video=VideoFormat(320, 180, 30))
    ids = [
        await add_clip(jc, CARD, p.name, seconds=output_duration(p), minute=n, made=p)
        for n, p in enumerate(paths)
    ]
    await ledger_rows.add_session(jc, CARD, f"{CARD}:1", ids, "BK-15", "Zoë Sky")

    out = await run_phases(jc, f"{CARD}:1", eid=1)
    edl = out["edl"]
    assert isinstance(edl, dict), out["reasons"]
    assert edl["music"] == {
        "path": str(tone.resolve()), "level_db": -12.0, "fade_in_s": 2.0, "fade_out_s": 3.0,
    }  # fmt: skip
    payload = await render_request(jc, f"{CARD}:1", execution_id=1)
    assert payload.music == RenderMusic(path=str(tone.resolve()), level_db=-12.0)
    request = decode_request(payload.model_dump(mode="json"), config_from(settings))
    rendered = await render_session(
        request.clips, request.branding, output=request.output,
        passenger_name=request.passenger_name, output_root=settings.render_staging,
        cuts=request.cuts, music=request.music,
    )  # fmt: skip
    total = float(edl["total_s"])
    assert output_duration(rendered.video) == pytest.approx(total, abs=0.3)
    sound = sound_of(rendered.video)
    mid = total / 2
    # the tone stands out of the jump's own sound next to it
    music = band_db(sound, mid - 0.5, mid + 0.5, MUSIC_HZ)
    beside = max(band_db(sound, mid - 0.5, mid + 0.5, f) for f in (MUSIC_HZ - 300, MUSIC_HZ + 300))
    assert music > beside + 10, (music, beside)
