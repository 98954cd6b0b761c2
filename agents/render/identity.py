"""Who an output belongs to: the jump session's output name, its input fingerprint and manifest.

Every jump session gets its own output name (`output_name`, a pure function): two jumps of one
passenger, or two tickets of one group booking, are two videos. Beside each rendered video lies a
small manifest `<name>.json` saying which session made it, from which inputs (the fingerprint:
ordered clip ids, sizes and content hashes, branding, render settings, title) and which bytes
(size and SHA-256 of video and poster). Render and publish read it before touching a file: an
output is reused only when it is this session's and its inputs are unchanged, and a file that
belongs to another session is never replaced.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import unicodedata
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import cast

MANIFEST_VERSION = 1
# bumped when the render plan changes what the same inputs produce
PLAN_VERSION = 1
_BOOKING_OK = re.compile(r"[^A-Za-z0-9._-]+")


class ManifestError(ValueError):
    """A manifest that cannot be read: nobody can say whose the output beside it is."""


def _slug(text: str, *, limit: int) -> str:
    text = unicodedata.normalize("NFKC", text)
    kept = "".join(ch if ch.isalnum() else "-" for ch in text)
    return "-".join(part for part in kept.split("-") if part)[:limit].strip("-")


def safe_booking(booking_id: str) -> str:
    """The booking id as it may appear in a file name ('' when nothing usable is left)."""
    return _BOOKING_OK.sub("", booking_id).strip(".")[:64]


def output_name(
    booking_id: str, passenger_name: str, capture_start: datetime, session_key: str
) -> str:
    """`<booking>_<passenger>_<YYYYMMDD-HHMM>_<6 hex of the session key>`; a passenger name that
    is empty or keeps nothing (only emoji, punctuation) is left out: `<booking>_<time>_<hash>`
    (`name_note` says so in words).

    Readable by a person, safe as a folder and file name on Linux, macOS and Windows shares (never
    a bare device name like CON: a time and hash always follow), and distinct per jump session.
    The time is the capture start as stored (camera clocks have no zone: taken as UTC).
    """
    booking = safe_booking(booking_id)
    if not booking:
        raise ValueError(f"booking id {booking_id!r} has no usable characters")
    when = capture_start if capture_start.tzinfo else capture_start.replace(tzinfo=UTC)
    stamp = when.astimezone(UTC).strftime("%Y%m%d-%H%M")
    digest = hashlib.sha256(session_key.encode()).hexdigest()[:6]
    name = _slug(passenger_name, limit=60)
    return "_".join(part for part in (booking, name, stamp, digest) if part)


def name_note(booking_id: str, passenger_name: str) -> str | None:
    """What `output_name` did with a missing or unusable passenger name, for people; None when
    the name is in the output name. (It never falls back to a word like "passenger": the
    booking, capture time and session hash alone keep every jump's name its own.)"""
    if not passenger_name.strip():
        return f"booking {booking_id} has no passenger name: the video is named after the booking"
    if not _slug(passenger_name, limit=60):
        return (
            f"booking {booking_id}: the passenger name {passenger_name!r} has no letter or digit "
            "a file name can keep: the video is named after the booking"
        )
    return None


def is_safe_name(name: str) -> bool:
    """True for a name `output_name` could have made (a stored name is checked before use)."""
    return (
        0 < len(name) <= 200
        and name not in (".", "..")
        and not name.startswith(".")
        and all(ch.isalnum() or ch in "._-" for ch in name)
    )


def fingerprint(inputs: Mapping[str, object]) -> str:
    """SHA-256 of the canonical JSON of everything that decides the rendered bytes."""
    canonical = json.dumps(inputs, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class FileFact:
    name: str
    size: int
    sha256: str

    def matches(self, path: Path) -> bool:
        """The file at `path` holds exactly these bytes (size first: cheap)."""
        try:
            if path.stat().st_size != self.size:
                return False
        except FileNotFoundError:
            return False
        return sha256_of(path) == self.sha256

    def same_size(self, path: Path) -> bool:
        try:
            return path.stat().st_size == self.size
        except FileNotFoundError:
            return False


@dataclass(frozen=True)
class Manifest:
    session_key: str
    output_name: str
    fingerprint: str
    execution_id: int | None = None
    files: Mapping[str, FileFact] = field(default_factory=dict)  # "video", "poster"
    inputs: Mapping[str, object] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(
            {
                "version": MANIFEST_VERSION,
                "session_key": self.session_key,
                "output_name": self.output_name,
                "execution_id": self.execution_id,
                "fingerprint": self.fingerprint,
                "files": {
                    kind: {"name": f.name, "size": f.size, "sha256": f.sha256}
                    for kind, f in self.files.items()
                },
                "inputs": dict(self.inputs),
            },
            indent=2,
            sort_keys=True,
            ensure_ascii=False,
        )

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        try:
            raw = json.loads(text)
            files = cast(Mapping[str, Mapping[str, object]], raw.get("files", {}))
            execution = raw.get("execution_id")
            return cls(
                session_key=str(raw["session_key"]),
                output_name=str(raw["output_name"]),
                fingerprint=str(raw["fingerprint"]),
                execution_id=int(execution) if execution is not None else None,
                files={
                    str(kind): FileFact(str(f["name"]), int(cast(int, f["size"])), str(f["sha256"]))
                    for kind, f in files.items()
                },
                inputs=cast(Mapping[str, object], raw.get("inputs", {})),
            )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ManifestError(f"unreadable manifest: {exc!r}") from exc


def manifest_path(folder: Path, name: str) -> Path:
    return folder / f"{name}.json"


def read_manifest(path: Path) -> Manifest | None:
    """The manifest at `path`, None when there is none; ManifestError when it is unreadable."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestError(f"{path.name}: {exc}") from exc
    return Manifest.from_json(text)


def _write_tmp(path: Path, manifest: Manifest) -> Path:
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex}")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(manifest.to_json())
        fh.flush()
        os.fsync(fh.fileno())
    return tmp


def write_manifest(path: Path, manifest: Manifest) -> None:
    """Write (or replace) a manifest atomically: a reader sees the old one or the new one."""
    tmp = _write_tmp(path, manifest)
    try:
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def claim_manifest(path: Path, manifest: Manifest) -> bool:
    """Create the manifest only if none exists (atomic: a hard link never overwrites).

    False when a manifest was already there: the caller reads it and decides.
    """
    tmp = _write_tmp(path, manifest)
    try:
        os.link(tmp, path)
        return True
    except FileExistsError:
        return False
    finally:
        tmp.unlink(missing_ok=True)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def file_fact(path: Path, *, name: str | None = None) -> FileFact:
    """Size and SHA-256 of a file (blocking: run it off the event loop for large files)."""
    return FileFact(name or path.name, path.stat().st_size, sha256_of(path))


def file_stamp(path: Path | None) -> list[int] | None:
    """Size and mtime of a branding file: a replaced logo or intro makes a new fingerprint."""
    if path is None:
        return None
    with contextlib.suppress(OSError):
        st = path.stat()
        return [st.st_size, st.st_mtime_ns]
    return None
