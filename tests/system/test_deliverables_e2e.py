"""Deliverables and the passenger's email on the whole system (issue 16): hub, Faust worker,
render worker and a detector watching a card with three jumps — products video, photos and
video+photos, two of them with an email — against real PostgreSQL, Redis, broker, FFmpeg and a
real SMTP server on loopback (aiosmtpd). Each jump gets what it bought; each booking with an
email gets exactly one email whose link opens in Chromium (the video plays with 206 answers to
its Range requests, the photos ZIP downloads); an expired or revoked link gets its clear page;
the same card re-inserted and the topics replayed send nothing again.
"""

from __future__ import annotations

import asyncio
import io
import json
import re
import shutil
import zipfile
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import httpx
import pytest
from browser import ARGS, CHROMIUM, require_browser
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from support import Proc, settings_env, small_system, wait_for
from system.dropzone import explained, start_system, token_for

from agents.demo_clips import ClipPlan, ClipStyle, write_clip
from storage.db import make_engine
from streams.passenger_links import issue_link, revoke_link, signer_for
from streams.settings import Settings
from tests.streams.smtp_harness import Mailbox, smtp_server

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

STYLE = ClipStyle(seed=16, footage_seconds=3.0, qr_seconds=1.5, width=320, height=180, fps=15)
T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
JUMPS = (  # booking, passenger, product, email
    ("BK-V01", "Vera Video", "video", "vera@example.com"),
    ("BK-P02", "Paul Photos", "photos", None),
    ("BK-B03", "Bea Both", "video+photos", "bea@example.com"),
)
LINK = re.compile(r"http://127\.0\.0\.1:\d+/p/[A-Za-z0-9._-]+")


def _require_browser() -> None:
    require_browser("the deliverables test")


def write_card(folder: Path) -> None:
    folder.mkdir(parents=True)
    n = 1
    for i, (booking, passenger, product, email) in enumerate(JUMPS):
        data = {"booking": booking, "name": passenger, "product": product}
        if email:
            data["email"] = email
        at = T0 + timedelta(minutes=30 * i)
        ticket = ClipPlan(f"GX01{n:04d}.MP4", at, 1.5, f"ticket {booking}", n, json.dumps(data))
        footage = ClipPlan(f"GX01{n + 1:04d}.MP4", at + timedelta(minutes=3), 3.0, booking, n + 1)
        for plan in (ticket, footage):
            write_clip(plan, folder / plan.name, STYLE)
        n += 2


async def deliver_done(pg: asyncpg.Connection) -> bool:
    done = await pg.fetchval(
        "SELECT count(*) FROM pipeline_step WHERE kind = 'deliver' AND status = 'succeeded'"
    )
    return bool(done == len(JUMPS))


async def _equals(found: Awaitable[list[str]], expected: list[str]) -> bool:
    return await found == expected


def body_of(box: Mailbox, to: str) -> str:
    [msg] = box.to(to)
    return msg.get_body(("plain",)).get_content()  # type: ignore[union-attr,no-any-return]


async def check_page(url: str, tmp_path: Path) -> None:
    """The emailed link in Chromium: the video plays (206 to its Range requests), the ZIP
    downloads and holds the photos."""
    from playwright.async_api import Response, async_playwright, expect

    ranged: list[int] = []

    def seen(response: Response) -> None:
        if "/video" in response.url and response.request.headers.get("range"):
            ranged.append(response.status)

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            context = await browser.new_context(accept_downloads=True)
            page = await context.new_page()
            page.on("response", seen)
            answer = await page.goto(url)
            assert answer is not None and answer.status == 200
            await expect(page.locator("#passenger")).to_have_text("Bea Both")
            video = page.locator("video[data-video='1']")
            await video.evaluate("v => { v.muted = true; return v.play(); }")
            await page.wait_for_function(
                "() => { const v = document.querySelector('video');"
                " return v.readyState >= 2 && v.currentTime > 0.3; }",
                timeout=20_000,
            )
            assert ranged and all(s == 206 for s in ranged), ranged
            async with page.expect_download() as waiting:
                await page.locator('a[data-download="photos"]').click()
            saved = tmp_path / "photos.zip"
            await (await waiting.value).save_as(saved)
            names = zipfile.ZipFile(io.BytesIO(saved.read_bytes())).namelist()
            assert names and all(n.lower().endswith(".jpg") for n in names)
        finally:
            await browser.close()


