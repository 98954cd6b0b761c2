"""Parsing of booking payloads read from ticket QR codes.

Booking systems print different things into the QR: a JSON object, a URL with query parameters,
a ``key=value`` list, or just the booking id. :func:`parse_booking` turns any of those into a
:class:`Booking` or raises :class:`NotABooking` with a human-readable ``reason``.

The ``key=value`` (and ``Key: value``) rule, so names with commas and ampersands survive:

- pairs are separated by ``;``, ``|`` or a line break, always;
- ``&`` separates only when the text after it looks like the next pair: a known field name
  (booking, name, product ... below; spaces allowed around it) or ``[A-Za-z_][A-Za-z0-9_ .-]*``
  directly followed by ``=`` — so ``name=Tom & Jerry&booking=BK1`` keeps "Tom & Jerry";
- ``,`` separates only before a *known* field name and ``=`` (``bid=TX555,passenger=Li Wei``),
  never otherwise — so ``name=Smith, John;booking=BK1`` keeps "Smith, John";
- a pair's key ends at its first ``=`` or ``:``; surrounding quotes (``"..."``/``'...'``) and
  spaces are stripped from the value, then it is percent-decoded as UTF-8 (``%C3%BC`` -> ü);
  ``+`` stays a plus (it means a space only in URL queries); an invalid escape (``100%``,
  ``%FF`` alone) is kept literally and noted (:attr:`Booking.notes`, a warning in the log).

The payload is untrusted (anyone can print a QR): the booking id ends up in file names and the
passenger name in FFmpeg filter text, so the id is restricted to a small ASCII charset and names
are normalised, length-limited and stripped of control and bidi-override characters. Escaping
for FFmpeg is the renderer's job; this module only guarantees what the fields can contain.
"""

from __future__ import annotations

import json
import logging
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlsplit

__all__ = [
    "Booking",
    "NotABooking",
    "PayloadSettings",
    "email_problem",
    "parse_booking",
    "try_parse_booking",
]

logger = logging.getLogger(__name__)

# Bidi overrides/isolates can make a file name or a title render as something else; legitimate
# right-to-left names do not need them (the letters carry their own direction).
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f")
# Separators a raw key=value / JSON payload may contain; every other control char is refused.
_ALLOWED_RAW_CONTROLS = frozenset("\n\r\t")
_BOOKING_ID_CHARSET = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")
_KV_HARD_SPLIT = re.compile(r"[;|\n\r]+")
_KV_SOFT_SEPARATOR = re.compile(r"[&,]")
# what may follow a soft separator for it to separate: a key, then '='
_KV_NEXT_KEY = re.compile(r"(\s*)([A-Za-z_][A-Za-z0-9_ .-]{0,63}?)\s*=")
_KV_PAIR = re.compile(r"^\s*([^=:]{1,64}?)\s*[=:]\s*(.*?)\s*$", re.DOTALL)
_PERCENT_RUN = re.compile(r"(?:%[0-9A-Fa-f]{2})+")
_QUOTES = (('"', '"'), ("'", "'"), ("\u201c", "\u201d"), ("\u00ab", "\u00bb"))


@dataclass(frozen=True)
class PayloadSettings:
    """How payload fields are named and how much of them is accepted."""

    booking_id_keys: tuple[str, ...] = (
        "booking",
        "booking_id",
        "bookingid",
        "booking_ref",
        "bid",
        "ref",
        "reference",
        "order",
        "order_id",
        "ticket",
        "ticket_id",
    )
    passenger_keys: tuple[str, ...] = (
        "name",
        "passenger",
        "passenger_name",
        "pax",
        "customer",
        "guest",
        "full_name",
    )
    product_keys: tuple[str, ...] = ("product", "package", "media", "option")
    # issue 16: where the passenger's link is emailed to ("e-mail" normalises to "e_mail")
    email_keys: tuple[str, ...] = ("email", "e_mail", "mail")
    # A payload that is nothing but an id must look like one, so stray text never becomes a booking.
    bare_id_pattern: str = r"[A-Z]{1,6}-?\d{3,12}"
    max_payload_chars: int = 2048
    min_booking_id_chars: int = 3
    max_booking_id_chars: int = 40
    max_passenger_chars: int = 120
    max_product_chars: int = 60
    max_email_chars: int = 254  # RFC 5321's path limit


@dataclass(frozen=True)
class Booking:
    """A booking read from a ticket: id safe for file names, optional passenger, product and
    email; `email_warning` says why an email the ticket carried was ignored (never a refusal:
    a bad address must not cost the passenger their video)."""

    booking_id: str
    passenger: str | None = None
    product: str | None = None
    email: str | None = None
    email_warning: str = ""
    # what parsing had to guess or keep as it was (an invalid percent escape); not compared
    notes: tuple[str, ...] = field(default=(), compare=False)


class NotABooking(ValueError):
    """The payload is not a booking; permanent (re-reading the same text gives the same answer)."""

    retryable = False

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def try_parse_booking(text: str, settings: PayloadSettings | None = None) -> Booking | NotABooking:
    """Like :func:`parse_booking` but returns the failure instead of raising it."""
    try:
        return parse_booking(text, settings)
    except NotABooking as exc:
        return exc


