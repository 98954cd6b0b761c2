"""The passenger page /p/<token> over HTTP: a real hub (uvicorn), PostgreSQL rows as the pipeline
writes them, real files (an H.264 MP4 and JPEGs made with FFmpeg) under the output folder.

The page shows the passenger (escaped) and the dropzone, links media only under /p/<token>;
media answer Range requests (206, suffix ranges, 416 past the end); the photos ZIP holds every
photo; expired, tampered, revoked, not-ready and purged links each get a clear page with their
status (never a 500), logged with the link id and never the token; invalid links are throttled
per address; the operator's API and CLI issue and revoke links.
"""

from __future__ import annotations

import io
import logging
import os
import stat
import time
import zipfile
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from itsdangerous import TimestampSigner, URLSafeTimedSerializer
from passenger_harness import BOOKING, PASSENGER, Jump, issue, make_logo, seed_jump
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from status_harness import AUTH, Served, api_settings, serve_hub

from detector.redact import redact
from storage.enums import StepStatus
from storage.passenger_links import SessionDeliverables
from streams.cli.links import link_cli
from streams.hub.passenger_links import (
    MAX_AGE_S,
    SALT,
    SECRET_FILE,
    LinkClaim,
    LinkRefused,
    LinkSigner,
    Refusal,
    link_secret,
)
from streams.hub.passenger_view import PageState, build_view
from streams.hub.passenger_zip import zip_chunks
from streams.settings import Settings

# --- pure parts ------------------------------------------------------------------------------


def test_token_round_trip_and_refusals() -> None:
    signer = LinkSigner("s" * 40)
    now = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    claim = LinkClaim(7, "BK-1", now + timedelta(days=30))
    token = signer.sign(claim)
    assert signer.verify(token, now) == claim
    with pytest.raises(LinkRefused) as expired:
        signer.verify(token, now + timedelta(days=30))
    assert expired.value.refusal is Refusal.EXPIRED and expired.value.link_id == 7
    # a changed payload character (the signature's last character may carry padding bits only)
    tampered = token[:4] + ("A" if token[4] != "A" else "B") + token[5:]
    for bad in (tampered, "x" + token, "", "a" * 500):
        with pytest.raises(LinkRefused) as invalid:
            signer.verify(bad, now)
        assert invalid.value.refusal is Refusal.INVALID
    with pytest.raises(LinkRefused) as other_key:
        LinkSigner("t" * 40).verify(token, now)
    assert other_key.value.refusal is Refusal.INVALID


def test_a_token_older_than_any_link_is_expired_whatever_it_says() -> None:
    class Old(TimestampSigner):
        def get_timestamp(self) -> int:
            return int(time.time()) - MAX_AGE_S - 60

    secret = "s" * 40
    crafted = URLSafeTimedSerializer(secret, salt=SALT, signer=Old).dumps(
        {"v": 1, "l": 3, "b": "BK-1", "x": int(time.time()) + 86_400}
    )
    with pytest.raises(LinkRefused) as found:
        LinkSigner(secret).verify(str(crafted), datetime.now(UTC))
    assert found.value.refusal is Refusal.EXPIRED and found.value.link_id == 3


def test_the_secret_is_generated_once_and_kept(tmp_path: object, settings: Settings) -> None:
    first = link_secret(settings)
    path = settings.data_dir / SECRET_FILE
    assert len(first) >= 32 and path.read_text().strip() == first
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert link_secret(settings) == first  # a restart signs with the same key
    secret = type(settings.passenger_link_secret)("c" * 40)
    configured = settings.model_copy(update={"passenger_link_secret": secret})
    assert link_secret(configured) == "c" * 40


def test_redaction_masks_passenger_paths() -> None:
    token = LinkSigner("s" * 40).sign(LinkClaim(1, "BK-1", datetime.now(UTC)))
    line = f'127.0.0.1:5000 - "GET /p/{token}/video HTTP/1.1" 206'
    assert redact(line) == '127.0.0.1:5000 - "GET /p/***/video HTTP/1.1" 206'
    assert token not in redact(f"see http://hub:8800/p/{token}")
    assert redact("/srv/p/short.mp4 GET /p/") == "/srv/p/short.mp4 GET /p/"


def _session(**kw: object) -> SessionDeliverables:
    base: dict[str, object] = {
        "key": "c:1",
        "passenger": "Ann",
        "product": None,
        "session_status": "decoded",
        "output_name": "BK_Ann",
        "execution_status": "running",
        "video_status": None,
        "video_output": None,
        "photos_status": None,
        "photos_output": None,
    }
    return SessionDeliverables(**{**base, **kw})  # type: ignore[arg-type]


