"""The detector <-> hub WebSocket wire protocol (version 1).

One dependency-light module (pydantic only) shared by the station client and the hub: the hub
imports it, the detector never imports the backend. Every frame is one JSON object with a
protocol version ``v`` and a ``type``; anything else is refused with a clear reason.

Detector -> hub: ``card_inserted``, ``file_list``, ``card_removed``, ``copy_progress``,
``copy_result``.  Hub -> detector: ``welcome``, ``copy_request``, ``error``, ``card_status``,
``files_refused``.

A failed ``copy_result`` may say what failed (``failure``: the share is full, the source or the
destination failed, the request was refused, ...): optional, so a hub ignores a detector that
never sends it, and omitted when unset, so an older hub is not sent a field it refuses. The hub
carries the kind on to the agents as a ``[kind]`` prefix of the reason
(:func:`coded_reason` / :func:`split_reason`).

A ``file_list`` may also carry the card's free and total bytes and the files the detector could
not list (``skipped``: a name that is not valid Unicode, ...); all optional, so either side works
with a peer that never sends them. A file entry may carry its ``duration`` (seconds, read from
the container's header: the hub picks QR candidates by it); a hub from before it refuses a list
that carries one, so hubs are upgraded before detectors. A ``duration`` the hub cannot believe
(not a finite number of seconds from 0 to 24 h) is dropped from its entry, logged, and the entry
is kept: the size rule then decides. The hub refuses a list *entry* whose path is unsafe
without refusing the list (:func:`parse_detector_frame`); a frame that is not a valid message at
all is refused whole.

Authentication happens at the handshake, not in a message: ``Authorization: Bearer <token>``
(``?token=`` is still accepted from old clients and logged as ``token=***``; this client always
sends the header).
"""

from __future__ import annotations

import json
import logging
import math
import re
from typing import Annotated, Final, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

logger = logging.getLogger(__name__)

PROTOCOL_VERSION = 1
#: the one content hash of a copy: xxh3-128, lowercase hex
HASH_ALGO: Final = "xxh3_128"
_HASH = re.compile(r"[0-9a-f]{32}")

#: Largest frame either side accepts. A 20,000-file list is ~2.5 MB of JSON.
MAX_FRAME_BYTES = 16 * 1024 * 1024
#: Default cap on files in one list (the hub's setting may lower it).
MAX_FILES_PER_LIST = 20_000
MAX_PATH_CHARS = 1024
MAX_REASON_CHARS = 2000
#: Skipped or refused files reported in one frame (the rest are counted, not listed).
MAX_SKIPPED = 100
MAX_SKIP_REASON_CHARS = 200
#: Longest clip duration a file entry may state (a longer one is a corrupt header).
MAX_DURATION_S = 24 * 3600.0

#: WebSocket close codes the hub uses (RFC 6455 plus the 4000 private range).
CLOSE_UNSUPPORTED = 1003  # not JSON, wrong schema, unknown type
CLOSE_POLICY = 1008  # authentication refused
CLOSE_TOO_BIG = 1009  # frame over MAX_FRAME_BYTES
CLOSE_REPLACED = 4000  # the same detector connected again elsewhere

_CARD_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:\-]{0,127}$")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# An escaped UTF-16 surrogate in JSON text: the only way a lone surrogate gets into a frame.
_ESCAPED_SURROGATE = re.compile(rb"\\u[dD][89a-fA-F]")

#: Extensions of camera side files that are never footage (proxies, thumbnails, metadata).
PROXY_EXTENSIONS = frozenset({".lrv", ".thm", ".xmp", ".sav", ".glv", ".jpg", ".gpr", ".wav"})
#: Extensions of camera video files.
VIDEO_EXTENSIONS = frozenset({".mp4", ".mov", ".m4v", ".avi", ".mts", ".m2ts", ".insv", ".360"})