async def check_dashboard(base: str, token: str) -> None:
    """The dashboard's outbox panel lists the deliveries; a booking's link shows as a QR code
    (an SVG the browser draws) with the link beside it."""
    from playwright.async_api import async_playwright, expect

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            page = await browser.new_page(viewport={"width": 1400, "height": 900})
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            await page.add_init_script(f"localStorage.setItem('skyreel-token', '{token}')")
            await page.goto(base + "/")
            await expect(page.locator("#deliveries tr[data-delivery]")).to_have_count(3)
            await expect(page.locator("#outbox-mode")).to_contain_text("SMTP")
            await page.evaluate("document.body.append(window.skyreelDelivery.section('BK-B03'))")
            await expect(page.locator("a.passenger-link")).to_have_text(LINK)
            await page.wait_for_function(
                "() => { const i = document.querySelector('img.qr');"
                " return i && i.complete && i.naturalWidth > 100; }",
                timeout=10_000,
            )
            assert await page.locator("button.resend").count() == 1
            assert errors == []
        finally:
            await browser.close()


async def check_refusals(s: Settings, emailed: str, base: str) -> None:
    """An expired and a revoked link: their own pages (410, 403), never a 500."""
    from playwright.async_api import async_playwright, expect

    engine = make_engine(s.database_url, pool_size=1)
    try:
        old = await issue_link(
            engine, signer_for(s), "BK-B03", days=1, actor="test",
            now=datetime.now(UTC) - timedelta(days=3),
        )  # fmt: skip
        await revoke_link(engine, await _link_id_of(engine, "BK-B03"), "test")
    finally:
        await engine.dispose()
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            page = await browser.new_page()
            answer = await page.goto(base + old.path)
            assert answer is not None and answer.status == 410
            await expect(page.locator("h1")).to_have_text("This link has expired")
            answer = await page.goto(emailed)
            assert answer is not None and answer.status == 403
            await expect(page.locator("h1")).to_have_text("This link was withdrawn")
        finally:
            await browser.close()


async def _link_id_of(engine: AsyncEngine, booking: str) -> int:
    async with engine.connect() as conn:
        found = await conn.scalar(
            text(
                "SELECT link_id FROM delivery WHERE booking_id = :b AND status = 'sent' "
                "ORDER BY id LIMIT 1"
            ),
            {"b": booking},
        )
    return int(found)


def run_cli(spawn: Callable[..., Proc], s: Settings, *args: str) -> tuple[int, str]:
    proc = spawn("streams.cli", *args, env=settings_env(s), name="cli")
    code = proc.popen.wait(60)
    return code, proc.output()


