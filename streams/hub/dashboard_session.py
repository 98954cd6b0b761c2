"""The dashboard's login session: a signed, expiring cookie instead of a token per action.

`POST /api/login` (streams/hub/login.py) checks the admin token once and sets
:data:`COOKIE`: an itsdangerous ``URLSafeTimedSerializer`` dump of ``{"v": 1, "s": <random
session id>}``, signed with a key derived from the admin token (HMAC-SHA256 over a fixed label),
so every hub replica that shares the token accepts it and changing the token logs every
browser out. It is HttpOnly (no script reads it), SameSite=Strict (no other site's page sends
it), Secure when the hub is reached over https, and expires after
``settings.dashboard_session_hours`` (the signature's timestamp is checked, not only the
browser's Max-Age).

A state-changing request authenticated by the cookie must also carry :data:`CSRF_HEADER`
(``X-Skyreel-Dashboard: 1``): a plain cross-site form cannot set a custom header, and a
cross-site fetch that sets one needs a CORS preflight the hub never grants. A bearer token
needs neither (the CLI and scripts send one; no browser attaches it by itself).

Pure: no I/O; the caller gives the admin token and the clock.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from urllib.parse import urlsplit

from itsdangerous import BadData, URLSafeTimedSerializer

COOKIE = "skyreel_session"
CSRF_HEADER = "x-skyreel-dashboard"
_SALT = "skyreel-dashboard-session"
_LABEL = b"skyreel dashboard session key v1"


def _serializer(admin_token: str) -> URLSafeTimedSerializer:
    key = hmac.new(admin_token.encode(), _LABEL, hashlib.sha256).hexdigest()
    return URLSafeTimedSerializer(key, salt=_SALT)


def issue(admin_token: str) -> str:
    """A fresh session cookie value (a random session id, signed now)."""
    return str(_serializer(admin_token).dumps({"v": 1, "s": secrets.token_urlsafe(16)}))


@dataclass(frozen=True)
class Session:
    session_id: str
    issued_at: float  #: seconds since the epoch (the signature's timestamp)


def verify(admin_token: str, value: str | None, max_age_s: float) -> Session | None:
    """The session a cookie value carries, or None: missing, forged, signed with another admin
    token, older than ``max_age_s``, or of another shape."""
    if not value or len(value) > 512 or not admin_token:
        return None
    try:
        data, signed = _serializer(admin_token).loads(
            value, max_age=int(max_age_s), return_timestamp=True
        )
    except BadData:
        return None
    if not isinstance(data, dict) or data.get("v") != 1 or not isinstance(data.get("s"), str):
        return None
    return Session(session_id=data["s"], issued_at=signed.timestamp())


def csrf_ok(method: str, header: str | None) -> bool:
    """Whether a cookie-authenticated request may go on: reads always; anything that changes
    state only with the dashboard's custom header."""
    return method.upper() in ("GET", "HEAD", "OPTIONS") or (header or "").strip() == "1"


def same_origin(origin: str | None, host: str | None) -> bool:
    """Whether a browser's ``Origin`` names the host it connected to (a WebSocket handshake:
    browsers send Origin on every one; another site's page gets no socket on the cookie)."""
    if not origin or not host:
        return False
    try:
        netloc = urlsplit(origin).netloc
    except ValueError:
        return False
    return bool(netloc) and netloc.lower() == host.strip().lower()
