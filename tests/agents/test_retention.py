"""The retention rules (agents/retention.py), pure: what is due to be purged, and when."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from agents.render.identity import output_name
from agents.retention import (
    REDACTED,
    REDACTED_SLUG,
    PurgeReason,
    PurgeScope,
    SessionTimes,
    due_purges,
    name_slug,
    needles,
    scope_of,
)

T0 = datetime(2026, 6, 1, 10, 0, tzinfo=UTC)
DAY = timedelta(days=1)


def jump(booking: str, created: datetime, delivered: datetime | None, **kw: object) -> SessionTimes:
    return SessionTimes(booking, created, delivered, **kw)  # type: ignore[arg-type]


def due(sessions: list[SessionTimes], now: datetime, media: int = 30, personal: int = 90):  # type: ignore[no-untyped-def]
    return [
        (d.booking_id, d.reason)
        for d in due_purges(sessions, now, media_days=media, personal_days=personal)
    ]


def test_media_goes_30_days_after_delivery_not_before() -> None:
    s = [jump("B1", T0, T0 + DAY)]
    assert due(s, T0 + 30 * DAY) == []
    assert due(s, T0 + 31 * DAY - timedelta(seconds=1)) == []
    assert due(s, T0 + 31 * DAY) == [("B1", PurgeReason.RETENTION_MEDIA)]


def test_an_undelivered_jump_keeps_the_bookings_media() -> None:
    s = [jump("B1", T0, T0 + DAY), jump("B1", T0 + DAY, None)]
    assert due(s, T0 + 60 * DAY) == []
    # the latest delivery counts: the second jump delivered later keeps both longer
    s = [jump("B1", T0, T0 + DAY), jump("B1", T0 + DAY, T0 + 10 * DAY)]
    assert due(s, T0 + 35 * DAY) == []
    assert due(s, T0 + 40 * DAY) == [("B1", PurgeReason.RETENTION_MEDIA)]


def test_personal_data_goes_90_days_after_the_newest_jump_and_includes_media() -> None:
    s = [jump("B1", T0, None), jump("B1", T0 + 5 * DAY, T0 + 6 * DAY)]
    assert due(s, T0 + 94 * DAY, media=0) == []
    assert due(s, T0 + 95 * DAY, media=0) == [("B1", PurgeReason.RETENTION_PERSONAL)]
    # both due: the personal purge (which deletes the media too) wins
    assert due(s, T0 + 95 * DAY) == [("B1", PurgeReason.RETENTION_PERSONAL)]
    assert scope_of(PurgeReason.RETENTION_PERSONAL) is PurgeScope.ALL
    assert scope_of(PurgeReason.REQUEST) is PurgeScope.ALL
    assert scope_of(PurgeReason.RETENTION_MEDIA) is PurgeScope.MEDIA


def test_what_was_purged_is_not_due_again() -> None:
    media_gone = [jump("B1", T0, T0 + DAY, media_purged_at=T0 + 31 * DAY)]
    assert due(media_gone, T0 + 60 * DAY) == []
    assert due(media_gone, T0 + 90 * DAY) == [("B1", PurgeReason.RETENTION_PERSONAL)]
    all_gone = [jump("B1", T0, T0 + DAY, media_purged_at=T0, personal_purged_at=T0)]
    assert due(all_gone, T0 + 900 * DAY) == []


def test_zero_days_is_never() -> None:
    s = [jump("B1", T0, T0 + DAY)]
    assert due(s, T0 + 3650 * DAY, media=0, personal=0) == []
    assert due(s, T0 + 3650 * DAY, media=-5, personal=0) == []
    assert due(s, T0 + 3650 * DAY, media=0, personal=90) == [("B1", PurgeReason.RETENTION_PERSONAL)]


def test_bookings_are_decided_apart_longest_due_first() -> None:
    s = [
        jump("NEW", T0 + 20 * DAY, T0 + 20 * DAY),
        jump("OLD", T0, T0),
        jump("KEPT", T0 + 50 * DAY, T0 + 50 * DAY),
    ]
    assert due(s, T0 + 60 * DAY) == [
        ("OLD", PurgeReason.RETENTION_MEDIA),
        ("NEW", PurgeReason.RETENTION_MEDIA),
    ]


def test_needles_cover_the_name_its_file_name_form_and_the_email() -> None:
    found = dict(needles(["  Ana  María O'Neil "], ["ana@example.org"]))
    assert found["Ana  María O'Neil"] == REDACTED
    assert found["Ana María O'Neil"] == REDACTED
    assert found["Ana-María-O-Neil"] == REDACTED_SLUG
    assert found["ana@example.org"] == REDACTED
    # the slug is the one in the output name
    name = output_name("B-7", "Ana María O'Neil", T0, "card:1")
    assert name_slug("Ana María O'Neil") in name
    # longest first (a full name is replaced before a part of it could be)
    lengths = [len(n) for n, _ in needles(["Al Bo", "Alexandra Bo"], [])]
    assert lengths == sorted(lengths, reverse=True)
    # a one-letter name is not a needle (it would rewrite every word)
    assert needles(["X"], []) == []
