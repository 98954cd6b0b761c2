"""Mapping wire paths (card- or share-relative POSIX paths) onto the local filesystem, safely.

Paths in copy requests come from the network, so they are untrusted: :func:`native_relative`
turns one into a relative path of the local flavour (``PurePosixPath`` or ``PureWindowsPath``)
and refuses anything that could escape or that Windows would interpret specially (drive letters,
``..``, device names such as ``CON``, alternate data streams ``a:b``, trailing dots/spaces).
:func:`confine` then joins it under a root and checks, after resolving symlinks, that the result
is still inside the root. The pure part is tested on any OS with both path flavours.
"""

from __future__ import annotations

import os
import re
from pathlib import Path, PurePath, PurePosixPath, PureWindowsPath

from detector.protocol import check_relative_path

_WINDOWS_DEVICES = re.compile(r"^(CON|PRN|AUX|NUL|CONIN\$|CONOUT\$|COM[0-9¹²³]|LPT[0-9¹²³])$", re.I)
_WINDOWS_FORBIDDEN = re.compile(r'[<>:"|?*\x00-\x1f]')


class PathRefused(ValueError):
    """A path that must not be used; ``reason`` is safe to report."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def native_relative(rel: str, flavour: type[PurePath] = PurePosixPath) -> PurePath:
    """The relative path ``rel`` ('/'-separated, from the wire) in the given path flavour."""
    try:
        check_relative_path(rel)
    except ValueError as exc:
        raise PathRefused(f"{rel!r}: {exc}") from None
    parts = rel.split("/")
    if issubclass(flavour, PureWindowsPath):
        for part in parts:
            stem = part.split(".", 1)[0]
            if _WINDOWS_DEVICES.match(stem):
                raise PathRefused(f"{rel!r}: {part!r} is a Windows device name")
            if _WINDOWS_FORBIDDEN.search(part):
                raise PathRefused(f"{rel!r}: {part!r} has a character Windows forbids")
            if part.endswith((".", " ")):
                raise PathRefused(f"{rel!r}: {part!r} ends with a dot or space")
    native = flavour(*parts)
    if native.is_absolute() or native.anchor or ".." in native.parts:
        raise PathRefused(f"{rel!r}: not a plain relative path")
    return native


def _local_flavour() -> type[PurePath]:
    return PureWindowsPath if os.name == "nt" else PurePosixPath


def confine(root: Path, rel: str) -> Path:
    """``root/rel``, refused if it (or any existing parent, through symlinks) leaves ``root``."""
    native = native_relative(rel, _local_flavour())
    base = root.resolve(strict=True)
    target = base.joinpath(*native.parts)
    # resolve() follows every symlink that exists along the way; a missing tail is kept as is.
    # A symlink *inside* the root is harmless; only leaving it is refused.
    if not target.resolve(strict=False).is_relative_to(base):
        raise PathRefused(f"{rel!r} leads outside {root} (through a symlink)")
    return target


def card_source(card_root: Path, rel: str) -> Path:
    """The local path of a card file named by a copy request (same confinement rules)."""
    return confine(card_root, rel)
