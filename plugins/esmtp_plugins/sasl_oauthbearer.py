"""SASL OAUTHBEARER (RFC 7628): a GS2 header, then ``host`` and ``auth=Bearer TOKEN``, ^A-separated.

The secret is an OAuth2 access token (``bearer``): the core chooses OAUTHBEARER only when ``auth_mechanisms`` names it
or the identity has OAuth2 settings. The token crosses the wire as is, so TLS is required as for PLAIN. On failure the
server sends a 334 with a base64 JSON error; the client answers with a single ^A (RFC 7628 3.2.3) and the server ends
with 5xx.
"""

from __future__ import annotations

from collections.abc import Iterable

from esmtp import hookimpl
from esmtp.types import SaslMechanism

from .bearer import BearerClient, token_bytes, user_bytes


def _saslname(username: str) -> bytes:
    """RFC 5801 saslname: ``=`` and ``,`` escaped as ``=3D`` and ``=2C``."""
    return user_bytes(username).replace(b"=", b"=3D").replace(b",", b"=2C")


class OAuthBearerClient(BearerClient):
    """The client response as the initial response; ^A answers an error challenge."""

    ERROR_ANSWER = b"\x01"

    def initial_response(self) -> bytes:
        credentials = self.credentials
        header = b"n," + (b"a=" + _saslname(credentials.username) if credentials.username else b"") + b","
        host = b"host=" + credentials.host.encode("utf-8") + b"\x01" if credentials.host else b""
        return header + b"\x01" + host + b"auth=Bearer " + token_bytes(credentials.password) + b"\x01\x01"


@hookimpl
def esmtp_sasl_mechanisms() -> Iterable[SaslMechanism]:
    """OAUTHBEARER, the standard bearer mechanism, is preferred when the server offers both."""
    return [SaslMechanism("OAUTHBEARER", priority=60, factory=OAuthBearerClient, plaintext=True, bearer=True)]
