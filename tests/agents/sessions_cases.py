"""Card layouts for the grouping's pure tests: GoPro clips by camera counter and tickets."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from agents.qr.payload import Booking
from agents.sessions import CardFile, FileKind, QrOutcome

T0 = datetime(2024, 6, 1, 10, 0, tzinfo=UTC)

BK_A = Booking("BK-A", "Ana", "video")
BK_B = Booking("BK-B", "Ben", "video")


def clip(
    n: int,
    minute: float,
    kind: FileKind = FileKind.FOOTAGE,
    status: QrOutcome | None = None,
    booking: Booking | None = None,
    *,
    unreadable: str = "",
    folder: str = "DCIM/100GOPRO",
    at: datetime | None = None,
) -> CardFile:
    """A GoPro clip with camera counter ``n`` (``GX01{n:04d}.MP4``), id ``c<n>``."""
    name = f"GX01{n:04d}.MP4"
    return CardFile(
        f"c{n}" if folder.endswith("100GOPRO") else f"c{n}@{folder[-8:]}",
        name,
        f"{folder}/{name}",
        at or T0 + timedelta(minutes=minute),
        kind,
        status,
        booking,
        unreadable=unreadable,
    )


def ticket(n: int, minute: float, booking: Booking | None) -> CardFile:
    status = QrOutcome.DECODED if booking else QrOutcome.NO_QR
    return clip(n, minute, FileKind.QR_CANDIDATE, status, booking)
