"""What an operator does on the dashboard (issue 17), in real headless Chromium (Debian's
`chromium`, driven by Playwright), on a desktop window and on a phone (390×844):

log in once on /login (a wrong token says so, and a few more are throttled; reload stays logged
in; log out), jumps listed by passenger and booking with capture time, camera/card and station;
the search filters by name or booking; the finished video plays in the page; a needs-review
jump shows its QR frame beside the assign form, whose booking lookup offers recent bookings, and
assigning from it works; a failed step shows its last log lines and its retry button re-runs it;
every media `src`/`href` the page shows answers 200 to the browser's own cookie; at phone width
nothing overflows and every control is at least 40 px tall.

A real hub (uvicorn, PostgreSQL, the broker, the engine's command applier) with closed reads,
rows in PostgreSQL and real media files (H.264 clips made with PyAV, a poster decoded from one).
Screenshots of each step go to test-artifacts/operator-<viewport>-<step>.png.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from status_harness import TOKEN, Seeded, Served, api_settings, seed, serve, write_tiny_clip
from support import wait_for
from test_dashboard_browser import ARGS, CHROMIUM, _require_browser

from streams.hub.frames import extract_frame
from streams.settings import Settings

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
FAILURES = 3
VIEWPORTS = {"desktop": (1400, 900), "phone": (390, 844)}
NAME = "BK-9_Carla_Diaz"  # the finished jump's output name


@dataclass(frozen=True)
class Site:
    base: Seeded
    done: str  # card-A:2, published for Carla Diaz (BK-9)
    failed: str  # card-A:3, Dana Ruiz (BK-10), its render failed
    failed_execution: int


async def _step(conn: Any, execution: int, name: str, status: str, output: object, err: str) -> int:
    return int(
        await conn.scalar(
            text(
                "INSERT INTO pipeline_step (execution_id, name, kind, depends_on, status, attempt, "
                "max_attempts, output, error, started_at, finished_at) VALUES (:e, :n, 'noop', "
                "'{}', :s, 1, 3, CAST(:o AS jsonb), :err, now() - interval '9 seconds', now()) "
                "RETURNING id"
            ),
            {"e": execution, "n": name, "s": status, "o": json.dumps(output), "err": err},
        )
    )


async def _jump(conn: Any, key: str, status: str, booking: str, passenger: str) -> int:
    eid = int(
        await conn.scalar(
            text(
                "INSERT INTO pipeline_execution (key, pipeline, subject_type, subject_id, status) "
                "VALUES (:k, 'jump', 'session', :s, :st) RETURNING id"
            ),
            {"k": f"jump:{key}", "s": key, "st": status},
        )
    )
    clip = f"cards/card-A/{key.replace(':', '_')}.MP4"
    fid = await conn.scalar(
        text(
            "INSERT INTO imported_file (card_id, name, path, size, mtime_ms, kind, status, "
            "stored_path, session_key, duration_s) VALUES ('card-A', :n, :p, 9000, "
            "1700000500000, 'footage', 'imported', :sp, :k, 2.0) RETURNING id"
        ),
        {"n": Path(clip).name, "p": f"DCIM/100GOPRO/{Path(clip).name}", "sp": clip, "k": key},
    )
    await conn.execute(
        text(
            "INSERT INTO jump_session (key, card_id, status, booking_id, passenger, file_ids, "
            "execution_id, assigned_by) VALUES (:k, 'card-A', 'assigned', :b, :p, "
            "CAST(:ids AS text[]), :e, 'qr')"
        ),
        {"k": key, "b": booking, "p": passenger, "ids": [str(fid)], "e": eid},
    )
    return eid


async def seed_site(engine: AsyncEngine, settings: Settings) -> Site:
    """`seed` (card-A:1 needs review, its QR clip on the share; a failed card import) plus a
    published jump and a jump whose render failed, each with a real clip on the share."""
    write_tiny_clip(settings.share_root / "cards/card-A/qr.mp4")
    base = await seed(engine, qr_stored_path="cards/card-A/qr.mp4")
    for key in ("card-A_2", "card-A_3"):
        write_tiny_clip(settings.share_root / f"cards/card-A/{key}.MP4", seconds=2.0)
    folder = settings.output_dir / NAME
    write_tiny_clip(folder / f"{NAME}.mp4", seconds=4.0)
    (folder / f"{NAME}.jpg").write_bytes(extract_frame(folder / f"{NAME}.mp4", 1.0))
    staged = settings.share_root / "renders" / NAME  # publish moved these away
    async with engine.begin() as conn:
        await conn.execute(text("UPDATE card SET detector_id = 'station-1' WHERE id = 'card-A'"))
        done = await _jump(conn, "card-A:2", "succeeded", "BK-9", "Carla Diaz")
        render = {"video": str(staged / f"{NAME}.mp4"), "poster": str(staged / f"{NAME}.jpg")}
        await _step(conn, done, "render", "succeeded", render, "")
        published = {"video": str(folder / f"{NAME}.mp4"), "poster": str(folder / f"{NAME}.jpg")}
        await _step(conn, done, "publish", "succeeded", published, "")
        failed = await _jump(conn, "card-A:3", "failed", "BK-10", "Dana Ruiz")
        sid = await _step(conn, failed, "render", "failed", None, "ffmpeg exited with status 1")
        for i, line in enumerate(("rendering 2 clips", "ffmpeg: moov atom not found", "gave up")):
            await conn.execute(
                text(
                    "INSERT INTO pipeline_step_log (step_id, attempt, level, message) "
                    "VALUES (:s, 1, :l, :m)"
                ),
                {"s": sid, "l": "error" if i else "info", "m": line},
            )
    return Site(base, "card-A:2", "card-A:3", failed)


@pytest.fixture
async def hub(settings: Settings, clean_db: AsyncEngine) -> AsyncIterator[Served]:
    closed = api_settings(settings, reads_open=False, dashboard_login_failures_per_peer=FAILURES)
    async with serve(closed) as served:
        await wait_for(served.status_api().live.ready.is_set, timeout=30, what="status stream")
        yield served


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    _require_browser()
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        b = await pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            yield b
        finally:
            await b.close()


def shot(view: str, step: str) -> str:
    ARTIFACTS.mkdir(exist_ok=True)
    return str(ARTIFACTS / f"operator-{view}-{step}.png")


async def log_in(page: Any, hub: Served, token: str = TOKEN) -> None:
    await page.goto(hub.url + "/")
    await page.wait_for_url("**/login")
    await page.fill("#login-token", token)
    await page.locator("#login-form button[type=submit]").click()


MEDIA_JS = """() => {
  const urls = new Set();
  const tags = 'img[src], video[src], source[src]';
  for (const n of document.querySelectorAll(tags)) urls.add(n.getAttribute('src'));
  for (const n of document.querySelectorAll('video[poster]')) urls.add(n.getAttribute('poster'));
  for (const n of document.querySelectorAll('a[href]')) {
    const h = n.getAttribute('href');
    if (h.startsWith('/media/') || h.startsWith('/api/files/')) urls.add(h);
  }
  return [...urls];
}"""
FETCH_JS = """async (urls) => Promise.all(urls.map(async (u) => {
  const r = await fetch(u, { credentials: 'same-origin', headers: { Range: 'bytes=0-1023' } });
  return [u, r.status];
}))"""


async def media_answers(page: Any) -> dict[str, int]:
    """Every media link on the page, fetched by the page itself (its cookie, no header)."""
    urls = await page.evaluate(MEDIA_JS)
    return dict(await page.evaluate(FETCH_JS, urls))


async def assert_media_ok(page: Any, at_least: int) -> dict[str, int]:
    answers = await media_answers(page)
    bad = {u: s for u, s in answers.items() if s not in (200, 206)}
    assert not bad, f"media links that do not answer: {bad}"
    assert len(answers) >= at_least, answers
    return answers


OVERFLOW_JS = """() => {
  const w = document.documentElement.clientWidth;
  const wide = [...document.querySelectorAll('body *')].filter((n) => {
    const r = n.getBoundingClientRect();
    return r.width > 0 && r.right > w + 1 && getComputedStyle(n).position !== 'fixed'
      && !n.closest('.scroll, table, pre, section');
  }).map((n) => `${n.tagName}.${n.className}#${n.id}`);
  return { scroll: document.documentElement.scrollWidth, width: w, wide: wide.slice(0, 10) };
}"""
TAPS_JS = """() => [...document.querySelectorAll(
  'button, input:not([type=hidden]), select, #jumps li.jump, #detail a, #login-state a')]
  .filter((n) => n.offsetParent !== null)
  .map((n) => [`${n.tagName}.${n.className}#${n.id}:`
    + (n.textContent || n.value || '').trim().slice(0, 20),
    Math.round(n.getBoundingClientRect().height)])
  .filter(([, h]) => h < 40)"""


async def assert_phone_fit(page: Any, view: str) -> None:
    if view != "phone":
        return
    fit = await page.evaluate(OVERFLOW_JS)
    assert fit["scroll"] <= fit["width"], fit
    assert not fit["wide"], fit
    assert await page.evaluate(TAPS_JS) == []


async def test_login_once_wrong_token_reload_logout_and_throttle(hub: Served, browser: Any) -> None:
    from playwright.async_api import expect

    page = await browser.new_page(viewport={"width": 390, "height": 844})
    await log_in(page, hub, "not-the-token")
    message = page.locator("#login-message")
    await expect(message).to_contain_text("not this hub's admin token")
    await expect(message).to_contain_text("skyreel run")
    await page.screenshot(path=shot("phone", "1-login-wrong"), full_page=True)
    await assert_phone_fit(page, "phone")

    await page.fill("#login-token", TOKEN)
    await page.locator("#login-form button[type=submit]").click()
    await page.wait_for_url(hub.url + "/")
    state = page.locator("#login-state")
    await expect(state).to_have_text("logged in · log out")
    assert await page.locator("#token").count() == 0  # the old token box is gone
    cookies = await page.context.cookies()
    session = [c for c in cookies if c["name"] == "skyreel_session"]
    assert session and session[0]["httpOnly"] and session[0]["sameSite"] == "Strict"
    assert TOKEN not in json.dumps(await page.evaluate("() => ({...localStorage})"))
    await expect(page.locator("#live")).to_have_text("live", timeout=15_000)  # ws on the cookie
    await page.reload()
    await expect(state).to_have_text("logged in · log out")
    await expect(page.locator("#live")).to_have_text("live", timeout=15_000)
    await page.screenshot(path=shot("phone", "2-logged-in"), full_page=True)

    await page.locator("#logout").click()
    await page.wait_for_url("**/login")
    await page.goto(hub.url + "/")
    await page.wait_for_url("**/login")  # closed reads: nothing to see without a login
    for _ in range(FAILURES - 1):  # the first wrong one above counted too
        await page.fill("#login-token", "guess")
        await page.locator("#login-form button[type=submit]").click()
        await expect(message).to_contain_text("not this hub's admin token")
        await page.evaluate("document.getElementById('login-message').textContent = ''")
    await page.fill("#login-token", TOKEN)  # even the right one waits out the block
    await page.locator("#login-form button[type=submit]").click()
    await expect(message).to_contain_text("too many wrong tokens from this address: wait")
    await page.screenshot(path=shot("phone", "3-login-throttled"), full_page=True)


@pytest.mark.parametrize("view", list(VIEWPORTS))
async def test_an_operator_finds_plays_assigns_and_retries(
    view: str,
    hub: Served,
    settings: Settings,
    clean_db: AsyncEngine,
    pg: asyncpg.Connection,
    browser: Any,
) -> None:
    from playwright.async_api import expect

    site = await seed_site(clean_db, settings)
    width, height = VIEWPORTS[view]
    page = await browser.new_page(viewport={"width": width, "height": height})
    await log_in(page, hub)
    await page.wait_for_url(hub.url + "/")
    await expect(page.locator("#live")).to_have_text("live", timeout=15_000)

    # 1. jumps by passenger and booking, capture time, camera/card, station
    jumps = page.locator("#jumps li.jump")
    carla = page.locator(f'#jumps li[data-jump="{site.done}"]')
    await expect(carla.locator("[data-passenger]")).to_have_text("Carla Diaz", timeout=15_000)
    await expect(carla.locator("[data-booking]")).to_have_text("BK-9")
    await expect(carla.locator(".meta")).to_contain_text("GOPRO-A (card-A)")
    await expect(carla.locator(".meta")).to_contain_text("station Hangar 1")
    await expect(carla.locator("[data-captured]")).not_to_be_empty()
    review_row = page.locator(f'#jumps li[data-jump="{site.base.session}"]')
    await expect(review_row.locator("[data-passenger]")).to_have_text("no booking yet")
    await expect(jumps).to_have_count(3)
    # no internal keys: neither in the jumps nor in the executions table
    assert site.base.session not in await page.locator("#jumps").inner_text()
    await expect(page.locator("#executions")).to_contain_text("jump: no booking yet (card card-A)")
    assert site.base.session not in await page.locator("#executions").inner_text()
    await page.screenshot(path=shot(view, "1-jumps"), full_page=True)
    await assert_phone_fit(page, view)

    # 2. search by name, then by booking
    await page.fill("#jump-search", "carla")
    await expect(jumps).to_have_count(1)
    await expect(jumps.first).to_have_attribute("data-jump", site.done)
    await page.fill("#jump-search", "BK-10")
    await expect(jumps).to_have_count(1)
    await expect(jumps.first).to_have_attribute("data-jump", site.failed)
    await page.screenshot(path=shot(view, "2-search"), full_page=True)
    await page.fill("#jump-search", "")
    await expect(jumps).to_have_count(3)

    # 3. the finished video plays in the page; stills of the clips; the card's state
    await carla.click()
    player = page.locator("#detail video[data-video]")
    await expect(player).to_have_attribute("src", f"/media/output/{NAME}/{NAME}.mp4")
    await expect(page.locator("#detail [data-jump-title]")).to_contain_text("Carla Diaz")
    await expect(page.locator("#detail [data-card-safety]")).to_contain_text("safe to remove")
    await wait_for(
        lambda: page.evaluate(
            "() => [...document.querySelectorAll('#detail img[data-still]')]"
            ".every((i) => i.complete && i.naturalWidth > 0) "
            "&& document.querySelectorAll('#detail img[data-still]').length === 1"
        ),
        timeout=15,
        what="a still of the finished jump's clip",
    )
    await player.evaluate("v => { v.muted = true; return v.play(); }")
    await wait_for(
        lambda: player.evaluate("v => v.currentTime > 0.5"), timeout=20, what="the video to play"
    )
    assert await player.evaluate("v => v.videoWidth") == 160
    await player.evaluate("v => v.pause()")
    answers = await assert_media_ok(page, at_least=4)
    assert f"/media/output/{NAME}/{NAME}.jpg" in answers  # the poster
    await page.screenshot(path=shot(view, "3-finished-video"), full_page=True)
    await assert_phone_fit(page, view)

    # 4. a jump that needs review: its QR frame beside the assign form; assign from it
    await review_row.click()
    form = page.locator("#assign-form")
    still = form.locator("img.still")
    await expect(still).to_have_attribute("src", f"/api/files/{site.base.qr_file}/frame.jpg")
    await wait_for(
        lambda: still.evaluate("i => i.complete && i.naturalWidth > 0"),
        timeout=15,
        what="the QR frame to load",
    )
    fields = form.locator(".fields")
    if view == "desktop":  # beside the form; on a phone above it
        img_box, form_box = await still.bounding_box(), await fields.bounding_box()
        assert img_box["x"] + img_box["width"] <= form_box["x"] + 1
        assert abs(img_box["y"] - form_box["y"]) < 40
    options = form.locator("datalist option")
    await expect(options).to_have_count(2)  # BK-10 and BK-9, the recent bookings
    assert set(await options.evaluate_all("os => os.map((o) => o.value)")) == {"BK-9", "BK-10"}
    await page.locator("#booking").press_sequentially("BK-9")
    await expect(page.locator("#passenger")).to_have_value("Carla Diaz")  # from the lookup
    await page.locator("#booking").press("Tab")  # on to the passenger: the suggestions close
    await assert_media_ok(page, at_least=2)
    await page.screenshot(path=shot(view, "4-review-qr-frame"), full_page=True)
    await assert_phone_fit(page, view)
    await form.locator("button[type=submit]").click()
    await expect(form.locator("output")).to_have_text(
        "assigned to BK-9 (Carla Diaz)", timeout=15_000
    )
    row = await pg.fetchrow(
        "SELECT status, booking_id, passenger FROM jump_session WHERE key = $1", site.base.session
    )
    assert tuple(row) == ("assigned", "BK-9", "Carla Diaz")
    await page.screenshot(path=shot(view, "5-assigned"), full_page=True)
    await expect(review_row.locator("[data-passenger]")).to_have_text("Carla Diaz", timeout=15_000)

    # 5. a failed step with its last log lines; retry sends the POST and shows the answer
    await page.locator(f'#jumps li[data-jump="{site.failed}"]').click()
    failed = page.locator('#detail li[data-failed-step="render"]')
    await expect(failed).to_contain_text("ffmpeg exited with status 1")
    await expect(failed.locator("pre.loglines")).to_contain_text("ffmpeg: moov atom not found")
    await expect(failed.locator("pre.loglines")).to_contain_text("gave up")
    await page.screenshot(path=shot(view, "6-failed-step"), full_page=True)
    await assert_phone_fit(page, view)
    await failed.locator("button[data-retry]").click()
    await expect(page.locator('[data-retry-result="render"]')).to_have_text(
        "retry render: render run again", timeout=15_000
    )
    # the jump re-renders with the step no longer failed; the answer stays on screen
    await expect(page.locator('#detail li[data-failed-step="render"]')).to_have_count(
        0, timeout=15_000
    )
    await expect(page.locator('[data-retry-result="render"]')).to_have_text(
        "retry render: render run again"
    )
    status = await pg.fetchval(
        "SELECT status FROM pipeline_step WHERE execution_id = $1 AND name = 'render'",
        site.failed_execution,
    )
    assert status != "failed"
    await page.screenshot(path=shot(view, "7-retried"), full_page=True)
    await assert_media_ok(page, at_least=0)


async def test_search_and_recent_bookings_over_http(
    hub: Served, settings: Settings, clean_db: AsyncEngine
) -> None:
    site = await seed_site(clean_db, settings)
    async with httpx.AsyncClient(
        base_url=hub.url, headers={"Authorization": f"Bearer {TOKEN}"}
    ) as c:

        async def keys(q: str) -> list[str]:
            r = await c.get("/api/sessions", params={"q": q})
            assert r.status_code == 200, r.text
            return [i["key"] for i in r.json()["items"]]

        assert await keys("DIAZ") == [site.done]
        assert await keys("bk-1") == [site.failed]  # BK-10 only: a substring, any case
        assert await keys("%") == []  # taken literally, not as a wildcard
        assert await keys("_") == []
        assert await keys("card-A:1") == [site.base.session]
        for bad in ("\x01", "x" * 65):
            r = await c.get("/api/sessions", params={"q": bad})
            assert r.status_code == 422, bad
        item = (await c.get("/api/sessions", params={"q": "Carla"})).json()["items"][0]
        assert item["card_label"] == "GOPRO-A" and item["station"] == "Hangar 1"
        assert item["captured_at"].startswith("2023-11-14")

        recent = (await c.get("/api/bookings/recent")).json()["items"]
        assert [(b["booking_id"], b["passenger"], b["jumps"]) for b in recent] == [
            ("BK-10", "Dana Ruiz", 1),
            ("BK-9", "Carla Diaz", 1),
        ]  # one transaction: the same time, then by booking
        dana = (await c.get("/api/bookings/recent", params={"q": "dana"})).json()["items"]
        assert [b["booking_id"] for b in dana] == ["BK-10"]
        assert (await c.get("/api/bookings/recent", params={"limit": "51"})).status_code == 422
    async with httpx.AsyncClient(base_url=hub.url) as anonymous:  # closed reads
        assert (await anonymous.get("/api/bookings/recent")).status_code == 401
