"""The ``publish`` step: move a jump's video, poster and manifest from staging to the output folder.

Layout: ``<output_dir>/<name>/<name>.mp4``, ``<name>.jpg`` and ``<name>.json`` (the manifest:
session, execution, input fingerprint, size and SHA-256 of each file), where ``<name>`` is the
session's own output name (agents/render/identity.py). The rules, checked on every attempt:

- a destination whose manifest names another session, or cannot be read, is never touched: the
  step fails permanently (names make it impossible; the guard makes it certain);
- a file at the destination without a manifest is touched only if it holds exactly the bytes this
  render staged (an earlier attempt moved it and died before writing the manifest);
- a re-render of the same session replaces its own files, each by an atomic rename;
- an output already published from the same inputs is kept as it is;
- a render that lacks a clip of its session which was not deliberately left out (unreadable:
  `imported_file.probe_error`, with a session warning) is never published: the step fails as
  retryable and tries again (a session is never published with fewer clips than it was
  grouped with).

The first publish of a name claims it by creating the manifest with a hard link (atomic, never
overwrites), so two publishes racing for one name cannot both win. The manifest is rewritten after
the files moved, and the staged manifest goes last: a rerun after a crash anywhere finishes the
move instead of starting over or giving up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from agents.jobs import kinds, render
from agents.jobs.context import JobContext
from agents.pipeline.errors import PermanentStepError, RetryableStepError
from agents.pipeline.handlers import Handler, StepContext, StepOutput
from agents.render.identity import (
    Manifest,
    ManifestError,
    claim_manifest,
    is_safe_name,
    manifest_path,
    read_manifest,
    write_manifest,
)
from storage import imports, media
from streams import records

logger = logging.getLogger(__name__)

KINDS = ("poster", "video")  # the video's final name marks completion: it moves last


@dataclass(frozen=True)
class Rendered:
    """What the render step made: its files in staging (or the published ones it reused)."""

    video: Path
    poster: Path
    manifest: Path
    session_key: str
    output_name: str
    fingerprint: str

    @classmethod
    def from_output(cls, output: Mapping[str, str]) -> Rendered:
        return cls(
            video=Path(output["video"]),
            poster=Path(output["poster"]),
            manifest=Path(output["manifest"]),
            session_key=output["session_key"],
            output_name=output["output_name"],
            fingerprint=output["fingerprint"],
        )

    def source(self, kind: str) -> Path:
        return self.video if kind == "video" else self.poster


def _owned(path: Path, session_key: str) -> Manifest | None:
    """The manifest at `path` if it is this session's; never another session's output."""
    try:
        existing = read_manifest(path)
    except ManifestError as exc:
        raise PermanentStepError(
            f"{path.parent / path.stem}: the manifest cannot be read ({exc}); not touching it"
        ) from exc
    if existing is not None and existing.session_key != session_key:
        raise PermanentStepError(
            f"{path.parent / path.stem} belongs to session {existing.session_key!r}, not to "
            f"{session_key!r}: not replacing another jump's video"
        )
    return existing


def _complete(folder: Path, manifest: Manifest) -> bool:
    return all(
        kind in manifest.files
        and manifest.files[kind].same_size(folder / manifest.files[kind].name)
        for kind in KINDS
    )


def _move(src: Path, dest: Path) -> None:
    try:
        os.replace(src, dest)  # same filesystem: atomic
    except OSError:
        tmp = dest.with_name(f".{dest.name}.publishing")
        shutil.copyfile(src, tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, dest)
        src.unlink()


def _guard_unowned(folder: Path, staged: Manifest, rendered: Rendered) -> None:
    """Files at a destination without a manifest must be the ones this render staged."""
    for kind in KINDS:
        fact = staged.files[kind]
        dest = folder / fact.name
        if not dest.exists():
            continue
        if rendered.source(kind).exists() or not fact.matches(dest):
            raise PermanentStepError(
                f"{dest} is in the way and no manifest says whose it is: not replacing it"
            )


def _result(folder: Path, manifest: Manifest, *, reused: bool, replaced: bool) -> dict[str, object]:
    return {
        "video": str(folder / manifest.files["video"].name),
        "poster": str(folder / manifest.files["poster"].name),
        "manifest": str(manifest_path(folder, manifest.output_name)),
        "output_name": manifest.output_name,
        "reused": reused,
        "replaced": replaced,
    }


def publish_files(rendered: Rendered, output_dir: Path) -> dict[str, object]:
    """Publish one session's render into `output_dir/<name>/` (blocking: run it in the executor)."""
    name = rendered.output_name
    if not is_safe_name(name):
        raise PermanentStepError(f"output name {name!r} is not a safe file name")
    folder = output_dir / name
    dest_manifest = manifest_path(folder, name)
    current = _owned(dest_manifest, rendered.session_key)
    in_place = rendered.manifest.resolve() == dest_manifest.resolve()
    staged = current if in_place else _owned(rendered.manifest, rendered.session_key)

    if staged is None:  # an earlier attempt finished and removed the staged manifest
        if (
            current is not None
            and current.fingerprint == rendered.fingerprint
            and _complete(folder, current)
        ):
            return _result(folder, current, reused=True, replaced=False)
        raise PermanentStepError(f"the rendered output {name} is gone: retry the render")
    if staged.fingerprint != rendered.fingerprint or not all(k in staged.files for k in KINDS):
        raise PermanentStepError(f"the staged manifest of {name} is not the render step's")
    if in_place:  # the render reused this session's published output of the same inputs
        if not _complete(folder, staged):
            raise PermanentStepError(f"the published output {name} is incomplete: retry the render")
        return _result(folder, staged, reused=True, replaced=False)

    folder.mkdir(parents=True, exist_ok=True)
    if current is None:
        _guard_unowned(folder, staged, rendered)
        if not claim_manifest(dest_manifest, staged):
            current = _owned(dest_manifest, rendered.session_key)  # claimed meanwhile
    replaced = current is not None and current.fingerprint != staged.fingerprint
    for kind in KINDS:
        fact = staged.files[kind]
        src, dest = rendered.source(kind), folder / fact.name
        if src.exists():
            if not fact.same_size(src):
                raise PermanentStepError(f"staged {kind} {src.name} is not what was rendered")
            _move(src, dest)
        elif not fact.matches(dest):
            raise PermanentStepError(f"the rendered {kind} {src.name} is missing: retry the render")
    write_manifest(dest_manifest, staged)
    rendered.manifest.unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        rendered.manifest.parent.rmdir()  # the staging folder, when nothing else is left in it
    return _result(folder, staged, reused=False, replaced=replaced)


