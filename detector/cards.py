"""Noticing SD cards: which camera volumes are present, and their stable identity.

Every platform sits behind one small interface, :class:`VolumeSource` (``scan() -> [Volume]``):

* :class:`LinuxVolumes` parses ``/proc/self/mountinfo``; a mount counts when it is a udisks-style
  mount point (``/media/*``, ``/run/media/*/*``) or its block device says it is removable
  (``/sys/dev/block/MAJ:MIN/removable``, or the parent disk's). UUIDs come from
  ``/dev/disk/by-uuid``.
* :class:`WindowsVolumes` (``detector.cards_windows``, used only on Windows) asks
  ``GetLogicalDrives``/``GetDriveTypeW`` for removable drive letters and
  ``GetVolumeInformationW`` for the volume serial.
* :class:`WatchDirVolumes` treats each subdirectory of one directory as a card (stations that
  mount cards elsewhere, tests, demos).

Only volumes with a ``DCIM/`` directory count. Identity: the filesystem UUID / volume serial
where the OS gives one (it changes exactly when the card is formatted, which is when camera file
names start repeating). Otherwise a fingerprint: a hash of the label and the (path, size, mtime)
of the *oldest* file. The oldest file is the one that stays put while an instructor keeps adding
jumps to the card, so the fingerprint is stable across insertions, and it changes after a
format — the same property as a serial. Nothing is ever written to a card to mark it.

:class:`CardTracker` turns successive scans into inserted/removed events, debounced: a volume
must be seen in two consecutive scans before it counts, so a card still being mounted (or
a watch directory still being filled) is not reported half-ready.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from detector.cards_windows import WindowsVolumes
from detector.scan import find_dcim, scan_card
from detector.volume import Volume, VolumeSource, card_fingerprint, safe_id

logger = logging.getLogger(__name__)

#: Seconds before the confirming scan of a newly seen volume.
CONFIRM_AFTER = 0.2
_OCTAL = re.compile(r"\\([0-7]{3})")


@dataclass(frozen=True)
class CardEvent:
    kind: Literal["inserted", "removed"]
    volume: Volume


# --- identity (pure) -----------------------------------------------------------------------


def fingerprint_card(root: Path, label: str, failed: set[Path]) -> str | None:
    """The fingerprint of the card at ``root``; None when its scan fails (logged once while
    the root is in ``failed``), so one broken card never hides the other cards of its source."""
    try:
        fingerprint = card_fingerprint(label, scan_card(root))
    except Exception:
        if root not in failed:
            failed.add(root)
            logger.exception("card at %s cannot be scanned; ignoring it", root)
        return None
    failed.discard(root)
    return fingerprint


# --- Linux ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class MountEntry:
    device: str  # "MAJ:MIN"
    mount_point: str
    fstype: str
    source: str


def unescape_mount_field(field: str) -> str:
    """Undo the kernel's octal escapes (``\\040`` space, ``\\011`` tab, ``\\134`` backslash)."""
    return _OCTAL.sub(lambda m: chr(int(m.group(1), 8)), field)


def parse_mountinfo(text: str) -> list[MountEntry]:
    """Parse ``/proc/self/mountinfo`` (pure); malformed lines are skipped."""
    entries: list[MountEntry] = []
    for line in text.splitlines():
        parts = line.split(" ")
        try:
            sep = parts.index("-", 6)
            entries.append(
                MountEntry(
                    device=parts[2],
                    mount_point=unescape_mount_field(parts[4]),
                    fstype=parts[sep + 1],
                    source=unescape_mount_field(parts[sep + 2]),
                )
            )
        except (ValueError, IndexError):
            continue
    return entries


def is_udisks_mount(mount_point: str, prefixes: Sequence[str] = ("/media/", "/run/media/")) -> bool:
    return any(mount_point.startswith(p) for p in prefixes)


