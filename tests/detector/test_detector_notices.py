"""What the detector's screen says about a card (pure)."""

from __future__ import annotations

from detector.notices import CardState, status_lines
from detector.protocol import CardStatus


def status(**kw: object) -> CardStatus:
    base: dict[str, object] = dict(
        card_id="CARD-1", outstanding=0, failed=0, safe_to_remove=True, nearly_full=False
    )
    base.update(kw)
    return CardStatus(**base)  # type: ignore[arg-type]


def test_safe_to_remove() -> None:
    assert status_lines("CARD-1", CardState(True, False, 50.0), status()) == [
        ("card CARD-1: safe to remove", False)
    ]


def test_not_yet_safe_names_what_is_left() -> None:
    s = status(outstanding=2, failed=1, safe_to_remove=False)
    [(text, warn)] = status_lines("CARD-1", CardState(False, False, None), s)
    assert text == "card CARD-1: not safe to remove yet (2 to import, 1 failed)" and warn


def test_skipped_files_keep_a_card_from_being_safe_and_say_why() -> None:
    s = status(safe_to_remove=False, skipped=1)
    [(text, warn)] = status_lines("CARD-1", CardState(False, False, None), s)
    assert "1 file(s) could not be listed and stay only on the card" in text and warn


def test_nearly_full_warns_with_the_free_share() -> None:
    lines = status_lines("CARD-1", CardState(True, True, 4.0), status(nearly_full=True))
    assert ("card CARD-1: card nearly full (4% free)", True) in lines
