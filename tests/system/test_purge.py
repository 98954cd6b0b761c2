"""Retention and deletion on the whole system (issue 16, item 5): hub, Faust worker, render worker
and a detector on a demo card; real PostgreSQL, broker, files and FFmpeg.

A booking with a published video, photos, share copies, a passenger link, an email delivery and
an outbox message is purged with `skyreel purge --booking B --yes`: afterwards no file of it is
left, its name and email are in no text/jsonb column of any table nor in the status API, its
link is dead, a render of it is refused ("purged: footage deleted on <date>"), the purge is
recorded, a second purge (through the API) finds nothing left, and the same card inserted again
copies nothing. Then the scheduled purge, with a clock moved ahead, purges only what is due."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine
from support import Proc, settings_env, small_system, wait_for
from system.dropzone import Site, explained, settled

from agents.purge import scheduled_purge
from agents.retention import PurgeReason, name_slug
from streams.hub.passenger_links import issue_link, signer_for
from streams.settings import DEV_TOKEN, Settings

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

AUTH = {"Authorization": f"Bearer {DEV_TOKEN}"}
EMAIL = "purge.me@example.org"


@pytest.fixture
def system_settings(settings: Settings) -> Settings:
    return small_system(settings)


async def text_columns(pg: asyncpg.Connection) -> list[tuple[str, str]]:
    rows = await pg.fetch(
        "SELECT table_name, column_name FROM information_schema.columns "
        "WHERE table_schema = current_schema() "
        "AND data_type IN ('text', 'character varying', 'jsonb', 'json', 'ARRAY')"
    )
    return [(r["table_name"], r["column_name"]) for r in rows]


async def found_in_tables(pg: asyncpg.Connection, needles: list[str]) -> list[str]:
    """Every (table.column: needle) where a needle occurs in any text/jsonb/array column."""
    hits: list[str] = []
    for table, column in await text_columns(pg):
        for needle in needles:
            n = await pg.fetchval(
                f'SELECT count(*) FROM "{table}" WHERE strpos(CAST("{column}" AS text), $1) > 0',
                needle,
            )
            if n:
                hits.append(f"{table}.{column}: {needle!r} x{n}")
    return hits


def cli(s: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streams.cli", *args],
        env=settings_env(s),
        capture_output=True,
        stdin=subprocess.DEVNULL,
        text=True,
        timeout=90,
        check=False,
    )


async def add_photos(pg: asyncpg.Connection, s: Settings, eid: int, folder: Path) -> list[Path]:
    """The photos step's output as the photos helper writes it (paths relative to output_dir)."""
    (folder / "photos").mkdir(exist_ok=True)
    stills = [folder / "photos" / f"{folder.name}_{i}.jpg" for i in (1, 2)]
    sheet = folder / f"{folder.name}_contact.jpg"
    for p in [*stills, sheet]:
        p.write_bytes(b"\xff\xd8\xff\xe0 jpeg " + p.name.encode())
    output = {
        "photos": [str(p.relative_to(s.output_dir)) for p in stills],
        "contact_sheet": str(sheet.relative_to(s.output_dir)),
    }
    await pg.execute(
        "INSERT INTO pipeline_step (execution_id, name, kind, status, output, finished_at) "
        "VALUES ($1, 'photos', 'photos', 'succeeded', $2::jsonb, now())",
        eid,
        json.dumps(output),
    )
    return [*stills, sheet]


async def worker_listed(procs: dict[str, Proc]) -> int:
    return procs["worker"].output().count("already imported")


async def test_a_purged_booking_leaves_nothing_and_its_card_copies_nothing_again(
    system_settings: Settings,
    site: Site,
    pg: asyncpg.Connection,
    clean_db: AsyncEngine,
    tmp_path: Path,
) -> None:
    try:
        await purge_and_check(system_settings, site, pg, clean_db, tmp_path)
    finally:
        await pg.execute("DROP TABLE IF EXISTS test_delivery")


