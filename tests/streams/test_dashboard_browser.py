"""The dashboard in real headless Chromium (Debian's `chromium`, driven by Playwright).

It must show what needs a person (a review with its reason, a clip left out, cards pulled early
or nearly full, each as text, never markup), a running execution's progress change without a
reload, re-run a failed step on a retry click, and assign a booking through the review form.
Screenshots are saved to test-artifacts/dashboard.png and /tmp/skyreel-dashboard-warnings.png
for people to look at.

Needs `apt-get install -y chromium` and `pip install playwright` (never `playwright install`:
the system Chromium is used). Outside CI a missing browser skips; in CI it fails.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
from browser import ARGS, CHROMIUM, require_browser
from sqlalchemy.ext.asyncio import AsyncEngine
from status_harness import (
    TOKEN,
    Served,
    api_settings,
    seed,
    seed_trouble,
    serve,
    write_tiny_clip,
)
from support import wait_for

from streams import kafka, records
from streams.settings import Settings
from streams.topics import Names

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
WARNINGS_SHOT = Path("/tmp/skyreel-dashboard-warnings.png")


def _require_browser() -> None:
    require_browser("the dashboard browser test")


@pytest.fixture
async def hub(settings: Settings, clean_db: AsyncEngine) -> AsyncIterator[Served]:
    async with serve(api_settings(settings)) as served:
        await wait_for(served.status_api().live.ready.is_set, timeout=30, what="status stream")
        yield served


async def test_dashboard_live_progress_retry_and_review(
    hub: Served,
    settings: Settings,
    clean_db: AsyncEngine,
    pg: asyncpg.Connection,
    broker: str,
    names: Names,
) -> None:
    _require_browser()
    from playwright.async_api import async_playwright, expect

    write_tiny_clip(settings.share_root / "cards/card-A/qr.mp4")
    s = await seed(clean_db, qr_stored_path="cards/card-A/qr.mp4")
    t = await seed_trouble(clean_db)
    producer = kafka.make_producer(broker)
    await producer.start()
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            page = await browser.new_page(viewport={"width": 1400, "height": 900})
            await page.add_init_script(f"localStorage.setItem('skyreel-token', '{TOKEN}')")
            await page.goto(hub.url + "/")
            await expect(page.locator("#live")).to_have_text("live", timeout=15_000)

            # 0. what needs a person is on screen, in words, as text
            attention = page.locator("#attention")
            review_item = attention.locator('li[data-kind="needs_review"]')
            await expect(review_item).to_have_text(
                f"review jump {s.session}: {t.review_reason}", timeout=15_000
            )
            await expect(
                attention.locator('li[data-kind="session_warning"]', has_text=t.clip_warning)
            ).to_have_count(1)
            await expect(attention.locator('li[data-kind="card_removed_early"]')).to_contain_text(
                "card GOPRO-B (card-B)"
            )
            await expect(attention.locator('li[data-kind="card_skipped_file"]')).to_contain_text(
                f"file skipped: {t.skipped_path}"
            )
            # the services and the free space of the share and the output, in the header
            await expect(page.locator('#health [data-disk="share"]')).to_contain_text("free")
            await expect(page.locator('#health [data-disk="output"]')).to_contain_text("free")
            jump_row = page.locator(f'#executions tr[data-id="{s.jump}"]')
            await expect(jump_row.locator("[data-warning]")).to_have_text(f"⚠ {t.clip_warning}")
            await expect(jump_row.locator("[data-review-reason]")).to_have_text(
                f"needs review: {t.review_reason}"
            )
            # card-A's one skipped file exists only on the card: not safe to remove
            await expect(page.locator('[data-card-state="card-A"]')).to_have_text(
                "1 file the station could not read, only on the card — copy by hand before "
                "formatting it"
            )
            await expect(page.locator('[data-card-state="card-C"]')).to_have_text("safe to remove")
            await expect(page.locator('[data-card-state="card-B"]')).to_have_text(
                "removed with 1 file not yet copied — put it back in a station"
            )
            await expect(page.locator('[data-card-notes="card-A"]')).to_contain_text(
                "nearly full: 2.0 GB of 64.0 GB free"
            )
            assert await page.locator("moov").count() == 0  # "<moov>" stays text
            await page.screenshot(path=str(WARNINGS_SHOT), full_page=True)

            # 1. progress of a running step changes on screen, without a reload
            row = page.locator(f'#executions tr[data-id="{s.jump}"]')
            await expect(row.locator(".pct")).to_have_text("42%")
            await row.click()
            step_pct = page.locator('tr[data-step="probe:2"] .pct')
            await expect(step_pct).to_have_text("25%")
            await page.evaluate("window.__notReloaded = true")
            await pg.execute(
                "UPDATE pipeline_step SET progress = 0.75 "
                "WHERE execution_id = $1 AND name = 'probe:2'",
                s.jump,
            )
            event = records.StatusEvent(
                kind="step", id=str(s.jump), data={"step": "probe:2", "progress": 0.75}
            )
            await producer.send_and_wait(
                names.status, records.encode(event), key=str(s.jump).encode()
            )
            await expect(step_pct).to_have_text("75%", timeout=15_000)
            await expect(row.locator(".pct")).to_have_text("58%")
            assert await page.evaluate("window.__notReloaded === true")

            # 2. a retry click re-runs the failed step: a new attempt
            await page.locator(f'#executions tr[data-id="{s.card_import}"]').click()
            await expect(page.locator('[data-step-attempt="copy"]')).to_have_text("1")
            await page.locator('button.retry[data-step="copy"]').click()
            await expect(page.locator('[data-step-attempt="copy"]')).to_have_text(
                "2", timeout=15_000
            )
            await expect(page.locator('[data-step-status="copy"]')).to_have_text("ready")
            attempt = await pg.fetchval(
                "SELECT attempt FROM pipeline_step WHERE execution_id = $1 AND name = 'copy'",
                s.card_import,
            )
            assert attempt == 2

            # 3. the review form, with a still of the QR clip, assigns a booking
            await page.locator(f'[data-session="{s.session}"]').click()
            form = page.locator("#assign-form")
            still = form.locator("img.still")
            await expect(still).to_have_attribute("src", f"/api/files/{s.qr_file}/frame.jpg")
            await wait_for(
                lambda: still.evaluate("img => img.complete && img.naturalWidth > 0"),
                timeout=15,
                what="the still frame to load",
            )
            # red-team D19: a footage clip with no copy on the share is named, never linked
            footage = page.locator("#detail li[data-footage]")
            await expect(footage).to_have_text("GX010002.MP4")
            assert await footage.locator("a").count() == 0
            await page.fill("#booking", "BK-2024-17")
            await page.fill("#passenger", "Anna <b>Berg</b>")
            ARTIFACTS.mkdir(exist_ok=True)
            shot = ARTIFACTS / "dashboard.png"
            await page.screenshot(path=str(shot), full_page=True)
            await form.locator("button[type=submit]").click()
            await expect(form.locator("output")).to_have_text(
                "assigned to BK-2024-17 (Anna <b>Berg</b>)", timeout=15_000
            )
            row_db = await pg.fetchrow(
                "SELECT status, booking_id, passenger FROM jump_session WHERE key = $1", s.session
            )
            assert tuple(row_db) == ("assigned", "BK-2024-17", "Anna <b>Berg</b>")
            assert await page.locator("#assign-form b").count() == 0  # text, never markup
            print(f"dashboard screenshot: {shot}")
        finally:
            await browser.close()
            await producer.stop()
