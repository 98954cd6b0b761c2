"""A small GPMF writer: KLV as GoPro documents it (github.com/gopro/gpmf-parser, its README).

Each item is a 4-byte FourCC key, a 1-byte type character, a 1-byte struct size, a 2-byte repeat
count (big-endian) and `struct size * repeat` bytes of big-endian data, padded to 32 bits.
Nested items (DEVC, STRM) have type 0, struct size 1 and the byte length of their contents as the
repeat. One payload (one MP4 sample of the `gpmd` track, usually one second) is one DEVC holding
one STRM per sensor: STNM name, SIUN/UNIT units, SCAL divisor(s), TSMP running sample total,
then the samples (ACCL, GYRO, GPS5 with GPSF/GPSU/GPSP, CORI). Pure: bytes in, bytes out; used
for synthetic jumps (`agents/telemetry/synthetic.py`) and their round-trip test.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import numpy.typing as npt

MAX_REPEAT = 0xFFFF
_NEST = b"\x00"
# struct format of one element per GPMF type character
_TYPE_FORMAT = {"b": "b", "B": "B", "s": "h", "S": "H", "l": "i", "L": "I", "f": "f", "d": "d",
                "J": "Q", "j": "q"}  # fmt: skip


def _padded(data: bytes) -> bytes:
    return data + b"\x00" * (-len(data) % 4)


def klv(key: bytes, type_char: str, struct_size: int, repeat: int, data: bytes) -> bytes:
    """One KLV item; `data` must be `struct_size * repeat` bytes (padding is added here)."""
    if len(key) != 4:
        raise ValueError(f"a GPMF key is 4 bytes, got {key!r}")
    if not 0 < struct_size < 256 or not 0 <= repeat <= MAX_REPEAT:
        raise ValueError(f"{key!r}: struct size {struct_size} or repeat {repeat} out of range")
    if len(data) != struct_size * repeat:
        raise ValueError(f"{key!r}: {len(data)} bytes is not {struct_size} x {repeat}")
    type_byte = _NEST if type_char == "\x00" else type_char.encode("ascii")
    return key + type_byte + struct.pack(">BH", struct_size, repeat) + _padded(data)


def nest(key: bytes, children: list[bytes]) -> bytes:
    body = b"".join(children)
    if len(body) > MAX_REPEAT:
        raise ValueError(f"{key!r}: {len(body)} bytes of nested data is over {MAX_REPEAT}")
    return klv(key, "\x00", 1, len(body), body)


def string(key: bytes, text: str | bytes) -> bytes:
    raw = text.encode("latin-1") if isinstance(text, str) else text
    return klv(key, "c", 1, len(raw), raw)


def numbers(key: bytes, type_char: str, values: npt.ArrayLike) -> bytes:
    """Samples of one numeric type: a 1-D array is one element per sample, 2-D one row each."""
    array = np.asarray(values)
    if array.ndim == 0:
        array = array.reshape(1, 1)
    elif array.ndim == 1:
        array = array.reshape(-1, 1)
    fmt = _TYPE_FORMAT[type_char]
    size = struct.calcsize(fmt) * array.shape[1]
    data = struct.pack(f">{array.size}{fmt}", *array.ravel().tolist())
    return klv(key, type_char, size, array.shape[0], data)


def gpsu(when: datetime) -> bytes:
    """GPSU: UTC as `yymmddhhmmss.sss`, type U (16 bytes)."""
    text = when.strftime("%y%m%d%H%M%S") + f".{when.microsecond // 1000:03d}"
    return klv(b"GPSU", "U", 16, 1, text.encode("ascii"))


@dataclass(frozen=True)
class SensorStream:
    """One STRM: `key` samples (n, k) already divided by nothing: the writer multiplies by `scale`
    and rounds to `type_char`, as a camera stores them."""

    key: bytes
    name: str
    units: bytes
    samples: npt.NDArray[np.float64]
    scale: tuple[int, ...]
    type_char: str = "s"
    extra: tuple[bytes, ...] = field(default=())  # items before the samples (GPSF, GPSU ...)


def sensor_stream(stream: SensorStream, total_samples: int) -> bytes:
    """The STRM for one payload; `total_samples` is TSMP, the running count including these."""
    scale = np.asarray(stream.scale, dtype=np.float64)
    raw = np.rint(stream.samples * scale)
    info = np.iinfo(np.int16 if stream.type_char == "s" else np.int32)
    raw = np.clip(raw, info.min, info.max).astype(np.int64)
    scale_type = "s" if max(stream.scale) <= 0x7FFF else "l"
    units_key = b"UNIT" if stream.key.startswith(b"GPS") else b"SIUN"
    children = [
        string(b"STNM", stream.name),
        numbers(b"TSMP", "L", total_samples),
        *stream.extra,
        string(units_key, stream.units),
        numbers(b"SCAL", scale_type, np.asarray(stream.scale)),
        numbers(stream.key, stream.type_char, raw),
    ]
    return nest(b"STRM", children)


def payload(device_name: str, streams: list[bytes], device_id: int = 1) -> bytes:
    """One gpmd sample: a DEVC of already built STRMs."""
    return nest(b"DEVC", [numbers(b"DVID", "L", device_id), string(b"DVNM", device_name), *streams])
