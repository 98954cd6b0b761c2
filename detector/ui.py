"""What the station operator sees: progress bars on a terminal, plain log lines otherwise.

:class:`RichView` shows one bar per card (all bytes requested from it) and one per file being
copied, each with bytes, MB/s and ETA. When stderr is not a terminal (a service, a log file)
:class:`PlainView` writes one log line per state change instead. Both are driven by the client
from the event loop; thread-side progress is funnelled there first.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

logger = logging.getLogger(__name__)


class CopyView(Protocol):
    def card(self, card_id: str, label: str, present: bool) -> None: ...
    def queued(self, request_id: str, card_id: str, name: str, size: int) -> None: ...
    def started(self, request_id: str) -> None: ...
    def advanced(self, request_id: str, done: int) -> None: ...
    def finished(self, request_id: str, ok: bool, detail: str) -> None: ...
    def notice(self, card_id: str, text: str, warning: bool) -> None: ...
    def close(self) -> None: ...


@dataclass
class _Job:
    card_id: str
    name: str
    size: int
    done: int = 0


class PlainView:
    """One log line per state change."""

    def __init__(self) -> None:
        self.jobs: dict[str, _Job] = {}

    def card(self, card_id: str, label: str, present: bool) -> None:
        logger.info("card %s (%s) %s", card_id, label, "inserted" if present else "removed")

    def queued(self, request_id: str, card_id: str, name: str, size: int) -> None:
        self.jobs[request_id] = _Job(card_id, name, size)

    def started(self, request_id: str) -> None:
        job = self.jobs.get(request_id)
        if job:
            logger.info("copying %s from %s (%.1f MB)", job.name, job.card_id, job.size / 1e6)

    def advanced(self, request_id: str, done: int) -> None:
        if request_id in self.jobs:
            self.jobs[request_id].done = done

    def finished(self, request_id: str, ok: bool, detail: str) -> None:
        job = self.jobs.pop(request_id, None)
        name = job.name if job else request_id
        if ok:
            logger.info("done %s: %s", name, detail)
        else:
            logger.warning("FAILED %s: %s", name, detail)

    def notice(self, card_id: str, text: str, warning: bool) -> None:
        """A card's state as the hub sees it ("safe to remove", "card nearly full")."""
        logger.log(logging.WARNING if warning else logging.INFO, "%s", text)

    def close(self) -> None:
        self.jobs.clear()


class RichView:
    """Progress bars per card and per file (rich)."""

    def __init__(self) -> None:
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        self.progress: Progress = Progress(
            TextColumn("{task.description}", justify="left"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            transient=False,
        )
        self.progress.start()
        self.cards: dict[str, TaskID] = {}
        self.files: dict[str, TaskID] = {}
        self.jobs: dict[str, _Job] = {}

    def card(self, card_id: str, label: str, present: bool) -> None:
        self.progress.console.log(f"card {label or card_id} {'inserted' if present else 'removed'}")
        if not present and card_id in self.cards:
            self.progress.remove_task(self.cards.pop(card_id))

    def _card_task(self, card_id: str) -> TaskID:
        if card_id not in self.cards:
            self.cards[card_id] = self.progress.add_task(f"card {card_id}", total=0)
        return self.cards[card_id]

    def queued(self, request_id: str, card_id: str, name: str, size: int) -> None:
        self.jobs[request_id] = _Job(card_id, name, size)
        task = self._card_task(card_id)
        total = self.progress.tasks[self._index(task)].total or 0
        self.progress.update(task, total=total + size)

    def _index(self, task: TaskID) -> int:
        return next(i for i, t in enumerate(self.progress.tasks) if t.id == task)

    def started(self, request_id: str) -> None:
        job = self.jobs.get(request_id)
        if job:
            self.files[request_id] = self.progress.add_task(f"  {job.name}", total=job.size)

    def advanced(self, request_id: str, done: int) -> None:
        job = self.jobs.get(request_id)
        if job is None:
            return
        delta, job.done = done - job.done, done
        if request_id in self.files:
            self.progress.update(self.files[request_id], completed=done)
        self.progress.advance(self._card_task(job.card_id), delta)

    def finished(self, request_id: str, ok: bool, detail: str) -> None:
        job = self.jobs.pop(request_id, None)
        task = self.files.pop(request_id, None)
        if task is not None:
            self.progress.remove_task(task)
        if job is not None:
            # A skipped or failed file still counts as handled for the card's bar.
            self.progress.advance(self._card_task(job.card_id), job.size - job.done)
        mark = "[green]ok[/]" if ok else "[red]FAILED[/]"
        self.progress.console.log(f"{mark} {job.name if job else request_id}: {detail}")

    def notice(self, card_id: str, text: str, warning: bool) -> None:
        from rich.markup import escape

        logger.log(logging.WARNING if warning else logging.INFO, "%s", text)
        style = "yellow" if warning else "green"
        self.progress.console.log(f"[{style}]{escape(text)}[/]")

    def close(self) -> None:
        self.progress.stop()


def make_view(interactive: bool | None = None) -> CopyView:
    """Bars on a terminal, log lines otherwise (or when rich is missing)."""
    if interactive is None:
        interactive = sys.stderr.isatty()
    if interactive:
        try:
            return RichView()
        except ImportError:
            logger.warning("rich is not installed; showing plain log lines")
    return PlainView()
