"""The WebSocket client over a real socket, against a tiny in-test hub speaking the protocol.

(The end-to-end test against the real hub, streams/hub/server.py, lives with the hub's tests.)
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from websockets.asyncio.server import Server, ServerConnection, serve

from detector.cards import WatchDirVolumes
from detector.client import EXIT_AUTH_REFUSED, backoff_delay, run_detector
from detector.protocol import (
    CardInserted,
    CardStatus,
    CopyProgress,
    CopyRequest,
    CopyResult,
    FileList,
    Welcome,
    dump,
    parse_detector_message,
)
from detector.settings import DetectorSettings

TOKEN = "s3cret-token"


@dataclass
class TinyHub:
    """Requests every video not imported yet (small files first), records everything."""

    imported: set[str] = field(default_factory=set)
    messages: list[object] = field(default_factory=list)
    results: dict[str, CopyResult] = field(default_factory=dict)
    extra_requests: list[str] = field(default_factory=list)  # raw frames sent after a list
    close_on_progress: bool = False
    send_status: bool = False  # as the real hub: card_status after a list and each result
    pending: dict[str, set[str]] = field(default_factory=dict)  # card id -> request ids
    connections: int = 0
    got_result: asyncio.Event = field(default_factory=asyncio.Event)
    progressed: asyncio.Event = field(default_factory=asyncio.Event)

    async def handler(self, ws: ServerConnection) -> None:
        if ws.request is None or ws.request.headers.get("Authorization") != f"Bearer {TOKEN}":
            await ws.close(1008, "unknown detector token")
            return
        self.connections += 1
        await ws.send(dump(Welcome(detector_id="station-1")))
        async for raw in ws:
            msg = parse_detector_message(raw)
            self.messages.append(msg)
            if isinstance(msg, FileList):
                await self._request_new(ws, msg)
            elif isinstance(msg, CopyProgress):
                if self.close_on_progress and not self.progressed.is_set():
                    self.progressed.set()
                    return  # the hub goes away mid-copy
            elif isinstance(msg, CopyResult):
                self.results[msg.request_id] = msg
                if msg.status == "copied":
                    self.imported.add(msg.request_id)
                self.got_result.set()
                for card_id, ids in self.pending.items():
                    if msg.request_id in ids:
                        ids.discard(msg.request_id)
                        await self._status(ws, card_id)

    async def _status(self, ws: ServerConnection, card_id: str) -> None:
        if not self.send_status:
            return
        left = len(self.pending.get(card_id, ()))
        status = CardStatus(
            card_id=card_id, outstanding=left, failed=0, safe_to_remove=not left, nearly_full=True
        )
        await ws.send(dump(status))

    async def _request_new(self, ws: ServerConnection, msg: FileList) -> None:
        new = [
            f
            for f in msg.files
            if f.kind == "video" and f.path.replace("/", ".") not in self.imported
        ]
        self.pending[msg.card_id] = {f.path.replace("/", ".") for f in new}
        await self._status(ws, msg.card_id)
        for f in sorted(new, key=lambda f: -f.size):  # biggest first: priority must reorder
            req = CopyRequest(
                request_id=f.path.replace("/", "."),
                card_id=msg.card_id,
                path=f.path,
                size=f.size,
                mtime=f.mtime,
                destination=f"incoming/{msg.card_id}/{f.path.rsplit('/', 1)[-1]}",
                priority=0 if f.size < 100_000 else 10,
            )
            await ws.send(dump(req))
        for raw in self.extra_requests:
            await ws.send(raw)


@pytest.fixture
async def hub() -> AsyncIterator[tuple[TinyHub, Server, int]]:
    tiny = TinyHub()
    async with serve(tiny.handler, "127.0.0.1", 0) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        yield tiny, server, port


def _card(root: Path, files: dict[str, int]) -> dict[str, bytes]:
    out = {}
    for i, (rel, size) in enumerate(files.items()):
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        data = (bytes([i % 251]) + os.urandom(4096)) * (size // 4097 + 1)
        path.write_bytes(data[:size])
        os.utime(path, (1_700_000_000 + i, 1_700_000_000 + i))
        out[rel] = data[:size]
    return out


def _undecodable_name(folder: Path) -> None:
    """A clip named with a byte that is not UTF-8 (as a camera or a broken FAT can write)."""
    fd = os.open(os.path.join(os.fsencode(folder), b"GX01\xff01.MP4"), os.O_CREAT | os.O_WRONLY)
    os.write(fd, b"x" * 100)
    os.close(fd)


def _one_clip_card(tmp_path: Path) -> tuple[Path, Path]:
    """The cards folder, holding card ``c`` of one 1000-byte clip, and an empty share."""
    cards, share = tmp_path / "cards", tmp_path / "share"
    share.mkdir()
    _card(cards / "c", {"DCIM/100GOPRO/GX010001.MP4": 1000})
    return cards, share


async def _stop(stop: asyncio.Event, task: asyncio.Task[int], server: Server) -> int:
    """Stop the detector (its exit code) and the hub's server."""
    stop.set()
    code = await asyncio.wait_for(task, 30)
    server.close()
    await server.wait_closed()
    return code


