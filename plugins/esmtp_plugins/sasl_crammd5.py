"""SASL CRAM-MD5 (RFC 2195): the password never crosses the wire, only an HMAC-MD5 of the server's challenge.

Wire format: ``AUTH CRAM-MD5`` (no initial response), ``334 <challenge>``, then ``user <lowercase hex HMAC>``.
"""

from __future__ import annotations

from collections.abc import Iterable

from esmtp import hookimpl
from esmtp.types import Credentials, SaslMechanism


class CramMd5Client:
    """Answers the one challenge with the username and HMAC-MD5(password, challenge) in lowercase hex."""

    def __init__(self, credentials: Credentials) -> None:
        self._credentials = credentials
        self._answered = False

    def step(self, challenge: bytes | None) -> bytes | None:
        if challenge is None:
            return None  # server-first: the challenge comes in the 334 reply
        if self._answered:
            raise ValueError("the server sent a second CRAM-MD5 challenge")
        if not challenge:
            raise ValueError("the server sent an empty CRAM-MD5 challenge")
        self._answered = True
        key = self._credentials.password.encode("utf-8", "surrogateescape")
        import hmac  # only when CRAM-MD5 is used

        digest = hmac.new(key, challenge, "md5").hexdigest()
        return self._credentials.username.encode("utf-8", "surrogateescape") + b" " + digest.encode("ascii")


@hookimpl
def esmtp_sasl_mechanisms() -> Iterable[SaslMechanism]:
    """CRAM-MD5 is preferred to NTLM: equally strong against eavesdroppers, with fewer interoperability traps."""
    return [SaslMechanism("CRAM-MD5", priority=30, factory=CramMd5Client)]