#: Why a copy failed. ``no_space``: the share (or a quota) is full — a state, not a failure:
#: the copy is retried once space returns. ``source``: the card (pulled, I/O error, changed).
#: ``destination``: the share (I/O error, permission, a temp file gone at the rename).
FailureKind = Literal["no_space", "source", "destination", "refused", "cancelled", "internal"]
FAILURE_KINDS: frozenset[str] = frozenset(
    ("no_space", "source", "destination", "refused", "cancelled", "internal")
)
_CODED_REASON = re.compile(r"^\[([a-z_]{1,32})\] ")
# What a detector from before ``failure`` wrote for a full share (detector/copy.py).
_LEGACY_NO_SPACE = "destination full ("


class ProtocolError(ValueError):
    """A frame that does not follow the protocol; ``reason`` is safe to send back."""

    def __init__(self, reason: str, *, close_code: int = CLOSE_UNSUPPORTED) -> None:
        super().__init__(reason)
        self.reason = reason
        self.close_code = close_code


def is_valid_unicode(value: str) -> bool:
    """False for text holding lone surrogates (an undecodable file name, an escaped ``\\udcff``)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def printable(value: str, limit: int = MAX_PATH_CHARS) -> str:
    """``value`` safe to show and store: undecodable bytes as ``\\xff``, control and other
    unprintable characters escaped, backslashes doubled, cut to ``limit`` characters (pure)."""
    out: list[str] = []
    for ch in value:
        code = ord(ch)
        if 0xDC80 <= code <= 0xDCFF:  # os.fsdecode's surrogateescape of one undecodable byte
            out.append(f"\\x{code - 0xDC00:02x}")
        elif ch == "\\":
            out.append("\\\\")
        elif 0xD800 <= code <= 0xDFFF or not ch.isprintable():
            out.append(ascii(ch)[1:-1])
        else:
            out.append(ch)
    text = "".join(out)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def check_relative_path(value: str) -> str:
    """Validate a card-relative POSIX path: valid Unicode, no NUL/control chars, not absolute,
    no ``..``."""
    if not value:
        raise ValueError("path is empty")
    if not is_valid_unicode(value):
        raise ValueError("name is not valid Unicode")
    if len(value) > MAX_PATH_CHARS:
        raise ValueError(f"path longer than {MAX_PATH_CHARS} characters")
    if _CONTROL.search(value):
        raise ValueError("path contains NUL or control characters")
    if "\\" in value:
        raise ValueError("path must use '/' separators")
    if value.startswith("/") or re.match(r"^[A-Za-z]:", value):
        raise ValueError("path must be relative to the card root")
    parts = value.split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise ValueError("path contains an empty, '.' or '..' segment")
    return value


def classify(path: str) -> Literal["video", "proxy", "other"]:
    """What a card file is, by its extension (pure; both sides use it)."""
    name = path.rsplit("/", 1)[-1].lower()
    dot = name.rfind(".")
    ext = name[dot:] if dot >= 0 else ""
    if ext in PROXY_EXTENSIONS:
        return "proxy"
    if ext in VIDEO_EXTENSIONS:
        return "video"
    return "other"


class _Msg(BaseModel):
    # strict: the wire carries the JSON types it says (`v: 1.0`, `v: true`, `size: "100"` are
    # refused, not coerced); a float field still takes a JSON integer
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=False, strict=True)
    v: Literal[1] = 1


def _card_id(value: str) -> str:
    if not _CARD_ID.match(value):
        raise ValueError("card_id must be 1-128 of [A-Za-z0-9._:-], starting alphanumeric")
    return value


def _request_id(value: str) -> str:
    if not _REQUEST_ID.match(value):
        raise ValueError("request_id must be 1-128 of [A-Za-z0-9._:-]")
    return value


class FileEntry(BaseModel):
    """One file on a card, by metadata only."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)
    path: str = Field(description="path relative to the card root, '/'-separated")
    size: int = Field(ge=0, le=1 << 44, description="bytes")
    mtime: float = Field(ge=0, le=1e11, description="seconds since the epoch, as the card says")
    kind: Literal["video", "proxy", "other"] = "video"
    duration: float | None = Field(
        default=None,
        ge=0,
        le=MAX_DURATION_S,
        allow_inf_nan=False,
        description="seconds, from the container's header (moov/mvhd); left out when unknown "
        "(the hub then judges a QR candidate by size)",
    )

    _path = field_validator("path")(classmethod(lambda cls, v: check_relative_path(v)))


