"""Passenger links, as the hub's modules import them: the code is streams/passenger_links.py.

It moved one layer down (issue 16, item 3) so the worker's `deliver` step issues the link it
emails with the same code as the API and the CLI; this module keeps the hub's imports working.
"""

from __future__ import annotations

from streams.passenger_links import (
    MAX_AGE_S,
    MAX_TOKEN_CHARS,
    PAGE_PREFIX,
    SALT,
    SECRET_FILE,
    BookingUnknown,
    IssuedLink,
    LinkClaim,
    LinkRefused,
    LinkSigner,
    Refusal,
    issue_link,
    link_base,
    link_secret,
    open_link,
    public_url,
    reuse_or_issue,
    revoke_link,
    signer_for,
)

__all__ = [
    "MAX_AGE_S",
    "MAX_TOKEN_CHARS",
    "PAGE_PREFIX",
    "SALT",
    "SECRET_FILE",
    "BookingUnknown",
    "IssuedLink",
    "LinkClaim",
    "LinkRefused",
    "LinkSigner",
    "Refusal",
    "issue_link",
    "link_base",
    "link_secret",
    "open_link",
    "public_url",
    "reuse_or_issue",
    "revoke_link",
    "signer_for",
]
