"""Copy requests on the station: one large file streams at a time, small clips go beside it."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from detector.cards import Volume
from detector.protocol import CopyRequest
from detector.requests import LARGE_FILE, Card, CopyRequests
from detector.settings import DetectorSettings

MB = 1024 * 1024


class Recorder:
    """A view that records the order of starts and finishes (no clock involved)."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []

    def card(self, card_id: str, label: str, present: bool) -> None: ...
    def queued(self, request_id: str, card_id: str, name: str, size: int) -> None: ...
    def advanced(self, request_id: str, done: int) -> None: ...
    def close(self) -> None: ...

    def started(self, request_id: str) -> None:
        self.events.append(("start", request_id))

    def finished(self, request_id: str, ok: bool, detail: str) -> None:
        self.events.append(("done", request_id))


async def test_large_files_never_copy_side_by_side_but_small_ones_do(tmp_path: Path) -> None:
    card_root, share = tmp_path / "card", tmp_path / "share"
    share.mkdir()
    sizes = {"big1": LARGE_FILE, "big2": LARGE_FILE + 1, "qr": 1 * MB}
    for name, size in sizes.items():
        path = card_root / "DCIM" / f"{name}.MP4"
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as fh:
            fh.truncate(size)
        os.utime(path, (1_700_000_000, 1_700_000_000))
    settings = DetectorSettings("ws://127.0.0.1:1/ws/detector", "t", share, parallel_copies=2)
    view = Recorder()
    sent: list[str] = []

    async def send(message: object) -> None:
        sent.append(getattr(message, "request_id", ""))

    cards = {"c1": Card(Volume("c1", card_root), [])}
    requests = CopyRequests(settings, view, cards, send, lambda: None)  # type: ignore[arg-type]
    for i, name in enumerate(["big1", "big2", "qr"]):
        requests.enqueue(
            CopyRequest(
                request_id=name,
                card_id="c1",
                path=f"DCIM/{name}.MP4",
                size=sizes[name],
                mtime=1_700_000_000.0,
                destination=f"x/{name}.MP4",
                priority=10 + i,
            )
        )
    workers = [asyncio.create_task(requests.worker()) for _ in range(2)]
    try:
        async with asyncio.timeout(120):
            while len([e for e in view.events if e[0] == "done"]) < 3:
                await asyncio.sleep(0.05)
    finally:
        for w in workers:
            w.cancel()
    order = view.events
    # the second large file starts only after the first finished
    assert order.index(("done", "big1")) < order.index(("start", "big2"))
    # the small clip was copied beside the first large one
    assert order.index(("start", "qr")) < order.index(("done", "big1"))
    for name in sizes:
        assert (share / "x" / f"{name}.MP4").stat().st_size == sizes[name]