def _display_text(value: str) -> str:
    if not is_valid_unicode(value) or _CONTROL.search(value):
        raise ValueError("must be valid Unicode without control characters")
    return value


class SkippedFile(BaseModel):
    """A file that was not listed (detector) or not accepted (hub), and why."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)
    path: str = Field(max_length=MAX_PATH_CHARS, description="printable form (see printable())")
    reason: str = Field(max_length=MAX_SKIP_REASON_CHARS)

    _text = field_validator("path", "reason")(classmethod(lambda cls, v: _display_text(v)))


class CardInserted(_Msg):
    type: Literal["card_inserted"]
    card_id: str
    label: str = Field(default="", max_length=200)
    _cid = field_validator("card_id")(classmethod(lambda cls, v: _card_id(v)))
    _label = field_validator("label")(classmethod(lambda cls, v: _display_text(v)))


class FileList(_Msg):
    type: Literal["file_list"]
    card_id: str
    files: list[FileEntry]
    # the card's free and total bytes (shutil.disk_usage of its mount root), when known
    free_bytes: int | None = Field(default=None, ge=0, le=1 << 60)
    capacity_bytes: int | None = Field(default=None, ge=0, le=1 << 60)
    skipped: list[SkippedFile] = Field(default_factory=list, max_length=MAX_SKIPPED)
    _cid = field_validator("card_id")(classmethod(lambda cls, v: _card_id(v)))

    @model_validator(mode="after")
    def _space(self) -> FileList:
        free, total = self.free_bytes, self.capacity_bytes
        if (free is None) != (total is None):
            raise ValueError("free_bytes and capacity_bytes come together")
        if free is not None and total is not None and free > total:
            raise ValueError("free_bytes exceeds capacity_bytes")
        return self


class CardRemoved(_Msg):
    type: Literal["card_removed"]
    card_id: str
    _cid = field_validator("card_id")(classmethod(lambda cls, v: _card_id(v)))


class CopyProgress(_Msg):
    type: Literal["copy_progress"]
    request_id: str
    bytes_done: int = Field(ge=0)
    bytes_total: int = Field(ge=0)
    _rid = field_validator("request_id")(classmethod(lambda cls, v: _request_id(v)))


class CopyResult(_Msg):
    type: Literal["copy_result"]
    request_id: str
    status: Literal["copied", "failed"]
    destination: str = Field(default="", max_length=MAX_PATH_CHARS)
    size: int = Field(default=0, ge=0)
    hash: str = Field(default="", max_length=128, pattern=r"^[0-9a-f]*$")
    hash_algo: Literal["xxh3_128", ""] = ""
    reason: str = Field(default="", max_length=MAX_REASON_CHARS)
    failure: FailureKind | None = Field(default=None, description="failed only: what failed")
    _rid = field_validator("request_id")(classmethod(lambda cls, v: _request_id(v)))

    @model_validator(mode="after")
    def _copied_has_its_hash(self) -> CopyResult:
        """A copy counts only with the hash the detector verified: xxh3-128, 32 hex digits."""
        if self.status == "copied" and (
            self.hash_algo != HASH_ALGO or not _HASH.fullmatch(self.hash)
        ):
            raise ValueError(
                f"a copied result needs hash_algo {HASH_ALGO!r} and a hash of 32 hex digits"
            )
        return self


def coded_reason(kind: str | None, reason: str) -> str:
    """``reason`` prefixed with its failure kind, ``[no_space] ...`` (pure)."""
    if kind is None or kind not in FAILURE_KINDS:
        return reason
    return f"[{kind}] {reason}"


def split_reason(reason: str) -> tuple[str | None, str]:
    """(failure kind, reason text) of a reason from :func:`coded_reason` (pure). A reason
    without a known prefix has no kind, unless it is an older detector's "destination full"."""
    match = _CODED_REASON.match(reason)
    if match and match.group(1) in FAILURE_KINDS:
        return match.group(1), reason[match.end() :]
    if reason.startswith(_LEGACY_NO_SPACE):
        return "no_space", reason
    return None, reason


