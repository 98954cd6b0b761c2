"""Render failures: permanent ones fail the step once, transient ones are retried by the queue.

A full disk (:class:`NoSpaceError`) is transient and patient: the render worker retries it with
a longer backoff and more attempts (agents/render/worker.py), so the render succeeds once space
returns, without a person.
"""

from __future__ import annotations

import errno

_NO_SPACE = frozenset(c for c in (errno.ENOSPC, getattr(errno, "EDQUOT", None)) if c is not None)
#: What FFmpeg writes when its output's file system is full.
NO_SPACE_MARKERS = ("No space left on device", "Disk quota exceeded")


class RenderError(Exception):
    """A render that will fail again if retried (bad input, corrupt file, bad settings)."""

    retryable: bool = False

    def __init__(self, message: str, *, ffmpeg_tail: str = "", returncode: int | None = None):
        super().__init__(message)
        self.message = message
        self.ffmpeg_tail = ffmpeg_tail
        self.returncode = returncode

    def __str__(self) -> str:
        if self.ffmpeg_tail:
            return f"{self.message}\n--- ffmpeg ---\n{self.ffmpeg_tail}"
        return self.message

    def to_dict(self) -> dict[str, object]:
        """Structured form for step results and saq job meta."""
        return {
            "kind": type(self).__name__,
            "retryable": self.retryable,
            "message": self.message,
            "ffmpeg_tail": self.ffmpeg_tail,
            "returncode": self.returncode,
        }


class TransientRenderError(RenderError):
    """A render that may succeed on another attempt (killed FFmpeg, full disk, lost volume)."""

    retryable = True


class StallError(TransientRenderError):
    """FFmpeg made no progress for the configured stall timeout and was killed."""


class NoSpaceError(TransientRenderError):
    """The output's file system (or a quota) is full: retried with backoff until space returns."""


def is_no_space(exc: BaseException) -> bool:
    """An OSError saying the file system or a quota is full (pure)."""
    return isinstance(exc, OSError) and exc.errno in _NO_SPACE
