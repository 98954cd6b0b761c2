"""The key=value rule (agents/qr/payload.py's docstring) and the formats booking systems print."""

from __future__ import annotations

import json
import logging

import pytest

from agents.qr.payload import Booking, NotABooking, parse_booking


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        # JSON, as most booking systems print it
        ('{"booking_id": "BK1", "passenger": "Ana Müller"}', Booking("BK1", "Ana Müller")),
        ('{"booking": "BK1", "name": "Smith, John & Co"}', Booking("BK1", "Smith, John & Co")),
        # a URL with a query: '+' is a space there, %-escapes are UTF-8
        (
            "https://book.example.com/t?b=BK1&booking=BK1&n=x&name=Ana%20M%C3%BCller",
            Booking("BK1", "Ana Müller"),
        ),
        (
            "https://book.example.com/t?booking=BK1&name=Jos%C3%A9+Garc%C3%ADa",
            Booking("BK1", "José García"),
        ),
        (
            "https://book.example.com/t?booking=BK1&name=Tom%20%26%20Jerry",
            Booking("BK1", "Tom & Jerry"),
        ),
        # colon forms
        ("BOOKING:BK1;NAME:Smith, John", Booking("BK1", "Smith, John")),
        ("BOOKING: BK1\nNAME: Ana Müller\nPRODUCT: video", Booking("BK1", "Ana Müller", "video")),
        ("Booking: BK1 | Name: Tom & Jerry", Booking("BK1", "Tom & Jerry")),
        # key=value with ';', '&', newlines, '|'
        ("name=Smith, John;booking=BK1", Booking("BK1", "Smith, John")),
        ("name=Tom & Jerry&booking=BK1", Booking("BK1", "Tom & Jerry")),
        ("booking=BK1&name=Tom & Jerry", Booking("BK1", "Tom & Jerry")),
        ("booking=BK1&name=Smith, John&product=video", Booking("BK1", "Smith, John", "video")),
        ("booking=BK1\r\nname=O'Brien, Seán\r\n", Booking("BK1", "O'Brien, Seán")),
        ("booking=BK1|name=Ana|product=photos", Booking("BK1", "Ana", "photos")),
        # ',' separates only before a known key and '='
        ("bid=TX555,passenger=Li Wei", Booking("TX555", "Li Wei")),
        ("booking=BK1, name=Smith, John, product=both", Booking("BK1", "Smith, John", "both")),
        ("name=Smith, Jr=yes;booking=BK1", Booking("BK1", "Smith, Jr=yes")),
        # '&' before any key-looking word directly followed by '=' separates
        ("booking=BK1&seat=12&name=Ana", Booking("BK1", "Ana")),
        ("name=A & B=C;booking=BK1", Booking("BK1", "A & B=C")),
        # UTF-8 as is, and percent-encoded
        ("booking=BK1;name=Zoë Ñúñez", Booking("BK1", "Zoë Ñúñez")),
        ("booking=BK1;name=Ana%20M%C3%BCller", Booking("BK1", "Ana Müller")),
        ("booking=BK1;name=%E5%BC%A0%E4%BC%9F", Booking("BK1", "张伟")),
        ("booking=BK1;name=Smith%2C%20John%20%26%20Co", Booking("BK1", "Smith, John & Co")),
        ("booking=BK%2D1;name=Ana", Booking("BK-1", "Ana")),
        # '+' is a plus outside URL queries
        ("booking=BK1;name=Ana+Bob", Booking("BK1", "Ana+Bob")),
        # quotes around a value are stripped
        ('booking="BK1";name="Smith, John"', Booking("BK1", "Smith, John")),
        ("booking='BK1'; name='Ana'", Booking("BK1", "Ana")),
        ("booking=BK1;name=“Ana”", Booking("BK1", "Ana")),
    ],
)
def test_formats_booking_systems_print(payload: str, expected: Booking) -> None:
    assert parse_booking(payload) == expected


def test_invalid_percent_escapes_are_kept_literally_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="agents.qr.payload"):
        got = parse_booking("booking=BK1;name=100% Ana")
    assert got.passenger == "100% Ana"
    assert got.notes and "name" in got.notes[0]
    assert any("BK1" in r.getMessage() and "%" in r.getMessage() for r in caplog.records)

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="agents.qr.payload"):
        got = parse_booking("booking=BK1;name=Ana%FF%20B")
    assert got.passenger == "Ana%FF B"  # the valid escape decoded, the invalid one kept
    assert got.notes == ("name: %FF is not UTF-8 text; kept as it was",)
    assert caplog.records


def test_clean_payloads_have_no_notes(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="agents.qr.payload"):
        got = parse_booking("booking=BK1;name=Ana%20B")
    assert got.notes == () and not caplog.records


def test_percent_decoding_cannot_smuggle_control_characters_or_bad_ids() -> None:
    with pytest.raises(NotABooking, match="control character"):
        parse_booking("booking=BK1;name=Eve%0Aroot")
    with pytest.raises(NotABooking, match="ASCII letters"):
        parse_booking("booking=BK%2F..%2F1;name=Ana")
    with pytest.raises(NotABooking, match="control character"):
        parse_booking("booking=BK1;name=abc%E2%80%AEtxt")  # U+202E, a bidi override


def test_an_encoded_separator_stays_inside_the_value() -> None:
    got = parse_booking("booking=BK1;name=A%3B B%7C C")
    assert got.passenger == "A; B| C"


def test_json_values_are_not_percent_decoded() -> None:
    # JSON carries its own escapes: a '%' in it is the passenger's
    got = parse_booking(json.dumps({"booking": "BK1", "name": "Ana%20B"}))
    assert got.passenger == "Ana%20B"
