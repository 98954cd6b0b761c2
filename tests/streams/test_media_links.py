"""Media links of the status API (red-team D19): every link answers from the hub's own /media
route with the file's bytes, a footage link points at the share (never /media/output/cards/),
and a file that is gone — a staged render after `publish`, a clip deleted from the share — has
no link (null, or left out of the list), not one that 404s.

Real hub (uvicorn), PostgreSQL rows as the pipeline writes them, real files under the test's
share and output roots; `publish` is the pipeline's own `publish_files`.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from status_harness import Served, api_settings, serve_hub, write_tiny_clip

from agents.jobs.publish import Rendered, publish_files
from agents.render.identity import Manifest, file_fact, manifest_path, write_manifest
from streams.hub.media_links import MediaRoots, locate, media_url
from streams.settings import Settings

CARD = "card-M"
SESSION = "card-M:1"
NAME = "BK1_Ann"  # the session's output name
CLIP = f"cards/{CARD}/00000001_GX010001.MP4"  # imported_file.stored_path: relative to the share


@dataclass(frozen=True)
class Seeded:
    jump: int  # the session's jump: render succeeded (staged), publish pending
    card_import: int  # the card's import: copy:<clip> succeeded with the clip's stored_path
    clip: int  # imported_file id of the copied clip
    rendered: Rendered  # what the render step staged


_STEP = text(
    "INSERT INTO pipeline_step (execution_id, name, kind, status, attempt, output) "
    "VALUES (:e, :n, :k, :s, 1, CAST(:o AS jsonb))"
)


def _stage_render(settings: Settings) -> Rendered:
    """A render's staged video, poster and manifest, as the render worker leaves them."""
    folder = settings.render_staging / NAME
    folder.mkdir(parents=True)
    (folder / f"{NAME}.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 staged video")
    (folder / f"{NAME}.jpg").write_bytes(b"\xff\xd8 staged poster")
    manifest = Manifest(
        session_key=SESSION,
        output_name=NAME,
        fingerprint="f" * 64,
        files={
            "video": file_fact(folder / f"{NAME}.mp4"),
            "poster": file_fact(folder / f"{NAME}.jpg"),
        },
    )
    write_manifest(manifest_path(folder, NAME), manifest)
    return Rendered(
        video=folder / f"{NAME}.mp4",
        poster=folder / f"{NAME}.jpg",
        manifest=manifest_path(folder, NAME),
        session_key=SESSION,
        output_name=NAME,
        fingerprint=manifest.fingerprint,
    )


async def seed(engine: AsyncEngine, settings: Settings) -> Seeded:
    write_tiny_clip(settings.share_root / CLIP)
    rendered = _stage_render(settings)
    render_output = {
        "video": str(rendered.video),
        "poster": str(rendered.poster),
        "manifest": str(rendered.manifest),
        "session_key": SESSION,
        "output_name": NAME,
        "fingerprint": rendered.fingerprint,
    }
    async with engine.begin() as conn:
        await conn.execute(text("INSERT INTO card (id, label) VALUES (:c, 'GOPRO-M')"), {"c": CARD})
        clip = await conn.scalar(
            text(
                "INSERT INTO imported_file (card_id, name, path, size, mtime_ms, kind, status, "
                "stored_path, session_key) VALUES (:c, 'GX010001.MP4', 'DCIM/GX010001.MP4', "
                ":size, 1700000000000, 'footage', 'imported', :p, :s) RETURNING id"
            ),
            {
                "c": CARD,
                "p": CLIP,
                "s": SESSION,
                "size": (settings.share_root / CLIP).stat().st_size,
            },
        )
        jump = await conn.scalar(
            text(
                "INSERT INTO pipeline_execution (key, pipeline, subject_type, subject_id, status) "
                "VALUES ('jump:card-M:1', 'jump', 'session', :s, 'running') RETURNING id"
            ),
            {"s": SESSION},
        )
        await conn.execute(
            text(
                "INSERT INTO jump_session (key, card_id, status, booking_id, passenger, file_ids, "
                "execution_id) VALUES (:s, :c, 'assigned', 'BK1', 'Ann', CAST(:ids AS text[]), :e)"
            ),
            {"s": SESSION, "c": CARD, "ids": [str(clip)], "e": jump},
        )
        await conn.execute(
            _STEP,
            {
                "e": jump,
                "n": "render",
                "k": "render",
                "s": "succeeded",
                "o": json.dumps(render_output),
            },
        )
        await conn.execute(
            _STEP, {"e": jump, "n": "publish", "k": "publish", "s": "pending", "o": None}
        )
        card_import = await conn.scalar(
            text(
                "INSERT INTO pipeline_execution (key, pipeline, subject_type, subject_id, status) "
                "VALUES ('import:card-M', 'card_import', 'card', :c, 'running') RETURNING id"
            ),
            {"c": CARD},
        )
        await conn.execute(
            _STEP,
            {
                "e": card_import,
                "n": f"copy:{clip}",
                "k": "copy",
                "s": "succeeded",
                "o": json.dumps({"file_id": clip, "stored_path": CLIP}),
            },
        )
    return Seeded(int(jump), int(card_import), int(clip), rendered)