def _settings(port: int, share: Path, **kw: object) -> DetectorSettings:
    base: dict[str, object] = dict(
        hub_url=f"ws://127.0.0.1:{port}/ws/detector",
        token=TOKEN,
        share_root=share,
        once=True,
        once_idle_seconds=0.5,
        reconnect_min=0.05,
        reconnect_max=0.2,
        poll_interval=0.05,
    )
    base.update(kw)
    return DetectorSettings(**base)  # type: ignore[arg-type]


async def test_card_is_listed_new_files_copied_and_second_insertion_copies_nothing(
    hub: tuple[TinyHub, Server, int], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="detector.ui")
    tiny, _, port = hub
    cards, share = tmp_path / "cards", tmp_path / "share"
    share.mkdir()
    data = _card(
        cards / "card1",
        {
            "DCIM/100GOPRO/GX010001.MP4": 40_000,  # QR clip
            "DCIM/100GOPRO/GX010002.MP4": 3_000_000,
            "DCIM/100GOPRO/GX020002.MP4": 1_000_000,
            "DCIM/100GOPRO/GL010002.LRV": 5_000,
        },
    )
    settings = _settings(port, share)
    code = await asyncio.wait_for(
        run_detector(settings, [WatchDirVolumes(cards)], asyncio.Event()), 60
    )
    assert code == 0
    inserted = [m for m in tiny.messages if isinstance(m, CardInserted)]
    [listed] = [m for m in tiny.messages if isinstance(m, FileList)]
    assert [f.kind for f in listed.files] == ["proxy", "video", "video", "video"]
    assert sorted(tiny.results) == [
        "DCIM.100GOPRO.GX010001.MP4",
        "DCIM.100GOPRO.GX010002.MP4",
        "DCIM.100GOPRO.GX020002.MP4",
    ]
    card_id = inserted[0].card_id
    for rel, content in data.items():
        dest = share / "incoming" / card_id / rel.rsplit("/", 1)[-1]
        if rel.endswith(".LRV"):
            assert not dest.exists()
            continue
        assert dest.read_bytes() == content
        result = tiny.results[rel.replace("/", ".")]
        assert (result.status, result.size, result.hash_algo) == (
            "copied",
            len(content),
            "xxh3_128",
        )
    # Small QR candidates first: the QR clip is the first copy started though it was requested
    # last (which result comes back first is up to the machine's scheduler: two copies run at
    # once)
    started = [r.args[0] for r in caplog.records if r.getMessage().startswith("copying ")]
    assert started[0] == "GX010001.MP4", started

    count = len(tiny.results)
    mtimes = {p: p.stat().st_mtime_ns for p in share.rglob("*.MP4")}
    assert await run_detector(settings, [WatchDirVolumes(cards)], asyncio.Event()) == 0
    assert len(tiny.results) == count  # nothing new requested, nothing copied
    assert {p: p.stat().st_mtime_ns for p in share.rglob("*.MP4")} == mtimes


