"""The passenger's email goes out once per deliverable set (agents/jobs/deliver_step.py), against
real PostgreSQL and a real SMTP server on loopback (aiosmtpd): redelivery, retry and replay of
the step send nothing twice; a 4xx then success is one message; a refused login is a visible,
retryable failure saying what to fix; no SMTP configured writes one .eml to the outbox."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from email import message_from_bytes
from email.policy import default
from pathlib import Path

import pytest
from pydantic import SecretStr
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from agents.jobs import deliver_step
from agents.pipeline.errors import PermanentStepError, RetryableStepError
from storage import deliveries
from streams.settings import Settings
from tests.streams.smtp_harness import NO_TLS_AUTH_WARNING, PASSWORD, USER, smtp_server
from tests.support import local_settings

BOOKING = "BK-7001"
EMAIL = "ana@example.com"
SESSION = "card-D:1"


class Log:
    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []

    def __call__(self, message: str, level: str = "info") -> None:
        self.lines.append((level, message))

    def text(self) -> str:
        return "\n".join(m for _, m in self.lines)


@pytest.fixture
async def db(clean_db: AsyncEngine) -> AsyncIterator[AsyncEngine]:
    async with clean_db.begin() as conn:
        await conn.execute(text("TRUNCATE delivery RESTART IDENTITY"))
    yield clean_db


def make_settings(tmp_path: Path, database_url: str, **extra: object) -> Settings:
    return local_settings(
        tmp_path,
        database_url,
        "redis://127.0.0.1:6379/0",
        "127.0.0.1:9092",
        "delivery-test",
        dropzone_name="Skydive Loopback",
        passenger_link_base_url="https://videos.example",
        smtp_from="videos@dz.example",
        **extra,
    )


async def seed(
    engine: AsyncEngine,
    *,
    session: str = SESSION,
    email: str | None = EMAIL,
    photos: str | None = "succeeded",
) -> int:
    """A decoded jump of BOOKING whose publish (and photos) step finished."""
    async with engine.begin() as conn:
        card = session.split(":", 1)[0]
        await conn.execute(
            text("INSERT INTO card (id, label) VALUES (:c, 'GOPRO') ON CONFLICT DO NOTHING"),
            {"c": card},
        )
        eid = await conn.scalar(
            text(
                "INSERT INTO pipeline_execution (key, pipeline, subject_type, subject_id, status) "
                "VALUES (:k, 'jump', 'session', :s, 'running') RETURNING id"
            ),
            {"k": f"jump:{session}", "s": session},
        )
        await conn.execute(
            text(
                "INSERT INTO jump_session (key, card_id, status, booking_id, passenger, product, "
                "execution_id, email) VALUES (:s, :c, 'decoded', :b, 'Ana', 'video+photos', :e, "
                ":em)"
            ),
            {"s": session, "c": card, "b": BOOKING, "e": eid, "em": email},
        )
        step = text(
            "INSERT INTO pipeline_step (execution_id, name, kind, status, attempt, output) "
            "VALUES (:e, :n, :n, :s, 1, CAST(:o AS jsonb))"
        )
        await conn.execute(step, {"e": eid, "n": "publish", "s": "succeeded", "o": "{}"})
        if photos is not None:
            out = json.dumps({"count": 5, "photos": []}) if photos == "succeeded" else "null"
            await conn.execute(step, {"e": eid, "n": "photos", "s": photos, "o": out})
    return int(eid)


async def rows(engine: AsyncEngine) -> list[deliveries.DeliveryRow]:
    async with engine.connect() as conn:
        return await deliveries.of_booking(conn, BOOKING)


async def test_smtp_one_message_across_redelivery_retry_and_replay(
    db: AsyncEngine, tmp_path: Path, database_url: str
) -> None:
    eid = await seed(db)
    with smtp_server() as (box, port):
        settings = make_settings(
            tmp_path, database_url, smtp_host="127.0.0.1", smtp_port=port, smtp_security="none"
        )
        log = Log()
        first = await deliver_step.deliver_session(settings, db, SESSION, eid, log)
        # the same step delivered again, retried, replayed: each finds the key sent
        again = [await deliver_step.deliver_session(settings, db, SESSION, eid, log) for _ in "xyz"]
        assert first["sent"] is True and first["via"] == "smtp"
        assert all(a["sent"] is False and a["already_sent"] for a in again)
        assert len(box.messages) == 1
        msg = box.messages[0]
        assert msg["To"] == EMAIL
        assert box.envelopes[0] == ("videos@dz.example", [EMAIL])
        body = msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]
        assert str(first["link"]) in body and str(first["link"]).startswith(
            "https://videos.example/p/"
        )
        assert "5 photos" in body and "jump video" in body
    [row] = await rows(db)
    assert row.status is deliveries.DeliveryStatus.SENT and row.attempts == 1
    assert row.idempotency_key == f"{BOOKING}/photos+video"
    assert msg["Message-ID"] == row.message_id
    assert "sent already" in log.text() and "nothing sent again" in log.text()


async def test_a_second_jump_of_the_booking_sends_nothing_more(
    db: AsyncEngine, tmp_path: Path, database_url: str
) -> None:
    e1 = await seed(db, session="card-D:1")
    e2 = await seed(db, session="card-E:1")
    with smtp_server() as (box, port):
        settings = make_settings(
            tmp_path, database_url, smtp_host="127.0.0.1", smtp_port=port, smtp_security="none"
        )
        await deliver_step.deliver_session(settings, db, "card-D:1", e1, Log())
        second = await deliver_step.deliver_session(settings, db, "card-E:1", e2, Log())
    assert second["sent"] is False and len(box.messages) == 1


async def test_4xx_then_success_is_one_message(
    db: AsyncEngine, tmp_path: Path, database_url: str
) -> None:
    eid = await seed(db)
    with smtp_server() as (box, port):
        box.temp_fail_data = 1
        settings = make_settings(
            tmp_path, database_url, smtp_host="127.0.0.1", smtp_port=port, smtp_security="none"
        )
        log = Log()
        with pytest.raises(RetryableStepError, match="451"):
            await deliver_step.deliver_session(settings, db, SESSION, eid, log)
        [failed] = await rows(db)
        assert failed.status is deliveries.DeliveryStatus.FAILED and "451" in failed.last_error
        done = await deliver_step.deliver_session(settings, db, SESSION, eid, log)
        assert done["sent"] is True
        assert len(box.messages) == 1
    [row] = await rows(db)
    assert row.status is deliveries.DeliveryStatus.SENT and row.attempts == 2
    assert row.last_error == ""


@pytest.mark.filterwarnings(NO_TLS_AUTH_WARNING)
async def test_a_refused_login_is_visible_and_says_what_to_fix(
    db: AsyncEngine, tmp_path: Path, database_url: str
) -> None:
    eid = await seed(db)
    with smtp_server(auth=True) as (box, port):
        wrong = make_settings(
            tmp_path, database_url, smtp_host="127.0.0.1", smtp_port=port, smtp_security="none",
            smtp_username=USER, smtp_password="wrong",
        )  # fmt: skip
        log = Log()
        with pytest.raises(RetryableStepError) as caught:
            await deliver_step.deliver_session(wrong, db, SESSION, eid, log)
        assert "535" in str(caught.value)
        assert "check SKYREEL_SMTP_USERNAME/PASSWORD" in str(caught.value)
        assert "535" in log.text()
        [row] = await rows(db)
        assert row.status is deliveries.DeliveryStatus.FAILED and "535" in row.last_error
        assert box.messages == []
        fixed = wrong.model_copy(update={"smtp_password": SecretStr(PASSWORD)})
        await deliver_step.deliver_session(fixed, db, SESSION, eid, log)
        assert len(box.messages) == 1


async def test_a_refused_recipient_fails_for_good_with_the_reason(
    db: AsyncEngine, tmp_path: Path, database_url: str
) -> None:
    eid = await seed(db)
    with smtp_server() as (box, port):
        box.refuse_rcpt.add(EMAIL)
        settings = make_settings(
            tmp_path, database_url, smtp_host="127.0.0.1", smtp_port=port, smtp_security="none"
        )
        with pytest.raises(PermanentStepError, match="550"):
            await deliver_step.deliver_session(settings, db, SESSION, eid, Log())
    [row] = await rows(db)
    assert row.status is deliveries.DeliveryStatus.FAILED
    assert "550" in row.last_error and "correct the booking's email" in row.last_error


async def test_no_smtp_writes_one_eml_to_the_outbox(
    db: AsyncEngine, tmp_path: Path, database_url: str
) -> None:
    eid = await seed(db, photos="failed")
    settings = make_settings(tmp_path, database_url)
    log = Log()
    out = await deliver_step.deliver_session(settings, db, SESSION, eid, log)
    await deliver_step.deliver_session(settings, db, SESSION, eid, log)
    outbox = Path(settings.data_dir) / "outbox"
    files = sorted(p.name for p in outbox.iterdir())
    assert files == [f"{BOOKING}-video.eml"] and out["outbox_file"] == files[0]
    msg = message_from_bytes((outbox / files[0]).read_bytes(), policy=default)
    body = msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "photos could not be made" in body  # the failed photos are said, the video sent
    assert str(out["link"]) in body and msg["To"] == EMAIL
    async with db.connect() as conn:
        assert await deliveries.outbox_count(conn) == 1


async def test_no_email_sends_nothing(db: AsyncEngine, tmp_path: Path, database_url: str) -> None:
    eid = await seed(db, email=None)
    log = Log()
    out = await deliver_step.deliver_session(
        make_settings(tmp_path, database_url), db, SESSION, eid, log
    )
    assert out == {"sent": False, "skipped": "no email"} and "no email" in log.text()
    assert await rows(db) == []


async def test_a_crashed_send_is_retried_only_when_stale_with_the_same_message_id(
    db: AsyncEngine, tmp_path: Path, database_url: str
) -> None:
    eid = await seed(db)
    with smtp_server() as (box, port):
        settings = make_settings(
            tmp_path, database_url, smtp_host="127.0.0.1", smtp_port=port, smtp_security="none"
        )
        key = f"{BOOKING}/photos+video"
        async with db.begin() as conn:  # a sender that claimed the key and died
            claimed = await deliveries.claim(
                conn, key=key, booking_id=BOOKING, deliverable_set="photos+video",
                recipient=EMAIL, message_id="<crashed@dz.example>", session_key=SESSION,
                actor="test", stale_after_s=deliver_step.STALE_AFTER_S,
            )  # fmt: skip
        assert claimed.send
        with pytest.raises(RetryableStepError, match="being sent"):
            await deliver_step.deliver_session(settings, db, SESSION, eid, Log())
        async with db.begin() as conn:
            await conn.execute(text("UPDATE delivery SET updated_at = now() - interval '1 hour'"))
        await deliver_step.deliver_session(settings, db, SESSION, eid, Log())
        assert len(box.messages) == 1
        assert box.messages[0]["Message-ID"] == "<crashed@dz.example>"
    [row] = await rows(db)
    assert row.status is deliveries.DeliveryStatus.SENT and row.attempts == 2


async def test_resend_sends_once_more_once_per_request(
    db: AsyncEngine, tmp_path: Path, database_url: str
) -> None:
    eid = await seed(db)
    with smtp_server() as (box, port):
        settings = make_settings(
            tmp_path, database_url, smtp_host="127.0.0.1", smtp_port=port, smtp_security="none"
        )
        await deliver_step.deliver_session(settings, db, SESSION, eid, Log())
        one = await deliver_step.resend(settings, db, BOOKING, "cmd-1", "op")
        again = await deliver_step.resend(settings, db, BOOKING, "cmd-1", "op")  # redelivered
        two = await deliver_step.resend(settings, db, BOOKING, "cmd-2", "op")
        assert one["key"] == f"{BOOKING}/resend-1" and two["key"] == f"{BOOKING}/resend-2"
        assert again["sent"] is False
        assert len(box.messages) == 3
        # the link is reused, not a new one per email
        assert len({m["X-Skyreel-Delivery"] for m in box.messages}) == 3
    links = {r.link_id for r in await rows(db)}
    assert len(links) == 1
    with pytest.raises(LookupError):
        await deliver_step.resend(settings, db, "BK-NOPE", "cmd-3", "op")


async def test_assign_sets_the_email_and_amends_only_its_own_booking(db: AsyncEngine) -> None:
    from storage.sessions import SessionNotAssignable, assign_session

    await seed(db, email=None)
    async with db.begin() as conn:
        amended = await assign_session(
            conn, SESSION, BOOKING, "Ana", "op", email="new@example.com", product="video"
        )
    assert amended.amended and amended.email == "new@example.com" and amended.email_before is None
    async with db.begin() as conn:
        row = (
            await conn.execute(
                text("SELECT email, product, status FROM jump_session WHERE key = :k"),
                {"k": SESSION},
            )
        ).one()
    assert tuple(row) == ("new@example.com", "video", "decoded")  # the status is untouched
    async with db.begin() as conn:
        with pytest.raises(SessionNotAssignable):  # another booking: still refused
            await assign_session(conn, SESSION, "BK-OTHER", "Ana", "op", email="x@example.com")
        with pytest.raises(SessionNotAssignable):  # nothing to amend: refused as before
            await assign_session(conn, SESSION, BOOKING, "Ana", "op")