def test_view_states(tmp_path: object, settings: Settings) -> None:
    root = settings.output_dir
    (root / "BK_Ann").mkdir()
    video = root / "BK_Ann" / "BK_Ann.mp4"
    video.write_bytes(b"mp4")
    outside = settings.share_root / "x.mp4"
    outside.write_bytes(b"mp4")
    ok = {"video": str(video), "poster": str(root / "BK_Ann" / "none.jpg")}
    preparing = build_view([_session(video_status=StepStatus.RUNNING)], root, "BK")
    assert preparing.state is PageState.PREPARING and preparing.pending == ["video"]
    half = _session(
        video_status=StepStatus.SUCCEEDED, video_output=ok, photos_status=StepStatus.PENDING
    )
    ready = build_view([half], root, "BK")
    assert ready.state is PageState.READY and ready.pending == ["photos"]
    assert ready.videos[0].video == video.resolve() and ready.videos[0].poster is None
    assert ready.videos[0].download_name == "Ann.mp4"
    # a step output pointing outside the output folder is never served
    stray = _session(
        video_status=StepStatus.SUCCEEDED,
        video_output={"video": str(outside)},
        photos_status=StepStatus.SUCCEEDED,
        photos_output={"photos": ["../share/x.mp4", "/etc/passwd"]},
    )
    escaped = build_view([stray], root, "BK")
    assert escaped.state is PageState.GONE and not escaped.videos and not escaped.photos
    assert build_view([], root, "BK").state is PageState.GONE
    cancelled = build_view([_session(execution_status="cancelled")], root, "BK")
    assert cancelled.state is PageState.GONE


def test_zip_stream_holds_each_file_stored(tmp_path: object, settings: Settings) -> None:
    files = []
    for i in range(3):
        p = settings.output_dir / f"p{i}.jpg"
        p.write_bytes(os.urandom(200_000 + i))
        files.append((p, f"photo-{i}.jpg"))
    chunks = list(zip_chunks(files, chunk=64 * 1024))
    assert len(chunks) > 3 and max(len(c) for c in chunks) < 200_000  # streamed, not one blob
    archive = zipfile.ZipFile(io.BytesIO(b"".join(chunks)))
    assert archive.testzip() is None
    for path, name in files:
        assert archive.getinfo(name).compress_type == zipfile.ZIP_STORED
        assert archive.read(name) == path.read_bytes()


# --- the hub ---------------------------------------------------------------------------------


@pytest.fixture
async def db(clean_db: AsyncEngine) -> AsyncEngine:
    async with clean_db.begin() as conn:
        await conn.execute(text("TRUNCATE passenger_link"))
    return clean_db


@pytest.fixture
async def hub(settings: Settings, db: AsyncEngine) -> AsyncIterator[Served]:
    async with serve_hub(api_settings(settings, dropzone_name="Skydive <Nord>")) as served:
        yield served


@pytest.fixture
async def jump(db: AsyncEngine, settings: Settings) -> Jump:
    return await seed_jump(db, settings)


async def test_the_page_shows_name_dropzone_video_photos_and_no_path(
    hub: Served, jump: Jump, db: AsyncEngine, settings: Settings
) -> None:
    async with httpx.AsyncClient(base_url=hub.url) as client:
        made = await client.post(f"/api/bookings/{BOOKING}/link", headers=AUTH)
        assert made.status_code == 201, made.text
        body = made.json()
        assert body["url"] == hub.url + body["path"] and body["path"].startswith("/p/")
        page = await client.get(body["path"])
    assert page.status_code == 200
    html = page.text
    assert "Anna &lt;b&gt;Berg&lt;/b&gt;" in html and PASSENGER not in html
    assert "Skydive &lt;Nord&gt;" in html
    base = body["path"]
    assert f'src="{base}/video"' in html and f'poster="{base}/poster"' in html
    assert 'preload="metadata"' in html and "<video controls" in html
    for n in (1, 2, 3):
        assert f'href="{base}/photos/{n}"' in html
    assert f'href="{base}/photos.zip"' in html and f'href="{base}/video?download=1"' in html
    for secret_path in (str(settings.output_dir), str(settings.share_root), jump.video.name):
        assert secret_path not in html
    assert "<script" not in html and "http://" not in html.replace(hub.url, "")
    assert page.headers["referrer-policy"] == "no-referrer"
    assert page.headers["cache-control"] == "no-store"
    assert "default-src 'none'" in page.headers["content-security-policy"]


