"""The passenger's email (agents/email_message.py) and the ticket's email field (pure)."""

from __future__ import annotations

from datetime import UTC, datetime
from email import message_from_bytes
from email.policy import default

import pytest

from agents.email_message import Letter, build_message, message_id, one_line
from agents.jobs.deliver_step import mask, what_is_ready
from agents.jobs.mailer import outbox_name
from agents.qr.payload import email_problem, parse_booking

EXPIRES = datetime(2027, 1, 15, 12, 0, tzinfo=UTC)


def letter(**kw: object) -> Letter:
    base: dict[str, object] = {
        "recipient": "ana@example.com",
        "sender": "videos@dz.example",
        "passenger": "Ana Müller",
        "dropzone": "Skydive Example",
        "ready": ("your jump video", "30 photos"),
        "link": "https://videos.dz.example/p/TOKEN.abc",
        "expires_at": EXPIRES,
        "idempotency_key": "BK-1/photos+video",
    }
    base.update(kw)
    return Letter(**base)  # type: ignore[arg-type]


def parts(raw: bytes) -> tuple[object, str, str]:
    msg = message_from_bytes(raw, policy=default)
    text = msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    html = msg.get_body(("html",)).get_content()  # type: ignore[union-attr]
    return msg, text, html


def test_message_has_text_and_html_with_the_link_name_and_expiry() -> None:
    msg, text, html = parts(build_message(letter()).as_bytes())
    assert msg["To"] == "ana@example.com"  # type: ignore[index]
    assert "Skydive Example" in msg["Subject"]  # type: ignore[index]
    for body in (text, html):
        assert "https://videos.dz.example/p/TOKEN.abc" in body
        assert "Ana Müller" in body
        assert "15 January 2027" in body
        assert "30 photos" in body
    assert 'href="https://videos.dz.example/p/TOKEN.abc"' in html


def test_message_id_comes_from_the_key_and_only_from_it() -> None:
    a = build_message(letter())["Message-ID"]
    b = build_message(letter(passenger="Someone Else", link="https://x.example/p/other"))[
        "Message-ID"
    ]
    c = build_message(letter(idempotency_key="BK-1/resend-1"))["Message-ID"]
    assert a == b == message_id("BK-1/photos+video", "dz.example")
    assert c != a
    assert a.endswith("@dz.example>")


def test_a_hostile_name_is_escaped_and_cannot_add_a_header() -> None:
    evil = 'Eve <script>alert(1)</script>\r\nBcc: all@example.com "&'
    msg, text, html = parts(
        build_message(letter(passenger=evil, dropzone='DZ "x"\nBcc: y')).as_bytes()
    )
    assert msg["Bcc"] is None  # type: ignore[index]
    assert "<script>" not in html
    assert "&lt;script&gt;" in html
    assert "\r" not in one_line(evil) and "\n" not in one_line(evil)
    assert "Eve <script>" in text  # the text part is text: shown as written, on one line


def test_notes_say_what_is_missing() -> None:
    _, text, html = parts(
        build_message(
            letter(ready=("your jump video",), notes=("your photos are late",))
        ).as_bytes()
    )
    assert "your photos are late" in text and "your photos are late" in html
    assert "is ready" in text
    _, text, _ = parts(build_message(letter(ready=("12 photos",))).as_bytes())
    assert "12 photos are ready" in text


def test_what_is_ready_reads_publish_and_photos() -> None:
    both = what_is_ready({"publish": ("succeeded", {}), "photos": ("succeeded", {"count": 12})})
    assert both.parts == ("photos", "video") and "12 photos" in both.words and not both.notes
    photos_failed = what_is_ready({"publish": ("succeeded", {}), "photos": ("failed", None)})
    assert photos_failed.parts == ("video",) and photos_failed.notes
    not_bought = what_is_ready(
        {"publish": ("succeeded", {}), "photos": ("succeeded", {"count": 0, "skipped": "x"})}
    )
    assert not_bought.parts == ("video",) and not not_bought.notes
    assert what_is_ready({}).parts == ()


def test_mask_and_outbox_name() -> None:
    assert mask("ana@example.com") == "a***@example.com"
    assert mask("nonsense") == "***"
    assert outbox_name("BK-1", "BK-1/photos+video") == "BK-1-photos+video.eml"
    assert "/" not in outbox_name("BK-1", "BK-1/../../etc")


@pytest.mark.parametrize(
    ("payload", "email"),
    [
        ('{"booking": "BK-100", "email": "ana@example.com"}', "ana@example.com"),
        ("booking=BK-100;e-mail=ana@example.com", "ana@example.com"),
        ("https://book.example/t?ref=BK-100&mail=a.b%2Bx@sub.example.org", "a.b+x@sub.example.org"),
        ('{"booking": "BK-100", "email": "mailto:ana@example.com"}', "ana@example.com"),
        ('{"booking": "BK-100"}', None),
    ],
)
def test_ticket_email_is_read(payload: str, email: str | None) -> None:
    b = parse_booking(payload)
    assert b.email == email and b.email_warning == ""


@pytest.mark.parametrize(
    "bad",
    [
        "not-an-address",
        "a@b",
        "two@example.com, three@example.com",
        "Ana <ana@example.com>",
        "a..b@example.com",
        "x" * 250 + "@example.com",
    ],
)
def test_a_bad_ticket_email_is_ignored_with_a_warning_not_refused(bad: str) -> None:
    b = parse_booking(f'{{"booking": "BK-100", "name": "Ana", "email": "{bad}"}}')
    assert b.booking_id == "BK-100" and b.passenger == "Ana"
    assert b.email is None
    assert "ignored" in b.email_warning
    assert email_problem(bad) is not None


def test_email_problem_accepts_ordinary_addresses() -> None:
    for ok in ("a@example.com", "first.last+tag@mail.example.co.uk", "x_y@d-z.example"):
        assert email_problem(ok) is None