class LinuxVolumes:
    """Mounted removable volumes with a DCIM directory (Linux)."""

    def __init__(
        self,
        *,
        mountinfo: Path = Path("/proc/self/mountinfo"),
        sys_dev_block: Path = Path("/sys/dev/block"),
        by_uuid: Path = Path("/dev/disk/by-uuid"),
        prefixes: Sequence[str] = ("/media/", "/run/media/"),
    ) -> None:
        self.mountinfo = mountinfo
        self.sys_dev_block = sys_dev_block
        self.by_uuid = by_uuid
        self.prefixes = tuple(prefixes)
        self._fingerprints: dict[Path, str] = {}
        self._unreadable: set[Path] = set()

    def _removable(self, device: str) -> bool:
        node = self.sys_dev_block / device
        for candidate in (node / "removable", node.resolve().parent / "removable"):
            try:
                if candidate.read_text().strip() == "1":
                    return True
            except OSError:
                continue
        return False

    def _uuids(self) -> dict[str, str]:
        try:
            return {os.path.realpath(link): link.name for link in self.by_uuid.iterdir()}
        except OSError:
            return {}

    def scan(self) -> list[Volume]:
        try:
            mounts = parse_mountinfo(self.mountinfo.read_text())
        except OSError as exc:
            logger.warning("cannot read %s: %s", self.mountinfo, exc)
            return []
        uuids: dict[str, str] | None = None
        found: list[Volume] = []
        seen: set[Path] = set()
        for m in mounts:
            if not m.source.startswith("/dev/"):
                continue
            if not (is_udisks_mount(m.mount_point, self.prefixes) or self._removable(m.device)):
                continue
            root = Path(m.mount_point)
            if find_dcim(root) is None:
                continue
            seen.add(root)
            if uuids is None:
                uuids = self._uuids()
            label = root.name
            uuid = uuids.get(os.path.realpath(m.source))
            if uuid:
                card_id = f"uuid-{safe_id(uuid)}"
            elif (fingerprint := self._fingerprint(root, label)) is not None:
                card_id = f"fp-{fingerprint}"
            else:
                continue
            found.append(Volume(card_id, root, label))
        self._forget(seen)
        return found

    def _fingerprint(self, root: Path, label: str) -> str | None:
        if root not in self._fingerprints:
            fingerprint = fingerprint_card(root, label, self._unreadable)
            if fingerprint is None:
                return None
            self._fingerprints[root] = fingerprint
        return self._fingerprints[root]

    def _forget(self, present: set[Path]) -> None:
        for root in set(self._fingerprints) - present:
            del self._fingerprints[root]


# --- watch directory -----------------------------------------------------------------------


class WatchDirVolumes:
    """Each subdirectory of ``directory`` that has a DCIM/ tree is one card."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._fingerprints: dict[Path, str] = {}
        self._unreadable: set[Path] = set()

    def scan(self) -> list[Volume]:
        try:
            subdirs = sorted(p for p in self.directory.iterdir() if p.is_dir())
        except OSError as exc:
            logger.warning("cannot list watch directory %s: %s", self.directory, exc)
            return []
        found: list[Volume] = []
        for root in subdirs:
            if root.name.startswith(".") or find_dcim(root) is None:
                continue
            if root not in self._fingerprints:
                fingerprint = fingerprint_card(root, root.name, self._unreadable)
                if fingerprint is None:
                    continue
                self._fingerprints[root] = fingerprint
            card_id = f"{safe_id(root.name)}-{self._fingerprints[root][:12]}"
            found.append(Volume(card_id, root, root.name))
        for gone in set(self._fingerprints) - {v.root for v in found}:
            del self._fingerprints[gone]
        return found


def platform_source() -> VolumeSource:
    """The removable-volume source for this OS."""
    if os.name == "nt":
        return WindowsVolumes()
    return LinuxVolumes()


# --- events --------------------------------------------------------------------------------


class CardTracker:
    """Successive scans -> inserted/removed events, debounced by one scan (pure state)."""

    def __init__(self) -> None:
        self.present: dict[str, Volume] = {}
        self._candidates: dict[str, Volume] = {}

    @property
    def pending(self) -> bool:
        """A volume was seen once and waits for its confirming scan."""
        return bool(self._candidates)

    def update(self, volumes: Sequence[Volume]) -> list[CardEvent]:
        current = {v.card_id: v for v in volumes}
        events = [CardEvent("removed", v) for cid, v in self.present.items() if cid not in current]
        for event in events:
            del self.present[event.volume.card_id]
        candidates: dict[str, Volume] = {}
        for cid, volume in current.items():
            if cid in self.present:
                self.present[cid] = volume  # the same card remounted elsewhere keeps its id
            elif cid in self._candidates and self._candidates[cid].root == volume.root:
                self.present[cid] = volume
                events.append(CardEvent("inserted", volume))
            else:
                candidates[cid] = volume
        self._candidates = candidates
        return events


def scan_all(sources: Sequence[VolumeSource]) -> list[Volume]:
    volumes: list[Volume] = []
    for source in sources:
        try:
            volumes.extend(source.scan())
        except Exception:  # one broken source must not hide the others' cards
            logger.exception("volume source %r failed", source)
    return volumes


async def watch_cards(
    sources: Sequence[VolumeSource], stop: asyncio.Event, interval: float = 1.0
) -> AsyncIterator[CardEvent]:
    """Poll the sources every ``interval`` seconds and yield card events until ``stop``."""
    tracker = CardTracker()
    while not stop.is_set():
        volumes = await asyncio.to_thread(scan_all, sources)
        for event in tracker.update(volumes):
            yield event
        # A card seen once is confirmed by a quick second look rather than a whole interval
        # later: the debounce still holds, and a card is noticed sooner.
        wait = min(interval, CONFIRM_AFTER) if tracker.pending else interval
        try:
            await asyncio.wait_for(stop.wait(), timeout=wait)
        except TimeoutError:
            pass
