"""Removable camera volumes on Windows (drive letters), behind ``volume.VolumeSource``.

The Win32 calls (``GetLogicalDrives``, ``GetDriveTypeW``, ``GetVolumeInformationW``) go through
ctypes and are only made on Windows; the parsing around them (the drive bitmask, drive types,
serial formatting) is pure and tested on any OS.
"""

from __future__ import annotations

import logging
import string
from pathlib import Path

from detector.scan import find_dcim, scan_card
from detector.volume import Volume, card_fingerprint

logger = logging.getLogger(__name__)

DRIVE_UNKNOWN = 0
DRIVE_NO_ROOT_DIR = 1
DRIVE_REMOVABLE = 2
DRIVE_FIXED = 3
DRIVE_REMOTE = 4
DRIVE_CDROM = 5
DRIVE_RAMDISK = 6


def drive_letters(mask: int) -> list[str]:
    """Drive roots ("E:\\\\") named by a ``GetLogicalDrives`` bitmask (bit 0 = A:) (pure)."""
    return [f"{letter}:\\" for i, letter in enumerate(string.ascii_uppercase) if mask >> i & 1]


def is_card_drive(drive_type: int) -> bool:
    """SD card readers report DRIVE_REMOVABLE; fixed, network and optical drives are not cards."""
    return drive_type == DRIVE_REMOVABLE


def format_serial(serial: int) -> str:
    """The volume serial as Windows shows it (``vol`` + ``1234-ABCD`` style) (pure)."""
    serial &= 0xFFFFFFFF
    return f"vol-{serial >> 16:04X}-{serial & 0xFFFF:04X}"


class WindowsVolumes:
    """Removable drive letters with a DCIM directory."""

    def __init__(self) -> None:
        self._fingerprints: dict[Path, str] = {}

    def scan(self) -> list[Volume]:
        import ctypes  # only reached on Windows

        kernel32 = ctypes.windll.kernel32  # type: ignore[attr-defined]
        found: list[Volume] = []
        for root_text in drive_letters(kernel32.GetLogicalDrives()):
            if not is_card_drive(kernel32.GetDriveTypeW(root_text)):
                continue
            root = Path(root_text)
            if find_dcim(root) is None:
                continue
            label_buf = ctypes.create_unicode_buffer(261)
            serial = ctypes.c_uint32(0)
            ok = kernel32.GetVolumeInformationW(
                root_text, label_buf, 261, ctypes.byref(serial), None, None, None, 0
            )
            label = label_buf.value if ok else ""
            if ok and serial.value:
                card_id = format_serial(serial.value)
            else:
                if root not in self._fingerprints:
                    self._fingerprints[root] = card_fingerprint(label, scan_card(root))
                card_id = f"fp-{self._fingerprints[root]}"
            found.append(Volume(card_id, root, label[:200] or root_text[:2]))
        return found
