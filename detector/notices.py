"""What the hub tells the station about its cards, turned into lines the operator can act on.

The hub sends ``card_status`` after a listing is recorded and after each copy result it
accepted (an older hub never does: then nothing is shown), and ``files_refused`` when it did
not accept some entries of a list. :class:`CardNotices` shows a card's state when it changes
(not at every frame): "safe to remove" once everything listed is imported, "card nearly full
(N% free)" when the camera is about to run out of space.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from detector.protocol import CardStatus, FilesRefused, SkippedFile
from detector.requests import Card
from detector.ui import CopyView

logger = logging.getLogger(__name__)

#: Skipped or refused names logged one by one per card listing; the rest are counted.
LOGGED_NAMES = 20


@dataclass(frozen=True)
class CardState:
    safe: bool
    nearly_full: bool
    free_percent: float | None


def free_percent(free: int | None, total: int | None) -> float | None:
    if free is None or not total:
        return None
    return 100.0 * free / total


def state_of(status: CardStatus, card: Card | None) -> CardState:
    """The card's state from the hub's status, with this station's own measurement of its free
    space where the hub has none (pure)."""
    free, total = status.free_bytes, status.capacity_bytes
    if (free is None or not total) and card is not None:
        free, total = card.free_bytes, card.capacity_bytes
    return CardState(status.safe_to_remove, status.nearly_full, free_percent(free, total))


def status_lines(card_id: str, state: CardState, status: CardStatus) -> list[tuple[str, bool]]:
    """(text, is_warning) to show for a card's new state (pure)."""
    lines: list[tuple[str, bool]] = []
    if state.safe:
        lines.append((f"card {card_id}: safe to remove", False))
    elif not status.outstanding and not status.failed and status.skipped:
        lines.append(
            (
                f"card {card_id}: everything listed is imported, but {status.skipped} file(s) "
                "could not be listed and stay only on the card — copy them by hand before "
                "formatting it",
                True,
            )
        )
    else:
        lines.append(
            (
                f"card {card_id}: not safe to remove yet "
                f"({status.outstanding} to import, {status.failed} failed)",
                status.failed > 0,
            )
        )
    if state.nearly_full:
        pct = "" if state.free_percent is None else f" ({state.free_percent:.0f}% free)"
        lines.append((f"card {card_id}: card nearly full{pct}", True))
    return lines


def log_skipped(card_id: str, skipped: Sequence[SkippedFile], what: str) -> None:
    """One line per skipped name (the first LOGGED_NAMES of them), then a count."""
    for entry in skipped[:LOGGED_NAMES]:
        logger.warning("card %s: %s %s: %s", card_id, what, entry.path, entry.reason)
    if len(skipped) > LOGGED_NAMES:
        logger.warning("card %s: %d more files %s", card_id, len(skipped) - LOGGED_NAMES, what)


class CardNotices:
    """The last state shown per card; shows a new one only when it changes."""

    def __init__(self, view: CopyView, cards: Mapping[str, Card]) -> None:
        self.view = view
        self.cards = cards
        self.shown: dict[str, CardState] = {}

    def on_status(self, status: CardStatus) -> None:
        card = self.cards.get(status.card_id)
        state = state_of(status, card)
        before = self.shown.get(status.card_id)
        self.shown[status.card_id] = state
        if before is not None and (before.safe, before.nearly_full) == (
            state.safe,
            state.nearly_full,
        ):
            return
        for text, warning in status_lines(status.card_id, state, status):
            self.view.notice(status.card_id, text, warning)

    def on_refused(self, msg: FilesRefused) -> None:
        log_skipped(msg.card_id, msg.files, "refused by the hub:")
        if msg.more:
            logger.warning("card %s: %d more files refused by the hub", msg.card_id, msg.more)

    def forget(self, card_id: str) -> None:
        self.shown.pop(card_id, None)