def parse_booking(text: str, settings: PayloadSettings | None = None) -> Booking:
    """Parse a QR payload into a :class:`Booking`; raise :class:`NotABooking` with a reason."""
    cfg = settings or PayloadSettings()
    if not isinstance(text, str):
        raise NotABooking("payload is not text")
    if len(text) > cfg.max_payload_chars:
        raise NotABooking(f"payload longer than {cfg.max_payload_chars} characters")
    stripped = text.strip()
    if not stripped:
        raise NotABooking("empty payload")
    bad = _first_bad_char(stripped, allowed=_ALLOWED_RAW_CONTROLS)
    if bad is not None:
        raise NotABooking(f"payload contains a control character (U+{ord(bad):04X})")

    notes: list[str] = []
    fields = _fields_of(stripped, cfg, notes)
    if fields is None:
        if re.fullmatch(cfg.bare_id_pattern, stripped):
            return Booking(booking_id=_clean_booking_id(stripped, cfg))
        raise NotABooking("payload is neither JSON, URL, key=value list nor a booking id")
    return _booking_from_fields(fields, cfg, tuple(notes))


def _fields_of(text: str, cfg: PayloadSettings, notes: list[str]) -> dict[str, str] | None:
    """Key -> value for structured payloads, None when the text has no structure."""
    if text.startswith("{"):
        return _json_fields(text)
    if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", text):
        return _url_fields(text, cfg)
    if "=" in text or (":" in text and _KV_HARD_SPLIT.search(text)):
        return _kv_fields(text, cfg, notes)
    return None


def _json_fields(text: str) -> dict[str, str]:
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise NotABooking(f"invalid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise NotABooking("JSON payload is not an object")
    fields: dict[str, str] = {}
    for key, value in data.items():
        # One level of nesting covers {"booking": {"id": ..., "name": ...}} shapes.
        if isinstance(value, dict):
            for sub_key, sub_value in value.items():
                scalar = _scalar(sub_value)
                if scalar is not None:
                    fields.setdefault(_norm_key(f"{key}_{sub_key}"), scalar)
                    fields.setdefault(_norm_key(str(sub_key)), scalar)
            continue
        scalar = _scalar(value)
        if scalar is not None:
            fields[_norm_key(str(key))] = scalar
    return _alias_nested_ids(fields)


def _alias_nested_ids(fields: dict[str, str]) -> dict[str, str]:
    # {"booking": {"id": "BK-1"}} flattens to booking_id; keep a plain "id" out of it otherwise.
    fields.pop("id", None)
    return fields


def _scalar(value: object) -> str | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | str):
        return str(value)
    return None


def _url_fields(text: str, cfg: PayloadSettings) -> dict[str, str]:
    try:
        parts = urlsplit(text)
    except ValueError as exc:
        raise NotABooking(f"invalid URL: {exc}") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise NotABooking(f"URL scheme {parts.scheme!r} is not http(s)")
    fields: dict[str, str] = {}
    for query in (parts.query, parts.fragment):
        for key, value in parse_qsl(query, keep_blank_values=False):
            fields.setdefault(_norm_key(key), value)
    if not any(key in fields for key in cfg.booking_id_keys):
        # https://book.example/t/BK-12345 — the id as the last path segment.
        last = parts.path.rstrip("/").rsplit("/", 1)[-1]
        if last and re.fullmatch(cfg.bare_id_pattern, last):
            fields[cfg.booking_id_keys[0]] = last
    return fields


def _kv_fields(text: str, cfg: PayloadSettings, notes: list[str]) -> dict[str, str]:
    """Key -> value of a ``key=value`` list, by the rule in the module docstring."""
    known = frozenset(cfg.booking_id_keys + cfg.passenger_keys + cfg.product_keys)
    fields: dict[str, str] = {}
    for line in _KV_HARD_SPLIT.split(text):
        for part in _split_soft(line, known):
            match = _KV_PAIR.match(part)
            if match is None or not part.strip():
                continue
            key = _norm_key(match.group(1))
            value = _percent_decode(_unquote(match.group(2)), key, notes)
            fields.setdefault(key, value)
    return fields


def _split_soft(line: str, known: frozenset[str]) -> list[str]:
    """Split one line at the ``&`` and ``,`` that start a new pair (see the module docstring)."""
    parts: list[str] = []
    start = 0
    for sep in _KV_SOFT_SEPARATOR.finditer(line):
        nxt = _KV_NEXT_KEY.match(line, sep.end())
        if nxt is None:
            continue
        is_known = _norm_key(nxt.group(2)) in known
        if is_known or (sep.group() == "&" and not nxt.group(1)):
            parts.append(line[start : sep.start()])
            start = sep.end()
    parts.append(line[start:])
    return parts


def _unquote(value: str) -> str:
    value = value.strip()
    for opening, closing in _QUOTES:
        if len(value) >= 2 and value.startswith(opening) and value.endswith(closing):
            return value[1:-1].strip()
    return value