async def test_video_answers_range_requests(
    hub: Served, jump: Jump, db: AsyncEngine, settings: Settings
) -> None:
    link = await issue(db, settings)
    data = jump.video.read_bytes()
    size = len(data)
    url = f"{link.path}/video"
    async with httpx.AsyncClient(base_url=hub.url) as client:
        whole = await client.get(url)
        assert whole.status_code == 200 and whole.content == data
        assert whole.headers["content-type"] == "video/mp4"
        assert whole.headers["accept-ranges"] == "bytes"
        assert whole.headers["etag"] and whole.headers["last-modified"]
        assert "content-disposition" not in whole.headers
        open_ended = await client.get(url, headers={"Range": "bytes=0-"})
        assert open_ended.status_code == 206
        assert open_ended.headers["content-range"] == f"bytes 0-{size - 1}/{size}"
        assert open_ended.content == data
        middle = await client.get(url, headers={"Range": "bytes=100-1099"})
        assert middle.status_code == 206 and middle.content == data[100:1100]
        assert middle.headers["content-range"] == f"bytes 100-1099/{size}"
        assert middle.headers["content-length"] == "1000"
        suffix = await client.get(url, headers={"Range": "bytes=-500"})
        assert suffix.status_code == 206 and suffix.content == data[-500:]
        assert suffix.headers["content-range"] == f"bytes {size - 500}-{size - 1}/{size}"
        past_end = await client.get(url, headers={"Range": f"bytes={size}-"})
        assert past_end.status_code == 416
        assert past_end.headers["content-range"] == f"bytes */{size}"
        clipped = await client.get(url, headers={"Range": f"bytes={size - 10}-{size + 1000}"})
        assert clipped.status_code == 206 and clipped.content == data[-10:]
        several = await client.get(url, headers={"Range": "bytes=0-9,100-109"})
        assert several.status_code == 206
        assert several.headers["content-type"].startswith("multipart/byteranges; boundary=")
        assert data[:10] in several.content and data[100:110] in several.content
        for malformed in ("bytes=abc", "items=0-9", "bytes=9-0"):
            refused = await client.get(url, headers={"Range": malformed})
            assert refused.status_code == 400, malformed
        stale = await client.get(url, headers={"Range": "bytes=0-9", "If-Range": '"other"'})
        assert stale.status_code == 200 and stale.content == data  # changed since: whole file
        head = await client.head(url)
        assert head.status_code == 200 and head.headers["content-length"] == str(size)
        download = await client.get(url + "?download=1")
        assert download.headers["content-disposition"] == 'attachment; filename="Anna_b_Berg_b.mp4"'
        poster = await client.get(f"{link.path}/poster")
        assert poster.status_code == 200 and poster.content == jump.poster.read_bytes()
        assert poster.headers["content-type"] == "image/jpeg"
        assert (await client.get(f"{link.path}/video/2")).status_code == 404


async def test_photos_and_their_zip(
    hub: Served, jump: Jump, db: AsyncEngine, settings: Settings
) -> None:
    link = await issue(db, settings)
    async with httpx.AsyncClient(base_url=hub.url) as client:
        for n, shot in enumerate(jump.photos, start=1):
            got = await client.get(f"{link.path}/photos/{n}")
            assert got.status_code == 200 and got.content == shot.read_bytes()
            assert got.headers["content-type"] == "image/jpeg"
        for missing in ("0", "4", "999999999", "x"):
            gone = await client.get(f"{link.path}/photos/{missing}")
            assert gone.status_code == 404 and "text/html" in gone.headers["content-type"]
        got_zip = await client.get(f"{link.path}/photos.zip")
        head = await client.head(f"{link.path}/photos.zip")
        assert head.status_code == 200 and head.headers["content-type"] == "application/zip"
    assert got_zip.status_code == 200
    assert got_zip.headers["content-type"] == "application/zip"
    assert (
        got_zip.headers["content-disposition"] == 'attachment; filename="Anna_b_Berg_b-photos.zip"'
    )
    archive = zipfile.ZipFile(io.BytesIO(got_zip.content))
    assert archive.testzip() is None
    names = archive.namelist()
    assert names == [f"Anna_b_Berg_b-{n:02d}.jpg" for n in (1, 2, 3)]
    for name, shot in zip(names, jump.photos, strict=True):
        assert archive.read(name) == shot.read_bytes()


