"""SASL PLAIN (RFC 4616): sends the password recoverably, so the core allows it only over TLS by default."""

from __future__ import annotations

from collections.abc import Iterable

from esmtp import hookimpl
from esmtp.types import Credentials, SaslMechanism


class PlainClient:
    """Answers with an initial response ``\\0user\\0password`` (no authorization identity)."""

    def __init__(self, credentials: Credentials) -> None:
        self._credentials = credentials

    def step(self, challenge: bytes | None) -> bytes | None:
        # Initial response, or the answer to an empty 334 from servers that want it afterwards.
        username, password = self._credentials.username, self._credentials.password
        return b"\0" + username.encode("utf-8", "surrogateescape") + b"\0" + password.encode("utf-8", "surrogateescape")


@hookimpl
def esmtp_sasl_mechanisms() -> Iterable[SaslMechanism]:
    """PLAIN, the weakest mechanism: chosen last when the server offers a stronger one."""
    return [SaslMechanism("PLAIN", priority=10, factory=PlainClient, plaintext=True)]
