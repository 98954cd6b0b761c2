"""Every status and kind skyreel stores or sends, in one place (the floor of the backend).

The values are the strings in the database columns and on the wire; each enum is a ``StrEnum``,
so a member compares equal to its string and serialises as it. Pure: imports nothing but the
standard library, so the pure cores (``agents/pipeline``, ``agents/sessions``) can use them.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = [
    "CommandAction",
    "CommandErrorKind",
    "CopyStatus",
    "DetectorEventKind",
    "ExecutionStatus",
    "FileKind",
    "FileStatus",
    "QrStatus",
    "ResultStatus",
    "SessionStatus",
    "StatusKind",
    "StepStatus",
]


class StepStatus(StrEnum):
    """``pipeline_step.status``."""

    PENDING = "pending"
    READY = "ready"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"


class ExecutionStatus(StrEnum):
    """``pipeline_execution.status``."""

    PENDING = "pending"  # nothing dispatched yet
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # a step failed and nothing else can run
    CANCELLED = "cancelled"
    WAITING = "waiting"  # nothing can run until an outside condition is met (e.g. a human)


class ResultStatus(StrEnum):
    """``StepResult.status``: what a step attempt reported."""

    RUNNING = "running"
    PROGRESS = "progress"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    WAITING = "waiting"


class FileKind(StrEnum):
    """``imported_file.kind``: what a listed card file is to skyreel."""

    QR_CANDIDATE = "qr_candidate"
    FOOTAGE = "footage"
    PROXY = "proxy"  # a camera's low-resolution copy (.LRV, .THM): listed, never copied


class FileStatus(StrEnum):
    """``imported_file.status``: a card file's way to the share."""

    LISTED = "listed"
    REQUESTED = "requested"
    COPYING = "copying"
    IMPORTED = "imported"
    FAILED = "failed"
    IGNORED = "ignored"  # proxies


#: a copy is outstanding while its file is in one of these
PENDING_FILE_STATUSES = (FileStatus.REQUESTED, FileStatus.COPYING)


class CopyStatus(StrEnum):
    """What a detector reported for one copy request."""

    COPIED = "copied"
    FAILED = "failed"


class QrStatus(StrEnum):
    """``media_scan.status``: what the QR search of one clip found."""

    DECODED = "decoded"
    UNREADABLE = "unreadable"  # a code was seen but not read: a person decides
    NO_QR = "no_qr"
    ERROR = "error"


class SessionStatus(StrEnum):
    """``jump_session.status``."""

    DECODED = "decoded"
    UNASSIGNED = "unassigned"
    NEEDS_REVIEW = "needs_review"
    PENDING = "pending"
    ASSIGNED = "assigned"


class DetectorEventKind(StrEnum):
    """``DetectorEvent.event``."""

    CARD_INSERTED = "card_inserted"
    FILE_LIST = "file_list"
    CARD_REMOVED = "card_removed"


class StatusKind(StrEnum):
    """``StatusEvent.kind``: what changed, for the dashboards."""

    STEP = "step"
    EXECUTION = "execution"
    DETECTOR = "detector"
    FILE = "file"
    SESSION = "session"
    CARD = "card"


class CommandAction(StrEnum):
    """``operator_command.action``."""

    RETRY = "retry"
    RESUME = "resume"
    CANCEL = "cancel"
    ASSIGN = "assign"
    EDIT = "edit"  # issue 15: operator marks on a jump's recording, then a re-edit
    PURGE = "purge"  # issue 16: a booking's files and personal data deleted (agents/purge.py)
    REPLAY = "replay"  # issue 17: the worker rewinds its consumer on a topic (agents/replay.py)
    RESEND = "resend"  # issue 16: email a booking's passenger link once more


class CommandErrorKind(StrEnum):
    """``operator_command.error_kind`` of a command that was refused ('' when it applied)."""

    NONE = ""
    CONFLICT = "conflict"
    NOT_FOUND = "not_found"