async def publish(engine: AsyncEngine, settings: Settings, s: Seeded) -> dict[str, object]:
    """`publish` as the pipeline runs it: the files move, the step records its output."""
    out = publish_files(s.rendered, settings.output_dir)
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "UPDATE pipeline_step SET status = 'succeeded', output = CAST(:o AS jsonb) "
                "WHERE execution_id = :e AND name = 'publish'"
            ),
            {"e": s.jump, "o": json.dumps(out)},
        )
    return out


def links(body: object) -> Iterator[str]:
    """Every link in a response body: each `url` and `frame_url` that is not null."""
    if isinstance(body, dict):
        for key, value in body.items():
            if key in ("url", "frame_url") and value is not None:
                yield str(value)
            else:
                yield from links(value)
    elif isinstance(body, list):
        for item in body:
            yield from links(item)


def on_disk(settings: Settings, url: str) -> Path:
    """The file a /media link names, found from the test's own roots (not the hub's code)."""
    mount, _, rel = url.removeprefix("/media/").partition("/")
    root = {"share": settings.share_root, "output": settings.output_dir}[mount]
    return root / httpx.URL("http://x/" + rel).path.removeprefix("/")


async def assert_links_serve(c: httpx.AsyncClient, settings: Settings, body: object) -> list[str]:
    """Every link in `body` answers 200 from the hub with the bytes of the file it names."""
    found = list(links(body))
    for url in found:
        r = await c.get(url)
        assert r.status_code == 200, (url, r.status_code, r.text[:200])
        if url.startswith("/media/"):
            assert r.content == on_disk(settings, url).read_bytes(), url
        else:  # the still frame of a clip
            assert r.headers["content-type"] == "image/jpeg" and r.content[:2] == b"\xff\xd8"
        assert not url.startswith("/media/output/cards/"), url
    return found


@pytest.fixture
async def hub(settings: Settings, clean_db: AsyncEngine) -> AsyncIterator[Served]:
    async with serve_hub(api_settings(settings)) as served:
        yield served


@pytest.fixture
async def client(hub: Served) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=hub.url, timeout=20) as c:
        yield c


async def _bodies(c: httpx.AsyncClient, s: Seeded) -> dict[str, object]:
    urls = {
        "jump": f"/api/executions/{s.jump}",
        "import": f"/api/executions/{s.card_import}",
        "session": f"/api/sessions/{SESSION}",
        "files": f"/api/cards/{CARD}/files",
    }
    out: dict[str, object] = {}
    for name, url in urls.items():
        r = await c.get(url)
        assert r.status_code == 200, r.text
        out[name] = r.json()
    return out


# red-team D19: footage links pointed at /media/output/cards/... (404)
async def test_every_link_serves_its_file_and_footage_is_on_the_share(
    client: httpx.AsyncClient, settings: Settings, clean_db: AsyncEngine
) -> None:
    s = await seed(clean_db, settings)
    bodies = await _bodies(client, s)
    for body in bodies.values():
        await assert_links_serve(client, settings, body)

    clip_url = f"/media/share/{CLIP}"
    imported = bodies["import"]
    assert isinstance(imported, dict)
    assert imported["media"] == [{"kind": "file", "url": clip_url, "name": Path(CLIP).name}]
    session = bodies["session"]
    assert isinstance(session, dict)
    [footage] = session["footage"]
    assert footage["url"] == clip_url
    assert footage["frame_url"] == f"/api/files/{s.clip}/frame.jpg"
    files = bodies["files"]
    assert isinstance(files, dict)
    assert [f["url"] for f in files["items"]] == [clip_url]
    # before publish: the staged render, served from the share where the render worker left it
    assert session["media"] == [
        {"kind": "video", "url": f"/media/share/renders/{NAME}/{NAME}.mp4", "name": f"{NAME}.mp4"},
        {"kind": "poster", "url": f"/media/share/renders/{NAME}/{NAME}.jpg", "name": f"{NAME}.jpg"},
    ]


