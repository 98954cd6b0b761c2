from __future__ import annotations

import json
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.qr.payload import (
    Booking,
    NotABooking,
    PayloadSettings,
    parse_booking,
    try_parse_booking,
)


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (
            '{"booking": "BK-12345", "name": "Jane Doe", "product": "video"}',
            Booking("BK-12345", "Jane Doe", "video"),
        ),
        ('{"booking": {"id": "BK-7", "name": "Al"}}', Booking("BK-7", "Al", None)),
        ('{"order_id": 123456, "pax": "Zoë Ñúñez"}', Booking("123456", "Zoë Ñúñez", None)),
        (
            "https://book.example/t?booking=BK-123&name=Jane+Doe&package=both",
            Booking("BK-123", "Jane Doe", "both"),
        ),
        ("https://book.example/ticket/BK-98765", Booking("BK-98765", None, None)),
        ("https://book.example/t#ref=AB123&name=X%20Y", Booking("AB123", "X Y", None)),
        ("booking=BK-1; name=Jane Doe; product=photos", Booking("BK-1", "Jane Doe", "photos")),
        ("bid=TX555,passenger=Li Wei", Booking("TX555", "Li Wei", None)),
        (
            "Booking: BK-42\nPassenger:  Ana   Maria \nProduct: video",
            Booking("BK-42", "Ana Maria", "video"),
        ),
        ("Booking-ID=R-0001&Name=Tom", Booking("R-0001", "Tom", None)),
        ("BK-12345", Booking("BK-12345", None, None)),
        ("  SKY123456  ", Booking("SKY123456", None, None)),
    ],
)
def test_parses_formats_booking_systems_print(payload: str, expected: Booking) -> None:
    assert parse_booking(payload) == expected


@pytest.mark.parametrize(
    ("payload", "reason_part"),
    [
        ("", "empty"),
        ("hello world", "neither"),
        ("bk-123", "neither"),
        ('{"booking": "../../etc/passwd"}', "ASCII letters"),
        ('{"booking": "BK/123"}', "ASCII letters"),
        ('{"booking": "BK\\\\123"}', "ASCII letters"),
        ('{"booking": "BK-1\\u0000"}', "ASCII letters"),
        ('{"booking": "BK 1"}', "ASCII letters"),
        ('{"booking": "BK-1", "name": "Eve\\u0007"}', "control character"),
        ('{"booking": "BK-1", "name": "abc\\u202etxt.exe"}', "control character"),
        ('{"booking": "B"}', "shorter"),
        ('{"booking": "' + "A" * 41 + '"}', "longer than 40"),
        ('{"name": "Jane"}', "no booking id"),
        ('{"id": "BK-123"}', "no booking id"),
        ("[1, 2]", "neither"),
        ('{"booking": ', "invalid JSON"),
        ('["BK-1"]', "neither"),
        ("ftp://x/?booking=BK-1", "not http"),
        ("javascript://x?booking=BK-1", "not http"),
        ("BK-123\x00", "control character"),
        ("BK-123" + "0" * 3000, "longer than 2048"),
        ('{"booking": true}', "no booking id"),
        ("[" * 5000, "longer"),
    ],
)
def test_refuses_what_is_not_a_booking_with_a_reason(payload: str, reason_part: str) -> None:
    with pytest.raises(NotABooking) as info:
        parse_booking(payload)
    assert reason_part in info.value.reason
    assert info.value.retryable is False


def test_deeply_nested_json_is_refused_not_crashing() -> None:
    payload = "[" * 1500 + "]" * 1500
    result = try_parse_booking(payload, PayloadSettings(max_payload_chars=4000))
    assert isinstance(result, NotABooking)


def test_unicode_names_are_kept_and_normalised() -> None:
    decomposed = "Zoe\u0308"  # e + combining diaeresis -> NFC ë
    for name, expected in [
        (decomposed, "Zoë"),
        ("محمد   علي", "محمد علي"),
        ("Ana 🪂 👩‍👩‍👧", "Ana 🪂 👩‍👩‍👧"),
        ("  Jean-Luc\tPicard ", "Jean-Luc Picard"),
    ]:
        if "\t" in name:
            with pytest.raises(NotABooking):
                parse_booking(json.dumps({"booking": "BK-1", "name": name}))
            continue
        booking = parse_booking(json.dumps({"booking": "BK-1", "name": name}))
        assert booking.passenger == expected


def test_long_passenger_name_is_truncated_not_refused() -> None:
    booking = parse_booking(json.dumps({"booking": "BK-1", "name": "x" * 500}))
    assert booking.passenger == "x" * 120


def test_field_names_and_bare_pattern_come_from_settings() -> None:
    cfg = PayloadSettings(booking_id_keys=("voucher",), bare_id_pattern=r"\d{8}")
    assert parse_booking("voucher=V-123", cfg).booking_id == "V-123"
    assert parse_booking("12345678", cfg).booking_id == "12345678"
    assert isinstance(try_parse_booking("booking=BK-1", cfg), NotABooking)
    assert isinstance(try_parse_booking("BK-123", cfg), NotABooking)


_SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{2,39}")


def _assert_safe(result: Booking | NotABooking) -> None:
    if isinstance(result, NotABooking):
        assert result.reason
        return
    assert _SAFE_ID.fullmatch(result.booking_id)
    for text in (result.passenger, result.product):
        if text is not None:
            assert not any(ord(c) < 32 or ord(c) == 127 for c in text)
            assert "\u202e" not in text
            assert text == text.strip()


@settings(max_examples=400, deadline=None)
@given(st.text(max_size=300))
def test_arbitrary_text_never_crashes_nor_yields_unsafe_ids(text: str) -> None:
    _assert_safe(try_parse_booking(text))


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["booking", "name", "product", "ref", "pax", "x"]),
        st.one_of(st.text(max_size=60), st.integers(), st.none(), st.booleans()),
    ),
    st.sampled_from(["json", "url", "kv"]),
)
def test_structured_hostile_payloads_never_yield_unsafe_ids(
    fields: dict[str, object], shape: str
) -> None:
    from urllib.parse import urlencode

    if shape == "json":
        payload = json.dumps(fields)
    elif shape == "url":
        payload = "https://b.example/t?" + urlencode({k: str(v) for k, v in fields.items()})
    else:
        payload = ";".join(f"{k}={v}" for k, v in fields.items())
    _assert_safe(try_parse_booking(payload))
