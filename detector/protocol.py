"""The detector <-> hub WebSocket wire protocol (version 1).

One dependency-light module (pydantic only) shared by the station client and the hub: the hub
imports it, the detector never imports the backend. Every frame is one JSON object with a
protocol version ``v`` and a ``type``; anything else is refused with a clear reason.

Detector -> hub: ``card_inserted``, ``file_list``, ``card_removed``, ``copy_progress``,
``copy_result``.  Hub -> detector: ``welcome``, ``copy_request``, ``error``.

Authentication happens at the handshake, not in a message: ``Authorization: Bearer <token>``
(or ``?token=`` for clients that cannot set headers).
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator

PROTOCOL_VERSION = 1

#: Largest frame either side accepts. A 20,000-file list is ~2.5 MB of JSON.
MAX_FRAME_BYTES = 16 * 1024 * 1024
#: Default cap on files in one list (the hub's setting may lower it).
MAX_FILES_PER_LIST = 20_000
MAX_PATH_CHARS = 1024
MAX_REASON_CHARS = 2000

#: WebSocket close codes the hub uses (RFC 6455 plus the 4000 private range).
CLOSE_UNSUPPORTED = 1003  # not JSON, wrong schema, unknown type
CLOSE_POLICY = 1008  # authentication refused
CLOSE_TOO_BIG = 1009  # frame over MAX_FRAME_BYTES
CLOSE_REPLACED = 4000  # the same detector connected again elsewhere

_CARD_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:\-]{0,127}$")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

#: Extensions of camera side files that are never footage (proxies, thumbnails, metadata).
PROXY_EXTENSIONS = frozenset({".lrv", ".thm", ".xmp", ".sav", ".glv", ".jpg", ".gpr", ".wav"})
#: Extensions of camera video files.
VIDEO_EXTENSIONS = frozenset({".mp4", ".mov", ".m4v", ".avi", ".mts", ".m2ts", ".insv", ".360"})


class ProtocolError(ValueError):
    """A frame that does not follow the protocol; ``reason`` is safe to send back."""

    def __init__(self, reason: str, *, close_code: int = CLOSE_UNSUPPORTED) -> None:
        super().__init__(reason)
        self.reason = reason
        self.close_code = close_code


def check_relative_path(value: str) -> str:
    """Validate a card-relative POSIX path: no NUL/control chars, not absolute, no ``..``."""
    if not value:
        raise ValueError("path is empty")
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
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=False)
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

    model_config = ConfigDict(extra="forbid", frozen=True)
    path: str = Field(description="path relative to the card root, '/'-separated")
    size: int = Field(ge=0, le=1 << 44, description="bytes")
    mtime: float = Field(ge=0, le=1e11, description="seconds since the epoch, as the card says")
    kind: Literal["video", "proxy", "other"] = "video"

    _path = field_validator("path")(classmethod(lambda cls, v: check_relative_path(v)))


class CardInserted(_Msg):
    type: Literal["card_inserted"]
    card_id: str
    label: str = Field(default="", max_length=200)
    _cid = field_validator("card_id")(classmethod(lambda cls, v: _card_id(v)))


class FileList(_Msg):
    type: Literal["file_list"]
    card_id: str
    files: list[FileEntry]
    _cid = field_validator("card_id")(classmethod(lambda cls, v: _card_id(v)))


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
    hash_algo: Literal["xxh3_128", "xxh64", "sha256", "blake3", ""] = ""
    reason: str = Field(default="", max_length=MAX_REASON_CHARS)
    _rid = field_validator("request_id")(classmethod(lambda cls, v: _request_id(v)))


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


DetectorMessage = Annotated[
    CardInserted | FileList | CardRemoved | CopyProgress | CopyResult,
    Field(discriminator="type"),
]
HubMessage = Annotated[Welcome | CopyRequest | ErrorMessage, Field(discriminator="type")]

_detector_adapter: TypeAdapter[DetectorMessage] = TypeAdapter(DetectorMessage)
_hub_adapter: TypeAdapter[HubMessage] = TypeAdapter(HubMessage)

_DETECTOR_TYPES = ("card_inserted", "file_list", "card_removed", "copy_progress", "copy_result")
_HUB_TYPES = ("welcome", "copy_request", "error")


def _parse(raw: str | bytes, types: tuple[str, ...], max_files: int) -> dict[str, object]:
    if len(raw) > MAX_FRAME_BYTES:
        raise ProtocolError(
            f"frame of {len(raw)} bytes exceeds {MAX_FRAME_BYTES}", close_code=CLOSE_TOO_BIG
        )
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProtocolError(f"frame is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ProtocolError("frame must be a JSON object")
    if data.get("v") != PROTOCOL_VERSION:
        raise ProtocolError(f"unsupported protocol version {data.get('v')!r}; this hub speaks 1")
    kind = data.get("type")
    if kind not in types:
        raise ProtocolError(f"unknown message type {kind!r}")
    files = data.get("files")
    if isinstance(files, list) and len(files) > max_files:
        raise ProtocolError(f"file list has {len(files)} entries; the limit is {max_files}")
    return data


def _describe(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"])
    more = f" (+{exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"invalid message: {where}: {first['msg']}{more}"


def parse_detector_message(
    raw: str | bytes, *, max_files: int = MAX_FILES_PER_LIST
) -> CardInserted | FileList | CardRemoved | CopyProgress | CopyResult:
    """Validate one frame sent by a detector; raises ProtocolError with a reason to send back."""
    data = _parse(raw, _DETECTOR_TYPES, max_files)
    try:
        return _detector_adapter.validate_python(data)
    except ValidationError as exc:
        raise ProtocolError(_describe(exc)) from None


def parse_hub_message(raw: str | bytes) -> Welcome | CopyRequest | ErrorMessage:
    """Validate one frame sent by the hub (the detector's side)."""
    data = _parse(raw, _HUB_TYPES, MAX_FILES_PER_LIST)
    try:
        return _hub_adapter.validate_python(data)
    except ValidationError as exc:
        raise ProtocolError(_describe(exc)) from None


def dump(message: BaseModel) -> str:
    """Serialise a message for the wire."""
    return message.model_dump_json()