# red-team D19: staging links stayed after publish (404)
async def test_after_publish_only_the_published_files_are_linked(
    client: httpx.AsyncClient, settings: Settings, clean_db: AsyncEngine
) -> None:
    s = await seed(clean_db, settings)
    staged = [
        str(u) for u in links((await client.get(f"/api/executions/{s.jump}")).json()["media"])
    ]
    await publish(clean_db, settings, s)
    assert not s.rendered.video.exists()  # publish moved it

    bodies = await _bodies(client, s)
    for body in bodies.values():
        await assert_links_serve(client, settings, body)
    for name in ("jump", "session"):
        body = bodies[name]
        assert isinstance(body, dict)
        assert [m["url"] for m in body["media"]] == [
            f"/media/output/{NAME}/{NAME}.mp4",
            f"/media/output/{NAME}/{NAME}.jpg",
        ], name
        assert not set(links(body["media"])) & set(staged), name
    # the old staging links themselves are 404s now: that is why the API no longer gives them
    for url in staged:
        assert (await client.get(url)).status_code == 404, url


# red-team D19: no link to a file that is gone
async def test_a_file_that_is_gone_has_no_link(
    client: httpx.AsyncClient, settings: Settings, clean_db: AsyncEngine
) -> None:
    s = await seed(clean_db, settings)
    await publish(clean_db, settings, s)
    (settings.share_root / CLIP).unlink()  # the copy was deleted from the share
    (settings.output_dir / NAME / f"{NAME}.jpg").unlink()  # and the published poster

    bodies = await _bodies(client, s)
    for body in bodies.values():
        await assert_links_serve(client, settings, body)
    session = bodies["session"]
    assert isinstance(session, dict)
    [footage] = session["footage"]
    assert footage["url"] is None and footage["frame_url"] is None
    assert [m["url"] for m in session["media"]] == [f"/media/output/{NAME}/{NAME}.mp4"]
    imported = bodies["import"]
    assert isinstance(imported, dict) and imported["media"] == []
    files = bodies["files"]
    assert isinstance(files, dict) and [f["url"] for f in files["items"]] == [None]
    # the frame endpoint agrees: the clip's still is a 404 now
    assert (await client.get(f"/api/files/{s.clip}/frame.jpg")).status_code == 404


# --- the one builder, directly -------------------------------------------------------------------


@pytest.fixture
def roots(tmp_path: Path) -> MediaRoots:
    share, output = tmp_path / "share", tmp_path / "output"
    (share / "cards/C").mkdir(parents=True)
    (share / "cards/C/a.MP4").write_bytes(b"clip")
    (output / "N").mkdir(parents=True)
    (output / "N/N.mp4").write_bytes(b"video")
    (output / "cards/C").mkdir(parents=True)  # a decoy: the same relative path under output
    (output / "cards/C/b.MP4").write_bytes(b"decoy")
    return MediaRoots(share=share, output=output)


def test_a_relative_path_is_footage_on_the_share_only(roots: MediaRoots) -> None:
    assert media_url(roots, "cards/C/a.MP4") == "/media/share/cards/C/a.MP4"
    assert media_url(roots, str(roots.share / "cards/C/a.MP4")) == "/media/share/cards/C/a.MP4"
    # the same relative path exists only under output: still not linked there
    assert media_url(roots, "cards/C/b.MP4") is None
    assert media_url(roots, "../output/cards/C/b.MP4") is None


def test_an_absolute_path_is_served_from_the_root_it_lies_in(roots: MediaRoots) -> None:
    assert media_url(roots, str(roots.output / "N/N.mp4")) == "/media/output/N/N.mp4"
    found = locate(roots, str(roots.output / "N/N.mp4"))
    assert found is not None and found.mount == "output" and found.path.read_bytes() == b"video"


def test_no_link_outside_the_roots_or_to_what_is_not_a_file(
    roots: MediaRoots, tmp_path: Path
) -> None:
    (tmp_path / "secret.mp4").write_bytes(b"no")
    (roots.share / "cards/C/link.mp4").symlink_to(tmp_path / "secret.mp4")
    for stored in (
        str(tmp_path / "secret.mp4"),
        "cards/C/link.mp4",
        "cards/C/missing.MP4",
        "cards/C",
        "",
        "cards/C/a\x00.MP4",
        "x" * 5000 + ".mp4",
        "cards/C/\udcff.MP4",
    ):
        assert media_url(roots, stored) is None, stored


def test_the_deeper_root_wins_when_output_lies_in_the_share(tmp_path: Path) -> None:
    share = tmp_path / "share"
    (share / "out/N").mkdir(parents=True)
    (share / "out/N/N.mp4").write_bytes(b"v")
    nested = MediaRoots(share=share, output=share / "out")
    assert media_url(nested, str(share / "out/N/N.mp4")) == "/media/output/N/N.mp4"


def test_a_name_is_quoted_in_its_link(roots: MediaRoots) -> None:
    (roots.share / "cards/C/Zoë #1?.MP4").write_bytes(b"x")
    assert media_url(roots, "cards/C/Zoë #1?.MP4") == "/media/share/cards/C/Zo%C3%AB%20%231%3F.MP4"
