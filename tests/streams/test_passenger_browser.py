"""The passenger page in real headless Chromium (Debian's `chromium`, driven by Playwright), on a
desktop window and on a phone's (390×844): the passenger's name shows, the video plays (its
readyState reaches 2 and its time advances after play(); the hub answered the browser's Range
requests with 206), a photo opens full size on a click, the photos ZIP downloads and holds every
photo; an expired and a revoked link show their clear page. Screenshots go to test-artifacts/.

Needs `apt-get install -y chromium` and `pip install playwright` (never `playwright install`).
Outside CI a missing browser skips; in CI it fails.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from passenger_harness import PHOTO_SIZE, Jump, issue, seed_jump
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from status_harness import Served, api_settings, serve_hub
from test_dashboard_browser import ARGS, ARTIFACTS, CHROMIUM, _require_browser

from streams.hub.passenger_links import revoke_link
from streams.settings import Settings

VIEWPORTS = {"desktop": {"width": 1400, "height": 900}, "phone": {"width": 390, "height": 844}}


@pytest.fixture
async def db(clean_db: AsyncEngine) -> AsyncEngine:
    async with clean_db.begin() as conn:
        await conn.execute(text("TRUNCATE passenger_link"))
    return clean_db


@pytest.fixture
async def hub(settings: Settings, db: AsyncEngine) -> AsyncIterator[Served]:
    async with serve_hub(api_settings(settings, dropzone_name="Skydive Nord")) as served:
        yield served


@pytest.mark.parametrize("screen", sorted(VIEWPORTS))
async def test_passenger_page_plays_opens_photos_and_downloads_the_zip(
    hub: Served, db: AsyncEngine, settings: Settings, tmp_path: Path, screen: str
) -> None:
    _require_browser()
    from playwright.async_api import Response, async_playwright, expect

    jump: Jump = await seed_jump(db, settings)
    link = await issue(db, settings)
    video_answers: list[tuple[int, str | None, str | None]] = []

    def seen(response: Response) -> None:
        if response.url.endswith(f"{link.path}/video"):
            headers = response.request.headers
            video_answers.append(
                (response.status, headers.get("range"), response.headers.get("content-range"))
            )

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            context = await browser.new_context(
                viewport=VIEWPORTS[screen],  # type: ignore[arg-type]
                accept_downloads=True,
                is_mobile=screen == "phone",
                has_touch=screen == "phone",
            )
            page = await context.new_page()
            page.on("response", seen)
            await page.goto(hub.url + link.path)
            await expect(page.locator("#passenger")).to_have_text("Anna <b>Berg</b>")
            assert await page.locator("#passenger b").count() == 0  # text, never markup
            await expect(page.locator("header .dz")).to_have_text("Skydive Nord")

            # the video plays: enough data for the current frame, then time advances
            video = page.locator("video[data-video='1']")
            await expect(video).to_have_attribute("poster", f"{link.path}/poster")
            await video.evaluate("v => { v.muted = true; return v.play(); }")
            await page.wait_for_function(
                "() => { const v = document.querySelector('video');"
                " return v.readyState >= 2 && v.currentTime > 0.3; }",
                timeout=20_000,
            )
            assert await video.evaluate("v => v.error === null && v.videoWidth") == 320
            ranged = [a for a in video_answers if a[1] is not None]
            assert ranged and all(status == 206 for status, _, _ in ranged), video_answers
            assert all(cr and cr.startswith("bytes ") for _, _, cr in ranged)
            # the page fits a phone's width: no sideways scrolling
            overflow = await page.evaluate(
                "document.documentElement.scrollWidth - window.innerWidth"
            )
            assert overflow <= 0
            ARTIFACTS.mkdir(exist_ok=True)
            await page.screenshot(path=str(ARTIFACTS / f"passenger-{screen}.png"), full_page=True)

            # the photos ZIP downloads and holds every photo
            async with page.expect_download() as waiting:
                await page.locator('a[data-download="photos"]').click()
            download = await waiting.value
            saved = tmp_path / "photos.zip"
            await download.save_as(saved)
            assert download.suggested_filename == "Anna_b_Berg_b-photos.zip"
            archive = zipfile.ZipFile(io.BytesIO(saved.read_bytes()))
            assert [archive.read(n) for n in archive.namelist()] == [
                p.read_bytes() for p in jump.photos
            ]

            # a photo opens full size on a click
            await page.locator('a[data-photo="2"]').click()
            await page.wait_for_url(f"**{link.path}/photos/2")
            size = await page.evaluate(
                "() => { const i = document.querySelector('img');"
                " return i && i.complete ? [i.naturalWidth, i.naturalHeight] : null; }"
            )
            assert tuple(size) == PHOTO_SIZE
        finally:
            await browser.close()


async def test_expired_and_revoked_links_show_their_page(
    hub: Served, db: AsyncEngine, settings: Settings
) -> None:
    _require_browser()
    from playwright.async_api import async_playwright, expect

    await seed_jump(db, settings)
    expired = await issue(db, settings, now=datetime.now(UTC) - timedelta(days=40))
    revoked = await issue(db, settings)
    await revoke_link(db, revoked.link.id, "test")
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            page = await browser.new_page(viewport=VIEWPORTS["phone"])  # type: ignore[arg-type]
            answer = await page.goto(hub.url + expired.path)
            assert answer is not None and answer.status == 410
            await expect(page.locator("h1")).to_have_text("This link has expired")
            await expect(page.locator('[data-state="expired"]')).to_contain_text(
                "Ask Skydive Nord for a new link."
            )
            answer = await page.goto(hub.url + revoked.path)
            assert answer is not None and answer.status == 403
            await expect(page.locator("h1")).to_have_text("This link was withdrawn")
            assert await page.locator("video").count() == 0
        finally:
            await browser.close()
