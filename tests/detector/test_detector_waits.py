"""Copy requests that wait instead of failing: for a card not scanned yet, for space on a share
that is full (a real size-limited tmpfs), and the answers they end with."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import small_disk

from detector.cards import Volume
from detector.protocol import CopyRequest, CopyResult
from detector.requests import Card, CopyRequests, space_retry_delay
from detector.settings import DetectorSettings

MB = 1024 * 1024


class Quiet:
    def card(self, card_id: str, label: str, present: bool) -> None: ...
    def queued(self, request_id: str, card_id: str, name: str, size: int) -> None: ...
    def advanced(self, request_id: str, done: int) -> None: ...
    def started(self, request_id: str) -> None: ...
    def finished(self, request_id: str, ok: bool, detail: str) -> None: ...
    def close(self) -> None: ...


def _file(root: Path, rel: str, size: int) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(os.urandom(size))


def _request(rid: str, card_id: str, rel: str, size: int) -> CopyRequest:
    return CopyRequest(
        request_id=rid,
        card_id=card_id,
        path=rel,
        size=size,
        mtime=0.0,
        destination=f"cards/{card_id}/{rid}.MP4",
        priority=0,
    )


class Harness:
    def __init__(self, settings: DetectorSettings, cards: dict[str, Card]) -> None:
        self.results: dict[str, CopyResult] = {}
        self.cards = cards

        async def send(message: object) -> bool:
            if isinstance(message, CopyResult):
                self.results[message.request_id] = message
            return True

        self.copies = CopyRequests(settings, Quiet(), cards, send, lambda: None)  # type: ignore[arg-type]
        self.copies.station = "hangar-1"
        self.workers: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self.workers = [asyncio.create_task(self.copies.worker()) for _ in range(2)]

    async def answered(self, rid: str, timeout: float = 60) -> CopyResult:
        async with asyncio.timeout(timeout):
            while rid not in self.results:
                await asyncio.sleep(0.02)
        return self.results[rid]

    async def stop(self) -> None:
        for w in self.workers:
            w.cancel()
        await asyncio.gather(*self.workers, return_exceptions=True)


def _settings(share: Path, **kw: object) -> DetectorSettings:
    return DetectorSettings("ws://127.0.0.1:1/ws/detector", "t", share, **kw)  # type: ignore[arg-type]


def test_space_retry_backs_off_and_is_capped() -> None:
    assert [space_retry_delay(a, 1.0, 30.0) for a in range(7)] == [1, 2, 4, 8, 16, 30, 30]
    assert space_retry_delay(10_000, 0.5, 5.0) == 5.0


async def test_a_request_before_the_scan_waits_for_its_card(tmp_path: Path) -> None:
    card_root, share = tmp_path / "card", tmp_path / "share"
    share.mkdir()
    _file(card_root, "DCIM/a.MP4", 1000)
    cards: dict[str, Card] = {}
    h = Harness(_settings(share, card_wait_seconds=60), cards)
    h.start()
    try:
        h.copies.enqueue(_request("f1", "c1", "DCIM/a.MP4", 1000))
        h.copies.enqueue(_request("f1", "c1", "DCIM/a.MP4", 1000))  # re-sent: ignored
        await asyncio.sleep(0.3)
        assert h.results == {} and h.copies.busy()
        cards["c1"] = Card(Volume("c1", card_root), [])
        h.copies.card_present("c1")
        result = await h.answered("f1")
    finally:
        await h.stop()
    assert result.status == "copied", result
    assert (share / "cards/c1/f1.MP4").stat().st_size == 1000
    assert len(h.results) == 1


async def test_a_card_that_never_comes_fails_after_the_wait(tmp_path: Path) -> None:
    share = tmp_path / "share"
    share.mkdir()
    h = Harness(_settings(share, card_wait_seconds=0.3), {})
    h.start()
    try:
        h.copies.enqueue(_request("f1", "gone", "DCIM/a.MP4", 1000))
        result = await h.answered("f1")
    finally:
        await h.stop()
    assert (result.status, result.reason, result.failure) == (
        "failed",
        "card not present",
        "source",
    )


async def test_a_card_seen_removed_fails_at_once(tmp_path: Path) -> None:
    share = tmp_path / "share"
    share.mkdir()
    h = Harness(_settings(share, card_wait_seconds=600), {})
    h.copies.card_removed("c1")
    h.start()
    try:
        h.copies.enqueue(_request("f1", "c1", "DCIM/a.MP4", 1000))
        result = await h.answered("f1", timeout=10)
    finally:
        await h.stop()
    assert result.reason == "card not present"


@pytest.fixture
def tiny_share(tmp_path: Path) -> Iterator[Path]:
    """A real 4 MiB file system."""
    with small_disk(tmp_path / "tiny", "4m") as mnt:
        yield mnt


def _partials(share: Path) -> list[Path]:
    return [p for p in share.rglob("*") if ".skyreel-partial" in p.name]


async def test_a_full_share_waits_and_copies_once_space_returns(
    tmp_path: Path, tiny_share: Path
) -> None:
    card_root = tmp_path / "card"
    _file(card_root, "DCIM/big.MP4", 2 * MB)
    filler = tiny_share / "filler"
    filler.write_bytes(b"\0" * (3 * MB))  # 1 MiB left: the 2 MiB clip does not fit
    cards = {"c1": Card(Volume("c1", card_root), [])}
    h = Harness(_settings(tiny_share, space_retry_min=0.05, space_retry_max=0.2), cards)
    h.start()
    try:
        h.copies.enqueue(_request("f1", "c1", "DCIM/big.MP4", 2 * MB))
        async with asyncio.timeout(30):
            while "f1" not in h.copies.space_waits or h.copies.space_waits["f1"].attempts < 3:
                await asyncio.sleep(0.02)
        assert h.results == {}, "a full share is not answered as a failure while it waits"
        assert _partials(tiny_share) == []
        assert h.copies.running == 0, "a copy waiting for space holds no worker"
        filler.unlink()
        result = await h.answered("f1")
    finally:
        await h.stop()
    assert result.status == "copied", result
    assert (tiny_share / "cards/c1/f1.MP4").stat().st_size == 2 * MB
    assert _partials(tiny_share) == [] and "f1" not in h.copies.space_waits


async def test_a_share_that_stays_full_is_reported_as_no_space(
    tmp_path: Path, tiny_share: Path
) -> None:
    card_root = tmp_path / "card"
    _file(card_root, "DCIM/big.MP4", 8 * MB)  # never fits on 4 MiB
    cards = {"c1": Card(Volume("c1", card_root), [])}
    settings = _settings(
        tiny_share, space_retry_min=0.05, space_retry_max=0.1, space_wait_seconds=0.5
    )
    h = Harness(settings, cards)
    h.start()
    try:
        h.copies.enqueue(_request("f1", "c1", "DCIM/big.MP4", 8 * MB))
        result = await h.answered("f1")
    finally:
        await h.stop()
    assert (result.status, result.failure) == ("failed", "no_space")
    assert result.reason.startswith("destination full")
    assert _partials(tiny_share) == [] and not (tiny_share / "cards/c1/f1.MP4").exists()


async def test_an_older_hub_gets_results_without_the_failure_kind(tmp_path: Path) -> None:
    share = tmp_path / "share"
    share.mkdir()
    h = Harness(_settings(share, card_wait_seconds=0), {})
    h.copies.plain_results = True
    h.copies.fail_soon("f1", "card not present", "source")
    result = await h.answered("f1", timeout=10)
    assert result.failure is None and result.reason == "card not present"
