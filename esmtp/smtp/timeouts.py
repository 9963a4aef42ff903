"""How long the client waits for the server, per kind of wait (listed in docs/configuration.md)."""

from __future__ import annotations

from dataclasses import dataclass

from esmtp.config.model import Identity

#: Opening the TCP connection: a host that does not answer is usually down or filtered; cron should not hang on it.
CONNECT = 30.0
#: The 220 greeting (and, with ``smtps enabled``, the TLS handshake before it).
GREETING = 60.0
#: Every reply but the one to the final dot: EHLO, STARTTLS, AUTH, MAIL, RCPT, DATA, RSET.
COMMAND = 60.0
#: The reply to the final dot: RFC 5321 4.5.3.2.6 asks for at least 10 minutes (the server may be scanning the mail).
FINAL_REPLY = 600.0
#: Port 465 is implicit TLS (RFC 8314): without ``smtps enabled`` the server waits for our TLS hello while we wait for
#: its greeting. Past this many seconds of silence there, the pattern is clear and we say so.
IMPLICIT_TLS_SILENCE = 5.0
IMPLICIT_TLS_PORT = 465


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Seconds to wait at each step. An explicit ``timeout`` in the configuration sets every one of them."""

    connect: float = CONNECT
    greeting: float = GREETING
    command: float = COMMAND
    final_reply: float = FINAL_REPLY

    @classmethod
    def of(cls, identity: Identity) -> Timeouts:
        configured = identity.options.get("timeout")
        if not configured:
            return cls()
        limit = float(configured)
        return cls(limit, limit, limit, limit)