class Welcome(_Msg):
    type: Literal["welcome"] = "welcome"
    detector_id: str
    max_files_per_list: int = MAX_FILES_PER_LIST


class CopyRequest(_Msg):
    type: Literal["copy_request"] = "copy_request"
    request_id: str
    card_id: str
    path: str
    size: int = Field(ge=0)
    mtime: float
    destination: str = Field(description="path relative to the share root, '/'-separated")
    priority: int = Field(description="lower runs first: QR candidates 0, footage 10")

    _p = field_validator("path", "destination")(classmethod(lambda cls, v: check_relative_path(v)))


class ErrorMessage(_Msg):
    type: Literal["error"] = "error"
    code: str
    message: str
    request_id: str | None = None
    retry_after: float | None = Field(
        None,
        ge=0,
        le=3600,
        description="rate_limited: seconds to wait before reconnecting (the hub then closes "
        "with 1013; the detector announces its cards again when it is back)",
    )


class CardStatus(_Msg):
    """What the hub knows of a card: may it be pulled out, is it nearly full."""

    type: Literal["card_status"] = "card_status"
    card_id: str
    outstanding: int = Field(ge=0, description="files listed but not imported yet")
    failed: int = Field(ge=0, description="files whose copy gave up: only on the card")
    safe_to_remove: bool
    nearly_full: bool
    free_bytes: int | None = Field(default=None, ge=0)
    capacity_bytes: int | None = Field(default=None, ge=0)
    skipped: int = Field(default=0, ge=0, description="files not listed or not accepted")
    _cid = field_validator("card_id")(classmethod(lambda cls, v: _card_id(v)))


class FilesRefused(_Msg):
    """Entries of a file_list the hub did not accept (the rest of the list was)."""

    type: Literal["files_refused"] = "files_refused"
    card_id: str
    files: list[SkippedFile] = Field(max_length=MAX_SKIPPED)
    more: int = Field(default=0, ge=0, description="further refused entries not listed")
    _cid = field_validator("card_id")(classmethod(lambda cls, v: _card_id(v)))


DetectorMessage = Annotated[
    CardInserted | FileList | CardRemoved | CopyProgress | CopyResult,
    Field(discriminator="type"),
]
HubMessage = Annotated[
    Welcome | CopyRequest | ErrorMessage | CardStatus | FilesRefused,
    Field(discriminator="type"),
]

_detector_adapter: TypeAdapter[DetectorMessage] = TypeAdapter(DetectorMessage)
_hub_adapter: TypeAdapter[HubMessage] = TypeAdapter(HubMessage)

_DETECTOR_TYPES = ("card_inserted", "file_list", "card_removed", "copy_progress", "copy_result")
_HUB_TYPES = ("welcome", "copy_request", "error", "card_status", "files_refused")


def _parse(raw: str | bytes, types: tuple[str, ...], max_files: int) -> dict[str, object]:
    if len(raw) > MAX_FRAME_BYTES:
        raise ProtocolError(
            f"frame of {len(raw)} bytes exceeds {MAX_FRAME_BYTES}", close_code=CLOSE_TOO_BIG
        )
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProtocolError(f"frame is not valid JSON: {exc}") from None
    except RecursionError:
        raise ProtocolError("frame nests too deeply to be a message") from None
    if not isinstance(data, dict):
        raise ProtocolError("frame must be a JSON object")
    version = data.get("v")
    if type(version) is not int or version != PROTOCOL_VERSION:  # not 1.0, not true
        raise ProtocolError(f"unsupported protocol version {data.get('v')!r}; this hub speaks 1")
    kind = data.get("type")
    if kind not in types:
        raise ProtocolError(f"unknown message type {kind!r}")
    files = data.get("files")
    if isinstance(files, list) and len(files) > max_files:
        raise ProtocolError(f"file list has {len(files)} entries; the limit is {max_files}")
    return data


def _has_escaped_surrogate(raw: str | bytes) -> bool:
    return bool(_ESCAPED_SURROGATE.search(raw.encode() if isinstance(raw, str) else raw))