async def test_bad_and_duplicate_requests_get_clear_answers(
    hub: tuple[TinyHub, Server, int], tmp_path: Path
) -> None:
    tiny, _, port = hub
    cards, share = _one_clip_card(tmp_path)
    escape = {
        "v": 1,
        "type": "copy_request",
        "request_id": "evil-1",
        "card_id": "c",
        "path": "DCIM/100GOPRO/GX010001.MP4",
        "size": 1000,
        "mtime": 0,
        "destination": "../../etc/owned.MP4",
        "priority": 0,
    }
    other_card = dict(escape, request_id="gone-1", card_id="not-here", destination="x/y.MP4")
    tiny.extra_requests = [json.dumps(escape), json.dumps(other_card)]
    assert (
        await run_detector(_settings(port, share), [WatchDirVolumes(cards)], asyncio.Event()) == 0
    )
    assert tiny.results["evil-1"].status == "failed"
    assert "refused" in tiny.results["evil-1"].reason and ".." in tiny.results["evil-1"].reason
    assert tiny.results["gone-1"].reason == "card not present"
    assert tiny.results["DCIM.100GOPRO.GX010001.MP4"].status == "copied"
    assert not (tmp_path / "etc").exists()


async def test_refused_token_stops_with_a_clear_exit_code(
    hub: tuple[TinyHub, Server, int], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    tiny, _, port = hub
    (tmp_path / "share").mkdir()
    settings = _settings(port, tmp_path / "share", token="wrong", once=False)
    code = await asyncio.wait_for(run_detector(settings, [], asyncio.Event()), 10)
    assert code == EXIT_AUTH_REFUSED
    assert tiny.connections == 0
    assert "refused this detector's token" in caplog.text


async def test_hub_restarted_mid_copy_client_reconnects_and_resends(tmp_path: Path) -> None:
    tiny = TinyHub(close_on_progress=True)
    cards, share = tmp_path / "cards", tmp_path / "share"
    share.mkdir()
    data = _card(cards / "c", {"DCIM/100GOPRO/GX010001.MP4": 60 * 1024 * 1024})
    server = await serve(tiny.handler, "127.0.0.1", 0)
    port = next(iter(server.sockets)).getsockname()[1]
    stop = asyncio.Event()
    settings = _settings(port, share, once=False, progress_interval=0.0)
    task = asyncio.create_task(run_detector(settings, [WatchDirVolumes(cards)], stop))
    try:
        await asyncio.wait_for(tiny.progressed.wait(), 30)
        server.close()  # the hub goes down mid-copy...
        await server.wait_closed()
        server = await serve(tiny.handler, "127.0.0.1", port)  # ...and comes back
        await asyncio.wait_for(tiny.got_result.wait(), 60)
        while tiny.connections < 2 or sum(isinstance(m, FileList) for m in tiny.messages) < 2:
            await asyncio.sleep(0.05)
    finally:
        code = await _stop(stop, task, server)
    assert code == 0
    assert sum(isinstance(m, CardInserted) for m in tiny.messages) >= 2  # list sent again
    result = tiny.results["DCIM.100GOPRO.GX010001.MP4"]
    assert result.status == "copied"
    dest = next(share.rglob("GX010001.MP4"))
    assert dest.read_bytes() == data["DCIM/100GOPRO/GX010001.MP4"]
    assert not list(share.rglob("*.skyreel-partial"))


def test_backoff_grows_with_jitter_and_is_capped() -> None:
    import random

    rng = random.Random(7)
    delays = [backoff_delay(a, 0.5, 30.0, rng) for a in range(12)]
    assert all(0.5 <= d <= 30.0 for d in delays)
    assert max(delays[8:]) > 4 * max(delays[:2])
    assert len(set(delays)) == len(delays)


async def test_a_bad_card_never_stops_the_watcher_and_the_next_card_is_imported(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Regression (issue 11): a name that is not valid Unicode killed the watcher task in
    silence (and --once exited 1); a card whose scan raises hid every card of its source."""
    caplog.set_level(logging.INFO)
    tiny = TinyHub(send_status=True)
    cards, away, share = tmp_path / "cards", tmp_path / "away", tmp_path / "share"
    share.mkdir()
    _card(cards / "odd", {"DCIM/100GOPRO/GX010001.MP4": 2000})
    _undecodable_name(cards / "odd/DCIM/100GOPRO")
    deep = str(cards / "deep/DCIM")
    os.makedirs(deep)
    for _ in range(1100):  # so deep that its scan raises RecursionError
        deep = os.path.join(deep, "d")
        os.mkdir(deep)
    _card(away / "next", {"DCIM/100GOPRO/GX010002.MP4": 3000})
    server = await serve(tiny.handler, "127.0.0.1", 0)
    port = next(iter(server.sockets)).getsockname()[1]
    stop = asyncio.Event()
    settings = _settings(port, share, once=False)
    task = asyncio.create_task(run_detector(settings, [WatchDirVolumes(cards)], stop))
    try:
        while "DCIM.100GOPRO.GX010001.MP4" not in tiny.results:
            await asyncio.sleep(0.05)
        (away / "next").rename(cards / "next")  # the next card, inserted later
        while "DCIM.100GOPRO.GX010002.MP4" not in tiny.results:
            await asyncio.sleep(0.05)
        while caplog.text.count("safe to remove") < 2:
            await asyncio.sleep(0.05)
    finally:
        code = await _stop(stop, task, server)
        # too deep for pytest's own (recursive) clean-up of old temp dirs: remove it here
        await asyncio.to_thread(subprocess.run, ["rm", "-rf", str(cards / "deep")], check=True)
    assert code == 0
    lists = {m.card_id.split("-")[0]: m for m in tiny.messages if isinstance(m, FileList)}
    assert sorted(lists) == ["next", "odd"]  # the deep card is never listed
    assert [f.path for f in lists["odd"].files] == ["DCIM/100GOPRO/GX010001.MP4"]
    assert [(s.path, s.reason) for s in lists["odd"].skipped] == [
        ("DCIM/100GOPRO/GX01\\xff01.MP4", "name is not valid Unicode")
    ]
    assert lists["odd"].free_bytes is not None and lists["odd"].capacity_bytes
    assert tiny.results["DCIM.100GOPRO.GX010002.MP4"].status == "copied"
    skipping = [r for r in caplog.records if "GX01\\xff01.MP4: name is not valid" in r.getMessage()]
    assert len(skipping) == 1 and lists["odd"].card_id in skipping[0].getMessage()
    assert caplog.text.count("cannot be scanned; ignoring it") == 1
    assert "card nearly full (" in caplog.text and "% free)" in caplog.text
    assert "not safe to remove yet (1 to import, 0 failed)" in caplog.text


async def test_once_with_a_bad_name_imports_the_rest_and_exits_0(
    hub: tuple[TinyHub, Server, int], tmp_path: Path
) -> None:
    tiny, _, port = hub
    cards, share = _one_clip_card(tmp_path)
    _undecodable_name(cards / "c/DCIM/100GOPRO")
    settings = _settings(port, share)
    assert (
        await asyncio.wait_for(
            run_detector(settings, [WatchDirVolumes(cards)], asyncio.Event()), 60
        )
        == 0
    )
    assert tiny.results["DCIM.100GOPRO.GX010001.MP4"].status == "copied"
