"""Render failures: permanent ones fail the step once, transient ones are retried by the queue."""

from __future__ import annotations


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