def _refuse_unsafe_entries(data: dict[str, object]) -> list[SkippedFile]:
    """Take the entries with an unsafe path out of a file_list (in place); what was taken."""
    files = data.get("files")
    if data.get("type") != "file_list" or not isinstance(files, list):
        return []
    kept: list[object] = []
    refused: list[SkippedFile] = []
    for entry in files:
        path = entry.get("path") if isinstance(entry, dict) else None
        if isinstance(path, str):
            try:
                check_relative_path(path)
            except ValueError as exc:
                refused.append(SkippedFile(path=printable(path), reason=str(exc)))
                continue
        kept.append(entry)
    data["files"] = kept
    return refused


def _plausible_duration(value: object) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and 0 <= value <= MAX_DURATION_S
    )


def _drop_bad_durations(data: dict[str, object]) -> None:
    """Take an unbelievable ``duration`` out of its file_list entry (in place), logged: the
    file is still listed, and judged by its size."""
    files = data.get("files")
    if data.get("type") != "file_list" or not isinstance(files, list):
        return
    for entry in files:
        if not isinstance(entry, dict) or "duration" not in entry:
            continue
        value = entry["duration"]
        if value is None or _plausible_duration(value):
            continue
        del entry["duration"]
        path = entry.get("path")
        logger.warning(
            "card %s: entry %s: duration %s is not 0-%d s; left out (the size rule decides "
            "whether it is a QR candidate)",
            printable(str(data.get("card_id")), 130),
            printable(path) if isinstance(path, str) else "?",
            printable(repr(value), 40),
            MAX_DURATION_S,
        )


def _check_text(data: dict[str, object]) -> None:
    try:
        json.dumps(data, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise ProtocolError(
            "frame holds text that is not valid Unicode (a lone surrogate)"
        ) from None


def _describe(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"])
    more = f" (+{exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"invalid message: {where}: {first['msg']}{more}"


DetectorFrame = CardInserted | FileList | CardRemoved | CopyProgress | CopyResult


def parse_detector_message(
    raw: str | bytes, *, max_files: int = MAX_FILES_PER_LIST
) -> DetectorFrame:
    """Validate one frame sent by a detector, strictly: one bad entry refuses the frame.

    Raises ProtocolError with a reason to send back.
    """
    data = _parse(raw, _DETECTOR_TYPES, max_files)
    if _has_escaped_surrogate(raw):
        _check_text(data)
    try:
        return _detector_adapter.validate_python(data)
    except ValidationError as exc:
        raise ProtocolError(_describe(exc)) from None


def parse_detector_frame(
    raw: str | bytes, *, max_files: int = MAX_FILES_PER_LIST
) -> tuple[DetectorFrame, list[SkippedFile]]:
    """Validate one frame sent by a detector, refusing unsafe file_list entries one by one
    (and dropping an unbelievable ``duration`` from its entry, logged).

    Returns the message (a file_list holds only its acceptable entries) and the refused
    entries (path in printable form, reason). A frame that is not a valid message raises
    ProtocolError as in :func:`parse_detector_message`.
    """
    data = _parse(raw, _DETECTOR_TYPES, max_files)
    refused = _refuse_unsafe_entries(data)
    _drop_bad_durations(data)
    if _has_escaped_surrogate(raw):
        _check_text(data)
    try:
        return _detector_adapter.validate_python(data), refused
    except ValidationError as exc:
        raise ProtocolError(_describe(exc)) from None


def parse_hub_message(
    raw: str | bytes,
) -> Welcome | CopyRequest | ErrorMessage | CardStatus | FilesRefused:
    """Validate one frame sent by the hub (the detector's side)."""
    data = _parse(raw, _HUB_TYPES, MAX_FILES_PER_LIST)
    try:
        return _hub_adapter.validate_python(data)
    except ValidationError as exc:
        raise ProtocolError(_describe(exc)) from None


def dump(message: BaseModel) -> str:
    """Serialise a message for the wire. Unset optional fields (None) are left out: a peer
    that does not know a newer optional field is then never sent it."""
    return message.model_dump_json(exclude_none=True)
