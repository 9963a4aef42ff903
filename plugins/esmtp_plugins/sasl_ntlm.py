"""SASL NTLM (Microsoft's NTLM over SMTP AUTH), NTLMv2 through pyspnego's pure-Python NTLM client.

Wire format: ``AUTH NTLM <negotiate>`` (type 1 as the initial response), ``334 <challenge>`` (type 2), then
``<authenticate>`` (type 3), then ``235``.

The domain comes from the username (see docs/authentication.md):

* ``DOMAIN\\user``: domain ``DOMAIN`` (sent upper-cased, as NetBIOS domain names are written) and user ``user``;
* anything else, ``user@example.com`` included: the whole string is the user and the domain is empty, which is how
  Windows servers take a user principal name, and what esmtp 1.2 sent.

``spnego`` costs about 80 ms to import, so it is imported only when NTLM is actually used.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from esmtp import hookimpl
from esmtp.types import Credentials, SaslMechanism


def ntlm_username(username: str) -> str:
    """The username as pyspnego takes it: ``DOMAIN\\user`` with the domain upper-cased, else unchanged.

    NTLMv2 hashes the domain as sent; Cyrus SASL upper-cases it before hashing, Windows compares it case-blind, so
    sending it upper-cased makes both agree.
    """
    domain, separator, user = username.partition("\\")
    if not separator:
        return username
    return f"{domain.upper()}\\{user}"


class NtlmClient:
    """Type 1 as the initial response, then the type 3 answer to the server's type 2 challenge."""

    def __init__(self, credentials: Credentials) -> None:
        self._credentials = credentials
        self._context: Any = None
        self._answered = False

    def step(self, challenge: bytes | None) -> bytes | None:
        if challenge is None:
            import spnego

            credentials = self._credentials
            self._context = spnego.client(
                ntlm_username(credentials.username),
                credentials.password,
                hostname=credentials.host or "unspecified",
                service="smtp",
                protocol="ntlm",
            )
            return bytes(self._context.step())
        if self._answered:
            raise ValueError("the server sent a second NTLM challenge")
        if not challenge:
            raise ValueError("the server sent an empty NTLM challenge")
        self._answered = True
        token = self._context.step(challenge)
        if not token:
            raise ValueError("pyspnego produced no NTLM authenticate message")
        return bytes(token)


@hookimpl
def esmtp_sasl_mechanisms() -> Iterable[SaslMechanism]:
    """NTLM ranks between CRAM-MD5 and PLAIN: no password on the wire, but more ways to mismatch the server."""
    return [SaslMechanism("NTLM", priority=20, factory=NtlmClient)]
