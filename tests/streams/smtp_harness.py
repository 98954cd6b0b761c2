"""A real SMTP server on loopback for the delivery tests (aiosmtpd in a thread): it keeps what
it accepted, and can be told to answer 4xx for a while, refuse a recipient, or refuse logins."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword, Session

USER, PASSWORD = "skyreel", "s3cret-pass"
NO_TLS_AUTH_WARNING = "ignore:Requiring AUTH while not requiring TLS"


@dataclass
class Mailbox:
    """What the server accepted; knobs for what it refuses."""

    messages: list[EmailMessage] = field(default_factory=list)
    envelopes: list[tuple[str, list[str]]] = field(default_factory=list)
    temp_fail_data: int = 0  # answer 451 to this many DATA commands first
    refuse_rcpt: set[str] = field(default_factory=set)  # 550 for these recipients
    lock: threading.Lock = field(default_factory=threading.Lock)

    def to(self, address: str) -> list[EmailMessage]:
        with self.lock:
            return [m for m in self.messages if m["To"] == address]

    async def handle_RCPT(
        self, server: Any, session: Session, envelope: Envelope, address: str, options: Any
    ) -> str:
        if address in self.refuse_rcpt:
            return "550 5.1.1 no such user here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Session, envelope: Envelope) -> str:
        with self.lock:
            if self.temp_fail_data > 0:
                self.temp_fail_data -= 1
                return "451 4.3.0 try again later"
            raw = envelope.original_content or envelope.content or b""
            data = raw if isinstance(raw, bytes) else raw.encode()
            msg = message_from_bytes(data, policy=default)
            self.messages.append(msg)  # type: ignore[arg-type]
            self.envelopes.append((str(envelope.mail_from), list(envelope.rcpt_tos)))
        return "250 OK queued"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _authenticator(
    server: Any, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
) -> AuthResult:
    ok = (
        isinstance(auth_data, LoginPassword)
        and auth_data.login == USER.encode()
        and auth_data.password == PASSWORD.encode()
    )
    return AuthResult(success=ok, handled=False)


@contextmanager
def smtp_server(*, auth: bool = False) -> Iterator[tuple[Mailbox, int]]:
    """(mailbox, port) of an SMTP server on 127.0.0.1 for the `with` block."""
    box = Mailbox()
    port = _free_port()
    kwargs: dict[str, Any] = {}
    if auth:
        kwargs = {
            "authenticator": _authenticator,
            "auth_required": True,
            "auth_require_tls": False,
        }
    # aiosmtpd warns (rightly) about plain AUTH for every connection, in its own thread: a test
    # using auth=True needs the NO_TLS_AUTH_WARNING filter mark
    controller = Controller(box, hostname="127.0.0.1", port=port, **kwargs)
    controller.start()
    try:
        yield box, port
    finally:
        controller.stop()
