"""The passenger page's HTML (pure): the page itself and the plain pages that say why not.

Server-rendered, no script, no external asset (one small inline style sheet), every piece of
outside text (the passenger's name, the dropzone's) escaped. Media URLs are relative to the
link (``/p/<token>/video``, ``/poster``, ``/photos/<n>``, ``/photos.zip``, ``/logo``): the page
never names a path of the share or the output folder.
"""

from __future__ import annotations

from dataclasses import dataclass
from html import escape

from streams.hub.passenger_view import PageView

#: Seconds between reloads of a page whose video or photos are still being made.
REFRESH_S = 60

CSS = """
*{box-sizing:border-box}
body{margin:0;font:16px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;
background:#0f1720;color:#e8eef4}
header{display:flex;align-items:center;gap:12px;padding:14px 18px;background:#16212c}
header img{height:40px;width:auto}
header .dz{font-weight:600;letter-spacing:.02em}
main{max-width:1100px;margin:0 auto;padding:18px}
h1{font-size:1.6rem;margin:.2em 0 .6em}
video{width:100%;max-height:75vh;background:#000;border-radius:8px}
.downloads{display:flex;flex-wrap:wrap;gap:10px;margin:14px 0 22px}
.button{display:inline-block;padding:10px 16px;border-radius:8px;background:#2f7de1;
color:#fff;text-decoration:none;font-weight:600}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(160px,1fr));gap:8px}
.grid a{display:block;aspect-ratio:4/3;overflow:hidden;border-radius:6px;background:#000}
.grid img{width:100%;height:100%;object-fit:cover;display:block}
.note{padding:12px 14px;border-radius:8px;background:#1d2a37;margin:12px 0}
footer{color:#8fa3b5;font-size:.85rem;text-align:center;padding:24px}
@media (max-width:600px){main{padding:12px}h1{font-size:1.3rem}
.grid{grid-template-columns:repeat(2,1fr)}.button{flex:1 1 100%;text-align:center}}
"""

#: Headers of every page and media answer: the token in the address must not leave the site
#: (no Referer), the page must not be cached where revocation cannot reach it, nor indexed.
SECURITY_HEADERS = {
    "Referrer-Policy": "no-referrer",
    "X-Robots-Tag": "noindex, nofollow",
    "X-Content-Type-Options": "nosniff",
}
PAGE_HEADERS = {
    **SECURITY_HEADERS,
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'none'; img-src 'self'; media-src 'self'; "
    "style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
}


@dataclass(frozen=True)
class Brand:
    """The dropzone as the page shows it."""

    name: str
    has_logo: bool


def _document(title: str, brand: Brand, base: str, body: str, refresh: int | None) -> str:
    meta = f'<meta http-equiv="refresh" content="{refresh}">' if refresh else ""
    logo = f'<img src="{base}/logo" alt="">' if brand.has_logo and base else ""
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f'<meta name="robots" content="noindex">{meta}<title>{escape(title)}</title>'
        f"<style>{CSS}</style></head><body>"
        f'<header>{logo}<span class="dz">{escape(brand.name)}</span></header>'
        f"<main>{body}</main>"
        f"<footer>{escape(brand.name)}</footer></body></html>"
    )


def _videos(view: PageView, base: str) -> str:
    parts: list[str] = []
    for i, video in enumerate(view.videos, start=1):
        suffix = "" if i == 1 else f"/{i}"
        poster = f' poster="{base}/poster{suffix}"' if video.poster is not None else ""
        parts.append(
            f'<video controls preload="metadata" playsinline{poster} '
            f'src="{base}/video{suffix}" data-video="{i}"></video>'
        )
    return "".join(parts)


def _downloads(view: PageView, base: str) -> str:
    links: list[str] = []
    for i, _video in enumerate(view.videos, start=1):
        suffix = "" if i == 1 else f"/{i}"
        label = "Download the video" if len(view.videos) == 1 else f"Download video {i}"
        links.append(
            f'<a class="button" data-download="video" href="{base}/video{suffix}?download=1" '
            f"download>{label}</a>"
        )
    if view.photos:
        links.append(
            f'<a class="button" data-download="photos" href="{base}/photos.zip" download>'
            f"Download the photos (ZIP, {len(view.photos)})</a>"
        )
    return f'<div class="downloads">{"".join(links)}</div>' if links else ""


def _photos(view: PageView, base: str) -> str:
    if not view.photos:
        return ""
    cells = "".join(
        f'<a href="{base}/photos/{i}" data-photo="{i}">'
        f'<img src="{base}/photos/{i}" loading="lazy" alt="Photo {i}"></a>'
        for i in range(1, len(view.photos) + 1)
    )
    return f'<h2>Photos</h2><div class="grid" id="photos">{cells}</div>'


def _pending_note(view: PageView) -> str:
    if not view.pending:
        return ""
    what = " and ".join("your " + p for p in view.pending)
    return (
        f'<p class="note" data-pending>{escape(what)} {"is" if len(view.pending) == 1 else "are"}'
        " still being prepared; this page updates by itself.</p>"
    )


def render_page(view: PageView, brand: Brand, base: str) -> str:
    """The page of a booking with something to show; `base` is ``/p/<token>``."""
    who = view.passenger or "your jump"
    heading = f"<h1 id=passenger>{escape(who)}</h1>"
    body = heading + _videos(view, base) + _downloads(view, base) + _pending_note(view)
    body += _photos(view, base)
    title = f"{view.passenger} — {brand.name}" if view.passenger else brand.name
    return _document(title, brand, base, body, REFRESH_S if view.pending else None)


def render_preparing(view: PageView, brand: Brand, base: str) -> str:
    who = f", {view.passenger}" if view.passenger else ""
    body = (
        f"<h1 id=passenger>Thank you for jumping{escape(who)}!</h1>"
        '<p class="note" data-state="preparing">Your video is being prepared. This page '
        "updates by itself: keep it open, or come back to this link later.</p>"
    )
    return _document(f"Being prepared — {brand.name}", brand, base, body, REFRESH_S)


@dataclass(frozen=True)
class Message:
    """A page that says why there is nothing to show, and what to do."""

    state: str  #: data-state of the page (tests and people read it)
    title: str
    text: str


def render_message(message: Message, brand: Brand) -> str:
    body = (
        f"<h1>{escape(message.title)}</h1>"
        f'<p class="note" data-state="{escape(message.state)}">{escape(message.text)}</p>'
    )
    return _document(f"{message.title} — {brand.name}", brand, "", body, None)