async def test_three_jumps_get_what_they_bought_and_one_email_per_booking(
    settings: Settings, sessions, clean_db, pg: asyncpg.Connection, spawn, tmp_path: Path
) -> None:
    _require_browser()
    await pg.execute("TRUNCATE delivery RESTART IDENTITY")
    cards = tmp_path / "cards"
    write_card(cards / "CARD-D" / "DCIM" / "100GOPRO")
    with smtp_server() as (box, smtp_port):
        s = small_system(
            settings, edit_jumps=False, photos_count=4, photos_min_spacing_s=0.3,
            smtp_host="127.0.0.1", smtp_port=smtp_port, smtp_security="none",
            smtp_from="videos@dz.example", dropzone_name="Skydive Loopback",
        )  # fmt: skip
        base = f"http://127.0.0.1:{s.hub_port}"
        s = s.model_copy(update={"passenger_link_base_url": base})
        procs = start_system(spawn, s, await token_for(sessions, "hangar-d"), cards)
        async with explained(pg, procs):
            await wait_for(
                lambda: deliver_done(pg), timeout=300, interval=1, what="3 jumps delivered"
            )
            steps = {
                (r["booking_id"], r["name"]): r["status"]
                for r in await pg.fetch(
                    "SELECT j.booking_id, p.name, p.status FROM pipeline_step p "
                    "JOIN jump_session j ON j.execution_id = p.execution_id "
                    "WHERE p.name IN ('render', 'publish', 'photos', 'deliver')"
                )
            }
        # the right deliverables per jump
        assert steps == {
            ("BK-V01", "render"): "succeeded",
            ("BK-V01", "publish"): "succeeded",
            ("BK-V01", "deliver"): "succeeded",
            ("BK-P02", "photos"): "succeeded",
            ("BK-P02", "deliver"): "succeeded",
            ("BK-B03", "render"): "succeeded",
            ("BK-B03", "publish"): "succeeded",
            ("BK-B03", "photos"): "succeeded",
            ("BK-B03", "deliver"): "succeeded",
        }
        # exactly one email per booking that has an email, none for the one without
        assert sorted(m["To"] for m in box.messages) == ["bea@example.com", "vera@example.com"]
        vera, bea = body_of(box, "vera@example.com"), body_of(box, "bea@example.com")
        assert "video" in vera and "photo" not in vera.split("ready:")[0]
        assert "photos" in bea.split("ready:")[0]
        [link] = LINK.findall(bea)
        assert len(LINK.findall(vera)) == 1
        await check_page(link, tmp_path)

        # the same card again: listed again, nothing new sent
        shutil.move(cards / "CARD-D", tmp_path / "pulled")
        await wait_for(
            lambda: pg.fetchval("SELECT NOT present FROM card"), timeout=30, what="card removed"
        )
        listed = await pg.fetchval("SELECT last_seen_at FROM card")
        shutil.move(tmp_path / "pulled", cards / "CARD-D")
        await wait_for(
            lambda: pg.fetchval("SELECT present AND last_seen_at > $1 FROM card", listed),
            timeout=30,
            what="card listed again",
        )
        await asyncio.sleep(3)
        assert len(box.messages) == 2

        # a replay of the topics from the start (a fresh consumer group) sends nothing either
        procs["worker"].stop()
        replayed = s.model_copy(update={"app_id": f"{s.app_id}-replay"})
        for topic in ("step-requests", "step-results"):
            code, out = run_cli(spawn, replayed, "replay", topic, "--offset", "0")
            assert code == 0, out
        again = spawn("streams.cli", "worker", env=settings_env(replayed), name="worker-replay")
        await asyncio.sleep(20)  # the replay is consumed and any (wrong) email would be out
        assert again.popen.poll() is None, again.output()[-3000:]
        assert len(box.messages) == 2
        rows = await pg.fetch("SELECT booking_id, status, attempts FROM delivery ORDER BY id")
        assert sorted((r["booking_id"], r["status"], r["attempts"]) for r in rows) == [
            ("BK-B03", "sent", 1),
            ("BK-V01", "sent", 1),
        ]

        # a new email on assign runs `deliver` again: the key is sent, nothing goes out; the
        # operator's resend (the hub's API -> a command -> the worker) sends once more
        key = await pg.fetchval("SELECT key FROM jump_session WHERE booking_id = 'BK-V01'")
        code, out = run_cli(
            spawn, replayed, "assign", key, "--booking", "BK-V01", "--passenger", "Vera Video",
            "--email", "vera.new@example.com",
        )  # fmt: skip
        assert code == 0, out

        async def rerun_logged() -> bool:
            return bool(
                await pg.fetchval(
                    "SELECT count(*) FROM pipeline_step_log l JOIN pipeline_step p "
                    "ON p.id = l.step_id JOIN jump_session j ON j.execution_id = p.execution_id "
                    "WHERE j.booking_id = 'BK-V01' AND p.name = 'deliver' "
                    "AND l.message LIKE '%sent already%'"
                )
            )

        async with explained(pg, {"worker": again}):
            await wait_for(rerun_logged, timeout=60, interval=0.5, what="deliver ran again")
        assert len(box.messages) == 2
        async with httpx.AsyncClient(base_url=base, timeout=60) as client:
            answer = await client.post(
                "/api/bookings/BK-V01/resend",
                headers={"Authorization": f"Bearer {s.admin_token.get_secret_value()}"},
            )
            assert answer.status_code == 200, answer.text
            assert answer.json()["key"] == "BK-V01/resend-1" and answer.json()["sent"] is True
            outbox = (await client.get("/api/outbox")).json()
        assert len(box.messages) == 3 and box.messages[-1]["To"] == "vera.new@example.com"
        assert {d["key"] for d in outbox["deliveries"]} == {
            "BK-V01/video", "BK-B03/photos+video", "BK-V01/resend-1"
        }  # fmt: skip
        assert all("***@" in d["recipient"] for d in outbox["deliveries"])
        await check_dashboard(base, s.admin_token.get_secret_value())

        # the photos-only booking buys the video at the desk: render and publish are added,
        # `deliver` waits for them, and the passenger gets one email with both
        paul = await pg.fetchval("SELECT key FROM jump_session WHERE booking_id = 'BK-P02'")
        code, out = run_cli(
            spawn, replayed, "assign", paul, "--booking", "BK-P02", "--passenger", "Paul Photos",
            "--email", "paul@example.com", "--product", "video+photos",
        )  # fmt: skip
        assert code == 0, out
        async with explained(pg, {"worker": again}):
            await wait_for(
                lambda: bool(box.to("paul@example.com")), timeout=180, interval=1,
                what="the email of the video bought later",
            )  # fmt: skip
        body = body_of(box, "paul@example.com")
        assert "video" in body.split("ready:")[0] and "photos" in body.split("ready:")[0]

        async def paul_steps() -> list[str]:
            return sorted(
                await pg.fetchval(
                    "SELECT array_agg(p.name || '=' || p.status) FROM pipeline_step p JOIN "
                    "jump_session j ON j.execution_id = p.execution_id "
                    "WHERE j.booking_id = 'BK-P02' "
                    "AND p.name IN ('render', 'publish', 'photos', 'deliver')"
                )
            )

        done = ["deliver=succeeded", "photos=succeeded", "publish=succeeded", "render=succeeded"]
        # the email goes out before the step's result is recorded: wait for the record
        async with explained(pg, {"worker": again}):
            await wait_for(
                lambda: _equals(paul_steps(), done), timeout=60, interval=0.5,
                what="BK-P02's steps recorded as succeeded",
            )  # fmt: skip
        assert len(box.messages) == 4

        await check_refusals(s, link, base)
