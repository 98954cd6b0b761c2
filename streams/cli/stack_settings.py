"""How every `skyreel` command builds its settings: ``SKYREEL_*`` variables (and ``.env``), then
what they leave unset taken from the running local stack (streams/stack/discovery.py), and what
each command needs checked before it connects anywhere.

Precedence, highest first: flags, ``SKYREEL_*`` environment, ``.env``, the stack file of the
``skyreel run`` running in ``SKYREEL_DATA_DIR`` (default ``.skyreel/``), the defaults.
``skyreel run`` itself takes nothing from a stack file (it is the one that writes it).
"""

from __future__ import annotations

from streams.settings import Settings
from streams.stack.discovery import Found, discover, missing

#: Commands that start the stack or take nothing from it.
NO_DISCOVERY = frozenset({"run"})

_DB = ("database_url",)
_DB_KAFKA = ("database_url", "kafka_url")
#: What each command cannot work without (checked with one clear sentence before it connects).
#: Commands not listed check for themselves.
NEEDS: dict[str, tuple[str, ...]] = {
    "migrate": _DB,
    "register-detector": _DB,
    "revoke-detector": _DB,
    "status": _DB,
    "executions": _DB,
    "link": _DB,
    "replay": ("kafka_url",),
    "assign": _DB_KAFKA,
    "edit": _DB_KAFKA,
    "retry": _DB_KAFKA,
    "resume": _DB_KAFKA,
    "cancel": _DB_KAFKA,
    "purge": _DB_KAFKA,
}


def load_settings(command: str) -> tuple[Settings, Found | None]:
    """The settings for ``command`` (ValidationError / InsecureSettings as ``Settings()``)."""
    settings = Settings()
    if command in NO_DISCOVERY:
        return settings, None
    return discover(settings)


def what_is_missing(command: str, settings: Settings, found: Found | None) -> str | None:
    """``None`` when ``command`` has what it needs, else the sentence that says what to do."""
    needs = NEEDS.get(command, ())
    if found is None or not needs:
        return None
    return missing(settings, found, needs)