async def test_expired_tampered_revoked_get_clear_pages_logged_without_the_token(
    hub: Served, jump: Jump, db: AsyncEngine, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    expired = await issue(db, settings, now=datetime.now(UTC) - timedelta(days=31))
    good = await issue(db, settings)
    tampered = good.token[:-3] + ("AAA" if not good.token.endswith("AAA") else "BBB")
    async with httpx.AsyncClient(base_url=hub.url) as client:
        page = await client.get(expired.path)
        assert page.status_code == 410 and 'data-state="expired"' in page.text
        assert "This link has expired" in page.text and "Skydive &lt;Nord&gt;" in page.text
        assert (await client.get(expired.path + "/video")).status_code == 410
        page = await client.get("/p/" + tampered)
        assert page.status_code == 404 and 'data-state="invalid"' in page.text
        assert (await client.get("/p/not-a-token/photos.zip")).status_code == 404

        assert (await client.get(good.path)).status_code == 200
        no_auth = await client.post(f"/api/links/{good.link.id}/revoke")
        assert no_auth.status_code == 401
        revoked = await client.post(f"/api/links/{good.link.id}/revoke", headers=AUTH)
        assert revoked.status_code == 200 and revoked.json()["revoked_at"]
        again = await client.post(f"/api/links/{good.link.id}/revoke", headers=AUTH)
        assert again.json()["revoked_at"] == revoked.json()["revoked_at"]  # idempotent
        assert (await client.post("/api/links/999999/revoke", headers=AUTH)).status_code == 404
        for path in ("", "/video", "/photos/1", "/photos.zip"):
            refused = await client.get(good.path + path)
            assert refused.status_code == 403, path
        assert 'data-state="revoked"' in refused.text
    logged = caplog.text
    assert f"passenger link {expired.link.id} refused (expired)" in logged
    assert f"passenger link {good.link.id} refused (revoked)" in logged
    assert logged.count(f"passenger link {good.link.id} refused (revoked)") == 1  # once
    for token in (expired.token, good.token, tampered):
        assert token not in logged
    assert "/p/***" in logged  # uvicorn's request lines, redacted


async def test_not_ready_and_purged_bookings(
    hub: Served, db: AsyncEngine, settings: Settings
) -> None:
    await seed_jump(
        db, settings, booking="BK-WAIT", session="card-W:1", publish="running", photos="pending"
    )
    gone = await seed_jump(db, settings, booking="BK-GONE", session="card-G:1")
    waiting, purged = await issue(db, settings, "BK-WAIT"), await issue(db, settings, "BK-GONE")
    for path in (gone.video, gone.poster, *gone.photos):
        path.unlink()
    async with httpx.AsyncClient(base_url=hub.url) as client:
        page = await client.get(waiting.path)
        assert page.status_code == 200 and 'data-state="preparing"' in page.text
        assert '<meta http-equiv="refresh" content="60">' in page.text
        assert "Your video is being prepared" in page.text
        assert (await client.get(waiting.path + "/video")).status_code == 404
        page = await client.get(purged.path)
        assert page.status_code == 410 and 'data-state="gone"' in page.text


async def test_part_ready_booking_shows_what_is_there_and_refreshes(
    hub: Served, db: AsyncEngine, settings: Settings
) -> None:
    await seed_jump(db, settings, session="card-P:1", photos=None)
    await seed_jump(db, settings, session="card-P:2", publish="running", photos="running")
    link = await issue(db, settings)
    async with httpx.AsyncClient(base_url=hub.url) as client:
        page = await client.get(link.path)
    assert page.status_code == 200 and "data-pending" in page.text
    assert "your video and your photos are still being prepared" in page.text
    assert 'content="60"' in page.text and f'src="{link.path}/video"' in page.text


async def test_invalid_links_are_throttled_per_address(
    settings: Settings, db: AsyncEngine, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    tight = api_settings(settings, hub_auth_failures_per_peer=3, hub_auth_failure_window_s=30)
    async with serve_hub(tight) as served, httpx.AsyncClient(base_url=served.url) as client:
        codes = [(await client.get(f"/p/bogus-token-{i}")).status_code for i in range(5)]
        assert codes == [404, 404, 404, 429, 429]
        blocked = await client.get("/p/bogus-token-x")
        assert int(blocked.headers["retry-after"]) >= 1 and 'data-state="throttled"' in blocked.text
    assert caplog.text.count("invalid links from 127.0.0.1") == 1


async def test_issuing_needs_the_token_a_known_booking_and_valid_days(
    hub: Served, jump: Jump
) -> None:
    async with httpx.AsyncClient(base_url=hub.url) as client:
        assert (await client.post(f"/api/bookings/{BOOKING}/link")).status_code == 401
        assert (await client.post("/api/bookings/BK-NONE/link", headers=AUTH)).status_code == 404
        bad = await client.post("/api/bookings/%20x/link", headers=AUTH)
        assert bad.status_code == 422
        for body in (b'{"days": 0}', b'{"days": 400}', b'{"days": "3"}', b"[1]", b"{"):
            got = await client.post(f"/api/bookings/{BOOKING}/link", headers=AUTH, content=body)
            assert got.status_code == 422, body
        short = await client.post(
            f"/api/bookings/{BOOKING}/link", headers=AUTH, content=b'{"days": 2}'
        )
        assert short.status_code == 201
    expires = datetime.fromisoformat(short.json()["expires_at"])
    assert timedelta(days=1, hours=23) < expires - datetime.now(UTC) <= timedelta(days=2)


async def test_cli_issues_and_revokes(
    jump: Jump, db: AsyncEngine, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    import asyncio

    local = settings.model_copy(update={"passenger_link_base_url": "https://videos.example.com"})
    code = await asyncio.to_thread(link_cli, local, BOOKING, 7, None)
    out, err = capsys.readouterr()
    assert code == 0 and out.startswith("https://videos.example.com/p/"), (out, err)
    link_id = int(err.split()[1])
    async with db.connect() as conn:
        found = await conn.execute(
            text(
                "SELECT booking_id, created_by, expires_at - created_at "
                "FROM passenger_link WHERE id = :i"
            ),
            {"i": link_id},
        )
        row = found.one()
    assert row[0] == BOOKING and row[1].startswith("cli:") and row[2].days in (6, 7)
    assert await asyncio.to_thread(link_cli, local, None, None, link_id) == 0
    assert "revoked" in capsys.readouterr().out
    assert await asyncio.to_thread(link_cli, local, "BK-NONE", None, None) == 1
    assert await asyncio.to_thread(link_cli, local, None, None, 99_999_999) == 1


async def test_the_dropzone_logo_is_shown_and_served(
    settings: Settings, db: AsyncEngine, jump: Jump
) -> None:

    logo = settings.data_dir.parent / "logo.png"
    make_logo(logo)
    branded = api_settings(settings, branding_logo=logo)
    link = await issue(db, settings)
    async with serve_hub(branded) as served, httpx.AsyncClient(base_url=served.url) as client:
        page = await client.get(link.path)
        assert f'<img src="{link.path}/logo"' in page.text
        got = await client.get(f"{link.path}/logo")
        assert got.status_code == 200 and got.content == logo.read_bytes()
        assert got.headers["content-type"] == "image/png"
        assert str(logo) not in page.text


async def test_a_database_that_does_not_answer_gets_a_clear_page_not_a_500(
    settings: Settings, db: AsyncEngine, jump: Jump, caplog: pytest.LogCaptureFixture
) -> None:
    link = await issue(db, settings)  # a good link, signed with this data dir's secret
    head, _, _ = settings.database_url.rpartition("/")
    broken = api_settings(settings, database_url=f"{head}/skyreel_no_such_database")
    async with serve_hub(broken) as served, httpx.AsyncClient(base_url=served.url) as client:
        for path in ("", "/video", "/photos.zip"):
            got = await client.get(link.path + path)
            assert got.status_code == 503, (path, got.text)
            assert 'data-state="unavailable"' in got.text and got.headers["retry-after"]
    assert link.token not in caplog.text


async def test_two_jumps_of_a_booking_are_two_videos(
    hub: Served, db: AsyncEngine, settings: Settings
) -> None:
    first = await seed_jump(db, settings, session="card-P:1", photos=None)
    second = await seed_jump(db, settings, session="card-P:2", n_photos=2)
    link = await issue(db, settings)
    async with httpx.AsyncClient(base_url=hub.url) as client:
        page = await client.get(link.path)
        assert f'src="{link.path}/video/2"' in page.text and "Download video 2" in page.text
        assert (await client.get(f"{link.path}/video")).content == first.video.read_bytes()
        got = await client.get(f"{link.path}/video/2?download=1")
        assert got.content == second.video.read_bytes()
        assert got.headers["content-disposition"] == 'attachment; filename="Anna_b_Berg_b-2.mp4"'
        assert (await client.get(f"{link.path}/poster/2")).content == second.poster.read_bytes()
        assert (await client.get(f"{link.path}/photos/2")).content == second.photos[1].read_bytes()
        assert (await client.get(f"{link.path}/video/3")).status_code == 404
