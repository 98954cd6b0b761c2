"""What a booking bought: the product's free text -> the jump's deliverables (pure).

A booking's product comes from its ticket's QR (``product``/``package``/``media``/``option``,
agents/qr/payload.py) or, for a session without one, from the dropzone's default
(`default_product`). Booking systems write it in many ways; the rule, case-insensitive:

- the text is split into words (anything but letters and digits separates; ``+``, ``&``,
  ``and``, ``with``, ``plus`` join);
- video words: video(s), handcam, hand-cam, film, movie, clip, vid; photo words: photo(s),
  picture(s), pic(s), still(s), image(s), foto(s), photography; ``both``, ``combo``, ``all``
  mean video and photos; filler words (package, pack, media, option, only, the, hd, 4k, full)
  say nothing;
- an empty product is the dropzone's default, silently;
- anything else — no video or photo word, or a word this rule does not know, or a negation
  ("no photos", "without video") — is never guessed silently: what could be read is delivered
  (nothing readable: the default) and the decision carries a warning saying what was read and
  what was done, which the caller puts on the session for a person to see.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from enum import StrEnum


class Deliverable(StrEnum):
    VIDEO = "video"
    PHOTOS = "photos"


_VIDEO_WORDS = frozenset({"video", "videos", "handcam", "film", "movie", "clip", "vid", "vids"})
_PHOTO_WORDS = frozenset(
    {
        "photo",
        "photos",
        "picture",
        "pictures",
        "pic",
        "pics",
        "still",
        "stills",
        "image",
        "images",
        "foto",
        "fotos",
        "photography",
    }
)
_BOTH_WORDS = frozenset({"both", "combo", "all"})
_FILLER = frozenset(
    {"and", "with", "plus", "package", "pack", "media", "option", "only", "the", "hd", "4k", "full"}
)
_NEGATION = frozenset({"no", "not", "without", "none", "nothing", "excluding"})
_JOINED = {"hand cam": "handcam", "hand-cam": "handcam"}
_WORD = re.compile(r"[^\W_]+")

ALL = frozenset(Deliverable)
#: the values `default_product` may take (streams/settings.py validates against the same list)
DEFAULTS: dict[str, frozenset[Deliverable]] = {
    "video": frozenset({Deliverable.VIDEO}),
    "photos": frozenset({Deliverable.PHOTOS}),
    "both": ALL,
}


@dataclass(frozen=True)
class ProductDecision:
    """The deliverables of one product text, and a warning when it was not fully understood."""

    product: str  # as read ('' when there was none)
    deliverables: frozenset[Deliverable]
    warning: str = ""

    @property
    def video(self) -> bool:
        return Deliverable.VIDEO in self.deliverables

    @property
    def photos(self) -> bool:
        return Deliverable.PHOTOS in self.deliverables


def describe(deliverables: frozenset[Deliverable]) -> str:
    """'video', 'photos' or 'video and photos'."""
    return " and ".join(d.value for d in Deliverable if d in deliverables) or "nothing"


def default_deliverables(default_product: str) -> frozenset[Deliverable]:
    """The dropzone's default; ValueError for a default this rule does not know."""
    try:
        return DEFAULTS[default_product.strip().lower()]
    except KeyError:
        raise ValueError(
            f"default product {default_product!r} must be one of {sorted(DEFAULTS)}"
        ) from None


def _words(product: str) -> list[str]:
    text = unicodedata.normalize("NFKC", product).casefold()
    for joined, word in _JOINED.items():
        text = text.replace(joined, word)
    return _WORD.findall(text)


def deliverables_of(product: str | None, default_product: str = "video") -> ProductDecision:
    """The deliverables `product` names (see the module's rule); the default when it is empty."""
    default = default_deliverables(default_product)
    read = " ".join((product or "").split())
    words = _words(read)
    if not words:
        return ProductDecision(read, default)
    if any(w in _NEGATION for w in words):
        return ProductDecision(
            read,
            default,
            f"product {read!r} not understood (a negation): delivering the default "
            f"({describe(default)}); correct the booking if that is wrong",
        )
    found: set[Deliverable] = set()
    unknown: list[str] = []
    for w in words:
        if w in _VIDEO_WORDS:
            found.add(Deliverable.VIDEO)
        elif w in _PHOTO_WORDS:
            found.add(Deliverable.PHOTOS)
        elif w in _BOTH_WORDS:
            found.update(ALL)
        elif w not in _FILLER:
            unknown.append(w)
    if not found:
        return ProductDecision(
            read,
            default,
            f"product {read!r} not understood: delivering the default ({describe(default)})",
        )
    chosen = frozenset(found)
    if unknown:
        return ProductDecision(
            read,
            chosen,
            f"product {read!r}: {', '.join(repr(u) for u in unknown)} not understood; "
            f"delivering {describe(chosen)}",
        )
    return ProductDecision(read, chosen)