def missing_clips(
    session_ids: Sequence[int], rendered_ids: Collection[int], left_out: Collection[int]
) -> list[int]:
    """Clips of the session neither rendered into the video nor deliberately left out (pure)."""
    return [i for i in session_ids if i not in rendered_ids and i not in left_out]


def _rendered_ids(path: Path) -> list[int] | None:
    """Clip ids the manifest says were rendered; None when it does not name them (older)."""
    try:
        manifest = read_manifest(path)
    except ManifestError:
        return None
    clips = manifest.inputs.get("clips") if manifest is not None else None
    if not isinstance(clips, list) or not all(isinstance(c, dict) and "id" in c for c in clips):
        return None
    return [int(c["id"]) for c in clips]


async def _check_clips(jc: JobContext, rendered: Rendered) -> None:
    ids = await asyncio.to_thread(_rendered_ids, rendered.manifest)
    if ids is None:
        return  # publish_files reports a missing manifest itself
    async with jc.engine.connect() as conn:
        session = await media.load_session(conn, rendered.session_key)
        if session is None:
            return
        rows = await media.load_files(conn, session.file_ids)
    known = {r.id for r in rows}
    left_out = {r.id for r in rows if r.probe_error} | (set(session.file_ids) - known)
    missing = missing_clips(session.file_ids, set(ids), left_out)
    if missing:
        raise RetryableStepError(
            f"the render holds {len(ids)} of the session's {len(session.file_ids)} clips "
            f"(clips {', '.join(map(str, missing))} are neither in it nor left out): not "
            "publishing it; render the session again"
        )


async def publish(jc: JobContext, ctx: StepContext, request: records.StepRequest) -> StepOutput:
    """The publish handler: the render step's output, published; a counter when new."""
    rendered = Rendered.from_output(await render.render_output(jc, request.execution_id))
    session = (request.input or {}).get("session")
    if session and session != rendered.session_key:
        raise PermanentStepError(
            f"the render step rendered session {rendered.session_key!r}, not {session!r}"
        )
    await _check_clips(jc, rendered)
    out = await ctx.run_blocking(publish_files, rendered, jc.settings.output_dir)
    if not out["reused"]:
        async with jc.engine.begin() as conn:
            await imports.bump_counter(conn, "videos_published")
    how = "kept (inputs unchanged)" if out["reused"] else "replaced" if out["replaced"] else "new"
    ctx.log(f"published {out['video']} ({how})")
    logger.info("execution %d: published %s (%s)", request.execution_id, out["video"], how)
    return StepOutput(dict(out))


KIND = kinds.PUBLISH


def handler(jc: JobContext) -> Handler:
    async def publish_step(ctx: StepContext, request: records.StepRequest) -> StepOutput:
        return await publish(jc, ctx, request)

    return publish_step
