from __future__ import annotations

import asyncio
import os
from pathlib import Path

from detector.cards import (
    CardTracker,
    LinuxVolumes,
    Volume,
    WatchDirVolumes,
    card_fingerprint,
    parse_mountinfo,
    unescape_mount_field,
    watch_cards,
)
from detector.cards_windows import (
    DRIVE_FIXED,
    DRIVE_REMOVABLE,
    drive_letters,
    format_serial,
    is_card_drive,
)
from detector.protocol import CardInserted
from detector.scan import ScannedFile

MOUNTINFO = (
    "22 27 0:21 / /proc rw,relatime - proc proc rw\n"
    "36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue\n"
    "90 27 179:1 / /media/pi/GOPRO\\040HERO rw,nosuid shared:5 master:7 - vfat /dev/mmcblk0p1 rw\n"
    "91 27 8:17 / /run/media/ana/3131-6237 rw - exfat /dev/sdb1 rw,fmask=0022\n"
    "garbage line\n"
)


def test_parse_mountinfo_with_optional_fields_and_octal_escapes() -> None:
    entries = parse_mountinfo(MOUNTINFO)
    assert [(e.device, e.mount_point, e.fstype, e.source) for e in entries] == [
        ("0:21", "/proc", "proc", "proc"),
        ("98:0", "/mnt2", "ext3", "/dev/root"),
        ("179:1", "/media/pi/GOPRO HERO", "vfat", "/dev/mmcblk0p1"),
        ("8:17", "/run/media/ana/3131-6237", "exfat", "/dev/sdb1"),
    ]
    assert unescape_mount_field("a\\011b\\012c\\134d") == "a\tb\nc\\d"


def test_windows_drive_parsing() -> None:
    assert drive_letters(0b10101) == ["A:\\", "C:\\", "E:\\"]
    assert drive_letters(1 << 25) == ["Z:\\"]
    assert is_card_drive(DRIVE_REMOVABLE) and not is_card_drive(DRIVE_FIXED)
    assert format_serial(0x1234ABCD) == "vol-1234-ABCD"
    card_id = format_serial(0xFFFFFFFF)
    assert CardInserted(type="card_inserted", card_id=card_id).card_id == "vol-FFFF-FFFF"


def _f(path: str, mtime: float, size: int = 10) -> ScannedFile:
    return ScannedFile(path, size, mtime, "video")


def test_fingerprint_is_stable_when_new_jumps_are_added_and_changes_after_format() -> None:
    old = [_f(f"DCIM/100GOPRO/GX01{i:04d}.MP4", 1000 + i) for i in range(10)]
    new_jump = [_f("DCIM/100GOPRO/GX019999.MP4", 5000)]
    formatted = [_f("DCIM/100GOPRO/GX010001.MP4", 9000)]
    assert card_fingerprint("GOPRO", old) == card_fingerprint("GOPRO", old + new_jump)
    assert card_fingerprint("GOPRO", old) == card_fingerprint("GOPRO", list(reversed(old)))
    assert card_fingerprint("GOPRO", old) != card_fingerprint("GOPRO", formatted)
    assert card_fingerprint("GOPRO", old) != card_fingerprint("OTHER", old)


def test_tracker_debounces_insertions_and_reports_removals() -> None:
    tracker = CardTracker()
    a = Volume("card-a", Path("/media/a"))
    assert tracker.update([a]) == []  # seen once: maybe still mounting
    assert tracker.pending  # the poller confirms it with a quick second look
    [event] = tracker.update([a])
    assert not tracker.pending
    assert (event.kind, event.volume) == ("inserted", a)
    assert tracker.update([a]) == []
    [event] = tracker.update([])
    assert (event.kind, event.volume.card_id) == ("removed", "card-a")
    assert tracker.update([]) == []


def _card(root: Path, name: str = "GX010001.MP4") -> None:
    (root / "DCIM/100GOPRO").mkdir(parents=True)
    path = root / "DCIM/100GOPRO" / name
    path.write_bytes(b"v" * 100)
    os.utime(path, (1_700_000_000, 1_700_000_000))


def test_watch_dir_cards_need_dcim_and_never_get_written(tmp_path: Path) -> None:
    _card(tmp_path / "Card 1")
    (tmp_path / "no-dcim").mkdir()
    (tmp_path / "stray.txt").write_text("x")
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))

    [volume] = WatchDirVolumes(tmp_path).scan()
    [again] = WatchDirVolumes(tmp_path).scan()

    assert volume.root == tmp_path / "Card 1"
    assert volume.card_id.startswith("Card-1-") and volume.card_id == again.card_id
    CardInserted(type="card_inserted", card_id=volume.card_id)  # valid on the wire
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


def test_linux_volumes_from_a_mountinfo_file(tmp_path: Path) -> None:
    media = tmp_path / "media"
    _card(media / "GOPRO")
    (media / "EMPTY").mkdir(parents=True)
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text(
        f"90 27 179:1 / {media / 'GOPRO'} rw - vfat /dev/mmcblk0p1 rw\n"
        f"91 27 179:2 / {media / 'EMPTY'} rw - vfat /dev/mmcblk0p2 rw\n"
        f"92 27 8:1 / {tmp_path} rw - ext4 /dev/sda1 rw\n"
    )
    source = LinuxVolumes(
        mountinfo=mountinfo,
        sys_dev_block=tmp_path / "sys",
        by_uuid=tmp_path / "by-uuid",
        prefixes=(f"{media}/",),
    )
    [volume] = source.scan()
    assert volume.root == media / "GOPRO" and volume.card_id.startswith("fp-")


def test_linux_volumes_on_this_machine_do_not_crash() -> None:
    assert isinstance(LinuxVolumes().scan(), list)


async def test_watch_cards_yields_insert_then_remove(tmp_path: Path) -> None:
    stop = asyncio.Event()
    events = []
    source = WatchDirVolumes(tmp_path)
    _card(tmp_path / "c1")

    async def consume() -> None:
        async for event in watch_cards([source], stop, interval=0.05):
            events.append(event)
            if event.kind == "inserted":
                for p in sorted((tmp_path / "c1").rglob("*"), reverse=True):
                    p.unlink() if p.is_file() else p.rmdir()
                (tmp_path / "c1").rmdir()
            else:
                stop.set()

    await asyncio.wait_for(consume(), timeout=10)
    assert [e.kind for e in events] == ["inserted", "removed"]


def test_fingerprint_of_a_fresh_card_survives_the_next_jumps() -> None:
    """Regression: with the oldest *eight* files, a card formatted that morning (two files
    after the first jump) changed identity at every insertion, and its files looked new."""
    first_jump = [
        _f("DCIM/100GOPRO/GX010001.MP4", 1000.0, 5_000),
        _f("DCIM/100GOPRO/GX010002.MP4", 1060.0, 9_000_000),
    ]
    later = [_f(f"DCIM/100GOPRO/GX01{i:04d}.MP4", 2000.0 + i, 9_000_000 + i) for i in range(3, 20)]
    assert card_fingerprint("GOPRO", first_jump) == card_fingerprint("GOPRO", first_jump + later)
