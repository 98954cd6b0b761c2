"""Links to media files for the status API: where the hub really serves a stored file, or none.

The hub serves two roots (the routes are in streams/hub/api_media.py):

- `/media/share/...`: the share root — copied footage (`imported_file.stored_path`, relative to
  the share: `cards/<card>/<file>`) and the render staging area (`<share>/renders/`);
- `/media/output/...`: the output folder — published videos and posters.

`media_url` (over `locate`) is the one place that turns a stored path into a link: a relative
path is relative to the share (that is what `stored_path` is), an absolute one is served from the
root it lies in (the deeper root when one holds the other). A link is made only for a regular
file that is there now (one stat): a staged video `publish` has moved, a clip deleted from the
share, or a path outside both roots has no link — null, or left out of a list — instead of a
link that 404s. Stats block: call `media_urls` (many paths, one worker thread) from the event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, unquote

from streams.hub import api_models as m
from streams.settings import Settings

SHARE = "share"  #: the mount of the share root: copied footage, render staging
OUTPUT = "output"  #: the mount of the output folder: published videos and posters


def confined(root: Path, candidate: str | Path) -> Path | None:
    """`candidate` (absolute, or relative to `root`) resolved, if it lies inside `root`."""
    try:
        base = root.resolve()
        path = Path(candidate)
        full = (path if path.is_absolute() else base / path).resolve()
    except (ValueError, OSError):  # NUL bytes, loops: not a path we serve
        return None
    return full if full.is_relative_to(base) and full != base else None


def is_served_file(full: Path) -> bool:
    """Whether ``full`` is a regular file we can open: a name too long for the file system, or
    any other OS refusal, is simply not one (a 404, never a 500)."""
    try:
        return full.is_file()
    except (OSError, ValueError):
        return False


@dataclass(frozen=True)
class MediaRoots:
    """The two served roots, by mount name."""

    share: Path
    output: Path

    @classmethod
    def of(cls, settings: Settings) -> MediaRoots:
        return cls(share=settings.share_root, output=settings.output_dir)

    def root(self, mount: str) -> Path | None:
        """The root served under `/media/<mount>/`, or None for an unknown mount."""
        return {SHARE: self.share, OUTPUT: self.output}.get(mount)


@dataclass(frozen=True)
class Located:
    """A stored file found in one of the served roots."""

    mount: str  #: SHARE or OUTPUT
    path: Path  #: resolved; a regular file when it was located
    url: str  #: where the hub serves it


def locate(roots: MediaRoots, stored: str) -> Located | None:
    """Where `stored` (relative: to the share root) is served, or None when it is outside both
    roots or is not a file there now. Blocking (resolves and stats)."""
    if not stored:
        return None
    try:
        share, output = roots.share.resolve(), roots.output.resolve()
    except (OSError, ValueError):
        return None
    # relative: the share's own `stored_path`; never looked up under the output folder
    full = confined(share, stored)
    if full is None and Path(stored).is_absolute():
        full = confined(output, stored)
    if full is None or not is_served_file(full):
        return None
    # the deeper root wins: a file under an output folder kept inside the share is output
    holders = [(m, r) for m, r in ((SHARE, share), (OUTPUT, output)) if full.is_relative_to(r)]
    mount, root = max(holders, key=lambda held: len(held[1].parts))
    try:
        url = f"/media/{mount}/{quote(full.relative_to(root).as_posix())}"
    except UnicodeEncodeError:  # a name that is not valid Unicode: no URL can name it
        return None
    return Located(mount, full, url)


def media_url(roots: MediaRoots, stored: str) -> str | None:
    """The link to `stored` (see `locate`), or None: the one builder of media links."""
    found = locate(roots, stored)
    return found.url if found is not None else None


async def media_urls(roots: MediaRoots, stored: Iterable[str | None]) -> dict[str, str | None]:
    """`media_url` of each distinct path, stat-ed in one worker thread off the event loop."""
    paths = list(dict.fromkeys(p for p in stored if p))
    if not paths:
        return {}
    return await asyncio.to_thread(lambda: {p: media_url(roots, p) for p in paths})


# --- the links of step outputs (what /api/executions/{id} and /api/sessions/{key} list) ---


def link_kind(key: str, path: str) -> m.MediaKind:
    """A copied clip (a copy step's `stored_path`) is a file; else a poster or a video."""
    if key == "stored_path":
        return "file"
    return "poster" if path.lower().endswith((".jpg", ".jpeg")) else "video"


async def media_links(roots: MediaRoots, outputs: list[tuple[str, str]]) -> list[m.MediaLink]:
    """Links to the files step outputs name that are there now: a staged render `publish`
    moved away, or a deleted clip, has none (never a link that 404s)."""
    urls = await media_urls(roots, (path for _, path in outputs))
    links: list[m.MediaLink] = []
    seen: set[str] = set()
    for key, path in outputs:
        url = urls.get(path)
        if url is None or url in seen:
            continue
        seen.add(url)
        links.append(m.MediaLink(kind=link_kind(key, path), url=url, name=Path(path).name))
    return distinct_names(links)


def distinct_names(links: list[m.MediaLink]) -> list[m.MediaLink]:
    """Links that share a file name (a published video and its staged render; two clips of one
    name in two DCIM folders) are named by where they lie instead, so no two read alike."""
    counts: dict[str, int] = {}
    for link in links:
        counts[link.name] = counts.get(link.name, 0) + 1
    named: list[m.MediaLink] = []
    for link in links:
        if counts[link.name] > 1:
            mount, _, rel = link.url.removeprefix("/media/").partition("/")
            where = unquote(rel)
            name = f"published {where}" if mount == "output" else where
            link = link.model_copy(update={"name": name})
        named.append(link)
    return named