async def purge_and_check(
    s: Settings, site: Site, pg: asyncpg.Connection, clean_db: AsyncEngine, tmp_path: Path
) -> None:
    card = site.card("CARD-P", 3)
    procs = await site.start(s, "hangar-1")
    async with explained(pg, procs):
        await wait_for(lambda: settled(pg, 3), timeout=180, interval=1, what="3 jumps rendered")

    target, *others = card.readable_jumps
    booking, name = target.booking_id, target.passenger
    slug = name_slug(name)
    session = await pg.fetchrow(
        "SELECT key, execution_id, output_name, file_ids FROM jump_session WHERE booking_id = $1",
        booking,
    )
    assert session is not None
    eid = int(session["execution_id"])
    folder = s.output_dir / session["output_name"]
    assert slug in folder.name and list(folder.glob("*.mp4")), folder
    mine = [p for p in folder.rglob("*") if p.is_file()]
    mine += await add_photos(pg, s, eid, folder)
    file_ids = [int(i) for i in session["file_ids"]]
    copies = [
        s.share_root / r["stored_path"]
        for r in await pg.fetch(
            "SELECT stored_path FROM imported_file WHERE id = ANY($1::bigint[]) "
            "OR session_key = $2",
            file_ids,
            session["key"],
        )
    ]
    assert copies and all(p.is_file() for p in copies)
    other_videos = sorted(p for p in s.output_dir.glob("*/*.mp4") if p.parent != folder)
    assert len(other_videos) == len(others)

    # the email helper's part: a delivery row (a table of its own here: any table with a
    # booking_id and an email column is found) and an outbox message naming the booking
    await pg.execute(
        "CREATE TABLE test_delivery (id serial, booking_id text, email text, subject text)"
    )
    await pg.execute(
        "INSERT INTO test_delivery (booking_id, email, subject) VALUES ($1, $2, $3)",
        booking,
        EMAIL,
        f"Your jump video, {name}",
    )
    outbox = s.data_dir / "outbox"
    outbox.mkdir(parents=True, exist_ok=True)
    message = outbox / "0001.eml"
    message.write_text(f"To: {name} <{EMAIL}>\nSubject: your jump {booking}\n\nHello\n")
    other_message = outbox / "0002.eml"
    other_message.write_text(f"To: someone <x@example.org>\nSubject: jump {others[0].booking_id}\n")
    # a dead letter quoting the name (a raw message an agent could not process)
    await pg.execute(
        "INSERT INTO dead_letter (topic, key, payload, error) VALUES ('t', $1, $2, 'boom')",
        session["key"],
        json.dumps({"passenger": name, "booking_id": booking}, ensure_ascii=False),
    )

    link = await issue_link(clean_db, signer_for(s), booking, days=7, actor="test")
    base = f"http://127.0.0.1:{s.hub_port}"
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        assert (await http.get(link.path)).status_code == 200
        before = await found_in_tables(pg, [name, slug, EMAIL])
        assert any(h.startswith("jump_session.passenger") for h in before), before
        assert any(h.startswith("qr_scan.payload") for h in before), before

        # --- the purge on request, from the CLI: it asks first (no terminal: --yes) ---
        asked = await asyncio.to_thread(cli, s, "purge", "--booking", booking)
        assert asked.returncode == 2 and "confirm with --yes" in asked.stderr, asked
        assert f"booking {booking}: 1 jump(s)" in asked.stdout and folder.exists()
        assert await pg.fetchval("SELECT count(*) FROM purge_record") == 0
        done = await asyncio.to_thread(cli, s, "purge", "--booking", booking, "--yes")
        assert done.returncode == 0, done.stdout + done.stderr
        assert f"booking {booking}: 1 jump(s)" in done.stdout
        assert f"booking {booking} purged" in done.stdout, done.stdout

        # no file of the booking is left; the others' are
        assert not [p for p in [*mine, *copies, message] if p.exists()]
        assert not folder.exists()
        assert other_message.exists()
        assert all(p.exists() for p in other_videos)
        # the name and email are gone from every table
        assert await found_in_tables(pg, [name, slug, EMAIL]) == []
        for other in others:  # another booking keeps its name
            assert await pg.fetchval(
                "SELECT count(*) FROM jump_session WHERE passenger = $1", other.passenger
            )
        # the link is dead
        page = await http.get(link.path)
        assert page.status_code in (403, 410), page.status_code
        # the status API shows the session purged, without the name
        got = (await http.get(f"/api/sessions/{session['key']}")).json()
        assert got["passenger"] is None and got["purged_at"], got
        assert "purged on" in got["review_reason"]
        for path in (
            "/api/sessions",
            f"/api/executions/{eid}",
            "/api/executions",
            "/api/dead-letters",
            f"/api/executions/{eid}/steps/publish/logs",
            f"/api/executions/{eid}/steps/render/logs",
        ):
            body = (await http.get(path)).text
            for needle in (name, slug, EMAIL, json.dumps(name)[1:-1]):
                assert needle not in body, (path, needle)
        # nothing renders it again
        retry = await http.post(
            f"/api/executions/{eid}/steps/render/retry", params={"force": "1"}, headers=AUTH
        )
        assert retry.status_code == 409, retry.text
        today = datetime.now(UTC).date().isoformat()
        assert f"purged: footage deleted on {today}" in retry.json()["error"]["message"]

        # recorded: what, when, who
        record = await pg.fetchrow("SELECT * FROM purge_record WHERE booking_id = $1", booking)
        assert record is not None
        what, errors = json.loads(record["what"]), json.loads(record["errors"])
        assert (record["reason"], errors) == ("request", [])
        assert record["requested_by"].startswith("cli:")
        assert what["files_deleted"] == len(mine) + len(copies)
        assert what["bytes_deleted"] > 0
        assert what["copies_marked_purged"] == len(copies)
        # every link of the booking is dead (the jump's own `deliver` step may have issued one
        # besides the test's), and every message naming it is gone
        links = await pg.fetch(
            "SELECT revoked_at, revoked_by FROM passenger_link WHERE booking_id = $1", booking
        )
        assert links and all(r["revoked_at"] is not None for r in links), links
        revoked = [r for r in links if r["revoked_by"] == "purge"]
        assert what["links_revoked"] == len(revoked) >= 1
        assert what["outbox_deleted"] >= 1 and not message.exists()
        assert not [p for p in outbox.glob("*.eml") if p.name.startswith(f"{booking}-")]
        assert what["rows_anonymised"] > 0 and not what["nothing_left"]

        # --- again, through the API: nothing left, recorded, nothing fails ---
        assert (await http.post(f"/api/bookings/{booking}/purge")).status_code == 401
        assert (await http.post("/api/bookings/NO-SUCH/purge", headers=AUTH)).status_code == 404
        again = await http.post(f"/api/bookings/{booking}/purge", headers=AUTH)
        assert again.status_code == 200, again.text
        assert again.json()["what"]["nothing_left"] is True and again.json()["errors"] == []
        assert (
            await pg.fetchval("SELECT count(*) FROM purge_record WHERE booking_id = $1", booking)
            == 2
        )

    # --- the ledger rows stay: the same card again copies nothing ---
    ledger = await pg.fetch(
        "SELECT status, content_hash, purged_at FROM imported_file WHERE id = ANY($1::bigint[])",
        file_ids,
    )
    assert ledger and all(r["status"] == "imported" and r["purged_at"] for r in ledger)
    assert all(r["content_hash"] for r in ledger)
    requests_before = await pg.fetchval("SELECT sum(request_count) FROM imported_file")
    files_before = await pg.fetchval("SELECT count(*) FROM imported_file")
    listed = await worker_listed(procs)
    shutil.move(site.cards / "CARD-P", tmp_path / "pulled")
    await wait_for(
        lambda: pg.fetchval("SELECT NOT present FROM card"), timeout=30, what="card removed"
    )
    shutil.move(tmp_path / "pulled", site.cards / "CARD-P")
    await wait_for(
        lambda: pg.fetchval("SELECT present FROM card"), timeout=30, what="card inserted again"
    )

    async def listed_again() -> bool:
        return await worker_listed(procs) > listed

    await wait_for(listed_again, timeout=60, what="the worker diffed the card again")
    assert await pg.fetchval("SELECT sum(request_count) FROM imported_file") == requests_before
    assert await pg.fetchval("SELECT count(*) FROM imported_file") == files_before
    assert not [p for p in copies if p.exists()]

    # --- the scheduled purge: only what is due ---
    now = datetime.now(UTC)
    assert await scheduled_purge(clean_db, s, now=now + timedelta(days=1)) == []
    never = s.model_copy(update={"retention_media_days": 0, "retention_personal_days": 0})
    assert await scheduled_purge(clean_db, never, now=now + timedelta(days=400)) == []
    other_link = await issue_link(clean_db, signer_for(s), others[0].booking_id, days=7, actor="t")
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        assert (await http.get(other_link.path)).status_code == 200
    media = await scheduled_purge(clean_db, s, now=now + timedelta(days=31))
    assert sorted(r.booking_id for r in media) == sorted(o.booking_id for o in others)
    assert {r.reason for r in media} == {PurgeReason.RETENTION_MEDIA}
    assert not [p for p in other_videos if p.exists()]
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:  # the files are gone
        assert (await http.get(other_link.path)).status_code == 410
    for other in others:  # media only: the name is kept until the personal period ends
        assert await pg.fetchval(
            "SELECT count(*) FROM jump_session WHERE passenger = $1", other.passenger
        )
    assert await scheduled_purge(clean_db, s, now=now + timedelta(days=60)) == []
    personal = await scheduled_purge(clean_db, s, now=now + timedelta(days=91))
    assert sorted(r.booking_id for r in personal) == sorted(o.booking_id for o in others)
    assert {r.reason for r in personal} == {PurgeReason.RETENTION_PERSONAL}
    names = [o.passenger for o in others]
    assert await found_in_tables(pg, names) == []
    reasons = await pg.fetch(
        "SELECT reason, requested_by, count(*) AS n FROM purge_record "
        "WHERE booking_id <> $1 GROUP BY 1, 2 ORDER BY 1",
        booking,
    )
    assert [(r["reason"], r["requested_by"], r["n"]) for r in reasons] == [
        ("retention-media", "retention", len(others)),
        ("retention-personal", "retention", len(others)),
    ]
    rows: list[Any] = await pg.fetch(
        "SELECT what FROM purge_record WHERE reason = 'retention-personal'"
    )
    assert all(json.loads(r["what"])["nothing_left"] is False for r in rows)