def _percent_decode(value: str, key: str, notes: list[str]) -> str:
    """Percent-decode as UTF-8; what does not decode is kept literally and noted."""
    if "%" not in value:
        return value

    def decode(run: re.Match[str]) -> str:
        text = bytes.fromhex(run.group().replace("%", "")).decode("utf-8", "surrogateescape")
        # bytes that are not UTF-8 came back as lone surrogates: put their escapes back
        kept = "".join(f"%{ord(ch) - 0xDC00:02X}" if 0xDC80 <= ord(ch) <= 0xDCFF else ch
                       for ch in text)  # fmt: skip
        if kept != text:
            bad = "".join(f"%{ord(ch) - 0xDC00:02X}" for ch in text if 0xDC80 <= ord(ch) <= 0xDCFF)
            notes.append(f"{key}: {bad} is not UTF-8 text; kept as it was")
        return kept

    decoded = _PERCENT_RUN.sub(decode, value)
    stray = _PERCENT_RUN.sub("", value).count("%")
    if stray:
        notes.append(f"{key}: a '%' not followed by two hex digits; kept as it was")
    return decoded


def _norm_key(key: str) -> str:
    return re.sub(r"[\s.-]+", "_", key.strip().lower())


def _booking_from_fields(
    fields: Mapping[str, str], cfg: PayloadSettings, notes: tuple[str, ...] = ()
) -> Booking:
    raw_id = _pick(fields, cfg.booking_id_keys)
    if raw_id is None:
        raise NotABooking(
            "no booking id field (looked for: " + ", ".join(cfg.booking_id_keys) + ")"
        )
    booking_id = _clean_booking_id(raw_id.strip(), cfg)
    passenger = _clean_text(_pick(fields, cfg.passenger_keys), cfg.max_passenger_chars, "passenger")
    product = _clean_text(_pick(fields, cfg.product_keys), cfg.max_product_chars, "product")
    for note in notes:
        logger.warning("booking %s: QR payload %s", booking_id, note)
    email, email_warning = _email_of(_pick(fields, cfg.email_keys), cfg.max_email_chars)
    return Booking(
        booking_id=booking_id,
        passenger=passenger,
        product=product,
        notes=notes,
        email=email,
        email_warning=email_warning,
    )


# One address, nothing more: local@domain.tld, no spaces, quotes, angle brackets or commas (a
# header injection or a second recipient is never possible), a dotted domain of LDH labels.
_EMAIL = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]{1,64}@"
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}"
)


def email_problem(address: str, limit: int = 254) -> str | None:
    """Why `address` is not one sane email address, None when it is (pure; shared with the
    assign command's check)."""
    if len(address) > limit:
        return f"longer than {limit} characters"
    if not _EMAIL.fullmatch(address):
        return "not an address like name@example.com"
    local = address.split("@", 1)[0]
    if local.startswith(".") or local.endswith(".") or ".." in address:
        return "not an address like name@example.com (dots)"
    return None


def _email_of(raw: str | None, limit: int) -> tuple[str | None, str]:
    """The ticket's email, or None and why it was ignored."""
    if raw is None:
        return None, ""
    text = raw.strip()
    if text.lower().startswith("mailto:"):
        text = text[7:].strip()
    shown = repr(text[:60] + ("…" if len(text) > 60 else ""))
    problem = email_problem(text, limit)
    if problem is not None:
        return None, f"ticket email {shown} ignored ({problem}): no email will be sent"
    return text, ""


def _pick(fields: Mapping[str, str], keys: tuple[str, ...]) -> str | None:
    for key in keys:
        value = fields.get(key)
        if value is not None and value.strip():
            return value
    return None


def _clean_booking_id(raw: str, cfg: PayloadSettings) -> str:
    if len(raw) < cfg.min_booking_id_chars:
        raise NotABooking(f"booking id shorter than {cfg.min_booking_id_chars} characters")
    if len(raw) > cfg.max_booking_id_chars:
        raise NotABooking(f"booking id longer than {cfg.max_booking_id_chars} characters")
    if not _BOOKING_ID_CHARSET.fullmatch(raw):
        raise NotABooking("booking id may only hold ASCII letters, digits, '-' and '_'")
    return raw


def _clean_text(raw: str | None, limit: int, what: str) -> str | None:
    if raw is None:
        return None
    bad = _first_bad_char(raw, allowed=frozenset())
    if bad is not None:
        raise NotABooking(f"{what} contains a control character (U+{ord(bad):04X})")
    text = " ".join(unicodedata.normalize("NFC", raw).split())
    if not text:
        return None
    # Truncate rather than refuse: a long name should not cost the passenger their video.
    return text[:limit].rstrip() or None


def _first_bad_char(text: str, *, allowed: frozenset[str]) -> str | None:
    for char in text:
        if char in allowed:
            continue
        if char in _BIDI_CONTROLS or unicodedata.category(char) in ("Cc", "Cs"):
            return char
    return None
